//! sprout: ephemeral environments forked from production's desired state in git.
//!
//! The pipeline flows one way, one module per stage:
//! [`spec`] → [`source`] → [`fork`] → [`cluster`] → [`sync`] → [`state`] (status).
//! [`desired`] runs the first three; [`lifecycle`] decides when environments go and come back;
//! [`ops`] are the operations (up, sync, sleep, wake, down, a gc pass) that every front end —
//! [`commands`], `gc`, `serve` — calls.

pub mod builtin_templates;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod desired;
pub mod error;
pub mod fork;
pub mod lifecycle;
pub mod naming;
pub mod object;
pub mod ops;
pub mod output;
pub mod process;
pub mod progress;
pub mod project;
pub mod source;
pub mod spec;
pub mod state;
pub mod sync;
pub mod template;
pub mod yaml;

pub use error::{Error, Result, Stage};
