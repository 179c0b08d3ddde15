//! One `gc` pass: gather the facts (specs, records, one branch listing per remote, orphans),
//! let [`lifecycle::decide`](crate::lifecycle::decide) decide, and carry the actions out
//! through the same operations the commands use. A dry run stops after deciding: it writes
//! nothing, to clusters or to records.

use super::Session;
use super::down::{DownRequest, Released};
use crate::cluster::provider::{self, ClusterRecord};
use crate::cluster::{self, ClusterError, Target};
use crate::error::{Error, Result};
use crate::fork::ownership::{ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_VALUE, PROJECT_LABEL};
use crate::lifecycle::Policy;
use crate::lifecycle::decide::{
    self, Action, ActionKind, BreakerTrip, EnvFacts, Facts, Follows, Listing, Note, Orphan,
};
use crate::source::remotes;
use crate::state::lock::Wait;
use crate::sync::contents::{self, Kinds};
use crate::sync::live::Live;
use crate::sync::{self, SyncOptions};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long one remote may take to list its branches.
const LISTING_TIMEOUT: Duration = Duration::from_secs(30);
/// Where a pass remembers orphans it has seen (deleted only a grace period later).
const ORPHANS_FILE: &str = "gc-orphans.json";

#[derive(Debug, Clone)]
pub struct GcRequest {
    /// Decide as if it were this time (planning; only with `dry_run`).
    pub at: Option<DateTime<Utc>>,
    pub dry_run: bool,
    pub allow_mass_delete: bool,
    /// How environments that wake are synced.
    pub sync: SyncOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Dry run: what the pass would do.
    Planned,
    Done,
    /// Another run holds the environment: left for the next pass.
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    #[serde(flatten)]
    pub action: Action,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub at: DateTime<Utc>,
    pub dry_run: bool,
    pub actions: Vec<ActionReport>,
    pub notes: Vec<Note>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerTrip>,
}

impl GcReport {
    pub fn failed(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| a.outcome == Outcome::Failed)
            .count()
    }
}

/// How an orphan is removed.
#[derive(Debug, Clone)]
enum Remover {
    Namespace {
        target: Target,
        name: String,
    },
    /// A cluster whose environment's spec is gone; only its record, or its tags, know it.
    RecordedCluster {
        env: String,
        record: ClusterRecord,
    },
    /// sprout's files for a cluster of an environment that has neither spec nor record.
    LocalFiles {
        env: String,
    },
}

pub async fn pass(session: &mut Session<'_>, request: &GcRequest) -> Result<GcReport> {
    if request.at.is_some() && !request.dry_run {
        return Err(Error::Usage(
            "--at plans a pass at another time: use it with --dry-run".into(),
        ));
    }
    if !request.dry_run {
        session.project.ensure_identity()?;
    }
    session.lock_wait = Wait::No;
    let now = request.at.unwrap_or_else(Utc::now);
    let (facts, removers, mut notes) = gather(session, now, request.allow_mass_delete).await?;
    let decision = decide::decide(&facts);
    notes.extend(decision.notes.iter().cloned());
    let mut report = GcReport {
        at: now,
        dry_run: request.dry_run,
        actions: Vec::new(),
        notes,
        breaker: decision.breaker.clone(),
    };
    if request.dry_run {
        report.actions = decision
            .actions
            .iter()
            .map(|action| ActionReport {
                action: action.clone(),
                outcome: Outcome::Planned,
                message: None,
            })
            .collect();
        return Ok(report);
    }
    record_branch_watches(session, &decision.branch_updates, &mut report.notes);
    remember_orphans(session, &decision.orphans_seen)?;
    for action in &decision.actions {
        if action.action != ActionKind::DeleteOrphan && !still_due(session, action, &facts) {
            report.actions.push(ActionReport {
                action: action.clone(),
                outcome: Outcome::Skipped,
                message: Some("no longer due: another run changed it since this pass began".into()),
            });
            continue;
        }
        let result = carry_out(session, action, &removers, &request.sync).await;
        let (outcome, message) = match result {
            Ok(kept) => (Outcome::Done, kept),
            Err(Error::Busy { holder, .. }) => (
                Outcome::Skipped,
                Some(format!(
                    "busy: another run is changing it{}",
                    holder.map(|h| format!(" ({h})")).unwrap_or_default()
                )),
            ),
            Err(error) => (Outcome::Failed, Some(error.to_string())),
        };
        report.actions.push(ActionReport {
            action: action.clone(),
            outcome,
            message,
        });
    }
    Ok(report)
}

/// Carries out `action`; returns what a teardown or sleep kept, and why (see [`kept`]).
async fn carry_out(
    session: &mut Session<'_>,
    action: &Action,
    removers: &BTreeMap<String, Remover>,
    sync: &SyncOptions,
) -> Result<Option<String>> {
    let name = action.environment.as_str();
    let command = format!("gc ({} {name})", kind_name(action.action));
    match action.action {
        ActionKind::Teardown => {
            let request = DownRequest {
                keep_spec: false,
                force: false,
            };
            let outcome = super::down::down(session, name, &request, &command).await?;
            return Ok(kept(&outcome.released));
        }
        ActionKind::Sleep => {
            let released = super::sleep::sleep(session, name, &command).await?;
            return Ok(kept(&released));
        }
        ActionKind::Wake => {
            super::sleep::wake(session, name, sync.clone(), &command).await?;
        }
        ActionKind::DeleteOrphan => {
            let remover = removers
                .get(&action.detail)
                .ok_or_else(|| Error::Usage(format!("{}: no longer found", action.detail)))?;
            remove_orphan(session, remover).await?;
        }
    }
    Ok(None)
}

/// What a teardown left in place and why (a namespace holding objects sprout did not apply, or
/// whose contents could not all be listed), for the action's message: a pass says it as `down`
/// does.
fn kept(released: &Released) -> Option<String> {
    let kept = &released.objects.as_ref()?.kept;
    (!kept.is_empty()).then(|| format!("kept {}", kept.join("; kept ")))
}

fn kind_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Teardown => "teardown",
        ActionKind::Sleep => "sleep",
        ActionKind::Wake => "wake",
        ActionKind::DeleteOrphan => "delete-orphan",
    }
}

async fn gather(
    session: &Session<'_>,
    now: DateTime<Utc>,
    allow_mass_delete: bool,
) -> Result<(Facts, BTreeMap<String, Remover>, Vec<Note>)> {
    let project = &session.project;
    let names: BTreeSet<String> = project.environment_names()?.into_iter().collect();
    let mut environments = Vec::new();
    let mut notes: Vec<Note> = Vec::new();
    let mut shared_targets: BTreeMap<String, Target> = BTreeMap::new();
    for name in &names {
        match env_facts(session, name) {
            Ok((facts, shared)) => {
                if let Some(target) = shared {
                    shared_targets.insert(target_key(&target), target);
                }
                environments.push(facts);
            }
            Err(note) => notes.push(note),
        }
    }
    let remotes: BTreeSet<String> = environments
        .iter()
        .filter_map(|e| e.follows.as_ref()?.as_ref().ok())
        .map(|f| f.remote.clone())
        .collect();
    let listings = remotes
        .into_iter()
        .map(|remote| {
            let listing = match remotes::list_branches(&remote, LISTING_TIMEOUT) {
                Ok(branches) => Listing::Complete(branches),
                Err(why) => Listing::Unknown(why),
            };
            (remote, listing)
        })
        .collect();
    for target in crate::state::shared_clusters::all(&project.state_dir()) {
        if cluster::check_allowed(project, &target).is_ok() {
            shared_targets.insert(target_key(&target), target);
        }
    }
    let (orphans, removers) = find_orphans(session, &names, &shared_targets, &mut notes).await?;
    let grace = humantime::parse_duration(&project.settings.grace_period)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .unwrap_or_else(|| chrono::Duration::minutes(10));
    let facts = Facts {
        environments,
        listings,
        orphans,
        now,
        grace,
        max_delete_percent: project.settings.max_delete_percent,
        allow_mass_delete,
    };
    Ok((facts, removers, notes))
}

/// One environment as a pass sees it, and its shared cluster if it has one; a note when its
/// spec cannot be read (it is then not acted on).
fn env_facts(
    session: &Session<'_>,
    name: &str,
) -> std::result::Result<(EnvFacts, Option<Target>), Note> {
    let project = &session.project;
    let not_acted_on = |e: &dyn std::fmt::Display| Note {
        environment: Some(name.to_string()),
        message: format!("not acted on: {e}"),
    };
    let env = project.environment(name).map_err(|e| not_acted_on(&e))?;
    let policy = Policy::of(&env).map_err(|e| not_acted_on(&e))?;
    let state = session.store().load(name).map_err(|e| not_acted_on(&e))?;
    let mut forbidden = None;
    let mut shared = None;
    if env.on_shared_cluster() && !env.protected {
        match cluster::target_for(project, &env, session.user_kubeconfig()) {
            Ok(target) => shared = Some(target),
            Err(ClusterError::Forbidden { context }) => forbidden = Some(context),
            Err(_) => {}
        }
    }
    let follows = policy.on_branch_delete.then(|| {
        remotes::remote_of(&env.source.repo, env.branch(), &project.root).map(|remote| Follows {
            remote,
            branch: env.branch().to_string(),
        })
    });
    let facts = EnvFacts {
        name: name.to_string(),
        protected: env.protected,
        forbidden,
        policy,
        state,
        follows,
    };
    Ok((facts, shared))
}

/// Whether `action` still holds for its environment as it is now: another run may have
/// extended, woken or taken it down since the pass decided.
fn still_due(session: &Session<'_>, action: &Action, decided: &Facts) -> bool {
    let Ok((fresh, _)) = env_facts(session, &action.environment) else {
        return false;
    };
    let again = Facts {
        environments: vec![fresh],
        orphans: Vec::new(),
        allow_mass_delete: true,
        ..decided.clone()
    };
    decide::decide(&again)
        .actions
        .iter()
        .any(|a| a.action == action.action)
}

fn target_key(target: &Target) -> String {
    format!(
        "{}#{}",
        target.kubeconfig.display(),
        target.context.as_deref().unwrap_or("")
    )
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SeenOrphans {
    first_seen: BTreeMap<String, DateTime<Utc>>,
}

fn orphans_file(session: &Session<'_>) -> std::path::PathBuf {
    session.project.state_dir().join(ORPHANS_FILE)
}

fn seen_orphans(session: &Session<'_>) -> SeenOrphans {
    std::fs::read_to_string(orphans_file(session))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn remember_orphans(session: &Session<'_>, orphans: &[Orphan]) -> Result<()> {
    let seen = SeenOrphans {
        first_seen: orphans
            .iter()
            .filter_map(|o| Some((o.object.clone(), o.first_seen?)))
            .collect(),
    };
    let path = orphans_file(session);
    std::fs::create_dir_all(session.project.state_dir())
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&seen).expect("serializes"),
    )
    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Everything carrying sprout's marks that no environment of this project accounts for:
/// records and cluster folders of environments whose spec is gone, and labelled namespaces on
/// the shared clusters the project's environments use.
async fn find_orphans(
    session: &Session<'_>,
    names: &BTreeSet<String>,
    shared_targets: &BTreeMap<String, Target>,
    notes: &mut Vec<Note>,
) -> Result<(Vec<Orphan>, BTreeMap<String, Remover>)> {
    let project = &session.project;
    let seen = seen_orphans(session);
    let mut orphans = Vec::new();
    let mut removers = BTreeMap::new();
    let mut add = |object: String, environment: Option<String>, ours: bool, remover| {
        orphans.push(Orphan {
            first_seen: seen.first_seen.get(&object).copied(),
            object: object.clone(),
            environment,
            ours,
        });
        if let Some(remover) = remover {
            removers.insert(object, remover);
        }
    };
    let store = session.store();
    let mut recorded = BTreeSet::new();
    // Environments whose record another checkout or `serve` keeps: their namespaces are theirs.
    let mut kept_by_record = BTreeSet::new();
    for env in store.names()? {
        if names.contains(&env) {
            continue;
        }
        if matches!(store, crate::state::StateStore::Kubernetes(_)) {
            kept_by_record.insert(env.clone());
            // A shared store holds records of other checkouts and of `serve` (previews made
            // from templates in its pod): a spec missing here does not make them orphans.
            notes.push(Note {
                message: format!(
                    "record of environment {env} has no spec in this checkout: kept (the cluster state backend is shared)"
                ),
                environment: Some(env),
            });
            continue;
        }
        let state = store.load(&env)?;
        recorded.insert(env.clone());
        let object = match &state.cluster {
            Some(record) => format!(
                "{} cluster {} of removed environment {env}",
                cluster::provider_name(record.provider),
                record.name
            ),
            None => format!("record of removed environment {env}"),
        };
        let remover = match state.cluster {
            Some(record) => Remover::RecordedCluster {
                env: env.clone(),
                record,
            },
            None => Remover::LocalFiles { env: env.clone() },
        };
        add(object, Some(env), true, Some(remover));
    }
    if let Ok(entries) = std::fs::read_dir(project.state_dir().join("clusters")) {
        for entry in entries.flatten() {
            let env = entry.file_name().to_string_lossy().into_owned();
            if names.contains(&env) || recorded.contains(&env) {
                continue;
            }
            let object = format!("cluster files .sprout/clusters/{env} of removed environment");
            add(
                object,
                Some(env.clone()),
                true,
                Some(Remover::LocalFiles { env }),
            );
        }
    }
    let identity = project.identity();
    let with_records: BTreeSet<String> = recorded.union(&kept_by_record).cloned().collect();
    for (object, env, ours, remover) in
        unnamed_clusters(session, names, &with_records, notes).await?
    {
        add(object, env, ours, remover);
    }
    for target in shared_targets.values() {
        let namespaces = match labelled_namespaces(target).await {
            Ok(namespaces) => namespaces,
            Err(e) => {
                notes.push(Note {
                    environment: None,
                    message: format!("orphans not looked for: {e}"),
                });
                continue;
            }
        };
        let mut checked = None;
        for namespace in namespaces {
            let labels = namespace.metadata.labels.clone().unwrap_or_default();
            let name = namespace.metadata.name.clone().unwrap_or_default();
            let env = labels.get(ENVIRONMENT_LABEL).cloned();
            let owner = labels.get(PROJECT_LABEL).map(String::as_str);
            let ours = !identity.is_empty() && owner == Some(identity);
            if ours
                && env
                    .as_ref()
                    .is_some_and(|e| names.contains(e) || kept_by_record.contains(e))
            {
                continue;
            }
            if !ours && env.as_ref().is_some_and(|e| names.contains(e)) && owner.is_none() {
                // Made before projects had identities, by an environment of this name.
                continue;
            }
            let object = format!(
                "namespace {name} ({}){}",
                target.context.as_deref().unwrap_or("current context"),
                match owner {
                    Some(owner) if !ours => format!(", project {owner}"),
                    _ => String::new(),
                }
            );
            let owner = sync::Owner {
                env: env.as_deref().unwrap_or_default(),
                project: identity,
            };
            if ours && let Some(why) = why_it_stays(target, &mut checked, &name, owner).await {
                notes.push(Note {
                    message: format!("{object} belongs to no environment but stays: {why}"),
                    environment: env,
                });
                continue;
            }
            let remover = ours.then(|| Remover::Namespace {
                target: target.clone(),
                name,
            });
            add(object, env, ours, remover);
        }
    }
    Ok((orphans, removers))
}

/// Why an orphaned namespace of this project must stay, if it must: for what `down` would keep
/// it for (`down` keeps a namespace holding what sprout did not apply, or whose contents it
/// cannot all list, and leaves sprout's labels on it). A check that fails keeps it too.
/// `checked` holds the connection and discovery of `target`, made for its first orphan.
async fn why_it_stays(
    target: &Target,
    checked: &mut Option<(Live, Kinds)>,
    name: &str,
    owner: sync::Owner<'_>,
) -> Option<String> {
    let not_checked =
        |e: &dyn std::fmt::Display| Some(format!("what it holds could not be listed ({e})"));
    if checked.is_none() {
        let live = match super::connect(owner.env, target).await {
            Ok(live) => live,
            Err(e) => return not_checked(&e),
        };
        let kinds = match contents::kinds(&live).await {
            Ok(kinds) => kinds,
            Err(e) => return not_checked(&e),
        };
        *checked = Some((live, kinds));
    }
    let (live, kinds) = checked.as_ref()?;
    sync::why_orphan_stays(live, kinds, name, owner)
        .await
        .unwrap_or_else(|e| not_checked(&e))
}

/// An orphan found: what it is, its environment, whether it is this project's, its remover.
type Found = (String, Option<String>, bool, Option<Remover>);

/// Clusters sprout made (its name, labels or tags say so) that no spec and no record names any
/// more — a record lost with a laptop, a checkout deleted — in each cluster backend (and EKS
/// region) this project's specs use. Only a cluster tagged with this project's identity is
/// ours to delete; kind and minikube clusters carry only a name, so they are reported.
async fn unnamed_clusters(
    session: &Session<'_>,
    names: &BTreeSet<String>,
    recorded: &BTreeSet<String>,
    notes: &mut Vec<Note>,
) -> Result<Vec<Found>> {
    let project = &session.project;
    let store = session.store();
    let mut known = BTreeSet::new();
    let mut backends = BTreeMap::new();
    for name in names.iter().chain(recorded) {
        let Ok(env) = project.environment(name) else {
            // A removed environment's cluster is known by its record.
            if let Ok(state) = store.load(name)
                && let Some(record) = state.cluster
            {
                known.insert(record.name);
            }
            continue;
        };
        let Some(kind) = env.cluster.as_ref().map(|c| c.provider) else {
            continue;
        };
        if matches!(
            kind,
            crate::spec::Provider::Namespace | crate::spec::Provider::Envtest
        ) {
            // Shared namespaces are swept below; local control planes are sprout's files.
            continue;
        }
        let recorded = store.load(name).ok().and_then(|state| state.cluster);
        let Ok(backend) = provider::for_environment(project, &env, recorded.as_ref()) else {
            continue;
        };
        let record = backend.record();
        known.insert(record.name.clone());
        backends
            .entry((cluster::provider_name(kind), record.region.clone()))
            .or_insert((kind, backend));
    }
    let identity = project.identity();
    let mut found = Vec::new();
    for ((provider_name, region), (kind, backend)) in backends {
        let owned = match backend.list_owned().await {
            Ok(owned) => owned,
            Err(e) => {
                notes.push(Note {
                    environment: None,
                    message: format!("{provider_name} clusters not looked for: {e}"),
                });
                continue;
            }
        };
        for owned in owned.into_iter().filter(|c| !known.contains(&c.name)) {
            let env = owned.environment.clone().or_else(|| {
                owned
                    .name
                    .strip_prefix(provider::CLUSTER_PREFIX)
                    .map(str::to_string)
            });
            if env
                .as_ref()
                .is_some_and(|e| names.contains(e) || recorded.contains(e))
            {
                continue;
            }
            let ours = !identity.is_empty() && owned.project.as_deref() == Some(identity);
            let whose = match &owned.project {
                Some(_) if ours => String::new(),
                Some(other) => format!(", project {other}"),
                None => ", project unknown".to_string(),
            };
            let record = ClusterRecord {
                provider: kind,
                name: owned.name.clone(),
                region: region.clone(),
            };
            // Removed as its environment's cluster: only when that is the very cluster found.
            let removable = |env: &str| {
                let bare = crate::spec::Environment::bare(env, project, kind);
                provider::for_environment(project, &bare, Some(&record))
                    .is_ok_and(|backend| backend.record().name == owned.name)
            };
            let remover = match &env {
                Some(env) if ours && removable(env) => Some(Remover::RecordedCluster {
                    env: env.clone(),
                    record: record.clone(),
                }),
                _ => None,
            };
            let object = format!("{provider_name} cluster {}{whose}", owned.name);
            let ours = remover.is_some();
            found.push((object, env, ours, remover));
        }
    }
    Ok(found)
}

async fn labelled_namespaces(target: &Target) -> Result<Vec<Namespace>> {
    let client = cluster::client(target).await?;
    let api: Api<Namespace> = Api::all(client);
    let params = ListParams::default().labels(&format!("{MANAGED_BY}={MANAGED_BY_VALUE}"));
    let list = api.list(&params).await.map_err(|e| {
        Error::Usage(format!(
            "cannot list namespaces in {}: {e}",
            cluster::server_of(target)
        ))
    })?;
    Ok(list.items)
}

async fn remove_orphan(session: &Session<'_>, remover: &Remover) -> Result<()> {
    match remover {
        Remover::Namespace { target, name } => {
            let client = cluster::client(target).await?;
            let api: Api<Namespace> = Api::all(client);
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(e) => Err(Error::Usage(format!("cannot delete namespace {name}: {e}"))),
            }
        }
        Remover::RecordedCluster { env, record } => {
            let bare = crate::spec::Environment::bare(env, &session.project, record.provider);
            let backend = provider::for_environment(&session.project, &bare, Some(record))?;
            let kubeconfig = cluster::owned_kubeconfig(&session.project, env);
            backend.delete(&kubeconfig, session.progress).await?;
            remove_local(session, env)
        }
        Remover::LocalFiles { env } => {
            let dir = provider::cluster_dir(&session.project, env);
            if dir.join("control-plane").is_dir() {
                crate::cluster::envtest::LocalControlPlane::new(&dir.join("control-plane"))
                    .stop()?;
            }
            remove_local(session, env)
        }
    }
}

fn remove_local(session: &Session<'_>, env: &str) -> Result<()> {
    let dir = provider::cluster_dir(&session.project, env);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(format!("cannot remove {}", dir.display()), e));
        }
        _ => {}
    }
    session.store().remove(env)
}

/// Writes what the listings said about each environment's branch into its record; an
/// environment another run holds keeps its record as it is (the next pass sees it again).
fn record_branch_watches(
    session: &Session<'_>,
    updates: &BTreeMap<String, crate::state::BranchWatch>,
    notes: &mut Vec<Note>,
) {
    let store = session.store();
    for (env, watch) in updates {
        let written = store
            .lock(env, "gc (record branch listing)", Wait::No)
            .and_then(|_lock| {
                let mut state = store.load(env)?;
                state.branch = watch.clone();
                store.save(&state)
            });
        if let Err(e) = written {
            notes.push(Note {
                environment: Some(env.clone()),
                message: format!("branch listing not recorded: {e}"),
            });
        }
    }
}
