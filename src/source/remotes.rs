//! Which branches a remote has now: one `git ls-remote`-style listing (through git2, no fetch)
//! per remote per pass, the evidence that a branch was deleted. A listing that fails, times out
//! or comes back empty is not evidence of anything.

use git2::{Direction, Remote, Repository};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Where an environment's branch is listed: the remote's URL (or a local repository's path).
/// For the project's own repository (`repo: .`) it is the branch's upstream remote, else
/// `origin`: the local refs say nothing about what others deleted.
pub fn remote_of(repo: &str, branch: &str, project_root: &Path) -> Result<String, String> {
    if repo != "." {
        if super::repo::is_url(repo) {
            return Ok(repo.to_string());
        }
        return Ok(project_root.join(repo).display().to_string());
    }
    let local = Repository::open(project_root)
        .map_err(|e| format!("cannot open the project's repository: {}", e.message()))?;
    let upstream = local
        .branch_upstream_remote(&format!("refs/heads/{branch}"))
        .ok()
        .and_then(|name| name.as_str().ok().map(str::to_string));
    let name = upstream.unwrap_or_else(|| "origin".to_string());
    let remote = local.find_remote(&name).map_err(|_| {
        format!("branch `{branch}` has no upstream remote and the repository has no `origin`")
    })?;
    remote
        .url()
        .ok()
        .map(|url| {
            if super::repo::is_url(url) || Path::new(url).is_absolute() {
                url.to_string()
            } else {
                project_root.join(url).display().to_string()
            }
        })
        .ok_or_else(|| format!("remote `{name}` has no URL"))
}

/// The branch names (without `refs/heads/`) of `remote`, or why there is no trustworthy answer.
/// Gives up after `timeout`; the listing thread is left to finish on its own.
pub fn list_branches(remote: &str, timeout: Duration) -> Result<BTreeSet<String>, String> {
    let (send, receive) = std::sync::mpsc::channel();
    let url = remote.to_string();
    std::thread::spawn(move || {
        let _ = send.send(list_now(&url));
    });
    let listed = receive
        .recv_timeout(timeout)
        .map_err(|_| format!("no answer in {}s", timeout.as_secs()))??;
    if listed.is_empty() {
        return Err("the remote listed no branches".into());
    }
    Ok(listed)
}

fn list_now(url: &str) -> Result<BTreeSet<String>, String> {
    let mut remote = Remote::create_detached(url).map_err(|e| e.message().to_string())?;
    let connection = remote
        .connect_auth(Direction::Fetch, None, None)
        .map_err(|e| e.message().to_string())?;
    let heads = connection.list().map_err(|e| e.message().to_string())?;
    Ok(heads
        .iter()
        .filter_map(|head| head.name().strip_prefix("refs/heads/"))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with_branches(dir: &Path, branches: &[&str]) {
        let repo = Repository::init(dir).unwrap();
        let signature = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let commit = repo
            .commit(None, &signature, &signature, "first", &tree, &[])
            .unwrap();
        let commit = repo.find_commit(commit).unwrap();
        for branch in branches {
            repo.branch(branch, &commit, true).unwrap();
        }
    }

    #[test]
    fn lists_the_branches_of_a_remote() {
        let dir = tempfile::tempdir().unwrap();
        repo_with_branches(dir.path(), &["main", "feature/login"]);
        let url = format!("file://{}", dir.path().display());
        let listed = list_branches(&url, Duration::from_secs(10)).unwrap();
        assert!(listed.contains("main") && listed.contains("feature/login"));
    }

    #[test]
    fn an_unreachable_or_empty_remote_is_no_answer() {
        let missing = list_branches("file:///nonexistent/repo", Duration::from_secs(10));
        assert!(missing.is_err());
        let dir = tempfile::tempdir().unwrap();
        Repository::init(dir.path()).unwrap();
        let empty = list_branches(
            &format!("file://{}", dir.path().display()),
            Duration::from_secs(10),
        );
        assert_eq!(empty.unwrap_err(), "the remote listed no branches");
    }
}
