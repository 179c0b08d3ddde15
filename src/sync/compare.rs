//! Comparing desired and live objects without a write: the hash of what was last applied
//! (kept in the inventory) and whether every field sprout sets still has its value live.
//!
//! Both are needed. The subset check alone misses a field removed from git (live still has it);
//! the hash alone misses a manual edit (the hash has not changed). Unchanged means both agree.

use crate::object::Object;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A hash of the desired object. Secret values are left out (the inventory is not a place for
/// anything derived from them); value changes of Secrets are caught by the subset check.
pub fn desired_hash(object: &Object) -> String {
    let mut body = object.body.clone();
    if is_secret(object.kind(), object.group()) {
        mask_secret_values(&mut body, |_| Value::Null);
    }
    let bytes = serde_json::to_vec(&body).expect("JSON maps serialize");
    let digest = Sha256::digest(&bytes);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

pub fn is_secret(kind: &str, group: &str) -> bool {
    kind == "Secret" && group.is_empty()
}

/// Replaces every value under `data` and `stringData` with `mask(key)`.
pub fn mask_secret_values(body: &mut Map<String, Value>, mask: impl Fn(&str) -> Value) {
    for field in ["data", "stringData"] {
        if let Some(Value::Object(values)) = body.get_mut(field) {
            for (key, value) in values.iter_mut() {
                *value = mask(key);
            }
        }
    }
}

/// Whether every field of `desired` has the same value in `live` (lists element by element).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(key, value)| {
            l.get(key).is_some_and(|lv| is_subset(value, lv))
                || (value.is_null() && !l.contains_key(key))
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Whether `object` is unchanged live: applied with this exact desired state (`recorded_hash`)
/// and not edited since.
pub fn unchanged(object: &Object, recorded_hash: Option<&str>, live: Option<&Value>) -> bool {
    let Some(live) = live else { return false };
    recorded_hash == Some(desired_hash(object).as_str())
        && is_subset(&Value::Object(object.body.clone()), live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_objects_hold_defaults_the_desired_state_does_not() {
        let desired = json!({"spec": {"ports": [{"port": 80}], "replicas": 1}});
        let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "replicas": 1, "revisionHistoryLimit": 10}});
        assert!(is_subset(&desired, &live));
        let edited = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "replicas": 3}});
        assert!(!is_subset(&desired, &edited));
        let more_ports = json!({"spec": {"ports": [{"port": 80}, {"port": 81}], "replicas": 1}});
        assert!(!is_subset(&desired, &more_ports));
    }

    #[test]
    fn secret_values_do_not_enter_the_hash() {
        let secret = |value: &str| {
            let Value::Object(body) = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": value}})
            else {
                unreachable!()
            };
            Object::new(
                body,
                crate::object::Origin {
                    file: "t".into(),
                    document: 1,
                },
            )
        };
        assert_eq!(desired_hash(&secret("YQ==")), desired_hash(&secret("Yg==")));
    }
}
