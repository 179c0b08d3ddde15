//! `sprout serve`'s parts against real servers on loopback: the SCM clients against a fake
//! GitHub/GitLab, the webhook router over real HTTP, branch listings of real git remotes.

mod branches;
mod config;
pub mod fake_scm;
mod fuzz;
mod previews;
mod replicas;
mod scm;
pub mod webhook;
