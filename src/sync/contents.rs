//! What deleting a namespace would delete, as far as the server lets it be known: the objects
//! of every namespaced kind that can be listed and deleted, in every group the server serves.
//!
//! The server is asked once for all its groups (`/api` and `/apis`, then the resources of every
//! group version, [`CONCURRENCY`] at a time), and a namespace's objects are listed kind by
//! kind, [`CONCURRENCY`] lists at a time: one list after another would cost a round trip per
//! kind on a cluster far away.
//!
//! A group version that cannot be discovered or listed does not stop a teardown: an aggregated
//! API whose backend is down (an APIService whose Service is missing, common when a metrics
//! adapter is down) answers 503 to every request, and kubectl only warns about it. It is named
//! instead, and the namespace's contents are then incomplete: the caller must not take such a
//! namespace for empty, since deleting it could delete objects sprout did not apply.

use super::SyncError;
use super::catalog::resources_of;
use super::live::{Live, Resolved, api_message, no_answer};
use futures::StreamExt;
use kube::discovery::ApiResource;
use serde_json::Value;
use std::collections::BTreeSet;

/// Requests in flight at once, for discovery and for lists.
const CONCURRENCY: usize = 16;

/// The namespaced kinds whose objects deleting a namespace deletes.
pub(crate) struct Kinds {
    resources: Vec<ApiResource>,
    /// Group versions whose resources could not be discovered, each with the server's answer.
    unknown: Vec<String>,
}

/// A namespace's objects (with `kind` and `apiVersion` set), and what could not be listed: when
/// that is not empty, the namespace may hold more than `objects`.
pub(crate) struct Contents {
    pub(crate) objects: Vec<Value>,
    pub(crate) unlisted: Vec<String>,
}

/// Discovers every group the server serves. Only a server that does not answer at all is an
/// error; a group version that answers with an error is recorded in [`Kinds`].
pub(crate) async fn kinds(live: &Live) -> Result<Kinds, SyncError> {
    let client = &live.client;
    let (core, named) =
        futures::future::join(client.list_core_api_versions(), client.list_api_groups()).await;
    let core = core.map_err(|e| live.call_error("discovery", e))?;
    let named = named.map_err(|e| live.call_error("discovery", e))?;
    let mut versions: Vec<(String, String)> = core
        .versions
        .into_iter()
        .map(|v| (String::new(), v))
        .collect();
    for group in named.groups {
        let preferred = group.preferred_version.map(|p| p.version);
        let mut listed: Vec<String> = group.versions.into_iter().map(|v| v.version).collect();
        listed.sort_by_key(|v| Some(v) != preferred.as_ref());
        versions.extend(listed.into_iter().map(|v| (group.name.clone(), v)));
    }
    let answers: Vec<_> = futures::stream::iter(&versions)
        .map(|(group, version)| resources_of(client, group, version))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut kinds = Kinds {
        resources: Vec::new(),
        unknown: Vec::new(),
    };
    // Each resource once, in the most preferred version of its group that serves it.
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for ((group, version), answer) in versions.iter().zip(answers) {
        let list = match answer {
            Ok(list) => list,
            Err(e) if no_answer(&e).is_some() => return Err(live.call_error("discovery", e)),
            // The group went away meanwhile (its CRD deleted), and its objects with it.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => {
                kinds.unknown.push(format!(
                    "{}: {}",
                    api_version(group, version),
                    api_message(&e)
                ));
                continue;
            }
        };
        for resource in list.resources {
            let deletable = ["list", "delete"]
                .iter()
                .all(|verb| resource.verbs.iter().any(|v| v == verb));
            // Subresources (`pods/log`) are not kinds; kinds that cannot be deleted (metrics
            // computed from pods) are not deleted with the namespace either.
            if !resource.namespaced || resource.name.contains('/') || !deletable {
                continue;
            }
            if seen.insert((group.clone(), resource.name.clone())) {
                kinds.resources.push(ApiResource {
                    group: group.clone(),
                    version: version.clone(),
                    api_version: api_version(group, version),
                    kind: resource.kind,
                    plural: resource.name,
                });
            }
        }
    }
    Ok(kinds)
}

/// The objects in `namespace` of every one of `kinds`. Only a server that does not answer at
/// all is an error; a kind that cannot be listed is recorded in [`Contents::unlisted`].
pub(crate) async fn of(live: &Live, namespace: &str, kinds: &Kinds) -> Result<Contents, SyncError> {
    let lists: Vec<_> = futures::stream::iter(&kinds.resources)
        .map(|resource| async move {
            let resolved = Resolved {
                resource: resource.clone(),
                namespaced: true,
            };
            (resource, live.list_briefly(&resolved, namespace).await)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut contents = Contents {
        objects: Vec::new(),
        unlisted: kinds.unknown.clone(),
    };
    for (resource, list) in lists {
        let items = match list {
            Ok(items) => items,
            Err(e) if no_answer(&e).is_some() => {
                return Err(live.call_error(&format!("list {} in {namespace}", resource.plural), e));
            }
            // The kind went away meanwhile (its CRD deleted), and its objects with it.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => {
                contents.unlisted.push(format!(
                    "{} of {}: {}",
                    resource.plural,
                    resource.api_version,
                    api_message(&e)
                ));
                continue;
            }
        };
        contents.objects.extend(items.into_iter().map(|mut value| {
            value["kind"] = Value::String(resource.kind.clone());
            value["apiVersion"] = Value::String(resource.api_version.clone());
            value
        }));
    }
    contents.unlisted.sort();
    Ok(contents)
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}
