//! The live state of the desired objects, read with one LIST per resource and namespace rather
//! than one GET per object: a no-op sync of a thousand objects costs a handful of requests.

use super::SyncError;
use super::live::Live;
use crate::object::{Object, ObjectRef};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Default)]
pub struct Snapshot {
    objects: HashMap<ObjectRef, Value>,
}

/// Which LIST: (apiVersion, kind, namespace; "" for cluster-scoped kinds).
pub type ListKey = (String, String, String);

/// LISTs made before the desired state was known, by what the inventory recorded (the same
/// kinds and namespaces as the desired state's, unless git changed them): a sync started while
/// the source is read uses those that match, and lists the rest itself.
#[derive(Default)]
pub struct Listed {
    lists: HashMap<ListKey, Vec<Value>>,
    /// Namespaces found absent: nothing in them is listed, and their Namespace objects are
    /// not there.
    absent: BTreeSet<String>,
    /// Namespaces this run's Lease made a moment ago, labelled for the environment and nothing
    /// more: their Namespace objects count as not there yet, to be applied as desired rather
    /// than compared. What is in them is listed as anywhere else: Kubernetes and the cluster's
    /// policy controllers fill a new namespace at once (its `default` ServiceAccount, its CA
    /// ConfigMap, quotas, policies), and none of that may be taken for sprout's.
    made_now: BTreeSet<String>,
}

impl Listed {
    /// The LISTs of `keys`, all at once. Kinds the catalog cannot resolve and LISTs that fail
    /// are left out: the sync lists those itself, and reports what fails then.
    pub async fn ahead(live: &Live, keys: &BTreeSet<ListKey>) -> Listed {
        let requests = keys.iter().map(|key| async move {
            let resolved = live.resolve_kind(&key.0, &key.1)?;
            let namespace = if resolved.namespaced { &key.2 } else { "" };
            let items = live.list(&resolved, namespace).await.ok()?;
            Some((key.clone(), items))
        });
        Listed {
            lists: futures::future::join_all(requests)
                .await
                .into_iter()
                .flatten()
                .collect(),
            absent: BTreeSet::new(),
            made_now: BTreeSet::new(),
        }
    }

    pub fn merge(&mut self, other: Listed) {
        self.lists.extend(other.lists);
        self.absent.extend(other.absent);
        self.made_now.extend(other.made_now);
    }

    /// Nothing listed, `namespace` absent (see [`Listed::absent`]).
    pub fn of_absent_namespace(namespace: &str) -> Listed {
        let mut listed = Listed::default();
        listed.mark_absent(namespace);
        listed
    }

    /// `namespace` is absent (see [`Listed::absent`]).
    pub fn mark_absent(&mut self, namespace: &str) {
        self.lists
            .retain(|(_, _, listed_in), _| listed_in != namespace);
        self.absent.insert(namespace.to_string());
    }

    /// Nothing listed, `namespace` made by this run's Lease (see [`Listed::made_now`]).
    pub fn of_namespace_made_now(namespace: &str) -> Listed {
        let mut listed = Listed::default();
        listed.made_now.insert(namespace.to_string());
        listed
    }

    /// The LISTs that read what `inventory` records.
    pub fn keys_of_inventory(
        live: &Live,
        inventory: &super::inventory::Inventory,
    ) -> BTreeSet<ListKey> {
        inventory
            .entries
            .iter()
            .filter_map(|(reference, entry)| {
                key_of(
                    live,
                    &entry.api_version,
                    &reference.kind,
                    &reference.namespace,
                )
            })
            .collect()
    }

    /// The LISTs that read `objects`.
    pub fn keys_of(live: &Live, objects: &[Object]) -> BTreeSet<ListKey> {
        objects
            .iter()
            .filter_map(|o| key_of(live, o.api_version(), o.kind(), o.namespace()))
            .collect()
    }
}

fn key_of(live: &Live, api_version: &str, kind: &str, namespace: &str) -> Option<ListKey> {
    let resolved = live.resolve_kind(api_version, kind)?;
    let namespace = if resolved.namespaced { namespace } else { "" };
    Some((
        api_version.to_string(),
        kind.to_string(),
        namespace.to_string(),
    ))
}

impl Snapshot {
    /// The live state of `objects` (their kinds must resolve), from `listed` where it has the
    /// LIST, else listed now.
    pub async fn take(
        live: &Live,
        objects: &[&Object],
        listed: Option<Listed>,
    ) -> Result<Self, SyncError> {
        let mut snapshot = Snapshot::default();
        snapshot
            .extend_from(live, objects, listed.unwrap_or_default())
            .await?;
        Ok(snapshot)
    }

    /// Adds the live state of `objects` (their kinds must resolve).
    pub async fn extend(&mut self, live: &Live, objects: &[&Object]) -> Result<(), SyncError> {
        self.extend_from(live, objects, Listed::default()).await
    }

    async fn extend_from(
        &mut self,
        live: &Live,
        objects: &[&Object],
        mut listed: Listed,
    ) -> Result<(), SyncError> {
        let mut lists: BTreeMap<(String, String, String), BTreeSet<ObjectRef>> = BTreeMap::new();
        for object in objects {
            let resolved = live.resolve(object)?;
            let namespace = if resolved.namespaced {
                object.namespace()
            } else {
                ""
            };
            lists
                .entry((
                    object.api_version().to_string(),
                    object.kind().to_string(),
                    namespace.to_string(),
                ))
                .or_default()
                .insert(object.object_ref());
        }
        let absent = std::mem::take(&mut listed.absent);
        let made_now = std::mem::take(&mut listed.made_now);
        // Namespace objects that count as not there.
        let not_there = |name: &str| absent.contains(name) || made_now.contains(name);
        let known_empty = |(api_version, kind, namespace): &ListKey,
                           wanted: &BTreeSet<ObjectRef>| {
            absent.contains(namespace)
                || (api_version == "v1"
                    && kind == "Namespace"
                    && wanted.iter().all(|r| not_there(&r.name)))
        };
        let requests = lists.into_iter().map(|(key, wanted)| {
            let ahead = listed.lists.remove(&key);
            let known_empty = known_empty(&key, &wanted);
            async move {
                let (api_version, kind, namespace) = key;
                let items = match ahead {
                    _ if known_empty => Vec::new(),
                    Some(items) => items,
                    None => {
                        let resolved = live
                            .resolve_kind(&api_version, &kind)
                            .expect("resolved above");
                        live.list(&resolved, &namespace).await?
                    }
                };
                Ok::<_, SyncError>((api_version, kind, wanted, items))
            }
        });
        for result in futures::future::join_all(requests).await {
            let (api_version, kind, wanted, items) = result?;
            for mut item in items {
                // Items of a list carry no apiVersion and kind; the list they came from does.
                if let Some(map) = item.as_object_mut() {
                    map.insert("apiVersion".into(), Value::String(api_version.clone()));
                    map.insert("kind".into(), Value::String(kind.clone()));
                }
                let reference = reference_of(&item);
                let not_there = reference.kind == "Namespace"
                    && reference.group.is_empty()
                    && not_there(&reference.name);
                if wanted.contains(&reference) && !not_there {
                    self.objects.insert(reference, item);
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, reference: &ObjectRef) -> Option<&Value> {
        self.objects.get(reference)
    }

    pub fn contains(&self, reference: &ObjectRef) -> bool {
        self.objects.contains_key(reference)
    }

    pub fn insert(&mut self, reference: ObjectRef, value: Value) {
        self.objects.insert(reference, value);
    }
}

/// The identity of a live object.
pub fn reference_of(value: &Value) -> ObjectRef {
    let text = |path: &str| {
        value
            .pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let api_version = text("/apiVersion");
    ObjectRef {
        group: api_version
            .split_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default(),
        kind: text("/kind"),
        namespace: text("/metadata/namespace"),
        name: text("/metadata/name"),
    }
}
