//! The inventory: which objects an environment has applied, kept in the target cluster as the
//! ConfigMap `sprout-inventory` in the environment's namespace, with the synced commit, and as
//! many shards `sprout-inventory-<n>` as its entries need (a ConfigMap holds at most 1 MiB:
//! one alone would stop an environment at a few thousand objects). Every part carries the label
//! `sprout.dev/inventory: <env>`; reading takes the union of the parts found, so a crash between
//! writing two parts loses no entry (at worst a stale shard keeps entries a later sync prunes).
//!
//! It is the only thing prune and teardown trust: an object is deleted only if it is listed here
//! and still carries the environment's label. It grows before objects are applied (a crash
//! mid-apply leaves nothing untracked) and shrinks only after a delete is confirmed.

use super::Owner;
use super::SyncError;
use super::live::{FIELD_MANAGER, Live};
use crate::fork::ownership::{ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_VALUE, PROJECT_LABEL};
use crate::object::ObjectRef;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

pub const INVENTORY_NAME: &str = "sprout-inventory";
/// On every part of an inventory: the environment it belongs to.
const PART_LABEL: &str = "sprout.dev/inventory";
/// The most bytes of entries one part holds: well under the 1 MiB a ConfigMap may hold.
const SHARD_BYTES: usize = 640 * 1024;
/// Overrides [`SHARD_BYTES`] (at least 4 KiB): lets a test see several shards without
/// thousands of objects.
const SHARD_BYTES_VARIABLE: &str = "SPROUT_INVENTORY_SHARD_BYTES";

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
    /// environment or another project is an error naming it: it is never taken over.
    pub async fn load(live: &Live, namespace: &str, owner: Owner<'_>) -> Result<Self, SyncError> {
        let api: Api<ConfigMap> = Api::namespaced(live.client.clone(), namespace);
        let params = ListParams::default().labels(&format!("{PART_LABEL}={}", owner.env));
        // Head and shards at once: one round trip.
        let (found, parts) = futures::future::join(
            super::live::retrying(|| api.get_opt(INVENTORY_NAME)),
            super::live::retrying(|| api.list(&params)),
        )
        .await;
        let found = found.map_err(|e| live.call_error("read the inventory", e))?;
        let Some(config_map) = found else {
            return Ok(Inventory::default());
        };
        check_owner(&config_map, namespace, owner)?;
        let parts = parts.map_err(|e| live.call_error("read the inventory's shards", e))?;
        let mut inventory = Inventory {
            commit: config_map
                .data
                .as_ref()
                .and_then(|d| d.get("commit"))
                .cloned()
                .filter(|c| !c.is_empty()),
            entries: BTreeMap::new(),
        };
        let shards = parts
            .items
            .into_iter()
            .filter(|p| p.metadata.name.as_deref().is_some_and(is_shard_name));
        for part in std::iter::once(config_map).chain(shards) {
            check_owner(&part, namespace, owner)?;
            let name = part.metadata.name.clone().unwrap_or_default();
            let Some(text) = part.data.as_ref().and_then(|d| d.get("entries")) else {
                continue;
            };
            let entries: Vec<Entry> =
                serde_json::from_str(text).map_err(|e| SyncError::Inventory {
                    message: format!(
                        "{namespace}/{name} is unreadable ({e}); it must not be edited by hand"
                    ),
                })?;
            inventory
                .entries
                .extend(entries.into_iter().map(|e| (e.reference.clone(), e)));
        }
        Ok(inventory)
    }

    /// Writes the inventory: its shards first, then the head (with the commit), then removes
    /// shards no longer needed. Which shards exist is read while the parts are written (only
    /// parts this write does not touch can be surplus; the environment's lock keeps others out).
    pub async fn save(
        &self,
        live: &Live,
        namespace: &str,
        owner: Owner<'_>,
    ) -> Result<(), SyncError> {
        let api: Api<ConfigMap> = Api::namespaced(live.client.clone(), namespace);
        let shards = shard(self.entries.values(), shard_bytes());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut labels = json!({MANAGED_BY: MANAGED_BY_VALUE, ENVIRONMENT_LABEL: owner.env, PART_LABEL: owner.env});
        if !owner.project.is_empty() {
            labels[PROJECT_LABEL] = json!(owner.project);
        }
        let write = async {
            for (index, entries) in shards.iter().enumerate().rev() {
                let name = part_name(index);
                let mut data = json!({"entries": entries});
                if index == 0 {
                    data["commit"] = json!(self.commit.clone().unwrap_or_default());
                }
                let body = json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "data": data,
                });
                let patch = Patch::Apply(&body);
                super::live::retrying(|| api.patch(&name, &params, &patch))
                    .await
                    .map_err(|e| live.call_error("write the inventory", e))?;
            }
            Ok::<_, SyncError>(())
        };
        let list = ListParams::default().labels(&format!("{PART_LABEL}={}", owner.env));
        let existing = async {
            super::live::retrying(|| api.list_metadata(&list))
                .await
                .map_err(|e| live.call_error("read the inventory's shards", e))
        };
        let (written, parts) = futures::future::join(write, existing).await;
        written?;
        for part in parts?.items {
            let name = part.metadata.name.unwrap_or_default();
            if is_shard_name(&name) && shard_index(&name).is_some_and(|i| i >= shards.len()) {
                delete_part(live, &api, &name).await?;
            }
        }
        Ok(())
    }

    /// Entries an older sprout recorded for cluster-scoped objects under the namespace their
    /// manifest gave (which the server ignores), keyed as their objects are: without it. Kept
    /// as recorded, such an entry would look undesired once the fork drops that namespace, and
    /// prune would delete the very object just applied.
    pub fn key_cluster_scoped_without_namespace(&mut self, live: &Live) {
        let misfiled: Vec<ObjectRef> = self
            .entries
            .iter()
            .filter(|(reference, entry)| {
                !reference.namespace.is_empty()
                    && live
                        .resolve_kind(&entry.api_version, &reference.kind)
                        .is_some_and(|resolved| !resolved.namespaced)
            })
            .map(|(reference, _)| reference.clone())
            .collect();
        for reference in misfiled {
            if let Some(mut entry) = self.entries.remove(&reference) {
                entry.reference.namespace.clear();
                self.entries.entry(entry.reference.clone()).or_insert(entry);
            }
        }
    }

    pub fn hash_of(&self, reference: &ObjectRef) -> Option<&str> {
        self.entries.get(reference).map(|e| e.hash.as_str())
    }
}

/// Whether an inventory exists in `namespace` (whoever it belongs to).
pub async fn exists(live: &Live, namespace: &str) -> Result<bool, SyncError> {
    let api: Api<ConfigMap> = Api::namespaced(live.client.clone(), namespace);
    super::live::retrying(|| api.get_opt(INVENTORY_NAME))
        .await
        .map(|found| found.is_some())
        .map_err(|e| live.call_error("read the inventory", e))
}

fn check_owner(part: &ConfigMap, namespace: &str, owner: Owner<'_>) -> Result<(), SyncError> {
    let labels = part.metadata.labels.clone().unwrap_or_default();
    let name = part.metadata.name.as_deref().unwrap_or(INVENTORY_NAME);
    let env = labels.get(ENVIRONMENT_LABEL).cloned().unwrap_or_default();
    if env != owner.env {
        return Err(SyncError::Inventory {
            message: format!(
                "ConfigMap {namespace}/{name} belongs to environment `{env}`, not `{}`; \
                 two environments cannot share a namespace",
                owner.env
            ),
        });
    }
    match labels.get(PROJECT_LABEL) {
        Some(project)
            if !project.is_empty() && !owner.project.is_empty() && project != owner.project =>
        {
            Err(SyncError::Inventory {
                message: format!(
                    "ConfigMap {namespace}/{name} belongs to environment `{env}` of project `{project}`, not of this project (`{}`); \
                     sprout never takes over, prunes or deletes another project's objects: give this environment another namespace",
                    owner.project
                ),
            })
        }
        _ => Ok(()),
    }
}

fn shard_bytes() -> usize {
    std::env::var(SHARD_BYTES_VARIABLE)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(SHARD_BYTES, |n| n.max(4096))
}

/// The entries as JSON arrays of at most `limit` bytes each (at least one, maybe empty), in
/// order: part 0 is the head.
fn shard<'e>(entries: impl Iterator<Item = &'e Entry>, limit: usize) -> Vec<String> {
    let mut shards = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 2;
    for entry in entries {
        let text = serde_json::to_string(entry).expect("entries serialize");
        if !current.is_empty() && size + text.len() + 1 > limit {
            shards.push(format!("[{}]", current.join(",")));
            current.clear();
            size = 2;
        }
        size += text.len() + 1;
        current.push(text);
    }
    shards.push(format!("[{}]", current.join(",")));
    shards
}

fn part_name(index: usize) -> String {
    match index {
        0 => INVENTORY_NAME.to_string(),
        n => format!("{INVENTORY_NAME}-{n}"),
    }
}

fn shard_index(name: &str) -> Option<usize> {
    name.strip_prefix(INVENTORY_NAME)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn is_shard_name(name: &str) -> bool {
    shard_index(name).is_some_and(|i| i > 0)
}

async fn delete_part(live: &Live, api: &Api<ConfigMap>, name: &str) -> Result<(), SyncError> {
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(live.call_error("delete the inventory", e)),
    }
}

/// Deletes the inventory, every part of it (when its environment is gone); absent is fine.
pub async fn delete(live: &Live, namespace: &str, owner: Owner<'_>) -> Result<(), SyncError> {
    let api: Api<ConfigMap> = Api::namespaced(live.client.clone(), namespace);
    let list = ListParams::default().labels(&format!("{PART_LABEL}={}", owner.env));
    let parts = super::live::retrying(|| api.list(&list))
        .await
        .map_err(|e| live.call_error("read the inventory's shards", e))?;
    for part in parts.items {
        let name = part.metadata.name.unwrap_or_default();
        if is_shard_name(&name) {
            delete_part(live, &api, &name).await?;
        }
    }
    delete_part(live, &api, INVENTORY_NAME).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            reference: ObjectRef {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: "pr-1".into(),
                name: format!("config-{i:05}"),
            },
            api_version: "v1".into(),
            hash: format!("{i:064x}"),
        }
    }

    #[test]
    fn twenty_thousand_entries_fit_in_shards_under_the_limit_and_read_back_whole() {
        let entries: Vec<Entry> = (0..20_000).map(entry).collect();
        let shards = shard(entries.iter(), SHARD_BYTES);
        assert!(shards.len() > 1, "{}", shards.len());
        assert!(shards.iter().all(|s| s.len() <= SHARD_BYTES));
        let back: Vec<Entry> = shards
            .iter()
            .flat_map(|s| serde_json::from_str::<Vec<Entry>>(s).unwrap())
            .collect();
        assert_eq!(back, entries);
    }

    #[test]
    fn an_empty_inventory_is_one_empty_part() {
        assert_eq!(shard(std::iter::empty(), 4096), vec!["[]".to_string()]);
    }

    #[test]
    fn part_names() {
        assert_eq!(part_name(0), "sprout-inventory");
        assert_eq!(part_name(3), "sprout-inventory-3");
        assert!(is_shard_name("sprout-inventory-3"));
        assert!(!is_shard_name("sprout-inventory"));
        assert!(!is_shard_name("sprout-inventory-x"));
    }
}
