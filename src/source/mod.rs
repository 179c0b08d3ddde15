//! Stage 1, source: `repo@ref` → a commit → the objects under `path`, rendered if need be.

mod kustomization;
mod links;
mod parse;
pub mod remotes;
mod render;
pub mod repo;
mod tree;

pub use parse::{parse, parse_bytes};

use crate::object::Object;
use crate::process::ProcessError;
use crate::spec::{RenderMode, Source};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("repository {repo}: {message}")]
    Repo { repo: String, message: String },
    #[error(
        "repository {repo} is unreachable: {message}; check the URL, your network and credentials"
    )]
    Unreachable { repo: String, message: String },
    #[error(
        "ref `{reference}` not found in repository {repo}{}; check spec.source.ref",
        known_list(known)
    )]
    RefNotFound {
        repo: String,
        reference: String,
        known: Vec<String>,
    },
    #[error(
        "path `{path}` does not exist (or is not a folder) in {repo} at `{reference}`; check spec.source.path"
    )]
    PathNotFound {
        repo: String,
        reference: String,
        path: String,
    },
    #[error("render: {render} needs {tool}, which is not installed; {hint}")]
    ToolMissing {
        tool: String,
        render: &'static str,
        hint: &'static str,
    },
    #[error("render: {render}: {source}")]
    Render {
        render: &'static str,
        source: ProcessError,
    },
    #[error("{file}:{line}: document {document}: invalid YAML: {message}")]
    Parse {
        file: String,
        document: usize,
        line: usize,
        message: String,
    },
    #[error("{file}: document {document}: {message}")]
    NotAnObject {
        file: String,
        document: usize,
        message: String,
    },
    #[error("{object} is defined twice: in {first} and in {second}{hint}")]
    Duplicate {
        object: String,
        first: String,
        second: String,
        /// Why two folders were read, when they were.
        hint: &'static str,
    },
    #[error(
        "symlink {link} leaves the commit: {why}; a render must read only the commit, so make it a relative link inside the repository"
    )]
    LinkLeavesCommit { link: String, why: String },
    #[error(
        "{file}: `{entry}` is not a file or folder of the commit, so kustomize would fetch it from the network at render time; remote resources are refused unless sprout.yaml `remoteResources` lists a prefix of it"
    )]
    RemoteResource { file: String, entry: String },
    #[error("{file}: `{entry}` resolves outside the checkout; a render must read only the commit")]
    OutsideCheckout { file: String, entry: String },
    #[error("cannot write checkout {path}: {source}")]
    Checkout {
        path: String,
        source: std::io::Error,
    },
}

impl SourceError {
    /// Whether the input (spec, repository content) is at fault rather than the environment.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(
            self,
            SourceError::Unreachable { .. }
                | SourceError::Checkout { .. }
                | SourceError::Repo { .. }
        )
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (branches include: {})", known.join(", "))
    }
}

/// The desired state of a source at one commit.
#[derive(Debug)]
pub struct Fetched {
    pub commit: String,
    pub render: RenderMode,
    pub objects: Vec<Object>,
    /// Manifest files read from git (0 when a render tool produced the objects).
    pub files_read: usize,
    /// The `namespace:` of the source's kustomization, when it sets one.
    pub namespace: Option<String>,
    /// What the render should warn about (folders read as plain manifests that look rendered).
    pub warnings: Vec<String>,
}

/// Resolves the source and reads (or renders) its objects. `cache_dir` holds fetched remotes;
/// `remote_resources` are the prefixes of kustomize remote resources allowed to be fetched.
pub fn fetch(
    source: &Source,
    project_root: &Path,
    cache_dir: &Path,
    remote_resources: &[String],
) -> Result<Fetched, SourceError> {
    let opened = repo::open(&source.repo, project_root, cache_dir, &source.reference)?;
    let commit = repo::resolve(&opened, &source.repo, &source.reference)?;
    let folder = tree::subtree(
        &opened.repo,
        commit,
        &source.path,
        &source.repo,
        &source.reference,
    )?;
    let render = match source.render {
        RenderMode::Auto => {
            let shape = tree::shape(&folder);
            if shape.has_kustomization {
                RenderMode::Kustomize
            } else if shape.has_chart {
                RenderMode::Helm
            } else {
                RenderMode::Manifests
            }
        }
        explicit => explicit,
    };
    let root = tree::subtree(&opened.repo, commit, ".", &source.repo, &source.reference)?;
    let mut namespace = None;
    let mut warnings = Vec::new();
    let (objects, files_read) = match render {
        RenderMode::Manifests | RenderMode::Auto => {
            let files = tree::manifest_files(&opened.repo, &root, &folder, &source.path)?;
            warnings.extend(
                tree::rendered_subfolders(&folder, &source.path)
                    .into_iter()
                    .map(|(subfolder, marker)| {
                        format!(
                            "{subfolder} holds a {marker}, but {} is a plain folder, read with every folder below it (like `kubectl apply -R -f`): its files are applied as they are, not rendered; point spec.source.path at the folder you mean",
                            source.path
                        )
                    }),
            );
            (parse_files(&files)?, files.len())
        }
        RenderMode::Kustomize | RenderMode::Helm => {
            let checkout = tempfile::tempdir().map_err(|e| SourceError::Checkout {
                path: std::env::temp_dir().display().to_string(),
                source: e,
            })?;
            tree::checkout(&opened.repo, commit, checkout.path())?;
            let dir = checkout.path().join(source.path.trim_matches('/'));
            let (tool, output) = if render == RenderMode::Kustomize {
                let inspected = kustomization::inspect(checkout.path(), &dir, remote_resources)?;
                namespace = inspected.namespace;
                render::kustomize(&dir, inspected.fetches)?
            } else {
                let default_release = Path::new(&source.path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| n != ".")
                    .unwrap_or_else(|| "release".into());
                for file in &source.helm.values_files {
                    kustomization::check_inside(checkout.path(), &dir.join(file)).map_err(
                        |_| SourceError::OutsideCheckout {
                            file: "spec.source.helm.valuesFiles".into(),
                            entry: file.clone(),
                        },
                    )?;
                }
                render::helm(&dir, &source.helm, &default_release)?
            };
            let name = format!("{tool} {}", source.path);
            (parse_bytes(&name, &output)?, 0)
        }
    };
    reject_duplicates(&objects, render)?;
    Ok(Fetched {
        commit: commit.to_string(),
        render,
        objects,
        files_read,
        namespace,
        warnings,
    })
}

/// Parses files on every core: YAML parsing dominates the cost of a large source.
fn parse_files(files: &[tree::SourceFile]) -> Result<Vec<Object>, SourceError> {
    use rayon::prelude::*;
    let parsed: Vec<Vec<Object>> = files
        .par_iter()
        .map(|file| parse_bytes(&file.path, &file.content))
        .collect::<Result<_, _>>()?;
    Ok(parsed.into_iter().flatten().collect())
}

fn reject_duplicates(objects: &[Object], render: RenderMode) -> Result<(), SourceError> {
    let folder = |object: &Object| {
        Path::new(&object.origin.file)
            .parent()
            .map(Path::to_path_buf)
    };
    let mut seen: HashMap<_, &Object> = HashMap::with_capacity(objects.len());
    for object in objects {
        if let Some(first) = seen.insert(object.object_ref(), object) {
            let hint = if render == RenderMode::Manifests && folder(first) != folder(object) {
                "; a plain folder is read with every folder below it (like `kubectl apply -R -f`), so variants side by side (overlays, providers, versions) all count: point spec.source.path at the one you mean"
            } else {
                ""
            };
            return Err(SourceError::Duplicate {
                object: object.object_ref().to_string(),
                first: first.origin.to_string(),
                second: object.origin.to_string(),
                hint,
            });
        }
    }
    Ok(())
}
