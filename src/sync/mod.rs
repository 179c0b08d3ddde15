//! Stage 4, sync: converge a cluster to an environment's desired state, safely.
//!
//! The order is fixed (after Flux `ssa/manager_apply.go`):
//! 1. read the inventory, discover the API groups involved;
//! 2. preflight, before any write: every kind is served (or defined by a CRD being applied),
//!    and no existing object that belongs to someone else would be taken over;
//! 3. apply CRDs and Namespaces, record the grown inventory, wait until CRDs are established;
//! 4. apply the rest in three tiers (what pods refer to; workloads and the rest; webhooks),
//!    `concurrency` requests in flight, skipping every object that is unchanged (no request);
//!    an object whose change touches a field that cannot change (a Job's template) is deleted
//!    and created again when it allows that (see [`replace`]);
//! 5. prune inventory entries no longer desired, in reverse order (see `prune.rs`);
//! 6. record the inventory, then wait for health.
//!
//! A sync with nothing to change sends no write request. Before it starts, the desired state is
//! completed with the Secrets an environment copies (see [`secret_copies`]).

mod catalog;
pub mod compare;
pub mod diff;
pub mod health;
pub mod inventory;
pub mod live;
mod messages;
mod prune;
mod replace;
pub mod secret_copies;
mod server_defaults;
mod snapshot;

use crate::fork::ownership::ENVIRONMENT_LABEL;
use crate::object::{Object, ObjectRef, apply_rank};
use futures::StreamExt;
use health::{Health, HealthReport};
use inventory::{Entry, Inventory};
use live::Live;
use serde::Serialize;
use serde_json::Value;
use snapshot::Snapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "cluster {server} is unreachable: {message}; check that it is running and the kubeconfig points at it"
    )]
    Unreachable { server: String, message: String },
    #[error("{what}: {message}")]
    Api { what: String, message: String },
    #[error("{object}: {message}")]
    Object { object: String, message: String },
    #[error("{object}: kind not served by the cluster ({api_version}); {hint}")]
    UnknownKind {
        object: String,
        api_version: String,
        hint: String,
    },
    #[error("{} kind(s) not served by the cluster:\n  {}", kinds.len(), messages::capped(kinds).join("\n  "))]
    Unserved { kinds: Vec<String> },
    #[error("{object}: {fields} cannot change once created; {remedy}")]
    Immutable {
        object: String,
        fields: String,
        remedy: String,
    },
    #[error(
        "{object}: {size} serialized, more than the {limit} the API server stores per object (etcd's request limit); split it or move the data out (a volume, an image)"
    )]
    TooLarge {
        object: String,
        size: String,
        limit: String,
    },
    #[error("{object}: conflict with field manager {} over {}; sprout does not force changes to objects outside its inventory (remove the other manager's fields or the object)", managers.join(", "), fields.join("; "))]
    Conflict {
        object: String,
        managers: Vec<String>,
        fields: Vec<String>,
    },
    #[error(
        "{object} already exists and does not belong to this environment ({owner}); sprout will not take it over"
    )]
    NotOurs { object: String, owner: String },
    #[error("inventory: {message}")]
    Inventory { message: String },
    #[error("{} objects failed:\n  {}", errors.len(), messages::capped(&errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()).join("\n  "))]
    Several { errors: Vec<SyncError> },
    #[error("not healthy after {}s:\n  {}", timeout.as_secs(), messages::capped(stuck).join("\n  "))]
    HealthTimeout {
        timeout: Duration,
        stuck: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub concurrency: usize,
    pub wait: bool,
    pub timeout: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: 24,
            wait: true,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What one sync did (Flux's ChangeSet).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangeSet {
    pub created: Vec<String>,
    pub configured: Vec<String>,
    /// Deleted and created again: a field that cannot change had changed (see `replace.rs`).
    pub recreated: Vec<String>,
    pub unchanged: usize,
    pub pruned: Vec<String>,
    /// Stale objects left in place, with the reason (an opt-out annotation, a changed label).
    pub kept: Vec<String>,
    /// Shared CRDs already present on a shared cluster, left as they are.
    pub shared: Vec<String>,
    /// Deletes accepted but not yet finished (finalizers); still in the inventory.
    pub deleting: Vec<String>,
    /// Write requests sent (applies, deletes, inventory writes).
    pub writes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub commit: String,
    pub changes: ChangeSet,
    pub health: Option<HealthReport>,
}

/// One environment's sync: its name, the namespace holding its inventory, and what it wants.
pub struct SyncPlan<'a> {
    pub env: &'a str,
    pub inventory_namespace: &'a str,
    pub commit: &'a str,
    pub objects: &'a [Object],
    /// On a shared cluster CRDs are shared: applied only when absent, never pruned.
    pub shared_cluster: bool,
}

impl<'a> SyncPlan<'a> {
    pub fn new(
        env: &'a crate::spec::Environment,
        desired: &'a crate::desired::DesiredState,
    ) -> Self {
        SyncPlan {
            env: &env.name,
            inventory_namespace: env.target_namespace(),
            commit: &desired.commit,
            objects: &desired.objects,
            shared_cluster: env.on_shared_cluster(),
        }
    }
}

/// API groups of the desired objects and the inventory, and the core group.
fn groups_of(plan: &SyncPlan<'_>, inventory: &Inventory) -> BTreeSet<String> {
    let mut groups: BTreeSet<String> = plan.objects.iter().map(|o| o.group().to_string()).collect();
    groups.extend(inventory.entries.keys().map(|r| r.group.clone()));
    groups.insert(String::new());
    groups
}

/// What the cluster holds for a plan, read without a write: the inventory, the desired objects
/// whose kinds are served (custom resources of a CRD not applied yet are not), and their live
/// state.
struct LiveView<'o> {
    inventory: Inventory,
    resolvable: Vec<&'o Object>,
    snapshot: Snapshot,
}

/// Reads the inventory and the live state at once (one round trip when discovery is cached; a
/// cluster far away makes every sequential request count).
async fn read_live<'o>(live: &mut Live, plan: &SyncPlan<'o>) -> Result<LiveView<'o>, SyncError> {
    let groups = groups_of(plan, &Inventory::default());
    live.discover(&groups).await?;
    let resolvable = |live: &Live| -> Vec<&'o Object> {
        plan.objects
            .iter()
            .filter(|o| live.resolve_kind(o.api_version(), o.kind()).is_some())
            .collect()
    };
    // A kind missing from a cached catalog may be new: ask before calling it unserved.
    if resolvable(live).len() < plan.objects.len() && !live.discovered_now() {
        live.rediscover(&groups).await?;
    }
    let objects = resolvable(live);
    let (inventory, snapshot) = futures::future::join(
        Inventory::load(live, plan.inventory_namespace, plan.env),
        Snapshot::take(live, &objects),
    )
    .await;
    let inventory = inventory?;
    let snapshot = match snapshot {
        // A cached catalog can name a kind the server no longer serves: ask, read again.
        Err(_) if !live.discovered_now() => {
            live.rediscover(&groups).await?;
            Snapshot::take(live, &resolvable(live)).await?
        }
        other => other?,
    };
    live.discover(&groups_of(plan, &inventory)).await?;
    Ok(LiveView {
        inventory,
        resolvable: resolvable(live),
        snapshot,
    })
}

enum Action {
    Unchanged,
    Create,
    /// Update; `force` only for objects the inventory already holds.
    Configure {
        force: bool,
    },
    /// Delete the object with this uid, then create it (an immutable field changes).
    Recreate {
        uid: String,
    },
    Shared,
}

/// The most bytes of JSON one object may take: etcd refuses requests over 1.5 MiB by default,
/// and the stored object (with managedFields) is no smaller than what is sent.
const OBJECT_SIZE_LIMIT: usize = 1536 * 1024;

/// Every kind is served (or defined by a CRD being applied), and no object is too large to
/// store. Every problem is reported at once, before the first write.
fn preflight_kinds(live: &Live, objects: &[Object]) -> Result<(), SyncError> {
    let defined_by_crds = kinds_defined_by(objects);
    let mut unserved: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut too_large = Vec::new();
    for object in objects {
        let pending_crd =
            defined_by_crds.contains(&(object.group().to_string(), object.kind().to_string()));
        if live
            .resolve_kind(object.api_version(), object.kind())
            .is_none()
            && !pending_crd
        {
            unserved
                .entry((object.api_version().to_string(), object.kind().to_string()))
                .or_default()
                .push(object.object_ref().to_string());
        }
        let size = serde_json::to_vec(&object.body).map_or(0, |b| b.len());
        if size > OBJECT_SIZE_LIMIT {
            too_large.push(SyncError::TooLarge {
                object: object.object_ref().to_string(),
                size: mebibytes(size),
                limit: mebibytes(OBJECT_SIZE_LIMIT),
            });
        }
    }
    if !unserved.is_empty() {
        let kinds = unserved
            .into_iter()
            .map(|((api_version, kind), objects)| {
                let example = match objects.len() {
                    1 => objects[0].clone(),
                    n => format!("{} and {} more", objects[0], n - 1),
                };
                format!(
                    "{kind} {api_version} ({example}): {}",
                    live.unserved_hint(&api_version, &kind)
                )
            })
            .collect();
        too_large.insert(0, SyncError::Unserved { kinds });
    }
    if too_large.is_empty() {
        Ok(())
    } else {
        Err(several(too_large))
    }
}

fn mebibytes(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What to do with every desired object, by the comparison `status` and `diff` use (dry runs
/// where the cheap test cannot tell, `concurrency` at a time). Every refusal is reported at once.
async fn decide_all<'o>(
    live: &Live,
    plan: &SyncPlan<'o>,
    inventory: &Inventory,
    snapshot: &Snapshot,
    concurrency: usize,
) -> Result<BTreeMap<ObjectRef, Action>, SyncError> {
    let decide_each = |objects: Vec<&'o Object>, schema_changes: BTreeSet<(String, String)>| {
        futures::stream::iter(objects)
            .map(move |object| {
                let changing = schema_changes
                    .contains(&(object.group().to_string(), object.kind().to_string()));
                async move {
                    let reference = object.object_ref();
                    let current = snapshot.get(&reference);
                    let action = decide(live, object, inventory, current, plan, changing).await;
                    (reference, action)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<(ObjectRef, Result<Action, SyncError>)>>()
    };
    // CRDs first: a dry run of a custom resource answers by the schema the server has now, so
    // the objects of a CRD this sync changes are judged without one.
    let (crds, others): (Vec<&Object>, Vec<&Object>) = plan
        .objects
        .iter()
        .partition(|o| o.kind() == "CustomResourceDefinition");
    let mut decisions = decide_each(crds, BTreeSet::new()).await;
    let changing_crds: Vec<Object> = plan
        .objects
        .iter()
        .filter(|o| o.kind() == "CustomResourceDefinition")
        .filter(|o| {
            decisions.iter().any(|(r, d)| {
                r == &o.object_ref() && !matches!(d, Ok(Action::Unchanged | Action::Shared))
            })
        })
        .cloned()
        .collect();
    decisions.extend(decide_each(others, kinds_defined_by(&changing_crds)).await);
    let mut actions = BTreeMap::new();
    let mut refusals = Vec::new();
    for (reference, decision) in decisions {
        match decision {
            Ok(action) => {
                actions.insert(reference, action);
            }
            Err(e) => refusals.push(e),
        }
    }
    if refusals.is_empty() {
        Ok(actions)
    } else {
        refusals.sort_by_key(|e| e.to_string());
        Err(several(refusals))
    }
}

/// The checks `sync` makes before its first write, alone and read-only: for a caller that must
/// write something of its own first (the environment's lock on a shared cluster, whose
/// namespace may not exist yet) and wants a refusal to come before that write too.
pub async fn preflight(
    live: &mut Live,
    plan: &SyncPlan<'_>,
    options: &SyncOptions,
) -> Result<(), SyncError> {
    let LiveView {
        inventory,
        snapshot,
        ..
    } = read_live(live, plan).await?;
    preflight_kinds(live, plan.objects)?;
    decide_all(live, plan, &inventory, &snapshot, options.concurrency).await?;
    Ok(())
}

pub async fn sync(
    live: &mut Live,
    plan: &SyncPlan<'_>,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let clock = std::time::Instant::now();
    let lap = |stage: &str| {
        tracing::debug!(
            env = plan.env,
            ms = clock.elapsed().as_millis() as u64,
            "sync: {stage}"
        )
    };
    let LiveView {
        inventory: old,
        resolvable,
        mut snapshot,
    } = read_live(live, plan).await?;
    lap("inventory, discovery and live state read");

    // Preflight: nothing is written unless every object can be applied.
    preflight_kinds(live, plan.objects)?;
    let actions = decide_all(live, plan, &old, &snapshot, options.concurrency).await?;
    lap("preflight done (live state read)");

    let mut changes = ChangeSet::default();
    let mut inventory = old.clone();
    let (first, rest): (Vec<&Object>, Vec<&Object>) = plan
        .objects
        .iter()
        .partition(|o| is_definition_or_namespace(o));

    // Stage 1: CRDs and Namespaces, then the grown inventory (its namespace exists now).
    let mut failures = apply_batch(
        live,
        &first,
        &actions,
        options.concurrency,
        &mut changes,
        &mut snapshot,
    )
    .await;
    for object in plan.objects {
        if is_shared(object, plan.shared_cluster) {
            continue;
        }
        inventory
            .entries
            .entry(object.object_ref())
            .or_insert_with(|| Entry {
                reference: object.object_ref(),
                api_version: object.api_version().to_string(),
                hash: String::new(),
            });
    }
    if !failures.is_empty() {
        return Err(several(failures));
    }
    if inventory != old {
        inventory
            .save(live, plan.inventory_namespace, plan.env)
            .await?;
        changes.writes += 1;
    }
    let crds: Vec<&Object> = first
        .iter()
        .copied()
        .filter(|o| o.kind() == "CustomResourceDefinition")
        .collect();
    let new_crds = crds.iter().any(|o| {
        !matches!(
            actions.get(&o.object_ref()),
            Some(Action::Unchanged | Action::Shared)
        )
    });
    if new_crds || resolvable.len() < plan.objects.len() {
        health::wait(live, &crds, true, Duration::from_secs(60)).await?;
        live.rediscover(&groups_of(plan, &old)).await?;
        let custom: Vec<&Object> = rest
            .iter()
            .copied()
            .filter(|o| !snapshot.contains(&o.object_ref()))
            .collect();
        snapshot.extend(live, &custom).await?;
    }

    lap("stage 1 (CRDs, Namespaces) applied");
    // Stages 2 and 3: what pods refer to, then workloads and the rest, webhooks last.
    for tier in tiers(&rest) {
        if !failures.is_empty() {
            break;
        }
        failures.extend(
            apply_batch(
                live,
                &tier,
                &actions,
                options.concurrency,
                &mut changes,
                &mut snapshot,
            )
            .await,
        );
    }
    let failed: BTreeSet<String> = failures.iter().filter_map(failed_object).collect();
    for object in plan.objects {
        let reference = object.object_ref();
        if let Some(entry) = inventory.entries.get_mut(&reference)
            && !failed.contains(&reference.to_string())
        {
            entry.hash = compare::desired_hash(object);
        }
    }
    if !failures.is_empty() {
        if inventory != old {
            inventory
                .save(live, plan.inventory_namespace, plan.env)
                .await?;
        }
        return Err(several(failures));
    }

    lap("stages 2 and 3 applied");
    // Prune what the inventory holds and git no longer wants, then record the result.
    let desired: BTreeSet<ObjectRef> = plan.objects.iter().map(Object::object_ref).collect();
    // Prune takes an unserved kind for a deleted CRD (its objects are gone with it); only the
    // server may say so, never a cached catalog.
    let unresolved = inventory.entries.iter().any(|(reference, entry)| {
        !desired.contains(reference)
            && live
                .resolve_kind(&entry.api_version, &reference.kind)
                .is_none()
    });
    if unresolved && !live.discovered_now() {
        live.rediscover(&groups_of(plan, &inventory)).await?;
    }
    prune::prune_stale(live, &mut inventory, &desired, plan.env, &mut changes).await?;
    inventory.commit = Some(plan.commit.to_string());
    if inventory != old {
        inventory
            .save(live, plan.inventory_namespace, plan.env)
            .await?;
        changes.writes += 1;
    }

    lap("pruned, inventory recorded");
    let health = if options.wait {
        let owned: Vec<&Object> = plan
            .objects
            .iter()
            .filter(|o| !matches!(actions.get(&o.object_ref()), Some(Action::Shared)))
            .collect();
        Some(health_of(live, &owned, &snapshot, options.timeout).await?)
    } else {
        None
    };
    Ok(SyncReport {
        commit: plan.commit.to_string(),
        changes,
        health,
    })
}

/// Stages 2 and 3 in tiers, each finished before the next starts: first everything pods refer
/// to (accounts, RBAC, config, secrets, Services — a pod gets the legacy env vars of Services
/// that exist when it starts — and volumes), then workloads and everything else, then webhooks
/// and API services, which could otherwise block the objects they admit.
fn tiers<'o>(objects: &[&'o Object]) -> [Vec<&'o Object>; 3] {
    let workloads = apply_rank("DaemonSet");
    let last = apply_rank("APIService");
    let mut tiers: [Vec<&Object>; 3] = Default::default();
    for object in objects {
        let rank = apply_rank(object.kind());
        let tier = if rank < workloads {
            0
        } else if rank < last {
            1
        } else {
            2
        };
        tiers[tier].push(object);
    }
    tiers
}

fn is_definition_or_namespace(object: &Object) -> bool {
    matches!(
        (object.group(), object.kind()),
        ("apiextensions.k8s.io", "CustomResourceDefinition") | ("", "Namespace")
    )
}

/// Deletes every object of the environment's inventory (reverse apply order, with prune's
/// safety rules), then the inventory itself once it is empty.
pub async fn teardown(
    live: &mut Live,
    env: &str,
    inventory_namespace: &str,
) -> Result<ChangeSet, SyncError> {
    let mut inventory = Inventory::load(live, inventory_namespace, env).await?;
    let mut groups: BTreeSet<String> = inventory.entries.keys().map(|r| r.group.clone()).collect();
    groups.insert(String::new());
    // Deletes rest on the server's word of what it serves, never on a cached catalog's.
    live.rediscover(&groups).await?;
    let mut changes = ChangeSet::default();
    prune::prune_stale(live, &mut inventory, &BTreeSet::new(), env, &mut changes).await?;
    if inventory.entries.is_empty() {
        inventory::delete(live, inventory_namespace).await?;
    } else {
        inventory.save(live, inventory_namespace, env).await?;
    }
    Ok(changes)
}

/// Objects of the environment's inventory that are marked to survive teardown (prune opt-out
/// annotations), read-only: deleting a whole cluster would take them too.
pub async fn marked_to_survive(
    live: &mut Live,
    env: &str,
    inventory_namespace: &str,
) -> Result<Vec<String>, SyncError> {
    let inventory = Inventory::load(live, inventory_namespace, env).await?;
    let mut groups: BTreeSet<String> = inventory.entries.keys().map(|r| r.group.clone()).collect();
    groups.insert(String::new());
    // Deletes rest on the server's word of what it serves, never on a cached catalog's.
    live.rediscover(&groups).await?;
    let mut marked = Vec::new();
    for (reference, entry) in &inventory.entries {
        let Some(resolved) = live.resolve_kind(&entry.api_version, &reference.kind) else {
            continue;
        };
        if let Some(current) = live.get(&resolved, reference).await?
            && let Some(reason) = prune::keep_reason(&current)
        {
            marked.push(format!("{reference} ({reason})"));
        }
    }
    Ok(marked)
}

/// Drift and health as they are now, read-only: objects that differ from what sync applied (or
/// are missing), stale inventory entries, and the health of every object.
#[derive(Debug, Clone, Serialize)]
pub struct LiveStatus {
    /// The commit the inventory says was synced last.
    pub synced_commit: Option<String>,
    pub drift: Vec<String>,
    pub health: HealthReport,
}

/// Dry runs `status` has in flight at once.
const OBSERVE_CONCURRENCY: usize = 16;

pub async fn observe(live: &mut Live, plan: &SyncPlan<'_>) -> Result<LiveStatus, SyncError> {
    let LiveView {
        inventory,
        snapshot,
        ..
    } = read_live(live, plan).await?;
    let has_nodes = live.count_nodes().await? > 0;
    let live = &*live;
    let inventory = &inventory;
    let snapshot = &snapshot;
    // Drift by sync's own comparison (dry runs where the cheap test cannot tell), so status,
    // diff and sync agree.
    let drifts: Vec<Option<String>> = futures::stream::iter(plan.objects)
        .map(|object| async move {
            let reference = object.object_ref();
            let current = snapshot.get(&reference);
            if current.is_some() && is_shared(object, plan.shared_cluster) {
                return Ok(None);
            }
            let Some(resolved) = live.resolve_kind(object.api_version(), object.kind()) else {
                return Ok(Some(format!("{reference} (missing)")));
            };
            let force = inventory.entries.contains_key(&reference);
            let recorded = inventory.hash_of(&reference);
            let verdict = compare::judge(live, &resolved, object, recorded, current, force).await;
            Ok(match verdict {
                Ok(compare::Verdict::Unchanged) => None,
                Ok(compare::Verdict::Missing) => Some(format!("{reference} (missing)")),
                Ok(compare::Verdict::Differs { .. }) => Some(format!("{reference} (differs)")),
                Ok(compare::Verdict::Immutable { .. }) => Some(format!(
                    "{reference} (differs in a field that cannot change)"
                )),
                Err(SyncError::Conflict { .. }) => Some(format!(
                    "{reference} (differs; another field manager owns fields)"
                )),
                Err(e) => return Err(e),
            })
        })
        .buffered(OBSERVE_CONCURRENCY)
        .collect::<Vec<Result<Option<String>, SyncError>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut drift: Vec<String> = drifts.into_iter().flatten().collect();
    let healths: Vec<(ObjectRef, Health)> = plan
        .objects
        .iter()
        .map(|object| {
            let reference = object.object_ref();
            let health = match snapshot.get(&reference) {
                Some(value) => health::assess(object.kind(), value, has_nodes),
                None => Health::Progressing("not found".into()),
            };
            (reference, health)
        })
        .collect();
    let desired: BTreeSet<ObjectRef> = plan.objects.iter().map(Object::object_ref).collect();
    drift.extend(
        inventory
            .entries
            .keys()
            .filter(|r| !desired.contains(r))
            .map(|r| format!("{r} (no longer desired)")),
    );
    Ok(LiveStatus {
        synced_commit: inventory.commit.clone(),
        drift,
        health: HealthReport::from(&healths),
    })
}

/// Kinds (group, kind) defined by the CRDs among `objects`.
fn kinds_defined_by(objects: &[Object]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .filter(|o| o.kind() == "CustomResourceDefinition")
        .filter_map(|o| {
            let group = o.str_at(&["spec", "group"])?;
            let kind = o.str_at(&["spec", "names", "kind"])?;
            Some((group.to_string(), kind.to_string()))
        })
        .collect()
}

/// On a shared cluster CRDs belong to every environment: applied only when absent, never in an
/// environment's inventory, so no environment's prune or teardown can delete them (and with
/// them every other environment's custom resources).
fn is_shared(object: &Object, shared_cluster: bool) -> bool {
    shared_cluster
        && object.kind() == "CustomResourceDefinition"
        && object.group() == "apiextensions.k8s.io"
}

/// The environment a live object is labelled for, if any.
pub fn owner_of(live: &Value) -> Option<&str> {
    live.pointer(&format!(
        "/metadata/labels/{}",
        ENVIRONMENT_LABEL.replace('/', "~1")
    ))
    .and_then(Value::as_str)
}

pub fn owned_by(live: &Value, env: &str) -> bool {
    owner_of(live) == Some(env)
}

fn owner_description(live: &Value) -> String {
    match owner_of(live) {
        Some(other) => format!("it belongs to environment `{other}`"),
        None => "it has no sprout.dev/environment label".into(),
    }
}

/// What to do with one desired object, given the inventory and its live state.
async fn decide(
    live: &Live,
    object: &Object,
    inventory: &Inventory,
    current: Option<&Value>,
    plan: &SyncPlan<'_>,
    schema_changes: bool,
) -> Result<Action, SyncError> {
    let reference = object.object_ref();
    let Some(current) = current else {
        return Ok(Action::Create);
    };
    if is_shared(object, plan.shared_cluster) {
        return Ok(Action::Shared);
    }
    let ours = owned_by(current, plan.env);
    let force = inventory.entries.contains_key(&reference);
    if !ours && !force {
        return Err(SyncError::NotOurs {
            object: reference.to_string(),
            owner: owner_description(current),
        });
    }
    let resolved = live.resolve(object)?;
    let recorded = inventory.hash_of(&reference);
    if schema_changes {
        return Ok(if compare::evidently_unchanged(object, recorded, current) {
            Action::Unchanged
        } else {
            Action::Configure { force }
        });
    }
    match compare::judge(live, &resolved, object, recorded, Some(current), force).await? {
        compare::Verdict::Unchanged => Ok(Action::Unchanged),
        compare::Verdict::Missing => Ok(Action::Create),
        compare::Verdict::Differs { .. } => Ok(Action::Configure { force }),
        compare::Verdict::Immutable { fields } => {
            let refuse = |remedy: String| SyncError::Immutable {
                object: reference.to_string(),
                fields: fields.clone(),
                remedy,
            };
            if !replace::allows_replace(object) {
                return Err(refuse(replace::REMEDY.into()));
            }
            if let Some(why) = replace::refusal(object, current) {
                return Err(refuse(why));
            }
            let uid = current
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(Action::Recreate {
                uid: uid.to_string(),
            })
        }
    }
}

async fn apply_batch(
    live: &Live,
    objects: &[&Object],
    actions: &BTreeMap<ObjectRef, Action>,
    concurrency: usize,
    changes: &mut ChangeSet,
    snapshot: &mut Snapshot,
) -> Vec<SyncError> {
    let mut failures = Vec::new();
    let mut work = Vec::new();
    for object in objects {
        match actions.get(&object.object_ref()) {
            Some(Action::Unchanged) => changes.unchanged += 1,
            Some(Action::Shared) => changes.shared.push(object.object_ref().to_string()),
            Some(
                action @ (Action::Create | Action::Configure { .. } | Action::Recreate { .. }),
            ) => work.push((*object, Some(action))),
            // Custom resources whose CRD was applied in this sync: new by definition.
            None => work.push((*object, None)),
        }
    }
    let results: Vec<_> = futures::stream::iter(work)
        .map(|(object, action)| async move {
            let resolved = match live.resolve(object) {
                Ok(resolved) => resolved,
                Err(e) => return (object, action, 0, Err(e)),
            };
            match action {
                Some(Action::Recreate { uid }) => {
                    let result = replace::recreate(live, &resolved, object, uid).await;
                    (object, action, 2, result)
                }
                Some(Action::Configure { force }) => {
                    let result = live.apply(&resolved, object, *force, false).await;
                    (object, action, 1, result)
                }
                _ => {
                    let result = live.apply(&resolved, object, false, false).await;
                    (object, action, 1, result)
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (object, action, writes, result) in results {
        changes.writes += writes;
        match result {
            Ok(applied) => {
                let name = object.object_ref().to_string();
                match action {
                    Some(Action::Configure { .. }) => changes.configured.push(name),
                    Some(Action::Recreate { .. }) => changes.recreated.push(name),
                    _ => changes.created.push(name),
                }
                snapshot.insert(object.object_ref(), applied);
            }
            Err(e) => failures.push(e),
        }
    }
    changes.created.sort();
    changes.configured.sort();
    changes.recreated.sort();
    failures
}

/// Health from the freshest state known (the snapshot, updated by apply answers); only what
/// has not settled is polled.
async fn health_of(
    live: &Live,
    objects: &[&Object],
    snapshot: &Snapshot,
    timeout: Duration,
) -> Result<HealthReport, SyncError> {
    let has_nodes = live.count_nodes().await? > 0;
    let mut unsettled = Vec::new();
    let mut settled = Vec::new();
    for object in objects {
        let reference = object.object_ref();
        match snapshot
            .get(&reference)
            .map(|v| health::assess(object.kind(), v, has_nodes))
        {
            Some(Health::Progressing(_)) | None => unsettled.push(*object),
            Some(h) => settled.push((reference, h)),
        }
    }
    settled.extend(health::wait(live, &unsettled, has_nodes, timeout).await?);
    Ok(HealthReport::from(&settled))
}

fn failed_object(error: &SyncError) -> Option<String> {
    match error {
        SyncError::Object { object, .. }
        | SyncError::Conflict { object, .. }
        | SyncError::NotOurs { object, .. }
        | SyncError::UnknownKind { object, .. }
        | SyncError::Immutable { object, .. }
        | SyncError::TooLarge { object, .. } => Some(object.clone()),
        _ => None,
    }
}

fn several(mut errors: Vec<SyncError>) -> SyncError {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        SyncError::Several { errors }
    }
}
