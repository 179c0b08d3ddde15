//! `sleep` and `wake`: an environment put to sleep loses its cluster (or, on a shared cluster,
//! its objects) and keeps its spec and record with phase `asleep`, so it costs nothing; waking
//! brings it back from git at the commit its ref points to then.

use super::Session;
use super::down::{Released, release};
use super::up::{Origin, UpOutcome, UpRequest};
use crate::cluster::ClusterError;
use crate::error::{Error, InStage, Result, Stage};
use crate::state::{Phase, now};
use crate::sync::SyncOptions;

pub async fn sleep(session: &Session<'_>, name: &str, command: &str) -> Result<Released> {
    let env = session.environment(name)?;
    if env.protected {
        return Err(ClusterError::Protected).in_stage(name, Stage::Cluster);
    }
    let mut held = super::hold(session, &env, command)?;
    let result = async {
        let store = session.store();
        let mut state = store.load(name)?;
        if state.phase == Phase::Asleep {
            return Ok(Released::default());
        }
        let released =
            release(session, &mut held, &env, &mut state, Phase::Sleeping, false).await?;
        state.phase = Phase::Asleep;
        state.timeline.asleep_since = Some(now());
        state.health = None;
        state.drift = None;
        state.last_error = None;
        store.save(&state)?;
        Ok(released)
    }
    .await;
    held.release().await;
    result
}

/// Brings an environment back: the same path as `up` of an existing environment, which sees the
/// `asleep` phase and records the wake. A wake that was interrupted (any phase but an awake,
/// finished one) is finished by running it again.
pub async fn wake(
    session: &mut Session<'_>,
    name: &str,
    sync: SyncOptions,
    command: &str,
) -> Result<UpOutcome> {
    let state = session.store().load(name)?;
    if matches!(state.phase, Phase::Synced | Phase::Degraded) {
        return Err(Error::Usage(format!(
            "environment {name} is not asleep (phase {}); `sprout up {name}` brings any environment up",
            state.phase.name()
        )));
    }
    let request = UpRequest {
        name: Some(name.to_string()),
        origin: Origin::Named,
        from: String::new(),
        provider: None,
        ttl: None,
        teardown: None,
        images: Vec::new(),
        sync,
    };
    let plan = super::up::plan(session, &request)?;
    super::up::apply(session, plan, command).await
}
