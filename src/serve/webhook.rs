//! The daemon's HTTP face: `POST /hooks/github`, `POST /hooks/gitlab`, `/healthz`, `/readyz`
//! and `/metrics`, as an axum [`Router`].
//!
//! A webhook is a hint, never an order: a verified delivery only pushes a [`Hint`] (which
//! repository, maybe which pull request) for the loop to re-read from the SCM, and is answered
//! 202 at once. The order of checks is the point: size cap (413, the rest of the body is never
//! read), signature over the raw bytes in constant time (401, the body is never parsed), then
//! parsing (400 on anything malformed), then de-duplication by delivery id.

use super::config::Secret;
use super::metrics::Metrics;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

/// Deliveries larger than this are refused unread (GitHub caps its own at 25 MB; pull request
/// and push events of interest are far smaller).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Delivery ids remembered for de-duplication (oldest forgotten first).
const REMEMBERED_DELIVERIES: usize = 4096;

pub const GITHUB_SECRET_VARIABLE: &str = "SPROUT_GITHUB_WEBHOOK_SECRET";
pub const GITLAB_TOKEN_VARIABLE: &str = "SPROUT_GITLAB_WEBHOOK_TOKEN";

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

    fn variable(self) -> &'static str {
        match self {
            Provider::GitHub => GITHUB_SECRET_VARIABLE,
            Provider::GitLab => GITLAB_TOKEN_VARIABLE,
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

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "webhooks for {provider} are on, but no secret is configured: set {variable} or {variable}_FILE (a file holding it)"
    )]
    NoSecret {
        provider: &'static str,
        variable: &'static str,
    },
    #[error("{variable}_FILE: cannot read `{file}`: {message}")]
    Unreadable {
        variable: &'static str,
        file: String,
        message: String,
    },
}

/// The secrets of the webhook routes; a provider without one has no route.
#[derive(Debug, Clone, Default)]
pub struct WebhookSecrets {
    github: Option<Secret>,
    gitlab: Option<Secret>,
}

impl WebhookSecrets {
    /// Reads the secret of every provider in `wanted` from the process environment
    /// (`SPROUT_GITHUB_WEBHOOK_SECRET`, `SPROUT_GITLAB_WEBHOOK_TOKEN`, or a file named by the
    /// same variable with `_FILE`); a wanted provider without one is a start-up error.
    pub fn load(wanted: &[Provider], root: &Path) -> Result<Self, WebhookError> {
        Self::load_with(wanted, root, |name| std::env::var(name).ok())
    }

    pub fn load_with(
        wanted: &[Provider],
        root: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, WebhookError> {
        let mut secrets = WebhookSecrets::default();
        for provider in wanted {
            let variable = provider.variable();
            let value = match (lookup(variable), lookup(&format!("{variable}_FILE"))) {
                (Some(value), _) => value,
                (None, Some(file)) => std::fs::read_to_string(root.join(&file)).map_err(|e| {
                    WebhookError::Unreadable {
                        variable,
                        file,
                        message: e.to_string(),
                    }
                })?,
                (None, None) => String::new(),
            };
            let value = value.trim();
            if value.is_empty() {
                return Err(WebhookError::NoSecret {
                    provider: provider.name(),
                    variable,
                });
            }
            let secret = Some(Secret::new(value));
            match provider {
                Provider::GitHub => secrets.github = secret,
                Provider::GitLab => secrets.gitlab = secret,
            }
        }
        Ok(secrets)
    }

    /// Secrets given directly (tests, or a caller with its own source).
    pub fn new(github: Option<Secret>, gitlab: Option<Secret>) -> Self {
        WebhookSecrets { github, gitlab }
    }
}

/// Delivery ids seen lately, bounded: the oldest is forgotten when full.
#[derive(Debug, Default)]
struct Deliveries {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Deliveries {
    /// Records `id`; false when it was already there.
    fn first_time(&mut self, id: String) -> bool {
        if self.seen.contains(&id) {
            return false;
        }
        if self.order.len() == REMEMBERED_DELIVERIES
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(id.clone());
        self.order.push_back(id);
        true
    }
}

struct Hooks {
    secrets: WebhookSecrets,
    hints: mpsc::Sender<Hint>,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
    deliveries: Mutex<Deliveries>,
}

/// The router: hook routes for the providers that have a secret, plus `/healthz` (always
/// 200), `/readyz` (200 once the loop sets `ready`, else 503) and `/metrics`.
pub fn router(
    secrets: WebhookSecrets,
    hints: mpsc::Sender<Hint>,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    if secrets.github.is_some() {
        router = router.route("/hooks/github", post(github));
    }
    if secrets.gitlab.is_some() {
        router = router.route("/hooks/gitlab", post(gitlab));
    }
    router.with_state(Arc::new(Hooks {
        secrets,
        hints,
        ready,
        metrics,
        deliveries: Mutex::default(),
    }))
}

async fn readyz(State(hooks): State<Arc<Hooks>>) -> Response {
    if hooks.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first pass has not finished\n",
        )
            .into_response()
    }
}

async fn metrics_text(State(hooks): State<Arc<Hooks>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        hooks.metrics.encode(),
    )
        .into_response()
}

async fn github(State(hooks): State<Arc<Hooks>>, headers: HeaderMap, body: Body) -> Response {
    let secret = hooks
        .secrets
        .github
        .as_ref()
        .expect("route only with a secret");
    let signature = header_text(&headers, "x-hub-signature-256");
    receive(&hooks, Provider::GitHub, &headers, body, |raw| {
        verify_github(secret, signature.as_deref(), raw)
    })
    .await
}

async fn gitlab(State(hooks): State<Arc<Hooks>>, headers: HeaderMap, body: Body) -> Response {
    let secret = hooks
        .secrets
        .gitlab
        .as_ref()
        .expect("route only with a secret");
    let token = header_text(&headers, "x-gitlab-token");
    receive(&hooks, Provider::GitLab, &headers, body, |_| {
        verify_gitlab(secret, token.as_deref())
    })
    .await
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn receive(
    hooks: &Hooks,
    provider: Provider,
    headers: &HeaderMap,
    body: Body,
    verify: impl FnOnce(&[u8]) -> bool,
) -> Response {
    let answer = |result: &str, status: StatusCode, message: &str| {
        hooks.metrics.count_webhook(provider.name(), result);
        (status, format!("{message}\n")).into_response()
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return answer(
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            "body over 1 MiB",
        );
    }
    let raw = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return answer(
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "body over 1 MiB",
            );
        }
        Err(_) => return answer("unreadable", StatusCode::BAD_REQUEST, "unreadable body"),
    };
    if !verify(&raw) {
        return answer(
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "bad or missing signature",
        );
    }
    let parsed = match provider {
        Provider::GitHub => parse_github(
            header_text(headers, "x-github-event")
                .as_deref()
                .unwrap_or(""),
            &raw,
        ),
        Provider::GitLab => parse_gitlab(&raw),
    };
    let hint = match parsed {
        Ok(Some(hint)) => hint,
        Ok(None) => return answer("ignored", StatusCode::ACCEPTED, "nothing to do"),
        Err(message) => return answer("malformed", StatusCode::BAD_REQUEST, &message),
    };
    let delivery = match provider {
        Provider::GitHub => header_text(headers, "x-github-delivery"),
        Provider::GitLab => header_text(headers, "idempotency-key")
            .or_else(|| header_text(headers, "x-gitlab-event-uuid")),
    };
    if let Some(id) = delivery
        && !hooks
            .deliveries
            .lock()
            .unwrap()
            .first_time(format!("{}:{id}", provider.name()))
    {
        return answer("duplicate", StatusCode::ACCEPTED, "already received");
    }
    // Never wait for the loop: a full queue only loses a hint, and polling is the backstop.
    match hooks.hints.try_send(hint) {
        Ok(()) => answer("accepted", StatusCode::ACCEPTED, "queued"),
        Err(_) => answer(
            "dropped",
            StatusCode::ACCEPTED,
            "queue full; polling will catch up",
        ),
    }
}

/// `X-Hub-Signature-256: sha256=<hex>` against HMAC-SHA256 of the raw body, compared in
/// constant time.
pub fn verify_github(secret: &Secret, header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `X-Gitlab-Token` against the configured token, compared in constant time (over digests, so
/// not even the length leaks).
pub fn verify_gitlab(secret: &Secret, header: Option<&str>) -> bool {
    let Some(given) = header else {
        return false;
    };
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(secret.expose().as_bytes());
    given.ct_eq(&expected).into()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
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

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!(
            "sha256={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    #[test]
    fn github_signatures_are_checked_over_the_raw_body() {
        let secret = Secret::new("It's a Secret to Everybody");
        // GitHub's documented example.
        let body = b"Hello, World!";
        let documented = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_github(&secret, Some(documented), body));
        assert_eq!(sign("It's a Secret to Everybody", body), documented);
        assert!(!verify_github(&secret, Some(documented), b"Hello, World?"));
        assert!(!verify_github(&secret, None, body));
        assert!(!verify_github(&secret, Some("sha1=abc"), body));
        assert!(!verify_github(&secret, Some("sha256=zz"), body));
        assert!(!verify_github(&secret, Some("sha256=ü7"), body));
    }

    #[test]
    fn gitlab_tokens_must_match_exactly() {
        let secret = Secret::new("t0ken");
        assert!(verify_gitlab(&secret, Some("t0ken")));
        assert!(!verify_gitlab(&secret, Some("t0ken ")));
        assert!(!verify_gitlab(&secret, None));
    }

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

    #[test]
    fn missing_secrets_stop_the_start() {
        let root = Path::new("/nonexistent");
        let err = WebhookSecrets::load_with(&[Provider::GitHub], root, |_| None).unwrap_err();
        assert!(err.to_string().contains(GITHUB_SECRET_VARIABLE), "{err}");
        let err = WebhookSecrets::load_with(&[Provider::GitLab], root, |name| {
            (name == "SPROUT_GITLAB_WEBHOOK_TOKEN_FILE").then(|| "missing".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let secrets = WebhookSecrets::load_with(&[Provider::GitHub], root, |name| {
            (name == GITHUB_SECRET_VARIABLE).then(|| "s".to_string())
        })
        .unwrap();
        assert!(secrets.github.is_some() && secrets.gitlab.is_none());
    }

    #[test]
    fn deliveries_are_remembered_within_bounds() {
        let mut deliveries = Deliveries::default();
        assert!(deliveries.first_time("a".into()));
        assert!(!deliveries.first_time("a".into()));
        for i in 0..REMEMBERED_DELIVERIES {
            deliveries.first_time(i.to_string());
        }
        assert_eq!(deliveries.order.len(), REMEMBERED_DELIVERIES);
        assert!(
            deliveries.first_time("a".into()),
            "the oldest was forgotten"
        );
    }
}
