//! Symbolic links inside a commit, resolved the way the kernel would resolve them in a
//! checkout, but against the commit's tree: every link of a chain is followed, so
//! `a -> b/..` where `b -> ..` is seen to leave the tree, which a check of each link's own
//! text cannot see.

use super::SourceError;
use git2::{ObjectType, Oid, Repository, Tree};
use std::collections::VecDeque;
use std::path::Path;

/// Links followed in one resolution before giving up, as Linux does (ELOOP after 40).
const MAX_HOPS: usize = 40;

const SYMLINK: i32 = 0o120000;

/// What a link inside the tree finally points to.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A file of the commit.
    Blob(Oid),
    /// A folder, or nothing (a dangling link that stays inside).
    Other,
}

/// Resolves the link at `path` (relative to the root of `root`), refusing a chain that
/// leaves the tree (an absolute target, or `..` above the root) or loops.
pub fn resolve(repo: &Repository, root: &Tree<'_>, path: &str) -> Result<Target, SourceError> {
    let escape = |why: String| SourceError::LinkLeavesCommit {
        link: path.to_string(),
        why,
    };
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: VecDeque<String> = components(path).collect();
    let mut hops = 0;
    let mut target = Target::Other;
    while let Some(component) = pending.pop_front() {
        match component.as_str() {
            "." => continue,
            ".." => {
                if resolved.pop().is_none() {
                    return Err(escape("it points above the repository's root".into()));
                }
                target = Target::Other;
                continue;
            }
            _ => resolved.push(component),
        }
        // Missing components are taken as plain folders: `..` after them is still counted,
        // which is stricter than the kernel (it would fail there) and never looser.
        let Ok(entry) = root.get_path(Path::new(&resolved.join("/"))) else {
            target = Target::Other;
            continue;
        };
        if entry.filemode() == SYMLINK {
            hops += 1;
            if hops > MAX_HOPS {
                return Err(escape(format!("more than {MAX_HOPS} links in a chain")));
            }
            let text = repo
                .find_blob(entry.id())
                .map(|b| String::from_utf8_lossy(b.content()).into_owned())
                .map_err(|e| SourceError::Repo {
                    repo: path.to_string(),
                    message: e.message().to_string(),
                })?;
            if text.starts_with('/') {
                return Err(escape(format!(
                    "`{}` points to `{text}`",
                    resolved.join("/")
                )));
            }
            resolved.pop();
            for (i, part) in components(&text).enumerate() {
                pending.insert(i, part);
            }
            target = Target::Other;
            continue;
        }
        target = match entry.kind() {
            Some(ObjectType::Blob) => Target::Blob(entry.id()),
            _ => Target::Other,
        };
    }
    Ok(target)
}

fn components(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}
