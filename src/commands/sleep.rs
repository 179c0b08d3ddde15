//! `sprout sleep ENV` and `sprout wake ENV`: the front ends of
//! [`ops::sleep`](crate::ops::sleep) — by hand what a teardown and wake schedule do.

use super::{Context, print_structured, runtime};
use crate::cli::{EnvArg, Format, SyncArgs};
use crate::error::Result;
use crate::ops;
use crate::progress::Spinner;

pub fn sleep(context: &Context, args: &EnvArg) -> Result<()> {
    let spinner = Spinner::new(context.quiet);
    let session = context.session(&spinner)?;
    let name = &args.env;
    let released = runtime()?.block_on(ops::sleep::sleep(&session, name, &format!("sleep {name}")));
    spinner.finish();
    let released = released?;
    if context.format != Format::Table {
        return print_structured(
            context.format,
            &serde_json::json!({"environment": name, "phase": "asleep", "released": released}),
        );
    }
    let mut text = format!("{name}: asleep");
    if let Some(cluster) = &released.cluster_deleted {
        text.push_str(&format!(", cluster {cluster} deleted"));
    }
    if let Some(objects) = &released.objects {
        text.push_str(&format!(", {} objects deleted", objects.pruned.len()));
    }
    text.push_str(&format!(
        " (spec and record kept; `sprout wake {name}` brings it back)\n"
    ));
    for kept in released.objects.iter().flat_map(|o| &o.kept) {
        text.push_str(&format!("  kept     {kept}\n"));
    }
    super::print(&text)
}

pub fn wake(context: &Context, args: &SyncArgs) -> Result<()> {
    let spinner = Spinner::new(context.quiet);
    let mut session = context.session_with_identity(&spinner)?;
    let name = &args.env;
    let options = super::sync_options(&args.converge);
    let outcome = runtime()?.block_on(ops::sleep::wake(
        &mut session,
        name,
        options,
        &format!("wake {name}"),
    ));
    spinner.finish();
    let outcome = outcome?;
    if context.format != Format::Table {
        print_structured(context.format, &outcome)?;
    } else {
        super::sync::show(context, name, &outcome.report)?;
    }
    ops::sync::require_healthy(name, &outcome.report)
}
