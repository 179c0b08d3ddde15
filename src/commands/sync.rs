//! `sprout sync ENV`: re-resolve the source ref and converge (apply + prune + health).

use super::{Context, print, print_structured, runtime};
use crate::cli::{ConvergeArgs, Format, SyncArgs};
use crate::cluster::{self, Target};
use crate::desired::DesiredState;
use crate::error::{InStage, Result, Stage};
use crate::project::Project;
use crate::spec::Environment;
use crate::state::{Counts, Phase, StateStore, now_rfc3339};
use crate::sync::health::{Health, HealthReport};
use crate::sync::{self, SyncOptions, SyncPlan, SyncReport, live::Live, secret_copies};
use std::collections::BTreeMap;
use std::path::Path;

pub fn run(context: &Context, args: &SyncArgs) -> Result<()> {
    let mut p = super::prepare(context, &args.env)?;
    let report = runtime()?.block_on(converge(
        &p.project,
        &p.env,
        &p.target,
        &mut p.desired,
        context.kubeconfig.as_deref(),
        &args.converge,
    ))?;
    show(context, &p.env.name, &report)?;
    require_healthy(&p.env.name, &report)
}

/// After the report is shown: failed objects make the run fail (exit 1), naming each.
pub fn require_healthy(env: &str, report: &SyncReport) -> Result<()> {
    let failed: Vec<String> = report
        .health
        .iter()
        .flat_map(|h| h.objects.iter())
        .filter_map(|o| match &o.health {
            Health::Failed(why) => Some(format!("{} ({why})", o.object)),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(crate::Error::Unhealthy {
            env: env.to_string(),
            failed,
        })
    }
}

/// Completes `desired` with what only a cluster can provide: the Secrets the environment copies
/// from its allow-listed source (`overlay.secrets: copy`), read from `live` or, when the source
/// names a context, from that context of the user's kubeconfig. Only read, never written.
pub async fn add_secret_copies(
    project: &Project,
    env: &Environment,
    live: &Live,
    user_kubeconfig: Option<&Path>,
    desired: &mut DesiredState,
) -> Result<()> {
    let Some((copy, source)) = project
        .secret_copy_of(env)
        .in_stage(&env.name, Stage::Spec)?
    else {
        return Ok(());
    };
    let elsewhere = match &source.context {
        Some(context) => {
            Some(connect(&env.name, &cluster::user_context(context, user_kubeconfig)).await?)
        }
        None => None,
    };
    let copies = secret_copies::read(
        elsewhere.as_ref().unwrap_or(live),
        copy,
        &env.name,
        env.target_namespace(),
    )
    .await
    .in_stage(&env.name, Stage::Sync)?;
    desired.add(copies);
    Ok(())
}

pub async fn connect(env: &str, target: &Target) -> Result<Live> {
    let client = cluster::client(target)
        .await
        .in_stage(env, Stage::Cluster)?;
    Ok(Live::new(client, cluster::server_of(target)))
}

/// Syncs `desired` into the cluster and records the outcome in the state store: the shared
/// core of `sync` and `up`. The environment's lock is held throughout.
pub async fn converge(
    project: &Project,
    env: &Environment,
    target: &Target,
    desired: &mut DesiredState,
    user_kubeconfig: Option<&Path>,
    args: &ConvergeArgs,
) -> Result<SyncReport> {
    let store = StateStore::new(&project.state_dir());
    let _lock = store.lock(&env.name)?;
    let mut state = store.load(&env.name)?;
    state.phase = Phase::Syncing;
    state.reference = Some(env.source.reference.clone());
    state.created_at.get_or_insert_with(now_rfc3339);
    store.save(&state)?;

    let options = SyncOptions {
        concurrency: usize::from(args.concurrency),
        wait: !args.no_wait,
        timeout: args.timeout,
    };
    let outcome = async {
        let mut live = connect(&env.name, target).await?;
        add_secret_copies(project, env, &live, user_kubeconfig, desired).await?;
        let plan = SyncPlan::new(env, desired);
        sync::sync(&mut live, &plan, &options)
            .await
            .in_stage(&env.name, Stage::Sync)
    }
    .await;
    match &outcome {
        Ok(report) => {
            let failed = report.health.as_ref().is_some_and(|h| h.failed > 0);
            state.phase = if failed {
                Phase::Degraded
            } else {
                Phase::Synced
            };
            state.commit = Some(report.commit.clone());
            state.synced_at = Some(now_rfc3339());
            state.counts = Counts {
                created: report.changes.created.len(),
                configured: report.changes.configured.len(),
                unchanged: report.changes.unchanged,
                pruned: report.changes.pruned.len(),
            };
            state.health = report.health.clone();
            state.drift = Some(Vec::new());
            state.last_error = None;
        }
        Err(error) => {
            state.phase = Phase::Failed;
            state.last_error = Some(error.to_string());
        }
    }
    store.save(&state)?;
    outcome
}

pub fn show(context: &Context, env: &str, report: &SyncReport) -> Result<()> {
    if context.format != Format::Table {
        return print_structured(
            context.format,
            &serde_json::json!({"environment": env, "report": report}),
        );
    }
    let c = &report.changes;
    let mut text = format!(
        "{env}: synced {} — {} created, {} configured, {} unchanged, {} pruned\n",
        &report.commit[..report.commit.len().min(12)],
        c.created.len(),
        c.configured.len(),
        c.unchanged,
        c.pruned.len()
    );
    for (label, list) in [
        ("recreated", &c.recreated),
        ("pruned", &c.pruned),
        ("kept", &c.kept),
        ("shared", &c.shared),
        ("deleting", &c.deleting),
    ] {
        for item in list {
            text.push_str(&format!("  {label:9} {item}\n"));
        }
    }
    if let Some(health) = &report.health {
        text.push_str(&health_lines(health));
    }
    print(&text)
}

/// The health summary, then each object that is not healthy; objects that cannot run for the
/// same reason (a node-less cluster) are counted on one line rather than listed.
pub fn health_lines(health: &HealthReport) -> String {
    let mut text = format!("  health: {}\n", health.summary());
    let mut cannot_run: BTreeMap<&str, usize> = BTreeMap::new();
    for object in &health.objects {
        let (state, why) = match &object.health {
            Health::Progressing(w) => ("progressing", w.as_str()),
            Health::Failed(w) => ("failed", w.as_str()),
            Health::CannotRun(w) => {
                *cannot_run.entry(w.as_str()).or_default() += 1;
                continue;
            }
            Health::Healthy => continue,
        };
        text.push_str(&format!("    {state:11} {} ({why})\n", object.object));
    }
    for (why, count) in cannot_run {
        text.push_str(&format!("    cannot run  {count} workload(s): {why}\n"));
    }
    text
}
