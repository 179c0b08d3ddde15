//! Webhooks that a follower accepts reach the leader through the management cluster. A team's
//! Service spreads deliveries over every replica, and only the leader acts: a follower records
//! the hint in the ConfigMap `sprout-webhook-hints` of the management namespace, every replica
//! watches that ConfigMap, and the one leading runs a pass at once.
//!
//! A hint stays a hint: losing one (the cluster does not answer, a watch reconnects late) only
//! means the leader's next periodic pass sees the change instead.

use super::webhook::{Hint, Provider};
use crate::state::leader::LeaderCheck;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

pub const HINTS_CONFIG_MAP: &str = "sprout-webhook-hints";

/// Passes each hint the webhook routes accepted to this replica's loop while it leads, and to
/// the store (for the leader) while it follows.
pub async fn relay(
    hints: Api<ConfigMap>,
    leader: LeaderCheck,
    identity: String,
    mut accepted: mpsc::Receiver<Hint>,
    to_loop: mpsc::Sender<Hint>,
) {
    while let Some(hint) = accepted.recv().await {
        if leader.is_leader() {
            let _ = to_loop.send(hint).await;
            continue;
        }
        match publish(&hints, &hint, &identity).await {
            Ok(()) => {
                tracing::info!(provider = hint.provider.name(), repository = %hint.repository, number = ?hint.number, "webhook handed to the leader through the store")
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook not handed to the leader; its next pass sees the change")
            }
        }
    }
}

/// Writes `hint` into the hints ConfigMap (made when missing). Every write changes `at`, so
/// each one is an event for the watchers.
async fn publish(hints: &Api<ConfigMap>, hint: &Hint, identity: &str) -> kube::Result<()> {
    let data = BTreeMap::from([
        ("provider".to_string(), hint.provider.name().to_string()),
        ("repository".to_string(), hint.repository.clone()),
        (
            "number".to_string(),
            hint.number.map(|n| n.to_string()).unwrap_or_default(),
        ),
        ("from".to_string(), identity.to_string()),
        (
            "at".to_string(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        ),
    ]);
    let patch = serde_json::json!({ "data": data });
    let patched = hints
        .patch(
            HINTS_CONFIG_MAP,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await;
    match patched {
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        other => return other.map(|_| ()),
    }
    let map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(HINTS_CONFIG_MAP.to_string()),
            labels: Some(BTreeMap::from([(
                crate::fork::ownership::MANAGED_BY.to_string(),
                crate::fork::ownership::MANAGED_BY_VALUE.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    match hints.create(&PostParams::default(), &map).await {
        // Another follower made it in between: write over theirs.
        Err(kube::Error::Api(status)) if status.code == 409 => hints
            .patch(
                HINTS_CONFIG_MAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(|_| ()),
        other => other.map(|_| ()),
    }
}

/// Watches the hints ConfigMap for as long as the process runs; while this replica leads, each
/// hint a follower wrote goes to its loop. Reconnects after any error.
pub async fn watch(hints: Api<ConfigMap>, leader: LeaderCheck, to_loop: mpsc::Sender<Hint>) {
    let only_hints = format!("metadata.name={HINTS_CONFIG_MAP}");
    loop {
        // Watch from now: a hint written before this replica led was for an earlier pass.
        let version = match hints.list(&ListParams::default().fields(&only_hints)).await {
            Ok(list) => list.metadata.resource_version.unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "webhook hints: list failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let params = WatchParams::default().fields(&only_hints).timeout(290);
        let mut events = match hints.watch(&params, &version).await {
            Ok(events) => events.boxed(),
            Err(e) => {
                tracing::debug!(error = %e, "webhook hints: watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        while let Some(event) = events.next().await {
            let map = match event {
                Ok(WatchEvent::Added(map) | WatchEvent::Modified(map)) => map,
                Ok(WatchEvent::Error(e)) => {
                    tracing::debug!(error = %e.message, "webhook hints: watch ended");
                    break;
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "webhook hints: watch broke");
                    break;
                }
            };
            if !leader.is_leader() {
                continue;
            }
            if let Some(hint) = hint_of(&map) {
                tracing::info!(provider = hint.provider.name(), repository = %hint.repository, number = ?hint.number, "webhook handed over by a follower: re-reading");
                let _ = to_loop.send(hint).await;
            }
        }
    }
}

fn hint_of(map: &ConfigMap) -> Option<Hint> {
    let data = map.data.as_ref()?;
    let provider = match data.get("provider")?.as_str() {
        "github" => Provider::GitHub,
        "gitlab" => Provider::GitLab,
        _ => return None,
    };
    Some(Hint {
        provider,
        repository: data.get("repository")?.clone(),
        number: data.get("number").and_then(|n| n.parse().ok()),
    })
}
