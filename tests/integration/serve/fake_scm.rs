//! A fake GitHub and GitLab on loopback, speaking the REST shapes sprout uses: pull and merge
//! request listings (paginated by `Link` and `x-next-page`), single reads, ETags and 304s,
//! rate-limit headers, issue comments, deployments and their statuses, merge request notes and
//! environments. It can misbehave on demand ([`Misbehaviour`]) and records every request.
//!
//! GitHub is served at the root (`api: <url>`), GitLab under `/api/v4` (`api: <url>/api/v4`).
//! One repository per provider: [`GITHUB_REPO`] and [`GITLAB_PROJECT`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const GITHUB_REPO: &str = "acme/shop";
pub const GITLAB_PROJECT: &str = "acme/shop";

/// How the listing endpoints (pulls, merge requests) go wrong until [`FakeScm::behave`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    ServerError,
    /// 429 with `retry-after` (seconds).
    RateLimited(u64),
    Html,
    /// `[]`, status 200.
    EmptyList,
    /// The first half of the JSON, status 200.
    TruncatedJson,
    /// Page 2 and later answer 500.
    SecondPageFails,
    /// Page 2 and later never answer (the handler sleeps for a minute).
    SecondPageHangs,
    /// Page 2 comes without a next link although page 1 promised more pages.
    SecondPageCutShort,
    /// A new item is opened between page 1 and page 2 (newest first), so page 2 starts with
    /// the last item of page 1.
    OpenedWhilePaging,
    /// Page 1's next link points at another host.
    ForeignNextLink,
}

/// A pull request (GitHub) or merge request (GitLab) the fake holds.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub number: u64,
    pub branch: String,
    pub sha: String,
    pub author: String,
    pub labels: Vec<String>,
    pub draft: bool,
    pub target: String,
    /// `open`, `closed` or `merged`.
    pub state: String,
    pub from_fork: bool,
}

impl FakeRequest {
    pub fn new(number: u64, branch: &str) -> Self {
        FakeRequest {
            number,
            branch: branch.to_string(),
            sha: format!("{number:0>40}"),
            author: "alice".into(),
            labels: Vec::new(),
            draft: false,
            target: "main".into(),
            state: "open".into(),
            from_fork: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub status: u16,
    /// The `authorization` (GitHub) or `private-token` (GitLab) header sent.
    pub credential: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: u64,
    pub payload: Value,
    /// Newest last: (state, environment_url).
    pub statuses: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub id: u64,
    pub name: String,
    pub external_url: Option<String>,
    pub state: String,
}

#[derive(Debug, Default)]
pub struct Data {
    pub github: Vec<FakeRequest>,
    pub gitlab: Vec<FakeRequest>,
    pub comments: Vec<Comment>,
    pub deployments: Vec<Deployment>,
    pub notes: Vec<Comment>,
    pub environments: Vec<Environment>,
    pub requests: Vec<Recorded>,
    /// Items per listing page, whatever `per_page` asks (small, to exercise pagination).
    pub page_size: usize,
    pub misbehaviour: Option<Misbehaviour>,
    pub rate_remaining: u64,
    next_id: u64,
}

pub struct FakeScm {
    pub url: String,
    data: Arc<Mutex<Data>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeScm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeScm {
    pub async fn start() -> Self {
        let data = Arc::new(Mutex::new(Data {
            page_size: 100,
            rate_remaining: 5000,
            next_id: 1000,
            ..Data::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new()
            .fallback(handle)
            .with_state((data.clone(), url.clone()));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FakeScm { url, data, task }
    }

    pub fn github_api(&self) -> String {
        self.url.clone()
    }

    pub fn gitlab_api(&self) -> String {
        format!("{}/api/v4", self.url)
    }

    pub fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap()
    }

    pub fn misbehave(&self, misbehaviour: Misbehaviour) {
        self.data().misbehaviour = Some(misbehaviour);
    }

    pub fn behave(&self) {
        self.data().misbehaviour = None;
    }

    pub fn request_count(&self) -> usize {
        self.data().requests.len()
    }

    /// Requests whose method is not GET.
    pub fn writes(&self) -> Vec<Recorded> {
        self.data()
            .requests
            .iter()
            .filter(|r| r.method != Method::GET)
            .cloned()
            .collect()
    }
}

type Shared = (Arc<Mutex<Data>>, String);

/// What to answer, decided under the lock, sent after any delay outside it.
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Option<Duration>,
}

impl Answer {
    fn json(status: StatusCode, value: &Value) -> Self {
        Answer {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: value.to_string(),
            delay: None,
        }
    }

    fn not_found() -> Self {
        Answer::json(StatusCode::NOT_FOUND, &json!({"message": "Not Found"}))
    }
}

async fn handle(
    State((data, base)): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let answer = {
        let mut data = data.lock().unwrap();
        let gitlab = uri.path().starts_with("/api/v4/");
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut answer = route(&mut data, &base, &method, &uri, &body);
        // Conditional GETs: a matching ETag is a 304 that costs no rate limit.
        if method == Method::GET && answer.status == StatusCode::OK {
            // Over the body and the pagination headers, as a page is both.
            let mut tagged = answer.body.clone();
            for (name, value) in &answer.headers {
                tagged.push_str(&format!("\n{name}: {value}"));
            }
            let etag = format!("\"{:x}\"", fnv(tagged.as_bytes()));
            let matches = headers
                .get("if-none-match")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == etag);
            answer.headers.push(("etag", etag));
            if matches {
                answer.status = StatusCode::NOT_MODIFIED;
                answer.body.clear();
            }
        }
        if answer.status != StatusCode::NOT_MODIFIED {
            data.rate_remaining = data.rate_remaining.saturating_sub(1);
        }
        let (remaining, reset) = if gitlab {
            ("ratelimit-remaining", "ratelimit-reset")
        } else {
            ("x-ratelimit-remaining", "x-ratelimit-reset")
        };
        answer
            .headers
            .push((remaining, data.rate_remaining.to_string()));
        answer.headers.push((reset, "4102444800".into()));
        let credential = headers
            .get(if gitlab {
                "private-token"
            } else {
                "authorization"
            })
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        data.requests.push(Recorded {
            method: method.clone(),
            target,
            status: answer.status.as_u16(),
            credential,
        });
        answer
    };
    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = (answer.status, answer.body).into_response();
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn route(data: &mut Data, base: &str, method: &Method, uri: &Uri, body: &Value) -> Answer {
    let segments: Vec<String> = uri.path().split('/').skip(1).map(decode).collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let q = query(uri);
    let github_repo: Vec<&str> = GITHUB_REPO.split('/').collect();
    match s.as_slice() {
        ["repos", owner, name, rest @ ..] if [*owner, *name] == github_repo[..] => {
            github(data, base, method, uri, &q, rest, body)
        }
        ["api", "v4", "projects", project, rest @ ..] if *project == GITLAB_PROJECT => {
            gitlab(data, base, method, uri, &q, rest, body)
        }
        _ => Answer::not_found(),
    }
}

fn next_id(data: &mut Data) -> u64 {
    data.next_id += 1;
    data.next_id
}

/// One page of `items` with the misbehaviour applied; `links` writes the pagination headers.
fn listing_page(
    data: &Data,
    items: Vec<Value>,
    page: usize,
    misbehave: bool,
    links: impl Fn(usize, usize, usize, bool) -> Vec<(&'static str, String)>,
) -> Answer {
    let mut items = items;
    if misbehave && data.misbehaviour == Some(Misbehaviour::OpenedWhilePaging) && page >= 2 {
        items.insert(0, json!({"number": 999_999}));
    }
    let size = data.page_size.max(1);
    let pages = items.len().div_ceil(size).max(1);
    let chunk: Vec<Value> = items
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    let mut answer = Answer::json(StatusCode::OK, &Value::Array(chunk));
    answer
        .headers
        .extend(links(page, pages, items.len(), false));
    let Some(misbehaviour) = data.misbehaviour.filter(|_| misbehave) else {
        return answer;
    };
    match misbehaviour {
        Misbehaviour::ServerError => Answer::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"message": "boom"}),
        ),
        Misbehaviour::RateLimited(seconds) => {
            let mut answer = Answer::json(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"message": "secondary rate limit"}),
            );
            answer.headers.push(("retry-after", seconds.to_string()));
            answer
        }
        Misbehaviour::Html => Answer {
            status: StatusCode::OK,
            headers: vec![("content-type", "text/html".into())],
            body: "<!DOCTYPE html><html><body>Sign in</body></html>".into(),
            delay: None,
        },
        Misbehaviour::EmptyList => Answer::json(StatusCode::OK, &json!([])),
        Misbehaviour::TruncatedJson => {
            let cut = answer.body.len() / 2;
            answer.body.truncate(cut);
            answer
        }
        Misbehaviour::ForeignNextLink => {
            answer
                .headers
                .retain(|(name, _)| *name != "link" && *name != "x-next-page");
            answer.headers.push((
                "link",
                "<https://elsewhere.example/steal?page=2>; rel=\"next\"".into(),
            ));
            answer
        }
        Misbehaviour::SecondPageFails if page >= 2 => Answer::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"message": "boom"}),
        ),
        Misbehaviour::SecondPageHangs if page >= 2 => Answer {
            delay: Some(Duration::from_secs(60)),
            ..answer
        },
        Misbehaviour::SecondPageCutShort if page >= 2 => {
            let mut answer = Answer::json(
                StatusCode::OK,
                &serde_json::from_str::<Value>(&answer.body).unwrap(),
            );
            answer.headers.extend(links(page, pages, items.len(), true));
            answer
        }
        _ => answer,
    }
}

fn github_pull(item: &FakeRequest) -> Value {
    let head_repo = if item.from_fork {
        "someone/shop".to_string()
    } else {
        GITHUB_REPO.to_string()
    };
    json!({
        "number": item.number,
        "state": if item.state == "open" { "open" } else { "closed" },
        "merged": item.state == "merged",
        "merged_at": if item.state == "merged" { json!("2026-01-01T00:00:00Z") } else { Value::Null },
        "draft": item.draft,
        "title": format!("Change {}", item.number),
        "user": {"login": item.author},
        "labels": item.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "head": {"ref": item.branch, "sha": item.sha, "repo": {"full_name": head_repo}},
        "base": {"ref": item.target, "sha": "f".repeat(40), "repo": {"full_name": GITHUB_REPO}},
    })
}

fn github(
    data: &mut Data,
    base: &str,
    method: &Method,
    uri: &Uri,
    q: &BTreeMap<String, String>,
    rest: &[&str],
    body: &Value,
) -> Answer {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let link = |page: usize, pages: usize, cut_short: bool| {
        let url = |n: usize| {
            let mut params: Vec<String> = uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("page="))
                .map(str::to_string)
                .collect();
            params.push(format!("page={n}"));
            format!("{base}{}?{}", uri.path(), params.join("&"))
        };
        let mut parts = Vec::new();
        if page < pages && !cut_short {
            parts.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        }
        if page < pages || cut_short {
            parts.push(format!("<{}>; rel=\"last\"", url(pages)));
        }
        if page > 1 {
            parts.push(format!("<{}>; rel=\"first\"", url(1)));
        }
        if parts.is_empty() {
            vec![]
        } else {
            vec![("link", parts.join(", "))]
        }
    };
    match (method.as_str(), rest) {
        ("GET", ["pulls"]) => {
            let items: Vec<Value> = data
                .github
                .iter()
                .filter(|p| q.get("state").is_none_or(|s| s == "all" || *s == p.state))
                .map(github_pull)
                .collect();
            listing_page(data, items, page, true, |page, pages, _, cut| {
                link(page, pages, cut)
            })
        }
        ("GET", ["pulls", number]) => {
            match data.github.iter().find(|p| p.number.to_string() == *number) {
                Some(pull) => {
                    let value = github_pull(pull);
                    match data.misbehaviour {
                        Some(Misbehaviour::ServerError) => Answer::json(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &json!({"message": "boom"}),
                        ),
                        Some(Misbehaviour::Html) => Answer {
                            status: StatusCode::OK,
                            headers: vec![("content-type", "text/html".into())],
                            body: "<html>login</html>".into(),
                            delay: None,
                        },
                        _ => Answer::json(StatusCode::OK, &value),
                    }
                }
                None => Answer::not_found(),
            }
        }
        ("GET", ["issues", number, "comments"]) => {
            let items: Vec<Value> = data
                .comments
                .iter()
                .filter(|c| c.issue.to_string() == *number)
                .map(|c| json!({"id": c.id, "body": c.body, "user": {"login": "sprout-bot"}}))
                .collect();
            listing_page(data, items, page, false, |page, pages, _, cut| {
                link(page, pages, cut)
            })
        }
        ("POST", ["issues", number, "comments"]) => {
            let id = next_id(data);
            let comment = Comment {
                id,
                issue: number.parse().unwrap(),
                body: body["body"].as_str().unwrap_or_default().to_string(),
            };
            data.comments.push(comment.clone());
            Answer::json(
                StatusCode::CREATED,
                &json!({"id": id, "body": comment.body}),
            )
        }
        ("PATCH", ["issues", "comments", id]) => {
            match data.comments.iter_mut().find(|c| c.id.to_string() == *id) {
                Some(comment) => {
                    comment.body = body["body"].as_str().unwrap_or_default().to_string();
                    Answer::json(
                        StatusCode::OK,
                        &json!({"id": comment.id, "body": comment.body}),
                    )
                }
                None => Answer::not_found(),
            }
        }
        ("GET", ["deployments"]) => {
            let items: Vec<Value> = data
                .deployments
                .iter()
                .rev()
                .filter(|d| q.get("environment").is_none_or(|e| d.payload["environment"] == *e.as_str()))
                .filter(|d| q.get("sha").is_none_or(|s| d.payload["ref"] == *s.as_str()))
                .map(|d| json!({"id": d.id, "sha": d.payload["ref"], "environment": d.payload["environment"]}))
                .collect();
            listing_page(data, items, page, false, |page, pages, _, cut| {
                link(page, pages, cut)
            })
        }
        ("POST", ["deployments"]) => {
            let id = next_id(data);
            data.deployments.push(Deployment {
                id,
                payload: body.clone(),
                statuses: Vec::new(),
            });
            Answer::json(
                StatusCode::CREATED,
                &json!({"id": id, "sha": body["ref"], "environment": body["environment"]}),
            )
        }
        ("GET", ["deployments", id, "statuses"]) => {
            match data.deployments.iter().find(|d| d.id.to_string() == *id) {
                Some(deployment) => {
                    let items: Vec<Value> = deployment
                        .statuses
                        .iter()
                        .rev()
                        .map(|(state, url)| json!({"state": state, "environment_url": url}))
                        .collect();
                    listing_page(data, items, page, false, |page, pages, _, cut| {
                        link(page, pages, cut)
                    })
                }
                None => Answer::not_found(),
            }
        }
        ("POST", ["deployments", id, "statuses"]) => {
            match data
                .deployments
                .iter_mut()
                .find(|d| d.id.to_string() == *id)
            {
                Some(deployment) => {
                    let state = body["state"].as_str().unwrap_or_default().to_string();
                    let url = body["environment_url"].as_str().map(str::to_string);
                    deployment.statuses.push((state.clone(), url));
                    Answer::json(StatusCode::CREATED, &json!({"state": state}))
                }
                None => Answer::not_found(),
            }
        }
        _ => Answer::not_found(),
    }
}

fn gitlab_request(item: &FakeRequest) -> Value {
    json!({
        "iid": item.number,
        "id": item.number + 90000,
        "state": match item.state.as_str() { "open" => "opened", other => other },
        "draft": item.draft,
        "author": {"username": item.author},
        "labels": item.labels,
        "source_branch": item.branch,
        "target_branch": item.target,
        "sha": item.sha,
        "source_project_id": if item.from_fork { 2 } else { 1 },
        "target_project_id": 1,
    })
}

fn gitlab(
    data: &mut Data,
    base: &str,
    method: &Method,
    uri: &Uri,
    q: &BTreeMap<String, String>,
    rest: &[&str],
    body: &Value,
) -> Answer {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let headers = |page: usize, pages: usize, total: usize, cut_short: bool| {
        let next = if page < pages && !cut_short {
            (page + 1).to_string()
        } else {
            String::new()
        };
        let mut headers = vec![
            ("x-page", page.to_string()),
            ("x-total-pages", pages.to_string()),
            ("x-total", total.to_string()),
            ("x-next-page", next.clone()),
        ];
        if !next.is_empty() {
            headers.push((
                "link",
                format!("<{base}{}?page={next}>; rel=\"next\"", uri.path()),
            ));
        }
        headers
    };
    match (method.as_str(), rest) {
        ("GET", ["merge_requests"]) => {
            let items: Vec<Value> = data
                .gitlab
                .iter()
                .filter(|m| {
                    q.get("state").is_none_or(|s| {
                        s == "all" || (s == "opened" && m.state == "open") || *s == m.state
                    })
                })
                .map(gitlab_request)
                .collect();
            listing_page(data, items, page, true, headers)
        }
        ("GET", ["merge_requests", iid]) => {
            match data.gitlab.iter().find(|m| m.number.to_string() == *iid) {
                Some(request) => match data.misbehaviour {
                    Some(Misbehaviour::ServerError) => Answer::json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"message": "boom"}),
                    ),
                    _ => Answer::json(StatusCode::OK, &gitlab_request(request)),
                },
                None => Answer::not_found(),
            }
        }
        ("GET", ["merge_requests", iid, "notes"]) => {
            let items: Vec<Value> = data
                .notes
                .iter()
                .filter(|n| n.issue.to_string() == *iid)
                .map(|n| json!({"id": n.id, "body": n.body, "system": false}))
                .collect();
            listing_page(data, items, page, false, headers)
        }
        ("POST", ["merge_requests", iid, "notes"]) => {
            let id = next_id(data);
            let note = Comment {
                id,
                issue: iid.parse().unwrap(),
                body: body["body"].as_str().unwrap_or_default().to_string(),
            };
            data.notes.push(note.clone());
            Answer::json(StatusCode::CREATED, &json!({"id": id, "body": note.body}))
        }
        ("PUT", ["merge_requests", _, "notes", id]) => {
            match data.notes.iter_mut().find(|n| n.id.to_string() == *id) {
                Some(note) => {
                    note.body = body["body"].as_str().unwrap_or_default().to_string();
                    Answer::json(StatusCode::OK, &json!({"id": note.id, "body": note.body}))
                }
                None => Answer::not_found(),
            }
        }
        ("GET", ["environments"]) => {
            let items: Vec<Value> = data
                .environments
                .iter()
                .filter(|e| q.get("name").is_none_or(|n| *n == e.name))
                .map(environment_json)
                .collect();
            listing_page(data, items, page, false, headers)
        }
        ("POST", ["environments"]) => {
            let id = next_id(data);
            let environment = Environment {
                id,
                name: body["name"].as_str().unwrap_or_default().to_string(),
                external_url: body["external_url"].as_str().map(str::to_string),
                state: "available".into(),
            };
            let value = environment_json(&environment);
            data.environments.push(environment);
            Answer::json(StatusCode::CREATED, &value)
        }
        ("PUT", ["environments", id]) => {
            match data
                .environments
                .iter_mut()
                .find(|e| e.id.to_string() == *id)
            {
                Some(environment) => {
                    environment.external_url = body["external_url"].as_str().map(str::to_string);
                    Answer::json(StatusCode::OK, &environment_json(environment))
                }
                None => Answer::not_found(),
            }
        }
        ("POST", ["environments", id, "stop"]) => {
            match data
                .environments
                .iter_mut()
                .find(|e| e.id.to_string() == *id)
            {
                Some(environment) => {
                    environment.state = "stopped".into();
                    Answer::json(StatusCode::OK, &environment_json(environment))
                }
                None => Answer::not_found(),
            }
        }
        _ => Answer::not_found(),
    }
}

fn environment_json(environment: &Environment) -> Value {
    json!({
        "id": environment.id,
        "name": environment.name,
        "external_url": environment.external_url,
        "state": environment.state,
    })
}
