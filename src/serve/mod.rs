//! The parts of `sprout serve` that do not depend on the loop: generator configuration, the
//! sources of previews, webhooks and metrics. The loop (in the operations layer's terms) wires
//! them together.
//!
//! What the loop uses:
//! - [`config::Generator`] (parsed with sprout.yaml) and
//!   [`crate::project::Project::generator_tokens`] (tokens read at start; errors carry
//!   sprout.yaml's line and mean exit 2).
//! - [`scm::Scm::for_generator`] per `github`/`gitlab` generator, then per pass
//!   [`scm::Scm::list`] → [`Listing`]: `Known` only for a complete, believable listing, already
//!   filtered ([`scm::filter::wanted`]); `Unknown { reason }` freezes every deletion that
//!   depends on it. Before tearing a preview down: [`scm::Scm::confirm`] (a direct read; only
//!   `Closed`/`Merged` count). Feedback: [`scm::Scm::publish_feedback`] after each up/sync,
//!   [`scm::Scm::retire_feedback`] at teardown. [`scm::Scm::seed`] starts the shrink guard from
//!   the number of previews the state already holds, after a restart.
//! - [`branches::ls_remotes`] (each distinct remote once per pass), then
//!   [`branches::BranchGenerator::listing`] for each `branches` generator on it.
//! - [`webhook::router`] with [`webhook::WebhookSecrets::load`] (a wanted route without a
//!   secret is a start-up error), a channel the loop drains for [`webhook::Hint`]s, and the
//!   ready flag the loop sets after its first pass; with several replicas,
//!   [`handoff`] carries a follower's hints to the leader through the management cluster.
//! - [`metrics::Metrics`], shared by all of the above.

pub mod branches;
pub mod config;
pub mod daemon;
pub mod handoff;
pub mod listing;
pub mod metrics;
pub mod pass;
pub mod scm;
pub mod webhook;

pub use listing::Listing;
