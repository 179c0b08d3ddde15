//! `sprout list`: every environment, one line each.

use super::{Context, print, print_structured};
use crate::cli::Format;
use crate::error::Result;
use crate::state::StateStore;
use serde::Serialize;

#[derive(Serialize)]
struct Line {
    environment: String,
    phase: crate::state::Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    protected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(context: &Context) -> Result<()> {
    let project = context.project()?;
    let store = StateStore::new(&project.state_dir());
    let mut lines = Vec::new();
    for name in project.environment_names()? {
        let state = store.load(&name)?;
        let (protected, error) = match project.environment(&name) {
            Ok(env) => (env.protected, None),
            Err(e) => (false, Some(e.to_string())),
        };
        lines.push(Line {
            environment: name,
            phase: state.phase,
            commit: state.commit,
            protected,
            error,
        });
    }
    if context.format != Format::Table {
        return print_structured(context.format, &lines);
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["ENVIRONMENT", "PHASE", "COMMIT", "NOTE"]);
    for line in &lines {
        let note = match (&line.error, line.protected) {
            (Some(e), _) => e.clone(),
            (None, true) => "protected".into(),
            _ => String::new(),
        };
        let commit = line
            .commit
            .as_deref()
            .map_or("-".into(), |c| c[..c.len().min(12)].to_string());
        table.add_row([
            line.environment.clone(),
            format!("{:?}", line.phase).to_lowercase(),
            commit,
            note,
        ]);
    }
    print(&format!("{table}\n"))
}
