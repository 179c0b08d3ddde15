//! `sprout status [ENV]`: what sprout recorded, refreshed from the cluster when it answers, and
//! what is coming (expiry, next teardown and wake, the state of the followed branch).

use super::{Context, print, print_structured, runtime};
use crate::cli::{Format, StatusArgs};
use crate::error::{InStage, Result, Stage};
use crate::lifecycle::{Outlook, Policy, outlook};
use crate::ops::{self, Session};
use crate::spec::Environment;
use crate::state::{EnvironmentState, Phase, StateStore};
use crate::sync::{self, SyncPlan};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    #[serde(flatten)]
    state: EnvironmentState,
    #[serde(flatten)]
    outlook: Outlook,
    /// Set when the record's phase belongs to an operation nobody is running any more.
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<Interrupted>,
    /// The commit the ref points at now; differs from `commit` when git has moved on.
    #[serde(skip_serializing_if = "Option::is_none")]
    desired_commit: Option<String>,
    /// Why the live refresh did not happen, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<String>,
    #[serde(skip)]
    timezone: Option<chrono_tz::Tz>,
}

/// An operation killed mid-way: its phase, and the command that finishes the job.
#[derive(Debug, Clone, Serialize)]
pub struct Interrupted {
    pub phase: Phase,
    pub run: String,
}

/// The phase as people should read it: a transitional phase whose lock nobody holds is
/// `interrupted`, with the command that converges.
pub fn interrupted(store: &StateStore, state: &EnvironmentState) -> Option<Interrupted> {
    if !state.phase.is_transitional() || store.is_locked(&state.environment) {
        return None;
    }
    let env = &state.environment;
    let run = match state.phase {
        Phase::Deleting => format!("sprout down {env}"),
        Phase::Sleeping => format!("sprout sleep {env}"),
        _ => format!("sprout up {env}"),
    };
    Some(Interrupted {
        phase: state.phase,
        run,
    })
}

/// RFC 3339 in UTC, to the second (what `-o json` carries).
pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `in 3h12m (12:00 CET)` or `2h ago (due)`, in the environment's time zone.
pub fn when(at: DateTime<Utc>, now: DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> String {
    let local = match tz {
        Some(tz) => at.with_timezone(&tz).format("%a %H:%M %Z").to_string(),
        None => at.format("%a %H:%M UTC").to_string(),
    };
    let delta = at - now;
    let rounded = |d: chrono::Duration| {
        let minutes = d.num_minutes().max(0);
        humantime::format_duration(std::time::Duration::from_secs(minutes as u64 * 60))
            .to_string()
            .replace(' ', "")
    };
    if delta >= chrono::Duration::zero() {
        format!("in {} ({local})", rounded(delta))
    } else {
        format!("due since {} ago ({local})", rounded(-delta))
    }
}

/// Lifecycle policy and what is coming, for an environment whose spec parses.
pub fn outlook_of(
    env: &Environment,
    state: &EnvironmentState,
    now: DateTime<Utc>,
) -> (Outlook, Option<chrono_tz::Tz>) {
    match Policy::of(env) {
        Ok(policy) => (outlook(&policy, state, now), Some(policy.timezone)),
        Err(_) => (Outlook::default(), None),
    }
}

/// The branch line: present, missing since, or frozen.
pub fn branch_state(state: &EnvironmentState) -> Option<String> {
    let watch = &state.branch;
    if let Some(why) = &watch.frozen {
        return Some(format!("frozen (listing failed: {why})"));
    }
    if let Some(since) = watch.missing_since {
        return Some(format!("missing since {}", stamp(since)));
    }
    watch
        .last_seen
        .map(|at| format!("present (listed {})", stamp(at)))
}

pub fn run(context: &Context, args: &StatusArgs) -> Result<()> {
    let session = context.session(&ops::Silent)?;
    let names = match &args.env {
        Some(name) => vec![name.clone()],
        None => session.project.environment_names()?,
    };
    let now = Utc::now();
    let mut views = Vec::new();
    for name in &names {
        views.push(view(&session, name, now)?);
    }
    if context.format != Format::Table {
        return match &args.env {
            Some(_) => print_structured(context.format, &views[0]),
            None => print_structured(context.format, &views),
        };
    }
    let mut text = String::new();
    for v in &views {
        text.push_str(&describe(v, now));
    }
    print(&text)
}

fn describe(v: &StatusView, now: DateTime<Utc>) -> String {
    let s = &v.state;
    let commit = s
        .commit
        .as_deref()
        .map_or("-".to_string(), |c| c[..c.len().min(12)].to_string());
    let phase = match &v.interrupted {
        Some(i) => format!("interrupted (was {}; run `{}`)", i.phase.name(), i.run),
        None => s.phase.name().to_string(),
    };
    let mut text = format!("{}: {phase}, commit {commit}", s.environment);
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
    if let Some(at) = s.synced_at {
        text.push_str(&format!(" at {}", stamp(at)));
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
    let o = &v.outlook;
    for (label, at) in [
        ("expires", o.expires_at),
        ("next teardown", o.next_teardown),
        ("next wake", o.next_wake),
    ] {
        if let Some(at) = at {
            text.push_str(&format!("  {label}: {}\n", when(at, now, v.timezone)));
        }
    }
    if let Some(branch) = branch_state(s) {
        text.push_str(&format!("  branch: {branch}\n"));
    }
    if let Some(error) = &s.last_error {
        text.push_str(&format!("  last error: {error}\n"));
    }
    if let Some(why) = &v.live {
        text.push_str(&format!("  (not refreshed from the cluster: {why})\n"));
    }
    text
}

fn view(session: &Session<'_>, name: &str, now: DateTime<Utc>) -> Result<StatusView> {
    let env = session.environment(name)?;
    let store = session.store();
    let mut state = store.load(name)?;
    let (outlook, timezone) = outlook_of(&env, &state, now);
    let interrupted = interrupted(&store, &state);
    let mut desired_commit = None;
    let mut live_note = None;
    if env.protected {
        live_note = Some("protected: never synced".to_string());
    } else if state.phase == Phase::Asleep {
        live_note = Some("asleep: nothing is running".to_string());
    } else {
        let refreshed = (|| -> Result<()> {
            let ops::Prepared {
                env,
                target,
                mut desired,
            } = session.prepare(name)?;
            desired_commit = Some(desired.commit.clone());
            let observed = runtime()?.block_on(async {
                let mut live = ops::connect(name, &target).await?;
                ops::add_secret_copies(session, &env, &live, &mut desired).await?;
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
        outlook,
        interrupted,
        desired_commit,
        live: live_note,
        timezone,
    })
}
