//! `sprout status [ENV]`: what sprout recorded, refreshed from the cluster when it answers.

use super::{Context, print, print_structured, runtime};
use crate::cli::{Format, StatusArgs};
use crate::cluster;
use crate::desired;
use crate::error::{InStage, Result, Stage};
use crate::project::Project;
use crate::state::{EnvironmentState, StateStore};
use crate::sync::{self, SyncPlan};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    #[serde(flatten)]
    state: EnvironmentState,
    /// The commit the ref points at now; differs from `commit` when git has moved on.
    #[serde(skip_serializing_if = "Option::is_none")]
    desired_commit: Option<String>,
    /// When the environment expires (creation + lifecycle.ttl), if it has a TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    /// Why the live refresh did not happen, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<String>,
}

pub fn run(context: &Context, args: &StatusArgs) -> Result<()> {
    let project = context.project()?;
    let names = match &args.env {
        Some(name) => vec![name.clone()],
        None => project.environment_names()?,
    };
    let mut views = Vec::new();
    for name in &names {
        views.push(view(context, &project, name)?);
    }
    if context.format != Format::Table {
        return match &args.env {
            Some(_) => print_structured(context.format, &views[0]),
            None => print_structured(context.format, &views),
        };
    }
    let mut text = String::new();
    for v in &views {
        let s = &v.state;
        let commit = s
            .commit
            .as_deref()
            .map_or("-".to_string(), |c| c[..c.len().min(12)].to_string());
        text.push_str(&format!("{}: {:?}, commit {commit}", s.environment, s.phase).to_lowercase());
        if let (Some(want), Some(have)) = (&v.desired_commit, &s.commit)
            && want != have
        {
            text.push_str(&format!(
                " (git has moved on to {})",
                &want[..want.len().min(12)]
            ));
        }
        text.push('\n');
        let c = &s.counts;
        text.push_str(&format!(
            "  last sync: {} created, {} configured, {} unchanged, {} pruned",
            c.created, c.configured, c.unchanged, c.pruned
        ));
        if let Some(at) = &s.synced_at {
            text.push_str(&format!(" at {at}"));
        }
        text.push('\n');
        if let Some(health) = &s.health {
            text.push_str(&super::sync::health_lines(health));
        }
        match &s.drift {
            Some(drift) if drift.is_empty() => text.push_str("  drift: none\n"),
            Some(drift) => text.push_str(&format!("  drift: {}\n", drift.join(", "))),
            None => {}
        }
        if let Some(at) = &v.expires_at {
            text.push_str(&format!("  expires: {at}\n"));
        }
        if let Some(error) = &s.last_error {
            text.push_str(&format!("  last error: {error}\n"));
        }
        if let Some(why) = &v.live {
            text.push_str(&format!("  (not refreshed from the cluster: {why})\n"));
        }
    }
    print(&text)
}

fn view(context: &Context, project: &Project, name: &str) -> Result<StatusView> {
    let env = project.environment(name).in_stage(name, Stage::Spec)?;
    let store = StateStore::new(&project.state_dir());
    let mut state = store.load(name)?;
    let expires_at = expiry(&state, env.lifecycle.ttl.as_deref());
    let mut desired_commit = None;
    let mut live_note = None;
    if env.protected {
        live_note = Some("protected: never synced".to_string());
    } else {
        let refreshed = (|| -> Result<()> {
            let target = cluster::target_for(project, &env, context.kubeconfig.as_deref())
                .in_stage(name, Stage::Cluster)?;
            let mut desired = desired::compute(project, &env)?;
            desired_commit = Some(desired.commit.clone());
            let observed = runtime()?.block_on(async {
                let mut live = super::sync::connect(name, &target).await?;
                let user_kubeconfig = context.kubeconfig.as_deref();
                super::sync::add_secret_copies(project, &env, &live, user_kubeconfig, &mut desired)
                    .await?;
                let plan = SyncPlan::new(&env, &desired);
                sync::observe(&mut live, &plan)
                    .await
                    .in_stage(name, Stage::Status)
            })?;
            state.health = Some(observed.health);
            state.drift = Some(observed.drift);
            if observed.synced_commit.is_some() {
                state.commit = observed.synced_commit;
            }
            Ok(())
        })();
        if let Err(e) = refreshed {
            live_note = Some(e.to_string());
        }
    }
    Ok(StatusView {
        state,
        desired_commit,
        expires_at,
        live: live_note,
    })
}

fn expiry(state: &EnvironmentState, ttl: Option<&str>) -> Option<String> {
    let created = chrono::DateTime::parse_from_rfc3339(state.created_at.as_deref()?).ok()?;
    let ttl = humantime::parse_duration(ttl?).ok()?;
    let at = created + chrono::Duration::from_std(ttl).ok()?;
    Some(
        at.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}
