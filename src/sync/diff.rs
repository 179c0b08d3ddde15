//! `diff`: desired against live, per object, by the comparison sync uses (see `compare.rs`):
//! what a server-side apply would change, as the server's dry run answers it. Secret values are
//! masked, and so is every annotation of a Secret that can carry them.

use super::compare::{Verdict, comparable, is_secret, judge, mask_secret_values};
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
    /// A field that cannot change would change: sync deletes and recreates it (or refuses).
    Recreate { fields: String },
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

/// Annotations that hold a copy of the whole object as last applied by a tool: for a Secret,
/// its values.
const OBJECT_COPY_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "kapp.k14s.io/original",
    "kapp.k14s.io/original-diff",
];

pub async fn diff(live: &mut Live, plan: &SyncPlan<'_>) -> Result<Vec<ObjectDiff>, SyncError> {
    super::refuse_what_the_server_cannot_compare(live, plan).await?;
    let super::LiveView {
        inventory,
        snapshot,
        ..
    } = super::read_live(live, plan, None).await?;

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
        // A shared CRD that exists is every environment's and left as it is (no one's label).
        if super::is_shared(object, plan.shared_cluster) {
            continue;
        }
        let force = inventory.entries.contains_key(&reference);
        if !force && !super::owned_by(current, plan.owner()) {
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
        let applied_as_is = plan.applied_as_is(&reference, &inventory);
        let change = match judge(live, &resolved, object, applied_as_is, Some(current), force).await
        {
            Ok(Verdict::Missing) => Some(Change::Create),
            Ok(Verdict::Unchanged) => None,
            Ok(Verdict::Differs { current, would_be }) => {
                let (before, after) = shown(object, &current, &would_be);
                Some(Change::Update {
                    diff: unified(&reference, &before, &after),
                })
            }
            Ok(Verdict::Immutable { fields }) => Some(Change::Recreate { fields }),
            Err(
                e @ (SyncError::Conflict { .. }
                | SyncError::NotOurs { .. }
                | SyncError::UnknownFields { .. }),
            ) => Some(Change::Conflict {
                message: e.to_string(),
            }),
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

/// Live and would-be objects as YAML, without volatile fields; for a Secret, its values and
/// every annotation that may hold them masked.
fn shown(object: &Object, live: &Value, would_be: &Value) -> (String, String) {
    let mut before = comparable(live);
    let mut after = comparable(would_be);
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
        let values: Vec<String> = old_values
            .values()
            .chain(new_values.values())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        mask_annotations(&mut before, &values);
        mask_annotations(&mut after, &values);
    }
    let yaml = |map: &Map<String, Value>| serde_yaml::to_string(map).expect("JSON maps serialize");
    (yaml(&before), yaml(&after))
}

/// Masks the annotations of a Secret that can carry its values: the known copies of the whole
/// object, and any other whose text holds one of `values` (as stored, base64) or mentions
/// `data`/`stringData` the way an embedded manifest does.
fn mask_annotations(secret: &mut Map<String, Value>, values: &[String]) {
    let Some(Value::Object(annotations)) = secret
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    else {
        return;
    };
    let decoded: Vec<String> = values.iter().filter_map(|v| decode(v)).collect();
    for (key, value) in annotations.iter_mut() {
        let text = value.as_str().unwrap_or_default();
        let holds_values = values
            .iter()
            .chain(&decoded)
            .any(|v| v.len() >= 3 && text.contains(v.as_str()));
        let embeds_object = text.contains("\"data\"")
            || text.contains("\"stringData\"")
            || text.contains("data:")
            || text.contains("stringData:");
        if OBJECT_COPY_ANNOTATIONS.contains(&key.as_str()) || holds_values || embeds_object {
            *value = Value::String("*** (may hold Secret values)".into());
        }
    }
}

fn decode(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
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
