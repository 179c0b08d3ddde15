//! The `branches` generator: the branches of a git remote, listed like `git ls-remote` (the
//! remote's advertisement only, nothing fetched), filtered by include/exclude globs.
//!
//! The loop lists each distinct remote once per pass ([`ls_remotes`]) and hands that one
//! answer to every generator on it ([`BranchGenerator::listing`]).

use super::config::BranchesSource;
use super::listing::{Listing, ShrinkGuard};
use globset::{GlobBuilder, GlobMatcher};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

/// A branch of the remote and the commit it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// Without `refs/heads/`.
    pub name: String,
    pub commit: String,
}

/// Compiles one include/exclude pattern: `*` stays within a `/` segment, `**` crosses them.
pub(crate) fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|e| format!("invalid branch pattern `{pattern}`: {e}"))
}

/// The branches (`refs/heads/*`) a remote advertises now. `repo` is a URL, or a path relative
/// to `root`. The listing runs on a blocking thread and is abandoned after `timeout` (libgit2
/// has no deadline of its own for a connection that hangs).
pub async fn ls_remote(repo: &str, root: &Path, timeout: Duration) -> Result<Vec<Branch>, String> {
    let url = if crate::source::repo::is_url(repo) {
        repo.to_string()
    } else {
        root.join(repo).to_string_lossy().into_owned()
    };
    let shown = crate::source::repo::redact(repo);
    let listing = tokio::task::spawn_blocking(move || list_heads(&url));
    match tokio::time::timeout(timeout, listing).await {
        Ok(Ok(result)) => result.map_err(|e| format!("{shown}: {e}")),
        Ok(Err(join)) => Err(format!("{shown}: listing thread failed: {join}")),
        Err(_) => Err(format!(
            "{shown}: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// [`ls_remote`] once for each distinct repository in `repos` (several generators may watch
/// one remote), all at once; the answers by repository as written.
pub async fn ls_remotes<'a>(
    repos: impl IntoIterator<Item = &'a str>,
    root: &Path,
    timeout: Duration,
) -> HashMap<String, Result<Vec<Branch>, String>> {
    let distinct: BTreeSet<&str> = repos.into_iter().collect();
    let listings = distinct
        .iter()
        .map(|repo| async move { (repo.to_string(), ls_remote(repo, root, timeout).await) });
    futures::future::join_all(listings)
        .await
        .into_iter()
        .collect()
}

fn list_heads(url: &str) -> Result<Vec<Branch>, String> {
    let mut branches: Vec<Branch> = crate::source::remotes::list_heads(url)?
        .into_iter()
        .map(|(name, commit)| Branch { name, commit })
        .collect();
    branches.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(branches)
}

/// One `branches` generator's view: its patterns and the guard against a listing that
/// shrank suspiciously.
#[derive(Debug)]
pub struct BranchGenerator {
    pub repo: String,
    include: Vec<GlobMatcher>,
    exclude: Vec<GlobMatcher>,
    guard: ShrinkGuard,
}

impl BranchGenerator {
    pub fn new(source: &BranchesSource) -> Result<Self, String> {
        let compile = |patterns: &[String]| {
            patterns
                .iter()
                .map(|p| glob(p))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(BranchGenerator {
            repo: source.repo.clone(),
            include: compile(&source.include)?,
            exclude: compile(&source.exclude)?,
            guard: ShrinkGuard::default(),
        })
    }

    /// Starts the shrink guard from the number of branches the loop already has previews for.
    pub fn seed(&mut self, previous: usize) {
        self.guard.seed(previous);
    }

    pub fn guard(&self) -> ShrinkGuard {
        self.guard.clone()
    }

    pub fn restore_guard(&mut self, guard: ShrinkGuard) {
        self.guard = guard;
    }

    pub fn matches(&self, branch: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.is_match(branch)))
            && !self.exclude.iter().any(|g| g.is_match(branch))
    }

    /// This generator's listing from the remote's answer of this pass: a failed listing, or
    /// one whose matching branches shrank suspiciously, is unknown.
    pub fn listing(&mut self, remote: &Result<Vec<Branch>, String>) -> Listing<Branch> {
        match remote {
            Err(reason) => Listing::unknown(reason.clone()),
            Ok(branches) => {
                let matching: Vec<Branch> = branches
                    .iter()
                    .filter(|b| self.matches(&b.name))
                    .cloned()
                    .collect();
                self.guard.check(matching, |b| b.name.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_its_segment() {
        let generator = BranchGenerator::new(&BranchesSource {
            repo: ".".into(),
            include: vec!["feature/*".into(), "release/**".into()],
            exclude: vec!["feature/wip-*".into()],
        })
        .unwrap();
        assert!(generator.matches("feature/login"));
        assert!(!generator.matches("feature/a/b"));
        assert!(!generator.matches("feature/wip-x"));
        assert!(generator.matches("release/1/2"));
        assert!(!generator.matches("main"));
    }
}
