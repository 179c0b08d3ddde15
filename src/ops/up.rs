//! `up`: the environment's spec (written from a template when missing), its cluster, its
//! objects, healthy. Idempotent (a second run changes nothing) and resumable (every step
//! finishes what an interrupted run started). [`plan`] checks everything that can be checked
//! before the first side effect, which is also what makes a dry run honest; [`apply`] acts.

use super::Session;
use crate::builtin_templates::{BRANCH, DEVELOPER, PREVIEW};
use crate::cluster::provider::{self, ClusterRecord};
use crate::cluster::{self, Target};
use crate::desired::{self, DesiredState};
use crate::error::{Error, InStage, Result, Stage};
use crate::naming::{self, Backend};
use crate::project::TEMPLATES_DIR;
use crate::source::repo;
use crate::spec::{Environment, Provider};
use crate::state::{EnvironmentState, Phase, now};
use crate::sync::{SyncOptions, SyncReport};
use crate::template::{TemplateSite, render_yaml_document};
use std::path::PathBuf;

/// Where a new environment comes from, which names it and picks its spec template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Named explicitly; the spec must exist.
    Named,
    Branch(String),
    /// A developer's environment, following `branch` (empty: the one checked out now).
    Developer {
        name: String,
        branch: String,
    },
    PullRequest {
        number: u64,
        branch: String,
    },
}

/// Spec labels that record an environment's origin, so that two origins that map to one name
/// are told apart instead of silently sharing an environment.
pub const ORIGIN_LABEL: &str = "sprout.dev/origin";
pub const BRANCH_LABEL: &str = "sprout.dev/branch";
pub const PR_LABEL: &str = "sprout.dev/pr";
pub const DEVELOPER_LABEL: &str = "sprout.dev/developer";

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::Named => "its name".into(),
            Origin::Branch(b) => format!("branch `{b}`"),
            Origin::Developer { name, .. } => format!("developer `{name}`"),
            Origin::PullRequest { number, .. } => format!("pull request #{number}"),
        }
    }

    /// The origin an existing spec records, if it records one.
    fn of(env: &Environment) -> Option<Origin> {
        let label = |key: &str| env.labels.get(key).cloned();
        match label(ORIGIN_LABEL)?.as_str() {
            "branch" => Some(Origin::Branch(label(BRANCH_LABEL)?)),
            "developer" => Some(Origin::Developer {
                name: label(DEVELOPER_LABEL)?,
                branch: label(BRANCH_LABEL).unwrap_or_default(),
            }),
            "pull-request" => Some(Origin::PullRequest {
                number: label(PR_LABEL)?.parse().ok()?,
                branch: label(BRANCH_LABEL).unwrap_or_default(),
            }),
            _ => None,
        }
    }

    /// Whether an environment of origin `self` is the one `other` asks for (a pull request, or
    /// a developer's environment, is the same one whatever branch it follows now).
    fn same_as(&self, other: &Origin) -> bool {
        match (self, other) {
            (Origin::PullRequest { number: a, .. }, Origin::PullRequest { number: b, .. }) => {
                a == b
            }
            (Origin::Developer { name: a, .. }, Origin::Developer { name: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }
}

/// What the caller asks for. `ttl` and `teardown` shape a new spec; for an existing environment
/// they must agree with its spec (they are never silently ignored).
#[derive(Debug, Clone)]
pub struct UpRequest {
    pub name: Option<String>,
    pub origin: Origin,
    pub from: String,
    pub provider: Option<Provider>,
    pub ttl: Option<String>,
    pub teardown: Option<String>,
    pub images: Vec<String>,
    pub sync: SyncOptions,
    /// What a generator (`sprout serve`) knows of a new environment; `None` from the CLI.
    pub generated: Option<Generated>,
}

/// A new environment made by a generator: its template, where its commits come from, and the
/// generator it belongs to (recorded as label `sprout.dev/generator`).
#[derive(Debug, Clone)]
pub struct Generated {
    /// A template of templates/ (`preview` → templates/preview.yaml.tera).
    pub template: String,
    /// The ref to follow (`refs/pull/N/head` for a pull request, so forks work too).
    pub reference: String,
    pub commit: String,
    pub owner: String,
    pub generator: String,
}

pub const GENERATOR_LABEL: &str = "sprout.dev/generator";

pub const DEFAULT_TTL: &str = "8h";
pub const DEFAULT_TEARDOWN: &str = "0 12 * * 1-5";

/// An `up` checked and ready: nothing has been changed yet.
pub struct UpPlan {
    pub env: Environment,
    pub provider: Provider,
    pub desired: DesiredState,
    pub spec_path: PathBuf,
    /// The spec path relative to the project, for messages.
    pub spec_display: String,
    /// The spec to write, when the environment is new.
    pub new_spec: Option<String>,
    pub sync: SyncOptions,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpOutcome {
    pub environment: String,
    /// Always false here (a dry run stops at the plan); kept for `-o json` readers.
    pub dry_run: bool,
    pub spec: String,
    pub spec_written: bool,
    pub commit: String,
    pub objects: usize,
    /// Where it answers (its Ingress hosts).
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRecord>,
    pub report: SyncReport,
}

/// The name an `up` request resolves to.
pub fn environment_name(request: &UpRequest) -> Result<String> {
    if let Some(name) = &request.name {
        naming::check(name, Backend::Namespace)
            .map_err(|e| Error::Usage(format!("invalid environment name: {e}")))?;
        return Ok(name.clone());
    }
    Ok(match &request.origin {
        Origin::PullRequest { number, .. } => naming::pull_request_environment(*number),
        Origin::Branch(branch) => naming::branch_environment(branch),
        Origin::Developer { name, .. } => naming::developer_environment(name),
        Origin::Named => {
            return Err(Error::Usage(
                "name the environment, or pass --branch, --developer or --pr".into(),
            ));
        }
    })
}

pub fn plan(session: &mut Session<'_>, request: &UpRequest) -> Result<UpPlan> {
    let name = environment_name(request)?;
    let spec_path = session.project.spec_path(&name);
    let exists = spec_path.exists() || session.project.has_stored_spec(&name);
    if exists && !request.images.is_empty() {
        return Err(Error::Usage(format!(
            "--image only shapes a new environment; {name} exists: set overlay.images in {}",
            spec_path.display()
        )));
    }
    let new_spec = if exists {
        None
    } else {
        Some(render_spec(session, &name, request)?)
    };
    if let Some(text) = &new_spec {
        match session.store().spec_place(&name) {
            Some(place) => session
                .project
                .adopt_stored_spec(&name, text.clone(), place),
            None => session.project.set_spec_override(&name, text.clone()),
        }
    }
    let env = session.environment(&name)?;
    if env.protected {
        return Err(cluster::ClusterError::Protected).in_stage(&name, Stage::Cluster);
    }
    if exists {
        check_same_origin(&env, &request.origin)?;
        check_followed_branch(&env, &request.origin)?;
        check_lifecycle_flags(&env, request)?;
    }
    let provider = effective_provider(&env, request.provider)?;
    let desired = desired::compute(&session.project, &env)?;
    let spec_display = if session.project.has_stored_spec(&name) {
        env.file.clone()
    } else {
        spec_path
            .strip_prefix(&session.project.root)
            .unwrap_or(&spec_path)
            .display()
            .to_string()
    };
    Ok(UpPlan {
        env,
        provider,
        desired,
        spec_path,
        spec_display,
        new_spec,
        sync: request.sync.clone(),
    })
}

/// Two origins that map to one name (branch `feature/login` and branch `feature-login-df7c7a`,
/// `--pr 42` and branch `pr-42`) must not share an environment: refuse, naming both.
fn check_same_origin(env: &Environment, asked: &Origin) -> Result<()> {
    if *asked == Origin::Named {
        return Ok(());
    }
    let Some(recorded) = Origin::of(env) else {
        return Ok(());
    };
    if recorded.same_as(asked) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "environment {} already exists for {} ({}), and {} maps to the same name; give the new one a name of its own: `sprout up NAME ...`",
        env.name,
        recorded.describe(),
        env.file,
        asked.describe()
    )))
}

/// `--branch` for a developer's environment that exists: accepted when it is the branch the
/// spec follows; otherwise refused with what to do (never silently ignored).
fn check_followed_branch(env: &Environment, asked: &Origin) -> Result<()> {
    let Origin::Developer { branch, .. } = asked else {
        return Ok(());
    };
    if branch.is_empty() || branch == env.branch() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "--branch {branch}: {} exists following `{}`; `sprout down {}` and up again to follow another",
        env.name,
        env.branch(),
        env.name
    )))
}

/// `--ttl`/`--teardown` for an environment that exists: accepted when they say what its spec
/// says; otherwise refused with what to do (never silently ignored).
fn check_lifecycle_flags(env: &Environment, request: &UpRequest) -> Result<()> {
    let checks = [
        ("--ttl", "ttl", &request.ttl, &env.lifecycle.ttl),
        (
            "--teardown",
            "teardown",
            &request.teardown,
            &env.lifecycle.teardown,
        ),
    ];
    for (flag, field, asked, spec) in checks {
        if let Some(asked) = asked
            && Some(asked) != spec.as_ref()
        {
            return Err(Error::Usage(format!(
                "{flag} {asked}: {} exists with lifecycle.{field} {}; edit {} to change it{}",
                env.name,
                spec.as_deref().unwrap_or("unset"),
                env.file,
                if field == "ttl" {
                    format!(", or run `sprout extend {} DURATION`", env.name)
                } else {
                    String::new()
                }
            )));
        }
    }
    Ok(())
}

/// Brings the planned environment up: writes a new spec, provisions the cluster, syncs, and
/// records it — all under one hold of the environment's lock.
pub async fn apply(session: &Session<'_>, mut plan: UpPlan, command: &str) -> Result<UpOutcome> {
    let env = &plan.env;
    let mut held = super::hold(session, env, command)?;
    let store = session.store();
    if let Some(text) = &plan.new_spec {
        store.save_spec(&env.name, text, &plan.spec_path)?;
    }
    let mut state = store.load(&env.name)?;
    let woke = state.timeline.asleep_since.is_some();
    let (target, record) = provision(session, env, plan.provider, &mut state).await?;
    session
        .progress
        .phase(&format!("syncing {} objects", plan.desired.objects.len()));
    if woke {
        state.timeline.asleep_since = None;
        state.timeline.woken_at = Some(now());
    }
    let report = super::sync::converge(
        session,
        &mut held,
        env,
        &target,
        &mut plan.desired,
        &mut state,
        &plan.sync,
        None,
    )
    .await;
    held.release().await;
    let report = report?;
    Ok(UpOutcome {
        environment: env.name.clone(),
        dry_run: false,
        spec: plan.spec_display.clone(),
        spec_written: plan.new_spec.is_some(),
        commit: plan.desired.commit.clone(),
        objects: plan.desired.objects.len(),
        urls: super::urls_of(&plan.desired.objects),
        cluster: record,
        report,
    })
}

/// The spec for a new environment, from the project's template (templates/<kind>.yaml.tera)
/// or the built-in one, with its origin recorded in its labels.
fn render_spec(session: &Session<'_>, name: &str, request: &UpRequest) -> Result<String> {
    let project = &session.project;
    let generated_file = request
        .generated
        .as_ref()
        .map(|g| format!("{}.yaml.tera", g.template));
    let (file, builtin) = match &request.origin {
        _ if generated_file.is_some() => {
            let builtin = match &request.origin {
                Origin::Branch(_) => BRANCH,
                _ => PREVIEW,
            };
            (generated_file.as_deref().unwrap_or_default(), builtin)
        }
        Origin::PullRequest { .. } => ("preview.yaml.tera", PREVIEW),
        Origin::Branch(_) => ("branch.yaml.tera", BRANCH),
        Origin::Developer { .. } => ("developer.yaml.tera", DEVELOPER),
        Origin::Named => {
            return Err(Error::Usage(format!(
                "no environment named `{name}` (no environments/{name}.yaml); create one with --branch, --developer or --pr, or write the file"
            )));
        }
    };
    let own = project.root.join(TEMPLATES_DIR).join(file);
    let (template_name, text) = match std::fs::read_to_string(&own) {
        Ok(text) => (format!("{TEMPLATES_DIR}/{file}"), text),
        Err(_) => (format!("(built-in) {file}"), builtin.to_string()),
    };
    let branch = match &request.origin {
        Origin::Branch(branch)
        | Origin::PullRequest { branch, .. }
        | Origin::Developer { branch, .. }
            if !branch.is_empty() =>
        {
            branch.clone()
        }
        _ => repo::current_branch(&project.root).ok_or_else(|| {
            Error::Usage("no branch checked out (detached HEAD?): pass --branch NAME".into())
        })?,
    };
    let owner = match (&request.origin, &request.generated) {
        (Origin::Developer { name, .. }, _) => name.clone(),
        (_, Some(generated)) => generated.owner.clone(),
        _ => repo::current_user(&project.root).unwrap_or_else(|| "unknown".into()),
    };
    let provider = request.provider.unwrap_or_else(auto_provider);
    let mut vars = tera::Context::new();
    vars.insert("name", name);
    vars.insert("owner", &owner);
    vars.insert("branch", &branch);
    let generated = request.generated.as_ref();
    vars.insert(
        "ref",
        generated.map_or(branch.as_str(), |g| g.reference.as_str()),
    );
    vars.insert("commit", generated.map_or("", |g| g.commit.as_str()));
    vars.insert("from", &request.from);
    vars.insert("provider", cluster::provider_name(provider));
    vars.insert("ttl", request.ttl.as_deref().unwrap_or(DEFAULT_TTL));
    vars.insert(
        "teardown",
        request.teardown.as_deref().unwrap_or(DEFAULT_TEARDOWN),
    );
    if let Origin::PullRequest { number, .. } = &request.origin {
        vars.insert("pr", number);
    }
    let site = TemplateSite {
        file: template_name,
        line: 1,
        field: "template".into(),
    };
    let rendered =
        render_yaml_document(&site, &text, &vars).map_err(|e| Error::Usage(e.to_string()))?;
    finish_spec(
        rendered,
        &request.origin,
        &branch,
        &request.images,
        generated.map(|g| g.generator.as_str()),
    )
}

/// Records the origin in `metadata.labels` and adds `--image NAME=REF` entries to
/// `overlay.images` of a rendered spec, as YAML values (never as text).
fn finish_spec(
    spec: String,
    origin: &Origin,
    branch: &str,
    images: &[String],
    generator: Option<&str>,
) -> Result<String> {
    let mut document: serde_yaml::Value = serde_yaml::from_str(&spec)
        .map_err(|e| Error::Usage(format!("the spec template renders invalid YAML: {e}")))?;
    if !document.is_mapping() {
        return Err(Error::Usage(
            "the spec template does not render a YAML mapping".into(),
        ));
    }
    let labels = &mut document["metadata"]["labels"];
    if labels.is_null() {
        *labels = serde_yaml::Value::Mapping(Default::default());
    }
    let mut label = |key: &str, value: String| {
        labels[key] = serde_yaml::Value::String(value);
    };
    match origin {
        Origin::Branch(b) => {
            label(ORIGIN_LABEL, "branch".into());
            label(BRANCH_LABEL, b.clone());
        }
        Origin::Developer { name, .. } => {
            label(ORIGIN_LABEL, "developer".into());
            label(DEVELOPER_LABEL, name.clone());
            label(BRANCH_LABEL, branch.to_string());
        }
        Origin::PullRequest { number, .. } => {
            label(ORIGIN_LABEL, "pull-request".into());
            label(PR_LABEL, number.to_string());
            label(BRANCH_LABEL, branch.to_string());
        }
        Origin::Named => {}
    }
    if let Some(generator) = generator {
        label(GENERATOR_LABEL, generator.to_string());
    }
    if !images.is_empty() {
        let overlay = &mut document["spec"]["overlay"];
        if overlay.is_null() {
            *overlay = serde_yaml::Value::Mapping(Default::default());
        }
        for image in images {
            let Some((name, reference)) = image.split_once('=') else {
                return Err(Error::Usage(format!(
                    "--image {image}: expected NAME=REF (a container name or image repository)"
                )));
            };
            overlay["images"][name] = serde_yaml::Value::String(reference.to_string());
        }
    }
    let header: String = spec
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(format!(
        "{header}{}",
        serde_yaml::to_string(&document).expect("YAML values serialize")
    ))
}

/// The spec's provider, else the requested one, else what this machine can run.
fn effective_provider(env: &Environment, asked: Option<Provider>) -> Result<Provider> {
    match (env.cluster.as_ref().map(|c| c.provider), asked) {
        (Some(spec), Some(asked)) if spec != asked => Err(Error::Usage(format!(
            "{} says provider {}, not {}; edit the spec to move the environment",
            env.file,
            cluster::provider_name(spec),
            cluster::provider_name(asked)
        ))),
        (Some(spec), _) => Ok(spec),
        (None, Some(asked)) => Ok(asked),
        (None, None) => Ok(auto_provider()),
    }
}

/// kind, else minikube, else a local control plane (no container runtime needed).
pub fn auto_provider() -> Provider {
    if crate::process::exists("kind") {
        Provider::Kind
    } else if crate::process::exists("minikube") {
        Provider::Minikube
    } else {
        Provider::Envtest
    }
}

/// Creates (or finds) the cluster and returns how to reach it, recording it in `state`.
pub(super) async fn provision(
    session: &Session<'_>,
    env: &Environment,
    kind: Provider,
    state: &mut EnvironmentState,
) -> Result<(Target, Option<ClusterRecord>)> {
    let project = &session.project;
    if kind == Provider::Namespace {
        let target = cluster::target_for(project, env, session.user_kubeconfig())
            .in_stage(&env.name, Stage::Cluster)?;
        return Ok((target, None));
    }
    let mut env_for_provider = env.clone();
    if env_for_provider.cluster.is_none() {
        env_for_provider.cluster = Some(crate::spec::ClusterSpec {
            provider: kind,
            eks: None,
            namespace: None,
        });
    }
    let backend = provider::for_environment(project, &env_for_provider, state.cluster.as_ref())
        .in_stage(&env.name, Stage::Cluster)?;
    let record = backend.record();
    state.phase = Phase::Provisioning;
    state.cluster = Some(record.clone());
    state.timeline.created_at.get_or_insert_with(now);
    session.store().save(state)?;
    let kubeconfig = cluster::owned_kubeconfig(project, &env.name);
    if let Some(dir) = kubeconfig.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    backend
        .create(&kubeconfig, session.progress)
        .await
        .in_stage(&env.name, Stage::Cluster)?;
    let target = Target {
        kubeconfig,
        context: None,
    };
    cluster::check_allowed(project, &target).in_stage(&env.name, Stage::Cluster)?;
    Ok((target, Some(record)))
}
