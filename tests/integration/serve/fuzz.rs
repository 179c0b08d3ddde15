//! A bounded fuzz run over the webhook payload parsers and signature checks: arbitrary bytes,
//! and structured mutations of real payloads (fields dropped, retyped, nested, cut short).
//! They must answer `Ok` or `Err`, never panic.
//!
//! The default run takes a moment; `SPROUT_FUZZ_SECONDS=300 cargo nextest run fuzz` runs for
//! five minutes (see README, Tests).

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use sprout::serve::webhook::{parse_github, parse_gitlab, verify_github, verify_gitlab};
use std::time::{Duration, Instant};

fn seeds() -> Vec<Value> {
    vec![
        json!({"action":"opened","number":7,"pull_request":{"number":7,"head":{"ref":"x","sha":"a"}},"repository":{"full_name":"acme/shop"}}),
        json!({"ref":"refs/heads/main","after":"b","repository":{"full_name":"acme/shop"}}),
        json!({"object_kind":"merge_request","project":{"path_with_namespace":"acme/shop"},"object_attributes":{"iid":3,"action":"close"}}),
        json!({"object_kind":"push","project":{"path_with_namespace":"acme/shop"}}),
    ]
}

/// A JSON value of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("number".to_string()),
                    Just("repository".to_string()),
                    Just("full_name".to_string()),
                    Just("object_kind".to_string()),
                    Just("iid".to_string()),
                    ".{0,8}".prop_map(String::from),
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A real payload with one field (at any depth) replaced by anything, or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        0..seeds().len(),
        any::<prop::sample::Index>(),
        any_json(),
        any::<bool>(),
        0usize..2000,
    )
        .prop_map(|(seed, index, replacement, remove, cut)| {
            let mut value = seeds()[seed].clone();
            let mut paths = Vec::new();
            collect_paths(&value, &mut Vec::new(), &mut paths);
            let path = index.get(&paths).clone();
            replace(&mut value, &path, replacement, remove);
            let mut bytes = serde_json::to_vec(&value).unwrap();
            if cut % 5 == 0 {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes
        })
}

fn collect_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    if let Value::Object(map) = value {
        for (key, child) in map {
            prefix.push(key.clone());
            collect_paths(child, prefix, out);
            prefix.pop();
        }
    }
}

fn replace(value: &mut Value, path: &[String], replacement: Value, remove: bool) {
    match path {
        [] => *value = replacement,
        [last] if remove => {
            if let Value::Object(map) = value {
                map.remove(last);
            }
        }
        [first, rest @ ..] => {
            if let Some(child) = value.get_mut(first) {
                replace(child, rest, replacement, remove);
            }
        }
    }
}

fn exercise(bytes: &[u8], event: &str) {
    let _ = parse_github(event, bytes);
    let _ = parse_gitlab(bytes);
    let secret = b"s";
    let header = String::from_utf8_lossy(bytes);
    let _ = verify_github(secret, Some(&header), bytes);
    let _ = verify_gitlab(secret, Some(&header));
}

#[test]
fn payload_parsers_never_panic() {
    let seconds: u64 = std::env::var("SPROUT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runner = TestRunner::new(Config::default());
    let bytes = prop::collection::vec(any::<u8>(), 0..512);
    let events = prop_oneof![
        Just("pull_request"),
        Just("push"),
        Just("ping"),
        Just("issues")
    ];
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let event = events.new_tree(&mut runner).unwrap().current();
        exercise(&bytes.new_tree(&mut runner).unwrap().current(), event);
        exercise(&mutated().new_tree(&mut runner).unwrap().current(), event);
        runs += 2;
    }
    assert!(runs > 100, "only {runs} inputs in {seconds}s");
    eprintln!("{runs} inputs in {seconds}s");
}
