//! `sprout up`: the environment's spec (written from a template when missing), its cluster,
//! its objects, healthy. Idempotent (a second run changes nothing) and resumable (every step
//! finishes what an interrupted run started). Everything that can be checked is checked before
//! the first side effect, which is also what makes `--dry-run` honest.

use super::{Context, print, print_structured, runtime};
use crate::builtin_templates::{BRANCH, DEVELOPER, PREVIEW};
use crate::cli::{Format, ProviderArg, UpArgs};
use crate::cluster::provider::Progress;
use crate::cluster::provider::{self, ClusterRecord};
use crate::cluster::{self, Target};
use crate::desired;
use crate::error::{Error, InStage, Result, Stage};
use crate::naming::{self, Backend};
use crate::progress::Spinner;
use crate::project::{Project, TEMPLATES_DIR};
use crate::source::repo;
use crate::spec::{Environment, Provider};
use crate::state::{Phase, StateStore};
use crate::template::{TemplateSite, render_yaml_document};
use serde::Serialize;
use std::path::Path;

/// How the environment's name came about, which picks the template for a new spec.
enum Origin {
    Named,
    Branch,
    Developer,
    PullRequest(u64),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpOutcome<'a> {
    environment: &'a str,
    dry_run: bool,
    spec: String,
    spec_written: bool,
    commit: &'a str,
    objects: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<crate::sync::SyncReport>,
}

pub fn run(context: &Context, args: &UpArgs) -> Result<()> {
    let mut project = context.project()?;
    let (name, origin) = environment_name(&project, args)?;
    let spec_path = project.spec_path(&name);
    if spec_path.exists() && !args.images.is_empty() {
        return Err(Error::Usage(format!(
            "--image only shapes a new environment; {name} exists: set overlay.images in {}",
            spec_path.display()
        )));
    }
    let new_spec = if spec_path.exists() {
        None
    } else {
        Some(render_spec(&project, &name, &origin, args)?)
    };
    if let Some(text) = &new_spec {
        project.set_spec_override(&name, text.clone());
    }
    let env = project.environment(&name).in_stage(&name, Stage::Spec)?;
    if env.protected {
        return Err(cluster::ClusterError::Protected).in_stage(&name, Stage::Cluster);
    }
    let provider_kind = effective_provider(&env, args.provider)?;
    let mut desired = desired::compute(&project, &env)?;
    let spec_display = spec_path
        .strip_prefix(&project.root)
        .unwrap_or(&spec_path)
        .display()
        .to_string();

    if args.dry_run {
        return show_plan(
            context,
            &env,
            provider_kind,
            &desired,
            &spec_display,
            new_spec.is_some(),
        );
    }
    if let Some(text) = &new_spec {
        write_spec(&spec_path, text)?;
    }

    let store = StateStore::new(&project.state_dir());
    let spinner = Spinner::new(context.quiet);
    let outcome = runtime()?.block_on(async {
        let (target, record) = provision(
            &project,
            &env,
            provider_kind,
            &store,
            &spinner,
            context.kubeconfig.as_deref(),
        )
        .await?;
        spinner.phase(&format!("syncing {} objects", desired.objects.len()));
        let report = super::sync::converge(
            &project,
            &env,
            &target,
            &mut desired,
            context.kubeconfig.as_deref(),
            &args.converge,
        )
        .await?;
        Ok::<_, Error>((record, report))
    });
    spinner.finish();
    let (record, report) = outcome?;
    if args.merge_kubeconfig && record.is_some() {
        merge_into_user_kubeconfig(context, &project, &env.name)?;
    }

    if context.format != Format::Table {
        print_structured(
            context.format,
            &UpOutcome {
                environment: &env.name,
                dry_run: false,
                spec: spec_display,
                spec_written: new_spec.is_some(),
                commit: &desired.commit,
                objects: desired.objects.len(),
                cluster: record,
                report: Some(report.clone()),
            },
        )?;
        return super::sync::require_healthy(&env.name, &report);
    }
    if new_spec.is_some() {
        context.note(format!("wrote {spec_display}"));
    }
    super::sync::show(context, &env.name, &report)?;
    super::sync::require_healthy(&env.name, &report)
}

fn environment_name(project: &Project, args: &UpArgs) -> Result<(String, Origin)> {
    if let Some(name) = &args.env {
        naming::check(name, Backend::Namespace)
            .map_err(|e| Error::Usage(format!("invalid environment name: {e}")))?;
        return Ok((name.clone(), Origin::Named));
    }
    if let Some(pr) = args.pr {
        return Ok((
            naming::pull_request_environment(pr),
            Origin::PullRequest(pr),
        ));
    }
    if let Some(branch) = &args.branch {
        return Ok((naming::branch_environment(branch), Origin::Branch));
    }
    let developer = match &args.developer {
        Some(d) => d.clone(),
        None => repo::current_user(&project.root).ok_or_else(|| {
            Error::Usage(
                "cannot tell who you are (no git user.name, no $USER): pass --developer NAME"
                    .into(),
            )
        })?,
    };
    Ok((naming::developer_environment(&developer), Origin::Developer))
}

/// The spec for a new environment, from the project's template (templates/<kind>.yaml.tera)
/// or the built-in one.
fn render_spec(project: &Project, name: &str, origin: &Origin, args: &UpArgs) -> Result<String> {
    let (file, builtin) = match origin {
        Origin::PullRequest(_) => ("preview.yaml.tera", PREVIEW),
        Origin::Branch => ("branch.yaml.tera", BRANCH),
        Origin::Developer => ("developer.yaml.tera", DEVELOPER),
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
    let branch = match &args.branch {
        Some(branch) => branch.clone(),
        None => repo::current_branch(&project.root).ok_or_else(|| {
            Error::Usage("no branch checked out (detached HEAD?): pass --branch NAME".into())
        })?,
    };
    let owner = args
        .developer
        .clone()
        .or_else(|| repo::current_user(&project.root))
        .unwrap_or_else(|| "unknown".into());
    let provider = args
        .provider
        .map(ProviderArg::kind)
        .unwrap_or_else(auto_provider);
    let mut vars = tera::Context::new();
    vars.insert("name", name);
    vars.insert("owner", &owner);
    vars.insert("branch", &branch);
    vars.insert("from", &args.from);
    vars.insert("provider", crate::cluster::provider_name(provider));
    vars.insert("ttl", &args.ttl);
    vars.insert("teardown", &args.teardown);
    if let Origin::PullRequest(pr) = origin {
        vars.insert("pr", pr);
    }
    let site = TemplateSite {
        file: template_name,
        line: 1,
        field: "template".into(),
    };
    let rendered =
        render_yaml_document(&site, &text, &vars).map_err(|e| Error::Usage(e.to_string()))?;
    with_images(rendered, &args.images)
}

/// Adds `--image NAME=REF` entries to `overlay.images` of a rendered spec.
fn with_images(spec: String, images: &[String]) -> Result<String> {
    if images.is_empty() {
        return Ok(spec);
    }
    let mut document: serde_yaml::Value = serde_yaml::from_str(&spec)
        .map_err(|e| Error::Usage(format!("the spec template renders invalid YAML: {e}")))?;
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

fn write_spec(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// The spec's provider, else `--provider`, else what this machine can run.
fn effective_provider(env: &Environment, flag: Option<ProviderArg>) -> Result<Provider> {
    match (
        env.cluster.as_ref().map(|c| c.provider),
        flag.map(ProviderArg::kind),
    ) {
        (Some(spec), Some(flag)) if spec != flag => Err(Error::Usage(format!(
            "{} says provider {}, not {}; edit the spec to move the environment",
            env.file,
            cluster::provider_name(spec),
            cluster::provider_name(flag)
        ))),
        (Some(spec), _) => Ok(spec),
        (None, Some(flag)) => Ok(flag),
        (None, None) => Ok(auto_provider()),
    }
}

/// kind, else minikube, else a local control plane (no container runtime needed).
fn auto_provider() -> Provider {
    if crate::process::exists("kind") {
        Provider::Kind
    } else if crate::process::exists("minikube") {
        Provider::Minikube
    } else {
        Provider::Envtest
    }
}

/// Creates (or finds) the cluster and returns how to reach it, recording it in the state.
async fn provision(
    project: &Project,
    env: &Environment,
    kind: Provider,
    store: &StateStore,
    spinner: &Spinner,
    user_kubeconfig: Option<&Path>,
) -> Result<(Target, Option<ClusterRecord>)> {
    if kind == Provider::Namespace {
        let target = cluster::target_for(project, env, user_kubeconfig)
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
    let recorded = store.load(&env.name)?.cluster;
    let backend = provider::for_environment(project, &env_for_provider, recorded.as_ref())
        .in_stage(&env.name, Stage::Cluster)?;
    let record = backend.record();
    {
        let _lock = store.lock(&env.name)?;
        let mut state = store.load(&env.name)?;
        state.phase = Phase::Provisioning;
        state.cluster = Some(record.clone());
        state
            .created_at
            .get_or_insert_with(crate::state::now_rfc3339);
        store.save(&state)?;
    }
    let kubeconfig = cluster::owned_kubeconfig(project, &env.name);
    if let Some(dir) = kubeconfig.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    backend
        .create(&kubeconfig, spinner)
        .await
        .in_stage(&env.name, Stage::Cluster)?;
    let target = Target {
        kubeconfig,
        context: None,
    };
    cluster::check_allowed(project, &target).in_stage(&env.name, Stage::Cluster)?;
    Ok((target, Some(record)))
}

fn show_plan(
    context: &Context,
    env: &Environment,
    kind: Provider,
    desired: &desired::DesiredState,
    spec: &str,
    new_spec: bool,
) -> Result<()> {
    let cluster = match kind {
        Provider::Kind => format!(
            "kind cluster {} (created unless it exists)",
            cluster::kind::cluster_name(&env.name)
        ),
        Provider::Minikube => format!(
            "minikube profile {} (created unless it exists)",
            cluster::minikube::profile_name(&env.name)
        ),
        Provider::Eks => format!(
            "EKS cluster {} (created unless it exists)",
            cluster::eks::cluster_name(&env.name)
        ),
        Provider::Envtest => {
            "a local control plane under .sprout/clusters (started unless it runs)".to_string()
        }
        Provider::Namespace => format!(
            "namespace {} on an existing cluster",
            env.target_namespace()
        ),
    };
    if context.format != Format::Table {
        return print_structured(
            context.format,
            &serde_json::json!({
                "environment": env.name, "dryRun": true, "spec": spec, "specWritten": false, "wouldWriteSpec": new_spec,
                "provider": cluster::provider_name(kind), "cluster": cluster,
                "commit": desired.commit, "objects": desired.objects.len(),
            }),
        );
    }
    print(&format!(
        "plan for {} (dry run: nothing was changed)\n  spec:    {spec}{}\n  source:  {}@{} → {}\n  cluster: {cluster}\n  sync:    {} objects into namespace {}, then wait until healthy\n",
        env.name,
        if new_spec {
            " (would be written)"
        } else {
            " (exists)"
        },
        env.source.path,
        env.source.reference,
        &desired.commit[..desired.commit.len().min(12)],
        desired.objects.len(),
        env.target_namespace(),
    ))
}

/// Adds context `sprout-<env>` (and its cluster and user) to the user's kubeconfig, replacing
/// an older one of the same name. Only on request (`--merge-kubeconfig`).
fn merge_into_user_kubeconfig(context: &Context, project: &Project, env: &str) -> Result<()> {
    let user_file = context.kubeconfig.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(".kube/config")
    });
    let ours = cluster::owned_kubeconfig(project, env);
    super::kubeconfig::merge(&user_file, &ours, &format!("sprout-{env}"))?;
    context.note(format!(
        "added context sprout-{env} to {}",
        user_file.display()
    ));
    Ok(())
}
