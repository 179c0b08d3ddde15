//! The PersistentVolumeClaims that the StatefulSets of an environment made from their
//! `volumeClaimTemplates`: part of the environment, though never in its inventory. The
//! StatefulSet controller makes them (Kubernetes 1.20 gives them no owner reference, and
//! later versions only with a retention policy), so teardown deletes them itself, else they
//! would keep the environment's namespace (and their volumes) alive after `down`.
//!
//! Safety: a claim is deleted only when all of these hold, and then pinned to the uid read:
//! - its StatefulSet is in the inventory, still labelled for the environment (prune's own
//!   rule), and not marked to survive (a kept StatefulSet keeps its claims);
//! - it lies in the StatefulSet's namespace, and that namespace is the environment's: in the
//!   inventory and labelled for it (so deleting the namespace would take the claim anyway);
//! - it is named as the controller names a claim of that StatefulSet,
//!   `<template>-<statefulset>-<ordinal>` (a StatefulSet's pod mounts whatever claim has that
//!   name: such a claim is that StatefulSet's volume, whoever made it);
//! - it carries the labels the controller gives such a claim: the template's, overlaid with the
//!   StatefulSet's `selector.matchLabels` (`getPersistentVolumeClaims` in 1.20's
//!   `stateful_set_utils.go`);
//! - it has no owner references (the garbage collector's), is not being deleted already, and is
//!   not marked to survive.
//!
//! Anything else — a claim of another name, with other labels, in another namespace — is left
//! alone and keeps its namespace, named, as any object sprout did not apply.
//!
//! The claims go before their StatefulSets (which are deleted by prune after this): a run killed
//! between the two finds the StatefulSet again and deletes what is left of them, whereas after
//! the StatefulSet is gone nothing would say which claims were its. The controller does not
//! make a claim again for a pod that exists, and a claim in use waits (its protection
//! finalizer) until its pod is gone with the StatefulSet.

use super::live::Live;
use super::prune::{Deleted, keep_reason};
use super::{Owner, SyncError, owned_by};
use crate::object::ObjectRef;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long teardown waits for the claims it deleted to go. A claim in use goes only once its
/// pod has stopped (its protection finalizer), which may take the pod's whole grace period:
/// it is then reported as still being deleted, and its namespace's delete waits for it.
pub(super) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// What the controller makes of one StatefulSet's `volumeClaimTemplates`.
#[derive(Debug, PartialEq)]
struct Templates {
    namespace: String,
    statefulset: String,
    /// Per template name, the labels its claims get.
    labels: BTreeMap<String, Map<String, Value>>,
}

/// Deletes the claims that the inventory's StatefulSets made (see the module's rules), in the
/// inventory's namespaces `owned`; returns the deletes the server accepted.
pub(super) async fn delete_claims(
    live: &Live,
    entries: &BTreeMap<ObjectRef, super::inventory::Entry>,
    owned: &BTreeSet<String>,
    owner: Owner<'_>,
) -> Result<Vec<Deleted>, SyncError> {
    let mut accepted = Vec::new();
    let Some(claims) = live.resolve_kind("v1", "PersistentVolumeClaim") else {
        return Ok(accepted);
    };
    let sets = statefulsets(live, entries, owned, owner).await?;
    let namespaces: BTreeSet<&str> = sets.iter().map(|t| t.namespace.as_str()).collect();
    for namespace in namespaces {
        for claim in live.list(&claims, namespace).await? {
            if !sets.iter().any(|t| made_by(&claim, t)) {
                continue;
            }
            let reference = ObjectRef {
                group: String::new(),
                kind: "PersistentVolumeClaim".into(),
                namespace: namespace.to_string(),
                name: text_at(&claim, "/metadata/name").to_string(),
            };
            let uid = text_at(&claim, "/metadata/uid").to_string();
            if live.delete(&claims, &reference, &uid).await? {
                accepted.push(Deleted {
                    reference,
                    api_version: "v1".into(),
                    uid,
                });
            }
        }
    }
    Ok(accepted)
}

/// The templates of the inventory's StatefulSets that may lose their claims: live, labelled for
/// the environment, not marked to survive, in a namespace of `owned` that is labelled for it.
async fn statefulsets(
    live: &Live,
    entries: &BTreeMap<ObjectRef, super::inventory::Entry>,
    owned: &BTreeSet<String>,
    owner: Owner<'_>,
) -> Result<Vec<Templates>, SyncError> {
    let mut found = Vec::new();
    let mut namespaces_ours: BTreeMap<String, bool> = BTreeMap::new();
    for (reference, entry) in entries {
        if reference.kind != "StatefulSet"
            || reference.group != "apps"
            || !owned.contains(&reference.namespace)
        {
            continue;
        }
        let Some(resolved) = live.resolve_kind(&entry.api_version, &reference.kind) else {
            continue;
        };
        let Some(set) = live.get(&resolved, reference).await? else {
            continue;
        };
        if !owned_by(&set, owner) || keep_reason(&set).is_some() {
            continue;
        }
        if !namespace_is_ours(live, &reference.namespace, owner, &mut namespaces_ours).await? {
            continue;
        }
        found.extend(templates(&set));
    }
    Ok(found)
}

/// Whether the live Namespace `name` is labelled for the environment (asked once per name).
async fn namespace_is_ours(
    live: &Live,
    name: &str,
    owner: Owner<'_>,
    asked: &mut BTreeMap<String, bool>,
) -> Result<bool, SyncError> {
    if let Some(ours) = asked.get(name) {
        return Ok(*ours);
    }
    let Some(resolved) = live.resolve_kind("v1", "Namespace") else {
        return Ok(false);
    };
    let reference = ObjectRef {
        group: String::new(),
        kind: "Namespace".into(),
        namespace: String::new(),
        name: name.to_string(),
    };
    let ours = live
        .get(&resolved, &reference)
        .await?
        .is_some_and(|namespace| owned_by(&namespace, owner));
    asked.insert(name.to_string(), ours);
    Ok(ours)
}

/// What the controller makes of `set`'s templates; None without any.
fn templates(set: &Value) -> Option<Templates> {
    let templates = set.pointer("/spec/volumeClaimTemplates")?.as_array()?;
    let selected = set
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut labels = BTreeMap::new();
    for template in templates {
        let name = text_at(template, "/metadata/name");
        if name.is_empty() {
            continue;
        }
        let mut given = template
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        given.extend(selected.clone());
        labels.insert(name.to_string(), given);
    }
    (!labels.is_empty()).then(|| Templates {
        namespace: text_at(set, "/metadata/namespace").to_string(),
        statefulset: text_at(set, "/metadata/name").to_string(),
        labels,
    })
}

/// Whether `claim` is one the controller made for `templates`' StatefulSet (the module's rules
/// on the claim itself).
fn made_by(claim: &Value, templates: &Templates) -> bool {
    let metadata = &claim["metadata"];
    let untouched = metadata["ownerReferences"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && metadata["deletionTimestamp"].is_null()
        && keep_reason(claim).is_none();
    if !untouched || text_at(claim, "/metadata/namespace") != templates.namespace {
        return false;
    }
    let name = text_at(claim, "/metadata/name");
    let labels = metadata["labels"].as_object();
    templates.labels.iter().any(|(template, wanted)| {
        let ordinal = name
            .strip_prefix(template.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.strip_prefix(templates.statefulset.as_str()))
            .and_then(|rest| rest.strip_prefix('-'));
        ordinal.is_some_and(is_ordinal)
            && wanted
                .iter()
                .all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
    })
}

/// A pod ordinal as the controller writes it: a decimal number without leading zeros.
fn is_ordinal(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

fn text_at<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cassandra() -> Value {
        json!({
            "metadata": {"name": "cassandra", "namespace": "pr-1"},
            "spec": {
                "selector": {"matchLabels": {"app": "cassandra"}},
                "volumeClaimTemplates": [
                    {"metadata": {"name": "cassandra-data", "labels": {"app": "other", "tier": "db"}}},
                    {"metadata": {"name": "logs"}},
                ],
            },
        })
    }

    fn claim(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "pr-1", "uid": "u", "labels": labels}})
    }

    #[test]
    fn the_controller_labels_claims_with_the_template_overlaid_by_the_selector() {
        let made = templates(&cassandra()).unwrap();
        assert_eq!(made.statefulset, "cassandra");
        assert_eq!(
            Value::Object(made.labels["cassandra-data"].clone()),
            json!({"app": "cassandra", "tier": "db"})
        );
        assert_eq!(
            Value::Object(made.labels["logs"].clone()),
            json!({"app": "cassandra"})
        );
        assert_eq!(templates(&json!({"metadata": {"name": "web"}})), None);
    }

    #[test]
    fn only_claims_named_and_labelled_as_the_controller_makes_them_match() {
        let made = templates(&cassandra()).unwrap();
        let data = json!({"app": "cassandra", "tier": "db"});
        for name in [
            "cassandra-data-cassandra-0",
            "cassandra-data-cassandra-2",
            "cassandra-data-cassandra-12",
        ] {
            assert!(made_by(&claim(name, data.clone()), &made), "{name}");
        }
        assert!(made_by(
            &claim(
                "logs-cassandra-0",
                json!({"app": "cassandra", "extra": "x"})
            ),
            &made
        ));
        for name in [
            "cassandra-data-cassandra-",
            "cassandra-data-cassandra-01",
            "cassandra-data-cassandra-x",
            "cassandra-data-cassandra-0-backup",
            "cassandra-data-cassandra2-0",
            "other-cassandra-0",
            "cassandra-data-0",
        ] {
            assert!(!made_by(&claim(name, data.clone()), &made), "{name}");
        }
        let name = "cassandra-data-cassandra-0";
        // Labels: the selector's and the template's, as the controller sets them.
        assert!(!made_by(&claim(name, json!({"app": "cassandra"})), &made));
        assert!(!made_by(
            &claim(name, json!({"app": "other", "tier": "db"})),
            &made
        ));
        assert!(!made_by(&claim(name, Value::Null), &made));
        // Another namespace, an owner, a delete under way, an opt-out: never.
        let mut elsewhere = claim(name, data.clone());
        elsewhere["metadata"]["namespace"] = json!("other");
        let mut owned = claim(name, data.clone());
        owned["metadata"]["ownerReferences"] = json!([{"kind": "StatefulSet", "name": "x"}]);
        let mut going = claim(name, data.clone());
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut kept = claim(name, data.clone());
        kept["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
        for other in [elsewhere, owned, going, kept] {
            assert!(!made_by(&other, &made), "{other}");
        }
    }
}
