//! Running a provider's CLI (kind, minikube) off the async runtime, argv only.

use super::ClusterError;
use crate::process::{self, ProcessError};
use std::ffi::OsString;
use std::time::Duration;

pub async fn run(
    program: &'static str,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    timeout: Duration,
) -> Result<Vec<u8>, ClusterError> {
    tokio::task::spawn_blocking(move || process::run_with_env(program, &args, &env, None, timeout))
        .await
        .map_err(|e| ClusterError::Provider {
            provider: program,
            message: e.to_string(),
        })?
        .map_err(|e| match e {
            ProcessError::NotFound { program } => ClusterError::ToolMissing { tool: program },
            other => ClusterError::Provider {
                provider: program,
                message: other.to_string(),
            },
        })
}
