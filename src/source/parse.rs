//! Multi-document YAML and JSON into objects: `List` kinds flattened, empty documents skipped,
//! and every error naming the file, the document and the line.

use super::SourceError;
use crate::object::{Object, Origin};
use serde_json::{Map, Value};

/// Parses one file (or a render tool's output, named by `file`).
pub fn parse(file: &str, text: &str) -> Result<Vec<Object>, SourceError> {
    let located = |e: crate::yaml::YamlError| SourceError::Parse {
        file: file.to_string(),
        document: e.document,
        line: e.line,
        message: e.message,
    };
    let documents = if file.ends_with(".json") {
        vec![crate::yaml::json_document(text).map_err(located)?]
    } else {
        crate::yaml::documents(text).map_err(located)?
    };
    let mut objects = Vec::new();
    for (index, value) in documents.into_iter().enumerate() {
        collect(file, index + 1, value, &mut objects)?;
    }
    Ok(objects)
}

/// Parses the bytes of one file, which must be UTF-8.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Vec<Object>, SourceError> {
    let text = crate::yaml::decode(bytes).map_err(|e| SourceError::Parse {
        file: file.to_string(),
        document: e.document,
        line: e.line,
        message: e.message,
    })?;
    parse(file, text)
}

fn collect(
    file: &str,
    document: usize,
    value: Value,
    out: &mut Vec<Object>,
) -> Result<(), SourceError> {
    let origin = Origin {
        file: file.to_string(),
        document,
    };
    let body = match value {
        Value::Null => return Ok(()),
        Value::Object(body) => body,
        other => {
            return Err(not_an_object(
                &origin,
                format!("expected a mapping, found {}", type_name(&other)),
            ));
        }
    };
    if is_tool_config(&body) {
        return Ok(());
    }
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind.ends_with("List") && body.get("items").is_some() {
        let Some(Value::Array(items)) = body.get("items").cloned() else {
            return Err(not_an_object(
                &origin,
                format!("{kind}.items must be a list"),
            ));
        };
        for item in items {
            let Value::Object(item) = item else {
                return Err(not_an_object(
                    &origin,
                    format!("every item of {kind} must be a mapping"),
                ));
            };
            out.push(checked(item, &origin)?);
        }
        return Ok(());
    }
    out.push(checked(body, &origin)?);
    Ok(())
}

/// Files that configure a render tool rather than describe an object (a kustomization.yaml in
/// a folder rendered as plain manifests).
fn is_tool_config(body: &Map<String, Value>) -> bool {
    body.get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("kustomize.config.k8s.io/"))
}

fn checked(body: Map<String, Value>, origin: &Origin) -> Result<Object, SourceError> {
    for (field, path) in [
        ("apiVersion", &["apiVersion"][..]),
        ("kind", &["kind"][..]),
        ("metadata.name", &["metadata", "name"][..]),
    ] {
        let mut node = body.get(path[0]);
        for key in &path[1..] {
            node = node.and_then(|n| n.get(*key));
        }
        if node.and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(not_an_object(
                origin,
                format!("missing {field}: not a Kubernetes object"),
            ));
        }
    }
    Ok(Object::new(body, origin.clone()))
}

fn not_an_object(origin: &Origin, message: String) -> SourceError {
    SourceError::NotAnObject {
        file: origin.file.clone(),
        document: origin.document,
        message,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_lists_and_empty_documents() {
        let text = "---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n\
                    - {apiVersion: v1, kind: Service, metadata: {name: c}}\n";
        let objects = parse("x.yaml", text).unwrap();
        let names: Vec<&str> = objects.iter().map(|o| o.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(objects[1].origin.document, 3);
    }

    #[test]
    fn bad_yaml_names_file_document_and_line() {
        let text =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: [\n";
        let err = parse("deploy/x.yaml", text).unwrap_err();
        let SourceError::Parse {
            file,
            document,
            line,
            ..
        } = err
        else {
            panic!("{err}")
        };
        assert_eq!((file.as_str(), document), ("deploy/x.yaml", 2));
        assert!(line >= 6, "{line}");
    }

    #[test]
    fn json_objects_and_missing_names() {
        let ok = parse(
            "a.json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        let err = parse("b.yaml", "apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }

    #[test]
    fn duplicate_keys_and_invalid_utf8_name_file_and_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nmetadata: {name: b}\n";
        let err = parse("deploy/cm.yaml", text).unwrap_err().to_string();
        assert!(err.starts_with("deploy/cm.yaml:4: document 1:"), "{err}");
        assert!(err.contains("duplicate key `metadata`"), "{err}");
        let json =
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"kind":"Secret"}"#;
        let err = parse("deploy/cm.json", json).unwrap_err().to_string();
        assert!(err.contains("duplicate key `kind`"), "{err}");
        let err = parse_bytes(
            "deploy/x.yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \xc3}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("deploy/x.yaml:3: document 1:"), "{err}");
        assert!(err.contains("UTF-8"), "{err}");
    }
}
