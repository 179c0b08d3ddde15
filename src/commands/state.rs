//! `sprout state export` / `sprout state import FILE`: every environment record, as JSON, out
//! of one backend and into another, so a team that started with files on a laptop moves to a
//! management cluster without losing its environments.

use super::{Context, print};
use crate::cli::{ImportArgs, StateArgs, StateCommand};
use crate::error::{Error, Result};
use crate::state::{EnvironmentState, RECORD_VERSION, StateStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const EXPORT_KIND: &str = "EnvironmentRecords";

/// What `export` prints and `import` reads.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Export {
    kind: String,
    /// The project the records belong to.
    project: String,
    records: Vec<EnvironmentState>,
    /// The specs sprout generated for those environments (`up --branch`, previews), by
    /// environment: the cluster backend keeps them with the records, the file backend in
    /// `environments/`; a move takes them along.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    specs: BTreeMap<String, String>,
}

pub fn run(context: &Context, command: &StateCommand) -> Result<()> {
    match command {
        StateCommand::Export(args) => export(context, args),
        StateCommand::Import(args) => import(context, args),
    }
}

fn store(context: &Context, args: &StateArgs) -> Result<(crate::project::Project, StateStore)> {
    let mut project = context.project()?;
    args.apply(&mut project.settings.state)?;
    let store = StateStore::for_project(&project, context.kubeconfig.as_deref());
    Ok((project, store))
}

fn export(context: &Context, args: &StateArgs) -> Result<()> {
    let (mut project, store) = store(context, args)?;
    crate::ops::adopt_stored_specs(&mut project, context.kubeconfig.as_deref())?;
    let records = store
        .names()?
        .iter()
        .map(|name| store.load(name))
        .collect::<Result<Vec<_>>>()?;
    let specs = records
        .iter()
        .filter_map(|record| generated_spec(&project, &record.environment))
        .collect();
    context.note(format!(
        "exported {} record(s) from {}",
        records.len(),
        store.describe()
    ));
    let export = Export {
        kind: EXPORT_KIND.into(),
        project: project.identity().to_string(),
        records,
        specs,
    };
    let mut text = serde_json::to_string_pretty(&export).expect("records serialize");
    text.push('\n');
    print(&text)
}

/// `env`'s spec and its text when sprout generated it (it carries its origin).
fn generated_spec(project: &crate::project::Project, env: &str) -> Option<(String, String)> {
    let spec = project.environment(env).ok()?;
    spec.labels.get(crate::ops::up::ORIGIN_LABEL)?;
    let text = match project.stored_spec(env) {
        Some(text) => text.to_string(),
        None => std::fs::read_to_string(project.spec_path(env)).ok()?,
    };
    Some((env.to_string(), text))
}

/// Reads and checks the whole file before writing anything: bad input changes nothing.
fn read_export(args: &ImportArgs, project: &str) -> Result<Export> {
    let file = args.file.display().to_string();
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Error::io("cannot read stdin", e))?
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| Error::io(format!("cannot read {file}"), e))?
    };
    let invalid = |line: usize, message: String| Error::Usage(format!("{file}:{line}: {message}"));
    let export: Export = serde_json::from_str(&text).map_err(|e| {
        invalid(
            e.line(),
            format!("not the output of `sprout state export`: {e}"),
        )
    })?;
    if export.kind != EXPORT_KIND {
        return Err(invalid(
            1,
            format!("kind is `{}`, not {EXPORT_KIND}", export.kind),
        ));
    }
    if export.project != project {
        return Err(invalid(
            1,
            format!(
                "these records belong to project `{}`, this is project `{project}` (see `project:` in sprout.yaml)",
                export.project
            ),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for record in &export.records {
        let name = &record.environment;
        let line = crate::spec::line_of(&text, &format!("\"environment\": \"{name}\""));
        crate::naming::check(name, crate::naming::Backend::Environment)
            .map_err(|why| invalid(line, format!("environment name: {why}")))?;
        if record.version > RECORD_VERSION {
            return Err(invalid(
                line,
                format!(
                    "record {name} has version {}, newer than this sprout's ({RECORD_VERSION}); upgrade sprout",
                    record.version
                ),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(invalid(line, format!("environment {name} appears twice")));
        }
    }
    Ok(export)
}

fn import(context: &Context, args: &ImportArgs) -> Result<()> {
    let (project, store) = store(context, &args.state)?;
    let export = read_export(args, project.identity())?;
    let existing: std::collections::BTreeSet<String> = store.names()?.into_iter().collect();
    let mut imported = Vec::new();
    let mut kept = Vec::new();
    for record in export.records {
        let name = record.environment.clone();
        if existing.contains(&name) {
            kept.push(name);
            continue;
        }
        let _lock = store.lock(&name, "state import", crate::state::lock::Wait::No)?;
        // A spec that came along goes with the record into a cluster; into files, unless this
        // checkout has its own file of that name.
        let file = project.spec_path(&name);
        let keeps_specs = store.spec_place(&name).is_some();
        // Written as a new record: if someone created it meanwhile, theirs is kept (conflict).
        record.revision.set(None);
        if let Some(text) = export.specs.get(&name)
            && (keeps_specs || !file.exists())
        {
            store.save_spec(&name, text, &file)?;
            // The cluster backend made the record's object to keep the spec: write over it.
            record.revision.set(store.load(&name)?.revision.get());
        }
        store.save(&record)?;
        imported.push(name);
    }
    let mut text = format!(
        "imported {} record(s) into {}",
        imported.len(),
        store.describe()
    );
    if !kept.is_empty() {
        text.push_str(&format!(
            "; kept {} existing record(s) as they are: {}",
            kept.len(),
            kept.join(", ")
        ));
    }
    print(&format!("{text}\n"))
}
