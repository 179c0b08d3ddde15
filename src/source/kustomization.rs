//! What sprout reads from kustomizations before kustomize runs: the namespace the top one
//! implies, and every resource kustomize would fetch from the network (a URL, a
//! `github.com/org/repo//path?ref=x` or `git::` reference), which is refused unless
//! `sprout.yaml` allow-lists a prefix of it: a branch must not make sprout request any URL.

use super::SourceError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const FILE_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Fields whose entries kustomize loads as files, folders or remote targets (generators,
/// transformers and validators may also be inline configurations, which are not paths).
const REFERENCE_FIELDS: &[&str] = &[
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
];

/// Checks every kustomization reachable from `dir` (inside the checkout `root`) and returns
/// the `namespace:` of the one in `dir`.
pub fn inspect(root: &Path, dir: &Path, allowed: &[String]) -> Result<Option<String>, SourceError> {
    let root = canonical(root, root)?;
    let mut namespace = None;
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
            namespace = body
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        for field in REFERENCE_FIELDS {
            let Some(Value::Array(entries)) = body.get(*field) else {
                continue;
            };
            for entry in entries
                .iter()
                .filter_map(Value::as_str)
                .filter(|entry| !entry.contains('\n'))
            {
                let local = folder.join(entry);
                if local.symlink_metadata().is_err() {
                    // kustomize takes what is not a local path for a remote target.
                    if !allowed
                        .iter()
                        .any(|prefix| entry.starts_with(prefix.as_str()))
                    {
                        return Err(SourceError::RemoteResource {
                            file: shown.clone(),
                            entry: entry.to_string(),
                        });
                    }
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
    }
    Ok(namespace)
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
