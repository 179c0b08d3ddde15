//! Spec → source → fork: an environment's desired state, computed without touching a cluster.
//! Shared by `render`, `sync`, `diff` and `up`, so they can never disagree about it.

use crate::error::{InStage, Result, Stage};
use crate::fork::{self, Excluded};
use crate::object::Object;
use crate::project::Project;
use crate::source;
use crate::spec::{Environment, RenderMode};
use std::time::Instant;

#[derive(Debug)]
pub struct DesiredState {
    pub commit: String,
    pub render: RenderMode,
    pub objects: Vec<Object>,
    pub excluded: Excluded,
    /// What the render should warn about (references the fork could not follow).
    pub warnings: Vec<String>,
}

pub fn compute(project: &Project, env: &Environment) -> Result<DesiredState> {
    let started = Instant::now();
    let cache = project.state_dir().join("cache");
    let fetched = source::fetch(
        &env.source,
        &project.root,
        &cache,
        &project.settings.remote_resources,
    )
    .in_stage(&env.name, Stage::Source)?;
    let source_time = started.elapsed();
    tracing::debug!(
        env = %env.name, commit = %fetched.commit, objects = fetched.objects.len(),
        files = fetched.files_read, ms = source_time.as_millis() as u64, "source read"
    );
    let started = Instant::now();
    let implied = fork::implied_namespace(env, fetched.namespace.as_deref()).to_string();
    let fetched_warnings = fetched.warnings;
    let forked = fork::fork(fetched.objects, env, &fetched.commit, &implied)
        .in_stage(&env.name, Stage::Fork)?;
    let fork_time = started.elapsed();
    tracing::debug!(env = %env.name, objects = forked.objects.len(), ms = fork_time.as_millis() as u64, "forked");
    Ok(DesiredState {
        commit: fetched.commit,
        render: fetched.render,
        objects: forked.objects,
        excluded: forked.excluded,
        warnings: fetched_warnings
            .into_iter()
            .chain(forked.warnings)
            .collect(),
    })
}

impl DesiredState {
    /// Adds objects only a cluster can provide (Secrets copied at sync time), in apply order.
    pub fn add(&mut self, objects: Vec<Object>) {
        self.objects.extend(objects);
        crate::object::sort_for_apply(&mut self.objects);
    }
}
