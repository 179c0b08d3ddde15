//! Reading a folder of a commit straight from git's object database: no checkout, no working
//! tree, so uncommitted edits never leak into an environment and reads are fast.

use super::{SourceError, links};
use git2::{ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};
use std::path::Path;

/// A file of the source folder: its path relative to the repository root, and its bytes.
pub struct SourceFile {
    pub path: String,
    pub content: Vec<u8>,
}

/// What the top level of the source folder tells about how to render it.
pub struct FolderShape {
    pub has_kustomization: bool,
    pub has_chart: bool,
}

/// The tree at `path` in `commit` ("." or "" is the root).
pub fn subtree<'r>(
    repo: &'r Repository,
    commit: Oid,
    path: &str,
    repo_name: &str,
    reference: &str,
) -> Result<Tree<'r>, SourceError> {
    let not_found = || SourceError::PathNotFound {
        repo: super::repo::redact(repo_name),
        reference: reference.to_string(),
        path: path.to_string(),
    };
    let root = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| SourceError::Repo {
            repo: repo_name.to_string(),
            message: e.message().to_string(),
        })?;
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Ok(root);
    }
    let entry = root.get_path(Path::new(trimmed)).map_err(|_| not_found())?;
    if entry.kind() != Some(ObjectType::Tree) {
        return Err(not_found());
    }
    repo.find_tree(entry.id()).map_err(|_| not_found())
}

pub fn shape(tree: &Tree<'_>) -> FolderShape {
    let has = |name: &str| tree.get_name(name).is_some();
    FolderShape {
        has_kustomization: has("kustomization.yaml")
            || has("kustomization.yml")
            || has("Kustomization"),
        has_chart: has("Chart.yaml"),
    }
}

/// Folders below `tree` (the folder `prefix`), not `tree` itself, that a render tool would read
/// (a kustomization or a Helm chart), each with the file that says so, in path order.
pub fn rendered_subfolders(tree: &Tree<'_>, prefix: &str) -> Vec<(String, &'static str)> {
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix == "." { "" } else { prefix };
    let mut found = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if dir.is_empty() || entry.kind() != Some(ObjectType::Blob) {
            return TreeWalkResult::Ok;
        }
        let marker = match entry.name() {
            Ok("kustomization.yaml") => "kustomization.yaml",
            Ok("kustomization.yml") => "kustomization.yml",
            Ok("Kustomization") => "Kustomization",
            Ok("Chart.yaml") => "Chart.yaml",
            _ => return TreeWalkResult::Ok,
        };
        let folder = [prefix, dir.trim_end_matches('/')]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        found.push((folder, marker));
        TreeWalkResult::Ok
    })
    .ok();
    found.sort();
    found
}

/// Every `*.yaml`, `*.yml` and `*.json` blob below `tree` (the folder `prefix` of `root`), in
/// path order. A symlink is read through to its target in the commit; one that leaves the
/// commit's tree is an error, whatever its name.
pub fn manifest_files(
    repo: &Repository,
    root: &Tree<'_>,
    tree: &Tree<'_>,
    prefix: &str,
) -> Result<Vec<SourceFile>, SourceError> {
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix == "." { "" } else { prefix };
    let mut files = Vec::new();
    let mut failure = None;
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(ObjectType::Blob) {
            return TreeWalkResult::Ok;
        }
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Ok;
        };
        let path = [prefix, dir.trim_end_matches('/'), name]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let mut id = entry.id();
        if entry.filemode() == SYMLINK {
            match links::resolve(repo, root, &path) {
                Ok(links::Target::Blob(target)) => id = target,
                Ok(links::Target::Other) => return TreeWalkResult::Ok,
                Err(e) => {
                    failure = Some(e);
                    return TreeWalkResult::Abort;
                }
            }
        }
        if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
            return TreeWalkResult::Ok;
        }
        match repo.find_blob(id) {
            Ok(blob) => files.push(SourceFile {
                path,
                content: blob.content().to_vec(),
            }),
            Err(e) => {
                failure = Some(SourceError::Repo {
                    repo: path,
                    message: e.message().to_string(),
                });
                return TreeWalkResult::Abort;
            }
        }
        TreeWalkResult::Ok
    })
    .ok();
    if let Some(failure) = failure {
        return Err(failure);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Writes the whole tree of `commit` into `dir`, for render tools that need files on disk.
/// The whole tree, not only the source folder: kustomize overlays refer to `../base`.
pub fn checkout(repo: &Repository, commit: Oid, dir: &Path) -> Result<(), SourceError> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| SourceError::Repo {
            repo: dir.display().to_string(),
            message: e.message().to_string(),
        })?;
    let mut failure = None;
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        let target = dir.join(parent).join(name);
        let result = match entry.kind() {
            Some(ObjectType::Tree) => std::fs::create_dir_all(&target),
            // A link is written only once its whole chain is known to stay in the commit's
            // tree: a render tool follows links, and must never read a file of this machine.
            Some(ObjectType::Blob) if entry.filemode() == SYMLINK => {
                if let Err(e) = links::resolve(repo, &tree, &format!("{parent}{name}")) {
                    failure = Some(e);
                    return TreeWalkResult::Abort;
                }
                repo.find_blob(entry.id())
                    .map_err(std::io::Error::other)
                    .and_then(|blob| {
                        let link = String::from_utf8_lossy(blob.content()).into_owned();
                        std::os::unix::fs::symlink(link, &target)
                    })
            }
            Some(ObjectType::Blob) => repo
                .find_blob(entry.id())
                .map_err(std::io::Error::other)
                .and_then(|blob| write_file(&target, blob.content(), entry.filemode())),
            _ => Ok(()),
        };
        if let Err(e) = result {
            failure = Some(SourceError::Checkout {
                path: target.display().to_string(),
                source: e,
            });
            return TreeWalkResult::Abort;
        }
        TreeWalkResult::Ok
    })
    .ok();
    failure.map_or(Ok(()), Err)
}

const SYMLINK: i32 = 0o120000;

fn write_file(target: &Path, content: &[u8], mode: i32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    const EXECUTABLE: i32 = 0o100755;
    std::fs::write(target, content)?;
    if mode == EXECUTABLE {
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
