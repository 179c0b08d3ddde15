//! Prune: deleting what the inventory holds and git no longer wants, in reverse apply order.
//!
//! Safety (DESIGN.md): an object is deleted only if it is in the inventory **and** still carries
//! `sprout.dev/environment: <env>`; the delete is pinned to the object's uid, so a namesake made
//! since survives; opt-out annotations are honoured; an entry leaves the inventory only once its
//! object is confirmed gone.

use super::inventory::Inventory;
use super::live::Live;
use super::{ChangeSet, Owner, SyncError};
use crate::object::{ObjectRef, apply_order, apply_rank};
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Annotations (and values) that keep an object through prune and teardown.
const KEEP_ANNOTATIONS: &[(&str, &str)] = &[
    ("sprout.dev/prune", "disabled"),
    ("kustomize.toolkit.fluxcd.io/prune", "disabled"),
    ("helm.sh/resource-policy", "keep"),
];
const ARGO_SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";

/// How long to wait for accepted deletes to finish before leaving them for the next pass.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a live object must be kept, if it must.
pub fn keep_reason(live: &Value) -> Option<String> {
    let annotations = live
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)?;
    for (key, value) in KEEP_ANNOTATIONS {
        if annotations.get(*key).and_then(Value::as_str) == Some(value) {
            return Some(format!("{key}: {value}"));
        }
    }
    let argo = annotations.get(ARGO_SYNC_OPTIONS).and_then(Value::as_str)?;
    argo.split(',')
        .any(|o| o.trim() == "Prune=false")
        .then(|| format!("{ARGO_SYNC_OPTIONS}: Prune=false"))
}

/// Deletes the inventory entries of `inventory` that are not in `keep` (everything, for
/// teardown, when `keep` is empty). Kinds go in reverse apply order, one rank after another;
/// the objects of one rank are deleted [`CONCURRENCY`] at a time (an environment of 20,000
/// objects must not take 20,000 round trips one after another).
pub async fn prune_stale(
    live: &Live,
    inventory: &mut Inventory,
    keep: &BTreeSet<ObjectRef>,
    owner: Owner<'_>,
    changes: &mut ChangeSet,
) -> Result<(), SyncError> {
    let mut stale: Vec<ObjectRef> = inventory
        .entries
        .keys()
        .filter(|r| !keep.contains(r))
        .cloned()
        .collect();
    stale.sort_by(|a, b| apply_order(b, a));
    let mut deleted: Vec<(ObjectRef, String)> = Vec::new();
    // Deleting a namespace deletes what is in it: one that holds a kept object must stay.
    let mut holding: BTreeSet<String> = BTreeSet::new();
    for rank in stale.chunk_by(|a, b| apply_rank(&a.kind) == apply_rank(&b.kind)) {
        let mut work = Vec::new();
        for reference in rank {
            if reference.kind == "Namespace"
                && reference.group.is_empty()
                && holding.contains(&reference.name)
            {
                changes
                    .kept
                    .push(format!("{reference} (holds objects that must survive)"));
                inventory.entries.remove(reference);
                continue;
            }
            let api_version = inventory.entries[reference].api_version.clone();
            work.push((reference.clone(), api_version));
        }
        let outcomes: Vec<(ObjectRef, Result<Outcome, SyncError>)> = futures::stream::iter(work)
            .map(|(reference, api_version)| async move {
                let outcome = prune_one(live, &reference, &api_version, owner).await;
                (reference, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut first_error = None;
        for (reference, outcome) in outcomes {
            match outcome {
                Err(e) => {
                    first_error.get_or_insert(e);
                }
                Ok(Outcome::Absent) => {
                    inventory.entries.remove(&reference);
                }
                Ok(Outcome::NotOurs) => {
                    changes.kept.push(format!(
                        "{reference} (its labels no longer say environment {} of this project)",
                        owner.env
                    ));
                    inventory.entries.remove(&reference);
                }
                Ok(Outcome::Kept(reason)) => {
                    holding.insert(reference.namespace.clone());
                    changes.kept.push(format!("{reference} ({reason})"));
                    inventory.entries.remove(&reference);
                }
                Ok(Outcome::Deleting(uid)) => {
                    changes.writes += 1;
                    deleted.push((reference, uid));
                }
                Ok(Outcome::AlreadyGone) => {
                    changes.writes += 1;
                    inventory.entries.remove(&reference);
                    changes.pruned.push(reference.to_string());
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    confirm_gone(live, inventory, deleted, changes).await
}

/// Deletes in flight at once.
const CONCURRENCY: usize = 24;

enum Outcome {
    /// Not there, or its kind is no longer served (its CRD is gone, and its objects with it).
    Absent,
    NotOurs,
    Kept(String),
    /// The delete was accepted; the object (with this uid) may take a while to go.
    Deleting(String),
    /// It went between the read and the delete.
    AlreadyGone,
}

async fn prune_one(
    live: &Live,
    reference: &ObjectRef,
    api_version: &str,
    owner: Owner<'_>,
) -> Result<Outcome, SyncError> {
    let Some(resolved) = live.resolve_kind(api_version, &reference.kind) else {
        return Ok(Outcome::Absent);
    };
    let Some(current) = live.get(&resolved, reference).await? else {
        return Ok(Outcome::Absent);
    };
    if !super::owned_by(&current, owner) {
        return Ok(Outcome::NotOurs);
    }
    if let Some(reason) = keep_reason(&current) {
        return Ok(Outcome::Kept(reason));
    }
    let uid = current
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(if live.delete(&resolved, reference, &uid).await? {
        Outcome::Deleting(uid)
    } else {
        Outcome::AlreadyGone
    })
}

/// Waits until deleted objects are gone; only then do their entries leave the inventory.
async fn confirm_gone(
    live: &Live,
    inventory: &mut Inventory,
    pending: Vec<(ObjectRef, String)>,
    changes: &mut ChangeSet,
) -> Result<(), SyncError> {
    let pending = pending
        .into_iter()
        .map(|(reference, uid)| Deleted {
            api_version: inventory.entries[&reference].api_version.clone(),
            reference,
            uid,
        })
        .collect();
    let (gone, still) = wait_until_gone(live, pending, CONFIRM_TIMEOUT).await?;
    for reference in gone {
        inventory.entries.remove(&reference);
        changes.pruned.push(reference.to_string());
    }
    changes
        .deleting
        .extend(still.iter().map(ObjectRef::to_string));
    changes.pruned.sort();
    changes.deleting.sort();
    Ok(())
}

/// An object whose delete the server accepted.
pub(super) struct Deleted {
    pub(super) reference: ObjectRef,
    pub(super) api_version: String,
    pub(super) uid: String,
}

/// Waits (at most `limit`) until `pending` are gone; returns those gone and those still there
/// (finalizers at work).
pub(super) async fn wait_until_gone(
    live: &Live,
    mut pending: Vec<Deleted>,
    limit: Duration,
) -> Result<(Vec<ObjectRef>, Vec<ObjectRef>), SyncError> {
    let started = Instant::now();
    let mut gone = Vec::new();
    loop {
        let checks: Vec<(Deleted, Result<bool, SyncError>)> = futures::stream::iter(pending)
            .map(|deleted| async move {
                let check = is_gone(live, &deleted).await;
                (deleted, check)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut still = Vec::new();
        for (deleted, check) in checks {
            if check? {
                gone.push(deleted.reference);
            } else {
                still.push(deleted);
            }
        }
        pending = still;
        if pending.is_empty() || started.elapsed() >= limit {
            let still = pending.into_iter().map(|d| d.reference).collect();
            return Ok((gone, still));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn is_gone(live: &Live, deleted: &Deleted) -> Result<bool, SyncError> {
    let reference = &deleted.reference;
    Ok(
        match live.resolve_kind(&deleted.api_version, &reference.kind) {
            None => true,
            Some(resolved) => match live.get(&resolved, reference).await? {
                None => true,
                // A namesake created since is another object: ours is gone.
                Some(current) => {
                    current.pointer("/metadata/uid").and_then(Value::as_str)
                        != Some(deleted.uid.as_str())
                }
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn opt_out_annotations() {
        let with = |k: &str, v: &str| json!({"metadata": {"annotations": {k: v}}});
        assert!(keep_reason(&with("sprout.dev/prune", "disabled")).is_some());
        assert!(keep_reason(&with("helm.sh/resource-policy", "keep")).is_some());
        assert!(keep_reason(&with("kustomize.toolkit.fluxcd.io/prune", "disabled")).is_some());
        assert!(
            keep_reason(&with(
                ARGO_SYNC_OPTIONS,
                "ServerSideApply=true, Prune=false"
            ))
            .is_some()
        );
        assert!(keep_reason(&with("sprout.dev/prune", "enabled")).is_none());
        assert!(keep_reason(&json!({"metadata": {}})).is_none());
    }
}
