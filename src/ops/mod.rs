//! The operations every front end calls — `up`, `sync`, `sleep`, `wake`, `extend`, `down` and a
//! `gc` pass — with typed inputs and outcomes: no clap types, no printing (progress goes to a
//! [`Progress`] the caller supplies). Commands, `gc` and `serve` are thin front ends over these,
//! so an environment is brought up or torn down the same way whoever asks.
//!
//! Every operation holds the environment's lock from its first change to its last (see
//! [`crate::state::lock`]), and leaves a record from which the same operation, run again after a
//! crash, converges.

pub mod down;
pub mod early;
pub mod extend;
pub mod gc;
pub mod sleep;
pub mod sync;
pub mod up;

use crate::cluster::provider::Progress;
use crate::cluster::{self, Target};
use crate::desired::{self, DesiredState};
use crate::error::{InStage, Result, Stage};
use crate::project::Project;
use crate::spec::Environment;
use crate::state::lease::{LeaseLock, Seen};
use crate::state::lock::Wait;
use crate::state::{EnvironmentLock, Holder, StateStore};
use crate::sync::live::Live;
use crate::sync::{SyncOptions, SyncPlan};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What every operation runs with: the project, how to reach clusters, where progress goes.
pub struct Session<'a> {
    pub project: Project,
    /// `--kubeconfig` or `KUBECONFIG`, for environments on an existing cluster.
    pub user_kubeconfig: Option<PathBuf>,
    pub progress: &'a dyn Progress,
    /// How long to wait for an environment another run is changing.
    pub lock_wait: Wait,
}

/// Adds the specs kept with the records (cluster state backend) to `project`: a replica or a
/// checkout that did not generate a spec acts on it all the same. Nothing with files.
pub fn adopt_stored_specs(project: &mut Project, user_kubeconfig: Option<&Path>) -> Result<()> {
    let store = StateStore::for_project(project, user_kubeconfig);
    for (name, text) in store.stored_specs()? {
        if let Some(place) = store.spec_place(&name) {
            project.adopt_stored_spec(&name, text, place);
        }
    }
    Ok(())
}

/// Progress that goes nowhere (tests, `--once` passes whose caller logs outcomes itself).
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _message: &str) {}
}

/// The default wait for a busy environment: long enough for another `up` to finish.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(600);

impl Session<'_> {
    /// The state store the project uses (files, or its management cluster).
    pub fn store(&self) -> StateStore {
        StateStore::for_project(&self.project, self.user_kubeconfig())
    }

    pub fn user_kubeconfig(&self) -> Option<&Path> {
        self.user_kubeconfig.as_deref()
    }

    pub fn environment(&self, name: &str) -> Result<Environment> {
        self.project.environment(name).in_stage(name, Stage::Spec)
    }

    /// The spec, where it lives and its desired state, checked before any side effect.
    pub fn prepare(&self, name: &str) -> Result<Prepared> {
        let env = self.environment(name)?;
        let target = cluster::target_for(&self.project, &env, self.user_kubeconfig())
            .in_stage(&env.name, Stage::Cluster)?;
        let desired = desired::compute(&self.project, &env)?;
        Ok(Prepared {
            env,
            target,
            desired,
        })
    }
}

/// An environment held for one operation: its local lock from the start and, on a cluster
/// others reach, its Lease there from just before the first write to that cluster (so that
/// everything that can fail without writing — reading sources, Secret copies — fails first).
/// Operations call [`Held::release`] when done; a crash frees the file lock at once and lets
/// the Lease expire.
pub struct Held {
    _file: EnvironmentLock,
    lease: Option<LeaseLock>,
    command: String,
    wait: Wait,
}

impl Held {
    /// Takes the environment's Lease on its shared cluster, once, before anything is read for
    /// a change; a no-op for environments on clusters of their own (only this machine reaches
    /// those, through sprout's kubeconfig). The Lease lives in the environment's namespace:
    /// when that does not exist yet, a sync (`first_sync`) is checked read-only first, so that
    /// a refusal still comes before any write, and a teardown has nothing to lock.
    pub async fn guard_cluster(
        &mut self,
        env: &Environment,
        live: &mut Live,
        first_sync: Option<(&SyncPlan<'_>, &SyncOptions)>,
    ) -> Result<()> {
        if self.lease.is_some() || !env.on_shared_cluster() {
            return Ok(());
        }
        let seen = Seen::read(&live.client, env.target_namespace())
            .await
            .map_err(|e| live.call_error("read the environment's namespace and lock", e))
            .in_stage(&env.name, Stage::Sync)?;
        if seen.namespace.is_none() {
            let Some((plan, options)) = first_sync else {
                return Ok(());
            };
            let nothing_yet = crate::sync::ReadAhead::of_absent_namespace(env.target_namespace());
            crate::sync::preflight(live, plan, options, Some(nothing_yet))
                .await
                .in_stage(&env.name, Stage::Sync)?;
        }
        self.take_lease(env, live, seen).await
    }

    /// Takes the Lease starting from `seen` (its namespace and Lease as just read), the
    /// read-only checks of a first sync already passed.
    async fn take_lease(&mut self, env: &Environment, live: &Live, seen: Seen) -> Result<()> {
        let lease = crate::state::lease::acquire(
            live,
            env.target_namespace(),
            &env.name,
            &env.project,
            &Holder::me(&self.command),
            self.wait,
            Some(seen),
        )
        .await
        .map_err(|e| e.into_error(&env.name))?;
        self.lease = Some(lease);
        Ok(())
    }

    /// A sync on a shared cluster, read before any lock is taken: the environment's namespace
    /// and Lease together with everything the sync reads (inventory, live state), all at once.
    /// When the Lease is free and nothing needs a write, that is the sync's outcome, and the
    /// Lease is never taken: a sync with nothing to change sends no write at all, not even to
    /// its lock, and costs one round trip to a cluster far away. Otherwise the Lease is taken
    /// (waiting for another run's, as always) and the sync reads everything again under it:
    /// every decision to write rests on reads made while the Lease is held. A refusal found
    /// by the first reads while the Lease was free comes before any write, as preflight's.
    pub async fn sync_on_shared_cluster(
        &mut self,
        env: &Environment,
        live: &mut Live,
        plan: &SyncPlan<'_>,
        options: &SyncOptions,
        early: Option<early::EarlyRead>,
    ) -> Result<Option<crate::sync::SyncReport>> {
        if self.lease.is_some() || !env.on_shared_cluster() {
            return Ok(None);
        }
        let (seen, settled) = match early {
            Some(early::EarlyRead { seen, ahead }) => {
                // A cluster that did not answer is not asked again (that would be a wait more).
                let seen = seen
                    .map_err(|e| live.call_error("read the environment's namespace and lock", e))
                    .in_stage(&env.name, Stage::Sync)?;
                let settled = crate::sync::settled(live, plan, options, Some(ahead)).await;
                (Ok(seen), settled)
            }
            None => {
                let client = live.client.clone();
                futures::future::join(
                    Seen::read(&client, env.target_namespace()),
                    crate::sync::settled(live, plan, options, None),
                )
                .await
            }
        };
        let seen = seen
            .map_err(|e| live.call_error("read the environment's namespace and lock", e))
            .in_stage(&env.name, Stage::Sync)?;
        if seen.held_by_another() {
            // Read while another run may be changing the environment: wait for it, then read
            // again under the Lease.
            self.guard_cluster(env, live, Some((plan, options))).await?;
            return Ok(None);
        }
        if let Some(report) = settled.in_stage(&env.name, Stage::Sync)? {
            return Ok(Some(report));
        }
        // The read-only checks passed (they are part of `settled`): a missing namespace is
        // made for the Lease without checking again.
        self.take_lease(env, live, seen).await?;
        Ok(None)
    }

    /// The namespace the lock created to live in, if this operation created it (it is then
    /// reported as created by the sync, which found it in place).
    pub fn created_namespace(&self) -> Option<&str> {
        self.lease.as_ref()?.created_namespace.as_deref()
    }

    pub async fn release(self) {
        if let Some(lease) = self.lease {
            lease.release().await;
        }
    }

    /// Releases the environment for good, once it is down: its Lease is deleted rather than
    /// given up, so that a namespace `down` keeps does not keep sprout's lock.
    pub async fn release_for_good(self) {
        if let Some(lease) = self.lease {
            lease.remove().await;
        }
    }
}

/// Takes `env`'s local lock for `command`, waiting as the session says.
pub fn hold(session: &Session<'_>, env: &Environment, command: &str) -> Result<Held> {
    let file = session
        .store()
        .lock(&env.name, command, session.lock_wait)?;
    Ok(Held {
        _file: file,
        lease: None,
        command: command.to_string(),
        wait: session.lock_wait,
    })
}

/// An environment ready to be synced or compared: spec, cluster and desired state.
pub struct Prepared {
    pub env: Environment,
    pub target: Target,
    pub desired: DesiredState,
}

/// Where an environment answers: the hosts of its Ingresses, `https://` where TLS covers them.
pub fn urls_of(objects: &[crate::object::Object]) -> Vec<String> {
    let mut urls = Vec::new();
    for ingress in objects.iter().filter(|o| o.kind() == "Ingress") {
        let body = &ingress.body;
        let tls_hosts: Vec<&str> = body
            .get("spec")
            .and_then(|s| s.get("tls"))
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("hosts")?.as_array())
            .flatten()
            .filter_map(|h| h.as_str())
            .collect();
        let rules = body
            .get("spec")
            .and_then(|s| s.get("rules"))
            .and_then(|r| r.as_array());
        for host in rules
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("host")?.as_str())
        {
            let scheme = if tls_hosts.contains(&host) {
                "https"
            } else {
                "http"
            };
            let url = format!("{scheme}://{host}/");
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    urls
}

pub async fn connect(env: &str, target: &Target) -> Result<Live> {
    let config = cluster::config(target)
        .await
        .in_stage(env, Stage::Cluster)?;
    let kubeconfig_error = |e: kube::Error| crate::cluster::ClusterError::Kubeconfig {
        path: target.kubeconfig.display().to_string(),
        message: e.to_string(),
    };
    let connection = crate::cluster::Connection::new(config)
        .map_err(kubeconfig_error)
        .in_stage(env, Stage::Cluster)?;
    let client = connection
        .client()
        .map_err(kubeconfig_error)
        .in_stage(env, Stage::Cluster)?;
    Ok(Live::new(client, cluster::server_of(target)).with_connection(connection))
}

/// Completes `desired` with what only a cluster can provide: the Secrets the environment copies
/// from its allow-listed source (`overlay.secrets: copy`), read from `live` or, when the source
/// names a context, from that context of the user's kubeconfig. Only read, never written.
pub async fn add_secret_copies(
    session: &Session<'_>,
    env: &Environment,
    live: &Live,
    desired: &mut DesiredState,
) -> Result<()> {
    let Some((copy, source)) = session
        .project
        .secret_copy_of(env)
        .in_stage(&env.name, Stage::Spec)?
    else {
        return Ok(());
    };
    let elsewhere = match &source.context {
        Some(context) => Some(
            connect(
                &env.name,
                &cluster::user_context(context, session.user_kubeconfig()),
            )
            .await?,
        ),
        None => None,
    };
    let copies = crate::sync::secret_copies::read(
        elsewhere.as_ref().unwrap_or(live),
        copy,
        &env.name,
        &env.project,
        env.target_namespace(),
    )
    .await
    .in_stage(&env.name, Stage::Sync)?;
    desired.add(copies);
    Ok(())
}
