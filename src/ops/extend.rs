//! `extend`: push an environment's expiry, and optionally skip its next scheduled teardown.
//! Kept in the environment's record, so later syncs and `up`s keep the extension.

use super::Session;
use crate::error::{Error, InStage, Result, Stage};
use crate::lifecycle::Policy;
use crate::state::Timeline;
use chrono::{DateTime, Utc};
use std::time::Duration;

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Extended {
    pub environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The scheduled teardown that will not happen, with `--skip-next`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_teardown: Option<DateTime<Utc>>,
}

pub fn extend(
    session: &Session<'_>,
    name: &str,
    by: Duration,
    skip_next: bool,
    now: DateTime<Utc>,
    command: &str,
) -> Result<Extended> {
    let env = session.environment(name)?;
    let policy = Policy::of(&env).in_stage(name, Stage::Spec)?;
    let store = session.store();
    let _lock = store.lock(name, command, session.lock_wait)?;
    let mut state = store.load(name)?;
    if state.timeline.created_at.is_none() {
        return Err(Error::Usage(format!(
            "environment {name} has not been brought up yet: nothing to extend (run `sprout up {name}`)"
        )));
    }
    let by = chrono::Duration::from_std(by)
        .map_err(|_| Error::Usage("the extension is too long".into()))?;
    let timeline: &mut Timeline = &mut state.timeline;
    let mut extended = Extended {
        environment: name.to_string(),
        expires_at: None,
        skipped_teardown: None,
    };
    if let Some(current) = timeline.expiry(policy.ttl).or(policy.ttl.map(|_| now)) {
        let expires = current.max(now) + by;
        timeline.expires_at = Some(expires);
        extended.expires_at = Some(expires);
    }
    if skip_next {
        let Some(schedule) = &policy.teardown else {
            return Err(Error::Usage(format!(
                "--skip-next: environment {name} has no teardown schedule"
            )));
        };
        let anchor = timeline.anchor().unwrap_or(now).max(now);
        let next = schedule
            .next_after(anchor, policy.timezone)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--skip-next: {name}'s teardown schedule never fires again"
                ))
            })?;
        timeline.skip_teardown_until = Some(next);
        extended.skipped_teardown = Some(next);
    }
    timeline.extended_at = Some(now);
    store.save(&state)?;
    Ok(extended)
}
