//! The HTTP layer the GitHub and GitLab clients share: timeouts on every request, conditional
//! GETs with ETags, the provider's rate-limit headers, and writes serialized and spaced out.
//!
//! Built on hyper-util's client with hyper-rustls, which kube already brings (no second HTTP
//! stack, no OpenSSL).

use super::super::config::Secret;
use super::super::metrics::Metrics;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A response larger than this is refused (a page of 100 GitHub pull requests is about 2.5 MB).
const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Pages remembered for conditional requests; past this, one is forgotten (it costs one full
/// answer later), so a long-running daemon's memory stays bounded.
const MAX_CACHED_PAGES: usize = 1024;
/// The longest pause a provider's headers may impose; a reset further out is not believed.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Tunables of an SCM client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Deadline for one request, body included.
    pub timeout: Duration,
    /// Minimum spacing between two writes (GitHub allows about 80 content-creating requests a
    /// minute, so 750 ms).
    pub write_interval: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(20),
            write_interval: Duration::from_millis(750),
        }
    }
}

/// Why a request gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("rate limited for {}s more ({reason})", .wait.as_secs())]
    RateLimited { wait: Duration, reason: String },
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {status}: {snippet}")]
    Status { status: StatusCode, snippet: String },
}

impl HttpError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A successful answer (2xx, or a 304 answered from the cache).
#[derive(Debug, Clone)]
pub struct Response {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The server said 304: this is the previously stored page.
    pub from_cache: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone)]
struct Cached {
    etag: HeaderValue,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug, Default)]
struct RateState {
    remaining: Option<u64>,
    blocked_until: Option<SystemTime>,
    reason: String,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One provider's HTTP client (one per generator).
pub struct Http {
    client: HttpsClient,
    provider: &'static str,
    auth: Option<(HeaderName, HeaderValue)>,
    options: HttpOptions,
    etags: Mutex<HashMap<String, Cached>>,
    rate: Mutex<RateState>,
    /// Held across a write and its spacing, so writes go one at a time.
    last_write: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Checks an API base URL: https, or plain http only to this machine (tests, a local proxy),
/// so a token never crosses a network in clear text.
pub fn check_api_url(api: &str) -> Result<(), String> {
    let uri: http::Uri = api
        .parse()
        .map_err(|e| format!("api `{api}` is not a URL: {e}"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if host == "localhost" || host == "[::1]" || host.starts_with("127.") => {
            Ok(())
        }
        _ => Err(format!(
            "api `{api}` must be an https:// URL (plain http only to localhost)"
        )),
    }
}

impl Http {
    /// `auth_header` is how the provider takes a token (`authorization: Bearer …` for GitHub,
    /// `private-token` for GitLab).
    pub fn new(
        provider: &'static str,
        token: Option<&Secret>,
        auth_header: fn(&Secret) -> (HeaderName, String),
        options: HttpOptions,
        metrics: Option<Metrics>,
    ) -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let auth = match token {
            Some(token) => {
                let (name, value) = auth_header(token);
                let mut value = HeaderValue::from_str(&value)
                    .map_err(|_| "the token holds characters a header cannot carry".to_string())?;
                value.set_sensitive(true);
                Some((name, value))
            }
            None => None,
        };
        Ok(Http {
            client,
            provider,
            auth,
            options,
            etags: Mutex::new(HashMap::new()),
            rate: Mutex::new(RateState::default()),
            last_write: tokio::sync::Mutex::new(None),
            metrics,
        })
    }

    /// Requests left in the provider's window, as its last answer said.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        self.rate.lock().unwrap().remaining
    }

    /// A GET, conditional when this URL was read before: a 304 gives back the stored page
    /// (and, on GitHub and GitLab, costs no rate limit).
    pub async fn get(&self, url: &str) -> Result<Response, HttpError> {
        let cached = self.etags.lock().unwrap().get(url).cloned();
        let mut headers = HeaderMap::new();
        if let Some(cached) = &cached {
            headers.insert(http::header::IF_NONE_MATCH, cached.etag.clone());
        }
        let (status, response_headers, body) =
            self.send(Method::GET, url, headers, Bytes::new()).await?;
        if status == StatusCode::NOT_MODIFIED {
            return match cached {
                Some(cached) => Ok(Response {
                    headers: cached.headers,
                    body: cached.body,
                    from_cache: true,
                }),
                None => Err(HttpError::Status {
                    status,
                    snippet: "304 without a conditional request".into(),
                }),
            };
        }
        if let Some(etag) = response_headers.get(http::header::ETAG) {
            let mut etags = self.etags.lock().unwrap();
            if etags.len() >= MAX_CACHED_PAGES
                && !etags.contains_key(url)
                && let Some(victim) = etags.keys().next().cloned()
            {
                etags.remove(&victim);
            }
            etags.insert(
                url.to_string(),
                Cached {
                    etag: etag.clone(),
                    headers: response_headers.clone(),
                    body: body.clone(),
                },
            );
        }
        Ok(Response {
            headers: response_headers,
            body,
            from_cache: false,
        })
    }

    /// A write (POST, PATCH, PUT) with a JSON body: one at a time, at most one per
    /// `write_interval`, because providers punish bursts of content-creating requests.
    pub async fn write(
        &self,
        method: Method,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Response, HttpError> {
        let mut last = self.last_write.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep_until(at + self.options.write_interval).await;
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let result = self
            .send(method, url, headers, Bytes::from(body.to_string()))
            .await;
        *last = Some(tokio::time::Instant::now());
        let (_, headers, body) = result?;
        Ok(Response {
            headers,
            body,
            from_cache: false,
        })
    }

    /// Sends one request unless the provider asked us to wait; 2xx and 304 come back, any
    /// other status is an error (after its rate-limit headers were read).
    async fn send(
        &self,
        method: Method,
        url: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), HttpError> {
        self.check_blocked()?;
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("sprout/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if let Some((name, value)) = &self.auth {
            headers.insert(name.clone(), value.clone());
        }
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(body))
            .map_err(|e| HttpError::Transport(format!("bad request to {url}: {e}")))?;
        *request.headers_mut() = headers;
        let timeout = self.options.timeout;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Transport(transport_message(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| HttpError::Transport(format!("reading the body: {e}")))?
                .to_bytes();
            Ok::<_, HttpError>((parts.status, parts.headers, body))
        };
        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(HttpError::Timeout(timeout)),
        };
        let (status, headers, body) = match outcome {
            Ok(answer) => answer,
            Err(e) => {
                let label = if matches!(e, HttpError::Timeout(_)) {
                    "timeout"
                } else {
                    "error"
                };
                self.count(label);
                return Err(e);
            }
        };
        self.count(status.as_str());
        self.read_rate_limit(status, &headers);
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok((status, headers, body));
        }
        // A 429 or an exhausted window says when to come back: that is the error to report.
        self.check_blocked()?;
        Err(HttpError::Status {
            status,
            snippet: snippet(&body),
        })
    }

    fn count(&self, status: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.count_scm_request(self.provider, status);
        }
    }

    fn check_blocked(&self) -> Result<(), HttpError> {
        let rate = self.rate.lock().unwrap();
        if let Some(until) = rate.blocked_until
            && let Ok(wait) = until.duration_since(SystemTime::now())
            && !wait.is_zero()
        {
            let error = HttpError::RateLimited {
                wait,
                reason: rate.reason.clone(),
            };
            drop(rate);
            self.count("blocked");
            return Err(error);
        }
        Ok(())
    }

    /// `retry-after` (seconds), or an exhausted window until its reset (epoch seconds), block
    /// every request of this client until then. GitHub says `x-ratelimit-*`, GitLab
    /// `ratelimit-*`.
    fn read_rate_limit(&self, status: StatusCode, headers: &HeaderMap) {
        let number = |names: &[&str]| {
            names.iter().find_map(|name| {
                headers
                    .get(*name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        };
        let remaining = number(&["x-ratelimit-remaining", "ratelimit-remaining"]);
        let reset = number(&["x-ratelimit-reset", "ratelimit-reset"]);
        let retry_after = number(&["retry-after"]);
        let now = SystemTime::now();
        let mut rate = self.rate.lock().unwrap();
        if let Some(remaining) = remaining {
            rate.remaining = Some(remaining);
            if let Some(metrics) = &self.metrics {
                metrics.set_scm_rate_limit_remaining(
                    self.provider,
                    i64::try_from(remaining).unwrap_or(i64::MAX),
                );
            }
        }
        let limited_status =
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN;
        let until = if let Some(seconds) = retry_after.filter(|_| limited_status) {
            Some((
                now + Duration::from_secs(seconds).min(MAX_BACKOFF),
                format!("HTTP {status} with retry-after: {seconds}"),
            ))
        } else if remaining == Some(0) {
            let reset_at = reset
                .map(|epoch| UNIX_EPOCH + Duration::from_secs(epoch))
                .unwrap_or(now + Duration::from_secs(60));
            Some((
                reset_at.min(now + MAX_BACKOFF),
                "rate-limit window exhausted".to_string(),
            ))
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            // A 429 that says nothing about when: back off a minute.
            Some((
                now + Duration::from_secs(60),
                "HTTP 429 without retry-after".to_string(),
            ))
        } else {
            None
        };
        if let Some((until, reason)) = until {
            tracing::warn!(provider = self.provider, %reason, "SCM rate limit: backing off");
            rate.blocked_until = Some(until);
            rate.reason = reason;
        }
    }
}

fn transport_message(error: &hyper_util::client::legacy::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The start of an error body, on one line, for a message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `rel` links of a `Link` header: `<url>; rel="next", <url>; rel="last"`.
pub fn link_relations(header: &str) -> HashMap<String, String> {
    header
        .split(',')
        .filter_map(|part| {
            let (url, params) = part.split_once(';')?;
            let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
            let rel = params.split(';').find_map(|param| {
                let (key, value) = param.split_once('=')?;
                (key.trim() == "rel").then(|| value.trim().trim_matches('"').to_string())
            })?;
            Some((rel, url.to_string()))
        })
        .collect()
}

/// The `page` query parameter of a URL.
pub fn page_of(url: &str) -> Option<u64> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "page").then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_their_relations() {
        let links = link_relations(
            r#"<https://api.github.com/repositories/1/pulls?state=open&per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/pulls?state=open&per_page=100&page=5>; rel="last""#,
        );
        assert_eq!(page_of(&links["next"]), Some(2));
        assert_eq!(page_of(&links["last"]), Some(5));
        assert!(link_relations("garbage").is_empty());
    }

    #[test]
    fn tokens_travel_only_over_https_or_to_this_machine() {
        assert!(check_api_url("https://api.github.com").is_ok());
        assert!(check_api_url("http://127.0.0.1:8080/api/v3").is_ok());
        assert!(check_api_url("http://localhost:1").is_ok());
        assert!(check_api_url("http://github.example.com").is_err());
        assert!(check_api_url("ftp://x").is_err());
        assert!(check_api_url("not a url").is_err());
    }
}
