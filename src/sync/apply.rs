//! Stage 4's writes: many objects applied at once, in an order that lets no pod start before
//! what it refers to exists, and each outcome recorded in the change set and the snapshot.

use super::{Action, ChangeSet, SyncError, live::Live, replace, snapshot::Snapshot};
use crate::object::{Object, ObjectRef, tier_of};
use futures::StreamExt;
use std::collections::BTreeMap;

/// Services in flight at once in their lane (see [`apply_tier`]), at most half of all. The API
/// server creates Services one after another (each takes its cluster IP from one allocation
/// record in etcd), a few milliseconds each; through a 20 ms round trip 333 Services took
/// 2.5–2.9 s at 4 in flight, 1.5–1.7 s at 8, and 1.1–1.5 s at 16, 32 or 64
/// (`examples/ssa_floor.rs`).
const SERVICE_LANE: usize = 16;

/// Stages 2 and 3 in their tiers (see [`tier_of`]).
pub(super) fn tiers<'o>(objects: &[&'o Object]) -> [Vec<&'o Object>; 3] {
    let mut tiers: [Vec<&Object>; 3] = Default::default();
    for object in objects {
        tiers[tier_of(object.kind())].push(object);
    }
    tiers
}

/// Objects of one tier (or stage 1), `concurrency` requests in flight: Services in a lane of
/// their own beside everything else, both started at once, so that the tier lasts as long as
/// the server's chain of Services instead of that chain after the rest (the order within a tier
/// does not matter to the objects; only the tiers' order does).
pub(super) async fn apply_tier(
    live: &Live,
    objects: &[&Object],
    actions: &BTreeMap<ObjectRef, Action>,
    concurrency: usize,
    changes: &mut ChangeSet,
    snapshot: &mut Snapshot,
) -> Vec<SyncError> {
    let (services, rest): (Vec<_>, Vec<_>) = writes_of(objects, actions, changes)
        .into_iter()
        .partition(|(object, _)| object.kind() == "Service" && object.group().is_empty());
    let lane = if services.is_empty() {
        0
    } else {
        SERVICE_LANE.min(concurrency / 2).max(1)
    };
    let (services, rest) = futures::join!(
        send(live, services, lane),
        send(live, rest, concurrency.saturating_sub(lane))
    );
    record(services.into_iter().chain(rest), changes, snapshot)
}

/// An object to write, with what the preflight decided for it (none: a custom resource whose
/// CRD this sync applied, new by definition).
type Work<'o> = (&'o Object, Option<&'o Action>);

/// A write sent: the object, its action, the write requests it took and the object as applied.
type Sent<'o> = (
    &'o Object,
    Option<&'o Action>,
    usize,
    Result<serde_json::Value, SyncError>,
);

/// What of `objects` needs a write; the rest is counted in `changes` as it is.
fn writes_of<'o>(
    objects: &[&'o Object],
    actions: &'o BTreeMap<ObjectRef, Action>,
    changes: &mut ChangeSet,
) -> Vec<Work<'o>> {
    let mut work = Vec::new();
    for object in objects {
        match actions.get(&object.object_ref()) {
            Some(Action::Unchanged) => changes.unchanged += 1,
            Some(Action::Shared) => changes.shared.push(object.object_ref().to_string()),
            Some(
                action @ (Action::Create | Action::Configure { .. } | Action::Recreate { .. }),
            ) => work.push((*object, Some(action))),
            None => work.push((*object, None)),
        }
    }
    work
}

async fn send<'o>(live: &Live, work: Vec<Work<'o>>, concurrency: usize) -> Vec<Sent<'o>> {
    futures::stream::iter(work)
        .map(|(object, action)| async move {
            let resolved = match live.resolve(object) {
                Ok(resolved) => resolved,
                Err(e) => return (object, action, 0, Err(e)),
            };
            match action {
                Some(Action::Recreate { uid }) => {
                    let result = replace::recreate(live, &resolved, object, uid).await;
                    (object, action, 2, result)
                }
                Some(Action::Configure { force }) => {
                    let result = live.apply(&resolved, object, *force, false).await;
                    (object, action, 1, result)
                }
                _ => {
                    let result = live.apply(&resolved, object, false, false).await;
                    (object, action, 1, result)
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// The outcomes in `changes` and, for each object applied, its new state in `snapshot`; the
/// failures returned.
fn record<'o>(
    sent: impl IntoIterator<Item = Sent<'o>>,
    changes: &mut ChangeSet,
    snapshot: &mut Snapshot,
) -> Vec<SyncError> {
    let mut failures = Vec::new();
    for (object, action, writes, result) in sent {
        changes.writes += writes;
        match result {
            Ok(applied) => {
                let name = object.object_ref().to_string();
                match action {
                    Some(Action::Configure { .. }) => changes.configured.push(name),
                    Some(Action::Recreate { .. }) => {
                        changes.notes.extend(
                            snapshot
                                .get(&object.object_ref())
                                .and_then(|old| replace::note(object, old)),
                        );
                        changes.recreated.push(name)
                    }
                    _ => changes.created.push(name),
                }
                snapshot.insert(object.object_ref(), applied);
            }
            Err(e) => failures.push(e),
        }
    }
    changes.created.sort();
    changes.configured.sort();
    changes.recreated.sort();
    failures
}
