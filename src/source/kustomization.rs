//! What sprout reads from kustomizations before kustomize runs: the namespace the top one
//! implies, and every path kustomize would fetch from the network instead (a URL, a
//! `github.com/org/repo//path?ref=x` or `git::` reference), which is refused unless
//! `sprout.yaml` allow-lists a prefix of it: a branch must not make sprout request any URL.
//! When nothing is allow-listed kustomize also runs offline (see `render::kustomize`), so a
//! field this list misses still cannot reach out.

use super::SourceError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const FILE_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Fields whose entries kustomize loads as files, folders or remote targets: anything that is
/// not a local path it fetches, from git or over HTTP (generators, transformers and validators
/// may also be inline configurations, which are not paths).
const TARGET_FIELDS: &[&str] = &[
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
];

/// Fields whose entries kustomize loads as files, over HTTP when they are URLs.
const FILE_FIELDS: &[&str] = &["configurations", "crds", "patchesStrategicMerge"];

/// Lists of maps whose `path` kustomize loads as a file, over HTTP when it is a URL.
const PATH_FIELDS: &[&str] = &["patches", "patchesJson6902", "replacements"];

/// Generators whose `files`, `envs` and `env` kustomize loads as files, over HTTP when URLs.
const GENERATOR_FIELDS: &[&str] = &["configMapGenerator", "secretGenerator"];

/// What the kustomizations of a source say before kustomize runs.
pub struct Inspected {
    /// The `namespace:` of the top kustomization.
    pub namespace: Option<String>,
    /// Whether an allow-listed remote resource is used: kustomize must then reach the network.
    pub fetches: bool,
}

/// How kustomize takes an entry that is not a local path.
#[derive(Clone, Copy)]
enum Reference {
    /// A remote target (git or HTTP): anything not local.
    Target,
    /// A file: fetched only when it is a URL; anything else is for kustomize to find or not.
    File,
}

/// The path-like entries of a kustomization, each with how kustomize reads it.
fn references(body: &Value) -> Vec<(&str, Reference)> {
    let mut found: Vec<(&str, Reference)> = Vec::new();
    for field in TARGET_FIELDS {
        found.extend(
            strings(body.get(*field))
                .into_iter()
                .map(|e| (e, Reference::Target)),
        );
    }
    for field in FILE_FIELDS {
        found.extend(
            strings(body.get(*field))
                .into_iter()
                .map(|e| (e, Reference::File)),
        );
    }
    let items = |field: &str| {
        body.get(field)
            .and_then(Value::as_array)
            .map(|items| items.iter().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    for field in PATH_FIELDS {
        for item in items(field) {
            found.extend(
                strings(item.get("path"))
                    .into_iter()
                    .map(|e| (e, Reference::File)),
            );
        }
    }
    found.extend(
        strings(body.get("openapi").and_then(|o| o.get("path")))
            .into_iter()
            .map(|e| (e, Reference::File)),
    );
    for field in GENERATOR_FIELDS {
        for item in items(field) {
            for key in ["files", "envs", "env"] {
                // A file may be given as `key=path`.
                found.extend(strings(item.get(key)).into_iter().map(|e| {
                    let path = match e.split_once('=') {
                        Some((_, path)) if !is_url(e) => path,
                        _ => e,
                    };
                    (path, Reference::File)
                }));
            }
        }
    }
    // Inline content (a patch, a transformer's configuration) is not a path.
    found.retain(|(entry, _)| !entry.contains('\n'));
    found
}

/// A string, or each string of a list.
fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::Array(entries)) => entries.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(entry)) => vec![entry.as_str()],
        _ => Vec::new(),
    }
}

/// Whether kustomize would take `entry` for a URL (`scheme://...`; it fetches http and https).
fn is_url(entry: &str) -> bool {
    entry.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// Checks every kustomization reachable from `dir` (inside the checkout `root`): each remote
/// entry must be allow-listed, each local one inside the checkout.
pub fn inspect(root: &Path, dir: &Path, allowed: &[String]) -> Result<Inspected, SourceError> {
    let root = canonical(root, root)?;
    let mut inspected = Inspected {
        namespace: None,
        fetches: false,
    };
    let mut seen = BTreeSet::new();
    let top = canonical(&root, dir)?;
    let mut pending = vec![top.clone()];
    while let Some(folder) = pending.pop() {
        if !seen.insert(folder.clone()) {
            continue;
        }
        let Some(file) = FILE_NAMES
            .iter()
            .map(|name| folder.join(name))
            .find(|path| path.is_file())
        else {
            continue;
        };
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let bytes = std::fs::read(&file).map_err(|e| SourceError::Checkout {
            path: shown.clone(),
            source: e,
        })?;
        let parse_error = |e: crate::yaml::YamlError| SourceError::Parse {
            file: shown.clone(),
            document: e.document,
            line: e.line,
            message: e.message,
        };
        let text = crate::yaml::decode(&bytes).map_err(parse_error)?;
        let body = crate::yaml::documents(text)
            .map_err(parse_error)?
            .into_iter()
            .next()
            .unwrap_or(Value::Null);
        if folder == top {
            inspected.namespace = body
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        for (entry, reference) in references(&body) {
            let local = folder.join(entry);
            let remote = match reference {
                Reference::Target => local.symlink_metadata().is_err(),
                Reference::File => is_url(entry),
            };
            if remote {
                if !allowed
                    .iter()
                    .any(|prefix| entry.starts_with(prefix.as_str()))
                {
                    return Err(SourceError::RemoteResource {
                        file: shown.clone(),
                        entry: entry.to_string(),
                    });
                }
                inspected.fetches = true;
                continue;
            }
            if local.symlink_metadata().is_err() {
                // A file that is not there: kustomize says so.
                continue;
            }
            let local = canonical(&root, &local).map_err(|_| SourceError::OutsideCheckout {
                file: shown.clone(),
                entry: entry.to_string(),
            })?;
            if local.is_dir() {
                pending.push(local);
            }
        }
    }
    Ok(inspected)
}

/// Whether `path` (with every link resolved) is inside the checkout `root`.
/// A path that does not exist is left to the tool to report.
pub fn check_inside(root: &Path, path: &Path) -> Result<(), SourceError> {
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    canonical(&canonical(root, root)?, path).map(|_| ())
}

/// `path` with every link resolved, which must stay inside `root`.
fn canonical(root: &Path, path: &Path) -> Result<PathBuf, SourceError> {
    let resolved = std::fs::canonicalize(path).map_err(|e| SourceError::Checkout {
        path: path.display().to_string(),
        source: e,
    })?;
    if resolved.starts_with(root) {
        Ok(resolved)
    } else {
        Err(SourceError::OutsideCheckout {
            file: root.display().to_string(),
            entry: path.display().to_string(),
        })
    }
}
