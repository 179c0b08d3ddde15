//! Stage 6, lifecycle: when environments go and come back. Pure decisions only — schedules
//! ([`schedule`]), an environment's parsed [`Policy`], and the decision of one pass
//! ([`decide`]) from specs, records, listings and the time; `ops::gc` and `serve` carry it out.

pub mod decide;
pub mod schedule;

use crate::spec::Environment;
use crate::spec::SpecError;
use chrono_tz::Tz;
use schedule::Schedule;
use std::time::Duration;

/// `spec.lifecycle`, parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    pub ttl: Option<Duration>,
    pub teardown: Option<Schedule>,
    pub wake: Option<Schedule>,
    pub timezone: Tz,
    pub on_branch_delete: bool,
}

impl Policy {
    /// The environment's policy; its fields were checked when the spec was loaded, so an error
    /// here names the field all the same.
    pub fn of(env: &Environment) -> Result<Policy, SpecError> {
        let lifecycle = &env.lifecycle;
        let invalid = |key: &str, message: String| SpecError::Invalid {
            file: env.file.clone(),
            line: env.line_of(key),
            message,
        };
        let ttl = match &lifecycle.ttl {
            Some(text) => Some(
                humantime::parse_duration(text)
                    .map_err(|e| invalid("ttl:", format!("invalid lifecycle.ttl `{text}`: {e}")))?,
            ),
            None => None,
        };
        let parse = |key: &str, expr: &Option<String>| match expr {
            Some(expr) => Schedule::parse(expr)
                .map(Some)
                .map_err(|e| invalid(key, format!("invalid schedule `{expr}`: {e}"))),
            None => Ok(None),
        };
        Ok(Policy {
            ttl,
            teardown: parse("teardown:", &lifecycle.teardown)?,
            wake: parse("wake:", &lifecycle.wake)?,
            timezone: schedule::timezone(lifecycle.timezone.as_deref())
                .map_err(|e| invalid("timezone:", e))?,
            on_branch_delete: lifecycle.on_branch_delete.unwrap_or(false),
        })
    }
}

/// What is coming for an environment, for `list` and `status`: when it expires, and its next
/// scheduled teardown and wake (a time in the past means due now, waiting for `gc`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outlook {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_teardown: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_wake: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn outlook(
    policy: &Policy,
    state: &crate::state::EnvironmentState,
    now: chrono::DateTime<chrono::Utc>,
) -> Outlook {
    let timeline = &state.timeline;
    if timeline.created_at.is_none() {
        return Outlook::default();
    }
    let tz = policy.timezone;
    let upcoming = |schedule: &Option<Schedule>, since: Option<chrono::DateTime<chrono::Utc>>| {
        let schedule = schedule.as_ref()?;
        since
            .and_then(|since| schedule.last_fired_between(since, now, tz))
            .or_else(|| schedule.next_after(now.max(since.unwrap_or(now)), tz))
    };
    let asleep = state.phase == crate::state::Phase::Asleep;
    Outlook {
        expires_at: timeline.expiry(policy.ttl),
        next_teardown: if asleep {
            None
        } else {
            upcoming(&policy.teardown, timeline.anchor())
        },
        next_wake: match (asleep, &policy.wake) {
            (true, _) => upcoming(&policy.wake, timeline.asleep_since),
            (false, Some(wake)) => wake.next_after(now, tz),
            (false, None) => None,
        },
    }
}
