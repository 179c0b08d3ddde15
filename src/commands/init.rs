//! `sprout init`: scaffold a project. Never overwrites: a file that exists is kept as it is.

use super::Context;
use crate::builtin_templates::BUILTIN_TEMPLATES;
use crate::cli::InitArgs;
use crate::error::{Error, Result};
use crate::project::{ENVIRONMENTS_DIR, TEMPLATES_DIR};
use crate::template::{TemplateSite, render_yaml_document};
use std::path::Path;

pub fn run(context: &Context, args: &InitArgs) -> Result<()> {
    let root = &context.root;
    let reference = match &args.reference {
        Some(r) => r.clone(),
        None => crate::source::repo::current_branch(root).unwrap_or_else(|| "main".into()),
    };
    let mut vars = tera::Context::new();
    vars.insert("ref", &reference);
    vars.insert("path", &args.path);
    let production = render_yaml_document(
        &TemplateSite {
            file: "templates/production.yaml.tera".into(),
            line: 1,
            field: "production".into(),
        },
        crate::builtin_templates::PRODUCTION,
        &vars,
    )
    .map_err(|e| Error::Usage(e.to_string()))?;

    let mut files: Vec<(String, String)> =
        vec![(format!("{ENVIRONMENTS_DIR}/production.yaml"), production)];
    for (name, text) in BUILTIN_TEMPLATES {
        files.push((format!("{TEMPLATES_DIR}/{name}"), text.to_string()));
    }
    for (relative, text) in files {
        let path = root.join(&relative);
        if path.exists() {
            context.note(format!("kept    {relative}"));
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        context.note(format!("created {relative}"));
    }
    ignore_state_dir(context, root)?;
    let mut project = context.project()?;
    if let Some(identity) = project.ensure_identity()? {
        context.note(format!(
            "created sprout.yaml (project identity `{identity}`: sprout labels what it creates with it)"
        ));
    }
    Ok(())
}

pub(super) fn ignore_state_dir(context: &Context, root: &Path) -> Result<()> {
    let path = root.join(".gitignore");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    if existing
        .lines()
        .any(|l| matches!(l.trim(), ".sprout" | ".sprout/" | "/.sprout" | "/.sprout/"))
    {
        context.note("kept    .gitignore (already ignores .sprout/)");
        return Ok(());
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# sprout's runtime state (status, locks, caches)\n.sprout/\n");
    std::fs::write(&path, text).map_err(|e| Error::io("cannot write .gitignore", e))?;
    context.note("updated .gitignore (ignores .sprout/)");
    Ok(())
}
