//! AWS EKS clusters through aws-sdk-eks: a cluster (role and subnets from the spec) and one
//! managed node group, both tagged with the environment. Creation and deletion wait with visible
//! progress and pick up where an interrupted run stopped: a cluster still CREATING is awaited, a
//! missing node group is added, one DELETING is awaited before anything else happens.
//!
//! Deletion order matters: LoadBalancer Services and Ingresses first (their cloud load
//! balancers would otherwise outlive the cluster), then node groups, then the cluster.

use super::ClusterError;
use super::provider::{CLUSTER_PREFIX, ClusterRecord, OwnedCluster, Progress, Provider, Removal};
use crate::fork::ownership::{ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_VALUE, PROJECT_LABEL};
use crate::naming::{self, Backend};
use crate::spec::{EksSpec, Environment, Provider as ProviderKind};
use aws_sdk_eks::Client;
use aws_sdk_eks::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_eks::types::{
    ClusterStatus, NodegroupScalingConfig, NodegroupStatus, VpcConfigRequest,
};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const NODEGROUP: &str = "sprout-nodes";
/// How long creation or deletion may take before sprout gives up (EKS takes 10–15 minutes).
const PATIENCE: Duration = Duration::from_secs(40 * 60);

pub struct Eks {
    env: String,
    /// The project's identity, tagged on everything created ("" for none yet).
    project: String,
    name: String,
    region: String,
    spec: Option<EksSpec>,
}

/// `sprout-<env>` within EKS's rules.
pub fn cluster_name(env: &str) -> String {
    naming::derive(&format!("{CLUSTER_PREFIX}{env}"), Backend::EksCluster)
}

fn eks_error<E: std::error::Error + 'static>(what: &str, error: E) -> ClusterError {
    ClusterError::Provider {
        provider: "eks",
        message: format!("{what}: {}", DisplayErrorContext(error)),
    }
}

fn not_found<E: ProvideErrorMetadata>(error: &aws_sdk_eks::error::SdkError<E>) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("ResourceNotFoundException")
}

impl Eks {
    pub fn new(
        env: &Environment,
        spec: Option<EksSpec>,
        region: Option<String>,
    ) -> Result<Self, ClusterError> {
        let region = region.ok_or_else(|| ClusterError::Provider {
            provider: "eks",
            message: "spec.cluster.eks.region is required".into(),
        })?;
        Ok(Eks {
            env: env.name.clone(),
            project: env.project.clone(),
            name: cluster_name(&env.name),
            region,
            spec,
        })
    }

    async fn client(&self) -> Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .load()
            .await;
        Client::new(&config)
    }

    fn tags(&self) -> HashMap<String, String> {
        let mut tags = HashMap::from([
            (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
            (ENVIRONMENT_LABEL.to_string(), self.env.clone()),
        ]);
        if !self.project.is_empty() {
            tags.insert(PROJECT_LABEL.to_string(), self.project.clone());
        }
        tags
    }

    fn spec(&self) -> Result<&EksSpec, ClusterError> {
        self.spec.as_ref().ok_or_else(|| ClusterError::Provider {
            provider: "eks",
            message: "spec.cluster.eks is required to create a cluster".into(),
        })
    }

    async fn cluster_status(&self, client: &Client) -> Result<Option<ClusterStatus>, ClusterError> {
        match client.describe_cluster().name(&self.name).send().await {
            Ok(out) => Ok(out.cluster.and_then(|c| c.status)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(eks_error(&format!("describe cluster {}", self.name), e)),
        }
    }

    async fn nodegroup_status(
        &self,
        client: &Client,
    ) -> Result<Option<NodegroupStatus>, ClusterError> {
        match client
            .describe_nodegroup()
            .cluster_name(&self.name)
            .nodegroup_name(NODEGROUP)
            .send()
            .await
        {
            Ok(out) => Ok(out.nodegroup.and_then(|n| n.status)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(eks_error(&format!("describe node group {NODEGROUP}"), e)),
        }
    }

    /// Polls `check` until it returns true, showing `what` with the elapsed time.
    async fn wait_until<F, Fut>(
        &self,
        what: &str,
        progress: &dyn Progress,
        mut check: F,
    ) -> Result<(), ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, ClusterError>>,
    {
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            if check().await? {
                return Ok(());
            }
            if started.elapsed() > PATIENCE {
                return Err(ClusterError::Provider {
                    provider: "eks",
                    message: format!("gave up waiting: {what} after {}s", PATIENCE.as_secs()),
                });
            }
            progress.phase(&format!("{what} ({}s)", started.elapsed().as_secs()));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(15));
        }
    }

    async fn create_cluster(
        &self,
        client: &Client,
        progress: &dyn Progress,
    ) -> Result<(), ClusterError> {
        match self.cluster_status(client).await? {
            Some(ClusterStatus::Deleting) => {
                self.wait_until(
                    &format!(
                        "waiting for the old cluster {} to finish deleting",
                        self.name
                    ),
                    progress,
                    || async { Ok(self.cluster_status(client).await?.is_none()) },
                )
                .await?;
            }
            Some(ClusterStatus::Failed) => {
                return Err(ClusterError::Provider {
                    provider: "eks",
                    message: format!(
                        "cluster {} is FAILED; remove it with `sprout down {}` and try again",
                        self.name, self.env
                    ),
                });
            }
            Some(_) => return Ok(()),
            None => {}
        }
        let spec = self.spec()?;
        let role = spec
            .role_arn
            .clone()
            .ok_or_else(|| ClusterError::Provider {
                provider: "eks",
                message: "spec.cluster.eks.roleArn is required to create a cluster".into(),
            })?;
        progress.phase(&format!(
            "creating EKS cluster {} in {}",
            self.name, self.region
        ));
        let mut request = client
            .create_cluster()
            .name(&self.name)
            .role_arn(role)
            .resources_vpc_config(
                VpcConfigRequest::builder()
                    .set_subnet_ids(Some(spec.subnet_ids.clone()))
                    .build(),
            )
            .set_tags(Some(self.tags()));
        if let Some(version) = &spec.version {
            request = request.version(version);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            // Another run created it in the meantime: fine, it is awaited next.
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("ResourceInUseException") =>
            {
                Ok(())
            }
            Err(e) => Err(eks_error(&format!("create cluster {}", self.name), e)),
        }
    }

    async fn create_nodegroup(
        &self,
        client: &Client,
        progress: &dyn Progress,
    ) -> Result<(), ClusterError> {
        if self.nodegroup_status(client).await?.is_some() {
            return Ok(());
        }
        let spec = self.spec()?;
        let Some(nodes) = &spec.nodes else {
            return Ok(());
        };
        let role = nodes
            .role_arn
            .clone()
            .or_else(|| spec.role_arn.clone())
            .unwrap_or_default();
        progress.phase(&format!(
            "creating node group {NODEGROUP} ({} × {}–{})",
            nodes.instance_type, nodes.min, nodes.max
        ));
        let scaling = NodegroupScalingConfig::builder()
            .min_size(nodes.min as i32)
            .max_size(nodes.max as i32)
            .desired_size(nodes.min.max(1) as i32)
            .build();
        client
            .create_nodegroup()
            .cluster_name(&self.name)
            .nodegroup_name(NODEGROUP)
            .node_role(role)
            .set_subnets(Some(spec.subnet_ids.clone()))
            .scaling_config(scaling)
            .instance_types(&nodes.instance_type)
            .set_labels(Some(self.tags()))
            .set_tags(Some(self.tags()))
            .send()
            .await
            .map_err(|e| eks_error(&format!("create node group {NODEGROUP}"), e))?;
        Ok(())
    }

    async fn write_kubeconfig(
        &self,
        client: &Client,
        kubeconfig: &Path,
    ) -> Result<(), ClusterError> {
        let cluster = client
            .describe_cluster()
            .name(&self.name)
            .send()
            .await
            .map_err(|e| eks_error(&format!("describe cluster {}", self.name), e))?
            .cluster
            .ok_or_else(|| ClusterError::Provider {
                provider: "eks",
                message: format!("cluster {} has no description", self.name),
            })?;
        let endpoint = cluster.endpoint.unwrap_or_default();
        let ca = cluster
            .certificate_authority
            .and_then(|c| c.data)
            .unwrap_or_default();
        let program =
            std::env::current_exe().map_err(|e| ClusterError::io(Path::new("sprout"), e))?;
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {"server": endpoint, "certificate-authority-data": ca}}],
            "users": [{"name": self.name, "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": program,
                "args": ["eks-token", "--cluster", self.name, "--region", self.region],
                "interactiveMode": "Never",
            }}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": self.name}}],
            "current-context": self.name,
        });
        let text = serde_yaml::to_string(&config).expect("a kubeconfig serializes");
        std::fs::write(kubeconfig, text).map_err(|e| ClusterError::io(kubeconfig, e))
    }

    /// Deletes LoadBalancer Services and Ingresses so their cloud load balancers go first. An
    /// unreachable API (a cluster half-deleted out of band) must not stall the teardown.
    async fn delete_load_balancers(&self, kubeconfig: &Path, progress: &dyn Progress) {
        if !kubeconfig.is_file() {
            return;
        }
        progress.phase("deleting LoadBalancer Services and Ingresses");
        let target = super::Target {
            kubeconfig: kubeconfig.to_path_buf(),
            context: None,
        };
        let work = async {
            let client = super::client(&target).await.map_err(|e| e.to_string())?;
            super::load_balancers::delete_all(&client).await
        };
        match tokio::time::timeout(Duration::from_secs(120), work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => progress.phase(&format!("skipped load balancers: {e}")),
            Err(_) => {
                progress.phase("skipped load balancers: the cluster API did not answer in time")
            }
        }
    }
}

#[async_trait::async_trait]
impl Provider for Eks {
    async fn create(&self, kubeconfig: &Path, progress: &dyn Progress) -> Result<(), ClusterError> {
        let client = self.client().await;
        self.create_cluster(&client, progress).await?;
        self.wait_until(
            &format!("waiting for cluster {} to become ACTIVE", self.name),
            progress,
            || async {
                match self.cluster_status(&client).await? {
                    Some(ClusterStatus::Active) => Ok(true),
                    Some(ClusterStatus::Failed) | None => Err(ClusterError::Provider {
                        provider: "eks",
                        message: format!(
                            "cluster {} failed to create; see the EKS console",
                            self.name
                        ),
                    }),
                    _ => Ok(false),
                }
            },
        )
        .await?;
        self.create_nodegroup(&client, progress).await?;
        self.wait_until(
            &format!("waiting for node group {NODEGROUP}"),
            progress,
            || async {
                match self.nodegroup_status(&client).await? {
                    None | Some(NodegroupStatus::Active) => Ok(true),
                    Some(NodegroupStatus::CreateFailed) | Some(NodegroupStatus::Degraded) => {
                        Err(ClusterError::Provider {
                            provider: "eks",
                            message: format!(
                                "node group {NODEGROUP} of {} failed; see the EKS console",
                                self.name
                            ),
                        })
                    }
                    _ => Ok(false),
                }
            },
        )
        .await?;
        self.write_kubeconfig(&client, kubeconfig).await
    }

    async fn delete(
        &self,
        kubeconfig: &Path,
        progress: &dyn Progress,
    ) -> Result<Removal, ClusterError> {
        let client = self.client().await;
        if self.cluster_status(&client).await?.is_none() {
            return Ok(Removal::AlreadyGone);
        }
        self.delete_load_balancers(kubeconfig, progress).await;
        let groups = client
            .list_nodegroups()
            .cluster_name(&self.name)
            .send()
            .await
            .map_err(|e| eks_error("list node groups", e))?
            .nodegroups
            .unwrap_or_default();
        for group in &groups {
            progress.phase(&format!("deleting node group {group}"));
            match client
                .delete_nodegroup()
                .cluster_name(&self.name)
                .nodegroup_name(group)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e)
                    if not_found(&e)
                        || e.as_service_error().and_then(|s| s.code())
                            == Some("ResourceInUseException") => {}
                Err(e) => return Err(eks_error(&format!("delete node group {group}"), e)),
            }
        }
        self.wait_until(
            "waiting for node groups to be deleted",
            progress,
            || async {
                let left = client
                    .list_nodegroups()
                    .cluster_name(&self.name)
                    .send()
                    .await;
                match left {
                    Ok(out) => Ok(out.nodegroups.unwrap_or_default().is_empty()),
                    Err(e) if not_found(&e) => Ok(true),
                    Err(e) => Err(eks_error("list node groups", e)),
                }
            },
        )
        .await?;
        progress.phase(&format!("deleting EKS cluster {}", self.name));
        match client.delete_cluster().name(&self.name).send().await {
            Ok(_) => {}
            Err(e) if not_found(&e) => return Ok(Removal::Deleted),
            Err(e) => return Err(eks_error(&format!("delete cluster {}", self.name), e)),
        }
        self.wait_until(
            &format!("waiting for cluster {} to be deleted", self.name),
            progress,
            || async { Ok(self.cluster_status(&client).await?.is_none()) },
        )
        .await?;
        Ok(Removal::Deleted)
    }

    async fn list_owned(&self) -> Result<Vec<OwnedCluster>, ClusterError> {
        let client = self.client().await;
        let names = client
            .list_clusters()
            .send()
            .await
            .map_err(|e| eks_error("list clusters", e))?
            .clusters
            .unwrap_or_default();
        let mut owned = Vec::new();
        for name in names {
            let Ok(out) = client.describe_cluster().name(&name).send().await else {
                continue;
            };
            let tags = out.cluster.and_then(|c| c.tags).unwrap_or_default();
            if tags.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE) {
                owned.push(OwnedCluster {
                    name,
                    environment: tags.get(ENVIRONMENT_LABEL).cloned(),
                    project: tags.get(PROJECT_LABEL).cloned(),
                });
            }
        }
        Ok(owned)
    }

    fn record(&self) -> ClusterRecord {
        ClusterRecord {
            provider: ProviderKind::Eks,
            name: self.name.clone(),
            region: Some(self.region.clone()),
        }
    }
}
