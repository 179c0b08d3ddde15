//! A Kubernetes object as sprout carries it through the pipeline: its JSON body plus where it
//! came from, so every later error can name the file and document.

use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

/// Where an object was read from: a file (or a render tool's output) and its document index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    /// 1-based index of the YAML document in `file`.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file, self.document)
    }
}

#[derive(Debug, Clone)]
pub struct Object {
    pub body: Map<String, Value>,
    pub origin: Origin,
}

/// The identity of an object in a cluster: API group, kind, namespace, name.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectRef {
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    /// `Kind/namespace/name`, the way Flux and kubectl users read it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl Object {
    pub fn new(body: Map<String, Value>, origin: Origin) -> Self {
        Object { body, origin }
    }

    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"]).unwrap_or_default()
    }

    /// The API group: "" for the core group (`v1`), else the part before the `/`.
    pub fn group(&self) -> &str {
        match self.api_version().split_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    pub fn kind(&self) -> &str {
        self.str_at(&["kind"]).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"]).unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.str_at(&["metadata", "namespace"]).unwrap_or_default()
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            group: self.group().to_string(),
            kind: self.kind().to_string(),
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }

    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        get(&self.body, path).and_then(Value::as_str)
    }

    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        get(&self.body, path)
    }

    pub fn get_mut(&mut self, path: &[&str]) -> Option<&mut Value> {
        let (first, rest) = path.split_first()?;
        let mut node = self.body.get_mut(*first)?;
        for key in rest {
            node = node.as_object_mut()?.get_mut(*key)?;
        }
        Some(node)
    }

    /// The map at `path`, created (with every parent) when missing.
    pub fn map_mut(&mut self, path: &[&str]) -> &mut Map<String, Value> {
        let mut node = &mut self.body;
        for key in path {
            let entry = node
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = entry.as_object_mut().expect("just made an object");
        }
        node
    }

    pub fn set_namespace(&mut self, namespace: &str) {
        self.map_mut(&["metadata"])
            .insert("namespace".into(), Value::String(namespace.into()));
    }

    /// Drops `metadata.namespace` (a cluster-scoped object's, which the server ignores).
    pub fn clear_namespace(&mut self) {
        self.map_mut(&["metadata"]).remove("namespace");
    }

    pub fn set_name(&mut self, name: &str) {
        self.map_mut(&["metadata"])
            .insert("name".into(), Value::String(name.into()));
    }
}

fn get<'a>(map: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut node = map.get(*first)?;
    for key in rest {
        node = node.as_object()?.get(*key)?;
    }
    Some(node)
}

/// Built-in kinds that live outside namespaces. Custom kinds are looked up in the CRDs of the
/// source (see [`Scopes`]); sync learns the rest from discovery.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "FlowSchema",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PodSecurityPolicy",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// Which kinds are cluster-scoped, from the built-in list and the CRDs among the objects.
#[derive(Debug, Default, Clone)]
pub struct Scopes {
    cluster_scoped_custom: BTreeSet<(String, String)>,
}

impl Scopes {
    pub fn from_objects(objects: &[Object]) -> Self {
        let cluster_scoped_custom = objects
            .iter()
            .filter(|o| o.kind() == "CustomResourceDefinition")
            .filter(|o| o.str_at(&["spec", "scope"]) == Some("Cluster"))
            .filter_map(|o| {
                let group = o.str_at(&["spec", "group"])?;
                let kind = o.str_at(&["spec", "names", "kind"])?;
                Some((group.to_string(), kind.to_string()))
            })
            .collect();
        Scopes {
            cluster_scoped_custom,
        }
    }

    pub fn is_cluster_scoped(&self, object: &Object) -> bool {
        CLUSTER_SCOPED_KINDS.contains(&object.kind())
            || self
                .cluster_scoped_custom
                .contains(&(object.group().to_string(), object.kind().to_string()))
    }
}

/// Apply order (after Flux `ssa/sort.go`): definitions and namespaces first, then what others
/// refer to (accounts, RBAC, config), then services and workloads, webhooks last so they cannot
/// block the objects they would admit. Unknown kinds (custom resources) go between the built-in
/// kinds and the webhooks.
const APPLY_ORDER: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "PriorityClass",
    "StorageClass",
    "RuntimeClass",
    "PodSecurityPolicy",
    "ServiceAccount",
    "ClusterRole",
    "Role",
    "ClusterRoleBinding",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "ExternalSecret",
    "SealedSecret",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Service",
    "IngressClass",
    "DaemonSet",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "Job",
    "CronJob",
    "Pod",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Ingress",
];

const APPLY_LAST: &[&str] = &[
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The stage of a kind in apply order; equal ranks are ordered by kind, namespace, name.
pub fn apply_rank(kind: &str) -> usize {
    if let Some(i) = APPLY_ORDER.iter().position(|k| *k == kind) {
        return i;
    }
    match APPLY_LAST.iter().position(|k| *k == kind) {
        Some(i) => APPLY_ORDER.len() + 1 + i,
        None => APPLY_ORDER.len(),
    }
}

/// The tier of stages 2 and 3 a kind is applied in, each tier finished before the next
/// starts: 0, everything pods refer to (accounts, RBAC, config, secrets, Services — a pod gets
/// the legacy env vars of Services that exist when it starts — and volumes); 1, workloads and
/// everything else; 2, webhooks and API services, which could otherwise block the objects they
/// admit.
pub fn tier_of(kind: &str) -> usize {
    let rank = apply_rank(kind);
    if rank < apply_rank("DaemonSet") {
        0
    } else if rank < apply_rank("APIService") {
        1
    } else {
        2
    }
}

pub fn apply_order(a: &ObjectRef, b: &ObjectRef) -> Ordering {
    apply_rank(&a.kind)
        .cmp(&apply_rank(&b.kind))
        .then_with(|| a.kind.cmp(&b.kind))
        .then_with(|| a.group.cmp(&b.group))
        .then_with(|| a.namespace.cmp(&b.namespace))
        .then_with(|| a.name.cmp(&b.name))
}

pub fn sort_for_apply(objects: &mut [Object]) {
    objects.sort_by_cached_key(|o| {
        let r = o.object_ref();
        (apply_rank(&r.kind), r.kind, r.group, r.namespace, r.name)
    });
}

/// An object from a JSON map, for tests (its origin: document 1 of `t.yaml`).
#[cfg(test)]
pub(crate) fn test_object(value: Value) -> Object {
    let Value::Object(body) = value else {
        panic!("not a map")
    };
    Object::new(
        body,
        Origin {
            file: "t.yaml".into(),
            document: 1,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::object::test_object as object;

    #[test]
    fn sorts_crds_and_namespaces_first_and_webhooks_last() {
        let mut objects = vec![
            object(
                json!({"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration","metadata":{"name":"w"}}),
            ),
            object(
                json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"a","namespace":"x"}}),
            ),
            object(
                json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"b","namespace":"x"}}),
            ),
            object(
                json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","namespace":"x"}}),
            ),
            object(json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}})),
            object(
                json!({"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"}}),
            ),
        ];
        sort_for_apply(&mut objects);
        let order: Vec<String> = objects.iter().map(|o| o.object_ref().to_string()).collect();
        assert_eq!(
            order,
            [
                "CustomResourceDefinition/widgets.example.com",
                "Namespace/x",
                "Deployment/x/a",
                "Deployment/x/b",
                "Widget/x/a",
                "ValidatingWebhookConfiguration/w",
            ]
        );
    }

    #[test]
    fn custom_kinds_take_their_scope_from_crds() {
        let crd = object(
            json!({"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
            "metadata":{"name":"globals.example.com"},
            "spec":{"group":"example.com","scope":"Cluster","names":{"kind":"Global"}}}),
        );
        let global =
            object(json!({"apiVersion":"example.com/v1","kind":"Global","metadata":{"name":"g"}}));
        let widget =
            object(json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"}}));
        let scopes = Scopes::from_objects(std::slice::from_ref(&crd));
        assert!(scopes.is_cluster_scoped(&global));
        assert!(!scopes.is_cluster_scoped(&widget));
        assert!(scopes.is_cluster_scoped(&crd));
    }
}
