//! A sprout project: the folder holding `environments/`, `templates/` and `sprout.yaml`.

use crate::spec::{Environment, SecretCopy, SecretsPolicy, SpecError, SpecLoader};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const SETTINGS_FILE: &str = "sprout.yaml";
pub const ENVIRONMENTS_DIR: &str = "environments";
pub const TEMPLATES_DIR: &str = "templates";

/// `sprout.yaml`; every field optional, unknown fields rejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// The project's identity, made by `sprout init` (or on first use): everything sprout
    /// creates carries it, so two projects sharing a cluster or account never sweep each other.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Kube contexts sprout must never write to.
    #[serde(default)]
    pub forbidden_contexts: Vec<String>,
    #[serde(default = "default_grace_period")]
    pub grace_period: String,
    #[serde(default = "default_max_delete_percent")]
    pub max_delete_percent: u32,
    /// Where `sprout serve` finds previews to make (see [`crate::serve::config`]).
    #[serde(
        default,
        deserialize_with = "crate::serve::config::deserialize_generators"
    )]
    pub generators: Vec<crate::serve::config::Generator>,
    /// Namespaces that `overlay.secrets: copy` may read Secrets from; nothing else is read.
    #[serde(default)]
    pub secret_sources: Vec<SecretSource>,
    /// Prefixes of kustomize remote resources (URLs, `github.com/...`, `git::...`) a render
    /// may fetch; any other remote resource is refused.
    #[serde(default)]
    pub remote_resources: Vec<String>,
    /// What environments on a shared cluster (`cluster.provider: namespace`) may do beyond
    /// their namespaces; see "What a fork may do on a shared cluster" in the README.
    #[serde(default)]
    pub shared_cluster: SharedCluster,
    /// Where environment records and locks live: files (the default), or a management cluster.
    #[serde(default)]
    pub state: StateSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedCluster {
    /// Cluster-scoped kinds (besides Namespaces and shared CRDs) a fork may apply, confined.
    #[serde(default)]
    pub allow_cluster_scoped: Vec<String>,
}

/// `state:` in sprout.yaml: `{backend: kubernetes, namespace: sprout-system, context: X}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateSettings {
    #[serde(default)]
    pub backend: StateBackend,
    /// The management namespace (kubernetes backend), created if missing.
    #[serde(default = "default_state_namespace")]
    pub namespace: String,
    /// The kubeconfig context of the management cluster (default: the current context; inside
    /// a pod without a kubeconfig, the pod's own cluster).
    #[serde(default)]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// One JSON file per environment under `stateDir` (the CLI's default).
    #[default]
    File,
    /// One `Environment` custom resource per environment in a management cluster.
    Kubernetes,
}

pub const DEFAULT_STATE_NAMESPACE: &str = "sprout-system";

fn default_state_namespace() -> String {
    DEFAULT_STATE_NAMESPACE.into()
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: StateBackend::File,
            namespace: default_state_namespace(),
            context: None,
        }
    }
}

/// A namespace Secrets may be copied from, in the cluster of `context` (of the user's
/// kubeconfig), or in each environment's own cluster when no context is named.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    pub namespace: String,
    #[serde(default)]
    pub context: Option<String>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".sprout")
}
fn default_grace_period() -> String {
    "10m".into()
}
fn default_max_delete_percent() -> u32 {
    50
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            project: None,
            state_dir: default_state_dir(),
            forbidden_contexts: Vec::new(),
            grace_period: default_grace_period(),
            max_delete_percent: default_max_delete_percent(),
            generators: Vec::new(),
            secret_sources: Vec::new(),
            remote_resources: Vec::new(),
            shared_cluster: SharedCluster::default(),
            state: StateSettings::default(),
        }
    }
}

pub struct Project {
    pub root: PathBuf,
    pub settings: Settings,
    /// sprout.yaml as read (empty when absent), to locate errors found after parsing.
    settings_text: String,
    specs: SpecLoader,
}

impl Project {
    /// Opens the project at `root`; a missing `sprout.yaml` means the defaults.
    pub fn open(root: &Path) -> Result<Self, SpecError> {
        let root = root.to_path_buf();
        let settings_path = root.join(SETTINGS_FILE);
        let settings_text = match std::fs::read(&settings_path) {
            Ok(bytes) => crate::spec::strict_text(SETTINGS_FILE, bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(SpecError::Read {
                    file: SETTINGS_FILE.into(),
                    source,
                });
            }
        };
        let settings = if settings_text.trim().is_empty() {
            Settings::default()
        } else {
            crate::spec::strict_document(SETTINGS_FILE, &settings_text)
                .map_err(|e| crate::serve::config::locate_generator_error(&settings_text, e))?
        };
        if let Err(e) = humantime::parse_duration(&settings.grace_period) {
            return Err(SpecError::Invalid {
                file: SETTINGS_FILE.into(),
                line: 1,
                message: format!("invalid gracePeriod `{}`: {e}", settings.grace_period),
            });
        }
        if let Err(why) =
            crate::naming::check(&settings.state.namespace, crate::naming::Backend::Namespace)
        {
            return Err(SpecError::Invalid {
                file: SETTINGS_FILE.into(),
                line: crate::spec::line_of(&settings_text, "namespace:"),
                message: format!("state.namespace: {why}"),
            });
        }
        let specs = SpecLoader::new(&root, &root.join(ENVIRONMENTS_DIR));
        Ok(Project {
            root,
            settings,
            settings_text,
            specs,
        })
    }

    pub fn environment(&self, name: &str) -> Result<Environment, SpecError> {
        let mut env = self.specs.load(name)?;
        env.project = self.identity().to_string();
        env.allow_cluster_scoped = self.settings.shared_cluster.allow_cluster_scoped.clone();
        self.secret_copy_of(&env)?;
        Ok(env)
    }

    /// The project's identity ("" until it has one).
    pub fn identity(&self) -> &str {
        self.settings.project.as_deref().unwrap_or("")
    }

    /// Gives a project without an identity one, written into sprout.yaml; returns it when it is
    /// new (for a note). Called by the operations that create things, before they do.
    pub fn ensure_identity(&mut self) -> Result<Option<String>, SpecError> {
        if self.settings.project.is_some() {
            return Ok(None);
        }
        let identity = new_identity(&self.root);
        let path = self.root.join(SETTINGS_FILE);
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(SpecError::Read {
                    file: SETTINGS_FILE.into(),
                    source,
                });
            }
        };
        let text = format!(
            "# This project's identity: sprout labels everything it creates with it. Keep it.\nproject: {identity}\n{existing}"
        );
        std::fs::write(&path, &text).map_err(|source| SpecError::Read {
            file: SETTINGS_FILE.into(),
            source,
        })?;
        self.settings.project = Some(identity.clone());
        self.settings_text = text;
        Ok(Some(identity))
    }

    /// Where `env` copies Secrets from (`overlay.secrets: copy`), which must be allow-listed:
    /// a spec alone (written by anyone, or by a pull-request template) cannot read Secrets
    /// from a namespace the project has not opened for it.
    pub fn secret_copy_of<'e>(
        &self,
        env: &'e Environment,
    ) -> Result<Option<(&'e SecretCopy, &SecretSource)>, SpecError> {
        let SecretsPolicy::Copy(copy) = &env.overlay.secrets else {
            return Ok(None);
        };
        let sources = &self.settings.secret_sources;
        match sources.iter().find(|s| s.namespace == copy.from) {
            Some(source) => Ok(Some((copy, source))),
            None => Err(SpecError::Invalid {
                file: env.file.clone(),
                line: env.line_of("copy:"),
                message: format!(
                    "overlay.secrets.copy.from: `{}` is not an allow-listed secret source; add it to secretSources in {SETTINGS_FILE} (allowed now: {})",
                    copy.from,
                    if sources.is_empty() {
                        "none".to_string()
                    } else {
                        sources
                            .iter()
                            .map(|s| s.namespace.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            }),
        }
    }

    pub fn environment_names(&self) -> Result<Vec<String>, SpecError> {
        self.specs.names()
    }

    /// Uses `text` for environment `name` instead of its file (for checking before writing).
    pub fn set_spec_override(&mut self, name: &str, text: String) {
        self.specs.set_override(name, text);
    }

    /// Uses the spec kept with `name`'s record in a management cluster (`place`, for
    /// messages) when there is no file of that name.
    pub fn adopt_stored_spec(&mut self, name: &str, text: String, place: String) {
        self.specs.adopt_stored(name, text, place);
    }

    /// Whether `name`'s spec is kept with its record (cluster state backend), not in a file.
    pub fn has_stored_spec(&self, name: &str) -> bool {
        self.stored_spec(name).is_some()
    }

    /// The text of `name`'s spec when it is kept with its record.
    pub fn stored_spec(&self, name: &str) -> Option<&str> {
        self.specs.stored_text(name)
    }

    pub fn spec_path(&self, name: &str) -> PathBuf {
        self.specs.path_of(name)
    }

    /// The API token of each generator, in order, read now (for `serve` at start): a missing
    /// variable or unreadable file is an error with sprout.yaml's line.
    pub fn generator_tokens(&self) -> Result<Vec<Option<crate::serve::config::Secret>>, SpecError> {
        self.settings
            .generators
            .iter()
            .map(|generator| generator.token(&self.root, &self.settings_text))
            .collect()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(&self.settings.state_dir)
    }
}

/// `<folder name>-<8 random hex digits>`, a valid label value: readable, and unique.
pub fn new_identity(root: &Path) -> String {
    let folder = root
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut base = crate::naming::derive(&folder, crate::naming::Backend::Environment);
    base.truncate(40);
    let base = base.trim_end_matches('-');
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the OS has randomness");
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    if base.is_empty() {
        format!("sprout-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}
