//! Naming the fields of a change the server refuses because they cannot change after creation.
//!
//! Most refusals name the field themselves (`spec.selector`, `spec.template`, `roleRef`,
//! `spec.clusterIPs[0]`). A StatefulSet's and a PersistentVolumeClaim's name only `spec` ("updates
//! to statefulset spec for fields other than 'replicas', 'template', and 'updateStrategy' are
//! forbidden"), which tells a user nothing about what in their manifest to undo. For those, the
//! fields are found by comparing the desired `spec` with the live one, down to the innermost
//! value that differs (`spec.volumeClaimTemplates[0].spec.resources.requests.storage`), leaving
//! out the fields the server lets change.

use super::compare::{is_subset, is_zero};
use super::messages::capped_inline;
use crate::object::Object;
use serde_json::Value;

/// Fields of `spec` the server lets change, for the kinds whose refusal names only `spec`
/// (group, kind, fields); newer servers' additions included, so none is blamed on them.
const MUTABLE_SPEC_FIELDS: &[(&str, &str, &[&str])] = &[
    (
        "apps",
        "StatefulSet",
        &[
            "replicas",
            "template",
            "updateStrategy",
            "minReadySeconds",
            "persistentVolumeClaimRetentionPolicy",
            "ordinals",
        ],
    ),
    // A bound claim may grow; an unbound one may not, which the fallback below still names.
    (
        "",
        "PersistentVolumeClaim",
        &["resources", "volumeAttributesClassName"],
    ),
];

/// The most fields named for one object.
const FIELDS_SHOWN: usize = 5;

/// The fields the server named (`server_fields`, comma-separated), made precise when it named
/// only `spec`: the paths in `spec` whose desired value `live` does not hold, each as deep as the
/// difference goes. Paths under the fields the kind lets change are left out, unless nothing
/// else differs. When nothing differs that the comparison can see (a field removed from the
/// manifest), the server's word stands.
pub(crate) fn named_fields(object: &Object, live: &Value, server_fields: &str) -> String {
    if server_fields != "spec" {
        return server_fields.to_string();
    }
    let Some(desired) = object.get(&["spec"]) else {
        return server_fields.to_string();
    };
    let mut differing = Vec::new();
    differing_paths(desired, live.get("spec"), "spec", &mut differing);
    let mutable = MUTABLE_SPEC_FIELDS
        .iter()
        .find(|(group, kind, _)| (object.group(), object.kind()) == (*group, *kind))
        .map_or(&[][..], |(_, _, fields)| fields);
    let immutable: Vec<String> = differing
        .iter()
        .filter(|path| !mutable.contains(&top_field(path)))
        .cloned()
        .collect();
    let named = if immutable.is_empty() {
        differing
    } else {
        immutable
    };
    if named.is_empty() {
        return server_fields.to_string();
    }
    capped_inline(&named, FIELDS_SHOWN)
}

/// The field of `spec` a path lies under: `volumeClaimTemplates` for
/// `spec.volumeClaimTemplates[0].spec`.
fn top_field(path: &str) -> &str {
    let field = path.strip_prefix("spec.").unwrap_or(path);
    let end = field.find(['.', '[']).unwrap_or(field.len());
    &field[..end]
}

/// Adds to `found` the paths under `path` where `desired` holds a value `live` does not
/// (defaults the server added live are not differences; see [`is_subset`]), each as deep as
/// the difference goes: into maps by key, into lists of maps of the same length by index. A
/// list of another length, or of scalars, is named whole: which item moved is a guess.
fn differing_paths(desired: &Value, live: Option<&Value>, path: &str, found: &mut Vec<String>) {
    let Some(live) = live else {
        // A zero value the server leaves out is not a difference (as in `is_subset`).
        if !is_zero(desired) {
            found.push(path.to_string());
        }
        return;
    };
    if is_subset(desired, live) {
        return;
    }
    match (desired, live) {
        (Value::Object(desired), Value::Object(live)) => {
            for (field, value) in desired {
                differing_paths(value, live.get(field), &format!("{path}.{field}"), found);
            }
        }
        (Value::Array(desired), Value::Array(live))
            if desired.len() == live.len() && desired.iter().all(Value::is_object) =>
        {
            for (index, (value, now)) in desired.iter().zip(live).enumerate() {
                differing_paths(value, Some(now), &format!("{path}[{index}]"), found);
            }
        }
        _ => found.push(path.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::object::test_object as object;

    fn stateful_set(storage: &str, service: &str, replicas: u32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"serviceName": service, "replicas": replicas,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}}]}})
    }

    /// The live StatefulSet as the server keeps it: defaults added to the spec and to each
    /// claim template.
    fn live_stateful_set(storage: &str) -> Value {
        let mut live = stateful_set(storage, "db", 1);
        live["spec"]["podManagementPolicy"] = json!("OrderedReady");
        live["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] = json!("Filesystem");
        live["spec"]["volumeClaimTemplates"][0]["status"] = json!({"phase": "Pending"});
        live
    }

    #[test]
    fn a_stateful_set_s_refusal_names_the_fields_that_changed() {
        let live = live_stateful_set("1Gi");
        let bigger = object(stateful_set("2Gi", "db", 3));
        assert_eq!(
            named_fields(&bigger, &live, "spec"),
            "spec.volumeClaimTemplates[0].spec.resources.requests.storage",
            "replicas may change: not named; the server's defaults in the claim are no change"
        );
        let renamed = object(stateful_set("2Gi", "cassandra", 1));
        assert_eq!(
            named_fields(&renamed, &live, "spec"),
            "spec.serviceName, spec.volumeClaimTemplates[0].spec.resources.requests.storage"
        );
    }

    #[test]
    fn a_list_that_changed_length_or_holds_scalars_is_named_whole() {
        let live = live_stateful_set("1Gi");
        let mut more_claims = stateful_set("1Gi", "db", 1);
        more_claims["spec"]["volumeClaimTemplates"]
            .as_array_mut()
            .unwrap()
            .push(json!({"metadata": {"name": "logs"}}));
        assert_eq!(
            named_fields(&object(more_claims), &live, "spec"),
            "spec.volumeClaimTemplates"
        );
        let mut shared = stateful_set("1Gi", "db", 1);
        shared["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(
            named_fields(&object(shared), &live, "spec"),
            "spec.volumeClaimTemplates[0].spec.accessModes"
        );
    }

    #[test]
    fn the_server_s_word_stands_when_it_named_a_field_or_nothing_differs() {
        let live = live_stateful_set("1Gi");
        let same = object(stateful_set("1Gi", "db", 1));
        assert_eq!(named_fields(&same, &live, "spec"), "spec");
        assert_eq!(named_fields(&same, &live, "spec.selector"), "spec.selector");
    }

    #[test]
    fn a_claim_that_may_not_grow_is_named_by_its_resources() {
        let claim = |mode: &str, storage: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                "spec": {"accessModes": [mode], "resources": {"requests": {"storage": storage}}}})
        };
        let live = claim("ReadWriteOnce", "1Gi");
        assert_eq!(
            named_fields(&object(claim("ReadWriteMany", "2Gi")), &live, "spec"),
            "spec.accessModes"
        );
        assert_eq!(
            named_fields(&object(claim("ReadWriteOnce", "2Gi")), &live, "spec"),
            "spec.resources.requests.storage",
            "an unbound claim may not grow either"
        );
    }

    #[test]
    fn many_fields_are_bounded() {
        let mut spec = serde_json::Map::new();
        for i in 0..30 {
            spec.insert(format!("field{i:02}"), json!(i + 1));
        }
        let desired = object(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}),
        );
        let named = named_fields(&desired, &json!({"spec": {}}), "spec");
        assert!(named.ends_with(", +25 more"), "{named}");
    }
}
