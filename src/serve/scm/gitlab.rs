//! GitLab's REST API (v4): open merge requests, one merge request, notes and environments.

use super::comment::{Comments, Posted, Thread};
use super::feedback::{self, Feedback};
use super::http::{Http, HttpOptions, link_relations};
use super::{
    ChangeRequest, Closure, RequestState, ScmError, encode_component, filter, same_origin,
    unparsable,
};
use crate::serve::config::{Filters, Secret};
use crate::serve::listing::{Listing, ShrinkGuard};
use crate::serve::metrics::Metrics;
use ::http::Method;
use ::http::header::HeaderName;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Mutex;

/// More pages than this (10,000 open merge requests) is taken as a server gone wrong.
const MAX_PAGES: u64 = 100;

#[derive(Debug, Deserialize)]
struct MergeRequest {
    iid: u64,
    state: String,
    #[serde(default)]
    draft: bool,
    /// Older GitLab's name for a draft.
    #[serde(default)]
    work_in_progress: bool,
    author: Option<Author>,
    #[serde(default)]
    labels: Vec<String>,
    source_branch: String,
    target_branch: String,
    /// `null` while GitLab is still preparing a new merge request.
    sha: Option<String>,
    #[serde(default)]
    source_project_id: Option<u64>,
    #[serde(default)]
    target_project_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Author {
    username: String,
}

#[derive(Debug, Deserialize)]
struct Note {
    id: u64,
    #[serde(default)]
    body: String,
    #[serde(default)]
    system: bool,
}

#[derive(Debug, Deserialize)]
struct Environment {
    id: u64,
    name: String,
    #[serde(default)]
    external_url: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Debug)]
pub struct GitLab {
    api: String,
    project: String,
    filters: Filters,
    http: Http,
    guard: Mutex<ShrinkGuard>,
    notes: Comments,
    /// Environment ids by name, with the URL last written.
    environments: Mutex<HashMap<String, (u64, Option<String>)>>,
}

fn private_token(token: &Secret) -> (HeaderName, String) {
    (
        HeaderName::from_static("private-token"),
        token.expose().to_string(),
    )
}

impl GitLab {
    pub fn new(
        api: &str,
        project: &str,
        token: Option<Secret>,
        filters: Filters,
        options: HttpOptions,
        metrics: Option<Metrics>,
    ) -> Result<Self, ScmError> {
        super::http::check_api_url(api).map_err(ScmError::Config)?;
        let http = Http::new("gitlab", token.as_ref(), private_token, options, metrics)
            .map_err(ScmError::Config)?;
        Ok(GitLab {
            api: api.trim_end_matches('/').to_string(),
            project: project.to_string(),
            filters,
            http,
            guard: Mutex::default(),
            notes: Comments::default(),
            environments: Mutex::default(),
        })
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn seed(&self, previous: usize) {
        self.guard.lock().unwrap().seed(previous);
    }

    pub fn guard(&self) -> ShrinkGuard {
        self.guard.lock().unwrap().clone()
    }

    pub fn restore_guard(&self, guard: ShrinkGuard) {
        *self.guard.lock().unwrap() = guard;
    }

    pub fn rate_limit_remaining(&self) -> Option<u64> {
        self.http.rate_limit_remaining()
    }

    fn project_url(&self, rest: &str) -> String {
        format!(
            "{}/projects/{}{rest}",
            self.api,
            encode_component(&self.project)
        )
    }

    pub async fn list(&self) -> Listing<ChangeRequest> {
        let first = self.project_url("/merge_requests?state=opened&per_page=100");
        let requests: Vec<MergeRequest> = match self.all_pages(&first).await {
            Ok(requests) => requests,
            Err(reason) => {
                tracing::warn!(project = %self.project, %reason, "GitLab listing unknown");
                return Listing::unknown(format!("gitlab {}: {reason}", self.project));
            }
        };
        let mut items = Vec::with_capacity(requests.len());
        for request in requests {
            match item(request) {
                Ok(item) => items.push(item),
                Err(reason) => {
                    return Listing::unknown(format!("gitlab {}: {reason}", self.project));
                }
            }
        }
        match self
            .guard
            .lock()
            .unwrap()
            .check(items, |item| item.number.to_string())
        {
            Listing::Known(items) => Listing::Known(
                items
                    .into_iter()
                    .filter(|item| filter::wanted(item, &self.filters))
                    .collect(),
            ),
            Listing::Unknown { reason } => {
                Listing::unknown(format!("gitlab {}: {reason}", self.project))
            }
        }
    }

    /// Every page from `first` on, by `x-next-page` (or `Link: rel="next"` where a proxy
    /// dropped GitLab's own headers); a page that fails or does not parse, fewer pages than
    /// `x-total-pages` promised, or fewer items than `x-total` said makes the answer fail.
    async fn all_pages<T: DeserializeOwned>(&self, first: &str) -> Result<Vec<T>, String> {
        let mut url = first.to_string();
        let mut items = Vec::new();
        let mut promised_pages = None;
        let mut promised_items = None;
        for page in 1..=MAX_PAGES {
            let response = self
                .http
                .get(&url)
                .await
                .map_err(|e| format!("page {page}: {e}"))?;
            let batch: Vec<T> = serde_json::from_slice(&response.body)
                .map_err(|e| format!("page {page}: {}", unparsable(&response, &e)))?;
            items.extend(batch);
            let number = |name: &str| {
                response
                    .header(name)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if page == 1 {
                promised_pages = number("x-total-pages");
                promised_items = number("x-total");
            }
            let next = match response.header("x-next-page") {
                Some(next) if next.trim().is_empty() => None,
                Some(next) => match next.trim().parse::<u64>() {
                    Ok(next) => Some(with_page(first, next)),
                    Err(_) => return Err(format!("page {page}: x-next-page `{next}`")),
                },
                None => response
                    .header("link")
                    .and_then(|link| link_relations(link).remove("next")),
            };
            match next {
                Some(next) if same_origin(&self.api, &next) => url = next,
                Some(next) => {
                    return Err(format!(
                        "page {page}: a next page off the API's origin ({next})"
                    ));
                }
                None => {
                    if let Some(pages) = promised_pages.filter(|pages| *pages > page) {
                        return Err(format!(
                            "x-total-pages promised {pages} pages, page {page} named no next page"
                        ));
                    }
                    if let Some(total) =
                        promised_items.filter(|total| *total as usize > items.len())
                    {
                        return Err(format!(
                            "x-total promised {total} items, {} came",
                            items.len()
                        ));
                    }
                    return Ok(items);
                }
            }
        }
        Err(format!("more than {MAX_PAGES} pages"))
    }

    pub async fn confirm(&self, number: u64) -> Closure {
        let url = self.project_url(&format!("/merge_requests/{number}"));
        let response = match self.http.get(&url).await {
            Ok(response) => response,
            Err(e) => {
                return Closure::Unknown {
                    reason: format!("gitlab {} !{number}: {e}", self.project),
                };
            }
        };
        match serde_json::from_slice::<MergeRequest>(&response.body) {
            Ok(request) if request.iid == number => match request.state.as_str() {
                // `locked` is a merge in progress: still open.
                "opened" | "locked" => Closure::Open,
                "merged" => Closure::Merged,
                "closed" => Closure::Closed,
                other => Closure::Unknown {
                    reason: format!("gitlab {} !{number}: state `{other}`", self.project),
                },
            },
            Ok(request) => Closure::Unknown {
                reason: format!(
                    "gitlab {} !{number}: the answer is about !{}",
                    self.project, request.iid
                ),
            },
            Err(e) => Closure::Unknown {
                reason: format!(
                    "gitlab {} !{number}: {}",
                    self.project,
                    unparsable(&response, &e)
                ),
            },
        }
    }

    pub async fn publish_feedback(&self, number: u64, feedback: &Feedback) -> Result<(), ScmError> {
        self.upsert_note(number, &feedback.environment, feedback::body(feedback))
            .await?;
        self.upsert_environment(&feedback.environment, feedback.url.as_deref())
            .await
    }

    pub async fn retire_feedback(
        &self,
        number: u64,
        environment: &str,
        reason: &str,
    ) -> Result<(), ScmError> {
        self.upsert_note(
            number,
            environment,
            feedback::retired_body(environment, reason),
        )
        .await?;
        self.stop_environment(environment).await
    }

    fn http_error(&self, what: String) -> impl FnOnce(super::HttpError) -> ScmError + '_ {
        move |source| ScmError::Http {
            provider: "gitlab",
            repository: self.project.clone(),
            what,
            source,
        }
    }

    fn answer_error(&self, what: &str, message: String) -> ScmError {
        ScmError::Answer {
            provider: "gitlab",
            repository: self.project.clone(),
            what: what.to_string(),
            message,
        }
    }

    /// The one note carrying the marker (see [`Comments::upsert`]).
    async fn upsert_note(
        &self,
        number: u64,
        environment: &str,
        body: String,
    ) -> Result<(), ScmError> {
        let notes = self.project_url(&format!("/merge_requests/{number}/notes"));
        let thread = Thread {
            provider: "gitlab",
            repository: &self.project,
            what: format!("note on !{number}"),
            post_to: notes.clone(),
            edit: Method::PUT,
            edit_under: notes,
        };
        let find = self.find_note(number, environment);
        self.notes
            .upsert(&self.http, number, thread, body, find, |n: Note| n.id)
            .await
    }

    async fn find_note(&self, number: u64, environment: &str) -> Result<Option<Posted>, ScmError> {
        let marker = feedback::marker(environment);
        let url = self.project_url(&format!(
            "/merge_requests/{number}/notes?per_page=100&sort=asc"
        ));
        let notes: Vec<Note> = self
            .all_pages(&url)
            .await
            .map_err(|message| self.answer_error(&format!("notes of !{number}"), message))?;
        Ok(notes
            .into_iter()
            .find(|note| !note.system && note.body.contains(&marker))
            .map(|note| Posted {
                id: note.id,
                body: note.body,
            }))
    }

    async fn find_environment(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<Environment>, ScmError> {
        let url = self.project_url(&format!(
            "/environments?name={}&per_page=100",
            encode_component(name)
        ));
        let found: Vec<Environment> = self
            .all_pages(&url)
            .await
            .map_err(|message| self.answer_error(what, message))?;
        Ok(found.into_iter().find(|e| e.name == name))
    }

    /// The environment `preview/mr-N` with the preview's URL: created once, its URL edited
    /// when it changes.
    async fn upsert_environment(
        &self,
        environment: &str,
        url: Option<&str>,
    ) -> Result<(), ScmError> {
        let name = feedback::deployment_environment(environment);
        let what = format!("environment {name}");
        let wanted = url.map(str::to_string);
        let known = self.environments.lock().unwrap().get(&name).cloned();
        let (id, current) = match known {
            Some(known) => known,
            None => match self.find_environment(&name, &what).await? {
                Some(found) => (found.id, found.external_url),
                None => {
                    let mut payload = serde_json::json!({ "name": name });
                    if let Some(url) = &wanted {
                        payload["external_url"] = url.clone().into();
                    }
                    let response = self
                        .http
                        .write(Method::POST, &self.project_url("/environments"), &payload)
                        .await
                        .map_err(self.http_error(what.clone()))?;
                    let created: Environment = serde_json::from_slice(&response.body)
                        .map_err(|e| self.answer_error(&what, e.to_string()))?;
                    (created.id, created.external_url)
                }
            },
        };
        if wanted.is_some() && current != wanted {
            let payload = serde_json::json!({ "external_url": wanted });
            self.http
                .write(
                    Method::PUT,
                    &self.project_url(&format!("/environments/{id}")),
                    &payload,
                )
                .await
                .map_err(self.http_error(what))?;
        }
        self.environments
            .lock()
            .unwrap()
            .insert(name, (id, wanted.or(current)));
        Ok(())
    }

    async fn stop_environment(&self, environment: &str) -> Result<(), ScmError> {
        let name = feedback::deployment_environment(environment);
        let what = format!("environment {name}");
        let found = self.find_environment(&name, &what).await?;
        if let Some(found) = found.filter(|e| e.state.as_deref() != Some("stopped")) {
            self.http
                .write(
                    Method::POST,
                    &self.project_url(&format!("/environments/{}/stop", found.id)),
                    &serde_json::json!({}),
                )
                .await
                .map_err(self.http_error(what))?;
        }
        self.environments.lock().unwrap().remove(&name);
        Ok(())
    }
}

/// `first` with its `page` parameter set to `page`.
fn with_page(first: &str, page: u64) -> String {
    let (base, query) = first.split_once('?').unwrap_or((first, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .map(str::to_string)
        .collect();
    params.push(format!("page={page}"));
    format!("{base}?{}", params.join("&"))
}

fn item(request: MergeRequest) -> Result<ChangeRequest, String> {
    let sha = request
        .sha
        .filter(|sha| !sha.is_empty())
        .ok_or_else(|| format!("!{} has no head commit yet", request.iid))?;
    let state = match request.state.as_str() {
        "merged" => RequestState::Merged,
        "closed" => RequestState::Closed,
        _ => RequestState::Open,
    };
    Ok(ChangeRequest {
        number: request.iid,
        head_branch: request.source_branch,
        head_sha: sha,
        head_ref: format!("refs/merge-requests/{}/head", request.iid),
        from_fork: request.source_project_id != request.target_project_id,
        author: request.author.map(|a| a.username).unwrap_or_default(),
        labels: request.labels,
        draft: request.draft || request.work_in_progress,
        target_branch: request.target_branch,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_parameter_is_replaced() {
        assert_eq!(
            with_page(
                "http://h/api/v4/projects/a%2Fb/merge_requests?state=opened&per_page=100",
                3
            ),
            "http://h/api/v4/projects/a%2Fb/merge_requests?state=opened&per_page=100&page=3"
        );
        assert_eq!(
            with_page("http://h/x?page=2&a=1", 3),
            "http://h/x?a=1&page=3"
        );
    }
}
