//! What sprout reads from kustomizations before kustomize runs: the namespace the top one
//! implies, and every path kustomize would fetch from the network instead (a URL, a
//! `github.com/org/repo//path?ref=x` or `git::` reference), which is refused unless
//! `sprout.yaml` allow-lists a prefix of it: a branch must not make sprout request any URL.
//! Unless an allow-listed remote is used, kustomize also runs offline (see
//! `render::kustomize`), so a field this check misses still cannot reach another host.

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

/// How kustomize takes an entry.
#[derive(Clone, Copy, PartialEq)]
enum Reference {
    /// A remote target when it has a URL's or a git remote's form (kustomize tries those
    /// before the disk), or when no such local path exists; else a local file or folder.
    Target,
    /// A [`Reference::Target`] under generators, transformers or validators: a local file there
    /// is a plugin's configuration, and a local folder's resources are.
    PluginTarget,
    /// A file: fetched when it is a URL, else read from the disk.
    File,
    /// A builtin plugin's configuration (under generators, transformers or validators): inline
    /// or a local file, whose own values kustomize may fetch (a PatchTransformer's `path`).
    PluginConfig,
}

/// The values of `field` in `map`, whose keys kustomize matches without regard to case (Go's
/// JSON decoding, with its Unicode folding: `ſ` is `s`, the Kelvin sign `k`), and those the
/// mappings it merges (`<<`, at any depth) hold: each value a reader could take, whichever way
/// it orders merged and written keys.
fn fields<'v>(map: &'v Value, field: &str) -> Vec<&'v Value> {
    let mut found = Vec::new();
    let mut maps = vec![map];
    while let Some(map) = maps.pop() {
        for (key, value) in map.as_object().into_iter().flatten() {
            if fold(key) == fold(field) {
                found.push(value);
            }
            if key == "<<" {
                match value {
                    Value::Array(items) => maps.extend(items.iter().filter(|i| i.is_object())),
                    Value::Object(_) => maps.push(value),
                    _ => {}
                }
            }
        }
    }
    found
}

/// A key as Go's JSON decoding compares it with a field's name.
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| if c == 'ſ' { 's' } else { c })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The paths a generator's `files` entry may name: kustomize takes what follows the first `=`
/// (`key=path`); the whole entry is checked too.
fn file_entry_paths(entry: &str) -> Vec<&str> {
    let mut paths = vec![entry];
    paths.extend(entry.split_once('=').map(|(_, path)| path));
    paths
}

/// The path-like entries of a kustomization, each with how kustomize reads it.
fn references(body: &Value) -> Vec<(&str, Reference)> {
    let mut found: Vec<(&str, Reference)> = Vec::new();
    let values = |field: &str| fields(body, field);
    for field in TARGET_FIELDS {
        for value in values(field) {
            let plugin = matches!(*field, "generators" | "transformers" | "validators");
            found.extend(strings(value).into_iter().map(|entry| {
                // A plugin's configuration may be written inline; nothing else is inline
                // here (kustomize takes even an entry with a line break for a target).
                let how = match (plugin, entry.contains('\n')) {
                    (true, true) => Reference::PluginConfig,
                    (true, false) => Reference::PluginTarget,
                    (false, _) => Reference::Target,
                };
                (entry, how)
            }));
        }
    }
    for field in FILE_FIELDS {
        for value in values(field) {
            found.extend(strings(value).into_iter().map(|e| (e, Reference::File)));
        }
    }
    let items = |field: &str| -> Vec<&Value> {
        values(field)
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .collect()
    };
    for field in PATH_FIELDS {
        for item in items(field) {
            for path in fields(item, "path") {
                found.extend(strings(path).into_iter().map(|e| (e, Reference::File)));
            }
        }
    }
    for openapi in values("openapi") {
        for path in fields(openapi, "path") {
            found.extend(strings(path).into_iter().map(|e| (e, Reference::File)));
        }
    }
    for field in GENERATOR_FIELDS {
        for item in items(field) {
            for key in ["files", "envs", "env"] {
                for value in fields(item, key) {
                    for entry in strings(value) {
                        found.extend(
                            file_entry_paths(entry)
                                .into_iter()
                                .map(|path| (path, Reference::File)),
                        );
                    }
                }
            }
        }
    }
    found
}

/// A string, or each string of a list.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::Array(entries) => entries.iter().filter_map(Value::as_str).collect(),
        Value::String(entry) => vec![entry.as_str()],
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

/// Whether kustomize would take `entry` for a remote target before looking at the disk: a URL
/// (an Azure `https://.../_git/repo` too), or a git remote in one of the other forms its
/// repository parser knows (`git@host:org/repo`, `git::...`, `gh:org/repo`,
/// `github.com/org/repo`).
fn is_remote_form(entry: &str) -> bool {
    let lower = entry.trim().to_lowercase();
    is_url(&lower)
        || ["git@", "git::", "gh:", "github.com/", "github.com:"]
            .iter()
            .any(|prefix| lower.starts_with(prefix))
}

/// Whether `allowed` (sprout.yaml `remoteResources`) lets kustomize fetch `entry`: a prefix of
/// it that ends where a path segment or the query does (`https://github.com/acme` allows
/// `https://github.com/acme/x`, never `https://github.com/acme-evil/x`).
fn allowed_remote(allowed: &[String], entry: &str) -> bool {
    allowed.iter().any(|prefix| {
        entry.strip_prefix(prefix.as_str()).is_some_and(|rest| {
            rest.is_empty()
                || prefix.ends_with(['/', '?', '&', '='])
                || rest.starts_with(['/', '?', '#'])
        })
    })
}

/// Fields of a builtin plugin's configuration whose values the plugin loads as files (a
/// PatchTransformer's `path`, a strategic-merge one's `paths`, a generator's `files`, `envs`
/// and `env`, a ReplacementTransformer's `replacements[].path`); other values are content.
const PLUGIN_LOAD_FIELDS: &[&str] = &["path", "paths", "files", "envs", "env"];

/// The remote references plugin configurations load: the URL- or git-remote-formed values of
/// their loading fields, at any depth (`key=path` entries split as a generator splits them).
fn remote_values_of(configs: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    configs
        .iter()
        .for_each(|config| remote_values(config, &mut found));
    found
}

fn remote_values(config: &Value, found: &mut Vec<String>) {
    match config {
        Value::Array(items) => items.iter().for_each(|item| remote_values(item, found)),
        Value::Object(map) => {
            for (key, value) in map {
                if PLUGIN_LOAD_FIELDS.iter().any(|field| fold(key) == *field) {
                    for entry in strings(value) {
                        found.extend(
                            file_entry_paths(entry)
                                .into_iter()
                                .filter(|path| is_remote_form(path))
                                .map(str::to_string),
                        );
                    }
                }
                remote_values(value, found);
            }
        }
        _ => {}
    }
}

/// Checks every kustomization reachable from `dir` (inside the checkout `root`): each remote
/// entry must be allow-listed, each local one inside the checkout. What an allow-listed remote
/// base references in turn is trusted with it: it is fetched, not part of the commit.
pub fn inspect(root: &Path, dir: &Path, allowed: &[String]) -> Result<Inspected, SourceError> {
    let root = canonical(root, root)?;
    let mut inspected = Inspected {
        namespace: None,
        fetches: false,
    };
    let mut seen = BTreeSet::new();
    let top = canonical(&root, dir)?;
    // Each folder with whether it was reached as a plugin's (its resources are configurations).
    let mut pending = vec![(top.clone(), false)];
    while let Some((folder, of_plugin)) = pending.pop() {
        if !seen.insert((folder.clone(), of_plugin)) {
            continue;
        }
        let Some(file) = FILE_NAMES
            .iter()
            .map(|name| folder.join(name))
            .find(|path| path.is_file())
        else {
            continue;
        };
        let shown = shown(&root, &file);
        let body = read_yaml(&file, &shown)?
            .into_iter()
            .next()
            .unwrap_or(Value::Null);
        if folder == top {
            inspected.namespace = fields(&body, "namespace")
                .into_iter()
                .find_map(Value::as_str)
                .map(str::to_string);
        }
        let mut check_remote = |entry: &str| -> Result<(), SourceError> {
            if !allowed_remote(allowed, entry) {
                return Err(SourceError::RemoteResource {
                    file: shown.clone(),
                    entry: entry.to_string(),
                });
            }
            inspected.fetches = true;
            Ok(())
        };
        for (entry, reference) in references(&body) {
            if reference == Reference::PluginConfig {
                let configs = crate::yaml::documents_as_written(entry).unwrap_or_default();
                remote_values_of(&configs)
                    .iter()
                    .try_for_each(|entry| check_remote(entry))?;
                continue;
            }
            let local = folder.join(entry);
            let remote = match reference {
                Reference::Target | Reference::PluginTarget => {
                    is_remote_form(entry) || local.symlink_metadata().is_err()
                }
                _ => is_url(entry),
            };
            if remote {
                check_remote(entry)?;
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
            // Everything a plugin's folder reaches is plugin configuration, at any depth.
            let plugin = reference == Reference::PluginTarget || of_plugin;
            if local.is_dir() {
                pending.push((local, plugin));
            } else if plugin {
                // A plugin's configuration in a file of its own.
                remote_values_of(&read_yaml(&local, &shown)?)
                    .iter()
                    .try_for_each(|entry| check_remote(entry))?;
            }
        }
    }
    Ok(inspected)
}

/// `file` as the commit names it.
fn shown(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// The YAML documents of `file` as written (merge keys kept: see [`fields`]).
fn read_yaml(file: &Path, shown: &str) -> Result<Vec<Value>, SourceError> {
    let bytes = std::fs::read(file).map_err(|e| SourceError::Checkout {
        path: shown.to_string(),
        source: e,
    })?;
    let parse_error = |e: crate::yaml::YamlError| SourceError::Parse {
        file: shown.to_string(),
        document: e.document,
        line: e.line,
        message: e.message,
    };
    let text = crate::yaml::decode(&bytes).map_err(parse_error)?;
    crate::yaml::documents_as_written(text).map_err(parse_error)
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
