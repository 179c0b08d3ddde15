//! `sprout diff ENV`: desired against live, per object. Exit 0 without drift, 1 with drift.

use super::{Context, print, print_structured, runtime};
use crate::cli::{EnvArg, Format};
use crate::error::{InStage, Result, Stage};
use crate::sync::SyncPlan;
use crate::sync::diff::{self, Change};

/// Whether drift was found (the caller maps it to exit code 1).
pub fn run(context: &Context, args: &EnvArg) -> Result<()> {
    let session = context.session(&crate::ops::Silent)?;
    let crate::ops::Prepared {
        env,
        target,
        mut desired,
    } = session.prepare(&args.env)?;
    let diffs = runtime()?.block_on(async {
        let mut live = crate::ops::connect(&env.name, &target).await?;
        crate::ops::add_secret_copies(&session, &env, &live, &mut desired).await?;
        let plan = SyncPlan::new(&env, &desired);
        diff::diff(&mut live, &plan)
            .await
            .in_stage(&env.name, Stage::Sync)
    })?;
    if context.format != Format::Table {
        print_structured(
            context.format,
            &serde_json::json!({"environment": env.name, "drift": !diffs.is_empty(), "objects": diffs}),
        )?;
    } else {
        let mut text = String::new();
        for d in &diffs {
            match &d.change {
                Change::Create => text.push_str(&format!("+ {} (would be created)\n", d.object)),
                Change::Prune => text.push_str(&format!("- {} (would be pruned)\n", d.object)),
                Change::Conflict { message } => text.push_str(&format!("! {message}\n")),
                Change::Update { diff } => text.push_str(&format!("~ {}\n{diff}", d.object)),
                Change::Recreate { fields } => text.push_str(&format!(
                    "± {} ({fields} cannot change: would be deleted and recreated, if it allows it)\n",
                    d.object
                )),
            }
        }
        if diffs.is_empty() {
            context.note(format!("{}: no drift", env.name));
        }
        print(&text)?;
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(crate::Error::Drift {
            env: env.name.clone(),
            objects: diffs.len(),
        })
    }
}
