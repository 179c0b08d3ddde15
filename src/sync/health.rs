//! Health of applied objects, and the wait for it. Every object that is not healthy is named
//! with the reason, so a timeout says what is stuck and why.

use super::SyncError;
use super::live::Live;
use crate::object::{Object, ObjectRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "camelCase")]
pub enum Health {
    Healthy,
    Progressing(String),
    Failed(String),
    /// Can never become healthy on this cluster (no nodes to run pods): reported, not awaited.
    CannotRun(String),
}

impl Health {
    fn settled(&self) -> bool {
        !matches!(self, Health::Progressing(_))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealthReport {
    pub healthy: usize,
    pub progressing: usize,
    pub failed: usize,
    #[serde(rename = "cannotRun")]
    pub cannot_run: usize,
    /// Every object that is not healthy, with its state and reason.
    pub objects: Vec<ObjectHealth>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectHealth {
    pub object: String,
    #[serde(flatten)]
    pub health: Health,
}

impl HealthReport {
    pub fn from(results: &[(ObjectRef, Health)]) -> Self {
        let mut report = HealthReport::default();
        for (reference, health) in results {
            match health {
                Health::Healthy => report.healthy += 1,
                Health::Progressing(_) => report.progressing += 1,
                Health::Failed(_) => report.failed += 1,
                Health::CannotRun(_) => report.cannot_run += 1,
            }
            if *health != Health::Healthy {
                report.objects.push(ObjectHealth {
                    object: reference.to_string(),
                    health: health.clone(),
                });
            }
        }
        report
    }

    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} healthy", self.healthy)];
        if self.progressing > 0 {
            parts.push(format!("{} progressing", self.progressing));
        }
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        if self.cannot_run > 0 {
            parts.push(format!("{} cannot run", self.cannot_run));
        }
        parts.join(", ")
    }
}

const NO_NODES: &str = "the cluster has no nodes, so its pods cannot be scheduled";

/// The health of one live object.
pub fn assess(kind: &str, live: &Value, has_nodes: bool) -> Health {
    let int = |path: &str| live.pointer(path).and_then(Value::as_i64);
    let generation_seen =
        int("/status/observedGeneration").unwrap_or(0) >= int("/metadata/generation").unwrap_or(0);
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" => {
            let wanted = int("/spec/replicas").unwrap_or(1);
            if wanted == 0 {
                return Health::Healthy;
            }
            if !has_nodes {
                return Health::CannotRun(NO_NODES.into());
            }
            if let Some(reason) =
                condition(live, "Progressing").filter(|c| c.reason == "ProgressDeadlineExceeded")
            {
                return Health::Failed(reason.message);
            }
            let ready_field = if kind == "Deployment" {
                "/status/availableReplicas"
            } else {
                "/status/readyReplicas"
            };
            let ready = int(ready_field).unwrap_or(0);
            let updated = match kind {
                "Deployment" => int("/status/updatedReplicas").unwrap_or(0),
                "StatefulSet" => {
                    let current = live.pointer("/status/currentRevision");
                    let update = live.pointer("/status/updateRevision");
                    if current.is_some() && current != update {
                        0
                    } else {
                        wanted
                    }
                }
                _ => wanted,
            };
            if generation_seen && ready >= wanted && updated >= wanted {
                Health::Healthy
            } else {
                Health::Progressing(format!("{ready} of {wanted} replicas ready"))
            }
        }
        "DaemonSet" => {
            let wanted = int("/status/desiredNumberScheduled").unwrap_or(0);
            let available = int("/status/numberAvailable").unwrap_or(0);
            let updated = int("/status/updatedNumberScheduled").unwrap_or(0);
            if generation_seen && available >= wanted && updated >= wanted {
                Health::Healthy
            } else {
                Health::Progressing(format!("{available} of {wanted} pods available"))
            }
        }
        "Job" => {
            if condition(live, "Complete").is_some_and(|c| c.status == "True") {
                return Health::Healthy;
            }
            if let Some(c) = condition(live, "Failed").filter(|c| c.status == "True") {
                return Health::Failed(format!("{}: {}", c.reason, c.message));
            }
            if !has_nodes {
                return Health::CannotRun(NO_NODES.into());
            }
            Health::Progressing("not complete yet".into())
        }
        "PersistentVolumeClaim" => match live.pointer("/status/phase").and_then(Value::as_str) {
            Some("Bound") => Health::Healthy,
            Some("Lost") => Health::Failed("its volume was lost".into()),
            _ if !has_nodes => {
                Health::CannotRun("no node to bind a volume for; the cluster has no nodes".into())
            }
            _ => Health::Progressing("waiting for a volume".into()),
        },
        "CustomResourceDefinition" => match condition(live, "Established") {
            Some(c) if c.status == "True" => Health::Healthy,
            Some(c) => Health::Progressing(format!("not established: {}", c.message)),
            None => Health::Progressing("not established yet".into()),
        },
        "Namespace" => match live.pointer("/status/phase").and_then(Value::as_str) {
            Some("Terminating") => Health::Failed("the namespace is being deleted".into()),
            _ => Health::Healthy,
        },
        _ => match condition(live, "Ready") {
            Some(c) if c.status == "True" => Health::Healthy,
            Some(c) if c.status == "False" && generation_seen => {
                Health::Failed(format!("{}: {}", c.reason, c.message))
            }
            Some(c) => Health::Progressing(format!("not ready: {}", c.message)),
            None => Health::Healthy,
        },
    }
}

struct Condition {
    status: String,
    reason: String,
    message: String,
}

fn condition(live: &Value, kind: &str) -> Option<Condition> {
    let conditions = live.pointer("/status/conditions")?.as_array()?;
    let found = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))?;
    let text = |key: &str| {
        found
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(Condition {
        status: text("status"),
        reason: text("reason"),
        message: text("message"),
    })
}

/// Polls the objects until every one has settled or `timeout` passes; on timeout the error
/// names each object still progressing and why.
pub async fn wait(
    live: &Live,
    objects: &[&Object],
    has_nodes: bool,
    timeout: Duration,
) -> Result<Vec<(ObjectRef, Health)>, SyncError> {
    let started = Instant::now();
    let mut results: Vec<(ObjectRef, Health)> = objects
        .iter()
        .map(|o| {
            (
                o.object_ref(),
                Health::Progressing("not checked yet".into()),
            )
        })
        .collect();
    loop {
        for (i, object) in objects.iter().enumerate() {
            if results[i].1.settled() {
                continue;
            }
            let resolved = live.resolve(object)?;
            results[i].1 = match live.get(&resolved, &results[i].0).await? {
                Some(value) => assess(object.kind(), &value, has_nodes),
                None => Health::Progressing("not found".into()),
            };
        }
        if results.iter().all(|(_, h)| h.settled()) {
            return Ok(results);
        }
        if started.elapsed() >= timeout {
            let stuck = results
                .iter()
                .filter_map(|(r, h)| match h {
                    Health::Progressing(why) => Some(format!("{r}: {why}")),
                    _ => None,
                })
                .collect();
            return Err(SyncError::HealthTimeout { timeout, stuck });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployments() {
        let ready = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "availableReplicas": 2, "updatedReplicas": 2}});
        assert_eq!(assess("Deployment", &ready, true), Health::Healthy);
        let rolling = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "availableReplicas": 2, "updatedReplicas": 2}});
        assert!(matches!(
            assess("Deployment", &rolling, true),
            Health::Progressing(_)
        ));
        assert!(matches!(
            assess("Deployment", &rolling, false),
            Health::CannotRun(_)
        ));
        let stuck = json!({"spec": {"replicas": 1}, "status": {"conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]}});
        assert_eq!(
            assess("Deployment", &stuck, true),
            Health::Failed("too slow".into())
        );
    }

    #[test]
    fn jobs_crds_and_conditions() {
        let done = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(assess("Job", &done, false), Health::Healthy);
        let crd = json!({"status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(
            assess("CustomResourceDefinition", &crd, false),
            Health::Healthy
        );
        assert_eq!(assess("ConfigMap", &json!({}), false), Health::Healthy);
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "message": "reconciling"}]}});
        assert!(matches!(
            assess("Widget", &not_ready, true),
            Health::Progressing(_)
        ));
    }
}
