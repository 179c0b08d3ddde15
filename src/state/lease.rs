//! The environment's lock on a cluster others reach: a `coordination.k8s.io/v1` Lease named
//! `sprout-lock` in the environment's namespace (and, with the cluster state backend, one Lease
//! per environment in the management namespace: [`take`] serves both). Two checkouts (two developers, a laptop and CI)
//! syncing one shared-cluster environment serialize on it, where their local file locks cannot
//! see each other.
//!
//! It is renewed while held and taken over only once it has expired (renew time + duration in
//! the past), so a holder killed with `kill -9` blocks others for at most the lease duration.
//! Every write carries the `resourceVersion` it read: two takers can never both win.

use super::lock::{Holder, Wait};
use crate::error::Error;
use crate::fork::ownership::{ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_VALUE, PROJECT_LABEL};
use crate::sync::SyncError;
use crate::sync::live::{FIELD_MANAGER, Live};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const LEASE_NAME: &str = "sprout-lock";
const HOLDER_ANNOTATION: &str = "sprout.dev/holder";
const DURATION: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// A held Lease; renewed in the background until [`LeaseLock::release`] (or expiry, if the
/// process dies).
pub struct LeaseLock {
    /// The namespace this taker created to hold the Lease (the environment's first sync).
    pub created_namespace: Option<String>,
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The Lease as this holder last wrote it (its resourceVersion included), so that giving
    /// it up is one conditional write rather than a read and a write.
    last: Arc<Mutex<Lease>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeaseLock({}, {})", self.name, self.identity)
    }
}

#[derive(Debug)]
pub enum LeaseError {
    /// Another run holds it (the holder, for the message).
    Held(String),
    /// The namespace cannot hold the lock, or the cluster did not answer.
    Sync(SyncError),
}

impl LeaseError {
    pub fn into_error(self, env: &str) -> Error {
        match self {
            LeaseError::Held(holder) => Error::Busy {
                env: env.to_string(),
                holder: Some(holder),
            },
            LeaseError::Sync(error) => Error::from(error).stage(env, crate::error::Stage::Sync),
        }
    }
}

/// A unique identity per taker: two runs of the same command on one host are still two holders.
fn identity(holder: &Holder) -> String {
    format!(
        "{}/{}/{}",
        holder.host,
        holder.pid,
        holder.since.timestamp_nanos_opt().unwrap_or_default()
    )
}

fn expired(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    if spec.holder_identity.as_deref().unwrap_or("").is_empty() {
        return true;
    }
    let Some(MicroTime(renewed)) = &spec.renew_time else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    renewed.as_second() + duration < now.as_second()
}

/// A holder on this host whose process is gone (killed, crashed) cannot renew: its Lease is
/// free at once instead of after the lease duration. Holders elsewhere are judged by expiry.
fn holder_died_here(lease: &Lease) -> bool {
    let Some(holder) = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOLDER_ANNOTATION))
        .and_then(|text| serde_json::from_str::<Holder>(text).ok())
    else {
        return false;
    };
    if holder.host != super::lock::hostname() {
        return false;
    }
    // Gone, or its pid now runs another program.
    std::fs::read_link(format!("/proc/{}/exe", holder.pid))
        .map(|exe| {
            let exe = exe.to_string_lossy();
            match &holder.exe {
                Some(recorded) => exe != recorded.as_str(),
                None => !exe.contains("sprout"),
            }
        })
        .unwrap_or(true)
}

fn holder_of(lease: &Lease) -> String {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOLDER_ANNOTATION))
        .and_then(|text| serde_json::from_str::<Holder>(text).ok())
        .map(|h| h.to_string())
        .unwrap_or_else(|| {
            lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default()
        })
}

fn held_by(mut lease: Lease, env: &str, holder: &Holder, identity: &str) -> Lease {
    let now = MicroTime(Timestamp::now());
    let transitions = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0);
    lease.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (ENVIRONMENT_LABEL.to_string(), env.to_string()),
    ]));
    lease
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            HOLDER_ANNOTATION.to_string(),
            serde_json::to_string(holder).expect("a holder serializes"),
        );
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(DURATION.as_secs() as i32),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(transitions + 1),
        ..Default::default()
    });
    lease
}

/// What the environment's namespace and its Lease were when last read, so that taking the
/// Lease need not read them again (on a cluster far away every sequential request counts).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub namespace: Option<Namespace>,
    pub lease: Option<Lease>,
}

impl Seen {
    /// Reads the environment's namespace and its Lease, both at once.
    pub async fn read(client: &kube::Client, namespace: &str) -> Result<Seen, kube::Error> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let (found, lease) = futures::future::join(
            crate::sync::live::retrying(|| namespaces.get_opt(namespace)),
            crate::sync::live::retrying(|| leases.get_opt(LEASE_NAME)),
        )
        .await;
        let namespace = found?;
        Ok(Seen {
            // A Lease cannot outlive its namespace; a namespace being deleted may still hold one.
            lease: if namespace.is_some() { lease? } else { None },
            namespace,
        })
    }

    /// Whether another run held the Lease when it was read (taken, not expired, and not by a
    /// process of this host that is gone).
    pub fn held_by_another(&self) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|lease| !expired(lease, Timestamp::now()) && !holder_died_here(lease))
    }
}

/// Takes the Lease in `namespace` for `holder`, waiting as `wait` says. The namespace is
/// created (labelled for `env`, as sync would) when missing; one that belongs to another
/// environment is refused. `seen`: the namespace and the Lease as just read, to start from
/// (a write based on them that turns out stale is refused by the server and read again).
pub async fn acquire(
    live: &Live,
    namespace: &str,
    env: &str,
    project: &str,
    holder: &Holder,
    wait: Wait,
    seen: Option<Seen>,
) -> Result<LeaseLock, LeaseError> {
    let (known_namespace, known_lease) = match seen {
        Some(seen) => (Some(seen.namespace), Some(seen.lease)),
        None => (None, None),
    };
    let created = ensure_namespace(live, namespace, env, project, known_namespace).await?;
    // A namespace made just now holds no Lease yet.
    let known_lease = if created { Some(None) } else { known_lease };
    let api: Api<Lease> = Api::namespaced(live.client.clone(), namespace);
    let mut lock = take_from(api, LEASE_NAME, env, holder, wait, known_lease)
        .await
        .map_err(|e| match e {
            Taken::Held(holder) => LeaseError::Held(holder),
            Taken::Api(e) => LeaseError::Sync(live.call_error("take the environment's lock", e)),
        })?;
    lock.created_namespace = created.then(|| namespace.to_string());
    Ok(lock)
}

/// Why [`take`] did not take a Lease.
#[derive(Debug)]
pub enum Taken {
    /// Another run holds it (the holder, for the message).
    Held(String),
    Api(kube::Error),
}

/// Takes Lease `name` through `api` for `holder` (labelled for `env`), waiting as `wait` says:
/// the environment's lock, wherever its Lease lives (the environment's namespace on a shared
/// cluster, the management namespace with the cluster state backend).
pub async fn take(
    api: Api<Lease>,
    name: &str,
    env: &str,
    holder: &Holder,
    wait: Wait,
) -> Result<LeaseLock, Taken> {
    take_from(api, name, env, holder, wait, None).await
}

/// [`take`], starting from the Lease as the caller just read it (`Some(None)`: there was none)
/// instead of reading it first. Safe with any starting point: every write carries the
/// resourceVersion it is based on (a create, none), so a stale one is refused (409) and the
/// Lease is read again.
async fn take_from(
    api: Api<Lease>,
    name: &str,
    env: &str,
    holder: &Holder,
    wait: Wait,
    mut known: Option<Option<Lease>>,
) -> Result<LeaseLock, Taken> {
    let identity = identity(holder);
    let deadline = match wait {
        Wait::No => Instant::now(),
        Wait::Upto(limit) => Instant::now() + limit,
    };
    loop {
        let current = match known.take() {
            Some(lease) => lease,
            None => api.get_opt(name).await.map_err(Taken::Api)?,
        };
        let taken = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                api.create(
                    &PostParams::default(),
                    &held_by(lease, env, holder, &identity),
                )
                .await
            }
            Some(lease) if expired(&lease, Timestamp::now()) || holder_died_here(&lease) => {
                // The resourceVersion read above rides along: a concurrent taker makes this 409.
                api.replace(
                    name,
                    &PostParams::default(),
                    &held_by(lease, env, holder, &identity),
                )
                .await
            }
            Some(lease) => {
                if Instant::now() >= deadline {
                    return Err(Taken::Held(holder_of(&lease)));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        match taken {
            Ok(lease) => {
                let last = Arc::new(Mutex::new(lease));
                let renewer = tokio::spawn(renew(
                    api.clone(),
                    name.to_string(),
                    identity.clone(),
                    last.clone(),
                ));
                return Ok(LeaseLock {
                    created_namespace: None,
                    api,
                    name: name.to_string(),
                    identity,
                    last,
                    renewer,
                });
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(Taken::Api(e)),
        }
    }
}

/// Whether Lease `name` is held now by a live holder (not expired, not a dead process here).
pub async fn is_held(api: &Api<Lease>, name: &str) -> Result<bool, kube::Error> {
    Ok(api
        .get_opt(name)
        .await?
        .is_some_and(|lease| !expired(&lease, Timestamp::now()) && !holder_died_here(&lease)))
}

/// The namespace that holds the Lease: created (labelled as sync would label it) when missing;
/// one that is not the environment's is refused exactly as sync's preflight refuses it.
/// `known`: the namespace as the caller just read it (`Some(None)`: absent), else it is read.
/// True only when this call created it: a create, not an apply, so that the server's answer
/// says so (another run may make it in between, and a failed first sync deletes the
/// namespace it made, never one another run made).
async fn ensure_namespace(
    live: &Live,
    namespace: &str,
    env: &str,
    project: &str,
    known: Option<Option<Namespace>>,
) -> Result<bool, LeaseError> {
    let api: Api<Namespace> = Api::all(live.client.clone());
    let api_error =
        |e: kube::Error| LeaseError::Sync(live.call_error("take the environment's lock", e));
    let existing = match known {
        Some(known) => known,
        None => api.get_opt(namespace).await.map_err(api_error)?,
    };
    if let Some(existing) = existing {
        return environments_own(&existing, namespace, env, project).map(|()| false);
    }
    let mut labels = serde_json::json!({MANAGED_BY: MANAGED_BY_VALUE, ENVIRONMENT_LABEL: env});
    if !project.is_empty() {
        labels[PROJECT_LABEL] = project.into();
    }
    let wanted: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": namespace, "labels": labels},
    }))
    .expect("a Namespace");
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, &wanted).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            match api.get_opt(namespace).await.map_err(api_error)? {
                Some(existing) => {
                    environments_own(&existing, namespace, env, project).map(|()| false)
                }
                None => Err(api_error(kube::Error::Api(status))),
            }
        }
        Err(e) => Err(api_error(e)),
    }
}

/// Refuses `existing` unless it is labelled for `env` of `project`.
fn environments_own(
    existing: &Namespace,
    namespace: &str,
    env: &str,
    project: &str,
) -> Result<(), LeaseError> {
    let labels = existing.metadata.labels.as_ref();
    let owner = labels.and_then(|l| l.get(ENVIRONMENT_LABEL)).cloned();
    let other_project = labels
        .and_then(|l| l.get(PROJECT_LABEL))
        .filter(|p| !p.is_empty() && !project.is_empty() && p.as_str() != project)
        .cloned();
    if let Some(other) = other_project {
        return Err(LeaseError::Sync(SyncError::NotOurs {
            object: format!("Namespace/{namespace}"),
            owner: format!(
                "labelled for environment `{}` of project `{other}`",
                owner.unwrap_or_default()
            ),
        }));
    }
    match owner.as_deref() {
        Some(owner) if owner == env => Ok(()),
        _ => Err(LeaseError::Sync(SyncError::NotOurs {
            object: format!("Namespace/{namespace}"),
            owner: owner.map_or("no sprout label".to_string(), |o| {
                format!("labelled for environment `{o}`")
            }),
        })),
    }
}

/// Keeps the Lease fresh while the operation runs; stops when someone else holds it.
async fn renew(api: Api<Lease>, name: String, identity: String, last: Arc<Mutex<Lease>>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Ok(Some(mut lease)) = api.get_opt(&name).await else {
            continue;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(identity.as_str()) {
            tracing::warn!("the environment's Lease was taken over; this run no longer holds it");
            return;
        }
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match api.replace(&name, &PostParams::default(), &lease).await {
            Ok(renewed) => *last.lock().expect("never poisoned") = renewed,
            Err(e) => tracing::debug!(error = %e, "renewing the environment's Lease"),
        }
    }
}

/// `lease` given up: no holder, so the next taker need not wait for it to expire.
fn released(mut lease: Lease) -> Lease {
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    lease
}

/// How a holder gives its Lease up.
#[derive(Clone, Copy)]
enum End {
    /// No holder: the next taker need not wait for it to expire.
    Release,
    /// Deleted: the environment is gone, and its lock must not stay behind in a namespace
    /// `down` keeps.
    Remove,
}

impl LeaseLock {
    /// Gives the Lease up at once (others need not wait for it to expire): one write based on
    /// the Lease as this holder last wrote it; only when that is refused as stale (a renewal
    /// that was under way) is it read again, and given up only if still this holder's. Best
    /// effort: if the cluster does not answer, the Lease simply expires.
    pub async fn release(self) {
        self.end(End::Release).await;
    }

    /// Deletes the Lease, as [`LeaseLock::release`] gives it up: for an environment taken down.
    pub async fn remove(self) {
        self.end(End::Remove).await;
    }

    async fn end(self, how: End) {
        self.renewer.abort();
        let last = self.last.lock().expect("never poisoned").clone();
        match self.give_up(last, how).await {
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            _ => return,
        }
        if let Ok(Some(lease)) = self.api.get_opt(&self.name).await
            && lease
                .spec
                .as_ref()
                .is_some_and(|s| s.holder_identity.as_deref() == Some(self.identity.as_str()))
        {
            let _ = self.give_up(lease, how).await;
        }
    }

    /// One write giving up `lease` as read or written last (refused with 409 when stale).
    async fn give_up(&self, lease: Lease, how: End) -> Result<(), kube::Error> {
        match how {
            End::Release => self
                .api
                .replace(&self.name, &PostParams::default(), &released(lease))
                .await
                .map(drop),
            End::Remove => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: lease.metadata.uid,
                        resource_version: lease.metadata.resource_version,
                    }),
                    ..Default::default()
                };
                self.api.delete(&self.name, &params).await.map(drop)
            }
        }
    }
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
