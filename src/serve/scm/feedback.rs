//! What a preview's comment (GitHub) or note (GitLab) says, and the hidden marker it is found
//! again by, so there is one per pull request, edited on every change.

/// What the loop knows about a preview, to show on its pull/merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The environment's name (`pr-7`).
    pub environment: String,
    /// Where the preview answers (from the fork's Ingress hosts), if anywhere.
    pub url: Option<String>,
    /// The commit synced (full id).
    pub commit: String,
    /// The environment's phase, as `sprout status` says it.
    pub phase: String,
    /// Its health, as `sprout status` says it.
    pub health: String,
    /// When it expires, if it does (already formatted for people).
    pub expiry: Option<String>,
    pub state: DeploymentState,
}

/// The deployment's state (GitHub deployment status; GitLab environments have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    Queued,
    InProgress,
    Success,
    Failure,
}

impl DeploymentState {
    pub(crate) fn github(self) -> &'static str {
        match self {
            DeploymentState::Queued => "queued",
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
        }
    }
}

/// The hidden line a comment is recognised by.
pub(crate) fn marker(environment: &str) -> String {
    format!("<!-- sprout:preview {environment} -->")
}

/// The environment a deployment (GitHub) or environment (GitLab) is recorded under.
pub(crate) fn deployment_environment(environment: &str) -> String {
    format!("preview/{environment}")
}

pub(crate) fn body(feedback: &Feedback) -> String {
    let short = &feedback.commit[..feedback.commit.len().min(12)];
    let url = match &feedback.url {
        Some(url) => format!("[{url}]({url})"),
        None => "none (the preview has no Ingress host)".to_string(),
    };
    let expiry = feedback.expiry.as_deref().unwrap_or("never");
    format!(
        "{}\n### Preview `{}`\n\n| | |\n|---|---|\n| URL | {url} |\n| Commit | `{short}` |\n| Phase | {} |\n| Health | {} |\n| Expires | {expiry} |\n\n<sub>Kept up to date by sprout; this comment is edited, not repeated.</sub>\n",
        marker(&feedback.environment),
        feedback.environment,
        cell(&feedback.phase),
        cell(&feedback.health),
    )
}

pub(crate) fn retired_body(environment: &str, reason: &str) -> String {
    format!(
        "{}\n### Preview `{environment}`\n\nTorn down: {}.\n",
        marker(environment),
        cell(reason)
    )
}

/// Text for a table cell: no line breaks or pipes that would break the table.
fn cell(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_marker_and_every_fact() {
        let text = body(&Feedback {
            environment: "pr-7".into(),
            url: Some("https://shop.pr-7.preview.example.com".into()),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            phase: "ready".into(),
            health: "healthy | 3/3".into(),
            expiry: Some("2026-11-25 20:00 UTC".into()),
            state: DeploymentState::Success,
        });
        assert!(text.starts_with("<!-- sprout:preview pr-7 -->\n"));
        for needle in [
            "https://shop.pr-7.preview.example.com",
            "`0123456789ab`",
            "ready",
            "healthy \\| 3/3",
            "2026-11-25 20:00 UTC",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(retired_body("pr-7", "closed").contains(&marker("pr-7")));
    }
}
