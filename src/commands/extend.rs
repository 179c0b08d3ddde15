//! `sprout extend ENV DURATION [--skip-next]`: the front end of
//! [`ops::extend`](crate::ops::extend).

use super::{Context, print_structured};
use crate::cli::{ExtendArgs, Format};
use crate::error::Result;
use crate::ops;

pub fn run(context: &Context, args: &ExtendArgs) -> Result<()> {
    let session = context.session(&ops::Silent)?;
    let name = &args.env;
    let extended = ops::extend::extend(
        &session,
        name,
        args.duration,
        args.skip_next,
        chrono::Utc::now(),
        &format!("extend {name}"),
    )?;
    if context.format != Format::Table {
        return print_structured(context.format, &extended);
    }
    let mut text = match extended.expires_at {
        Some(at) => format!("{name}: expires at {}", super::status::stamp(at)),
        None => format!("{name}: has no TTL; its schedule counts from now"),
    };
    if let Some(skipped) = extended.skipped_teardown {
        text.push_str(&format!(
            "; the teardown at {} is skipped",
            super::status::stamp(skipped)
        ));
    }
    super::print(&format!("{text}\n"))
}
