//! `sprout up`: the front end of [`ops::up`](crate::ops::up) — turns flags into a request,
//! shows the plan for `--dry-run`, and reports the outcome.

use super::{Context, print, print_structured, runtime, sync_options};
use crate::cli::{Format, ProviderArg, UpArgs};
use crate::cluster;
use crate::error::{Error, Result};
use crate::ops::up::{self, Origin, UpPlan, UpRequest};
use crate::progress::Spinner;
use crate::source::repo;
use crate::spec::Provider;

pub fn run(context: &Context, args: &UpArgs) -> Result<()> {
    let spinner = Spinner::new(context.quiet);
    let mut session = if args.dry_run {
        context.session(&spinner)?
    } else {
        context.session_with_identity(&spinner)?
    };
    let request = UpRequest {
        name: args.env.clone(),
        origin: origin(context, args)?,
        from: args.from.clone(),
        provider: args.provider.map(ProviderArg::kind),
        ttl: args.ttl.clone(),
        teardown: args.teardown.clone(),
        images: args.images.clone(),
        sync: sync_options(&args.converge),
        generated: None,
    };
    let plan = up::plan(&mut session, &request)?;
    if args.dry_run {
        return show_plan(context, &plan);
    }
    let name = plan.env.name.clone();
    let outcome = runtime()?.block_on(up::apply(&session, plan, &format!("up {name}")));
    spinner.finish();
    let outcome = outcome?;
    if args.merge_kubeconfig && outcome.cluster.is_some() {
        merge_into_user_kubeconfig(context, &session.project, &name)?;
    }
    if context.format != Format::Table {
        print_structured(context.format, &outcome)?;
    } else {
        if outcome.spec_written {
            context.note(format!("wrote {}", outcome.spec));
        }
        super::sync::show(context, &name, &outcome.report)?;
    }
    crate::ops::sync::require_healthy(&name, &outcome.report)
}

/// What the flags say the environment is for. A name with `--branch` (or `--pr`, or
/// `--developer`) names a new environment of that origin.
fn origin(context: &Context, args: &UpArgs) -> Result<Origin> {
    let branch = args.branch.clone().unwrap_or_default();
    if let (Some(number), Some(developer)) = (args.pr, &args.developer) {
        return Err(Error::Usage(format!(
            "--pr {number} and --developer {developer} name two environments (pr-{number} and a developer's own); pass one of them"
        )));
    }
    if let Some(number) = args.pr {
        return Ok(Origin::PullRequest { number, branch });
    }
    // A developer's environment may follow another branch than the one checked out.
    if let Some(developer) = &args.developer {
        return Ok(Origin::Developer {
            name: developer.clone(),
            branch,
        });
    }
    if args.branch.is_some() {
        return Ok(Origin::Branch(branch));
    }
    if args.env.is_some() {
        return Ok(Origin::Named);
    }
    let developer = repo::current_user(&context.root).ok_or_else(|| {
        Error::Usage(
            "cannot tell who you are (no git user.name, no $USER): pass --developer NAME".into(),
        )
    })?;
    Ok(Origin::Developer {
        name: developer,
        branch,
    })
}

fn show_plan(context: &Context, plan: &UpPlan) -> Result<()> {
    let env = &plan.env;
    let cluster = match plan.provider {
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
    let desired = &plan.desired;
    let new_spec = plan.new_spec.is_some();
    if context.format != Format::Table {
        return print_structured(
            context.format,
            &serde_json::json!({
                "environment": env.name, "dryRun": true, "spec": plan.spec_display, "specWritten": false, "wouldWriteSpec": new_spec,
                "provider": cluster::provider_name(plan.provider), "cluster": cluster,
                "commit": desired.commit, "objects": desired.objects.len(),
            }),
        );
    }
    print(&format!(
        "plan for {} (dry run: nothing was changed)\n  spec:    {}{}\n  source:  {}@{} → {}\n  cluster: {cluster}\n  sync:    {} objects into namespace {}, then wait until healthy\n",
        env.name,
        plan.spec_display,
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
fn merge_into_user_kubeconfig(
    context: &Context,
    project: &crate::project::Project,
    env: &str,
) -> Result<()> {
    let user_file = context.kubeconfig.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(".kube/config")
    });
    let ours = cluster::owned_kubeconfig(project, env);
    cluster::kubeconfig::merge(&user_file, &ours, &format!("sprout-{env}"))?;
    context.note(format!(
        "added context sprout-{env} to {}",
        user_file.display()
    ));
    Ok(())
}
