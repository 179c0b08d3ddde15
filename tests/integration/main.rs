//! One integration-test binary: the real `sprout` against real git repositories (and, for the
//! sync and provider tiers, a real control plane).

mod bad_input;
mod cluster;
mod eks;
mod git_sources;
mod golden;
mod init;
mod providers;
mod retry;
mod secret_copies;
mod serve;
mod sync;
mod util;
