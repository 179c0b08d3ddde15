//! A sync on a shared cluster starts reading the cluster before its desired state is known:
//! the environment's namespace, its Lease, its inventory, and the live state of the kinds and
//! namespaces it synced last time, read in the background while the source is read and forked.
//! On a cluster far away those round trips then cost no time of their own.
//!
//! Which LISTs to start is a hint kept on this machine (`<stateDir>/cache/reads/<env>.json`,
//! written after each sync); without one, the LISTs follow the inventory once it is read (a
//! round trip later). A wrong or stale hint costs requests, never correctness: the sync lists
//! whatever its desired state needs that was not read ahead, and these reads decide nothing
//! that is written (see [`super::Held::sync_on_shared_cluster`]).

use super::connect;
use crate::cluster::Target;
use crate::error::{Result, Stage};
use crate::project::Project;
use crate::spec::Environment;
use crate::state::lease::Seen;
use crate::sync::live::Live;
use crate::sync::snapshot::{ListKey, Listed};
use crate::sync::{Owner, ReadAhead, SyncError, inventory::Inventory};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The reads under way.
pub struct EarlyReads {
    task: Option<tokio::task::JoinHandle<Result<Early>>>,
}

impl Drop for EarlyReads {
    /// Not waited for (the source failed first): not left running either.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A connection to an environment's cluster and what was read through it early.
pub struct Early {
    pub live: Live,
    pub reads: EarlyRead,
}

pub struct EarlyRead {
    pub seen: std::result::Result<Seen, kube::Error>,
    pub ahead: ReadAhead,
}

impl EarlyReads {
    /// Starts the reads, for an environment on a shared cluster (None for others: only this
    /// machine reaches their clusters, and they have no Lease to read). A failure to connect
    /// is kept for [`EarlyReads::finish`].
    pub fn start(project: &Project, env: &Environment, target: &Target) -> Option<EarlyReads> {
        if !env.on_shared_cluster() {
            return None;
        }
        let hint = hint_path(project, &env.name);
        let (env_name, target) = (env.name.clone(), target.clone());
        let (namespace, project) = (env.target_namespace().to_string(), env.project.clone());
        let task = tokio::spawn(async move {
            let lap = crate::sync::laps(&env_name, "early reads");
            let live = connect(&env_name, &target).await?;
            lap("connected");
            let owner = Owner {
                env: &env_name,
                project: &project,
            };
            let hinted = read_hint(&hint);
            // No hint: never synced from here, most likely a first sync, with objects to
            // create and their fields to check against the server's schema. A kept copy of
            // that schema is confirmed now, beside the reads, rather than a round trip later.
            // (A sync that has a hint is most often one with nothing to create, which asks for
            // no schema.)
            let first_sync = hinted.is_empty();
            let (seen, (inventory, mut listed), ()) = futures::future::join3(
                Seen::read(&live.client, &namespace),
                futures::future::join(
                    Inventory::load(&live, &namespace, owner),
                    Listed::ahead(&live, &hinted),
                ),
                async {
                    if first_sync {
                        crate::sync::schema::confirm_kept(&live).await
                    }
                },
            )
            .await;
            lap("lease, inventory and hinted lists read");
            // No namespace, nothing in it: what the sync would list there is known.
            if seen.as_ref().is_ok_and(|seen| seen.namespace.is_none()) {
                listed.mark_absent(&namespace);
            }
            // What the inventory records and the hint did not name: listed now.
            if let Ok(inventory) = &inventory {
                let missing: BTreeSet<ListKey> = Listed::keys_of_inventory(&live, inventory)
                    .difference(&hinted)
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    listed.merge(Listed::ahead(&live, &missing).await);
                    lap("lists the hint missed read");
                }
            }
            Ok(Early {
                live,
                reads: EarlyRead {
                    seen,
                    ahead: ReadAhead {
                        inventory: Some(inventory),
                        listed,
                    },
                },
            })
        });
        Some(EarlyReads { task: Some(task) })
    }

    /// Waits for the reads: the connection and what was read, or why it could not connect.
    pub async fn finish(mut self, env: &str) -> Result<Early> {
        let task = self.task.take().expect("finished once");
        task.await.unwrap_or_else(|e| {
            Err(crate::Error::from(SyncError::Api {
                what: "read the cluster".into(),
                message: e.to_string(),
            })
            .stage(env, Stage::Sync))
        })
    }
}

fn hint_path(project: &Project, env: &str) -> PathBuf {
    project
        .state_dir()
        .join("cache")
        .join("reads")
        .join(format!("{env}.json"))
}

fn read_hint(path: &std::path::Path) -> BTreeSet<ListKey> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Remembers which LISTs `env`'s sync needed (`keys`), for the next sync to start them early.
/// Best effort: a hint that cannot be written only costs the next sync a round trip.
pub fn remember(project: &Project, env: &str, keys: &BTreeSet<ListKey>) {
    let path = hint_path(project, env);
    if read_hint(&path) == *keys {
        return;
    }
    let Some(dir) = path.parent() else { return };
    let written = std::fs::create_dir_all(dir).and_then(|_| {
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(
            &mut file,
            &serde_json::to_vec(keys).expect("keys serialize"),
        )?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(())
    });
    if let Err(e) = written {
        tracing::debug!(error = %e, "remembering the reads of {env}");
    }
}
