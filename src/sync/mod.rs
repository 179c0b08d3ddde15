//! Stage 4, sync: converge a cluster to an environment's desired state, safely.
//!
//! The order is fixed (after Flux `ssa/manager_apply.go`):
//! 1. read the inventory, discover the API groups involved;
//! 2. preflight, before any write: every kind is served (or defined by a CRD being applied),
//!    and no existing object that belongs to someone else would be taken over;
//! 3. apply CRDs and Namespaces, record the grown inventory, wait until CRDs are established;
//! 4. apply the rest in three tiers (what pods refer to; workloads and the rest; webhooks),
//!    `concurrency` requests in flight, skipping every object that is unchanged (no request);
//! 5. prune inventory entries no longer desired, in reverse order (see `prune.rs`);
//! 6. record the inventory, then wait for health.
//!
//! A sync with nothing to change sends no write request. Before it starts, the desired state is
//! completed with the Secrets an environment copies (see [`secret_copies`]).

pub mod compare;
pub mod diff;
pub mod health;
pub mod inventory;
pub mod live;
mod prune;
pub mod secret_copies;
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
    #[error(
        "{object}: kind not served by the cluster ({api_version}); apply its CustomResourceDefinition first or drop the kind"
    )]
    UnknownKind { object: String, api_version: String },
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
    #[error("{} objects failed:\n  {}", errors.len(), errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Several { errors: Vec<SyncError> },
    #[error("not healthy after {}s:\n  {}", timeout.as_secs(), stuck.join("\n  "))]
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

async fn read_live<'o>(live: &mut Live, plan: &SyncPlan<'o>) -> Result<LiveView<'o>, SyncError> {
    let inventory = Inventory::load(live, plan.inventory_namespace, plan.env).await?;
    live.discover(&groups_of(plan, &inventory)).await?;
    let resolvable: Vec<&Object> = plan
        .objects
        .iter()
        .filter(|o| live.resolve_kind(o.api_version(), o.kind()).is_some())
        .collect();
    let snapshot = Snapshot::take(live, &resolvable).await?;
    Ok(LiveView {
        inventory,
        resolvable,
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
    Shared,
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
    let defined_by_crds = kinds_defined_by(plan.objects);
    for object in plan.objects {
        let pending_crd =
            defined_by_crds.contains(&(object.group().to_string(), object.kind().to_string()));
        if live
            .resolve_kind(object.api_version(), object.kind())
            .is_none()
            && !pending_crd
        {
            live.resolve(object)?;
        }
    }
    let mut actions: BTreeMap<ObjectRef, Action> = BTreeMap::new();
    let mut refusals = Vec::new();
    for object in plan.objects {
        let reference = object.object_ref();
        match decide(
            object,
            &old,
            snapshot.get(&reference),
            plan.env,
            plan.shared_cluster,
        ) {
            Ok(action) => {
                actions.insert(reference, action);
            }
            Err(e) => refusals.push(e),
        }
    }
    if !refusals.is_empty() {
        return Err(several(refusals));
    }
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
        live.discover(&groups_of(plan, &old)).await?;
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
    live.discover(&groups).await?;
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
    live.discover(&groups).await?;
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

pub async fn observe(live: &mut Live, plan: &SyncPlan<'_>) -> Result<LiveStatus, SyncError> {
    let LiveView {
        inventory,
        snapshot,
        ..
    } = read_live(live, plan).await?;
    let has_nodes = live.count_nodes().await? > 0;
    let mut drift = Vec::new();
    let mut healths = Vec::new();
    for object in plan.objects {
        let reference = object.object_ref();
        let current = snapshot.get(&reference);
        let shared = current.is_some() && is_shared(object, plan.shared_cluster);
        if !shared && !compare::unchanged(object, inventory.hash_of(&reference), current) {
            drift.push(match current {
                None => format!("{reference} (missing)"),
                Some(_) => format!("{reference} (differs)"),
            });
        }
        let health = match current {
            Some(value) => health::assess(object.kind(), value, has_nodes),
            None => Health::Progressing("not found".into()),
        };
        healths.push((reference, health));
    }
    let desired: BTreeSet<ObjectRef> = plan.objects.iter().map(Object::object_ref).collect();
    drift.extend(
        inventory
            .entries
            .keys()
            .filter(|r| !desired.contains(r))
            .map(|r| format!("{r} (no longer desired)")),
    );
    Ok(LiveStatus {
        synced_commit: inventory.commit,
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
fn decide(
    object: &Object,
    inventory: &Inventory,
    live: Option<&Value>,
    env: &str,
    shared_cluster: bool,
) -> Result<Action, SyncError> {
    let reference = object.object_ref();
    let Some(live) = live else {
        return Ok(Action::Create);
    };
    if is_shared(object, shared_cluster) {
        return Ok(Action::Shared);
    }
    let ours = owned_by(live, env);
    let in_inventory = inventory.entries.contains_key(&reference);
    if !ours && !in_inventory {
        return Err(SyncError::NotOurs {
            object: reference.to_string(),
            owner: owner_description(live),
        });
    }
    if compare::unchanged(object, inventory.hash_of(&reference), Some(live)) {
        return Ok(Action::Unchanged);
    }
    Ok(Action::Configure {
        force: in_inventory,
    })
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
            Some(Action::Create) => work.push((*object, false, true)),
            Some(Action::Configure { force }) => work.push((*object, *force, false)),
            // Custom resources whose CRD was applied in this sync: new by definition.
            None => work.push((*object, false, true)),
        }
    }
    let results: Vec<_> = futures::stream::iter(work)
        .map(|(object, force, created)| async move {
            let result = match live.resolve(object) {
                Ok(resolved) => live.apply(&resolved, object, force, false).await,
                Err(e) => Err(e),
            };
            (object, created, result)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (object, created, result) in results {
        changes.writes += 1;
        match result {
            Ok(applied) => {
                let name = object.object_ref().to_string();
                if created {
                    changes.created.push(name)
                } else {
                    changes.configured.push(name)
                }
                snapshot.insert(object.object_ref(), applied);
            }
            Err(e) => failures.push(e),
        }
    }
    changes.created.sort();
    changes.configured.sort();
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
        | SyncError::UnknownKind { object, .. } => Some(object.clone()),
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
