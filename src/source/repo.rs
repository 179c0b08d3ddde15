//! Opening the repository a source names and resolving its ref to a commit.
//!
//! `.` is the project's own repository, a path is a local repository, anything that looks like a
//! URL is fetched into a bare cache under the state dir (one per URL) on every resolve, so a ref
//! always means what the remote says now. A failed fetch is an error, never a stale answer.

use super::SourceError;
use git2::{Oid, Repository};
use std::path::{Path, PathBuf};

pub struct Opened {
    pub repo: Repository,
    /// Whether refs live under `refs/remotes/origin/` (a fetched cache) or `refs/heads/`.
    pub fetched: bool,
}

pub fn is_url(repo: &str) -> bool {
    repo.contains("://") || (repo.contains('@') && repo.contains(':') && !Path::new(repo).exists())
}

/// `https://user:token@host/x` → `https://host/x`: credentials never reach a message.
pub fn redact(repo: &str) -> String {
    match (repo.find("://"), repo.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &repo[..scheme + 3], &repo[at + 1..])
        }
        _ => repo.to_string(),
    }
}

/// Opens the repository `repo` names, ready to resolve `reference`. A pull or merge request's
/// head (`refs/pull/N/head`, `refs/merge-requests/N/head`) is kept by the hosting service in
/// the target repository, for forks too, and is not fetched by default: it is fetched (from
/// the URL, or from a local repository's `origin`) when `reference` is one.
pub fn open(
    repo: &str,
    project_root: &Path,
    cache_dir: &Path,
    reference: &str,
) -> Result<Opened, SourceError> {
    let change_ref = is_change_request_ref(reference).then_some(reference);
    if is_url(repo) {
        return fetch_into_cache(repo, cache_dir, change_ref).map(|repo| Opened {
            repo,
            fetched: true,
        });
    }
    let path = if repo == "." {
        project_root.to_path_buf()
    } else {
        project_root.join(repo)
    };
    let opened = if repo == "." {
        Repository::discover(&path)
    } else {
        Repository::open(&path)
    };
    let opened = opened.map_err(|e| SourceError::Repo {
        repo: repo.to_string(),
        message: format!("not a git repository ({}): {}", path.display(), e.message()),
    })?;
    if let Some(reference) = change_ref {
        fetch_from_origin(&opened, repo, reference)?;
    }
    Ok(Opened {
        repo: opened,
        fetched: false,
    })
}

fn is_change_request_ref(reference: &str) -> bool {
    reference.starts_with("refs/pull/") || reference.starts_with("refs/merge-requests/")
}

/// Credentials as git would find them: the SSH agent, else the configured credential helper.
pub(crate) fn callbacks() -> git2::RemoteCallbacks<'static> {
    let mut callbacks = git2::RemoteCallbacks::new();
    let config = git2::Config::open_default().ok();
    callbacks.credentials(move |url, username, allowed| {
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            return git2::Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        match &config {
            Some(config) => git2::Cred::credential_helper(config, url, username),
            None => git2::Cred::default(),
        }
    });
    callbacks
}

/// Brings `reference` from the repository's `origin` (its current value there, every time).
fn fetch_from_origin(local: &Repository, name: &str, reference: &str) -> Result<(), SourceError> {
    let mut remote = local.find_remote("origin").map_err(|_| SourceError::Repo {
        repo: name.to_string(),
        message: format!("{reference} lives on the hosting service, and this repository has no `origin` to fetch it from"),
    })?;
    let mut options = git2::FetchOptions::new();
    options.remote_callbacks(callbacks());
    remote
        .fetch(
            &[format!("+{reference}:{reference}")],
            Some(&mut options),
            None,
        )
        .map_err(|e| SourceError::Unreachable {
            repo: redact(remote.url().unwrap_or(name)),
            message: format!("fetching {reference}: {}", e.message()),
        })
}

fn cache_path(cache_dir: &Path, url: &str) -> PathBuf {
    cache_dir
        .join("repos")
        .join(format!("{}.git", crate::naming::short_hash(url)))
}

fn fetch_into_cache(
    url: &str,
    cache_dir: &Path,
    change_ref: Option<&str>,
) -> Result<Repository, SourceError> {
    let path = cache_path(cache_dir, url);
    let shown = redact(url);
    let repo_error = |e: git2::Error| SourceError::Repo {
        repo: shown.clone(),
        message: format!("cache {}: {}", path.display(), e.message()),
    };
    let repo = match Repository::open_bare(&path) {
        Ok(repo) => repo,
        Err(_) => {
            std::fs::create_dir_all(&path).map_err(|e| SourceError::Repo {
                repo: shown.clone(),
                message: format!("cannot create cache {}: {e}", path.display()),
            })?;
            Repository::init_bare(&path).map_err(repo_error)?
        }
    };
    {
        let mut remote = repo.remote_anonymous(url).map_err(repo_error)?;
        let mut options = git2::FetchOptions::new();
        options
            .remote_callbacks(callbacks())
            .prune(git2::FetchPrune::On)
            .download_tags(git2::AutotagOption::All);
        let mut refspecs = vec![
            "+refs/heads/*:refs/remotes/origin/*".to_string(),
            "+refs/tags/*:refs/tags/*".to_string(),
        ];
        refspecs.extend(change_ref.map(|r| format!("+{r}:{r}")));
        remote
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(|e| SourceError::Unreachable {
                repo: shown.clone(),
                message: e.message().to_string(),
            })?;
    }
    Ok(repo)
}

/// The commit `reference` names: a branch, a tag, a full ref, or a commit id (full or
/// abbreviated). Deliberately not `revparse`: a branch name such as `x@{-1}` or `main~1` must not
/// be read as revision syntax.
pub fn resolve(opened: &Opened, repo_name: &str, reference: &str) -> Result<Oid, SourceError> {
    let repo = &opened.repo;
    let branch_ref = if opened.fetched {
        format!("refs/remotes/origin/{reference}")
    } else {
        format!("refs/heads/{reference}")
    };
    let mut candidates = vec![branch_ref, format!("refs/tags/{reference}")];
    if !opened.fetched {
        candidates.push(format!("refs/remotes/origin/{reference}"));
    }
    if reference.starts_with("refs/") || reference == "HEAD" {
        candidates.insert(0, reference.to_string());
    }
    for name in &candidates {
        if let Ok(found) = repo.find_reference(name)
            && let Ok(commit) = found.peel_to_commit()
        {
            return Ok(commit.id());
        }
    }
    let looks_like_commit =
        (4..=40).contains(&reference.len()) && reference.chars().all(|c| c.is_ascii_hexdigit());
    if looks_like_commit
        && let Ok(object) = repo.revparse_single(reference)
        && let Ok(commit) = object.peel_to_commit()
    {
        return Ok(commit.id());
    }
    Err(SourceError::RefNotFound {
        repo: redact(repo_name),
        reference: reference.to_string(),
        known: known_branches(opened),
    })
}

fn known_branches(opened: &Opened) -> Vec<String> {
    let (kind, prefix) = if opened.fetched {
        (git2::BranchType::Remote, "origin/")
    } else {
        (git2::BranchType::Local, "")
    };
    let mut names: Vec<String> = opened
        .repo
        .branches(Some(kind))
        .map(|branches| {
            branches
                .filter_map(|b| b.ok())
                .filter_map(|(b, _)| b.name().ok().flatten().map(str::to_string))
                .map(|n| n.trim_start_matches(prefix).to_string())
                .filter(|n| n != "HEAD")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.truncate(10);
    names
}

/// The branch checked out in the repository holding `root`, if one is.
pub fn current_branch(root: &Path) -> Option<String> {
    let repo = Repository::discover(root).ok()?;
    let head = repo.head().ok()?;
    if !head.is_branch() {
        return None;
    }
    head.shorthand().ok().map(str::to_string)
}

/// Who is working here: git's user.name, else `$USER`.
pub fn current_user(root: &Path) -> Option<String> {
    let from_git = Repository::discover(root)
        .ok()
        .and_then(|r| r.config().ok())
        .and_then(|c| c.get_string("user.name").ok());
    from_git
        .or_else(|| std::env::var("USER").ok())
        .filter(|u| !u.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact("https://alice:s3cret@git.example.com/acme/app.git"),
            "https://git.example.com/acme/app.git"
        );
        assert_eq!(redact("../app"), "../app");
    }
}
