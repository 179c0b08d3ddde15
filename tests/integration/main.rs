//! One integration-test binary: the real `sprout` against real git repositories (and, for the
//! sync and provider tiers, a real control plane).

mod bad_input;
mod cluster;
mod commit_only;
mod convergence;
mod crashes;
mod eks;
mod errors;
mod fork_namespaces;
mod git_sources;
mod golden;
mod init;
mod lifecycle;
mod management;
mod network;
mod providers;
mod retry;
mod secret_copies;
mod secret_values;
mod serve;
mod sync;
mod teardown;
mod tenancy;
mod util;
