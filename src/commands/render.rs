//! `sprout render ENV [--out DIR]`: the fork, printed or written; no cluster is written to.

use super::{Context, print};
use crate::cli::{Format, RenderArgs};
use crate::desired;
use crate::error::{Error, InStage, Result, Stage};
use crate::output;
use crate::spec::SecretsPolicy;
use std::path::Path;

pub fn run(context: &Context, args: &RenderArgs) -> Result<()> {
    let mut project = context.project()?;
    if !project.spec_path(&args.env).exists() {
        // A spec sprout generated is kept with its record by the cluster state backend.
        crate::ops::adopt_stored_specs(&mut project, context.kubeconfig.as_deref())?;
    }
    let env = project
        .environment(&args.env)
        .in_stage(&args.env, Stage::Spec)?;
    let desired = desired::compute(&project, &env)?;
    // Warnings are not silenced by -q: each is a reference that may not work in the fork.
    for warning in &desired.warnings {
        eprintln!("warning: {}: {warning}", env.name);
    }
    match &args.out {
        Some(dir) => write_files(dir, &desired.objects)?,
        None => match context.format {
            Format::Json => print(&output::json_list(&desired.objects))?,
            Format::Table | Format::Yaml => print(&output::yaml_documents(&desired.objects))?,
        },
    }
    let short = &desired.commit[..desired.commit.len().min(12)];
    let mut summary = format!(
        "{}: {} objects from {}@{} ({short}, {})",
        env.name,
        desired.objects.len(),
        env.source.path,
        env.source.reference,
        desired.render.name()
    );
    if desired.excluded.inline_secrets > 0 {
        summary.push_str(&format!(
            "; {} inline Secret(s) left out",
            desired.excluded.inline_secrets
        ));
    }
    if let SecretsPolicy::Copy(copy) = &env.overlay.secrets {
        summary.push_str(&format!(
            "; at sync, Secret(s) {} are copied from {}",
            copy.names.join(", "),
            copy.from
        ));
    }
    if desired.excluded.dropped > 0 {
        summary.push_str(&format!(
            "; {} object(s) dropped by kind",
            desired.excluded.dropped
        ));
    }
    context.note(summary);
    Ok(())
}

/// One file per object. Files of an earlier render (`NNNN-*.yaml`) are removed first, so the
/// folder mirrors the desired state; nothing else in the folder is touched.
fn write_files(dir: &Path, objects: &[crate::object::Object]) -> Result<()> {
    let io = |what: &str, e| Error::io(format!("{what} {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", e))?;
    for entry in std::fs::read_dir(dir)
        .map_err(|e| io("cannot read", e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.len() > 5
            && name[..4].chars().all(|c| c.is_ascii_digit())
            && name[4..].starts_with('-')
            && name.ends_with(".yaml");
        if ours {
            std::fs::remove_file(entry.path()).map_err(|e| io("cannot clean", e))?;
        }
    }
    for (i, object) in objects.iter().enumerate() {
        let path = dir.join(output::file_name(i, object));
        std::fs::write(&path, output::yaml_document(object))
            .map_err(|e| io("cannot write into", e))?;
    }
    Ok(())
}
