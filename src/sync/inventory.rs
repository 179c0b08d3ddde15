//! The inventory: which objects an environment has applied, kept in the target cluster as the
//! ConfigMap `sprout-inventory` in the environment's namespace, with the synced commit.
//!
//! It is the only thing prune and teardown trust: an object is deleted only if it is listed here
//! and still carries the environment's label. It grows before objects are applied (a crash
//! mid-apply leaves nothing untracked) and shrinks only after a delete is confirmed.

use super::SyncError;
use super::live::{FIELD_MANAGER, Live};
use crate::fork::ownership::{ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_VALUE};
use crate::object::ObjectRef;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

pub const INVENTORY_NAME: &str = "sprout-inventory";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub reference: ObjectRef,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Hash of the desired state last applied ("" while an apply is under way).
    #[serde(default)]
    pub hash: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub commit: Option<String>,
    pub entries: BTreeMap<ObjectRef, Entry>,
}

impl Inventory {
    /// Reads the inventory; none yet is an empty one. An inventory labelled for another
    /// environment is an error: two environments must never share one.
    pub async fn load(live: &Live, namespace: &str, env: &str) -> Result<Self, SyncError> {
        let api: Api<ConfigMap> = Api::namespaced(live.client.clone(), namespace);
        let found = super::live::retrying(|| api.get_opt(INVENTORY_NAME))
            .await
            .map_err(|e| live.call_error("read the inventory", e))?;
        let Some(config_map) = found else {
            return Ok(Inventory::default());
        };
        let owner = config_map
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ENVIRONMENT_LABEL))
            .cloned()
            .unwrap_or_default();
        if owner != env {
            return Err(SyncError::Inventory {
                message: format!(
                    "ConfigMap {namespace}/{INVENTORY_NAME} belongs to environment `{owner}`, not `{env}`; \
                     two environments cannot share a namespace"
                ),
            });
        }
        let data = config_map.data.unwrap_or_default();
        let entries: Vec<Entry> = match data.get("entries") {
            Some(text) => serde_json::from_str(text).map_err(|e| SyncError::Inventory {
                message: format!("{namespace}/{INVENTORY_NAME} is unreadable ({e}); it must not be edited by hand"),
            })?,
            None => Vec::new(),
        };
        Ok(Inventory {
            commit: data.get("commit").cloned().filter(|c| !c.is_empty()),
            entries: entries
                .into_iter()
                .map(|e| (e.reference.clone(), e))
                .collect(),
        })
    }

    pub async fn save(&self, live: &Live, namespace: &str, env: &str) -> Result<(), SyncError> {
        let api: Api<ConfigMap> = Api::namespaced(live.client.clone(), namespace);
        let entries: Vec<&Entry> = self.entries.values().collect();
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": INVENTORY_NAME,
                "namespace": namespace,
                "labels": {MANAGED_BY: MANAGED_BY_VALUE, ENVIRONMENT_LABEL: env},
            },
            "data": {
                "commit": self.commit.clone().unwrap_or_default(),
                "entries": serde_json::to_string(&entries).expect("entries serialize"),
            },
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&body);
        super::live::retrying(|| api.patch(INVENTORY_NAME, &params, &patch))
            .await
            .map_err(|e| live.call_error("write the inventory", e))?;
        Ok(())
    }

    pub fn hash_of(&self, reference: &ObjectRef) -> Option<&str> {
        self.entries.get(reference).map(|e| e.hash.as_str())
    }
}

/// Deletes the inventory ConfigMap (when its environment is gone); absent is fine.
pub async fn delete(live: &Live, namespace: &str) -> Result<(), SyncError> {
    let api: Api<ConfigMap> = Api::namespaced(live.client.clone(), namespace);
    match api.delete(INVENTORY_NAME, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(live.call_error("delete the inventory", e)),
    }
}
