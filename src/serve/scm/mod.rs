//! Pull requests (GitHub) and merge requests (GitLab): listing them fail-safe, confirming one
//! closed by a direct read, and the feedback developers see on them.
//!
//! [`Scm`] is what the loop holds per `github`/`gitlab` generator. Reads never conclude
//! "nothing" from a bad answer ([`Listing::Unknown`], [`Closure::Unknown`]); writes are
//! serialized and spaced out by the shared [`http`] layer.

mod comment;
mod feedback;
pub mod filter;
pub mod github;
pub mod gitlab;
pub mod http;

pub use feedback::{DeploymentState, Feedback};
pub use http::{HttpError, HttpOptions};

use super::config::{Generator, GeneratorSource, Secret};
use super::listing::Listing;
use super::metrics::Metrics;

/// A pull request (GitHub) or merge request (GitLab), as a listing or a direct read gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    /// The pull request number (GitHub) or merge request iid (GitLab).
    pub number: u64,
    /// The source branch's name (in the fork, for a pull request from a fork).
    pub head_branch: String,
    pub head_sha: String,
    /// The ref of the head commit in the target repository (`refs/pull/N/head`,
    /// `refs/merge-requests/N/head`): it exists for forks too, so previews follow it.
    pub head_ref: String,
    /// Whether the head branch lives in another repository.
    pub from_fork: bool,
    pub author: String,
    pub labels: Vec<String>,
    pub draft: bool,
    pub target_branch: String,
    pub state: RequestState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Open,
    Closed,
    Merged,
}

/// The answer of a direct read of one pull/merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closure {
    Open,
    Closed,
    Merged,
    /// The read failed or made no sense: the request does not count as closed.
    Unknown {
        reason: String,
    },
}

impl Closure {
    /// Whether the item is confirmed gone (closed or merged).
    pub fn is_gone(&self) -> bool {
        matches!(self, Closure::Closed | Closure::Merged)
    }
}

/// A failed feedback write (reads fail into `Unknown` instead).
#[derive(Debug, thiserror::Error)]
pub enum ScmError {
    #[error("{provider} {repository}: {what}: {source}")]
    Http {
        provider: &'static str,
        repository: String,
        what: String,
        #[source]
        source: HttpError,
    },
    #[error("{provider} {repository}: {what}: unexpected answer: {message}")]
    Answer {
        provider: &'static str,
        repository: String,
        what: String,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

/// One `github` or `gitlab` generator's client.
#[derive(Debug)]
pub enum Scm {
    GitHub(github::GitHub),
    GitLab(gitlab::GitLab),
}

impl Scm {
    /// The client for a generator (`None` for `branches`); `token` from
    /// [`crate::project::Project::generator_tokens`].
    pub fn for_generator(
        generator: &Generator,
        token: Option<Secret>,
        options: HttpOptions,
        metrics: Option<Metrics>,
    ) -> Result<Option<Scm>, ScmError> {
        let filters = generator.filters.clone();
        Ok(match &generator.source {
            GeneratorSource::GitHub(source) => Some(Scm::GitHub(github::GitHub::new(
                &source.api,
                &source.repository,
                token,
                filters,
                options,
                metrics,
            )?)),
            GeneratorSource::GitLab(source) => Some(Scm::GitLab(gitlab::GitLab::new(
                &source.api,
                &source.project,
                token,
                filters,
                options,
                metrics,
            )?)),
            GeneratorSource::Branches(_) => None,
        })
    }

    /// Every open item that passes the generator's filters, or unknown. The shrink guard looks
    /// at the whole open list, before filtering: a label taken off is a real change, an empty
    /// answer is not.
    pub async fn list(&self) -> Listing<ChangeRequest> {
        match self {
            Scm::GitHub(c) => c.list().await,
            Scm::GitLab(c) => c.list().await,
        }
    }

    /// A direct read of item `number`.
    pub async fn confirm(&self, number: u64) -> Closure {
        match self {
            Scm::GitHub(c) => c.confirm(number).await,
            Scm::GitLab(c) => c.confirm(number).await,
        }
    }

    /// Creates or updates the one comment/note on item `number`, and the deployment
    /// (GitHub) or environment (GitLab) pointing at the preview.
    pub async fn publish_feedback(&self, number: u64, feedback: &Feedback) -> Result<(), ScmError> {
        match self {
            Scm::GitHub(c) => c.publish_feedback(number, feedback).await,
            Scm::GitLab(c) => c.publish_feedback(number, feedback).await,
        }
    }

    /// Says on item `number` that preview `environment` was torn down (`reason` shown), sets
    /// the deployment `inactive` (GitHub) or stops the environment (GitLab).
    pub async fn retire_feedback(
        &self,
        number: u64,
        environment: &str,
        reason: &str,
    ) -> Result<(), ScmError> {
        match self {
            Scm::GitHub(c) => c.retire_feedback(number, environment, reason).await,
            Scm::GitLab(c) => c.retire_feedback(number, environment, reason).await,
        }
    }

    /// Starts the shrink guard from how many items the loop already has previews for.
    pub fn seed(&self, previous: usize) {
        match self {
            Scm::GitHub(c) => c.seed(previous),
            Scm::GitLab(c) => c.seed(previous),
        }
    }

    /// The shrink guard's memory (to keep across restarts and `--once` passes).
    pub fn guard(&self) -> super::listing::ShrinkGuard {
        match self {
            Scm::GitHub(c) => c.guard(),
            Scm::GitLab(c) => c.guard(),
        }
    }

    pub fn restore_guard(&self, guard: super::listing::ShrinkGuard) {
        match self {
            Scm::GitHub(c) => c.restore_guard(guard),
            Scm::GitLab(c) => c.restore_guard(guard),
        }
    }

    /// The environment name for item `number`: `pr-N` (GitHub), `mr-N` (GitLab).
    pub fn environment_name(&self, number: u64) -> String {
        match self {
            Scm::GitHub(_) => format!("pr-{number}"),
            Scm::GitLab(_) => format!("mr-{number}"),
        }
    }

    /// `owner/name` or the GitLab project, to match webhook hints.
    pub fn repository(&self) -> &str {
        match self {
            Scm::GitHub(c) => c.repository(),
            Scm::GitLab(c) => c.project(),
        }
    }

    pub fn provider(&self) -> &'static str {
        match self {
            Scm::GitHub(_) => "github",
            Scm::GitLab(_) => "gitlab",
        }
    }

    /// Requests left in the provider's rate-limit window, as it last said.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        match self {
            Scm::GitHub(c) => c.rate_limit_remaining(),
            Scm::GitLab(c) => c.rate_limit_remaining(),
        }
    }
}

/// Percent-encodes one path segment or query value (RFC 3986 unreserved characters stay).
pub(crate) fn encode_component(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The same scheme, host and port as `api`: a pagination link elsewhere would take the
/// token with it.
pub(crate) fn same_origin(api: &str, url: &str) -> bool {
    match (api.parse::<::http::Uri>(), url.parse::<::http::Uri>()) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme() && a.authority() == b.authority() && b.authority().is_some()
        }
        _ => false,
    }
}

/// Why a page did not parse, in words for status: an HTML page (a login wall, a proxy's error
/// page) reads differently from truncated JSON.
pub(crate) fn unparsable(response: &http::Response, error: &serde_json::Error) -> String {
    let content_type = response.header("content-type").unwrap_or("");
    let starts_html = response
        .body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    if content_type.contains("html") || starts_html {
        format!("an HTML page instead of JSON (content-type `{content_type}`)")
    } else if error.is_eof() {
        format!("truncated JSON ({} bytes): {error}", response.body.len())
    } else {
        format!("not the expected JSON: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("acme/shop"), "acme%2Fshop");
        assert_eq!(encode_component("preview/mr-7"), "preview%2Fmr-7");
        assert_eq!(encode_component("a b&c"), "a%20b%26c");
    }

    #[test]
    fn links_stay_on_the_api_origin() {
        assert!(same_origin(
            "https://api.github.com",
            "https://api.github.com/x?page=2"
        ));
        assert!(!same_origin(
            "https://api.github.com",
            "https://evil.example/x?page=2"
        ));
        assert!(!same_origin(
            "http://127.0.0.1:1/api",
            "http://127.0.0.1:2/api?page=2"
        ));
        assert!(!same_origin("https://api.github.com", "/relative"));
    }
}
