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
use http_body_util::{BodyExt, Limited};
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

mod payload;
mod signature;

pub use payload::{Hint, Provider, parse_github, parse_gitlab};
pub use signature::{verify_github, verify_gitlab};

/// Deliveries larger than this are refused unread (GitHub caps its own at 25 MB; pull request
/// and push events of interest are far smaller).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Delivery ids remembered for de-duplication (oldest forgotten first).
const REMEMBERED_DELIVERIES: usize = 4096;

pub const GITHUB_SECRET_VARIABLE: &str = "SPROUT_GITHUB_WEBHOOK_SECRET";
pub const GITLAB_TOKEN_VARIABLE: &str = "SPROUT_GITLAB_WEBHOOK_TOKEN";

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

fn secret_variable(provider: Provider) -> &'static str {
    match provider {
        Provider::GitHub => GITHUB_SECRET_VARIABLE,
        Provider::GitLab => GITLAB_TOKEN_VARIABLE,
    }
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
            let variable = secret_variable(*provider);
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
        verify_github(secret.expose().as_bytes(), signature.as_deref(), raw)
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
        verify_gitlab(secret.expose().as_bytes(), token.as_deref())
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

#[cfg(test)]
mod tests {
    use super::*;

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
