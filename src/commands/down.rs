//! `sprout down ENV`: delete everything sprout created for the environment (its cluster, or on a
//! shared cluster the objects of its inventory), then its local state, then its spec.
//! Killed at any point, the next run finishes: each step is idempotent and the spec, which names
//! the environment, goes last.

use super::{Context, print_structured, runtime};
use crate::cli::{DownArgs, Format};
use crate::cluster::provider::{Progress, Removal};
use crate::cluster::{self, provider};
use crate::error::{Error, InStage, Result, Stage};
use crate::progress::Spinner;
use crate::spec::Environment;
use crate::state::{Phase, StateStore};
use crate::sync::{self, ChangeSet};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DownOutcome {
    environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_deleted: Option<String>,
    /// The cluster was not there to delete (deleted out of band, or by an interrupted `down`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_already_gone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<ChangeSet>,
    spec_removed: bool,
}

pub fn run(context: &Context, args: &DownArgs) -> Result<()> {
    let project = context.project()?;
    let name = &args.env;
    let env = project.environment(name).in_stage(name, Stage::Spec)?;
    if env.protected {
        return Err(cluster::ClusterError::Protected).in_stage(name, Stage::Cluster);
    }
    let store = StateStore::new(&project.state_dir());
    let state = store.load(name)?;
    let shared = env.on_shared_cluster() && state.cluster.is_none();
    let spinner = Spinner::new(context.quiet);
    if !shared && !args.force {
        let kubeconfig = cluster::owned_kubeconfig(&project, name);
        runtime()?.block_on(refuse_if_it_holds_kept_objects(&env, &kubeconfig, &spinner))?;
    }
    let mut outcome = DownOutcome {
        environment: name.clone(),
        cluster_deleted: None,
        cluster_already_gone: None,
        objects: None,
        spec_removed: false,
    };
    {
        let _lock = store.lock(name)?;
        let mut deleting = state.clone();
        deleting.phase = Phase::Deleting;
        store.save(&deleting)?;
        let result = runtime()?.block_on(async {
            if shared {
                spinner.phase("deleting the environment's objects from the shared cluster");
                outcome.objects = Some(teardown_shared(context, &project, &env).await?);
            } else if state.cluster.is_some() || env.cluster.is_some() {
                let backend = provider::for_environment(&project, &env, state.cluster.as_ref())
                    .in_stage(name, Stage::Cluster)?;
                let kubeconfig = cluster::owned_kubeconfig(&project, name);
                let removal = backend
                    .delete(&kubeconfig, &spinner)
                    .await
                    .in_stage(name, Stage::Cluster)?;
                let cluster = Some(backend.record().name);
                match removal {
                    Removal::Deleted => outcome.cluster_deleted = cluster,
                    Removal::AlreadyGone => outcome.cluster_already_gone = cluster,
                }
            }
            Ok::<_, Error>(())
        });
        spinner.finish();
        if let Err(error) = result {
            deleting.phase = Phase::Failed;
            deleting.last_error = Some(error.to_string());
            store.save(&deleting)?;
            return Err(error);
        }
        let dir = provider::cluster_dir(&project, name);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("cannot remove {}", dir.display()), e));
            }
            _ => {}
        }
        let user_kubeconfig = context.kubeconfig.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_default()
                .join(".kube/config")
        });
        if super::kubeconfig::remove(&user_kubeconfig, &format!("sprout-{name}"))? {
            context.note(format!(
                "removed context sprout-{name} from {}",
                user_kubeconfig.display()
            ));
        }
        store.remove(name)?;
    }
    if !args.keep_spec {
        let path = project.spec_path(name);
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))?;
        outcome.spec_removed = true;
    }
    if context.format != Format::Table {
        return print_structured(context.format, &outcome);
    }
    let mut text = format!("{name}: down");
    if let Some(cluster) = &outcome.cluster_deleted {
        text.push_str(&format!(", cluster {cluster} deleted"));
    }
    if let Some(cluster) = &outcome.cluster_already_gone {
        text.push_str(&format!(", cluster {cluster} was already gone"));
    }
    if let Some(objects) = &outcome.objects {
        text.push_str(&format!(", {} objects deleted", objects.pruned.len()));
        for kept in &objects.kept {
            text.push_str(&format!("\n  kept     {kept}"));
        }
    }
    if outcome.spec_removed {
        text.push_str(&format!(", {} removed", env.file));
    }
    super::print(&format!("{text}\n"))
}

/// Deleting a whole cluster deletes objects marked to survive teardown: refuse, naming them.
/// A cluster that does not answer (deleted out of band, broken) cannot be checked and must not
/// block its own removal.
async fn refuse_if_it_holds_kept_objects(
    env: &Environment,
    kubeconfig: &std::path::Path,
    spinner: &Spinner,
) -> Result<()> {
    if !kubeconfig.is_file() {
        return Ok(());
    }
    let target = cluster::Target {
        kubeconfig: kubeconfig.to_path_buf(),
        context: None,
    };
    let check = async {
        let mut live = super::sync::connect(&env.name, &target).await?;
        sync::marked_to_survive(&mut live, &env.name, env.target_namespace())
            .await
            .in_stage(&env.name, Stage::Sync)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), check).await {
        Ok(Ok(marked)) if !marked.is_empty() => {
            Err(cluster::ClusterError::HoldsKeptObjects { objects: marked })
                .in_stage(&env.name, Stage::Cluster)
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            spinner.phase(&format!(
                "could not check for objects marked to survive ({e}); deleting the cluster"
            ));
            Ok(())
        }
        Err(_) => {
            spinner.phase("the cluster did not answer in 30 s; deleting it");
            Ok(())
        }
    }
}

async fn teardown_shared(
    context: &Context,
    project: &crate::project::Project,
    env: &Environment,
) -> Result<ChangeSet> {
    let target = cluster::target_for(project, env, context.kubeconfig.as_deref())
        .in_stage(&env.name, Stage::Cluster)?;
    let mut live = super::sync::connect(&env.name, &target).await?;
    sync::teardown(&mut live, &env.name, env.target_namespace())
        .await
        .in_stage(&env.name, Stage::Sync)
}
