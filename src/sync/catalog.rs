//! What the server serves (group, version, kind → resource), found by discovery and kept on
//! disk per server, so a sync against a cluster far away does not spend round trips asking
//! again what it asked last time.
//!
//! Discovery asks `/api` and `/apis` together, then the resource lists of every version of the
//! wanted groups together: two round trips, on every server version (kube's `Discovery` asks
//! group after group, and aggregated discovery answers nothing on servers before 1.26).
//!
//! A cached catalog can be stale (a CRD added or deleted since). It is never the reason for a
//! refusal: callers ask again ([`Catalog::fresh`] says whether this one was just asked) before
//! they call a kind unserved or trust a failed read.

use crate::cluster::BriefRetries;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    groups: BTreeMap<String, Group>,
    #[serde(skip)]
    fresh: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Group {
    /// In the server's order of preference.
    versions: Vec<String>,
    resources: Vec<Resource>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Resource {
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
}

impl Catalog {
    /// Asks the server about `groups` ("" is the core group); groups it does not serve are
    /// recorded as such (absent).
    pub async fn discover(
        client: &kube::Client,
        groups: &BTreeSet<String>,
    ) -> Result<Self, kube::Error> {
        let (core, named) =
            futures::future::join(client.list_core_api_versions(), client.list_api_groups()).await;
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if groups.contains("") {
            versions.insert(String::new(), core?.versions);
        }
        for group in named?.groups {
            if groups.contains(&group.name) {
                let mut listed: Vec<String> =
                    group.versions.iter().map(|v| v.version.clone()).collect();
                if let Some(preferred) = &group.preferred_version {
                    listed.sort_by_key(|v| v != &preferred.version);
                }
                versions.insert(group.name, listed);
            }
        }
        let lists = versions.iter().flat_map(|(group, versions)| {
            versions.iter().map(move |version| async move {
                let list = resources_of(client, group, version).await;
                (group.clone(), version.clone(), list)
            })
        });
        let mut catalog = Catalog {
            groups: BTreeMap::new(),
            fresh: true,
        };
        for (group, version, list) in futures::future::join_all(lists).await {
            let entry = catalog.groups.entry(group.clone()).or_default();
            entry.versions = versions[&group].clone();
            entry.resources.extend(
                list?
                    .resources
                    .into_iter()
                    // Subresources (`deployments/scale`) are not kinds of their own.
                    .filter(|r| !r.name.contains('/'))
                    .map(|r| Resource {
                        version: version.clone(),
                        kind: r.kind,
                        plural: r.name,
                        namespaced: r.namespaced,
                    }),
            );
        }
        Ok(catalog)
    }

    /// Whether this catalog was asked of the server in this run (not read from the cache).
    pub fn fresh(&self) -> bool {
        self.fresh
    }

    /// Whether the catalog knows about every one of `groups` (served or not is only known for
    /// groups asked about; a cached catalog records the served ones).
    pub fn covers(&self, groups: &BTreeSet<String>) -> bool {
        groups.iter().all(|g| self.groups.contains_key(g))
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// The resource of `api_version`/`kind`, and whether it is namespaced.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let found = self
            .groups
            .get(group)?
            .resources
            .iter()
            .find(|r| r.version == version && r.kind == kind)?;
        let gvk = GroupVersionKind::gvk(group, version, kind);
        Some((
            ApiResource::from_gvk_with_plural(&gvk, &found.plural),
            found.namespaced,
        ))
    }

    /// The versions of `group` that serve `kind`, preferred first.
    pub fn versions_serving(&self, group: &str, kind: &str) -> Vec<String> {
        let Some(entry) = self.groups.get(group) else {
            return Vec::new();
        };
        entry
            .versions
            .iter()
            .filter(|v| {
                entry
                    .resources
                    .iter()
                    .any(|r| &r.version == *v && r.kind == kind)
            })
            .cloned()
            .collect()
    }

    /// Adds what `other` knows (newer answers win).
    pub fn merge(&mut self, other: Catalog) {
        self.fresh = other.fresh;
        self.groups.extend(other.groups);
    }

    /// The catalog cached for `server`, if any.
    pub fn cached(server: &str) -> Option<Catalog> {
        let text = std::fs::read(cache_file(server)?).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Caches the catalog for `server`; a cache that cannot be written only costs time.
    pub fn save(&self, server: &str) {
        let Some(path) = cache_file(server) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
            let temporary = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(
                &temporary,
                serde_json::to_vec(self).expect("catalogs serialize"),
            )?;
            std::fs::rename(&temporary, &path)
        };
        if let Err(e) = write() {
            tracing::debug!(error = %e, "discovery cache not written");
        }
    }
}

/// The resources the server serves in one version of `group` ("" is the core group). An
/// aggregated API whose backend is down answers this with 503 until it is repaired, so it is
/// asked again only briefly (see [`BriefRetries`]), not for minutes.
pub(super) async fn resources_of(
    client: &kube::Client,
    group: &str,
    version: &str,
) -> Result<APIResourceList, kube::Error> {
    let url = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut request = http::Request::get(url)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    request.extensions_mut().insert(BriefRetries);
    client.request(request).await
}

/// `$SPROUT_CACHE` (else `~/.cache/sprout`)`/discovery/<hash of the server URL>.json`.
fn cache_file(server: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("SPROUT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sprout")))?;
    let digest = Sha256::digest(server.as_bytes());
    let name: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    Some(cache.join("discovery").join(format!("{name}.json")))
}
