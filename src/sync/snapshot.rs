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

impl Snapshot {
    pub async fn take(live: &Live, objects: &[&Object]) -> Result<Self, SyncError> {
        let mut snapshot = Snapshot::default();
        snapshot.extend(live, objects).await?;
        Ok(snapshot)
    }

    /// Adds the live state of `objects` (their kinds must resolve).
    pub async fn extend(&mut self, live: &Live, objects: &[&Object]) -> Result<(), SyncError> {
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
        let requests =
            lists
                .into_iter()
                .map(|((api_version, kind, namespace), wanted)| async move {
                    let resolved = live
                        .resolve_kind(&api_version, &kind)
                        .expect("resolved above");
                    let items = live.list(&resolved, &namespace).await?;
                    Ok::<_, SyncError>((api_version, kind, wanted, items))
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
                if wanted.contains(&reference) {
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
