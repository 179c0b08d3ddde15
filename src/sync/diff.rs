//! `diff`: desired against live, per object, by asking the server what an apply would produce
//! (server-side dry run) and comparing that with what is there. Secret values are masked.

use super::compare::{is_secret, mask_secret_values};
use super::live::Live;
use super::{SyncError, SyncPlan};
use crate::object::{Object, ObjectRef};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "change", rename_all = "camelCase")]
pub enum Change {
    /// Not in the cluster yet.
    Create,
    /// In the cluster, different: a unified diff of live → desired (YAML).
    Update { diff: String },
    /// In the inventory, no longer desired: sync would delete it.
    Prune,
    /// Sync would stop on a conflict with another field manager.
    Conflict { message: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectDiff {
    pub object: String,
    #[serde(flatten)]
    pub change: Change,
}

/// Fields the server writes that say nothing about drift.
const VOLATILE_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

pub async fn diff(live: &mut Live, plan: &SyncPlan<'_>) -> Result<Vec<ObjectDiff>, SyncError> {
    let super::LiveView {
        inventory,
        snapshot,
        ..
    } = super::read_live(live, plan).await?;

    let mut diffs = Vec::new();
    for object in plan.objects {
        let reference = object.object_ref();
        let Some(current) = snapshot.get(&reference) else {
            diffs.push(ObjectDiff {
                object: reference.to_string(),
                change: Change::Create,
            });
            continue;
        };
        let force = inventory.entries.contains_key(&reference);
        if !force && !super::owned_by(current, plan.env) {
            let refusal = super::SyncError::NotOurs {
                object: reference.to_string(),
                owner: super::owner_description(current),
            };
            diffs.push(ObjectDiff {
                object: reference.to_string(),
                change: Change::Conflict {
                    message: refusal.to_string(),
                },
            });
            continue;
        }
        let resolved = live.resolve(object)?;
        let change = match same_moment(live, &resolved, object, force, current.clone()).await {
            Ok(None) => Some(Change::Create),
            Ok(Some((current, would_be))) => {
                let (before, after) = comparable(object, &current, &would_be);
                (before != after).then(|| Change::Update {
                    diff: unified(&reference, &before, &after),
                })
            }
            Err(e @ (SyncError::Conflict { .. } | SyncError::NotOurs { .. })) => {
                Some(Change::Conflict {
                    message: e.to_string(),
                })
            }
            Err(e) => return Err(e),
        };
        if let Some(change) = change {
            diffs.push(ObjectDiff {
                object: reference.to_string(),
                change,
            });
        }
    }
    let desired: BTreeSet<ObjectRef> = plan.objects.iter().map(Object::object_ref).collect();
    for reference in inventory.entries.keys().filter(|r| !desired.contains(r)) {
        diffs.push(ObjectDiff {
            object: reference.to_string(),
            change: Change::Prune,
        });
    }
    Ok(diffs)
}

/// The object as it is and as an apply would leave it, both at one resourceVersion (`None`: it
/// was deleted meanwhile). The live state was read before the dry run; a controller writing in
/// between (a Deployment's revision annotation after a rollout) would otherwise show as drift.
/// A dry run answers with the resourceVersion it started from, so a mismatch means: read again.
async fn same_moment(
    live: &Live,
    resolved: &super::live::Resolved,
    object: &Object,
    force: bool,
    mut current: Value,
) -> Result<Option<(Value, Value)>, SyncError> {
    let version = |v: &Value| v.pointer("/metadata/resourceVersion").cloned();
    let mut attempts = 0;
    loop {
        let would_be = live.apply(resolved, object, force, true).await?;
        attempts += 1;
        if version(&would_be) == version(&current) || attempts == 5 {
            return Ok(Some((current, would_be)));
        }
        match live.get(resolved, &object.object_ref()).await? {
            Some(now) => current = now,
            None => return Ok(None),
        }
    }
}

/// Live and would-be objects as YAML, without volatile fields, Secret values masked.
fn comparable(object: &Object, live: &Value, would_be: &Value) -> (String, String) {
    let clean = |value: &Value| -> Map<String, Value> {
        let mut map = value.as_object().cloned().unwrap_or_default();
        // Status is the controllers' report, not desired state (and moves while we look).
        map.remove("status");
        if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
            for field in VOLATILE_METADATA {
                metadata.remove(*field);
            }
        }
        map
    };
    let mut before = clean(live);
    let mut after = clean(would_be);
    if is_secret(object.kind(), object.group()) {
        let old_values = secret_values(&before);
        let new_values = secret_values(&after);
        mask_secret_values(&mut before, |_| Value::String("***".into()));
        mask_secret_values(&mut after, |key| {
            let changed = old_values.get(key) != new_values.get(key);
            Value::String(if changed {
                "*** (changed)".into()
            } else {
                "***".into()
            })
        });
    }
    let yaml = |map: &Map<String, Value>| serde_yaml::to_string(map).expect("JSON maps serialize");
    (yaml(&before), yaml(&after))
}

fn secret_values(map: &Map<String, Value>) -> Map<String, Value> {
    map.get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn unified(reference: &ObjectRef, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("live {reference}"),
            &format!("desired {reference}"),
        )
        .to_string()
}
