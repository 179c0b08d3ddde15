//! Lifecycle: when environments go and come back; [`schedule`] evaluates the crontab schedules.

pub mod schedule;
