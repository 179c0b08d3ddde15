//! Transforms of workloads and their pod templates: replicas, resources, images, env.

use super::ForkError;
use super::quantity::{self, Ratio};
use crate::object::Object;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Resources that are scaled. Extended resources (GPUs, hugepages) are whole devices or pages
/// and stay as they are: a quarter of a GPU is not a request the scheduler accepts.
const SCALED_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// The pod spec inside a workload, wherever its kind keeps it.
pub fn pod_spec_mut(object: &mut Object) -> Option<&mut Map<String, Value>> {
    let path: &[&str] = match object.kind() {
        "Pod" => &["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    };
    object.get_mut(path)?.as_object_mut()
}

/// Every container and init container of a pod spec.
pub fn containers_mut(
    pod: &mut Map<String, Value>,
) -> impl Iterator<Item = &mut Map<String, Value>> {
    pod.iter_mut()
        .filter(|(key, _)| matches!(key.as_str(), "containers" | "initContainers"))
        .filter_map(|(_, list)| list.as_array_mut())
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `spec.replicas` capped at `max`, and HPA bounds with it. Any object whose `spec.replicas` is
/// a whole number is capped, built in or custom: it is the scale subresource's shape, which
/// operators' custom resources (a Prometheus, a Kafka cluster, an Argo Rollout) share with
/// Deployments, and a preview with production's 12 replicas of a database is the waste the cap
/// is there to stop.
pub fn cap_replicas(object: &mut Object, max: u32) {
    let fields: &[&str] = match object.kind() {
        "HorizontalPodAutoscaler" => &["minReplicas", "maxReplicas"],
        _ => &["replicas"],
    };
    let Some(spec) = object.get_mut(&["spec"]).and_then(Value::as_object_mut) else {
        return;
    };
    for field in fields {
        if let Some(n) = spec.get(*field).and_then(Value::as_u64)
            && n > u64::from(max)
        {
            spec.insert(field.to_string(), json!(max));
        }
    }
}

pub fn scale_resources(object: &mut Object, factor: Ratio) -> Result<(), ForkError> {
    let reference = object.object_ref().to_string();
    let origin = object.origin.to_string();
    let Some(pod) = pod_spec_mut(object) else {
        return Ok(());
    };
    for container in containers_mut(pod) {
        let container_name = container
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let Some(resources) = container
            .get_mut("resources")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for section in ["requests", "limits"] {
            let Some(values) = resources.get_mut(section).and_then(Value::as_object_mut) else {
                continue;
            };
            for (resource, value) in values.iter_mut() {
                if !SCALED_RESOURCES.contains(&resource.as_str()) {
                    continue;
                }
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                let scaled =
                    quantity::scale(&text, factor).map_err(|message| ForkError::Object {
                        object: reference.clone(),
                        origin: origin.clone(),
                        message: format!(
                            "container {container_name}: resources.{section}.{resource}: {message}"
                        ),
                    })?;
                *value = Value::String(scaled);
            }
        }
    }
    Ok(())
}

/// `repo` of an image reference: without `@digest` and without a `:tag` after the last `/`.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

/// Replaces images whose container name or image repository is a key of `images` (already
/// rendered). A container-name match wins over a repository match. Returns the keys used.
pub fn replace_images<'k>(
    object: &mut Object,
    images: &'k BTreeMap<String, String>,
) -> Vec<&'k str> {
    let mut used = Vec::new();
    let Some(pod) = pod_spec_mut(object) else {
        return used;
    };
    for container in containers_mut(pod) {
        let name = container
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let image = container
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let replacement = images
            .get_key_value(name)
            .or_else(|| images.get_key_value(image_repository(image)));
        if let Some((key, new_image)) = replacement {
            used.push(key.as_str());
            container.insert("image".into(), Value::String(new_image.clone()));
        }
    }
    used
}

/// Sets `env` on every container and init container: an existing variable of the same name is
/// replaced in place (keeping its position), new ones are appended in name order.
pub fn set_env(object: &mut Object, env: &BTreeMap<String, String>) {
    let Some(pod) = pod_spec_mut(object) else {
        return;
    };
    for container in containers_mut(pod) {
        let list = container
            .entry("env")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        for (name, value) in env {
            let entry = json!({"name": name, "value": value});
            match list
                .iter_mut()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            {
                Some(existing) => *existing = entry,
                None => list.push(entry),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::object::test_object as object;

    #[test]
    fn replicas_are_capped_on_any_object_with_a_whole_spec_replicas() {
        let capped = |value: Value| {
            let mut object = object(value);
            cap_replicas(&mut object, 1);
            object.body["spec"].clone()
        };
        for (api_version, kind) in [
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("monitoring.coreos.com/v1", "Prometheus"),
            ("argoproj.io/v1alpha1", "Rollout"),
            ("kafka.strimzi.io/v1beta2", "KafkaConnect"),
        ] {
            let spec = capped(json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"name": "x"}, "spec": {"replicas": 5, "image": "a"}}));
            assert_eq!(spec, json!({"replicas": 1, "image": "a"}), "{kind}");
        }
        let hpa = capped(
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "x"}, "spec": {"minReplicas": 2, "maxReplicas": 10}}),
        );
        assert_eq!(hpa, json!({"minReplicas": 1, "maxReplicas": 1}));
        // What is not a whole number of replicas is not a scale: left as it is.
        for spec in [
            json!({"replicas": "3"}),
            json!({"replicas": {"count": 3}}),
            json!({"replicas": 0}),
            json!({"replicas": 1}),
            json!({"size": 3}),
        ] {
            let out = capped(json!({"apiVersion": "example.com/v1", "kind": "Thing",
                "metadata": {"name": "x"}, "spec": spec.clone()}));
            assert_eq!(out, spec);
        }
    }

    #[test]
    fn image_repositories() {
        assert_eq!(
            image_repository("gcr.io/a/frontend:v1"),
            "gcr.io/a/frontend"
        );
        assert_eq!(image_repository("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(
            image_repository("localhost:5000/app:1@sha256:abc"),
            "localhost:5000/app"
        );
        assert_eq!(image_repository("redis"), "redis");
    }
}
