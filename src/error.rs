//! The crate's error: one variant per layer, each carrying the object it is about, wrapped with
//! the environment and pipeline stage so a user reads which environment, stage and object failed.

use crate::fork::ForkError;
use crate::source::SourceError;
use crate::spec::SpecError;
use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The pipeline stage a failure happened in (also used by status and exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Spec,
    Source,
    Fork,
    Cluster,
    Sync,
    Status,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Stage::Spec => "spec",
            Stage::Source => "source",
            Stage::Fork => "fork",
            Stage::Cluster => "cluster",
            Stage::Sync => "sync",
            Stage::Status => "status",
        };
        f.write_str(name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("environment {env}: {stage}: {source}")]
    Stage {
        env: String,
        stage: Stage,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Fork(#[from] ForkError),
    /// Applied, but objects failed their health check (the report was shown first).
    #[error("environment {env}: sync: {} object(s) failed their health check: {}", failed.len(), failed.join("; "))]
    Unhealthy { env: String, failed: Vec<String> },
    /// `diff` found differences: not a failure of sprout, but exit 1 by contract.
    #[error("environment {env}: {objects} object(s) differ from git")]
    Drift { env: String, objects: usize },
    #[error(
        "environment {env} is being changed by another sprout run{}; try again when it has finished",
        holder.as_ref().map(|h| format!(", {h}")).unwrap_or_default()
    )]
    Busy { env: String, holder: Option<String> },
    /// The mass-delete breaker held a `gc` pass back (nothing was deleted).
    #[error(
        "gc: the pass would take down {would_delete} of {live} live environments (limit {limit}); nothing was deleted: review with `sprout gc --dry-run`, confirm with `sprout gc --allow-mass-delete`"
    )]
    MassDelete {
        would_delete: usize,
        live: usize,
        limit: usize,
    },
    #[error("gc: {failed} action(s) failed (see above)")]
    GcFailed { failed: usize },
    #[error("serve: {failed} operation(s) failed in the pass (see the log)")]
    ServeFailed { failed: usize },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Invalid command-line input; nothing was changed.
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// 2 for invalid input (nothing was changed), 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Stage { source, .. } => source.exit_code(),
            Error::Spec(_) | Error::Fork(_) | Error::Usage(_) => 2,
            Error::Cluster(e) if e.is_refusal() => 2,
            Error::Sync(e) if e.is_refusal() => 2,
            Error::State(crate::state::StateError::NotOurs { .. }) => 2,
            Error::Cluster(_)
            | Error::Sync(_)
            | Error::State(_)
            | Error::Busy { .. }
            | Error::Drift { .. }
            | Error::MassDelete { .. }
            | Error::GcFailed { .. }
            | Error::ServeFailed { .. }
            | Error::Unhealthy { .. } => 1,
            Error::Source(e) if e.is_invalid_input() => 2,
            Error::Source(_) | Error::Io { .. } => 1,
        }
    }

    /// The error as `-o json` and `-o yaml` readers get it on stdout:
    /// `{"error": {"environment", "stage", "message", "exitCode"}}`, `environment` and `stage`
    /// null when the error belongs to none (an invalid argument, a `gc` pass). A command line
    /// clap refuses never makes an `Error`: its report is [`usage_report`].
    pub fn report(&self) -> serde_json::Value {
        let (environment, stage, message) = match self {
            Error::Stage { env, stage, source } => {
                (Some(env.as_str()), Some(*stage), source.to_string())
            }
            Error::Unhealthy { env, .. } => {
                (Some(env.as_str()), Some(Stage::Sync), self.to_string())
            }
            Error::Drift { env, .. } | Error::Busy { env, .. } => {
                (Some(env.as_str()), None, self.to_string())
            }
            _ => (None, None, self.to_string()),
        };
        report(environment, stage, &message, self.exit_code().into())
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn stage(self, env: &str, stage: Stage) -> Self {
        Error::Stage {
            env: env.to_string(),
            stage,
            source: Box::new(self),
        }
    }
}

/// A command line clap refused, for `-o json` and `-o yaml` readers: [`Error::report`]'s
/// shape, stage `usage`, no environment, and clap's text without its `error: ` and colours.
pub fn usage_report(error: &clap::Error) -> serde_json::Value {
    let text = error.render().to_string();
    let message = text.strip_prefix("error: ").unwrap_or(&text).trim_end();
    report(None, Some("usage"), message, error.exit_code())
}

fn report(
    environment: Option<&str>,
    stage: Option<impl serde::Serialize>,
    message: &str,
    exit_code: i32,
) -> serde_json::Value {
    serde_json::json!({"error": {
        "environment": environment,
        "stage": stage,
        "message": message,
        "exitCode": exit_code,
    }})
}

/// Attaches environment and stage to any layer's error.
pub trait InStage<T> {
    fn in_stage(self, env: &str, stage: Stage) -> Result<T>;
}

impl<T, E: Into<Error>> InStage<T> for std::result::Result<T, E> {
    fn in_stage(self, env: &str, stage: Stage) -> Result<T> {
        self.map_err(|e| e.into().stage(env, stage))
    }
}
