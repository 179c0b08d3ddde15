//! kind clusters, through the kind CLI. The kubeconfig is written to sprout's own file
//! (`--kubeconfig`), never the user's; nodes carry sprout's ownership labels (the config comes
//! from templates/kind-cluster.yaml.tera).

use super::ClusterError;
use super::cli_tool::run;
use super::provider::{CLUSTER_PREFIX, ClusterRecord, OwnedCluster, Progress, Provider, Removal};
use crate::naming::{self, Backend};
use crate::project::{Project, TEMPLATES_DIR};
use crate::spec::{Environment, Provider as ProviderKind};
use crate::template::{TemplateSite, render_yaml_document};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

const BUILTIN_CONFIG: &str = include_str!("../../templates/kind-cluster.yaml.tera");

pub struct Kind {
    name: String,
    env: String,
    dir: PathBuf,
    template: (String, String),
}

impl Kind {
    pub fn new(project: &Project, env: &Environment, dir: &Path) -> Self {
        let own = project
            .root
            .join(TEMPLATES_DIR)
            .join("kind-cluster.yaml.tera");
        let template = match std::fs::read_to_string(&own) {
            Ok(text) => (format!("{TEMPLATES_DIR}/kind-cluster.yaml.tera"), text),
            Err(_) => (
                "(built-in) kind-cluster.yaml.tera".to_string(),
                BUILTIN_CONFIG.to_string(),
            ),
        };
        Kind {
            name: cluster_name(&env.name),
            env: env.name.clone(),
            dir: dir.to_path_buf(),
            template,
        }
    }

    async fn exists(&self) -> Result<bool, ClusterError> {
        Ok(clusters().await?.contains(&self.name))
    }
}

async fn clusters() -> Result<Vec<String>, ClusterError> {
    let out = run(
        "kind",
        vec!["get".into(), "clusters".into()],
        Vec::new(),
        Duration::from_secs(30),
    )
    .await?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `sprout-<env>`, within kind's 50 characters.
pub fn cluster_name(env: &str) -> String {
    naming::derive(&format!("{CLUSTER_PREFIX}{env}"), Backend::KindCluster)
}

#[async_trait::async_trait]
impl Provider for Kind {
    async fn create(&self, kubeconfig: &Path, progress: &dyn Progress) -> Result<(), ClusterError> {
        if !self.exists().await? {
            let mut context = tera::Context::new();
            context.insert("name", &self.name);
            context.insert("env", &self.env);
            let site = TemplateSite {
                file: self.template.0.clone(),
                line: 1,
                field: "kind cluster config".into(),
            };
            let config = render_yaml_document(&site, &self.template.1, &context).map_err(|e| {
                ClusterError::Template {
                    message: e.to_string(),
                }
            })?;
            std::fs::create_dir_all(&self.dir).map_err(|e| ClusterError::io(&self.dir, e))?;
            let config_path = self.dir.join("kind-config.yaml");
            std::fs::write(&config_path, config).map_err(|e| ClusterError::io(&config_path, e))?;
            progress.phase(&format!("creating kind cluster {}", self.name));
            let args: Vec<OsString> = vec![
                "create".into(),
                "cluster".into(),
                "--name".into(),
                self.name.clone().into(),
                "--config".into(),
                config_path.into(),
                "--kubeconfig".into(),
                kubeconfig.into(),
                "--wait".into(),
                "120s".into(),
            ];
            run("kind", args, Vec::new(), Duration::from_secs(600)).await?;
        }
        // Also for a cluster that existed (a resumed `up`): the kubeconfig may be missing.
        let args: Vec<OsString> = vec![
            "get".into(),
            "kubeconfig".into(),
            "--name".into(),
            self.name.clone().into(),
        ];
        let text = run("kind", args, Vec::new(), Duration::from_secs(30)).await?;
        std::fs::write(kubeconfig, text).map_err(|e| ClusterError::io(kubeconfig, e))
    }

    async fn delete(
        &self,
        _kubeconfig: &Path,
        progress: &dyn Progress,
    ) -> Result<Removal, ClusterError> {
        if !self.exists().await? {
            return Ok(Removal::AlreadyGone);
        }
        progress.phase(&format!("deleting kind cluster {}", self.name));
        let args: Vec<OsString> = vec![
            "delete".into(),
            "cluster".into(),
            "--name".into(),
            self.name.clone().into(),
        ];
        run("kind", args, Vec::new(), Duration::from_secs(300)).await?;
        Ok(Removal::Deleted)
    }

    async fn list_owned(&self) -> Result<Vec<OwnedCluster>, ClusterError> {
        Ok(super::provider::owned_by_prefix(clusters().await?))
    }

    fn record(&self) -> ClusterRecord {
        ClusterRecord {
            provider: ProviderKind::Kind,
            name: self.name.clone(),
            region: None,
        }
    }
}
