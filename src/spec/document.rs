//! The on-disk shape of an environment file (`sprout.dev/v1alpha1` `Environment`), exactly as
//! written. Every struct rejects unknown fields so a typo is an error with file and line, not a
//! silently ignored setting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "sprout.dev/v1alpha1";
pub const KIND: &str = "Environment";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentDocument {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: SpecBody,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpecBody {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default)]
    pub source: SourceFields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSpec>,
    #[serde(default)]
    pub overlay: Overlay,
    #[serde(default)]
    pub lifecycle: Lifecycle,
}

/// Source fields as written: each may be inherited through `from`, field by field.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<RenderMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmOptions>,
    /// The namespace of objects that name none: what `kubectl -n` would have been.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RenderMode {
    #[default]
    Auto,
    Manifests,
    Kustomize,
    Helm,
}

impl RenderMode {
    pub fn name(self) -> &'static str {
        match self {
            RenderMode::Auto => "auto",
            RenderMode::Manifests => "manifests",
            RenderMode::Kustomize => "kustomize",
            RenderMode::Helm => "helm",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmOptions {
    /// Release name passed to `helm template` (default: the last folder of `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Values files inside the chart folder, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Inline values, applied after the values files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Kind,
    Minikube,
    Eks,
    Namespace,
    Envtest,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    pub provider: Provider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks: Option<EksSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<SharedClusterSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EksSpec {
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnet_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<EksNodes>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EksNodes {
    #[serde(rename = "type")]
    pub instance_type: String,
    pub min: u32,
    pub max: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedClusterSpec {
    /// The kubeconfig context of the shared cluster.
    pub context: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overlay {
    /// Where namespaced objects land (default: the environment's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasOverlay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesOverlay>,
    /// Container name or image repository → new image (a template).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
    /// Template for Ingress hosts; `host` is the original host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// `reference`, `inline`, or `{copy: {...}}` (a map rather than YAML's `!copy` tag).
    #[serde(default, with = "serde_yaml::with::singleton_map")]
    pub secrets: SecretsPolicy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicasOverlay {
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcesOverlay {
    /// Factor applied to every request and limit. Kept as written ("0.25") so the arithmetic is
    /// exact decimal, not binary floating point.
    pub scale: serde_json::Number,
}

/// What happens to Secrets of the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsPolicy {
    /// Keep references (ExternalSecret, SealedSecret); inline `Secret` objects are dropped.
    #[default]
    Reference,
    /// Explicit opt-in: inline `Secret` objects are kept as they are in git.
    Inline,
    /// As `reference`, plus named Secrets copied at sync time from a namespace that
    /// `sprout.yaml` allow-lists (`secrets: {copy: {from: dev-secrets, names: [db]}}`).
    Copy(SecretCopy),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretCopy {
    /// A namespace listed in `sprout.yaml` `secretSources`.
    pub from: String,
    /// The Secrets to copy; each lands in the environment's namespace under the same name.
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    pub target: PatchTarget,
    /// A template rendering to a YAML or JSON merge patch.
    pub patch: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchTarget {
    pub kind: String,
    pub name: String,
    /// The namespace in the source (before mapping); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// From creation or the last `sprout up --extend`, e.g. "8h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// A 5-field crontab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_branch_delete: Option<bool>,
}
