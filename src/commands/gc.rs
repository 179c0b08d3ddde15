//! `sprout gc [--dry-run] [--at TIME]`: one lifecycle pass ([`ops::gc`](crate::ops::gc)).
//! Exit 1 when an action failed or the mass-delete breaker held the pass back.

use super::{Context, print, print_structured, runtime, sync_options};
use crate::cli::{Format, GcArgs};
use crate::error::{Error, Result};
use crate::ops::gc::{self, GcReport, GcRequest, Outcome};
use crate::progress::Spinner;

pub fn run(context: &Context, args: &GcArgs) -> Result<()> {
    let at = match &args.at {
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    Error::Usage(format!(
                        "--at {text}: not an RFC 3339 time ({e}), e.g. 2026-11-27T12:07:00+01:00"
                    ))
                })?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let spinner = Spinner::new(context.quiet);
    let mut session = context.session(&spinner)?;
    let request = GcRequest {
        at,
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
        sync: sync_options(&args.converge),
    };
    let report = runtime()?.block_on(gc::pass(&mut session, &request));
    spinner.finish();
    let report = report?;
    if context.format != Format::Table {
        print_structured(context.format, &report)?;
    } else {
        print(&describe(&report))?;
    }
    if let Some(trip) = &report.breaker {
        return Err(Error::MassDelete {
            would_delete: trip.would_delete,
            live: trip.live,
            limit: trip.limit,
        });
    }
    match report.failed() {
        0 => Ok(()),
        failed => Err(Error::GcFailed { failed }),
    }
}

fn describe(report: &GcReport) -> String {
    let mut text = format!(
        "gc {}at {}{}\n",
        if report.dry_run { "(dry run) " } else { "" },
        super::status::stamp(report.at),
        if report.actions.is_empty() {
            ": nothing to do"
        } else {
            ""
        }
    );
    for a in &report.actions {
        let outcome = match a.outcome {
            Outcome::Planned => "would",
            Outcome::Done => "done",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "FAILED",
        };
        let target = if a.action.environment.is_empty() {
            a.action.detail.clone()
        } else {
            a.action.environment.clone()
        };
        text.push_str(&format!(
            "  {outcome:8} {:14} {target} ({}: {})",
            serde_json::to_value(a.action.action)
                .expect("serializes")
                .as_str()
                .unwrap_or(""),
            serde_json::to_value(a.action.reason)
                .expect("serializes")
                .as_str()
                .unwrap_or(""),
            a.action.detail
        ));
        if let Some(message) = &a.message {
            text.push_str(&format!(" — {message}"));
        }
        text.push('\n');
    }
    for note in &report.notes {
        match &note.environment {
            Some(env) => text.push_str(&format!("  note     {env}: {}\n", note.message)),
            None => text.push_str(&format!("  note     {}\n", note.message)),
        }
    }
    if let Some(trip) = &report.breaker {
        text.push_str(&format!(
            "  STOPPED  this pass would take down {} of {} live environments (limit {}, maxDeletePercent in sprout.yaml); nothing was deleted:\n",
            trip.would_delete, trip.live, trip.limit
        ));
        for held in &trip.held_back {
            text.push_str(&format!("    {} ({})\n", held.environment, held.detail));
        }
        text.push_str("  run `sprout gc --dry-run` to review, then `sprout gc --allow-mass-delete` to confirm\n");
    }
    text
}
