//! Stage 4, sync: converge a cluster to an environment's desired state, safely.
//!
//! The order is fixed (after Flux `ssa/manager_apply.go`):
//! 1. read the inventory, discover the API groups involved;
//! 2. preflight, before any write: every kind is served (or defined by a CRD being applied),
//!    every field is one the server knows (see [`schema`]), no object is too large, and no
//!    existing object that belongs to someone else would be taken over;
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

mod apply;
mod catalog;
mod claims;
pub mod compare;
pub(crate) mod contents;
pub mod diff;
pub mod health;
mod immutable;
pub mod inventory;
mod known_bugs;
pub mod live;
pub(crate) mod messages;
mod prune;
mod replace;
pub(crate) mod schema;
pub mod secret_copies;
mod server_defaults;
pub mod snapshot;
pub mod tenant;

use crate::fork::ownership::{ENVIRONMENT_LABEL, PROJECT_LABEL};
use crate::object::{Object, ObjectRef};
use futures::StreamExt;
use health::{Health, HealthReport};
use inventory::{Entry, Inventory};
use live::Live;
use serde::Serialize;
use serde_json::Value;
use snapshot::Snapshot;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
    #[error(
        "{object}: field(s) the server does not know: {}",
        messages::capped_inline(fields, FIELDS_SHOWN)
    )]
    UnknownFields { object: String, fields: Vec<String> },
    /// Every object with fields the server does not know or values of the wrong type, found
    /// before the first write.
    #[error(
        "{} object(s) have fields the server{} does not know (fields of a newer Kubernetes, or not declared in a CRD's schema) or values of a type it does not take; nothing was written: fix or remove them, or use a cluster that knows them:\n  {}",
        objects.len(),
        server_version.as_ref().map(|v| format!(" (Kubernetes {v})")).unwrap_or_default(),
        messages::capped(objects).join("\n  ")
    )]
    UnknownFieldsIn {
        server_version: Option<String>,
        objects: Vec<String>,
    },
    /// Objects this server cannot take because of a bug of its version (see [`known_bugs`]),
    /// found before the first write.
    #[error("{objects}: {reason}")]
    ServerBug { objects: String, reason: String },
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
    #[error("{} problems:\n  {}", errors.len(), messages::capped(&errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()).join("\n  "))]
    Several { errors: Vec<SyncError> },
    #[error("not healthy after {}s:\n  {}", timeout.as_secs(), messages::capped(stuck).join("\n  "))]
    HealthTimeout {
        timeout: Duration,
        stuck: Vec<String>,
    },
}

/// The most unknown fields named per object.
const FIELDS_SHOWN: usize = 5;

impl SyncError {
    /// Whether the desired state is at fault and nothing was written (exit 2): fields the
    /// server does not know, kinds it does not serve, objects too large for it, all found
    /// before the first write (one object's unknown fields, found by its apply, come after
    /// others were written).
    pub fn is_refusal(&self) -> bool {
        match self {
            // Found before the first write: the desired state cannot go to this server as it
            // is (invalid input for it), and nothing was changed.
            SyncError::UnknownFieldsIn { .. }
            | SyncError::Unserved { .. }
            | SyncError::TooLarge { .. }
            | SyncError::ServerBug { .. } => true,
            SyncError::Several { errors } => errors.iter().all(SyncError::is_refusal),
            _ => false,
        }
    }
}

/// Requests in flight at once by default: over HTTP/2 they share one connection, and a cluster
/// far away answers more of them in the same time (at a 20 ms round trip, 1,000 objects' first
/// apply took 2.55–3.25 s at 64 against 2.67–3.89 s at 24, paired runs).
pub const DEFAULT_CONCURRENCY: u16 = 64;

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub concurrency: usize,
    pub wait: bool,
    pub timeout: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: usize::from(DEFAULT_CONCURRENCY),
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
    /// Deletes accepted but not yet finished (finalizers); still in the inventory (but for the
    /// claims of StatefulSets, which never are: see `claims.rs`).
    pub deleting: Vec<String>,
    /// What a user should know about a change made (see `replace::note`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Write requests that changed something (applies, deletes, inventory writes, the parts of
    /// the environment's identity made, and the server's reviews of it): a create answered
    /// "exists already" is not counted.
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
    /// The project's identity ("" for a project without one).
    pub project: &'a str,
    pub inventory_namespace: &'a str,
    pub commit: &'a str,
    pub objects: &'a [Object],
    /// On a shared cluster CRDs are shared: applied only when absent, never pruned.
    pub shared_cluster: bool,
    /// Each object's hash and size, computed once (every object is hashed on every sync).
    fingerprints: HashMap<ObjectRef, compare::Fingerprint>,
}

impl<'a> SyncPlan<'a> {
    pub fn new(
        env: &'a crate::spec::Environment,
        desired: &'a crate::desired::DesiredState,
    ) -> Self {
        SyncPlan {
            env: &env.name,
            project: &env.project,
            inventory_namespace: env.target_namespace(),
            commit: &desired.commit,
            objects: &desired.objects,
            shared_cluster: env.on_shared_cluster(),
            fingerprints: desired
                .objects
                .iter()
                .map(Object::object_ref)
                .zip(compare::fingerprints(&desired.objects))
                .collect(),
        }
    }
}

impl SyncPlan<'_> {
    pub fn owner(&self) -> Owner<'_> {
        Owner {
            env: self.env,
            project: self.project,
        }
    }

    /// The hash the inventory records for a desired object once it is applied.
    fn desired_hash(&self, reference: &ObjectRef) -> &str {
        &self.fingerprints[reference].hash
    }

    /// Whether the inventory records the desired object as applied exactly as it is now.
    fn applied_as_is(&self, reference: &ObjectRef, inventory: &Inventory) -> bool {
        inventory.hash_of(reference) == Some(self.desired_hash(reference))
    }
}

/// Who an environment's objects belong to: the environment, of one project. Two projects may
/// both have an environment `pr-42` on one cluster; neither may touch the other's objects.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub env: &'a str,
    pub project: &'a str,
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

/// What a caller read before the desired state was known: the inventory, and the LISTs of
/// the kinds and namespaces it records.
pub struct ReadAhead {
    /// None: read it with the rest.
    pub inventory: Option<Result<Inventory, SyncError>>,
    pub listed: snapshot::Listed,
}

impl ReadAhead {
    /// What there is to read of an environment whose namespace does not exist: nothing there,
    /// no inventory either.
    pub fn of_absent_namespace(namespace: &str) -> ReadAhead {
        ReadAhead {
            inventory: Some(Ok(Inventory::default())),
            listed: snapshot::Listed::of_absent_namespace(namespace),
        }
    }

    /// An environment whose namespace this run's Lease made a moment ago: everything is read
    /// but the Namespace itself, which is applied as desired (see [`snapshot::Listed`]).
    fn of_namespace_made_now(namespace: &str) -> ReadAhead {
        ReadAhead {
            inventory: None,
            listed: snapshot::Listed::of_namespace_made_now(namespace),
        }
    }
}

/// Reads the inventory and the live state at once (one round trip when discovery is cached; a
/// cluster far away makes every sequential request count), or takes them from what the caller
/// read `ahead`.
async fn read_live<'o>(
    live: &mut Live,
    plan: &SyncPlan<'o>,
    ahead: Option<ReadAhead>,
) -> Result<LiveView<'o>, SyncError> {
    let (inventory, listed) = match ahead {
        Some(ahead) => (ahead.inventory, Some(ahead.listed)),
        None => (None, None),
    };
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
        async {
            match inventory {
                Some(read) => read,
                None => Inventory::load(live, plan.inventory_namespace, plan.owner()).await,
            }
        },
        Snapshot::take(live, &objects, listed),
    )
    .await;
    let mut inventory = inventory?;
    let snapshot = match snapshot {
        // A cached catalog can name a kind the server no longer serves: ask, read again.
        Err(_) if !live.discovered_now() => {
            live.rediscover(&groups).await?;
            Snapshot::take(live, &resolvable(live), None).await?
        }
        other => other?,
    };
    live.discover(&groups_of(plan, &inventory)).await?;
    inventory.key_cluster_scoped_without_namespace(live);
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
/// store: the problems, each reported.
fn kind_and_size_problems(live: &Live, plan: &SyncPlan<'_>) -> Vec<SyncError> {
    let objects = plan.objects;
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
        let size = plan.fingerprints[&object.object_ref()].bytes;
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
    too_large
}

/// Everything sync checks before its first write, with every problem reported at once: kinds
/// served, sizes, fields the server knows (see [`schema`]), objects of others, changes to
/// fields that cannot change. The field check and the comparison run side by side: on a first
/// sync the comparison has nothing to ask, and the field check asks nothing when the server's
/// schema is cached, so neither waits on the other.
async fn check_before_writing<'o>(
    live: &Live,
    plan: &SyncPlan<'o>,
    inventory: &Inventory,
    snapshot: &Snapshot,
    concurrency: usize,
) -> Result<BTreeMap<ObjectRef, Action>, SyncError> {
    let mut problems = kind_and_size_problems(live, plan);
    // Before any dry run: such an object makes the server fail on a dry run too.
    let bugs = known_bugs::refusals(live, plan.objects).await?;
    if !bugs.is_empty() {
        return Err(several(problems.into_iter().chain(bugs).collect()));
    }
    // The CRDs this sync applies: on a shared cluster one that exists stays as it is, and its
    // custom resources answer to the server's schema, not to the desired one.
    let applied_crds: Vec<Object> = plan
        .objects
        .iter()
        .filter(|o| o.kind() == "CustomResourceDefinition")
        .filter(|o| !(is_shared(o, plan.shared_cluster) && snapshot.contains(&o.object_ref())))
        .cloned()
        .collect();
    // Objects the comparison's dry run does not judge: those to create, and custom resources
    // of CRDs in this sync (judged without one when their schema changes).
    let defined_here = kinds_defined_by(&applied_crds);
    let to_check: Vec<&Object> = plan
        .objects
        .iter()
        .filter(|o| {
            !snapshot.contains(&o.object_ref())
                || defined_here.contains(&(o.group().to_string(), o.kind().to_string()))
        })
        .collect();
    let (decided, fields) = futures::future::join(
        decide_all(live, plan, inventory, snapshot, concurrency),
        schema::unknown_fields(live, &to_check, &applied_crds, concurrency),
    )
    .await;
    let fields = fields?;
    let actions = match decided {
        Ok(actions) => Some(actions),
        Err(SyncError::Several { errors }) => {
            problems.extend(errors);
            None
        }
        Err(e) => {
            problems.push(e);
            None
        }
    };
    problems.extend(fields.refusals);
    let problems = with_unknown_fields_grouped(problems, fields.server_version);
    match actions {
        Some(actions) if problems.is_empty() => Ok(actions),
        _ => Err(several(problems)),
    }
}

/// `problems` with every object's unknown fields in one error (one line per object, each
/// object once), first: a desired state written for a newer Kubernetes has many.
fn with_unknown_fields_grouped(
    problems: Vec<SyncError>,
    server_version: Option<String>,
) -> Vec<SyncError> {
    let mut by_object: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut others = Vec::new();
    for problem in problems {
        match problem {
            SyncError::UnknownFields { object, fields } => {
                let known = by_object.entry(object).or_default();
                for field in fields {
                    if !known.contains(&field) {
                        known.push(field);
                    }
                }
            }
            other => others.push(other),
        }
    }
    if by_object.is_empty() {
        return others;
    }
    let objects = by_object
        .into_iter()
        .map(|(object, fields)| {
            format!(
                "{object}: {}",
                messages::capped_inline(&fields, FIELDS_SHOWN)
            )
        })
        .collect();
    let mut grouped = vec![SyncError::UnknownFieldsIn {
        server_version,
        objects,
    }];
    grouped.extend(others);
    grouped
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
    // The cheap test for every object at once, on every core: for a sync that changes nothing
    // it is the whole decision, and it walks every field of every object.
    let evident: HashSet<ObjectRef> = {
        use rayon::prelude::*;
        plan.objects
            .par_iter()
            .filter_map(|object| {
                let reference = object.object_ref();
                let current = snapshot.get(&reference)?;
                let applied_as_is = plan.applied_as_is(&reference, inventory);
                compare::evidently_unchanged(object, applied_as_is, current).then_some(reference)
            })
            .collect()
    };
    let evident = &evident;
    let decide_each = |objects: Vec<&'o Object>, schema_changes: BTreeSet<(String, String)>| {
        futures::stream::iter(objects)
            .map(move |object| {
                let changing = schema_changes
                    .contains(&(object.group().to_string(), object.kind().to_string()));
                async move {
                    let reference = object.object_ref();
                    let current = snapshot.get(&reference);
                    let evident = evident.contains(&reference);
                    let action =
                        decide(live, object, inventory, current, plan, changing, evident).await;
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
    ahead: Option<ReadAhead>,
) -> Result<(), SyncError> {
    let LiveView {
        inventory,
        snapshot,
        ..
    } = read_live(live, plan, ahead).await?;
    check_before_writing(live, plan, &inventory, &snapshot, options.concurrency).await?;
    Ok(())
}

/// `made_now`: the environment's namespace when the caller's Lease made it a moment ago (its
/// Namespace is then applied as desired rather than compared, and the environment's identity
/// is not looked for in it).
pub async fn sync(
    live: &mut Live,
    plan: &SyncPlan<'_>,
    options: &SyncOptions,
    made_now: Option<&str>,
) -> Result<SyncReport, SyncError> {
    let lap = laps(plan.env, "sync");
    let LiveView {
        inventory: old,
        resolvable,
        mut snapshot,
    } = read_live(live, plan, made_now.map(ReadAhead::of_namespace_made_now)).await?;
    let made_now: BTreeSet<String> = made_now.into_iter().map(str::to_string).collect();
    lap("inventory, discovery and live state read");

    // Preflight: nothing is written unless every object can be applied.
    let actions = check_before_writing(live, plan, &old, &snapshot, options.concurrency).await?;
    lap("preflight done (live state read)");

    let mut changes = ChangeSet::default();
    let mut inventory = old.clone();
    let (first, rest): (Vec<&Object>, Vec<&Object>) = plan
        .objects
        .iter()
        .partition(|o| is_definition_or_namespace(o));

    // Stage 1: the grown inventory first — every object is recorded before it is applied, so
    // a failure anywhere after leaves nothing untracked — then CRDs and Namespaces. On a shared
    // cluster the environment's identity is made beside it in the namespaces that exist
    // already, and after it in those stage 1 creates (its bindings need their namespace).
    grow(&mut inventory, plan);
    let mut first = first;
    let (existing, created) = identity_namespaces(plan, &inventory, &snapshot);
    let (stage_one, identity) = futures::join!(
        stage_one(
            live,
            plan,
            &old,
            &mut inventory,
            &mut first,
            &actions,
            options.concurrency,
            &mut changes,
            &mut snapshot,
            &made_now,
        ),
        make_identity(live, plan, &existing, &made_now)
    );
    stage_one?;
    changes.writes += identity?;
    if plan.shared_cluster {
        // Namespaces stage 1 made a moment ago hold nothing of the identity yet.
        changes.writes += make_identity(live, plan, &created, &created).await?;
        // From here on namespaced objects are written as the environment's own identity.
        live.act_as_tenant(&tenant::tenant_user(plan.inventory_namespace))?;
    }
    let mut failures = Vec::new();
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
    for (tier, objects) in apply::tiers(&rest).iter().enumerate() {
        if !failures.is_empty() {
            break;
        }
        failures.extend(
            apply::apply_tier(
                live,
                objects,
                &actions,
                options.concurrency,
                &mut changes,
                &mut snapshot,
            )
            .await,
        );
        lap(&format!("tier {tier} of stages 2 and 3 applied"));
    }
    let failed: BTreeSet<String> = failures.iter().filter_map(failed_object).collect();
    record_hashes(&mut inventory, plan, &failed);
    if !failures.is_empty() {
        if inventory != old {
            inventory
                .save(live, plan.inventory_namespace, plan.owner())
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
    prune::prune_stale(live, &mut inventory, &desired, plan.owner(), &mut changes).await?;
    inventory.commit = Some(plan.commit.to_string());
    if inventory != old {
        inventory
            .save(live, plan.inventory_namespace, plan.owner())
            .await?;
        changes.writes += 1;
    }

    lap("pruned, inventory recorded");
    let health = owned_health(live, plan, &actions, &snapshot, options).await?;
    Ok(SyncReport {
        commit: plan.commit.to_string(),
        changes,
        health,
    })
}

/// Every desired object recorded in `inventory` (shared CRDs aside), with an empty hash while
/// it is not applied yet.
fn grow(inventory: &mut Inventory, plan: &SyncPlan<'_>) {
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
}

/// The hash of what was applied, recorded for every desired object of `inventory` but the
/// `failed` ones.
fn record_hashes(inventory: &mut Inventory, plan: &SyncPlan<'_>, failed: &BTreeSet<String>) {
    for object in plan.objects {
        let reference = object.object_ref();
        if let Some(entry) = inventory.entries.get_mut(&reference)
            && !failed.contains(&reference.to_string())
        {
            entry.hash = plan.desired_hash(&reference).to_string();
        }
    }
}

/// The outcome of a sync that needs no write, read without one: every object unchanged (or a
/// shared CRD already present), every kind served, the inventory already recording exactly the
/// desired objects as applied and the commit, nothing to prune. None when any write is needed
/// (the sync must then run under the environment's lock, reading again). The same reads,
/// checks and decisions as [`sync`], so an error here is the one `sync` would report before
/// its first write.
pub async fn settled(
    live: &mut Live,
    plan: &SyncPlan<'_>,
    options: &SyncOptions,
    ahead: Option<ReadAhead>,
) -> Result<Option<SyncReport>, SyncError> {
    let lap = laps(plan.env, "settled");
    let LiveView {
        inventory: old,
        resolvable,
        snapshot,
    } = read_live(live, plan, ahead).await?;
    lap("inventory, discovery and live state read");
    let actions = check_before_writing(live, plan, &old, &snapshot, options.concurrency).await?;
    lap("checked and decided");
    if resolvable.len() < plan.objects.len()
        || actions
            .values()
            .any(|a| !matches!(a, Action::Unchanged | Action::Shared))
    {
        return Ok(None);
    }
    // What `sync` would record ([`grow`], [`record_hashes`], the commit) is what is recorded,
    // and it records nothing more (nothing to prune).
    let recorded_as_is = old.commit.as_deref() == Some(plan.commit)
        && plan
            .objects
            .iter()
            .all(|object| match old.entries.get(&object.object_ref()) {
                Some(entry) => entry.hash == plan.desired_hash(&object.object_ref()),
                None => is_shared(object, plan.shared_cluster),
            });
    let desired: BTreeSet<ObjectRef> = plan.objects.iter().map(Object::object_ref).collect();
    if !recorded_as_is || old.entries.keys().any(|r| !desired.contains(r)) {
        return Ok(None);
    }
    lap("nothing to write");
    let mut changes = ChangeSet::default();
    for object in plan.objects {
        match actions.get(&object.object_ref()) {
            Some(Action::Shared) => changes.shared.push(object.object_ref().to_string()),
            _ => changes.unchanged += 1,
        }
    }
    let health = owned_health(live, plan, &actions, &snapshot, options).await?;
    free_later(snapshot);
    Ok(Some(SyncReport {
        commit: plan.commit.to_string(),
        changes,
        health,
    }))
}

/// A debug log line per stage of `what` for `env`, with the milliseconds since this call: where
/// a sync's time goes (`SPROUT_LOG=debug`).
pub(crate) fn laps<'a>(env: &'a str, what: &'a str) -> impl Fn(&str) + 'a {
    let clock = std::time::Instant::now();
    move |stage: &str| {
        let ms = clock.elapsed().as_millis() as u64;
        tracing::debug!(env, ms, "{what}: {stage}");
    }
}

/// Frees `value` on another thread. The live state of a thousand objects takes milliseconds to
/// free, which the answer of a command need not wait for (a process that exits first gives
/// its memory back all at once).
pub fn free_later<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

/// Stage 1 of [`sync`]: the grown `inventory` recorded (unless it is as `old`), then CRDs and
/// Namespaces applied.
#[allow(clippy::too_many_arguments)]
async fn stage_one(
    live: &Live,
    plan: &SyncPlan<'_>,
    old: &Inventory,
    inventory: &mut Inventory,
    first: &mut Vec<&Object>,
    actions: &BTreeMap<ObjectRef, Action>,
    concurrency: usize,
    changes: &mut ChangeSet,
    snapshot: &mut Snapshot,
    made_now: &BTreeSet<String>,
) -> Result<(), SyncError> {
    if inventory != old {
        // The inventory lives in the environment's namespace, which it records too: sprout
        // makes that namespace (idempotently) just before, and takes it back if the inventory
        // cannot be written, so a failed first sync leaves no namespace behind.
        let home = make_home(live, plan, snapshot, made_now).await?;
        if let Some((reference, _)) = &home {
            first.retain(|o| o.object_ref() != *reference);
            changes.created.push(reference.to_string());
            changes.writes += 1;
        }
        if let Err(e) = inventory
            .save(live, plan.inventory_namespace, plan.owner())
            .await
        {
            if let Some((reference, applied)) = &home
                && let Some(resolved) = live.resolve_kind("v1", "Namespace")
            {
                let uid = applied.pointer("/metadata/uid").and_then(Value::as_str);
                let _ = live
                    .delete(&resolved, reference, uid.unwrap_or_default())
                    .await;
            }
            return Err(e);
        }
        if let Some((reference, applied)) = home {
            snapshot.insert(reference, applied);
        }
        changes.writes += 1;
    }
    let failures = apply::apply_tier(live, first, actions, concurrency, changes, snapshot).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(several(failures))
    }
}

/// The namespaces the environment's identity is bound in on a shared cluster (none elsewhere):
/// those that exist before stage 1 (its home, which the Lease made, and every one the live
/// state holds or the plan does not create), and those stage 1 creates.
fn identity_namespaces(
    plan: &SyncPlan<'_>,
    inventory: &Inventory,
    snapshot: &Snapshot,
) -> (BTreeSet<String>, BTreeSet<String>) {
    if !plan.shared_cluster {
        return Default::default();
    }
    let mut namespaces: BTreeSet<String> = plan
        .objects
        .iter()
        .map(|o| o.namespace().to_string())
        .chain(inventory.entries.keys().map(|r| r.namespace.clone()))
        .filter(|ns| !ns.is_empty())
        .collect();
    namespaces.insert(plan.inventory_namespace.to_string());
    namespaces.into_iter().partition(|namespace| {
        namespace == plan.inventory_namespace
            || !plan.objects.iter().any(|o| {
                o.kind() == "Namespace"
                    && o.group().is_empty()
                    && o.name() == namespace
                    && !snapshot.contains(&o.object_ref())
            })
    })
}

/// The environment's identity in `namespaces` (see [`tenant`]), not looked for in those
/// `made_now`; the writes sent.
async fn make_identity(
    live: &Live,
    plan: &SyncPlan<'_>,
    namespaces: &BTreeSet<String>,
    made_now: &BTreeSet<String>,
) -> Result<usize, SyncError> {
    if namespaces.is_empty() {
        return Ok(0);
    }
    tenant::make(
        live,
        plan.inventory_namespace,
        namespaces,
        made_now,
        plan.env,
        plan.project,
    )
    .await
}

/// Creates the environment's namespace (the inventory's home) from the desired Namespace when
/// it does not exist yet; returns it as applied when this call created it. One the Lease
/// `made_now` exists: its Namespace is applied with the rest of stage 1, and if the inventory
/// cannot be written, the operation that took the Lease decides what becomes of it.
async fn make_home(
    live: &Live,
    plan: &SyncPlan<'_>,
    snapshot: &Snapshot,
    made_now: &BTreeSet<String>,
) -> Result<Option<(ObjectRef, Value)>, SyncError> {
    let Some(namespace) = plan.objects.iter().find(|o| {
        o.kind() == "Namespace" && o.group().is_empty() && o.name() == plan.inventory_namespace
    }) else {
        return Ok(None);
    };
    let reference = namespace.object_ref();
    if snapshot.contains(&reference) || made_now.contains(plan.inventory_namespace) {
        return Ok(None);
    }
    let resolved = live.resolve(namespace)?;
    let applied = live.apply(&resolved, namespace, false, false).await?;
    Ok(Some((reference, applied)))
}

fn is_definition_or_namespace(object: &Object) -> bool {
    matches!(
        (object.group(), object.kind()),
        ("apiextensions.k8s.io", "CustomResourceDefinition") | ("", "Namespace")
    )
}

/// Deletes every object of the environment's inventory (reverse apply order, with prune's
/// safety rules) and the claims its StatefulSets made (see [`claims`]), then the inventory
/// itself once it is empty. A Namespace goes last and only when nothing but sprout's
/// bookkeeping is left in it (see [`teardown_namespaces`]): deleting a namespace deletes
/// everything in it, and sprout deletes only what it applied. On a shared cluster the deletes
/// of namespaced objects go as the environment's identity.
pub async fn teardown(
    live: &mut Live,
    owner: Owner<'_>,
    inventory_namespace: &str,
    shared_cluster: bool,
) -> Result<ChangeSet, SyncError> {
    let mut inventory = Inventory::load(live, inventory_namespace, owner).await?;
    let mut groups: BTreeSet<String> = inventory.entries.keys().map(|r| r.group.clone()).collect();
    groups.insert(String::new());
    // Deletes rest on the server's word of what it serves, never on a cached catalog's.
    live.rediscover(&groups).await?;
    inventory.key_cluster_scoped_without_namespace(live);
    let mut changes = ChangeSet::default();
    let mut namespaces: BTreeSet<String> = inventory
        .entries
        .keys()
        .map(|r| r.namespace.clone())
        .filter(|ns| !ns.is_empty())
        .collect();
    namespaces.insert(inventory_namespace.to_string());
    if shared_cluster && !inventory.entries.is_empty() {
        changes.writes += tenant::ensure(
            live,
            inventory_namespace,
            &namespaces,
            owner.env,
            owner.project,
        )
        .await?;
    }
    let namespace_entries: BTreeSet<ObjectRef> = inventory
        .entries
        .keys()
        .filter(|r| is_namespace(r))
        .cloned()
        .collect();
    let owned: BTreeSet<String> = namespace_entries.iter().map(|r| r.name.clone()).collect();
    let claims = claims::delete_claims(live, &inventory.entries, &owned, owner).await?;
    changes.writes += claims.len();
    prune::prune_stale(
        live,
        &mut inventory,
        &namespace_entries,
        owner,
        &mut changes,
    )
    .await?;
    // Objects of the inventory still finishing their delete hold their namespaces back until
    // the next run; a claim does not (its namespace's delete waits for it).
    let inventory_deleting = !changes.deleting.is_empty();
    let (gone, going) = prune::wait_until_gone(live, claims, claims::CONFIRM_TIMEOUT).await?;
    changes.pruned.extend(gone.iter().map(ObjectRef::to_string));
    changes.pruned.sort();
    changes
        .deleting
        .extend(going.iter().map(ObjectRef::to_string));
    if inventory_deleting {
        inventory.save(live, inventory_namespace, owner).await?;
        return Ok(changes);
    }
    let kept_home = teardown_namespaces(live, &mut inventory, owner, &mut changes).await?;
    if inventory.entries.is_empty() {
        if shared_cluster && kept_home {
            tenant::remove(live, inventory_namespace, &namespaces).await?;
        }
        inventory::delete(live, inventory_namespace, owner).await?;
    } else {
        inventory.save(live, inventory_namespace, owner).await?;
    }
    Ok(changes)
}

fn is_namespace(reference: &ObjectRef) -> bool {
    reference.kind == "Namespace" && reference.group.is_empty()
}

/// The inventory's Namespaces, once everything else it lists is gone: each is deleted when
/// nothing is left in it but sprout's own bookkeeping (see [`is_bookkeeping`]), else kept,
/// with the objects that keep it named. Returns whether the inventory's own namespace stays.
async fn teardown_namespaces(
    live: &mut Live,
    inventory: &mut Inventory,
    owner: Owner<'_>,
    changes: &mut ChangeSet,
) -> Result<bool, SyncError> {
    let namespaces: Vec<ObjectRef> = inventory
        .entries
        .keys()
        .filter(|r| is_namespace(r))
        .cloned()
        .collect();
    let mut kept_any = false;
    let mut deletable = BTreeSet::new();
    if !namespaces.is_empty() {
        let kinds = contents::kinds(live).await?;
        for reference in &namespaces {
            let found = contents::of(live, &reference.name, &kinds).await?;
            match why_kept(&found, |_| false) {
                None => {
                    deletable.insert(reference.clone());
                }
                Some(why) => {
                    kept_any = true;
                    changes.kept.push(format!("{reference} ({why})"));
                    inventory.entries.remove(reference);
                }
            }
        }
    }
    let keep: BTreeSet<ObjectRef> = inventory
        .entries
        .keys()
        .filter(|r| !deletable.contains(*r))
        .cloned()
        .collect();
    prune::prune_stale(live, inventory, &keep, owner, changes).await?;
    Ok(kept_any)
}

/// Why a namespace holding `found` must stay, if it must: it holds objects sprout did not apply
/// (or must keep) — anything but bookkeeping and what `deletable` accepts — or what it holds
/// cannot be known completely: a blind delete of it could delete such objects.
fn why_kept(found: &contents::Contents, deletable: impl Fn(&Value) -> bool) -> Option<String> {
    let left: Vec<String> = found
        .objects
        .iter()
        .filter(|o| !is_bookkeeping(o) && !deletable(o))
        .map(describe_live)
        .collect();
    let mut reasons = Vec::new();
    if !left.is_empty() {
        reasons.push(format!(
            "it holds objects sprout did not apply or must keep: {}",
            messages::capped(&left).join(", ")
        ));
    }
    if !found.unlisted.is_empty() {
        reasons.push(format!(
            "could not list {}, so it may hold objects sprout did not apply (`sprout gc` deletes it once it can list everything in it and finds only sprout's)",
            messages::capped(&found.unlisted).join(", ")
        ));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Why `namespace`, which carries sprout's labels but no environment accounts for any more (its
/// spec is gone), must stay, if it must: for what `down` would keep it for, except that objects
/// labelled for its environment `owner` (and not marked to survive) go with it — sprout applied
/// them, and their inventory went with the environment. `kinds` is [`contents::kinds`].
pub(crate) async fn why_orphan_stays(
    live: &Live,
    kinds: &contents::Kinds,
    namespace: &str,
    owner: Owner<'_>,
) -> Result<Option<String>, SyncError> {
    let found = contents::of(live, namespace, kinds).await?;
    Ok(why_kept(&found, |object| {
        owned_by(object, owner) && prune::keep_reason(object).is_none()
    }))
}

/// What a namespace may still hold when sprout deletes it: sprout's own bookkeeping (the
/// inventory, the lock, the environment's identity) and what the cluster makes in every
/// namespace or for objects already deleted (the root CA ConfigMap, the default account and
/// account tokens, events, endpoints, dependents of deleted owners, objects being deleted).
fn is_bookkeeping(object: &Value) -> bool {
    use crate::fork::tenancy::TENANT_IDENTITY;
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let metadata = &object["metadata"];
    if metadata
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null())
        || metadata["ownerReferences"]
            .as_array()
            .is_some_and(|o| !o.is_empty())
    {
        return true;
    }
    match kind {
        "ConfigMap" => name == "kube-root-ca.crt" || name.starts_with(inventory::INVENTORY_NAME),
        "ServiceAccount" => name == "default" || name == TENANT_IDENTITY,
        "RoleBinding" => name == TENANT_IDENTITY,
        "Lease" => name == crate::state::lease::LEASE_NAME,
        "Event" | "Endpoints" | "EndpointSlice" => true,
        // Made by the token controller for an account (Kubernetes < 1.24), gone with it.
        "Secret" => object["type"] == "kubernetes.io/service-account-token",
        _ => false,
    }
}

fn describe_live(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{kind}/{namespace}/{name}")
}

/// Objects of the environment's inventory that are marked to survive teardown (prune opt-out
/// annotations), read-only: deleting a whole cluster would take them too.
pub async fn marked_to_survive(
    live: &mut Live,
    owner: Owner<'_>,
    inventory_namespace: &str,
) -> Result<Vec<String>, SyncError> {
    let inventory = Inventory::load(live, inventory_namespace, owner).await?;
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
    refuse_what_the_server_cannot_compare(live, plan).await?;
    let LiveView {
        inventory,
        snapshot,
        ..
    } = read_live(live, plan, None).await?;
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
            let applied_as_is = plan.applied_as_is(&reference, inventory);
            let verdict =
                compare::judge(live, &resolved, object, applied_as_is, current, force).await;
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
                Err(SyncError::UnknownFields { .. }) => Some(format!(
                    "{reference} (differs in fields the server does not know)"
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

/// The project a live object is labelled for, if any.
pub fn project_of(live: &Value) -> Option<&str> {
    live.pointer(&format!(
        "/metadata/labels/{}",
        PROJECT_LABEL.replace('/', "~1")
    ))
    .and_then(Value::as_str)
    .filter(|p| !p.is_empty())
}

/// Whether a live object is the environment's: labelled for it and, when both it and the
/// environment know their project, for the same project (objects made before projects had an
/// identity carry none).
pub fn owned_by(live: &Value, owner: Owner<'_>) -> bool {
    owner_of(live) == Some(owner.env)
        && match project_of(live) {
            Some(project) => owner.project.is_empty() || project == owner.project,
            None => true,
        }
}

fn owner_description(live: &Value) -> String {
    match (owner_of(live), project_of(live)) {
        (Some(other), Some(project)) => {
            format!("it belongs to environment `{other}` of project `{project}`")
        }
        (Some(other), None) => format!("it belongs to environment `{other}`"),
        (None, _) => "it has no sprout.dev/environment label".into(),
    }
}

/// What to do with one desired object, given the inventory and its live state, and whether the
/// cheap test (see [`compare`]) already found it unchanged.
async fn decide(
    live: &Live,
    object: &Object,
    inventory: &Inventory,
    current: Option<&Value>,
    plan: &SyncPlan<'_>,
    schema_changes: bool,
    evidently_unchanged: bool,
) -> Result<Action, SyncError> {
    let reference = object.object_ref();
    let Some(current) = current else {
        return Ok(Action::Create);
    };
    if is_shared(object, plan.shared_cluster) {
        return Ok(Action::Shared);
    }
    let ours = owned_by(current, plan.owner());
    let force = inventory.entries.contains_key(&reference);
    if !ours && !force {
        return Err(SyncError::NotOurs {
            object: reference.to_string(),
            owner: owner_description(current),
        });
    }
    let resolved = live.resolve(object)?;
    if evidently_unchanged {
        return Ok(Action::Unchanged);
    }
    if schema_changes {
        return Ok(Action::Configure { force });
    }
    // The cheap test failed (above): the server's dry run decides.
    match compare::judge(live, &resolved, object, false, Some(current), force).await? {
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

/// The health of the objects this environment owns (shared CRDs left out), when the sync
/// waits for it.
async fn owned_health(
    live: &Live,
    plan: &SyncPlan<'_>,
    actions: &BTreeMap<ObjectRef, Action>,
    snapshot: &Snapshot,
    options: &SyncOptions,
) -> Result<Option<HealthReport>, SyncError> {
    if !options.wait {
        return Ok(None);
    }
    let owned: Vec<&Object> = plan
        .objects
        .iter()
        .filter(|o| !matches!(actions.get(&o.object_ref()), Some(Action::Shared)))
        .collect();
    Ok(Some(
        health_of(live, &owned, snapshot, options.timeout).await?,
    ))
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
        | SyncError::UnknownFields { object, .. }
        | SyncError::TooLarge { object, .. } => Some(object.clone()),
        _ => None,
    }
}

/// The comparison of `status` and `diff` is a dry-run apply: objects the server cannot apply
/// for a bug of its version (see [`known_bugs`]) are refused as sync refuses them, before any
/// request about them.
async fn refuse_what_the_server_cannot_compare(
    live: &Live,
    plan: &SyncPlan<'_>,
) -> Result<(), SyncError> {
    let bugs = known_bugs::refusals(live, plan.objects).await?;
    match bugs.is_empty() {
        true => Ok(()),
        false => Err(several(bugs)),
    }
}

fn several(mut errors: Vec<SyncError>) -> SyncError {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        SyncError::Several { errors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_a_namespace_may_still_hold_when_sprout_deletes_it() {
        let object = |kind: &str, name: &str, extra: Value| {
            let mut value = json!({"kind": kind, "metadata": {"name": name, "namespace": "pr-1"}});
            if let (Some(target), Value::Object(extra)) = (value.as_object_mut(), extra) {
                target.extend(extra);
            }
            value
        };
        let none = json!({});
        let bookkeeping = [
            object("ConfigMap", "kube-root-ca.crt", none.clone()),
            object("ConfigMap", "sprout-inventory", none.clone()),
            object("ConfigMap", "sprout-inventory-2", none.clone()),
            object("Lease", "sprout-lock", none.clone()),
            object("ServiceAccount", "default", none.clone()),
            object("ServiceAccount", "sprout-env", none.clone()),
            object("RoleBinding", "sprout-env", none.clone()),
            object("Event", "x.1", none.clone()),
            object(
                "Secret",
                "default-token-abc",
                json!({"type": "kubernetes.io/service-account-token"}),
            ),
            json!({"kind": "Pod", "metadata": {"name": "web-1", "ownerReferences": [{"kind": "ReplicaSet"}]}}),
            json!({"kind": "Pod", "metadata": {"name": "web-2", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        ];
        for value in &bookkeeping {
            assert!(is_bookkeeping(value), "{value}");
        }
        let foreign = [
            object("ConfigMap", "foreign", none.clone()),
            object("Secret", "db", json!({"type": "Opaque"})),
            object("ServiceAccount", "ci", none.clone()),
            object("RoleBinding", "admins", none.clone()),
            object("Lease", "leader", none.clone()),
        ];
        for value in &foreign {
            assert!(!is_bookkeeping(value), "{value}");
        }
        assert_eq!(describe_live(&foreign[0]), "ConfigMap/pr-1/foreign");
    }
}
