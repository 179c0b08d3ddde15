//! Environment specs: `environments/<name>.yaml`, resolved through `from` into an
//! [`Environment`] whose source is complete and whose every field has been checked.

mod document;
mod location;

pub use document::*;
pub(crate) use location::is_key_of;
pub use location::{line_of, yaml_error};

use crate::lifecycle::schedule::{self, Schedule};
use crate::naming::{self, Backend};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Bad input in a spec file, located.
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("no environment named `{name}` ({file} does not exist); `sprout list` shows them")]
    NotFound { name: String, file: String },
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
}

/// An environment with its inheritance resolved and its fields checked.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    /// The project's identity (`project` in sprout.yaml), carried by everything sprout creates
    /// for the environment; empty for a project that has none yet.
    pub project: String,
    /// Cluster-scoped kinds the environment may apply on a shared cluster (sprout.yaml
    /// `sharedCluster.allowClusterScoped`); see `fork::tenancy`.
    pub allow_cluster_scoped: Vec<String>,
    /// The spec file, relative to the project root, for messages.
    pub file: String,
    /// The spec file's text, for locating template errors.
    pub text: String,
    pub labels: BTreeMap<String, String>,
    pub protected: bool,
    pub source: Source,
    pub cluster: Option<ClusterSpec>,
    pub overlay: Overlay,
    pub lifecycle: Lifecycle,
}

/// Where the desired state lives, every field known.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub repo: String,
    pub reference: String,
    pub path: String,
    pub render: RenderMode,
    pub helm: HelmOptions,
    /// The namespace of objects that name none (`kubectl -n`); when unset, the
    /// kustomization's `namespace:` or `default`.
    pub namespace: Option<String>,
}

impl Environment {
    pub fn owner(&self) -> Option<&str> {
        self.labels.get("sprout.dev/owner").map(String::as_str)
    }

    /// The branch this environment follows: its `sprout.dev/branch` label, else its ref.
    pub fn branch(&self) -> &str {
        self.labels
            .get("sprout.dev/branch")
            .map(String::as_str)
            .unwrap_or(&self.source.reference)
    }

    pub fn pull_request(&self) -> Option<u64> {
        self.labels.get("sprout.dev/pr")?.parse().ok()
    }

    /// Whether it shares an existing cluster with other environments (the `namespace` provider).
    pub fn on_shared_cluster(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.provider == Provider::Namespace)
    }

    /// Where namespaced objects land: `overlay.namespace`, else the environment's name.
    pub fn target_namespace(&self) -> &str {
        self.overlay.namespace.as_deref().unwrap_or(&self.name)
    }

    /// An environment known only by its name and where its cluster runs: what `gc` has for a
    /// cluster whose spec was removed, enough for the provider to delete it.
    pub fn bare(name: &str, project: &crate::project::Project, provider: Provider) -> Self {
        Environment {
            name: name.to_string(),
            project: project.identity().to_string(),
            allow_cluster_scoped: project.settings.shared_cluster.allow_cluster_scoped.clone(),
            file: format!("(removed) environments/{name}.yaml"),
            text: String::new(),
            labels: BTreeMap::new(),
            protected: false,
            source: Source {
                repo: ".".into(),
                reference: String::new(),
                path: ".".into(),
                render: RenderMode::default(),
                helm: HelmOptions::default(),
                namespace: None,
            },
            cluster: Some(ClusterSpec {
                provider,
                eks: None,
                namespace: None,
            }),
            overlay: Overlay::default(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// Line of `key` in the spec file (1 when not found), for messages.
    pub fn line_of(&self, key: &str) -> usize {
        line_of(&self.text, key)
    }
}

/// Reads environment files from `dir` (the project's `environments/`).
pub struct SpecLoader {
    root: PathBuf,
    dir: PathBuf,
    /// Spec texts used instead of files (a spec `up` is about to write, checked first).
    overrides: BTreeMap<String, String>,
    /// Specs kept with their records in a management cluster (generated ones, with the
    /// cluster state backend), by name: where they appear in messages. A file of the same
    /// name wins.
    stored: BTreeMap<String, String>,
}

impl SpecLoader {
    pub fn new(root: &Path, dir: &Path) -> Self {
        SpecLoader {
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            overrides: BTreeMap::new(),
            stored: BTreeMap::new(),
        }
    }

    /// Names of all environments, sorted.
    pub fn names(&self) -> Result<Vec<String>, SpecError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(self.stored.keys().cloned().collect());
            }
            Err(source) => {
                return Err(SpecError::Read {
                    file: self.display(&self.dir),
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .chain(self.stored.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Reads `text` as if it were the file of environment `name`.
    pub fn set_override(&mut self, name: &str, text: String) {
        self.overrides.insert(name.to_string(), text);
    }

    /// Uses `text`, kept in `place` (a management cluster's record), for environment `name`
    /// when no file of that name exists.
    pub fn adopt_stored(&mut self, name: &str, text: String, place: String) {
        if !self.path_of(name).exists() {
            self.overrides.insert(name.to_string(), text);
            self.stored.insert(name.to_string(), place);
        }
    }

    /// The text of `name`'s spec when it is kept with its record rather than in a file.
    pub fn stored_text(&self, name: &str) -> Option<&str> {
        self.stored
            .contains_key(name)
            .then(|| self.overrides[name].as_str())
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.yaml"))
    }

    fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The environment `name`, with `from` resolved and every field checked.
    pub fn load(&self, name: &str) -> Result<Environment, SpecError> {
        let mut chain: Vec<(String, Parsed)> = Vec::new();
        let mut next = Some(name.to_string());
        while let Some(current) = next {
            if let Some(pos) = chain.iter().position(|(n, _)| *n == current) {
                let (_, child) = chain.last().expect("a chain with a repeat has entries");
                let cycle: Vec<&str> = chain[pos..]
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .chain([current.as_str()])
                    .collect();
                return Err(child.invalid(
                    "from:",
                    format!(
                        "`from` makes a cycle: {}; one environment must hold the source itself",
                        cycle.join(" → ")
                    ),
                ));
            }
            let parsed = match self.parse(&current) {
                Err(SpecError::NotFound { name, .. }) if !chain.is_empty() => {
                    let (_, child) = chain.last().expect("checked non-empty");
                    return Err(child.invalid(
                        "from:",
                        format!("`from: {name}` names no environment (no {}.yaml)", name),
                    ));
                }
                other => other?,
            };
            next = parsed.document.spec.from.clone();
            chain.push((current, parsed));
        }
        resolve(chain.into_iter().map(|(_, p)| p).collect())
    }

    fn parse(&self, name: &str) -> Result<Parsed, SpecError> {
        let path = self.path_of(name);
        let file = match self.stored.get(name) {
            Some(place) => place.clone(),
            None => self.display(&path),
        };
        if let Err(message) = naming::check(name, Backend::Namespace) {
            return Err(SpecError::Invalid {
                file,
                line: 1,
                message: format!("invalid environment name: {message}"),
            });
        }
        let text = match self.overrides.get(name) {
            Some(text) => text.clone(),
            None => match std::fs::read(&path) {
                Ok(bytes) => strict_text(&file, bytes)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(SpecError::NotFound {
                        name: name.to_string(),
                        file,
                    });
                }
                Err(source) => return Err(SpecError::Read { file, source }),
            },
        };
        let document: EnvironmentDocument = strict_document(&file, &text)?;
        let parsed = Parsed {
            file,
            text,
            document,
        };
        parsed.check(name)?;
        Ok(parsed)
    }
}

/// The YAML document `text` of `file` as a `T`, refusing what is nested too deep (before any
/// parsing: the parser's cost grows with the depth for every token) and duplicate keys, each
/// with its line.
pub(crate) fn strict_document<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, SpecError> {
    crate::yaml::check_depth(text).map_err(|problem| SpecError::Invalid {
        file: file.to_string(),
        line: problem.line,
        message: problem.message,
    })?;
    let document = serde_yaml::from_str(text).map_err(|e| location::yaml_error(file, &e))?;
    reject_duplicate_keys(file, text)?;
    Ok(document)
}

/// The text of a YAML file that must be UTF-8, or the line where it is not.
pub(crate) fn strict_text(file: &str, bytes: Vec<u8>) -> Result<String, SpecError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let problem = crate::yaml::decode(e.as_bytes()).expect_err("not UTF-8");
            Err(SpecError::Invalid {
                file: file.to_string(),
                line: problem.line,
                message: problem.message,
            })
        }
    }
}

/// Typed parsing catches a repeated field of a struct, not a repeated label or Helm value:
/// the strict reader refuses every repeated key, and deep nesting before any parsing.
pub(crate) fn reject_duplicate_keys(file: &str, text: &str) -> Result<(), SpecError> {
    crate::yaml::documents(text)
        .map(|_| ())
        .map_err(|problem| SpecError::Invalid {
            file: file.to_string(),
            line: problem.line,
            message: problem.message,
        })
}

/// One spec file, read and parsed.
struct Parsed {
    file: String,
    text: String,
    document: EnvironmentDocument,
}

impl Parsed {
    fn invalid(&self, key: &str, message: String) -> SpecError {
        SpecError::Invalid {
            file: self.file.clone(),
            line: line_of(&self.text, key),
            message,
        }
    }

    /// Checks that need no other file.
    fn check(&self, file_stem: &str) -> Result<(), SpecError> {
        let doc = &self.document;
        if doc.api_version != API_VERSION {
            return Err(self.invalid(
                "apiVersion:",
                format!(
                    "apiVersion must be {API_VERSION}, not `{}`",
                    doc.api_version
                ),
            ));
        }
        if doc.kind != KIND {
            return Err(self.invalid("kind:", format!("kind must be {KIND}, not `{}`", doc.kind)));
        }
        if let Err(message) = naming::check(&doc.metadata.name, Backend::Namespace) {
            return Err(self.invalid("name:", format!("invalid environment name: {message}")));
        }
        if doc.metadata.name != file_stem {
            return Err(self.invalid(
                "name:",
                format!(
                    "metadata.name `{}` does not match the file name; rename the file to {}.yaml or fix the name",
                    doc.metadata.name, doc.metadata.name
                ),
            ));
        }
        if let Some(ns) = &doc.spec.source.namespace
            && let Err(message) = naming::check(ns, Backend::Namespace)
        {
            return Err(self.invalid("namespace:", format!("invalid source.namespace: {message}")));
        }
        let overlay = &doc.spec.overlay;
        if let Some(ns) = &overlay.namespace
            && let Err(message) = naming::check(ns, Backend::Namespace)
        {
            return Err(self.invalid(
                "namespace:",
                format!("invalid overlay.namespace: {message}"),
            ));
        }
        if let Some(resources) = &overlay.resources {
            let scale = resources.scale.as_f64().unwrap_or(-1.0);
            if scale <= 0.0 || !scale.is_finite() {
                return Err(self.invalid(
                    "scale:",
                    format!(
                        "overlay.resources.scale must be a positive number, not {}",
                        resources.scale
                    ),
                ));
            }
        }
        self.check_secret_copy()?;
        self.check_lifecycle()
    }

    fn check_secret_copy(&self) -> Result<(), SpecError> {
        let SecretsPolicy::Copy(copy) = &self.document.spec.overlay.secrets else {
            return Ok(());
        };
        if let Err(message) = naming::check(&copy.from, Backend::Namespace) {
            return Err(self.invalid(
                "copy:",
                format!("invalid overlay.secrets.copy.from: {message}"),
            ));
        }
        if copy.names.is_empty() {
            return Err(self.invalid(
                "names:",
                "overlay.secrets.copy.names is empty; name the Secrets to copy".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &copy.names {
            if let Err(message) = naming::check_object_name(name) {
                return Err(self.invalid(
                    "names:",
                    format!("invalid Secret name in overlay.secrets.copy.names: {message}"),
                ));
            }
            if !seen.insert(name) {
                return Err(self.invalid(
                    "names:",
                    format!("overlay.secrets.copy.names lists `{name}` twice"),
                ));
            }
        }
        Ok(())
    }

    fn check_lifecycle(&self) -> Result<(), SpecError> {
        let lifecycle = &self.document.spec.lifecycle;
        // A ttl of 0 is read (the environment is due at once), so gc can still end one written
        // so; only `up --ttl` refuses it (see `cli::valid_ttl`).
        if let Some(ttl) = &lifecycle.ttl
            && let Err(e) = humantime::parse_duration(ttl)
        {
            return Err(self.invalid(
                "ttl:",
                format!("invalid lifecycle.ttl `{ttl}`: {e} (try 8h or 90m)"),
            ));
        }
        for (key, field, expr) in [
            ("teardown:", "teardown", &lifecycle.teardown),
            ("wake:", "wake", &lifecycle.wake),
        ] {
            if let Some(expr) = expr
                && let Err(e) = Schedule::parse(expr)
            {
                return Err(self.invalid(key, format!("invalid lifecycle.{field} `{expr}`: {e}")));
            }
        }
        if let Err(e) = schedule::timezone(lifecycle.timezone.as_deref()) {
            return Err(self.invalid("timezone:", format!("invalid lifecycle.timezone: {e}")));
        }
        Ok(())
    }
}

/// Folds a chain `[child, parent, grandparent, ...]` into one environment: source fields are
/// inherited field by field; the rest belongs to the child alone, so a fork never inherits
/// production's cluster, protection or lifecycle by accident.
fn resolve(chain: Vec<Parsed>) -> Result<Environment, SpecError> {
    let mut fields = SourceFields::default();
    for parsed in &chain {
        let s = &parsed.document.spec.source;
        fields.repo = fields.repo.or_else(|| s.repo.clone());
        fields.reference = fields.reference.or_else(|| s.reference.clone());
        fields.path = fields.path.or_else(|| s.path.clone());
        fields.render = fields.render.or(s.render);
        fields.helm = fields.helm.or_else(|| s.helm.clone());
        fields.namespace = fields.namespace.or_else(|| s.namespace.clone());
    }
    let mut chain = chain.into_iter();
    let own = chain
        .next()
        .expect("a chain holds at least the environment itself");
    let Some(reference) = fields.reference else {
        return Err(own.invalid(
            "source:",
            "no source ref: set spec.source.ref (a branch, tag or commit) or inherit one with `from`".into(),
        ));
    };
    let doc = own.document.clone();
    Ok(Environment {
        project: String::new(),
        allow_cluster_scoped: Vec::new(),
        name: doc.metadata.name.clone(),
        file: own.file,
        text: own.text,
        labels: doc.metadata.labels.clone(),
        protected: doc.spec.protected,
        source: Source {
            repo: fields.repo.unwrap_or_else(|| ".".into()),
            reference,
            path: fields.path.unwrap_or_else(|| ".".into()),
            render: fields.render.unwrap_or_default(),
            helm: fields.helm.unwrap_or_default(),
            namespace: fields.namespace,
        },
        cluster: doc.spec.cluster.clone(),
        overlay: doc.spec.overlay.clone(),
        lifecycle: doc.spec.lifecycle.clone(),
    })
}
