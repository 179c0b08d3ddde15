//! `down`: delete everything sprout created for the environment (its cluster, or on a shared
//! cluster the objects of its inventory), then its record, then its spec. Also the first half of
//! `sleep` ([`release`]). Killed at any point, the next run finishes: each step is idempotent
//! and the spec, which names the environment, goes last.

use super::{Held, Session, connect};
use crate::cluster::provider::{self, Removal};
use crate::cluster::{self, ClusterError};
use crate::error::{Error, InStage, Result, Stage};
use crate::spec::Environment;
use crate::state::{EnvironmentState, Phase};
use crate::sync::{self, ChangeSet};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct DownRequest {
    pub keep_spec: bool,
    /// Delete a whole cluster even when it holds objects marked to survive teardown.
    pub force: bool,
}

/// What releasing an environment's resources did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Released {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_deleted: Option<String>,
    /// The cluster was not there to delete (deleted out of band, or by an interrupted run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_already_gone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<ChangeSet>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownOutcome {
    pub environment: String,
    #[serde(flatten)]
    pub released: Released,
    pub spec_removed: bool,
    /// The user's kubeconfig that lost context `sprout-<env>` (added by `up --merge-kubeconfig`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_removed_from: Option<String>,
}

pub async fn down(
    session: &Session<'_>,
    name: &str,
    request: &DownRequest,
    command: &str,
) -> Result<DownOutcome> {
    let env = session.environment(name)?;
    if env.protected {
        return Err(ClusterError::Protected).in_stage(name, Stage::Cluster);
    }
    let mut held = super::hold(session, &env, command)?;
    let result = down_held(session, &mut held, &env, request).await;
    match result {
        Ok(_) => held.release_for_good().await,
        Err(_) => held.release().await,
    }
    result
}

async fn down_held(
    session: &Session<'_>,
    held: &mut Held,
    env: &Environment,
    request: &DownRequest,
) -> Result<DownOutcome> {
    let store = session.store();
    let mut state = store.load(&env.name)?;
    let released = release(
        session,
        held,
        env,
        &mut state,
        Phase::Deleting,
        request.force,
    )
    .await?;
    let context_removed_from = remove_user_context(session, &env.name)?;
    // The record takes a spec kept with it along: a kept one goes to the checkout.
    if request.keep_spec
        && let Some(text) = session.project.stored_spec(&env.name)
    {
        let path = session.project.spec_path(&env.name);
        std::fs::create_dir_all(path.parent().expect("a spec path has a folder"))
            .and_then(|_| std::fs::write(&path, text))
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    store.remove(&env.name)?;
    let mut spec_removed = false;
    if !request.keep_spec {
        let path = session.project.spec_path(&env.name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("cannot remove {}", path.display()), e));
            }
            _ => spec_removed = true,
        }
    }
    Ok(DownOutcome {
        environment: env.name.clone(),
        released,
        spec_removed,
        context_removed_from,
    })
}

/// Deletes what the environment costs — its cluster, or its objects on a shared cluster — and
/// sprout's files for that cluster, recording `phase` while it works. The record stays (the
/// caller decides: `down` removes it, `sleep` keeps it).
pub(super) async fn release(
    session: &Session<'_>,
    held: &mut Held,
    env: &Environment,
    state: &mut EnvironmentState,
    phase: Phase,
    force: bool,
) -> Result<Released> {
    let project = &session.project;
    let store = session.store();
    let shared = env.on_shared_cluster() && state.cluster.is_none();
    if !shared && !force {
        let kubeconfig = cluster::owned_kubeconfig(project, &env.name);
        refuse_if_it_holds_kept_objects(session, env, &kubeconfig).await?;
    }
    state.phase = phase;
    store.save(state)?;
    let mut released = Released::default();
    let result = async {
        if shared {
            session
                .progress
                .phase("deleting the environment's objects from the shared cluster");
            let target = cluster::target_for(project, env, session.user_kubeconfig())
                .in_stage(&env.name, Stage::Cluster)?;
            let mut live = connect(&env.name, &target).await?;
            held.guard_cluster(env, &mut live, None).await?;
            released.objects = Some(
                sync::teardown(&mut live, owner(env), env.target_namespace(), true)
                    .await
                    .in_stage(&env.name, Stage::Sync)?,
            );
        } else if state.cluster.is_some() || env.cluster.is_some() {
            let backend = provider::for_environment(project, env, state.cluster.as_ref())
                .in_stage(&env.name, Stage::Cluster)?;
            let kubeconfig = cluster::owned_kubeconfig(project, &env.name);
            let removal = backend
                .delete(&kubeconfig, session.progress)
                .await
                .in_stage(&env.name, Stage::Cluster)?;
            let name = Some(backend.record().name);
            match removal {
                Removal::Deleted => released.cluster_deleted = name,
                Removal::AlreadyGone => released.cluster_already_gone = name,
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(error) = result {
        state.phase = Phase::Failed;
        state.last_error = Some(error.to_string());
        store.save(state)?;
        return Err(error);
    }
    let dir = provider::cluster_dir(project, &env.name);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(format!("cannot remove {}", dir.display()), e));
        }
        _ => {}
    }
    state.cluster = None;
    Ok(released)
}

fn owner(env: &Environment) -> sync::Owner<'_> {
    sync::Owner {
        env: &env.name,
        project: &env.project,
    }
}

fn remove_user_context(session: &Session<'_>, env: &str) -> Result<Option<String>> {
    let user_kubeconfig = session.user_kubeconfig.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".kube/config")
    });
    let removed = crate::cluster::kubeconfig::remove(&user_kubeconfig, &format!("sprout-{env}"))?;
    Ok(removed.then(|| user_kubeconfig.display().to_string()))
}

/// Deleting a whole cluster deletes objects marked to survive teardown: refuse, naming them.
/// A cluster that does not answer (deleted out of band, broken) cannot be checked and must not
/// block its own removal.
async fn refuse_if_it_holds_kept_objects(
    session: &Session<'_>,
    env: &Environment,
    kubeconfig: &std::path::Path,
) -> Result<()> {
    if !kubeconfig.is_file() {
        return Ok(());
    }
    let target = cluster::Target {
        kubeconfig: kubeconfig.to_path_buf(),
        context: None,
    };
    let check = async {
        let mut live = connect(&env.name, &target).await?;
        sync::marked_to_survive(&mut live, owner(env), env.target_namespace())
            .await
            .in_stage(&env.name, Stage::Sync)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), check).await {
        Ok(Ok(marked)) if !marked.is_empty() => {
            Err(ClusterError::HoldsKeptObjects { objects: marked })
                .in_stage(&env.name, Stage::Cluster)
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            session.progress.phase(&format!(
                "could not check for objects marked to survive ({e}); deleting the cluster"
            ));
            Ok(())
        }
        Err(_) => {
            session
                .progress
                .phase("the cluster did not answer in 30 s; deleting it");
            Ok(())
        }
    }
}
