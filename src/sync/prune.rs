//! Prune: deleting what the inventory holds and git no longer wants, in reverse apply order.
//!
//! Safety (DESIGN.md): an object is deleted only if it is in the inventory **and** still carries
//! `sprout.dev/environment: <env>`; the delete is pinned to the object's uid, so a namesake made
//! since survives; opt-out annotations are honoured; an entry leaves the inventory only once its
//! object is confirmed gone.

use super::inventory::Inventory;
use super::live::Live;
use super::{ChangeSet, Owner, SyncError};
use crate::object::{ObjectRef, apply_order};
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
/// teardown, when `keep` is empty).
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
    for reference in stale {
        if reference.kind == "Namespace"
            && reference.group.is_empty()
            && holding.contains(&reference.name)
        {
            changes
                .kept
                .push(format!("{reference} (holds objects that must survive)"));
            inventory.entries.remove(&reference);
            continue;
        }
        let entry = &inventory.entries[&reference];
        let Some(resolved) = live.resolve_kind(&entry.api_version, &reference.kind) else {
            // The kind is no longer served: its CRD is gone, and its objects with it.
            inventory.entries.remove(&reference);
            continue;
        };
        let Some(current) = live.get(&resolved, &reference).await? else {
            inventory.entries.remove(&reference);
            continue;
        };
        if !super::owned_by(&current, owner) {
            changes.kept.push(format!(
                "{reference} (its labels no longer say environment {} of this project)",
                owner.env
            ));
            inventory.entries.remove(&reference);
            continue;
        }
        if let Some(reason) = keep_reason(&current) {
            holding.insert(reference.namespace.clone());
            changes.kept.push(format!("{reference} ({reason})"));
            inventory.entries.remove(&reference);
            continue;
        }
        let uid = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        changes.writes += 1;
        if live.delete(&resolved, &reference, &uid).await? {
            deleted.push((reference, uid));
        } else {
            inventory.entries.remove(&reference);
            changes.pruned.push(reference.to_string());
        }
    }
    confirm_gone(live, inventory, deleted, changes).await
}

/// Waits until deleted objects are gone; only then do their entries leave the inventory.
async fn confirm_gone(
    live: &Live,
    inventory: &mut Inventory,
    mut pending: Vec<(ObjectRef, String)>,
    changes: &mut ChangeSet,
) -> Result<(), SyncError> {
    let started = Instant::now();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (reference, uid) in pending {
            let entry = &inventory.entries[&reference];
            let gone = match live.resolve_kind(&entry.api_version, &reference.kind) {
                None => true,
                Some(resolved) => match live.get(&resolved, &reference).await? {
                    None => true,
                    // A namesake created since is another object: ours is gone.
                    Some(current) => {
                        current.pointer("/metadata/uid").and_then(Value::as_str)
                            != Some(uid.as_str())
                    }
                },
            };
            if gone {
                inventory.entries.remove(&reference);
                changes.pruned.push(reference.to_string());
            } else {
                still.push((reference, uid));
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if started.elapsed() >= CONFIRM_TIMEOUT {
            changes
                .deleting
                .extend(pending.iter().map(|(r, _)| r.to_string()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    changes.pruned.sort();
    Ok(())
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
