//! Stage 3, cluster: where an environment's objects go. This module resolves the kubeconfig and
//! context of an environment's cluster, refuses the contexts the project forbids, and connects.

mod connect;

pub use connect::{client, server_of};

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
        "cluster {server} is unreachable: {message}; check that it is running and the kubeconfig points at it"
    )]
    Unreachable { server: String, message: String },
}

impl ClusterError {
    /// A refusal on principle (protected, forbidden, not configured): invalid input, exit 2.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ClusterError::NoCluster | ClusterError::Protected | ClusterError::Forbidden { .. }
        )
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
    project
        .state_dir()
        .join("clusters")
        .join(env)
        .join("kubeconfig")
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
    let cluster = env.cluster.as_ref().ok_or(ClusterError::NoCluster)?;
    let target = match cluster.provider {
        Provider::Namespace => {
            let kubeconfig = match user_kubeconfig {
                Some(path) => path.to_path_buf(),
                None => default_kubeconfig(),
            };
            let context = cluster.namespace.as_ref().map(|n| n.context.clone());
            Target {
                kubeconfig,
                context,
            }
        }
        provider => {
            let kubeconfig = owned_kubeconfig(project, &env.name);
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
