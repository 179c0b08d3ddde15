//! `sprout serve [--listen ADDR] [--interval DURATION] [--once]`: the front end of
//! [`serve::daemon`](crate::serve::daemon).

use super::{Context, print_structured, runtime, sync_options};
use crate::cli::{Format, ServeArgs, WebhookProvider};
use crate::error::Result;
use crate::serve::daemon::{self, ServeOptions};
use crate::serve::webhook::Provider;

pub fn run(context: &Context, args: &ServeArgs) -> Result<()> {
    let options = ServeOptions {
        listen: args.listen,
        interval: args.interval,
        once: args.once,
        webhooks: args
            .webhooks
            .iter()
            .map(|w| match w {
                WebhookProvider::Github => Provider::GitHub,
                WebhookProvider::Gitlab => Provider::GitLab,
            })
            .collect(),
        sync: sync_options(&args.converge),
        state: args.state.clone(),
    };
    let report = runtime()?.block_on(daemon::run(
        context.root.clone(),
        context.kubeconfig.clone(),
        options,
    ))?;
    if context.format != Format::Table {
        print_structured(context.format, &report)?;
    }
    Ok(())
}
