//! The seam between sprout and what creates clusters (kind, minikube, EKS, a local control
//! plane): one small trait at the process boundary, so `up` and `down` are the same code for all.

use super::ClusterError;
use crate::project::Project;
use crate::spec::{Environment, Provider as ProviderKind};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What sprout records about a cluster it created (in the state store), so `down` and `gc`
/// find it even when the spec is gone or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    pub provider: ProviderKind,
    /// The backend's name for it (kind cluster, minikube profile, EKS cluster, control-plane dir).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// What `delete` found: a cluster it deleted, or none left to delete (deleted out of band, or
/// by an earlier, interrupted `down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    AlreadyGone,
}

/// A cluster found by `list_owned`: it carries sprout's labels or tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedCluster {
    pub name: String,
    /// The environment it belongs to, when the backend can tell.
    pub environment: Option<String>,
    /// The project that made it, when the backend can tell (EKS tags say; kind and minikube
    /// clusters carry only their name).
    pub project: Option<String>,
}

/// Clusters sprout creates are named `sprout-<env>` (within each backend's limits).
pub const CLUSTER_PREFIX: &str = "sprout-";

/// The clusters among `names` that sprout made, known by their prefix (backends like kind and
/// minikube keep no labels on the cluster itself).
pub fn owned_by_prefix(names: Vec<String>) -> Vec<OwnedCluster> {
    names
        .into_iter()
        .filter(|name| name.starts_with(CLUSTER_PREFIX))
        .map(|name| OwnedCluster {
            name,
            environment: None,
            project: None,
        })
        .collect()
}

/// Reports progress of long steps (a spinner on a terminal, nothing otherwise).
pub trait Progress: Send + Sync {
    fn phase(&self, message: &str);
}

/// Creates and deletes one environment's cluster. Every method is idempotent: killed at any
/// point, the next call finishes the job.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// Creates the cluster unless it exists (finishing a half-created one), then writes its
    /// kubeconfig to `kubeconfig`.
    async fn create(
        &self,
        kubeconfig: &std::path::Path,
        progress: &dyn Progress,
    ) -> Result<(), ClusterError>;
    /// Deletes the cluster and everything the provider made for it; absent is success.
    /// `kubeconfig` is sprout's file for the cluster, if the provider needs to reach it.
    async fn delete(
        &self,
        kubeconfig: &std::path::Path,
        progress: &dyn Progress,
    ) -> Result<Removal, ClusterError>;
    /// Clusters of this backend that carry sprout's ownership labels or tags.
    async fn list_owned(&self) -> Result<Vec<OwnedCluster>, ClusterError>;
    fn record(&self) -> ClusterRecord;
}

/// Where sprout keeps what it needs for one environment's cluster.
pub fn cluster_dir(project: &Project, env: &str) -> PathBuf {
    project.state_dir().join("clusters").join(env)
}

/// The provider for `env`: from what was recorded when its cluster was created, else its spec.
pub fn for_environment(
    project: &Project,
    env: &Environment,
    recorded: Option<&ClusterRecord>,
) -> Result<Box<dyn Provider>, ClusterError> {
    let spec = env.cluster.as_ref();
    let kind = match (recorded, spec) {
        (Some(record), _) => record.provider,
        (None, Some(spec)) => spec.provider,
        (None, None) => return Err(ClusterError::NoCluster),
    };
    let dir = cluster_dir(project, &env.name);
    Ok(match kind {
        ProviderKind::Kind => Box::new(super::kind::Kind::new(project, env, &dir)),
        ProviderKind::Minikube => Box::new(super::minikube::Minikube::new(env, &dir)),
        ProviderKind::Envtest => Box::new(super::envtest::Envtest::new(env, &dir)),
        ProviderKind::Eks => {
            let eks = spec.and_then(|c| c.eks.clone());
            let region = recorded
                .and_then(|r| r.region.clone())
                .or_else(|| eks.as_ref().map(|e| e.region.clone()));
            Box::new(super::eks::Eks::new(env, eks, region)?)
        }
        ProviderKind::Namespace => return Err(ClusterError::SharedCluster),
    })
}
