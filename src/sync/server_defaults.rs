//! Defaults the server would fill in, filled in before a server-side apply where the 1.20
//! server cannot do it itself.
//!
//! Service ports and container ports are list maps keyed by (port, protocol). Under server-side
//! apply a 1.20 server builds the key before it defaults `protocol`, so an element without one
//! is rejected ("associative list with keys has an element that omits key field protocol").
//! `protocol: TCP` is what the server would default; setting it changes no live object and
//! applies on every server version.
//!
//! Quantities (`cpu: 0.5`, `storage: 1`) are strings in the schema; a 1.20 server refuses a
//! YAML number there under server-side apply ("expected string"), where a client-side apply
//! would have taken it. The number's text is the same quantity.
//!
//! The desired state (and its hash) is left as git wrote it; only the request body changes.

use serde_json::{Map, Value};

/// Where the pod spec sits in each workload kind (group, kind).
fn pod_spec_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    Some(match (group, kind) {
        ("", "Pod") => &["spec"],
        ("", "PodTemplate") => &["template", "spec"],
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => &["spec", "template", "spec"],
        ("batch", "CronJob") => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    })
}

/// `body` as it is sent: ports of Services and containers carry a protocol.
pub fn completed(group: &str, kind: &str, body: &Map<String, Value>) -> Map<String, Value> {
    let mut body = body.clone();
    match (group, kind) {
        ("", "Service") => default_protocols(at_mut(&mut body, &["spec", "ports"])),
        ("", "PersistentVolumeClaim") => requirements_as_text(at_mut(&mut body, &["spec"])),
        ("", "ResourceQuota") => quantities_as_text(at_mut(&mut body, &["spec", "hard"])),
        ("", "LimitRange") => {
            if let Some(Value::Array(limits)) = at_mut(&mut body, &["spec", "limits"]) {
                for limit in limits {
                    for field in [
                        "max",
                        "min",
                        "default",
                        "defaultRequest",
                        "maxLimitRequestRatio",
                    ] {
                        quantities_as_text(limit.get_mut(field));
                    }
                }
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(Value::Array(claims)) = at_mut(&mut body, &["spec", "volumeClaimTemplates"])
            {
                for claim in claims {
                    requirements_as_text(claim.get_mut("spec"));
                }
            }
        }
        _ => {}
    }
    if let Some(path) = pod_spec_path(group, kind)
        && let Some(Value::Object(pod)) = at_mut(&mut body, path)
    {
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(Value::Array(containers)) = pod.get_mut(list) {
                for container in containers {
                    default_protocols(container.get_mut("ports"));
                    requirements_as_text(Some(container));
                }
            }
        }
        if let Some(Value::Array(volumes)) = pod.get_mut("volumes") {
            for volume in volumes {
                if let Some(Value::Object(empty_dir)) = volume.get_mut("emptyDir")
                    && let Some(limit) = empty_dir.get_mut("sizeLimit")
                    && let Value::Number(n) = limit
                {
                    *limit = Value::String(n.to_string());
                }
            }
        }
    }
    body
}

/// `resources.requests` and `resources.limits` of a container or claim spec, as text.
fn requirements_as_text(holder: Option<&mut Value>) {
    let Some(Value::Object(resources)) = holder.and_then(|h| h.get_mut("resources")) else {
        return;
    };
    for field in ["requests", "limits"] {
        quantities_as_text(resources.get_mut(field));
    }
}

fn quantities_as_text(quantities: Option<&mut Value>) {
    let Some(Value::Object(quantities)) = quantities else {
        return;
    };
    for value in quantities.values_mut() {
        if let Value::Number(n) = value {
            *value = Value::String(n.to_string());
        }
    }
}

fn at_mut<'v>(body: &'v mut Map<String, Value>, path: &[&str]) -> Option<&'v mut Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(body.get_mut(*first)?, |value, key| value.get_mut(*key))
}

fn default_protocols(ports: Option<&mut Value>) {
    let Some(Value::Array(ports)) = ports else {
        return;
    };
    for port in ports {
        if let Value::Object(port) = port
            && !port.contains_key("protocol")
        {
            port.insert("protocol".into(), Value::String("TCP".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn service_ports_get_tcp_unless_they_name_a_protocol() {
        let body = map(json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}}));
        let sent = completed("", "Service", &body);
        assert_eq!(
            sent["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
        );
        assert_eq!(
            completed("example.com", "Service", &body),
            body,
            "only the core Service"
        );
    }

    #[test]
    fn container_ports_of_every_workload_get_tcp() {
        let pod = json!({"containers": [{"name": "a", "ports": [{"containerPort": 8080}]}],
                         "initContainers": [{"name": "b", "ports": [{"containerPort": 9090, "protocol": "SCTP"}]}]});
        let deployment = map(json!({"spec": {"template": {"spec": pod.clone()}}}));
        let sent = completed("apps", "Deployment", &deployment);
        let spec = &sent["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["initContainers"][0]["ports"][0]["protocol"], "SCTP");
        let cron =
            map(json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod.clone()}}}}}));
        let sent = completed("batch", "CronJob", &cron);
        assert_eq!(
            sent["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
        let bare = map(json!({"spec": pod}));
        assert_eq!(
            completed("", "Pod", &bare)["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
        let empty = map(json!({"spec": {}}));
        assert_eq!(completed("apps", "Deployment", &empty), empty);
    }

    #[test]
    fn numeric_quantities_are_sent_as_text() {
        let deployment = map(json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": 0.5, "memory": "64Mi"}, "limits": {"cpu": 2}}}],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": 1000}}]}}}}));
        let sent = completed("apps", "Deployment", &deployment);
        let spec = &sent["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"][0]["resources"],
            json!({"requests": {"cpu": "0.5", "memory": "64Mi"}, "limits": {"cpu": "2"}})
        );
        assert_eq!(spec["volumes"][0]["emptyDir"]["sizeLimit"], "1000");
        let claims = map(json!({"spec": {"volumeClaimTemplates": [
            {"spec": {"resources": {"requests": {"storage": 1}}}}]}}));
        assert_eq!(
            completed("apps", "StatefulSet", &claims)["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]
                ["requests"]["storage"],
            "1"
        );
        let quota = map(json!({"spec": {"hard": {"pods": 10}}}));
        assert_eq!(
            completed("", "ResourceQuota", &quota)["spec"]["hard"]["pods"],
            "10"
        );
    }
}
