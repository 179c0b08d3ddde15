//! Stage 3, cluster: where an environment's objects go. This module resolves the kubeconfig and
//! context of an environment's cluster, refuses the contexts the project forbids, and connects.

mod cli_tool;
mod connect;
pub mod eks;
pub mod eks_token;
pub mod envtest;
pub mod kind;
pub mod kubeconfig;
mod load_balancers;
pub mod minikube;
pub mod provider;

pub use connect::{BriefRetries, Connection, client, client_of, config, server_of};

use crate::project::Project;
use crate::spec::{Environment, Provider};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "spec.cluster is not set: say where the environment runs (provider: kind, minikube, eks, namespace or envtest)"
    )]
    NoCluster,
    #[error("environment is protected (spec.protected: true): sprout never writes to it")]
    Protected,
    #[error(
        "kube context `{context}` is listed in forbiddenContexts (sprout.yaml): sprout never writes to it"
    )]
    Forbidden { context: String },
    #[error(
        "no {provider} cluster exists for this environment yet ({kubeconfig} is missing): run `sprout up {env}`"
    )]
    NotProvisioned {
        provider: &'static str,
        env: String,
        kubeconfig: String,
    },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(
        "the namespace provider uses an existing shared cluster: there is no cluster to create or delete"
    )]
    SharedCluster,
    #[error("the cluster holds objects marked to survive teardown, and deleting it would delete them: {}; remove the annotations, or run `sprout down --force`", objects.join(", "))]
    HoldsKeptObjects { objects: Vec<String> },
    #[error("{tool} is not installed (not found on PATH)")]
    ToolMissing { tool: String },
    #[error("{provider}: {message}")]
    Provider {
        provider: &'static str,
        message: String,
    },
    #[error("{message}")]
    Template { message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ClusterError {
    /// A refusal on principle (protected, forbidden, not configured), a bad template or a
    /// missing tool: invalid input or set-up, nothing was changed; exit 2.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ClusterError::NoCluster
                | ClusterError::Protected
                | ClusterError::Forbidden { .. }
                | ClusterError::HoldsKeptObjects { .. }
                | ClusterError::Template { .. }
                | ClusterError::ToolMissing { .. }
        )
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ClusterError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The kubeconfig file and context of an environment's cluster.
#[derive(Debug, Clone)]
pub struct Target {
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
}

pub fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Kind => "kind",
        Provider::Minikube => "minikube",
        Provider::Eks => "eks",
        Provider::Namespace => "namespace",
        Provider::Envtest => "envtest",
    }
}

/// The kubeconfig sprout keeps for clusters it created (never the user's own file).
pub fn owned_kubeconfig(project: &Project, env: &str) -> PathBuf {
    provider::cluster_dir(project, env).join("kubeconfig")
}

/// Where `env` lives. `user_kubeconfig` is `--kubeconfig` or `KUBECONFIG`, for the `namespace`
/// provider, which uses an existing cluster; every other provider's kubeconfig is sprout's own.
pub fn target_for(
    project: &Project,
    env: &Environment,
    user_kubeconfig: Option<&Path>,
) -> Result<Target, ClusterError> {
    if env.protected {
        return Err(ClusterError::Protected);
    }
    let owned = owned_kubeconfig(project, &env.name);
    let Some(cluster) = env.cluster.as_ref() else {
        // `up --provider` made a cluster for a spec that names none: it is where the env lives.
        if !owned.is_file() {
            return Err(ClusterError::NoCluster);
        }
        let target = Target {
            kubeconfig: owned,
            context: None,
        };
        check_allowed(project, &target)?;
        return Ok(target);
    };
    let target = match cluster.provider {
        Provider::Namespace => Target {
            kubeconfig: user_kubeconfig.map_or_else(default_kubeconfig, Path::to_path_buf),
            context: cluster.namespace.as_ref().map(|n| n.context.clone()),
        },
        provider => {
            let kubeconfig = owned;
            if !kubeconfig.is_file() {
                return Err(ClusterError::NotProvisioned {
                    provider: provider_name(provider),
                    env: env.name.clone(),
                    kubeconfig: kubeconfig.display().to_string(),
                });
            }
            Target {
                kubeconfig,
                context: None,
            }
        }
    };
    check_allowed(project, &target)?;
    Ok(target)
}

/// A context of the user's kubeconfig (`user_kubeconfig`, else ~/.kube/config), such as the
/// cluster holding a secret source.
pub fn user_context(context: &str, user_kubeconfig: Option<&Path>) -> Target {
    Target {
        kubeconfig: user_kubeconfig.map_or_else(default_kubeconfig, Path::to_path_buf),
        context: Some(context.to_string()),
    }
}

fn default_kubeconfig() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".kube").join("config")
}

/// Refuses a target whose context (named, or the file's current context) is forbidden.
pub fn check_allowed(project: &Project, target: &Target) -> Result<(), ClusterError> {
    let context = match &target.context {
        Some(context) => context.clone(),
        None => connect::current_context(&target.kubeconfig)?,
    };
    if project.settings.forbidden_contexts.contains(&context) {
        return Err(ClusterError::Forbidden { context });
    }
    Ok(())
}
