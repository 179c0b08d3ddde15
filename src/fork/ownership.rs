//! Ownership labels on every object, and the server-written fields a source copied from a live
//! cluster may carry (status, uid, resourceVersion...), which must never be applied.

use crate::object::Object;
use serde_json::Value;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "sprout";
pub const ENVIRONMENT_LABEL: &str = "sprout.dev/environment";
/// The project that created an object: two projects sharing a cluster never sweep each other.
pub const PROJECT_LABEL: &str = "sprout.dev/project";

const SERVER_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

pub fn mark_owned(object: &mut Object, environment: &str, project: &str) {
    mark(object, Some(environment), project);
}

/// Like [`mark_owned`] without the environment label, for what every environment of a shared
/// cluster shares (its CRDs): such an object is no one environment's, never in an inventory,
/// so no label may claim it for the one that happened to apply it first.
pub fn mark_shared(object: &mut Object, project: &str) {
    mark(object, None, project);
}

fn mark(object: &mut Object, environment: Option<&str>, project: &str) {
    object.body.remove("status");
    let metadata = object.map_mut(&["metadata"]);
    for field in SERVER_FIELDS {
        metadata.remove(*field);
    }
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    let labels = object.map_mut(&["metadata", "labels"]);
    labels.insert(MANAGED_BY.into(), Value::String(MANAGED_BY_VALUE.into()));
    match environment {
        Some(environment) => {
            labels.insert(ENVIRONMENT_LABEL.into(), Value::String(environment.into()));
        }
        None => {
            labels.remove(ENVIRONMENT_LABEL);
        }
    }
    if !project.is_empty() {
        labels.insert(PROJECT_LABEL.into(), Value::String(project.into()));
    }
}
