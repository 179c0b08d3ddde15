//! One lifecycle pass as a pure function: `(environments, records, listings, orphans, now) →
//! actions`. Nothing here reads a clock, a file or a network; `ops::gc` gathers the facts,
//! calls [`decide`], and carries the actions out. That is what lets the rules be tested as a
//! table, and what makes `gc --dry-run --at TIME` exact.
//!
//! The rules (DESIGN.md, "Safety"):
//! - protected environments and forbidden contexts are never acted on;
//! - TTL: expired when `now` is past the record's expiry (creation + ttl, or the extension);
//! - schedules are level-triggered: due when a teardown time has passed since the last create,
//!   wake or extension, and no wake time came after it; an asleep environment wakes when a wake
//!   time has passed since it went to sleep and no teardown time came after it;
//! - a branch is gone only when two complete listings at least `grace` apart both lack it, and
//!   only if a complete listing once had it; an unknown listing freezes every deletion that
//!   depends on it;
//! - a pass that would take down more than `max(1, maxDeletePercent %)` of the live
//!   environments does nothing destructive unless mass deletes are allowed.

use super::Policy;
use crate::state::{BranchWatch, EnvironmentState, Phase};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What a listing of a remote's branches said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// A complete, successful listing.
    Complete(BTreeSet<String>),
    /// Failed, timed out, or not believable (empty where branches were): deletions freeze.
    Unknown(String),
}

/// The remote branch an environment follows, when it is torn down with its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follows {
    /// The listing key (the remote's URL or path).
    pub remote: String,
    pub branch: String,
}

/// One environment as the pass sees it.
#[derive(Debug, Clone)]
pub struct EnvFacts {
    pub name: String,
    pub protected: bool,
    /// The forbidden kube context its cluster is in, if it is.
    pub forbidden: Option<String>,
    pub policy: Policy,
    pub state: EnvironmentState,
    /// Set when `onBranchDelete` is on; `Err` says why the branch cannot be watched.
    pub follows: Option<Result<Follows, String>>,
}

/// Something carrying sprout's labels or tags that no environment accounts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    /// What it is, e.g. `namespace pr-7 (context shared-dev)` or `kind cluster sprout-x`.
    pub object: String,
    /// The environment it is labelled for, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Whether it carries this project's identity (only those are ever deleted).
    pub ours: bool,
    /// When a pass first found it orphaned (deleted only `grace` later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Facts {
    pub environments: Vec<EnvFacts>,
    pub listings: BTreeMap<String, Listing>,
    pub orphans: Vec<Orphan>,
    pub now: DateTime<Utc>,
    pub grace: Duration,
    pub max_delete_percent: u32,
    pub allow_mass_delete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Teardown,
    Sleep,
    Wake,
    DeleteOrphan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Ttl,
    Schedule,
    BranchDeleted,
    Orphan,
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub environment: String,
    pub action: ActionKind,
    pub reason: Reason,
    /// For people: why, with the times involved.
    pub detail: String,
}

impl Action {
    pub fn is_destructive(&self) -> bool {
        self.action != ActionKind::Wake
    }
}

/// Something the pass did not act on, and why (frozen listings, protection, the breaker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerTrip {
    pub would_delete: usize,
    pub live: usize,
    pub limit: usize,
    /// The destructive actions held back.
    pub held_back: Vec<Action>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// New branch observations to record, per environment.
    pub branch_updates: BTreeMap<String, BranchWatch>,
    /// Orphans with the time they were first seen (to record for the next pass).
    pub orphans_seen: Vec<Orphan>,
    pub notes: Vec<Note>,
    pub breaker: Option<BreakerTrip>,
}

pub fn decide(facts: &Facts) -> Decision {
    let mut decision = Decision::default();
    for env in &facts.environments {
        decide_environment(env, facts, &mut decision);
    }
    decide_orphans(facts, &mut decision);
    apply_breaker(facts, &mut decision);
    decision
}

fn note(decision: &mut Decision, env: &str, message: String) {
    decision.notes.push(Note {
        environment: Some(env.to_string()),
        message,
    });
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn decide_environment(env: &EnvFacts, facts: &Facts, decision: &mut Decision) {
    let name = env.name.as_str();
    if env.protected {
        return note(decision, name, "protected: never acted on".into());
    }
    if let Some(context) = &env.forbidden {
        return note(
            decision,
            name,
            format!("its context `{context}` is forbidden: never acted on"),
        );
    }
    let state = &env.state;
    if state.timeline.created_at.is_none() {
        return; // Never brought up: nothing runs, nothing to decide.
    }
    let now = facts.now;
    let act = |action, reason, detail| Action {
        environment: name.to_string(),
        action,
        reason,
        detail,
    };
    let branch = judge_branch(env, facts, decision);
    if let Some(expiry) = state.timeline.expiry(env.policy.ttl)
        && now >= expiry
    {
        let detail = format!("expired at {}", stamp(expiry));
        return decision
            .actions
            .push(act(ActionKind::Teardown, Reason::Ttl, detail));
    }
    if let Some(detail) = branch {
        return decision
            .actions
            .push(act(ActionKind::Teardown, Reason::BranchDeleted, detail));
    }
    let policy = &env.policy;
    let tz = policy.timezone;
    let last = |schedule: &Option<super::schedule::Schedule>, since| {
        schedule
            .as_ref()
            .and_then(|s| s.last_fired_between(since, now, tz))
    };
    if state.phase == Phase::Asleep {
        let since = state
            .timeline
            .asleep_since
            .or(state.timeline.anchor())
            .unwrap_or(now);
        if let Some(woke) = last(&policy.wake, since)
            && last(&policy.teardown, since).is_none_or(|t| woke > t)
        {
            let detail = format!("wake time {} has passed", stamp(woke));
            decision
                .actions
                .push(act(ActionKind::Wake, Reason::Schedule, detail));
        }
        return;
    }
    let Some(anchor) = state.timeline.anchor() else {
        return;
    };
    if let Some(due) = last(&policy.teardown, anchor)
        && last(&policy.wake, anchor).is_none_or(|w| due > w)
    {
        let (kind, what) = match policy.wake {
            Some(_) => (ActionKind::Sleep, "sleeps until its wake time"),
            None => (ActionKind::Teardown, "torn down"),
        };
        let detail = format!("teardown time {} has passed: {what}", stamp(due));
        decision.actions.push(act(kind, Reason::Schedule, detail));
    }
}

/// Records what the listing says about the environment's branch; returns why it is gone when
/// it is (two complete listings at least `grace` apart without it, after one that had it).
fn judge_branch(env: &EnvFacts, facts: &Facts, decision: &mut Decision) -> Option<String> {
    let name = env.name.as_str();
    let follows = match env.follows.as_ref()? {
        Ok(follows) => follows,
        Err(why) => {
            note(decision, name, format!("branch not watched: {why}"));
            return None;
        }
    };
    let mut watch = env.state.branch.clone();
    let now = facts.now;
    let verdict = match facts.listings.get(&follows.remote) {
        None | Some(Listing::Unknown(_)) => {
            let why = match facts.listings.get(&follows.remote) {
                Some(Listing::Unknown(why)) => why.clone(),
                _ => "not listed".to_string(),
            };
            note(
                decision,
                name,
                format!(
                    "deletions frozen: the listing of {} failed ({why})",
                    follows.remote
                ),
            );
            watch.frozen = Some(why);
            None
        }
        Some(Listing::Complete(branches)) if branches.contains(&follows.branch) => {
            watch = BranchWatch {
                last_seen: Some(now),
                missing_since: None,
                frozen: None,
            };
            None
        }
        Some(Listing::Complete(_)) if watch.last_seen.is_none() => {
            watch.frozen = None;
            note(
                decision,
                name,
                format!(
                    "branch `{}` was never seen on {}: not judged",
                    follows.branch, follows.remote
                ),
            );
            None
        }
        Some(Listing::Complete(_)) => {
            watch.frozen = None;
            match watch.missing_since {
                None => {
                    watch.missing_since = Some(now);
                    note(
                        decision,
                        name,
                        format!(
                            "branch `{}` is missing (first time): kept until a listing at least {} later confirms it",
                            follows.branch,
                            humantime::format_duration(facts.grace.to_std().unwrap_or_default())
                        ),
                    );
                    None
                }
                Some(since) if now - since >= facts.grace => Some(format!(
                    "branch `{}` missing from {} since {}",
                    follows.branch,
                    follows.remote,
                    stamp(since)
                )),
                Some(since) => {
                    note(
                        decision,
                        name,
                        format!(
                            "branch `{}` missing since {}: kept until the grace period has passed",
                            follows.branch,
                            stamp(since)
                        ),
                    );
                    None
                }
            }
        }
    };
    if watch != env.state.branch {
        decision.branch_updates.insert(name.to_string(), watch);
    }
    verdict
}

fn decide_orphans(facts: &Facts, decision: &mut Decision) {
    for orphan in &facts.orphans {
        if !orphan.ours {
            decision.notes.push(Note {
                environment: orphan.environment.clone(),
                message: format!(
                    "{} carries sprout's labels but not this project's identity: only reported",
                    orphan.object
                ),
            });
            continue;
        }
        let first_seen = orphan.first_seen.unwrap_or(facts.now);
        decision.orphans_seen.push(Orphan {
            first_seen: Some(first_seen),
            ..orphan.clone()
        });
        if facts.now - first_seen >= facts.grace {
            decision.actions.push(Action {
                environment: orphan.environment.clone().unwrap_or_default(),
                action: ActionKind::DeleteOrphan,
                reason: Reason::Orphan,
                detail: orphan.object.clone(),
            });
        } else {
            decision.notes.push(Note {
                environment: orphan.environment.clone(),
                message: format!(
                    "{} belongs to no environment since {}: deleted once the grace period has passed",
                    orphan.object,
                    stamp(first_seen)
                ),
            });
        }
    }
}

fn apply_breaker(facts: &Facts, decision: &mut Decision) {
    let live = facts
        .environments
        .iter()
        .filter(|e| e.state.timeline.created_at.is_some() && e.state.phase != Phase::Asleep)
        .count();
    let limit = (live * facts.max_delete_percent as usize / 100).max(1);
    let would_delete = decision
        .actions
        .iter()
        .filter(|a| matches!(a.action, ActionKind::Teardown | ActionKind::Sleep))
        .count();
    if would_delete <= limit || facts.allow_mass_delete {
        return;
    }
    let (held_back, kept): (Vec<Action>, Vec<Action>) = std::mem::take(&mut decision.actions)
        .into_iter()
        .partition(Action::is_destructive);
    decision.actions = kept;
    decision.breaker = Some(BreakerTrip {
        would_delete,
        live,
        limit,
        held_back,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::schedule::Schedule;
    use crate::state::Timeline;
    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    /// A time on the Berlin wall clock (the zone the schedules below are evaluated in).
    fn berlin(text: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        Berlin
            .from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn env(name: &str) -> EnvFacts {
        EnvFacts {
            name: name.into(),
            protected: false,
            forbidden: None,
            policy: Policy {
                ttl: None,
                teardown: None,
                wake: None,
                timezone: Berlin,
                on_branch_delete: false,
            },
            state: EnvironmentState {
                environment: name.into(),
                phase: Phase::Synced,
                timeline: Timeline {
                    created_at: Some(berlin("2026-11-26 08:00")),
                    ..Default::default()
                },
                ..Default::default()
            },
            follows: None,
        }
    }

    impl EnvFacts {
        fn ttl(mut self, hours: u64) -> Self {
            self.policy.ttl = Some(std::time::Duration::from_secs(hours * 3600));
            self
        }
        fn teardown(mut self, expr: &str) -> Self {
            self.policy.teardown = Some(Schedule::parse(expr).unwrap());
            self
        }
        fn wake(mut self, expr: &str) -> Self {
            self.policy.wake = Some(Schedule::parse(expr).unwrap());
            self
        }
        fn asleep_since(mut self, at: &str) -> Self {
            self.state.phase = Phase::Asleep;
            self.state.timeline.asleep_since = Some(berlin(at));
            self
        }
        fn extended_until(mut self, at: &str) -> Self {
            self.state.timeline.expires_at = Some(berlin(at));
            self
        }
        fn follows(mut self, branch: &str) -> Self {
            self.policy.on_branch_delete = true;
            self.follows = Some(Ok(Follows {
                remote: "file:///remote".into(),
                branch: branch.into(),
            }));
            self
        }
        fn watch(mut self, last_seen: Option<&str>, missing_since: Option<&str>) -> Self {
            self.state.branch = BranchWatch {
                last_seen: last_seen.map(berlin),
                missing_since: missing_since.map(berlin),
                frozen: None,
            };
            self
        }
        fn protected(mut self) -> Self {
            self.protected = true;
            self
        }
    }

    fn facts(environments: Vec<EnvFacts>, now: &str) -> Facts {
        Facts {
            environments,
            listings: BTreeMap::new(),
            orphans: Vec::new(),
            now: berlin(now),
            grace: Duration::minutes(10),
            max_delete_percent: 50,
            allow_mass_delete: false,
        }
    }

    fn listing(branches: &[&str]) -> BTreeMap<String, Listing> {
        BTreeMap::from([(
            "file:///remote".to_string(),
            Listing::Complete(branches.iter().map(|b| b.to_string()).collect()),
        )])
    }

    fn unknown() -> BTreeMap<String, Listing> {
        BTreeMap::from([(
            "file:///remote".to_string(),
            Listing::Unknown("connection refused".into()),
        )])
    }

    fn actions(decision: &Decision) -> Vec<(String, ActionKind, Reason)> {
        decision
            .actions
            .iter()
            .map(|a| (a.environment.clone(), a.action, a.reason))
            .collect()
    }

    use ActionKind::*;
    use Reason::{BranchDeleted, Ttl};
    const SCHEDULED: Reason = Reason::Schedule;

    /// A case of the table: what it shows, the environment, the time, the actions due.
    type Case = (
        &'static str,
        EnvFacts,
        &'static str,
        Vec<(ActionKind, Reason)>,
    );

    #[test]
    fn time_to_live_and_schedules() {
        // 2026-11-26 is a Thursday, 2026-11-28 a Saturday.
        let lunch = "0 12 * * 1-5";
        let table: Vec<Case> = vec![
            (
                "ttl not yet over",
                env("e").ttl(8),
                "2026-11-26 15:59",
                vec![],
            ),
            (
                "ttl over",
                env("e").ttl(8),
                "2026-11-26 16:00",
                vec![(Teardown, Ttl)],
            ),
            (
                "an extension pushes the expiry",
                env("e").ttl(8).extended_until("2026-11-26 18:00"),
                "2026-11-26 17:00",
                vec![],
            ),
            (
                "lunch not yet",
                env("e").teardown(lunch),
                "2026-11-26 11:59",
                vec![],
            ),
            (
                "gc at 12:07 still sees noon",
                env("e").teardown(lunch),
                "2026-11-26 12:07",
                vec![(Teardown, SCHEDULED)],
            ),
            (
                "a laptop asleep through noon",
                env("e").teardown(lunch),
                "2026-11-26 17:30",
                vec![(Teardown, SCHEDULED)],
            ),
            (
                "with a wake schedule it sleeps",
                env("e").teardown(lunch).wake("0 13 * * 1-5"),
                "2026-11-26 12:07",
                vec![(Sleep, SCHEDULED)],
            ),
            (
                "teardown and wake both passed: it should be up, nothing to do",
                env("e").teardown(lunch).wake("0 13 * * 1-5"),
                "2026-11-26 14:00",
                vec![],
            ),
            (
                "asleep: woken after its wake time",
                env("e")
                    .teardown(lunch)
                    .wake("0 13 * * 1-5")
                    .asleep_since("2026-11-26 12:05"),
                "2026-11-26 13:01",
                vec![(Wake, SCHEDULED)],
            ),
            (
                "asleep: not before",
                env("e")
                    .teardown(lunch)
                    .wake("0 13 * * 1-5")
                    .asleep_since("2026-11-26 12:05"),
                "2026-11-26 12:59",
                vec![],
            ),
            (
                "asleep through the next day's teardown: stays asleep",
                env("e")
                    .teardown(lunch)
                    .wake("0 13 * * 1-5")
                    .asleep_since("2026-11-26 12:05"),
                "2026-11-27 12:30",
                vec![],
            ),
            (
                "asleep past its ttl: torn down, not woken",
                env("e")
                    .ttl(8)
                    .teardown(lunch)
                    .wake("0 13 * * 1-5")
                    .asleep_since("2026-11-26 12:05"),
                "2026-11-26 16:01",
                vec![(Teardown, Ttl)],
            ),
            (
                "created after Friday's lunch: nothing on Saturday",
                {
                    let mut e = env("e").teardown(lunch);
                    e.state.timeline.created_at = Some(berlin("2026-11-27 13:00"));
                    e
                },
                "2026-11-28 12:07",
                vec![],
            ),
            (
                "weekday 0 is Sunday",
                {
                    let mut e = env("e").teardown("0 12 * * 0");
                    e.state.timeline.created_at = Some(berlin("2026-11-28 08:00"));
                    e
                },
                "2026-11-29 12:01",
                vec![(Teardown, SCHEDULED)],
            ),
            (
                "protected: never acted on",
                env("e").ttl(1).protected(),
                "2026-11-27 08:00",
                vec![],
            ),
            (
                "forbidden context: never acted on",
                {
                    let mut e = env("e").ttl(1);
                    e.forbidden = Some("prod".into());
                    e
                },
                "2026-11-27 08:00",
                vec![],
            ),
            (
                "never brought up: nothing to decide",
                {
                    let mut e = env("e").ttl(1);
                    e.state.timeline.created_at = None;
                    e
                },
                "2026-11-27 08:00",
                vec![],
            ),
        ];
        for (case, env, now, want) in table {
            let decision = decide(&facts(vec![env], now));
            let got: Vec<(ActionKind, Reason)> = actions(&decision)
                .into_iter()
                .map(|(_, a, r)| (a, r))
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn branch_deletion_needs_two_complete_listings_a_grace_period_apart() {
        let seen = Some("2026-11-26 09:00");
        // (case, watch before, listing, now, actions, missing_since after (None = unchanged))
        let table = vec![
            (
                "a failed listing freezes",
                env("e").follows("f").watch(seen, Some("2026-11-26 09:30")),
                unknown(),
                "2026-11-26 10:00",
                vec![],
            ),
            (
                "present",
                env("e").follows("f").watch(seen, None),
                listing(&["main", "f"]),
                "2026-11-26 10:00",
                vec![],
            ),
            (
                "missing once: kept",
                env("e").follows("f").watch(seen, None),
                listing(&["main"]),
                "2026-11-26 10:00",
                vec![],
            ),
            (
                "missing again within the grace period: kept",
                env("e").follows("f").watch(seen, Some("2026-11-26 09:55")),
                listing(&["main"]),
                "2026-11-26 10:00",
                vec![],
            ),
            (
                "missing twice across the grace period: torn down",
                env("e").follows("f").watch(seen, Some("2026-11-26 09:50")),
                listing(&["main"]),
                "2026-11-26 10:00",
                vec![(Teardown, BranchDeleted)],
            ),
            (
                "never seen: not judged",
                env("e").follows("f").watch(None, None),
                listing(&["main"]),
                "2026-11-26 10:00",
                vec![],
            ),
        ];
        for (case, env, listings, now, want) in table {
            let mut f = facts(vec![env], now);
            f.listings = listings;
            let decision = decide(&f);
            let got: Vec<(ActionKind, Reason)> = actions(&decision)
                .into_iter()
                .map(|(_, a, r)| (a, r))
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn branch_observations_are_recorded() {
        let now = "2026-11-26 10:00";
        let mut f = facts(
            vec![env("e").follows("f").watch(Some("2026-11-26 09:00"), None)],
            now,
        );
        f.listings = listing(&["main"]);
        let watch = &decide(&f).branch_updates["e"];
        assert_eq!(watch.missing_since, Some(berlin(now)));

        // Back in between: the missing mark is cleared, so the count starts over.
        let mut f = facts(
            vec![
                env("e")
                    .follows("f")
                    .watch(Some("2026-11-26 09:00"), Some("2026-11-26 09:30")),
            ],
            now,
        );
        f.listings = listing(&["main", "f"]);
        let decision = decide(&f);
        assert!(decision.actions.is_empty());
        assert_eq!(decision.branch_updates["e"].missing_since, None);
        assert_eq!(decision.branch_updates["e"].last_seen, Some(berlin(now)));

        // A failed listing keeps the mark and says so.
        let mut f = facts(
            vec![
                env("e")
                    .follows("f")
                    .watch(Some("2026-11-26 09:00"), Some("2026-11-26 09:30")),
            ],
            now,
        );
        f.listings = unknown();
        let decision = decide(&f);
        assert_eq!(
            decision.branch_updates["e"].missing_since,
            Some(berlin("2026-11-26 09:30"))
        );
        assert!(
            decision
                .notes
                .iter()
                .any(|n| n.message.contains("deletions frozen"))
        );
    }

    #[test]
    fn the_breaker_holds_back_a_mass_teardown_but_not_wakes() {
        let mut envs: Vec<EnvFacts> = (0..4).map(|i| env(&format!("e{i}")).ttl(1)).collect();
        envs.push(
            env("sleeper")
                .wake("0 13 * * *")
                .asleep_since("2026-11-26 12:00"),
        );
        let decision = decide(&facts(envs.clone(), "2026-11-26 13:30"));
        let trip = decision.breaker.as_ref().expect("the breaker trips");
        assert_eq!((trip.would_delete, trip.live, trip.limit), (4, 4, 2));
        assert_eq!(trip.held_back.len(), 4);
        assert_eq!(
            actions(&decision),
            vec![("sleeper".into(), Wake, SCHEDULED)]
        );

        let mut allowed = facts(envs, "2026-11-26 13:30");
        allowed.allow_mass_delete = true;
        let decision = decide(&allowed);
        assert!(decision.breaker.is_none());
        assert_eq!(decision.actions.len(), 5);

        // One environment alone may always go (max(1, 50%)).
        let decision = decide(&facts(vec![env("solo").ttl(1)], "2026-11-26 13:30"));
        assert_eq!(actions(&decision), vec![("solo".into(), Teardown, Ttl)]);
    }

    #[test]
    fn orphans_of_this_project_go_after_the_grace_period_others_are_reported() {
        let orphan = |object: &str, ours: bool, first_seen: Option<&str>| Orphan {
            object: object.into(),
            environment: Some("gone".into()),
            ours,
            first_seen: first_seen.map(berlin),
        };
        let mut f = facts(vec![], "2026-11-26 10:00");
        f.orphans = vec![
            orphan("namespace new", true, None),
            orphan("namespace old", true, Some("2026-11-26 09:00")),
            orphan("namespace foreign", false, Some("2026-11-25 09:00")),
        ];
        let decision = decide(&f);
        assert_eq!(
            decision
                .actions
                .iter()
                .map(|a| (a.action, a.detail.as_str()))
                .collect::<Vec<_>>(),
            vec![(DeleteOrphan, "namespace old")]
        );
        assert_eq!(decision.orphans_seen.len(), 2);
        assert_eq!(
            decision.orphans_seen[0].first_seen,
            Some(berlin("2026-11-26 10:00"))
        );
        assert!(decision.notes.iter().any(
            |n| n.message.contains("namespace foreign") && n.message.contains("only reported")
        ));
    }
}
