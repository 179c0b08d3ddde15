//! Stage 5, status: what sprout knows about each environment, in `<stateDir>/envs/<env>.json`
//! (one file per environment, written atomically), with a lock so two runs never sync the
//! same environment at once.

use crate::error::{Error, Result};
use crate::sync::health::HealthReport;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    #[default]
    New,
    Provisioning,
    Syncing,
    /// Applied and healthy (objects that cannot run on a node-less cluster are reported).
    Synced,
    /// Applied, but objects failed their health check.
    Degraded,
    Failed,
    Deleting,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub created: usize,
    pub configured: usize,
    pub unchanged: usize,
    pub pruned: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentState {
    pub environment: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// RFC 3339 times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<String>,
    #[serde(default)]
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthReport>,
    /// Objects that differed from git at the last check, if any check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The cluster sprout created for the environment, if it created one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::provider::ClusterRecord>,
}

pub struct StateStore {
    dir: PathBuf,
}

/// Held while an environment is being changed; released when dropped (the file closes).
pub struct EnvironmentLock {
    _file: std::fs::File,
}

impl StateStore {
    pub fn new(state_dir: &Path) -> Self {
        StateStore {
            dir: state_dir.join("envs"),
        }
    }

    fn path(&self, env: &str) -> PathBuf {
        self.dir.join(format!("{env}.json"))
    }

    pub fn load(&self, env: &str) -> Result<EnvironmentState> {
        let path = self.path(env);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Error::io(
                    format!("{} is unreadable", path.display()),
                    std::io::Error::other(e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EnvironmentState {
                environment: env.to_string(),
                ..Default::default()
            }),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }

    /// Writes to a temporary file in the same folder, then renames: a reader never sees half a file.
    pub fn save(&self, state: &EnvironmentState) -> Result<()> {
        let io = |what: &str, e| Error::io(format!("{what} {}", self.dir.display()), e);
        std::fs::create_dir_all(&self.dir).map_err(|e| io("cannot create", e))?;
        let mut file =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| io("cannot write into", e))?;
        serde_json::to_writer_pretty(&mut file, state)
            .map_err(|e| io("cannot write into", std::io::Error::other(e)))?;
        file.persist(self.path(&state.environment))
            .map_err(|e| io("cannot write into", e.error))?;
        Ok(())
    }

    pub fn remove(&self, env: &str) -> Result<()> {
        match std::fs::remove_file(self.path(env)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                format!("cannot remove {}", self.path(env).display()),
                e,
            )),
            _ => Ok(()),
        }
    }

    /// Takes the environment's lock, failing at once (not waiting) when another run holds it.
    pub fn lock(&self, env: &str) -> Result<EnvironmentLock> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("cannot create {}", self.dir.display()), e))?;
        let path = self.dir.join(format!("{env}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(EnvironmentLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy {
                env: env.to_string(),
            }),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("cannot lock {}", path.display()), e))
            }
        }
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
