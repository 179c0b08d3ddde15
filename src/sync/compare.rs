//! Whether a desired object is unchanged live: the one comparison `sync`, `status` and `diff`
//! share, so they never disagree.
//!
//! The server's answer is the truth: an object is unchanged when a server-side apply of it would
//! leave it as it is, which a dry-run apply shows. A dry run per object on every sync is a cost,
//! so a cheap test comes first and settles the common case without a request: the hash of what
//! was last applied (kept in the inventory) is the desired state's hash, and every field sprout
//! sets still has its value live. Both are needed: the subset test alone misses a field removed
//! from git (live still has it); the hash alone misses a manual edit. Only when the cheap test
//! fails is the server asked — it also sees what the subset test cannot: values it normalizes
//! (`cpu: 0.5` is `500m` live), fields this server version drops, defaults.

use super::SyncError;
use super::live::{Live, Resolved};
use crate::object::Object;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What a sync needs of a desired object's JSON: its hash and its size. Computed once per sync
/// for every object, on every core (see [`fingerprints`]): serializing a thousand objects is most
/// of the CPU a sync that changes nothing spends after its reads.
pub struct Fingerprint {
    /// The first 16 bytes of the SHA-256 of its JSON, in hex (Secret values left out).
    pub hash: String,
    /// The size of its JSON, Secret values included.
    pub bytes: usize,
}

/// The fingerprint of each of `objects`, in their order.
pub fn fingerprints(objects: &[Object]) -> Vec<Fingerprint> {
    use rayon::prelude::*;
    objects.par_iter().map(fingerprint).collect()
}

/// The hash of a desired object leaves Secret values out (the inventory is not a place for
/// anything derived from them); value changes of Secrets are caught by the subset check.
fn fingerprint(object: &Object) -> Fingerprint {
    let json = serde_json::to_vec(&object.body).expect("JSON maps serialize");
    let hash = if is_secret(object.kind(), object.group()) {
        let mut body = object.body.clone();
        mask_secret_values(&mut body, |_| Value::Null);
        hash_of_json(&serde_json::to_vec(&body).expect("JSON maps serialize"))
    } else {
        hash_of_json(&json)
    };
    Fingerprint {
        hash,
        bytes: json.len(),
    }
}

fn hash_of_json(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0xf)] as char);
    }
    hex
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
/// A zero value (`false`, `0`, `""`, `[]`, `{}`, null) the server left out counts as present:
/// the server omits such fields when it stores an object (`minReadySeconds: 0`,
/// `readOnly: false`, `env: []`).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => is_subset_map(d, l),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn is_subset_map(desired: &Map<String, Value>, live: &Map<String, Value>) -> bool {
    desired.iter().all(|(key, value)| match live.get(key) {
        Some(lv) => is_subset(value, lv),
        None => is_zero(value),
    })
}

pub(crate) fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

/// The cheap test: applied with this exact desired state (`applied_as_is`: the hash the
/// inventory records is the desired one) and not edited since.
pub(crate) fn evidently_unchanged(object: &Object, applied_as_is: bool, live: &Value) -> bool {
    applied_as_is
        && live
            .as_object()
            .is_some_and(|live| is_subset_map(&object.body, live))
}

/// What an apply of a desired object would do.
pub enum Verdict {
    /// Not in the cluster.
    Missing,
    Unchanged,
    /// An apply would change it: the object now and as the apply would leave it.
    Differs {
        current: Value,
        would_be: Value,
    },
    /// An apply would be refused: a field that cannot change after creation would change.
    Immutable {
        fields: String,
    },
}

/// The comparison: the cheap test, then the server's dry run. `force` as the apply would use it
/// (objects of the inventory). Conflicts with other field managers are errors, as in an apply.
pub async fn judge(
    live: &Live,
    resolved: &Resolved,
    object: &Object,
    applied_as_is: bool,
    current: Option<&Value>,
    force: bool,
) -> Result<Verdict, SyncError> {
    let Some(current) = current else {
        return Ok(Verdict::Missing);
    };
    if evidently_unchanged(object, applied_as_is, current) {
        return Ok(Verdict::Unchanged);
    }
    let (current, would_be) =
        match same_moment(live, resolved, object, force, current.clone()).await {
            Ok(Some(pair)) => pair,
            Ok(None) => return Ok(Verdict::Missing),
            Err(SyncError::Immutable { fields, .. }) => {
                let fields = super::immutable::named_fields(object, current, &fields);
                return Ok(Verdict::Immutable { fields });
            }
            Err(e) => return Err(e),
        };
    if comparable(&current) == comparable(&would_be) {
        Ok(Verdict::Unchanged)
    } else {
        Ok(Verdict::Differs { current, would_be })
    }
}

/// The object as it is and as an apply would leave it, both at one resourceVersion (`None`: it
/// was deleted meanwhile). The live state was read before the dry run; a controller writing in
/// between (a Deployment's revision annotation after a rollout) would otherwise show as drift.
/// A dry run answers with the resourceVersion it started from, so a mismatch means: read again.
async fn same_moment(
    live: &Live,
    resolved: &Resolved,
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

/// Fields the server writes that say nothing about drift.
const VOLATILE_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// A live or would-be object without what moves on its own: status (the controllers' report)
/// and the metadata the server maintains.
pub fn comparable(value: &Value) -> Map<String, Value> {
    let mut map = value.as_object().cloned().unwrap_or_default();
    map.remove("status");
    if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
        for field in VOLATILE_METADATA {
            metadata.remove(*field);
        }
    }
    map
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
    fn zero_values_the_server_omits_are_not_differences() {
        let desired = json!({"spec": {"minReadySeconds": 0, "template": {"spec": {"containers": [
            {"name": "a", "env": [], "volumeMounts": [{"name": "v", "readOnly": false}], "args": [""]}]}}}});
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "volumeMounts": [{"name": "v"}], "args": [""]}]}}}});
        assert!(is_subset(&desired, &live));
        let set_live = json!({"spec": {"minReadySeconds": 5}});
        assert!(
            !is_subset(&json!({"spec": {"minReadySeconds": 0}}), &set_live),
            "a zero is compared when the server has a value"
        );
        assert!(
            !is_subset(&json!({"spec": {"paused": true}}), &json!({"spec": {}})),
            "a non-zero value missing live is a difference"
        );
    }

    #[test]
    fn secret_values_do_not_enter_the_hash() {
        let secret = |value: &str| {
            crate::object::test_object(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": value}}),
            )
        };
        assert_eq!(
            fingerprint(&secret("YQ==")).hash,
            fingerprint(&secret("Yg==")).hash
        );
    }

    #[test]
    fn the_hash_is_the_one_inventories_already_record() {
        let Value::Object(body) = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v", "n": "1"}})
        else {
            unreachable!()
        };
        // As every earlier version wrote it: the first 16 bytes of the SHA-256 of the JSON.
        let recorded: String = Sha256::digest(serde_json::to_vec(&body).unwrap())
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        let object = Object::new(
            body,
            crate::object::Origin {
                file: "t".into(),
                document: 1,
            },
        );
        assert_eq!(fingerprint(&object).hash, recorded);
    }
}
