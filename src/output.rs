//! Writing objects out: multi-document YAML or a JSON `List`, byte-identical for equal input
//! (object keys are sorted maps, objects come in apply order).
//!
//! The YAML reads back identically in YAML 1.2 and YAML 1.1 readers (PyYAML, Go's yaml.v2,
//! many CI tools): strings that YAML 1.1 alone would take for something else (`yes`, `on`,
//! `y`, `=`, `<<`, `2024-01-31`, `1:20`, `1_000`) are double-quoted, and floats are written
//! with a dot and a signed exponent (`1.0e+300`, not `1e300`, which YAML 1.1 reads as a
//! string).

use crate::object::Object;
use regex::Regex;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

pub fn yaml_documents(objects: &[Object]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&yaml_document(object));
    }
    out
}

pub fn yaml_document(object: &Object) -> String {
    yaml_text(&Value::Object(object.body.clone()))
}

/// `value` as YAML readable alike by YAML 1.1 and 1.2 readers. The YAML library decides
/// quoting by YAML 1.2 alone, so each scalar it would get wrong is swapped for a placeholder
/// it writes plain, and the placeholder is then replaced by the scalar's safe spelling.
pub fn yaml_text(value: &Value) -> String {
    let serialize =
        |v: &Value| serde_yaml::to_string(v).expect("a JSON value always serializes to YAML");
    if !any_ambiguous(value) {
        return serialize(value);
    }
    // A placeholder no string of the document holds: a word the library writes plain.
    let mut prefix = String::from("sproutyamlscalar");
    while holds_text(value, &prefix) {
        prefix.push('x');
    }
    let mut spellings = Vec::new();
    let mut text = serialize(&swap_ambiguous(value, &prefix, &mut spellings));
    // The closing `z` keeps placeholder 1 from matching the start of placeholder 12.
    for (index, spelling) in spellings.iter().enumerate() {
        text = text.replace(&format!("{prefix}{index}z"), spelling);
    }
    text
}

/// Whether any key or string of `value` contains `needle`.
fn holds_text(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(s) => s.contains(needle),
        Value::Array(items) => items.iter().any(|item| holds_text(item, needle)),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains(needle) || holds_text(item, needle)),
        _ => false,
    }
}

/// Whether `value` holds anything [`swap_ambiguous`] would swap (most objects do not, and are
/// then written in one pass without a copy).
fn any_ambiguous(value: &Value) -> bool {
    match value {
        Value::String(s) => written_plain_but_ambiguous(s),
        Value::Number(n) => n
            .as_f64()
            .filter(|_| n.is_f64())
            .is_some_and(|f| yaml_1_1_float(f).is_some()),
        Value::Array(items) => items.iter().any(any_ambiguous),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| written_plain_but_ambiguous(key) || any_ambiguous(item)),
        Value::Null | Value::Bool(_) => false,
    }
}

fn swap_ambiguous(value: &Value, prefix: &str, spellings: &mut Vec<String>) -> Value {
    let mut placeholder = |spelling: String| {
        spellings.push(spelling);
        Value::String(format!("{prefix}{}z", spellings.len() - 1))
    };
    match value {
        Value::String(s) if written_plain_but_ambiguous(s) => {
            placeholder(crate::template::yaml_quoted(s))
        }
        Value::Number(n) if n.is_f64() => match yaml_1_1_float(n.as_f64().unwrap_or_default()) {
            Some(spelling) => placeholder(spelling),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| swap_ambiguous(item, prefix, spellings))
                .collect(),
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map {
                let key = if written_plain_but_ambiguous(key) {
                    spellings.push(crate::template::yaml_quoted(key));
                    format!("{prefix}{}z", spellings.len() - 1)
                } else {
                    key.clone()
                };
                let item = swap_ambiguous(item, prefix, spellings);
                out.insert(key, item);
            }
            Value::Object(out)
        }
        _ => value.clone(),
    }
}

/// Whether the YAML library writes `s` plain although YAML 1.1 would misread it (what it
/// already quotes, such as `'8080'`, keeps its spelling).
fn written_plain_but_ambiguous(s: &str) -> bool {
    thread_local! {
        /// The library's answer per string: the same few (`"1"`, `"true"`, `"8080"`) recur in
        /// every object, and asking costs a serialization.
        static WRITTEN_PLAIN: std::cell::RefCell<std::collections::HashMap<String, bool>> =
            Default::default();
    }
    is_ambiguous_in_yaml_1_1(s)
        && WRITTEN_PLAIN.with(|cache| {
            if let Some(plain) = cache.borrow().get(s) {
                return *plain;
            }
            let plain =
                serde_yaml::to_string(s).is_ok_and(|spelled| !spelled.starts_with(['\'', '"']));
            cache.borrow_mut().insert(s.to_string(), plain);
            plain
        })
}

/// Whether a YAML 1.1 reader would resolve the plain scalar `s` to something other than
/// this string (PyYAML's resolvers, plus `y`/`n` of the YAML 1.1 boolean type); the YAML
/// library already quotes what YAML 1.2 would misread, and nothing else needs quotes.
fn is_ambiguous_in_yaml_1_1(s: &str) -> bool {
    // Words are compared as they are; only what starts like a number, a date or a time needs
    // the (slower) patterns.
    if matches!(
        s,
        "" | "~"
            | "="
            | "<<"
            | "null"
            | "Null"
            | "NULL"
            | "y"
            | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) {
        return true;
    }
    let starts_like_a_number = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || "+-.".contains(c));
    if s.len() > 48 || !starts_like_a_number {
        return false;
    }
    static NUMBER_OR_TIME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"^(?:",
            // int: binary, octal, decimal, hex, sexagesimal
            r"[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+",
            r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
            // float
            r"|[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
            r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
            // timestamp
            r"|[0-9]{4}-[0-9]{2}-[0-9]{2}",
            r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?",
            r")$"
        ))
        .expect("a valid regex")
    });
    NUMBER_OR_TIME.is_match(s)
}

/// A float's spelling when the YAML library's (`1e300`, `1.5e-7`) is not a YAML 1.1 float:
/// YAML 1.1 wants a dot in the mantissa and a sign in the exponent.
fn yaml_1_1_float(f: f64) -> Option<String> {
    let spelled = serde_yaml::to_string(&f).ok()?.trim_end().to_string();
    let (mantissa, exponent) = spelled.split_once(['e', 'E'])?;
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    let exponent = if exponent.starts_with(['-', '+']) {
        exponent.to_string()
    } else {
        format!("+{exponent}")
    };
    Some(format!("{mantissa}e{exponent}"))
}

pub fn json_list(objects: &[Object]) -> String {
    let items: Vec<Value> = objects
        .iter()
        .map(|o| Value::Object(o.body.clone()))
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let mut text = serde_json::to_string_pretty(&list).expect("JSON values serialize");
    text.push('\n');
    text
}

/// A file name for one object: `0001-deployment-shop-frontend.yaml`, in apply order.
pub fn file_name(index: usize, object: &Object) -> String {
    let mut parts = vec![object.kind().to_lowercase()];
    if !object.namespace().is_empty() {
        parts.push(object.namespace().to_string());
    }
    parts.push(object.name().replace([':', '/'], "_"));
    format!("{:04}-{}.yaml", index + 1, parts.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings and numbers that YAML 1.1 and YAML 1.2 readers tell apart.
    fn tricky() -> Value {
        let strings = [
            "=",
            "<<",
            "~",
            "",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "Y",
            "N",
            "Yes",
            "OFF",
            "true",
            "null",
            "0755",
            "012",
            "1e3",
            "1_000",
            "1:20",
            "190:20:30",
            "0b101",
            "0x1F",
            "0o17",
            ".inf",
            ".5",
            "1.",
            "+1",
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "- x",
            "a: b",
            "#x",
            "plain",
            "x\ny",
            "Ünï",
            "y\u{2028}",
        ];
        let mut data = Map::new();
        for (i, s) in strings.iter().enumerate() {
            data.insert(format!("k{i:02}"), json!(s));
            data.insert((*s).to_string(), json!(i));
        }
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "tricky"},
            "data": data,
            "list": strings.to_vec(),
            "floats": [1e300, 1.5e-7, 0.1, 1000000.0, 1e21, -2.5e-300],
        })
    }

    #[test]
    fn yaml_1_1_ambiguous_scalars_are_quoted_and_read_back_alike() {
        let value = tricky();
        let text = yaml_text(&value);
        let back: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
        for line in [
            "k00: \"=\"",
            "\"<<\": 1",
            "k04: \"yes\"",
            "- \"=\"",
            "- 1.0e+300",
            "- 1.5e-7",
        ] {
            assert!(text.lines().any(|l| l.trim() == line), "{line} in:\n{text}");
        }
        // A document holding the placeholder word itself still comes out right.
        let tricky_too = json!({"a": "sproutyamlscalar0z", "b": "yes", "sproutyamlscalar1z": "on"});
        let text = yaml_text(&tricky_too);
        assert_eq!(
            serde_yaml::from_str::<Value>(&text).unwrap(),
            tricky_too,
            "{text}"
        );
        // What needs no quotes stays plain: the output of ordinary objects does not change.
        let plain = json!({"a": "plain", "b": 3, "c": ["x", 0.5]});
        assert_eq!(yaml_text(&plain), serde_yaml::to_string(&plain).unwrap());
    }

    /// The same document read by PyYAML (YAML 1.1), when it is installed (scripts/setup
    /// installs it).
    #[test]
    fn pyyaml_reads_the_output_back_identically() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let has_pyyaml = Command::new("python3")
            .args(["-c", "import yaml"])
            .status()
            .is_ok_and(|s| s.success());
        if !has_pyyaml {
            eprintln!("PyYAML is not installed (python3 -m pip install pyyaml): skipped");
            return;
        }
        let value = tricky();
        let text = yaml_text(&value);
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let back: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(back, value, "{text}");
    }
}
