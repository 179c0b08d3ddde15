//! What a verified delivery says: which repository (and pull/merge request) to re-read.
//! Self-contained (serde, serde_json), so the fuzz target builds it alone.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    GitHub,
    GitLab,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
        }
    }
}

/// "Re-read this repository (and this pull/merge request) soon."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub provider: Provider,
    /// `owner/name` (GitHub) or the project's path with namespace (GitLab).
    pub repository: String,
    pub number: Option<u64>,
}

#[derive(Deserialize)]
struct GitHubPayload {
    repository: Option<GitHubRepository>,
    number: Option<u64>,
}

#[derive(Deserialize)]
struct GitHubRepository {
    full_name: String,
}

/// The hint in a verified GitHub delivery of event `event`: `pull_request` names the pull
/// request, `push` the repository; `ping` and other events give none. Malformed → `Err`.
pub fn parse_github(event: &str, body: &[u8]) -> Result<Option<Hint>, String> {
    let payload: GitHubPayload =
        serde_json::from_slice(body).map_err(|e| format!("not a GitHub event payload: {e}"))?;
    let repository = || {
        payload
            .repository
            .as_ref()
            .map(|r| r.full_name.clone())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| format!("{event} event without repository.full_name"))
    };
    match event {
        "pull_request" => Ok(Some(Hint {
            provider: Provider::GitHub,
            repository: repository()?,
            number: Some(
                payload
                    .number
                    .ok_or("pull_request event without a number")?,
            ),
        })),
        "push" => Ok(Some(Hint {
            provider: Provider::GitHub,
            repository: repository()?,
            number: None,
        })),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
struct GitLabPayload {
    object_kind: String,
    project: Option<GitLabProject>,
    object_attributes: Option<GitLabAttributes>,
}

#[derive(Deserialize)]
struct GitLabProject {
    path_with_namespace: String,
}

#[derive(Deserialize)]
struct GitLabAttributes {
    iid: Option<u64>,
}

/// The hint in a verified GitLab delivery: a merge request event names the merge request, a
/// push the project; other kinds give none. Malformed → `Err`.
pub fn parse_gitlab(body: &[u8]) -> Result<Option<Hint>, String> {
    let payload: GitLabPayload =
        serde_json::from_slice(body).map_err(|e| format!("not a GitLab event payload: {e}"))?;
    let project = || {
        payload
            .project
            .as_ref()
            .map(|p| p.path_with_namespace.clone())
            .filter(|path| !path.is_empty())
            .ok_or_else(|| {
                format!(
                    "{} event without project.path_with_namespace",
                    payload.object_kind
                )
            })
    };
    match payload.object_kind.as_str() {
        "merge_request" => Ok(Some(Hint {
            provider: Provider::GitLab,
            repository: project()?,
            number: Some(
                payload
                    .object_attributes
                    .as_ref()
                    .and_then(|a| a.iid)
                    .ok_or("merge_request event without object_attributes.iid")?,
            ),
        })),
        "push" => Ok(Some(Hint {
            provider: Provider::GitLab,
            repository: project()?,
            number: None,
        })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_give_hints_or_errors() {
        let pr = br#"{"action":"closed","number":7,"repository":{"full_name":"acme/shop"}}"#;
        assert_eq!(
            parse_github("pull_request", pr).unwrap(),
            Some(Hint {
                provider: Provider::GitHub,
                repository: "acme/shop".into(),
                number: Some(7)
            })
        );
        assert_eq!(parse_github("ping", br#"{"zen":"x"}"#).unwrap(), None);
        assert!(parse_github("pull_request", br#"{"repository":{"full_name":"a/b"}}"#).is_err());
        assert!(parse_github("push", br#"{"ref":"x"}"#).is_err());
        assert!(parse_github("push", b"[1,").is_err());
        let mr = br#"{"object_kind":"merge_request","project":{"path_with_namespace":"acme/shop"},"object_attributes":{"iid":3}}"#;
        assert_eq!(parse_gitlab(mr).unwrap().unwrap().number, Some(3));
        assert!(parse_gitlab(br#"{"object_kind":"merge_request"}"#).is_err());
        assert_eq!(parse_gitlab(br#"{"object_kind":"note"}"#).unwrap(), None);
    }
}
