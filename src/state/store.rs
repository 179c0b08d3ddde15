//! The state store: one record per environment and one lock per environment, in files (the
//! CLI's default) or in a management cluster (`state: {backend: kubernetes}` in sprout.yaml, or
//! `--state kubernetes`), behind one API that every front end and operation uses.

use super::file::FileStore;
use super::kube::KubeStore;
use super::lock::{EnvironmentLock, Wait};
use super::{EnvironmentState, StateError};
use crate::error::{Error, Result};
use crate::project::{Project, StateBackend};
use std::path::Path;

pub enum StateStore {
    File(FileStore),
    Kubernetes(KubeStore),
}

/// How many times [`StateStore::update`] tries a write other writers keep beating.
const UPDATE_ATTEMPTS: u32 = 20;

impl StateStore {
    /// A file store in `state_dir` (what tests and the file backend use).
    pub fn new(state_dir: &Path) -> Self {
        StateStore::File(FileStore::new(state_dir))
    }

    /// The store `project` uses; `user_kubeconfig` (`--kubeconfig`, `KUBECONFIG`) locates the
    /// management cluster of the cluster backend. Connecting waits for the first use.
    pub fn for_project(project: &Project, user_kubeconfig: Option<&Path>) -> Self {
        let settings = &project.settings.state;
        match settings.backend {
            StateBackend::File => StateStore::new(&project.state_dir()),
            StateBackend::Kubernetes => StateStore::Kubernetes(KubeStore::new(
                settings,
                user_kubeconfig,
                project.identity(),
                &project.root,
            )),
        }
    }

    /// Where records live, for messages (`files in .sprout/envs`, `namespace sprout-system`).
    pub fn describe(&self) -> String {
        match self {
            StateStore::File(store) => store.describe(),
            StateStore::Kubernetes(store) => store.describe(),
        }
    }

    /// The environment's record; none yet is a new one. It remembers the version it was read at:
    /// the cluster backend's next [`save`](Self::save) of it fails with a conflict if another
    /// writer changed the record in between.
    pub fn load(&self, env: &str) -> Result<EnvironmentState> {
        match self {
            StateStore::File(store) => store.load(env),
            StateStore::Kubernetes(store) => Ok(store.load(env)?),
        }
    }

    /// Names of the environments that have a record, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        match self {
            StateStore::File(store) => store.names(),
            StateStore::Kubernetes(store) => Ok(store.names()?),
        }
    }

    /// Every record, by environment: one LIST with the cluster backend, where reading them
    /// one by one would cost a request each (`serve` reads them all several times a pass).
    pub fn records(&self) -> Result<std::collections::BTreeMap<String, EnvironmentState>> {
        match self {
            StateStore::File(store) => store
                .names()?
                .into_iter()
                .map(|name| Ok((name.clone(), store.load(&name)?)))
                .collect(),
            StateStore::Kubernetes(store) => Ok(store.records()?),
        }
    }

    /// Writes the record. Callers hold the environment's lock (see [`StateStore::lock`]); the
    /// cluster backend also refuses a write from a stale read ([`StateError::Conflict`]).
    pub fn save(&self, state: &EnvironmentState) -> Result<()> {
        match self {
            StateStore::File(store) => store.save(state),
            StateStore::Kubernetes(store) => Ok(store.save(state)?),
        }
    }

    pub fn remove(&self, env: &str) -> Result<()> {
        match self {
            StateStore::File(store) => store.remove(env),
            StateStore::Kubernetes(store) => Ok(store.remove(env)?),
        }
    }

    /// Keeps `text`, a spec sprout generated, as `env`'s spec: in `file` (the file backend),
    /// or with the record (the cluster backend).
    pub fn save_spec(&self, env: &str, text: &str, file: &Path) -> Result<()> {
        match self {
            StateStore::File(_) => {
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
                }
                std::fs::write(file, text)
                    .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))
            }
            StateStore::Kubernetes(store) => Ok(store.save_spec(env, text)?),
        }
    }

    /// Where a spec kept with `env`'s record is, for messages; None with the file backend.
    pub fn spec_place(&self, env: &str) -> Option<String> {
        match self {
            StateStore::File(_) => None,
            StateStore::Kubernetes(store) => Some(store.spec_place(env)),
        }
    }

    /// The specs kept with the records, by environment; none with the file backend.
    pub fn stored_specs(&self) -> Result<std::collections::BTreeMap<String, String>> {
        match self {
            StateStore::File(_) => Ok(Default::default()),
            StateStore::Kubernetes(store) => Ok(store.stored_specs()?),
        }
    }

    /// Takes the environment's lock for `command`, waiting as `wait` says; `Error::Busy` names
    /// the holder when it gives up.
    pub fn lock(&self, env: &str, command: &str, wait: Wait) -> Result<EnvironmentLock> {
        match self {
            StateStore::File(store) => store.lock(env, command, wait),
            StateStore::Kubernetes(store) => store.lock(env, command, wait),
        }
    }

    /// Whether a running operation holds the environment's lock. A management cluster that
    /// does not answer counts as held: nobody may call the operation interrupted then.
    pub fn is_locked(&self, env: &str) -> bool {
        match self {
            StateStore::File(store) => store.is_locked(env),
            StateStore::Kubernetes(store) => store.is_locked(env).unwrap_or(true),
        }
    }

    /// Reads the record, changes it with `change` and writes it, again from a fresh read when
    /// another writer got in between: no update is lost. For writers that do not hold the
    /// environment's lock for long (recording a webhook, a listing); returns what was written.
    pub fn update(
        &self,
        env: &str,
        mut change: impl FnMut(&mut EnvironmentState),
    ) -> Result<EnvironmentState> {
        for attempt in 1..=UPDATE_ATTEMPTS {
            let mut state = self.load(env)?;
            change(&mut state);
            match self.save(&state) {
                Err(Error::State(StateError::Conflict { .. })) => {
                    // Writers that collided retry at different moments, or they collide again.
                    let mut random = [0u8; 1];
                    let _ = getrandom::fill(&mut random);
                    let spread = u64::from(attempt.min(5)) * 10;
                    std::thread::sleep(std::time::Duration::from_millis(
                        u64::from(random[0]) % spread.max(1),
                    ));
                    continue;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(state),
            }
        }
        Err(StateError::Conflict {
            env: env.to_string(),
        }
        .into())
    }
}
