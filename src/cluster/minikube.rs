//! minikube profiles, through the minikube CLI. minikube writes contexts into the file named by
//! `KUBECONFIG`, so it is always run with sprout's own file there, never the user's.

use super::ClusterError;
use super::cli_tool::run;
use super::provider::{CLUSTER_PREFIX, ClusterRecord, OwnedCluster, Progress, Provider, Removal};
use crate::naming::{self, Backend};
use crate::spec::{Environment, Provider as ProviderKind};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Minikube {
    profile: String,
    env: String,
    project: String,
    dir: PathBuf,
}

impl Minikube {
    pub fn new(env: &Environment, dir: &Path) -> Self {
        Minikube {
            profile: profile_name(&env.name),
            env: env.name.clone(),
            project: env.project.clone(),
            dir: dir.to_path_buf(),
        }
    }

    async fn profiles(&self) -> Result<Vec<String>, ClusterError> {
        let args: Vec<OsString> = vec![
            "profile".into(),
            "list".into(),
            "--output".into(),
            "json".into(),
        ];
        let out = run(
            "minikube",
            args,
            self.own_kubeconfig(),
            Duration::from_secs(60),
        )
        .await?;
        let listing: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        Ok(["valid", "invalid"]
            .iter()
            .filter_map(|k| listing.get(k).and_then(|v| v.as_array()))
            .flatten()
            .filter_map(|p| p.get("Name").and_then(|n| n.as_str()).map(str::to_string))
            .collect())
    }

    fn own_kubeconfig(&self) -> Vec<(String, OsString)> {
        vec![("KUBECONFIG".to_string(), self.dir.join("kubeconfig").into())]
    }
}

/// `sprout-<env>`: starts with a letter, no `_`, as minikube requires.
pub fn profile_name(env: &str) -> String {
    naming::derive(&format!("{CLUSTER_PREFIX}{env}"), Backend::MinikubeProfile)
}

#[async_trait::async_trait]
impl Provider for Minikube {
    async fn create(&self, kubeconfig: &Path, progress: &dyn Progress) -> Result<(), ClusterError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ClusterError::io(&self.dir, e))?;
        let env = vec![("KUBECONFIG".to_string(), kubeconfig.as_os_str().to_owned())];
        if !self.profiles().await?.contains(&self.profile) {
            progress.phase(&format!("starting minikube profile {}", self.profile));
            let mut labels = format!(
                "kubelet.node-labels=app.kubernetes.io/managed-by=sprout,sprout.dev/environment={}",
                self.env
            );
            if !self.project.is_empty() {
                labels.push_str(&format!(",sprout.dev/project={}", self.project));
            }
            let args: Vec<OsString> = vec![
                "start".into(),
                "--profile".into(),
                self.profile.clone().into(),
                "--keep-context".into(),
                "--embed-certs".into(),
                format!("--extra-config={labels}").into(),
                "--wait".into(),
                "all".into(),
            ];
            run("minikube", args, env.clone(), Duration::from_secs(900)).await?;
        }
        // A resumed `up` may have lost the kubeconfig: write the profile's context again.
        let args: Vec<OsString> = vec![
            "update-context".into(),
            "--profile".into(),
            self.profile.clone().into(),
        ];
        run("minikube", args, env, Duration::from_secs(60)).await?;
        Ok(())
    }

    async fn delete(
        &self,
        _kubeconfig: &Path,
        progress: &dyn Progress,
    ) -> Result<Removal, ClusterError> {
        if !self.profiles().await?.contains(&self.profile) {
            return Ok(Removal::AlreadyGone);
        }
        progress.phase(&format!("deleting minikube profile {}", self.profile));
        let args: Vec<OsString> = vec![
            "delete".into(),
            "--profile".into(),
            self.profile.clone().into(),
        ];
        run(
            "minikube",
            args,
            self.own_kubeconfig(),
            Duration::from_secs(300),
        )
        .await?;
        Ok(Removal::Deleted)
    }

    async fn list_owned(&self) -> Result<Vec<OwnedCluster>, ClusterError> {
        Ok(super::provider::owned_by_prefix(self.profiles().await?))
    }

    fn record(&self) -> ClusterRecord {
        ClusterRecord {
            provider: ProviderKind::Minikube,
            name: self.profile.clone(),
            region: None,
        }
    }
}
