//! `sprout down ENV`: the front end of [`ops::down`](crate::ops::down) — delete everything
//! sprout created for the environment, then its record and (unless `--keep-spec`) its spec.

use super::{Context, print_structured, runtime};
use crate::cli::{DownArgs, Format};
use crate::error::Result;
use crate::ops::down::{self, DownOutcome, DownRequest};
use crate::progress::Spinner;

pub fn run(context: &Context, args: &DownArgs) -> Result<()> {
    let spinner = Spinner::new(context.quiet);
    let session = context.session(&spinner)?;
    let request = DownRequest {
        keep_spec: args.keep_spec,
        force: args.force,
    };
    let name = &args.env;
    let outcome = runtime()?.block_on(down::down(
        &session,
        name,
        &request,
        &format!("down {name}"),
    ));
    spinner.finish();
    let outcome = outcome?;
    if let Some(file) = &outcome.context_removed_from {
        context.note(format!("removed context sprout-{name} from {file}"));
    }
    if context.format != Format::Table {
        return print_structured(context.format, &outcome);
    }
    let spec = match session.project.stored_spec(name) {
        Some(_) => "its spec (kept with the record)".to_string(),
        None => {
            let path = session.project.spec_path(name);
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            format!("environments/{}", file.unwrap_or_default())
        }
    };
    super::print(&format!("{}\n", describe(&outcome, &spec)))
}

fn describe(outcome: &DownOutcome, spec: &str) -> String {
    let released = &outcome.released;
    let mut text = format!("{}: down", outcome.environment);
    if let Some(cluster) = &released.cluster_deleted {
        text.push_str(&format!(", cluster {cluster} deleted"));
    }
    if let Some(cluster) = &released.cluster_already_gone {
        text.push_str(&format!(", cluster {cluster} was already gone"));
    }
    if let Some(objects) = &released.objects {
        text.push_str(&format!(", {} objects deleted", objects.pruned.len()));
    }
    if outcome.spec_removed {
        text.push_str(&format!(", {spec} removed"));
    }
    // What stays, one per line, after the summary line they would otherwise split.
    for kept in released.objects.iter().flat_map(|o| &o.kept) {
        text.push_str(&format!("\n  kept     {kept}"));
    }
    text
}
