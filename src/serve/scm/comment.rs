//! The one comment (GitHub) or note (GitLab) per pull/merge request that a preview's feedback
//! lives in: found again by its marker, edited only when its text changed, posted only when no
//! comment carries the marker (or the one sprout knew of was deleted). Each provider says where
//! its comments are and how they are found; the rules are here, once.

use super::ScmError;
use super::http::Http;
use ::http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Mutex;

/// A comment as sprout last wrote or found it.
#[derive(Debug, Clone)]
pub(crate) struct Posted {
    pub id: u64,
    pub body: String,
}

/// Where one provider keeps the comments of one pull/merge request.
pub(crate) struct Thread<'a> {
    pub provider: &'static str,
    pub repository: &'a str,
    /// What errors name: `comment on #7`, `note on !7`.
    pub what: String,
    /// Where a new comment is posted.
    pub post_to: String,
    /// The method that edits a comment (PATCH, PUT).
    pub edit: Method,
    /// The URL below which comment `ID` is edited, at `/ID`.
    pub edit_under: String,
}

impl Thread<'_> {
    fn http_error(&self, source: super::HttpError) -> ScmError {
        ScmError::Http {
            provider: self.provider,
            repository: self.repository.to_string(),
            what: self.what.clone(),
            source,
        }
    }

    fn answer_error(&self, message: String) -> ScmError {
        ScmError::Answer {
            provider: self.provider,
            repository: self.repository.to_string(),
            what: self.what.clone(),
            message,
        }
    }
}

/// The comment sprout keeps on each pull/merge request, by number, so that a pass whose text
/// did not change reads and writes nothing.
#[derive(Debug, Default)]
pub(crate) struct Comments(Mutex<HashMap<u64, Posted>>);

impl Comments {
    /// Makes the comment on item `number` say `body`. `find` looks for the marker among the
    /// item's comments; it runs only when sprout knows of none. A post's answer is read as `C`,
    /// the provider's comment, whose id `id_of` gives.
    pub async fn upsert<C: DeserializeOwned>(
        &self,
        http: &Http,
        number: u64,
        thread: Thread<'_>,
        body: String,
        find: impl Future<Output = Result<Option<Posted>, ScmError>>,
        id_of: impl FnOnce(C) -> u64,
    ) -> Result<(), ScmError> {
        let known = self.0.lock().unwrap().get(&number).cloned();
        let existing = match known {
            Some(posted) => Some(posted),
            None => find.await?,
        };
        let payload = serde_json::json!({ "body": body });
        if let Some(posted) = existing {
            if posted.body == body {
                self.0.lock().unwrap().insert(number, posted);
                return Ok(());
            }
            let url = format!("{}/{}", thread.edit_under, posted.id);
            match http.write(thread.edit.clone(), &url, &payload).await {
                Ok(_) => {
                    let edited = Posted {
                        id: posted.id,
                        body,
                    };
                    self.0.lock().unwrap().insert(number, edited);
                    return Ok(());
                }
                // Deleted by someone: post a new one below.
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                    self.0.lock().unwrap().remove(&number);
                }
                Err(e) => return Err(thread.http_error(e)),
            }
        }
        let response = http
            .write(Method::POST, &thread.post_to, &payload)
            .await
            .map_err(|e| thread.http_error(e))?;
        let created: C = serde_json::from_slice(&response.body)
            .map_err(|e| thread.answer_error(e.to_string()))?;
        let posted = Posted {
            id: id_of(created),
            body,
        };
        self.0.lock().unwrap().insert(number, posted);
        Ok(())
    }
}
