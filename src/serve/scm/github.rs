//! GitHub's REST API: open pull requests, one pull request, issue comments and deployments.

use super::comment::{Comments, Posted, Thread};
use super::feedback::{self, Feedback};
use super::http::{Http, HttpOptions, link_relations, page_of};
use super::{
    ChangeRequest, Closure, RequestState, ScmError, encode_component, filter, same_origin,
    unparsable,
};
use crate::serve::config::{Filters, Secret};
use crate::serve::listing::{Listing, ShrinkGuard};
use crate::serve::metrics::Metrics;
use ::http::Method;
use ::http::header::{AUTHORIZATION, HeaderName};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Mutex;

/// More pages than this (10,000 open pull requests) is taken as a server gone wrong.
const MAX_PAGES: u64 = 100;

#[derive(Debug, Deserialize)]
struct Pull {
    number: u64,
    state: String,
    #[serde(default)]
    draft: bool,
    user: Option<Login>,
    #[serde(default)]
    labels: Vec<Label>,
    head: Head,
    base: Base,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Login {
    login: String,
}

#[derive(Debug, Deserialize)]
struct Label {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    branch: String,
    sha: String,
    /// `null` when the fork was deleted.
    repo: Option<Repo>,
}

#[derive(Debug, Deserialize)]
struct Base {
    #[serde(rename = "ref")]
    branch: String,
    repo: Option<Repo>,
}

#[derive(Debug, Deserialize)]
struct Repo {
    full_name: String,
}

#[derive(Debug, Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    id: u64,
    #[serde(default)]
    sha: String,
}

#[derive(Debug, Deserialize)]
struct DeploymentStatus {
    state: String,
}

#[derive(Debug, Clone)]
struct PostedDeployment {
    sha: String,
    id: u64,
    /// The last status written (state and URL), to skip writing it again.
    status: Option<(String, Option<String>)>,
}

#[derive(Debug)]
pub struct GitHub {
    api: String,
    repository: String,
    filters: Filters,
    http: Http,
    guard: Mutex<ShrinkGuard>,
    comments: Comments,
    deployments: Mutex<HashMap<u64, PostedDeployment>>,
}

fn bearer(token: &Secret) -> (HeaderName, String) {
    (AUTHORIZATION, format!("Bearer {}", token.expose()))
}

impl GitHub {
    pub fn new(
        api: &str,
        repository: &str,
        token: Option<Secret>,
        filters: Filters,
        options: HttpOptions,
        metrics: Option<Metrics>,
    ) -> Result<Self, ScmError> {
        super::http::check_api_url(api).map_err(ScmError::Config)?;
        let http = Http::new("github", token.as_ref(), bearer, options, metrics)
            .map_err(ScmError::Config)?;
        Ok(GitHub {
            api: api.trim_end_matches('/').to_string(),
            repository: repository.to_string(),
            filters,
            http,
            guard: Mutex::default(),
            comments: Comments::default(),
            deployments: Mutex::default(),
        })
    }

    pub fn repository(&self) -> &str {
        &self.repository
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

    fn repo_url(&self, rest: &str) -> String {
        format!("{}/repos/{}{rest}", self.api, self.repository)
    }

    pub async fn list(&self) -> Listing<ChangeRequest> {
        let first = self.repo_url("/pulls?state=open&per_page=100");
        let pulls: Vec<Pull> = match self.all_pages(&first).await {
            Ok(pulls) => pulls,
            Err(reason) => {
                tracing::warn!(repository = %self.repository, %reason, "GitHub listing unknown");
                return Listing::unknown(format!("github {}: {reason}", self.repository));
            }
        };
        let items: Vec<ChangeRequest> = pulls.into_iter().map(|p| self.item(p)).collect();
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
                Listing::unknown(format!("github {}: {reason}", self.repository))
            }
        }
    }

    /// Every page from `first` on, following `Link: rel="next"`; any page that fails, does
    /// not parse, or was promised by `rel="last"` and did not come makes the whole answer fail.
    async fn all_pages<T: DeserializeOwned>(&self, first: &str) -> Result<Vec<T>, String> {
        let mut url = first.to_string();
        let mut items = Vec::new();
        let mut promised_last = None;
        for page in 1..=MAX_PAGES {
            let response = self
                .http
                .get(&url)
                .await
                .map_err(|e| format!("page {page}: {e}"))?;
            let batch: Vec<T> = serde_json::from_slice(&response.body)
                .map_err(|e| format!("page {page}: {}", unparsable(&response, &e)))?;
            items.extend(batch);
            let links = response
                .header("link")
                .map(link_relations)
                .unwrap_or_default();
            if page == 1 {
                promised_last = links.get("last").and_then(|last| page_of(last));
            }
            match links.get("next") {
                Some(next) if same_origin(&self.api, next) => url = next.clone(),
                Some(next) => {
                    return Err(format!(
                        "page {page}: a next link off the API's origin ({next})"
                    ));
                }
                None => {
                    if let Some(last) = promised_last.filter(|last| *last > page) {
                        return Err(format!(
                            "the Link header promised {last} pages, page {page} had no next link"
                        ));
                    }
                    return Ok(items);
                }
            }
        }
        Err(format!("more than {MAX_PAGES} pages"))
    }

    fn item(&self, pull: Pull) -> ChangeRequest {
        let state = match (
            pull.state.as_str(),
            pull.merged.unwrap_or(false) || pull.merged_at.is_some(),
        ) {
            ("open", _) => RequestState::Open,
            (_, true) => RequestState::Merged,
            _ => RequestState::Closed,
        };
        let from_fork = match (&pull.head.repo, &pull.base.repo) {
            (Some(head), Some(base)) => head.full_name != base.full_name,
            (None, _) => true,
            _ => false,
        };
        ChangeRequest {
            number: pull.number,
            head_branch: pull.head.branch,
            head_sha: pull.head.sha,
            head_ref: format!("refs/pull/{}/head", pull.number),
            from_fork,
            author: pull.user.map(|u| u.login).unwrap_or_default(),
            labels: pull.labels.into_iter().map(|l| l.name).collect(),
            draft: pull.draft,
            target_branch: pull.base.branch,
            state,
        }
    }

    pub async fn confirm(&self, number: u64) -> Closure {
        let url = self.repo_url(&format!("/pulls/{number}"));
        let response = match self.http.get(&url).await {
            Ok(response) => response,
            Err(e) => {
                return Closure::Unknown {
                    reason: format!("github {} #{number}: {e}", self.repository),
                };
            }
        };
        match serde_json::from_slice::<Pull>(&response.body) {
            Ok(pull) if pull.number == number => match self.item(pull).state {
                RequestState::Open => Closure::Open,
                RequestState::Closed => Closure::Closed,
                RequestState::Merged => Closure::Merged,
            },
            Ok(pull) => Closure::Unknown {
                reason: format!(
                    "github {} #{number}: the answer is about #{}",
                    self.repository, pull.number
                ),
            },
            Err(e) => Closure::Unknown {
                reason: format!(
                    "github {} #{number}: {}",
                    self.repository,
                    unparsable(&response, &e)
                ),
            },
        }
    }

    pub async fn publish_feedback(&self, number: u64, feedback: &Feedback) -> Result<(), ScmError> {
        self.upsert_comment(number, &feedback.environment, feedback::body(feedback))
            .await?;
        self.upsert_deployment(number, feedback).await
    }

    pub async fn retire_feedback(
        &self,
        number: u64,
        environment: &str,
        reason: &str,
    ) -> Result<(), ScmError> {
        self.upsert_comment(
            number,
            environment,
            feedback::retired_body(environment, reason),
        )
        .await?;
        self.deactivate_deployments(number, environment).await
    }

    fn http_error(&self, what: String) -> impl FnOnce(super::HttpError) -> ScmError + '_ {
        move |source| ScmError::Http {
            provider: "github",
            repository: self.repository.clone(),
            what,
            source,
        }
    }

    fn answer_error(&self, what: &str, message: String) -> ScmError {
        ScmError::Answer {
            provider: "github",
            repository: self.repository.clone(),
            what: what.to_string(),
            message,
        }
    }

    /// The one comment carrying the marker (see [`Comments::upsert`]).
    async fn upsert_comment(
        &self,
        number: u64,
        environment: &str,
        body: String,
    ) -> Result<(), ScmError> {
        let thread = Thread {
            provider: "github",
            repository: &self.repository,
            what: format!("comment on #{number}"),
            post_to: self.repo_url(&format!("/issues/{number}/comments")),
            edit: Method::PATCH,
            edit_under: self.repo_url("/issues/comments"),
        };
        let find = self.find_comment(number, environment);
        self.comments
            .upsert(&self.http, number, thread, body, find, |c: Comment| c.id)
            .await
    }

    async fn find_comment(
        &self,
        number: u64,
        environment: &str,
    ) -> Result<Option<Posted>, ScmError> {
        let marker = feedback::marker(environment);
        let url = self.repo_url(&format!("/issues/{number}/comments?per_page=100"));
        let comments: Vec<Comment> = self
            .all_pages(&url)
            .await
            .map_err(|message| self.answer_error(&format!("comments of #{number}"), message))?;
        Ok(comments.into_iter().find_map(|c| {
            let body = c.body?;
            body.contains(&marker).then_some(Posted { id: c.id, body })
        }))
    }

    /// One deployment per commit, for environment `preview/pr-N`, with a status carrying the
    /// preview's URL; a status is written only when state or URL changed.
    async fn upsert_deployment(&self, number: u64, feedback: &Feedback) -> Result<(), ScmError> {
        let environment = feedback::deployment_environment(&feedback.environment);
        let what = format!("deployment {environment}");
        let known = self
            .deployments
            .lock()
            .unwrap()
            .get(&number)
            .filter(|d| d.sha == feedback.commit)
            .cloned();
        let mut deployment = match known {
            Some(deployment) => deployment,
            None => {
                let query = format!(
                    "/deployments?environment={}&sha={}&per_page=100",
                    encode_component(&environment),
                    encode_component(&feedback.commit)
                );
                let found: Vec<Deployment> = self
                    .all_pages(&self.repo_url(&query))
                    .await
                    .map_err(|message| self.answer_error(&what, message))?;
                let id = match found.into_iter().find(|d| d.sha == feedback.commit) {
                    Some(deployment) => deployment.id,
                    None => {
                        self.create_deployment(feedback, &environment, &what)
                            .await?
                    }
                };
                PostedDeployment {
                    sha: feedback.commit.clone(),
                    id,
                    status: None,
                }
            }
        };
        let status = (feedback.state.github().to_string(), feedback.url.clone());
        if deployment.status.as_ref() != Some(&status) {
            let mut payload = serde_json::json!({
                "state": status.0,
                "description": format!("{}: {}", feedback.phase, feedback.health)
                    .chars()
                    .take(140)
                    .collect::<String>(),
            });
            if let Some(url) = &feedback.url {
                payload["environment_url"] = url.clone().into();
            }
            let url = self.repo_url(&format!("/deployments/{}/statuses", deployment.id));
            self.http
                .write(Method::POST, &url, &payload)
                .await
                .map_err(self.http_error(what))?;
            deployment.status = Some(status);
        }
        self.deployments.lock().unwrap().insert(number, deployment);
        Ok(())
    }

    async fn create_deployment(
        &self,
        feedback: &Feedback,
        environment: &str,
        what: &str,
    ) -> Result<u64, ScmError> {
        let payload = serde_json::json!({
            "ref": feedback.commit,
            "environment": environment,
            "transient_environment": true,
            "production_environment": false,
            "auto_merge": false,
            "required_contexts": [],
            "description": format!("sprout preview {}", feedback.environment),
        });
        let response = self
            .http
            .write(Method::POST, &self.repo_url("/deployments"), &payload)
            .await
            .map_err(self.http_error(what.to_string()))?;
        let deployment: Deployment = serde_json::from_slice(&response.body)
            .map_err(|e| self.answer_error(what, e.to_string()))?;
        Ok(deployment.id)
    }

    /// Every deployment of `preview/<environment>` whose latest status is not `inactive`
    /// gets one (transient deployments are not deactivated by GitHub on its own).
    async fn deactivate_deployments(&self, number: u64, environment: &str) -> Result<(), ScmError> {
        let name = feedback::deployment_environment(environment);
        let what = format!("deployment {name}");
        let query = format!(
            "/deployments?environment={}&per_page=100",
            encode_component(&name)
        );
        let deployments: Vec<Deployment> = self
            .all_pages(&self.repo_url(&query))
            .await
            .map_err(|message| self.answer_error(&what, message))?;
        for deployment in deployments {
            let statuses_url = self.repo_url(&format!("/deployments/{}/statuses", deployment.id));
            let latest: Vec<DeploymentStatus> = self
                .http
                .get(&format!("{statuses_url}?per_page=1"))
                .await
                .map_err(self.http_error(what.clone()))
                .and_then(|r| {
                    serde_json::from_slice(&r.body)
                        .map_err(|e| self.answer_error(&what, e.to_string()))
                })?;
            if latest.first().is_some_and(|s| s.state == "inactive") {
                continue;
            }
            self.http
                .write(
                    Method::POST,
                    &statuses_url,
                    &serde_json::json!({ "state": "inactive" }),
                )
                .await
                .map_err(self.http_error(what.clone()))?;
        }
        self.deployments.lock().unwrap().remove(&number);
        Ok(())
    }
}
