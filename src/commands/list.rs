//! `sprout list`: every environment, one line each — phase, commit, expiry, next teardown or
//! wake. Reads specs and records only (no cluster, no git remote), so it stays fast with
//! hundreds of environments.

use super::status::{branch_state, interrupted, outlook_of, when};
use super::{Context, print, print_structured};
use crate::cli::Format;
use crate::error::Result;
use crate::lifecycle::Outlook;
use crate::state::{Phase, StateStore};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    environment: String,
    phase: Phase,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    interrupted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    protected: bool,
    #[serde(flatten)]
    outlook: Outlook,
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    timezone: Option<chrono_tz::Tz>,
}

pub fn run(context: &Context) -> Result<()> {
    let mut project = context.project()?;
    crate::ops::adopt_stored_specs(&mut project, context.kubeconfig.as_deref())?;
    let store = StateStore::for_project(&project, context.kubeconfig.as_deref());
    let now = chrono::Utc::now();
    let mut lines = Vec::new();
    // Specs here, and records in the store without one here (a team's store holds the
    // previews `serve` made from its templates).
    let specs: std::collections::BTreeSet<String> =
        project.environment_names()?.into_iter().collect();
    let mut records = store.records()?;
    let mut names = specs.clone();
    names.extend(records.keys().cloned());
    for name in names {
        let state = records
            .remove(&name)
            .unwrap_or_else(|| crate::state::EnvironmentState::new(&name));
        let spec = if specs.contains(&name) {
            project.environment(&name).map_err(|e| e.to_string())
        } else {
            Err("no spec in this checkout (record only)".to_string())
        };
        let (protected, error, outlook, timezone) = match spec {
            Ok(env) => {
                let (outlook, timezone) = outlook_of(&env, &state, now);
                (env.protected, None, outlook, timezone)
            }
            Err(e) => (false, Some(e), Outlook::default(), None),
        };
        lines.push(Line {
            environment: name,
            phase: state.phase,
            interrupted: interrupted(&store, &state).is_some(),
            commit: state.commit.clone(),
            protected,
            outlook,
            branch: branch_state(&state),
            error,
            timezone,
        });
    }
    if context.format != Format::Table {
        return print_structured(context.format, &lines);
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["ENVIRONMENT", "PHASE", "COMMIT", "EXPIRES", "NEXT", "NOTE"]);
    for line in &lines {
        let note = match (&line.error, line.protected, &line.branch) {
            (Some(e), _, _) => e.clone(),
            (None, true, _) => "protected".into(),
            (None, false, Some(branch)) if !branch.starts_with("present") => {
                format!("branch {branch}")
            }
            _ => String::new(),
        };
        let commit = line
            .commit
            .as_deref()
            .map_or("-".into(), |c| c[..c.len().min(12)].to_string());
        let phase = if line.interrupted {
            format!("interrupted ({})", line.phase.name())
        } else {
            line.phase.name().to_string()
        };
        let o = &line.outlook;
        let expires = o
            .expires_at
            .map_or("-".into(), |at| when(at, now, line.timezone));
        let next = match (o.next_teardown, o.next_wake) {
            (Some(t), _) => format!("teardown {}", when(t, now, line.timezone)),
            (None, Some(w)) => format!("wake {}", when(w, now, line.timezone)),
            (None, None) => "-".into(),
        };
        table.add_row([line.environment.clone(), phase, commit, expires, next, note]);
    }
    print(&format!("{table}\n"))
}
