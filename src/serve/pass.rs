//! One pass of `sprout serve`, level-triggered: read every generator, compute which previews
//! should exist and at which commit, and converge toward that through the operations layer —
//! `up` for a new item, `sync` for a pushed one, `down` for one confirmed gone — then the
//! lifecycle pass (TTLs, schedules, branches, orphans) that `gc` runs.
//!
//! Fail-safe (DESIGN.md, Safety): a generator whose listing is unknown keeps its previews as
//! they are and freezes their deletion; an item counts as gone only when a direct read says it
//! is closed or merged, or when two complete listings at least `gracePeriod` apart lack it.

use super::branches::{self, Branch, BranchGenerator};
use super::config::{Generator, GeneratorSource};
use super::listing::{Listing, ShrinkGuard};
use super::metrics::Metrics;
use super::scm::{ChangeRequest, Closure, DeploymentState, Feedback, HttpOptions, Scm};
use crate::error::{Error, Result};
use crate::ops::down::DownRequest;
use crate::ops::gc::{GcReport, GcRequest, Outcome};
use crate::ops::up::{GENERATOR_LABEL, Generated, Origin, UpRequest};
use crate::ops::{self, Session, Silent};
use crate::project::Project;
use crate::state::lock::Wait;
use crate::state::{BranchWatch, EnvironmentState, Phase, StateStore};
use crate::sync::SyncOptions;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LISTING_TIMEOUT: Duration = Duration::from_secs(30);

/// One generator of sprout.yaml, with its client and what it remembers between passes.
pub struct Source {
    pub generator: Generator,
    /// How its previews are labelled (`sprout.dev/generator`): `github:acme/shop`.
    pub key: String,
    kind: SourceKind,
}

enum SourceKind {
    /// Boxed: an SCM client is some 900 bytes, a branch generator a tenth of that.
    Scm(Box<Scm>),
    Branches(BranchGenerator),
}

/// One item of a generator: what a preview is made from.
#[derive(Debug, Clone)]
struct Item {
    environment: String,
    origin: Origin,
    reference: String,
    commit: String,
    owner: String,
    number: Option<u64>,
}

/// An operation a pass ran, for logs, `--once`'s exit code and tests.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub environment: String,
    pub kind: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    pub at: DateTime<Utc>,
    pub operations: Vec<Operation>,
    /// Generators whose listing was unknown this pass (deletions frozen), with why.
    pub frozen: BTreeMap<String, String>,
    /// Items waiting for room under their generator's `max`.
    pub queued: Vec<String>,
    pub lifecycle: Option<GcReport>,
}

impl PassReport {
    pub fn failed(&self) -> usize {
        self.operations.iter().filter(|o| !o.ok).count()
            + self.lifecycle.as_ref().map_or(0, GcReport::failed)
    }
}

/// What serve keeps between passes: clients (with their ETag caches and shrink guards) and
/// each environment's backoff.
pub struct Daemon {
    pub root: PathBuf,
    pub user_kubeconfig: Option<PathBuf>,
    pub sources: Vec<Source>,
    pub metrics: Metrics,
    pub sync: SyncOptions,
    /// `--state`/`--namespace` of `serve`, applied to sprout.yaml's `state:` each time the
    /// project is read.
    pub state: crate::cli::StateArgs,
    /// With the cluster state backend, only the elected leader acts.
    pub leader: Option<crate::state::leader::LeaderCheck>,
    backoff: HashMap<String, Backoff>,
}

#[derive(Debug, Clone)]
struct Backoff {
    until: Instant,
    failures: u32,
}

impl Daemon {
    /// Reads the generators (tokens included): a bad one is a start-up error with its line.
    pub fn new(
        project: &Project,
        user_kubeconfig: Option<PathBuf>,
        metrics: Metrics,
        sync: SyncOptions,
        http: HttpOptions,
        state: crate::cli::StateArgs,
    ) -> Result<Daemon> {
        let tokens = project.generator_tokens()?;
        let mut sources = Vec::new();
        for (generator, token) in project.settings.generators.iter().zip(tokens) {
            let template = project
                .root
                .join(crate::project::TEMPLATES_DIR)
                .join(format!("{}.yaml.tera", generator.template));
            let builtin = matches!(generator.template.as_str(), "preview" | "branch");
            if !builtin && !template.is_file() {
                return Err(Error::Usage(format!(
                    "{}: generator template `{}` not found ({} does not exist)",
                    crate::project::SETTINGS_FILE,
                    generator.template,
                    template.display()
                )));
            }
            let (key, kind) = match &generator.source {
                GeneratorSource::Branches(source) => (
                    format!("branches:{}", crate::source::repo::redact(&source.repo)),
                    SourceKind::Branches(BranchGenerator::new(source).map_err(Error::Usage)?),
                ),
                _ => {
                    let scm =
                        Scm::for_generator(generator, token, http.clone(), Some(metrics.clone()))
                            .map_err(|e| Error::Usage(e.to_string()))?
                            .expect("github and gitlab generators have a client");
                    (
                        format!("{}:{}", scm.provider(), scm.repository()),
                        SourceKind::Scm(Box::new(scm)),
                    )
                }
            };
            sources.push(Source {
                generator: generator.clone(),
                key: label_value(&key),
                kind,
            });
        }
        let mut daemon = Daemon {
            root: project.root.clone(),
            user_kubeconfig,
            sources,
            metrics,
            sync,
            state,
            leader: None,
            backoff: HashMap::new(),
        };
        daemon.seed_guards(project)?;
        Ok(daemon)
    }

    /// The shrink guards remember across passes (and processes: `--once` runs, restarts) the
    /// last believed length and a held-back listing; a generator without a memory yet starts
    /// from the previews the records hold, so a first listing that comes back empty is held
    /// back as it would have been before.
    fn seed_guards(&mut self, project: &Project) -> Result<()> {
        let previews = previews(project, self.user_kubeconfig.as_deref())?;
        let mut saved: BTreeMap<String, ShrinkGuard> =
            std::fs::read_to_string(guards_file(project))
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
        for source in &mut self.sources {
            let count = previews
                .values()
                .filter(|p| p.generator == source.key)
                .count();
            let saved = saved.remove(&source.key);
            match &mut source.kind {
                SourceKind::Scm(scm) => {
                    if let Some(guard) = saved {
                        scm.restore_guard(guard);
                    }
                    scm.seed(count);
                }
                SourceKind::Branches(generator) => {
                    if let Some(guard) = saved {
                        generator.restore_guard(guard);
                    }
                    generator.seed(count);
                }
            }
        }
        Ok(())
    }

    fn save_guards(&self, project: &Project) -> Result<()> {
        let guards: BTreeMap<&str, ShrinkGuard> = self
            .sources
            .iter()
            .map(|source| {
                let guard = match &source.kind {
                    SourceKind::Scm(scm) => scm.guard(),
                    SourceKind::Branches(generator) => generator.guard(),
                };
                (source.key.as_str(), guard)
            })
            .collect();
        let path = guards_file(project);
        let text = serde_json::to_string_pretty(&guards).expect("guards serialize");
        std::fs::create_dir_all(project.state_dir())
            .and_then(|_| std::fs::write(&path, text))
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    }

    /// The project as sprout.yaml says, with `serve`'s state flags applied and the specs its
    /// records keep (the previews another replica made).
    pub fn project(&self) -> Result<Project> {
        let mut project = Project::open(&self.root)?;
        self.state.apply(&mut project.settings.state)?;
        ops::adopt_stored_specs(&mut project, self.user_kubeconfig.as_deref())?;
        Ok(project)
    }

    /// Whether this replica may act now (always, without an election). Checked before every
    /// operation: a leader that could not renew stops before its lease can be taken over.
    fn may_act(&self) -> bool {
        self.leader.as_ref().is_none_or(|l| l.is_leader())
    }

    fn session(&self, lock_wait: Wait) -> Result<Session<'static>> {
        static SILENT: Silent = Silent;
        Ok(Session {
            project: self.project()?,
            user_kubeconfig: self.user_kubeconfig.clone(),
            progress: &SILENT,
            lock_wait,
        })
    }

    /// One pass over every generator, then the lifecycle pass.
    pub async fn pass(&mut self) -> Result<PassReport> {
        let now = Utc::now();
        let project = self.project()?;
        let grace = humantime::parse_duration(&project.settings.grace_period)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .unwrap_or_else(|| chrono::Duration::minutes(10));
        let mut report = PassReport {
            at: now,
            operations: Vec::new(),
            frozen: BTreeMap::new(),
            queued: Vec::new(),
            lifecycle: None,
        };
        if !self.may_act() {
            tracing::info!("a follower: another replica leads, this one only serves webhooks");
            return Ok(report);
        }
        let remotes = self.list_remotes(&project.root).await;
        for index in 0..self.sources.len() {
            let listing = self.list(index, &remotes).await;
            let key = self.sources[index].key.clone();
            match listing {
                Listing::Unknown { reason } => {
                    tracing::warn!(generator = %key, %reason, "listing unknown: its previews are kept and their deletion frozen");
                    self.metrics.set_listing_unknown(&key, true);
                    self.record_frozen(&project, &key, &reason)?;
                    report.frozen.insert(key, reason);
                }
                Listing::Known(items) => {
                    self.metrics.set_listing_unknown(&key, false);
                    self.converge_source(index, items, now, grace, &mut report)
                        .await?;
                }
            }
        }
        if !self.may_act() {
            return Ok(report);
        }
        let mut session = self.session(Wait::No)?;
        let lifecycle = ops::gc::pass(
            &mut session,
            &GcRequest {
                at: None,
                dry_run: false,
                allow_mass_delete: false,
                sync: self.sync.clone(),
            },
        )
        .await?;
        for action in &lifecycle.actions {
            if action.outcome == Outcome::Done {
                let reason = serde_json::to_value(action.action.reason).unwrap_or_default();
                if !matches!(
                    action.action.action,
                    crate::lifecycle::decide::ActionKind::Wake
                ) {
                    self.metrics
                        .count_teardown(reason.as_str().unwrap_or("lifecycle"));
                }
            }
        }
        report.lifecycle = Some(lifecycle);
        self.save_guards(&project)?;
        self.publish_phases(&report)?;
        Ok(report)
    }

    /// One listing per distinct remote of the `branches` generators.
    async fn list_remotes(
        &self,
        root: &Path,
    ) -> HashMap<String, std::result::Result<Vec<Branch>, String>> {
        let repos = self.sources.iter().filter_map(|source| match &source.kind {
            SourceKind::Branches(generator) => Some(generator.repo.as_str()),
            SourceKind::Scm(_) => None,
        });
        branches::ls_remotes(repos, root, LISTING_TIMEOUT).await
    }

    async fn list(
        &mut self,
        index: usize,
        remotes: &HashMap<String, std::result::Result<Vec<Branch>, String>>,
    ) -> Listing<Item> {
        let source = &mut self.sources[index];
        match &mut source.kind {
            SourceKind::Scm(scm) => {
                let listing = scm.list().await;
                if let Some(remaining) = scm.rate_limit_remaining() {
                    self.metrics
                        .set_scm_rate_limit_remaining(scm.provider(), remaining as i64);
                }
                match listing {
                    Listing::Unknown { reason } => Listing::Unknown { reason },
                    Listing::Known(requests) => {
                        Listing::Known(requests.iter().map(|r| item_of_request(scm, r)).collect())
                    }
                }
            }
            SourceKind::Branches(generator) => {
                let Some(remote) = remotes.get(&generator.repo) else {
                    return Listing::unknown("not listed");
                };
                match generator.listing(remote) {
                    Listing::Unknown { reason } => Listing::Unknown { reason },
                    Listing::Known(branches) => Listing::Known(
                        branches
                            .into_iter()
                            .map(|b| Item {
                                environment: crate::naming::branch_environment(&b.name),
                                origin: Origin::Branch(b.name.clone()),
                                reference: b.name.clone(),
                                commit: b.commit,
                                owner: "unknown".into(),
                                number: None,
                            })
                            .collect(),
                    ),
                }
            }
        }
    }

    /// Converges one generator's previews to a complete listing of its items.
    async fn converge_source(
        &mut self,
        index: usize,
        items: Vec<Item>,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        report: &mut PassReport,
    ) -> Result<()> {
        let key = self.sources[index].key.clone();
        let project = self.project()?;
        let existing: BTreeMap<String, Preview> =
            previews(&project, self.user_kubeconfig.as_deref())?
                .into_iter()
                .filter(|(_, p)| p.generator == key)
                .collect();
        let store = StateStore::for_project(&project, self.user_kubeconfig.as_deref());
        // Items that have a preview: follow their pushes.
        for item in items
            .iter()
            .filter(|i| existing.contains_key(&i.environment))
        {
            let preview = &existing[&item.environment];
            if !preview.listed.is_default() {
                self.record_listed(&store, &item.environment, BranchWatch::default());
            }
            let stale = preview.commit.as_deref() != Some(item.commit.as_str());
            let needs_work = stale || matches!(preview.phase, Phase::Failed | Phase::New);
            if !needs_work || preview.phase == Phase::Asleep || self.backing_off(&item.environment)
            {
                continue;
            }
            let operation = self.up(index, item, "sync").await;
            report.operations.push(operation);
        }
        // New items, within the generator's cap; the rest wait, never evicting a running one.
        let room = self.sources[index].generator.max.map_or(usize::MAX, |max| {
            (max as usize).saturating_sub(existing.len())
        });
        let mut started = 0;
        for item in items
            .iter()
            .filter(|i| !existing.contains_key(&i.environment))
        {
            if started >= room {
                report.queued.push(item.environment.clone());
                continue;
            }
            if self.backing_off(&item.environment) {
                continue;
            }
            started += 1;
            let operation = self.up(index, item, "up").await;
            report.operations.push(operation);
        }
        // Previews whose item is missing from this complete listing.
        for (name, preview) in &existing {
            if items.iter().any(|i| &i.environment == name) {
                continue;
            }
            if let Some(operation) = self
                .retire_if_gone(index, name, preview, now, grace, &store)
                .await
            {
                report.operations.push(operation);
            }
        }
        Ok(())
    }

    fn backing_off(&self, env: &str) -> bool {
        self.backoff
            .get(env)
            .is_some_and(|b| Instant::now() < b.until)
    }

    fn record_outcome(
        &mut self,
        env: &str,
        kind: &'static str,
        result: Result<()>,
        started: Instant,
    ) -> Operation {
        self.metrics
            .observe_operation(kind, started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                self.backoff.remove(env);
                Operation {
                    environment: env.to_string(),
                    kind,
                    ok: true,
                    message: None,
                }
            }
            Err(Error::Busy { holder, .. }) => Operation {
                environment: env.to_string(),
                kind,
                ok: true,
                message: Some(format!(
                    "busy, left for the next pass{}",
                    holder.map(|h| format!(" ({h})")).unwrap_or_default()
                )),
            },
            Err(error) => {
                let stage = match &error {
                    Error::Stage { stage, .. } => stage.to_string(),
                    _ => "serve".to_string(),
                };
                self.metrics.count_error(&stage);
                let entry = self.backoff.entry(env.to_string()).or_insert(Backoff {
                    until: Instant::now(),
                    failures: 0,
                });
                entry.failures += 1;
                // 30 s, 1 min, 2 min ... capped at 30 min; the reason is in the record.
                let wait = Duration::from_secs(30 * 2u64.pow(entry.failures.min(6) - 1))
                    .min(Duration::from_secs(1800));
                entry.until = Instant::now() + wait;
                tracing::warn!(environment = env, operation = kind, error = %error, retry_in_s = wait.as_secs(), "operation failed");
                Operation {
                    environment: env.to_string(),
                    kind,
                    ok: false,
                    message: Some(error.to_string()),
                }
            }
        }
    }

    /// Brings an item's preview up at its commit: creates it when new, follows a push when it
    /// exists (`up` is idempotent and resumable, so an interrupted one is finished too).
    async fn up(&mut self, index: usize, item: &Item, kind: &'static str) -> Operation {
        let started = Instant::now();
        if !self.may_act() {
            return not_leader(&item.environment, kind);
        }
        let source = &self.sources[index];
        let request = UpRequest {
            name: Some(item.environment.clone()),
            origin: item.origin.clone(),
            from: "production".into(),
            provider: None,
            ttl: None,
            teardown: None,
            images: Vec::new(),
            sync: self.sync.clone(),
            generated: Some(Generated {
                template: source.generator.template.clone(),
                reference: item.reference.clone(),
                commit: item.commit.clone(),
                owner: item.owner.clone(),
                generator: source.key.clone(),
            }),
        };
        tracing::info!(environment = %item.environment, commit = %item.commit, operation = kind, "converging preview");
        let result = async {
            let mut session = self.session(Wait::No)?;
            let plan = ops::up::plan(&mut session, &request)?;
            let command = format!("serve ({kind} {})", item.environment);
            let outcome = ops::up::apply(&session, plan, &command).await?;
            Ok::<_, Error>((outcome.urls, outcome.commit, outcome.report))
        }
        .await;
        let result = self.feedback_after(index, item, result).await;
        self.record_outcome(&item.environment, kind, result, started)
    }

    /// Tells the pull request where its preview is (or that it failed); a failed write to the
    /// SCM is logged and retried on the next change, never a failed operation.
    async fn feedback_after(
        &self,
        index: usize,
        item: &Item,
        result: Result<(Vec<String>, String, crate::sync::SyncReport)>,
    ) -> Result<()> {
        let (SourceKind::Scm(scm), Some(number)) = (&self.sources[index].kind, item.number) else {
            return result.map(|_| ());
        };
        let project = self.project()?;
        let state = StateStore::for_project(&project, self.user_kubeconfig.as_deref())
            .load(&item.environment)?;
        let expiry = project
            .environment(&item.environment)
            .ok()
            .and_then(|env| crate::lifecycle::Policy::of(&env).ok())
            .and_then(|policy| crate::lifecycle::outlook(&policy, &state, Utc::now()).expires_at)
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let (url, commit, health, state_kind) = match &result {
            Ok((urls, commit, report)) => (
                urls.first().cloned(),
                commit.clone(),
                report
                    .health
                    .as_ref()
                    .map_or("unknown".to_string(), |h| h.summary()),
                if ops::sync::failed_objects(report).is_empty() {
                    DeploymentState::Success
                } else {
                    DeploymentState::Failure
                },
            ),
            Err(error) => (
                None,
                item.commit.clone(),
                error.to_string(),
                DeploymentState::Failure,
            ),
        };
        let feedback = Feedback {
            environment: item.environment.clone(),
            url,
            commit,
            phase: state.phase.name().to_string(),
            health,
            expiry,
            state: state_kind,
        };
        if let Err(e) = scm.publish_feedback(number, &feedback).await {
            tracing::warn!(environment = %item.environment, error = %e, "feedback not published");
        }
        result.map(|_| ())
    }

    /// A preview whose item a complete listing lacks goes only when confirmed closed or merged
    /// by a direct read, or when two complete listings at least `grace` apart lacked it.
    async fn retire_if_gone(
        &mut self,
        index: usize,
        name: &str,
        preview: &Preview,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        store: &StateStore,
    ) -> Option<Operation> {
        let reason = match &self.sources[index].kind {
            SourceKind::Scm(scm) => match preview.number.map(|n| (n, n)) {
                Some((number, _)) => match scm.confirm(number).await {
                    Closure::Closed => Some("closed"),
                    Closure::Merged => Some("merged"),
                    Closure::Open | Closure::Unknown { .. } => None,
                },
                None => None,
            },
            SourceKind::Branches(_) => None,
        };
        let reason = match reason {
            Some(reason) => reason,
            None => match preview.listed.missing_since {
                None => {
                    self.record_listed(
                        store,
                        name,
                        BranchWatch {
                            missing_since: Some(now),
                            frozen: None,
                            ..preview.listed.clone()
                        },
                    );
                    return None;
                }
                Some(since) if now - since >= grace => "missing from its generator",
                Some(_) => return None,
            },
        };
        let started = Instant::now();
        if !self.may_act() {
            return Some(not_leader(name, "down"));
        }
        tracing::info!(environment = name, reason, "tearing the preview down");
        let result = async {
            let session = self.session(Wait::No)?;
            ops::down::down(
                &session,
                name,
                &DownRequest::default(),
                &format!("serve (down {name})"),
            )
            .await
            .map(|_| ())
        }
        .await;
        if result.is_ok() {
            self.metrics.count_teardown(reason);
            if let (SourceKind::Scm(scm), Some(number)) =
                (&self.sources[index].kind, preview.number)
                && let Err(e) = scm.retire_feedback(number, name, reason).await
            {
                tracing::warn!(environment = name, error = %e, "feedback not retired");
            }
        }
        Some(self.record_outcome(name, "down", result, started))
    }

    /// Says in each of the generator's previews' records that its listing is unknown, so
    /// `status` shows the freeze.
    fn record_frozen(&self, project: &Project, key: &str, reason: &str) -> Result<()> {
        let store = StateStore::for_project(project, self.user_kubeconfig.as_deref());
        for (name, preview) in previews(project, self.user_kubeconfig.as_deref())? {
            if preview.generator == key && preview.listed.frozen.as_deref() != Some(reason) {
                let watch = BranchWatch {
                    frozen: Some(reason.to_string()),
                    ..preview.listed.clone()
                };
                self.record_listed(&store, &name, watch);
            }
        }
        Ok(())
    }

    fn record_listed(&self, store: &StateStore, env: &str, watch: BranchWatch) {
        let written = store
            .lock(env, "serve (record listing)", Wait::No)
            .and_then(|_lock| {
                let mut state = store.load(env)?;
                state.listed = watch;
                store.save(&state)
            });
        if let Err(e) = written {
            tracing::debug!(environment = env, error = %e, "listing not recorded; next pass");
        }
    }

    /// `sprout_environments{phase}`: every environment's phase, plus `queued` and `frozen`.
    fn publish_phases(&self, report: &PassReport) -> Result<()> {
        let project = self.project()?;
        let records =
            StateStore::for_project(&project, self.user_kubeconfig.as_deref()).records()?;
        let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
        let previews = previews(&project, self.user_kubeconfig.as_deref())?;
        for name in project.environment_names()? {
            let phase = records.get(&name).map_or(Phase::New, |state| state.phase);
            *counts.entry(phase.name()).or_default() += 1;
        }
        counts.insert("queued", report.queued.len() as i64);
        let frozen = previews
            .values()
            .filter(|p| report.frozen.contains_key(&p.generator))
            .count();
        counts.insert("frozen", frozen as i64);
        self.metrics.set_environments(counts);
        Ok(())
    }
}

impl BranchWatch {
    fn is_default(&self) -> bool {
        *self == BranchWatch::default()
    }
}

/// A label value for the generator key (`github:acme/shop` → `github.acme.shop`): label values
/// allow `[A-Za-z0-9._-]` only.
fn label_value(key: &str) -> String {
    let mut value: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect();
    value.truncate(63);
    value.trim_matches('.').to_string()
}

fn item_of_request(scm: &Scm, request: &ChangeRequest) -> Item {
    Item {
        environment: scm.environment_name(request.number),
        origin: Origin::PullRequest {
            number: request.number,
            branch: request.head_branch.clone(),
        },
        reference: request.head_ref.clone(),
        commit: request.head_sha.clone(),
        owner: request.author.clone(),
        number: Some(request.number),
    }
}

/// An environment a generator made, as its spec and record say.
#[derive(Debug, Clone)]
struct Preview {
    generator: String,
    number: Option<u64>,
    commit: Option<String>,
    phase: Phase,
    listed: BranchWatch,
}

fn previews(
    project: &Project,
    user_kubeconfig: Option<&Path>,
) -> Result<BTreeMap<String, Preview>> {
    let records = StateStore::for_project(project, user_kubeconfig).records()?;
    let mut found = BTreeMap::new();
    for name in project.environment_names()? {
        let Ok(env) = project.environment(&name) else {
            continue;
        };
        let Some(generator) = env.labels.get(GENERATOR_LABEL) else {
            continue;
        };
        let state = records
            .get(&name)
            .cloned()
            .unwrap_or_else(|| EnvironmentState::new(&name));
        found.insert(
            name,
            Preview {
                generator: generator.clone(),
                number: env.pull_request(),
                commit: state.commit.clone(),
                phase: state.phase,
                listed: state.listed.clone(),
            },
        );
    }
    Ok(found)
}

/// Where the shrink guards' memory is kept between passes.
fn guards_file(project: &Project) -> PathBuf {
    project.state_dir().join("serve-listings.json")
}

/// An operation not started because leadership was lost (the next leader's pass does it).
fn not_leader(env: &str, kind: &'static str) -> Operation {
    Operation {
        environment: env.to_string(),
        kind,
        ok: true,
        message: Some("not started: this replica no longer leads".into()),
    }
}
