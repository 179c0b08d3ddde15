//! `overlay.secrets: copy`: named Secrets read at sync time from an allow-listed namespace and
//! added to the environment's desired state as its own objects: in its namespace, with its
//! ownership labels, recorded in its inventory and pruned like the rest once dropped from the
//! list. A changed source is picked up by the next sync.
//!
//! Only names and where a copy came from are ever shown; the values go from one API server to
//! the other and nowhere else (the inventory's hash leaves them out, `diff` masks them).

use super::SyncError;
use super::live::{Live, Resolved};
use crate::fork::ownership::mark_owned;
use crate::object::{Object, ObjectRef, Origin};
use crate::spec::SecretCopy;
use kube::core::ApiResource;
use serde_json::{Map, Value, json};

/// Names the Secret a copy was made from (`namespace/name`), for whoever finds it live.
pub const COPIED_FROM: &str = "sprout.dev/copied-from";

/// Reads every Secret `copy` names from `source` and returns the copies for `env`, landing in
/// `namespace`. Any Secret missing or not copyable fails the whole read: a partial set of
/// credentials is worse than none.
pub async fn read(
    source: &Live,
    copy: &SecretCopy,
    env: &str,
    project: &str,
    namespace: &str,
) -> Result<Vec<Object>, SyncError> {
    let secrets = Resolved {
        resource: ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        namespaced: true,
    };
    let mut copies = Vec::new();
    let mut failures = Vec::new();
    for name in &copy.names {
        let reference = ObjectRef {
            group: String::new(),
            kind: "Secret".into(),
            namespace: copy.from.clone(),
            name: name.clone(),
        };
        match source.get(&secrets, &reference).await? {
            Some(live) => match copy_of(&live, &reference, env, project, namespace) {
                Ok(object) => copies.push(object),
                Err(e) => failures.push(e),
            },
            None => failures.push(SyncError::Object {
                object: reference.to_string(),
                message: format!(
                    "not found in the secret source {} (overlay.secrets.copy); create it there or remove `{name}` from names",
                    copy.from
                ),
            }),
        }
    }
    match failures.len() {
        0 => Ok(copies),
        1 => Err(failures.remove(0)),
        _ => Err(SyncError::Several { errors: failures }),
    }
}

/// The environment's copy of `live`: its type and data only. The source's labels, annotations
/// and owners describe the source, not the copy.
fn copy_of(
    live: &Value,
    source: &ObjectRef,
    env: &str,
    project: &str,
    namespace: &str,
) -> Result<Object, SyncError> {
    let kind = live.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    if kind == "kubernetes.io/service-account-token" {
        // The token controller owns these: a copy would be rejected or emptied in the target.
        return Err(SyncError::Object {
            object: source.to_string(),
            message: "a service-account-token Secret cannot be copied; the target cluster issues its own tokens".into(),
        });
    }
    let mut body = Map::new();
    body.insert("apiVersion".into(), json!("v1"));
    body.insert("kind".into(), json!("Secret"));
    body.insert(
        "metadata".into(),
        json!({
            "name": source.name,
            "namespace": namespace,
            "annotations": {COPIED_FROM: format!("{}/{}", source.namespace, source.name)},
        }),
    );
    body.insert("type".into(), json!(kind));
    if let Some(data) = live.get("data") {
        body.insert("data".into(), data.clone());
    }
    let mut object = Object::new(
        body,
        Origin {
            file: format!("secret source {}", source.namespace),
            document: 1,
        },
    );
    mark_owned(&mut object, env, project);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ObjectRef {
        ObjectRef {
            group: String::new(),
            kind: "Secret".into(),
            namespace: "dev-secrets".into(),
            name: "db".into(),
        }
    }

    #[test]
    fn a_copy_keeps_type_and_data_and_nothing_of_the_source_metadata() {
        let live = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": "db", "namespace": "dev-secrets", "uid": "u-1",
                "resourceVersion": "7", "labels": {"team": "payments"},
                "annotations": {"owner": "vault-sync"},
                "ownerReferences": [{"kind": "ExternalSecret", "name": "db"}]},
            "data": {"username": "YWxpY2U=", "password": "czNjcjN0"},
        });
        let copy = copy_of(&live, &source(), "pr-42", "", "pr-42").unwrap();
        assert_eq!(
            Value::Object(copy.body),
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                "metadata": {"name": "db", "namespace": "pr-42",
                    "annotations": {COPIED_FROM: "dev-secrets/db"},
                    "labels": {"app.kubernetes.io/managed-by": "sprout",
                        "sprout.dev/environment": "pr-42"}},
                "data": {"username": "YWxpY2U=", "password": "czNjcjN0"},
            })
        );
    }

    #[test]
    fn a_service_account_token_is_refused_without_showing_its_value() {
        let live =
            json!({"type": "kubernetes.io/service-account-token", "data": {"token": "c2VjcmV0"}});
        let error = copy_of(&live, &source(), "pr-42", "", "pr-42")
            .unwrap_err()
            .to_string();
        assert!(error.contains("Secret/dev-secrets/db"), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
    }
}
