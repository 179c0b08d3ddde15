//! Stage 5, status: what sprout knows about each environment — a versioned record per
//! environment ([`EnvironmentState`]), kept by a [`store::StateStore`] (files under .sprout/, or
//! custom resources in a management cluster) and changed only under the environment's [`lock`].

mod bridge;
pub mod file;
pub mod kube;
pub mod leader;
pub mod lease;
pub mod lock;
pub mod shared_clusters;
pub mod store;

pub use lock::{EnvironmentLock, Holder};
pub use store::StateStore;

/// Failures of the cluster state backend.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another writer changed the record since it was read: two writers never both win.
    #[error(
        "environment {env}: its record was changed by another writer since it was read; read it again and retry"
    )]
    Conflict { env: String },
    /// The management cluster refused or did not answer (the message says which and why).
    #[error("state backend (namespace {namespace}): {message}")]
    Cluster { namespace: String, message: String },
    #[error(
        "state backend (namespace {namespace}): Environment {name} belongs to project `{owner}`, not to this project (`{project}`); use another namespace"
    )]
    NotOurs {
        namespace: String,
        name: String,
        owner: String,
        project: String,
    },
    #[error("state backend: Environment {name} is unreadable: {message}")]
    Unreadable { name: String, message: String },
}

/// The version of the stored object a record was read at (the cluster backend's
/// `resourceVersion`): the precondition of its next write, updated by each write. Never
/// serialized; a copy carries the same version.
#[derive(Debug, Default)]
pub struct Revision(std::sync::Mutex<Option<String>>);

impl Revision {
    pub fn get(&self) -> Option<String> {
        self.0.lock().expect("revision lock").clone()
    }

    pub fn set(&self, version: Option<String>) {
        *self.0.lock().expect("revision lock") = version;
    }
}

impl Clone for Revision {
    fn clone(&self) -> Self {
        Revision(std::sync::Mutex::new(self.get()))
    }
}

use crate::sync::health::HealthReport;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The record layout this sprout writes; a record of a newer layout is refused, not misread.
pub const RECORD_VERSION: u32 = 2;

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
    /// Its cluster (or, on a shared cluster, its objects) is being deleted to put it to sleep.
    Sleeping,
    /// Torn down by schedule, spec and record kept; `wake` (or its wake schedule) brings it back.
    Asleep,
    Deleting,
}

impl Phase {
    /// A phase only a running operation holds: seen without that operation's lock, the operation
    /// was interrupted.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            Phase::Provisioning | Phase::Syncing | Phase::Sleeping | Phase::Deleting
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::New => "new",
            Phase::Provisioning => "provisioning",
            Phase::Syncing => "syncing",
            Phase::Synced => "synced",
            Phase::Degraded => "degraded",
            Phase::Failed => "failed",
            Phase::Sleeping => "sleeping",
            Phase::Asleep => "asleep",
            Phase::Deleting => "deleting",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub created: usize,
    pub configured: usize,
    pub unchanged: usize,
    pub pruned: usize,
}

/// The times the lifecycle decides from. An environment is due for a scheduled teardown when a
/// teardown time has passed since its [`anchor`](Timeline::anchor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub woken_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_at: Option<DateTime<Utc>>,
    /// Set by `sprout extend`: replaces creation + ttl as the expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Set by `sprout extend --skip-next`: scheduled teardowns up to this time do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_teardown_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asleep_since: Option<DateTime<Utc>>,
}

impl Timeline {
    /// Since when a scheduled teardown counts: the last create, wake, extend or skipped teardown.
    pub fn anchor(&self) -> Option<DateTime<Utc>> {
        [
            self.created_at,
            self.woken_at,
            self.extended_at,
            self.skip_teardown_until,
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// The explicit expiry, else creation + `ttl`.
    pub fn expiry(&self, ttl: Option<std::time::Duration>) -> Option<DateTime<Utc>> {
        if self.expires_at.is_some() {
            return self.expires_at;
        }
        Some(self.created_at? + chrono::Duration::from_std(ttl?).ok()?)
    }
}

/// What successive listings of the remote said about the branch the environment follows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchWatch {
    /// The last complete listing that had the branch (only a branch once seen can be "gone").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// The first complete listing since then that lacked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_since: Option<DateTime<Utc>>,
    /// Why the last listing could not be trusted, if it could not (deletions are frozen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentState {
    #[serde(default)]
    pub version: u32,
    pub environment: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, flatten)]
    pub timeline: Timeline,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<DateTime<Utc>>,
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
    #[serde(default, skip_serializing_if = "is_default")]
    pub branch: BranchWatch,
    /// What `serve`'s listings said about the pull request or branch the environment previews.
    #[serde(default, skip_serializing_if = "is_default")]
    pub listed: BranchWatch,
    /// What the record was read at, for the cluster backend's write precondition.
    #[serde(skip)]
    pub revision: Revision,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl EnvironmentState {
    pub fn new(environment: &str) -> Self {
        EnvironmentState {
            version: RECORD_VERSION,
            environment: environment.to_string(),
            ..Default::default()
        }
    }
}

pub fn now() -> DateTime<Utc> {
    Utc::now()
}
