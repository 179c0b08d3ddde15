//! Writing objects out: multi-document YAML or a JSON `List`, byte-identical for equal input
//! (object keys are sorted maps, objects come in apply order).

use crate::object::Object;
use serde_json::{Value, json};

pub fn yaml_documents(objects: &[Object]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&yaml_document(object));
    }
    out
}

pub fn yaml_document(object: &Object) -> String {
    serde_yaml::to_string(&object.body).expect("a JSON map always serializes to YAML")
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
