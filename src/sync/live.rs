//! The live cluster as sync sees it: discovery, and get/list/apply/delete of dynamic objects by
//! reference, with errors that name the object.
//!
//! Retries: kube's client already retries 429, 503 and 504 with backoff and honours
//! `Retry-After`; on top of that, calls here retry what may pass by itself — a 502, a 500 that
//! gives no reason or says the server timed out, a connection reset or refused — a few times
//! with exponential backoff and jitter, so one blip does not fail a sync of a thousand objects.
//! A definite answer (a 4xx, a 500 with a reason) is final: asking again gets the same answer.
//! Neither is a request that got no answer in time: the server is treated as unreachable at once
//! (connect and TLS within 5 s, each read within 25 s, see `cluster::connect`).
//!
//! "Unreachable" means the server did not answer at all (refused, timed out, TLS failed); any
//! answer, however bad, is reported as the error of the object or call it belongs to.

use super::SyncError;
use super::catalog::Catalog;
use super::compare::is_secret;
use super::messages::{MESSAGE_LIMIT, bounded, without_secret_values};
use crate::cluster::BriefRetries;
use crate::object::{Object, ObjectRef};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::discovery::ApiResource;
use serde_json::Value;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

pub const FIELD_MANAGER: &str = "sprout";

pub struct Live {
    pub client: kube::Client,
    pub server: String,
    catalog: Catalog,
    /// The connection `client` goes through, to make clients that act as another identity.
    connection: Option<crate::cluster::Connection>,
    /// Writes to namespaced objects go through this client when set: the environment's own
    /// identity on a shared cluster, so the API server confines them (see `sync::tenant`).
    tenant: Option<kube::Client>,
    /// Whether the server's schema known to this process was confirmed current through this
    /// connection (see `schema::current_schemas`): a command that checks twice, before and
    /// again under its lock, asks once.
    pub(super) schema_confirmed: std::sync::atomic::AtomicBool,
}

/// How an object is addressed: its API resource and whether it is namespaced.
#[derive(Clone)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl Live {
    pub fn new(client: kube::Client, server: String) -> Self {
        let catalog = Catalog::cached(&server).unwrap_or_default();
        Live {
            client,
            server,
            catalog,
            connection: None,
            tenant: None,
            schema_confirmed: Default::default(),
        }
    }

    /// Keeps the client's connection, so that [`Live::act_as_tenant`] can be used.
    pub fn with_connection(mut self, connection: crate::cluster::Connection) -> Self {
        self.connection = Some(connection);
        self
    }

    /// From now on, writes to namespaced objects are sent as `user` (impersonated). Without a
    /// kept connection (a client made by hand) there is no identity to switch to: an error,
    /// never a silent write with sprout's own rights.
    pub fn act_as_tenant(&mut self, user: &str) -> Result<(), SyncError> {
        let Some(connection) = &self.connection else {
            return Err(SyncError::Api {
                what: format!("act as {user}"),
                message: "the client was made without its connection".into(),
            });
        };
        let client = connection.impersonating(user).map_err(|e| SyncError::Api {
            what: format!("act as {user}"),
            message: e.to_string(),
        })?;
        self.tenant = Some(client);
        Ok(())
    }

    /// The API for writes: as the tenant for namespaced objects when one is set.
    fn write_api(&self, resolved: &Resolved, namespace: &str) -> Api<DynamicObject> {
        match (&self.tenant, resolved.namespaced) {
            (Some(tenant), true) => {
                Api::namespaced_with(tenant.clone(), namespace, &resolved.resource)
            }
            _ => self.api(resolved, namespace),
        }
    }

    /// Makes sure the catalog knows the API groups the objects use: from the cache of this
    /// server when it knows them all, else asked of the server (see `catalog.rs`).
    pub async fn discover(&mut self, groups: &BTreeSet<String>) -> Result<(), SyncError> {
        if self.catalog.covers(groups) {
            return Ok(());
        }
        self.rediscover(groups).await
    }

    /// Asks the server about `groups` whatever the cache says: after CRDs were applied, and
    /// before a kind is called unserved or a failed read is trusted.
    pub async fn rediscover(&mut self, groups: &BTreeSet<String>) -> Result<(), SyncError> {
        let found = Catalog::discover(&self.client, groups)
            .await
            .map_err(|e| self.call_error("discovery", e))?;
        self.catalog.merge(found);
        self.catalog.save(&self.server);
        Ok(())
    }

    /// Whether the catalog was asked of the server in this run.
    pub fn discovered_now(&self) -> bool {
        self.catalog.fresh()
    }

    pub fn resolve_kind(&self, api_version: &str, kind: &str) -> Option<Resolved> {
        let (resource, namespaced) = self.catalog.resolve(api_version, kind)?;
        Some(Resolved {
            resource,
            namespaced,
        })
    }

    pub fn resolve(&self, object: &Object) -> Result<Resolved, SyncError> {
        self.resolve_kind(object.api_version(), object.kind())
            .ok_or_else(|| SyncError::UnknownKind {
                object: object.object_ref().to_string(),
                api_version: object.api_version().to_string(),
                hint: self.unserved_hint(object.api_version(), object.kind()),
            })
    }

    /// What to do about a kind the server does not serve: the versions it does serve of the
    /// group, or, for a group it does not serve at all, its CRD (built-in groups have none).
    pub fn unserved_hint(&self, api_version: &str, kind: &str) -> String {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let served: Vec<String> = self
            .catalog
            .versions_serving(group, kind)
            .into_iter()
            .map(|v| {
                if group.is_empty() {
                    v
                } else {
                    format!("{group}/{v}")
                }
            })
            .collect();
        let group_served = self.catalog.has_group(group);
        if !served.is_empty() {
            format!(
                "the server serves {kind} as {}; change apiVersion",
                served.join(", ")
            )
        } else if group_served {
            format!("the server serves group {group} but no kind {kind} in it; check the kind")
        } else if is_built_in_group(group) {
            format!(
                "group {group} is built into Kubernetes but this server does not serve it (too old or too new for it); use an API version the server serves"
            )
        } else {
            "apply its CustomResourceDefinition first or drop the kind".into()
        }
    }

    fn api(&self, resolved: &Resolved, namespace: &str) -> Api<DynamicObject> {
        if resolved.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &resolved.resource)
        } else {
            Api::all_with(self.client.clone(), &resolved.resource)
        }
    }

    pub async fn get(
        &self,
        resolved: &Resolved,
        reference: &ObjectRef,
    ) -> Result<Option<Value>, SyncError> {
        let api = self.api(resolved, &reference.namespace);
        let found = retrying(|| api.get_opt(&reference.name))
            .await
            .map_err(|e| self.object_error(reference, "read", e))?;
        Ok(found.map(|o| serde_json::to_value(o).expect("objects serialize")))
    }

    /// Every object of one resource in one namespace ("" = cluster-wide), as JSON: read
    /// straight into JSON values (a thousand Deployments are megabytes; typed objects turned
    /// back into JSON would parse them twice).
    pub async fn list(
        &self,
        resolved: &Resolved,
        namespace: &str,
    ) -> Result<Vec<Value>, SyncError> {
        self.list_as_answered(resolved, namespace, false)
            .await
            .map_err(|e| {
                self.call_error(
                    &format!(
                        "list {} in {}",
                        resolved.resource.plural,
                        display_ns(namespace)
                    ),
                    e,
                )
            })
    }

    /// [`Live::list`] with the server's own error, asked again only briefly on a 503 (see
    /// [`BriefRetries`]): for kinds of an API that may be down until someone repairs it.
    pub(super) async fn list_briefly(
        &self,
        resolved: &Resolved,
        namespace: &str,
    ) -> Result<Vec<Value>, kube::Error> {
        self.list_as_answered(resolved, namespace, true).await
    }

    async fn list_as_answered(
        &self,
        resolved: &Resolved,
        namespace: &str,
        brief: bool,
    ) -> Result<Vec<Value>, kube::Error> {
        #[derive(serde::Deserialize)]
        struct Items {
            #[serde(default)]
            items: Option<Vec<Value>>,
        }
        let api = self.api(resolved, namespace);
        let request = kube::core::Request::new(api.resource_url());
        let params = ListParams::default();
        let list = retrying(|| async {
            let mut call = request.list(&params).map_err(kube::Error::BuildRequest)?;
            call.extensions_mut().insert("list");
            if brief {
                call.extensions_mut().insert(BriefRetries);
            }
            self.client.request::<Items>(call).await
        })
        .await?;
        Ok(list.items.unwrap_or_default())
    }

    /// Server-side apply with field manager `sprout`. `force` takes fields over from other
    /// managers, which sprout only does on objects its inventory already holds.
    pub async fn apply(
        &self,
        resolved: &Resolved,
        object: &Object,
        force: bool,
        dry_run: bool,
    ) -> Result<Value, SyncError> {
        // Dry runs (comparisons, preflight) read with sprout's identity; the environment's
        // identity may not exist yet.
        let api = if dry_run {
            self.api(resolved, object.namespace())
        } else {
            self.write_api(resolved, object.namespace())
        };
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = force;
        params.dry_run = dry_run;
        let body = Value::Object(super::server_defaults::completed(
            object.group(),
            object.kind(),
            &object.body,
        ));
        let patch = Patch::Apply(&body);
        let applied = retrying(|| api.patch(object.name(), &params, &patch))
            .await
            .map_err(|e| self.apply_error(object, e))?;
        Ok(serde_json::to_value(applied).expect("objects serialize"))
    }

    /// Deletes exactly the object with `uid` (a precondition: a re-created namesake survives).
    /// Returns false when it was already gone.
    pub async fn delete(
        &self,
        resolved: &Resolved,
        reference: &ObjectRef,
        uid: &str,
    ) -> Result<bool, SyncError> {
        let api = self.write_api(resolved, &reference.namespace);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match retrying(|| api.delete(&reference.name, &params)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(e) => Err(self.object_error(reference, "delete", e)),
        }
    }

    pub async fn count_nodes(&self) -> Result<usize, SyncError> {
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let params = ListParams::default();
        let nodes = retrying(|| api.list_metadata(&params))
            .await
            .map_err(|e| self.call_error("list nodes", e))?;
        Ok(nodes.items.len())
    }

    pub fn call_error(&self, what: &str, error: kube::Error) -> SyncError {
        if let Some(reason) = no_answer(&error) {
            return SyncError::Unreachable {
                server: self.server.clone(),
                message: reason,
            };
        }
        SyncError::Api {
            what: what.to_string(),
            message: api_message(&error),
        }
    }

    fn object_error(&self, reference: &ObjectRef, verb: &str, error: kube::Error) -> SyncError {
        if no_answer(&error).is_some() {
            return self.call_error(verb, error);
        }
        SyncError::Object {
            object: reference.to_string(),
            message: format!("{verb}: {}", api_message(&error)),
        }
    }

    fn apply_error(&self, object: &Object, error: kube::Error) -> SyncError {
        let secret = is_secret(object.kind(), object.group());
        let clean = |text: &str| {
            let text = if secret {
                without_secret_values(text, &object.body)
            } else {
                text.to_string()
            };
            bounded(&text, MESSAGE_LIMIT)
        };
        if let kube::Error::Api(status) = &error {
            let causes = status.details.iter().flat_map(|d| d.causes.iter());
            if status.code == 409 {
                let fields: Vec<String> = causes
                    .clone()
                    .map(|c| format!("{} ({})", c.field, clean(&c.message)))
                    .collect();
                let managers: BTreeSet<String> = causes
                    .filter_map(|c| manager_in(&c.message))
                    .chain(manager_in(&status.message))
                    .collect();
                return SyncError::Conflict {
                    object: object.object_ref().to_string(),
                    managers: managers.into_iter().collect(),
                    fields: super::messages::capped(&fields),
                };
            }
            if status.code == 422 && is_immutable(&status.message) {
                // The message quotes the whole old and new value (kilobytes); the fields say it.
                let mut fields: Vec<String> = causes
                    .filter(|c| is_immutable(&c.message))
                    .map(|c| c.field.clone())
                    .filter(|f| !f.is_empty())
                    .collect();
                fields.dedup();
                if fields.is_empty() {
                    fields.push("spec".into());
                }
                return SyncError::Immutable {
                    object: object.object_ref().to_string(),
                    fields: super::messages::capped(&fields).join(", "),
                    remedy: super::replace::REMEDY.into(),
                };
            }
            // The typed conversion refused a field this server does not know, or a value of
            // another type (names fields only, never values).
            let unknown = super::schema::fields_refused(&status.message);
            if status.code == 500 && !unknown.is_empty() {
                return SyncError::UnknownFields {
                    object: object.object_ref().to_string(),
                    fields: unknown,
                };
            }
            if secret {
                return SyncError::Object {
                    object: object.object_ref().to_string(),
                    message: format!("apply: {} ({})", clean(&status.message), status.code),
                };
            }
        }
        self.object_error(&object.object_ref(), "apply", error)
    }
}

/// Whether a 422 says a field cannot change after creation, in the words of the 1.20 server and
/// later ones: Jobs' templates and selectors ("field is immutable"), a PersistentVolume's source
/// ("is immutable after creation"), a StatefulSet's spec and a StorageClass's parameters
/// ("updates to ... are forbidden"), a Service's clusterIP ("may not change once set"), a
/// binding's roleRef ("cannot change roleRef").
fn is_immutable(message: &str) -> bool {
    message.contains("field is immutable")
        || message.contains("is immutable after creation")
        || (message.contains("updates to ") && message.contains(" are forbidden"))
        || message.contains("may not change once set")
        || message.contains("cannot change roleRef")
}

/// Groups Kubernetes itself serves (or once served); no CRD can define a kind in them.
pub(super) fn is_built_in_group(group: &str) -> bool {
    !group.contains('.')
        || matches!(
            group.strip_suffix(".k8s.io"),
            Some(
                "admissionregistration"
                    | "apiextensions"
                    | "apiregistration"
                    | "authentication"
                    | "authorization"
                    | "certificates"
                    | "coordination"
                    | "discovery"
                    | "events"
                    | "flowcontrol.apiserver"
                    | "internal.apiserver"
                    | "networking"
                    | "node"
                    | "rbac"
                    | "resource"
                    | "scheduling"
                    | "storage"
                    | "storagemigration"
                    | "metrics"
            )
        )
}

fn display_ns(namespace: &str) -> &str {
    if namespace.is_empty() {
        "the cluster"
    } else {
        namespace
    }
}

/// `conflict with "kubectl-edit" using v1` → `kubectl-edit`.
fn manager_in(message: &str) -> Option<String> {
    let start = message.find("conflict with \"")? + "conflict with \"".len();
    let len = message[start..].find('"')?;
    Some(message[start..start + len].to_string())
}

pub(super) fn api_message(error: &kube::Error) -> String {
    let text = match error {
        kube::Error::Api(status) if status.message.is_empty() => {
            format!("{} ({})", status.reason, status.code)
        }
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        // Connected, then the connection broke before an answer: the server (or a proxy) gave
        // up on this very request; a 1.20 API server does so when it panics on an object.
        transport @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => format!(
            "the server closed the connection without answering ({transport}); it may have failed on this object: see the API server's log, or drop the kind"
        ),
        other => other.to_string(),
    };
    bounded(&text, MESSAGE_LIMIT)
}

/// Why a request got no answer from the server at all (refused, timed out, TLS failed), or None
/// when it did get one.
pub(super) fn no_answer(error: &kube::Error) -> Option<String> {
    if !matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_)) {
        return None;
    }
    let mut chain: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::TimedOut => {
                    return Some(
                        "no answer in time (it accepts connections but does not respond)".into(),
                    );
                }
                std::io::ErrorKind::ConnectionRefused => return Some("connection refused".into()),
                _ => {}
            }
        }
        chain.push(e.to_string());
        source = e.source();
    }
    let text = chain.join(": ").to_lowercase();
    // hyper says "client error (Connect)" when no connection came about; a connection that
    // broke mid-answer ("connection closed before message completed") did get an answer.
    [
        "client error (connect)",
        "tcp connect",
        "tls",
        "certificate",
        "handshake",
        "dns error",
        "failed to lookup",
        "timed out",
        "deadline",
    ]
    .iter()
    .any(|word| text.contains(word))
    .then(|| bounded(chain.last().map_or("", String::as_str), MESSAGE_LIMIT))
}

/// Whether asking again may get another answer: a 502, a 500 without a reason or one that says
/// the server timed out, a connection reset or refused. Not a request that timed out: a server
/// that did not answer once is not given four more chances to keep a command waiting.
fn is_retryable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => match status.code {
            502 => true,
            500 => {
                let message = status.message.to_lowercase();
                message.is_empty()
                    || [
                        "timed out",
                        "deadline exceeded",
                        "try again",
                        "leader changed",
                    ]
                    .iter()
                    .any(|w| message.contains(w))
            }
            _ => false,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            no_answer(error).is_none_or(|why| why == "connection refused")
        }
        _ => false,
    }
}

/// Whether the server closed the connection after taking the request, without an answer.
fn closed_without_answer(error: &kube::Error) -> bool {
    matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_))
        && no_answer(error).is_none()
}

/// Retries `call` while [`is_retryable`]: 4 attempts, 200 ms doubling, with jitter. A connection
/// closed without an answer twice in a row is not asked a third time: a network that drops a
/// connection now and then does not drop two in a row, a server that fails on this very request
/// (a 1.20 server panics on an APIService's apply) does every time.
pub async fn retrying<T, F, Fut>(mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    let mut closed_before = false;
    for attempt in 1.. {
        match call().await {
            Err(e) if closed_before && closed_without_answer(&e) => return Err(e),
            Err(e) if attempt < 4 && is_retryable(&e) => {
                closed_before = closed_without_answer(&e);
                // Jitter spreads the retries of many concurrent requests apart.
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let jitter = Duration::from_nanos(u64::from(clock.subsec_nanos()) % 100_000_000);
                tracing::debug!(error = %e, attempt, "retrying");
                tokio::time::sleep(delay + jitter).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    #[test]
    fn managers_are_read_from_conflict_messages() {
        assert_eq!(
            super::manager_in("conflict with \"kubectl-edit\" using v1: .data.x").as_deref(),
            Some("kubectl-edit")
        );
        assert_eq!(super::manager_in("something else"), None);
    }
}
