//! `sprout sync ENV`: the front end of [`ops::sync`](crate::ops::sync) — re-resolve the
//! source ref and converge (apply + prune + health) — and the report shown by `sync` and `up`.

use super::{Context, print, print_structured, runtime};
use crate::cli::{Format, SyncArgs};
use crate::error::Result;
use crate::ops;
use crate::progress::Spinner;
use crate::sync::SyncReport;
use crate::sync::health::{Health, HealthReport};
use std::collections::BTreeMap;

pub fn run(context: &Context, args: &SyncArgs) -> Result<()> {
    let spinner = Spinner::new(context.quiet);
    let session = context.session_with_identity(&spinner)?;
    let options = super::sync_options(&args.converge);
    let outcome = runtime()?.block_on(ops::sync::sync(&session, &args.env, &options));
    spinner.finish();
    let outcome = outcome?;
    show(context, &outcome.environment, &outcome.report)?;
    ops::sync::require_healthy(&outcome.environment, &outcome.report)
}

pub fn show(context: &Context, env: &str, report: &SyncReport) -> Result<()> {
    if context.format != Format::Table {
        return print_structured(
            context.format,
            &serde_json::json!({"environment": env, "report": report}),
        );
    }
    let c = &report.changes;
    let mut text = format!(
        "{env}: synced {} — {} created, {} configured, {} unchanged, {} pruned\n",
        &report.commit[..report.commit.len().min(12)],
        c.created.len(),
        c.configured.len(),
        c.unchanged,
        c.pruned.len()
    );
    for (label, list) in [
        ("recreated", &c.recreated),
        ("pruned", &c.pruned),
        ("kept", &c.kept),
        ("shared", &c.shared),
        ("deleting", &c.deleting),
    ] {
        for item in list {
            text.push_str(&format!("  {label:9} {item}\n"));
        }
    }
    for note in &c.notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    if let Some(health) = &report.health {
        text.push_str(&health_lines(health));
    }
    print(&text)
}

/// The health summary, then each object that is not healthy; objects that cannot run for the
/// same reason (a node-less cluster) are counted on one line rather than listed.
pub fn health_lines(health: &HealthReport) -> String {
    let mut text = format!("  health: {}\n", health.summary());
    let mut cannot_run: BTreeMap<&str, usize> = BTreeMap::new();
    for object in &health.objects {
        let (state, why) = match &object.health {
            Health::Progressing(w) => ("progressing", w.as_str()),
            Health::Failed(w) => ("failed", w.as_str()),
            Health::CannotRun(w) => {
                *cannot_run.entry(w.as_str()).or_default() += 1;
                continue;
            }
            Health::Healthy => continue,
        };
        text.push_str(&format!("    {state:11} {} ({why})\n", object.object));
    }
    for (why, count) in cannot_run {
        text.push_str(&format!("    cannot run  {count} workload(s): {why}\n"));
    }
    text
}
