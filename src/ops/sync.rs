//! `sync`: re-resolve the environment's ref and converge its cluster (apply, prune, health),
//! recording the outcome. Also the second half of `up` and `wake` ([`converge`]).

use super::{Prepared, Session, add_secret_copies, connect};
use crate::cluster::Target;
use crate::desired::DesiredState;
use crate::error::{InStage, Result, Stage};
use crate::spec::Environment;
use crate::state::{Counts, EnvironmentState, Phase, now};
use crate::sync::health::Health;
use crate::sync::{self, SyncOptions, SyncPlan, SyncReport};

/// What `sync` did: the report of the apply, and the desired state it converged to.
pub struct SyncOutcome {
    pub environment: String,
    pub report: SyncReport,
    /// Where it answers (its Ingress hosts).
    pub urls: Vec<String>,
}

pub async fn sync(session: &Session<'_>, name: &str, options: &SyncOptions) -> Result<SyncOutcome> {
    let env = session.environment(name)?;
    let target = crate::cluster::target_for(&session.project, &env, session.user_kubeconfig())
        .in_stage(&env.name, Stage::Cluster)?;
    // The cluster is read while the source is read and forked (a cluster far away answers in
    // the time the source takes), and only then is anything it said looked at: a source that
    // fails still fails first.
    let early = super::early::EarlyReads::start(&session.project, &env, &target);
    let desired = crate::desired::compute(&session.project, &env)?;
    let mut prepared = Prepared {
        env,
        target,
        desired,
    };
    let mut held = super::hold(session, &prepared.env, &format!("sync {name}"))?;
    let mut state = session.store().load(name)?;
    let early = match early {
        Some(early) => Some(early.finish(name).await?),
        None => None,
    };
    let Prepared {
        env,
        target,
        desired,
    } = &mut prepared;
    let report = converge(
        session, &mut held, env, target, desired, &mut state, options, early,
    )
    .await;
    held.release().await;
    let report = report?;
    let outcome = SyncOutcome {
        environment: env.name.clone(),
        report,
        urls: super::urls_of(&desired.objects),
    };
    sync::free_later(prepared);
    Ok(outcome)
}

/// Syncs `desired` into the cluster and records the outcome in `state`: the shared core of
/// `sync`, `up` and `wake`. The caller holds the environment's local lock; the cluster-side one
/// is taken here, once the desired state is complete. `early`: what the caller already read
/// of a shared cluster (see [`super::early`]).
#[allow(clippy::too_many_arguments)]
pub async fn converge(
    session: &Session<'_>,
    held: &mut super::Held,
    env: &Environment,
    target: &Target,
    desired: &mut DesiredState,
    state: &mut EnvironmentState,
    options: &SyncOptions,
    early: Option<super::early::Early>,
) -> Result<SyncReport> {
    let store = session.store();
    state.reference = Some(env.source.reference.clone());
    state.timeline.created_at.get_or_insert_with(now);

    let outcome = async {
        let (mut live, early) = match early {
            Some(early) => (early.live, Some(early.reads)),
            None => (connect(&env.name, target).await?, None),
        };
        add_secret_copies(session, env, &live, desired).await?;
        let plan = SyncPlan::new(env, desired);
        let remember_reads = |live: &crate::sync::live::Live| {
            if env.on_shared_cluster() {
                let keys = crate::sync::snapshot::Listed::keys_of(live, plan.objects);
                super::early::remember(&session.project, &env.name, &keys);
            }
        };
        if let Some(report) = held
            .sync_on_shared_cluster(env, &mut live, &plan, options, early)
            .await?
        {
            remember_reads(&live);
            return Ok(report);
        }
        // About to write: the record says so first, so that a run cut short is seen as one.
        // (A sync that needs no write leaves the record as it was until it is done.)
        state.phase = Phase::Syncing;
        store.save(state)?;
        held.guard_cluster(env, &mut live, Some((&plan, options)))
            .await?;
        let result = sync::sync(&mut live, &plan, options, held.created_namespace())
            .await
            .in_stage(&env.name, Stage::Sync);
        if result.is_ok() {
            remember_reads(&live);
        }
        if result.is_err()
            && let Some(namespace) = held.created_namespace()
        {
            undo_namespace(session, &live, namespace).await;
        }
        result
    }
    .await;
    let mut outcome = outcome;
    if let (Ok(report), Some(namespace)) = (&mut outcome, held.created_namespace()) {
        let name = format!("Namespace/{namespace}");
        let changes = &mut report.changes;
        if let Some(at) = changes.configured.iter().position(|c| *c == name) {
            changes.configured.remove(at);
            changes.created.insert(0, name);
        } else if !changes.created.contains(&name) && changes.unchanged > 0 {
            changes.unchanged -= 1;
            changes.created.insert(0, name);
        }
    }
    if outcome.is_ok() && env.on_shared_cluster() {
        crate::state::shared_clusters::remember(&session.project.state_dir(), target)?;
    }
    match &outcome {
        Ok(report) => {
            let failed = report.health.as_ref().is_some_and(|h| h.failed > 0);
            state.phase = if failed {
                Phase::Degraded
            } else {
                Phase::Synced
            };
            state.commit = Some(report.commit.clone());
            state.synced_at = Some(now());
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
    store.save(state)?;
    outcome
}

/// A first sync that failed before its inventory was written leaves nothing to track the
/// namespace its lock was made in: delete it (best effort, with the lock in it), so that no
/// orphaned namespace stays behind. Once an inventory exists, `down` owns the cleanup.
async fn undo_namespace(session: &Session<'_>, live: &crate::sync::live::Live, namespace: &str) {
    match sync::inventory::exists(live, namespace).await {
        Ok(false) => {}
        _ => return,
    }
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(live.client.clone());
    if api.delete(namespace, &Default::default()).await.is_ok() {
        session.progress.phase(&format!(
            "deleted namespace {namespace}: this sync made it and failed before recording anything in it"
        ));
    }
}

/// Objects that failed their health check, named (an operation that leaves any fails).
pub fn failed_objects(report: &SyncReport) -> Vec<String> {
    report
        .health
        .iter()
        .flat_map(|h| h.objects.iter())
        .filter_map(|o| match &o.health {
            Health::Failed(why) => Some(format!("{} ({why})", o.object)),
            _ => None,
        })
        .collect()
}

/// After the report is shown: failed objects make the run fail (exit 1), naming each.
pub fn require_healthy(env: &str, report: &SyncReport) -> Result<()> {
    let failed = failed_objects(report);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(crate::Error::Unhealthy {
            env: env.to_string(),
            failed,
        })
    }
}
