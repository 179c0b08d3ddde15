//! Leader election on a `coordination.k8s.io/v1` Lease, for the replicas of `sprout serve`:
//! exactly one acts, the others wait to take over.
//!
//! kube has no elector, so this is a small one, the algorithm of client-go's leaderelection:
//! - a candidate takes the Lease when it is missing, released, or unchanged (same
//!   `resourceVersion`) for a whole lease duration as observed on the candidate's own monotonic
//!   clock (no trust in other hosts' clocks);
//! - the leader renews every retry period; it is leader only until its last successful renewal
//!   *started* plus the renew deadline, which is shorter than the lease duration. A leader that
//!   cannot renew (partitioned from the API server) therefore stops acting before anyone can
//!   take the Lease over: the others wait a full lease duration from when they saw its last
//!   renewal, which happened after that renewal started;
//! - every write carries the `resourceVersion` it read, so two candidates never both win.
//!
//! [`Leadership::is_leader`] is computed from that deadline at the moment it is called, so a
//! destructive step that re-checks it right before acting cannot act on a stale belief, even
//! while the renewal loop is stuck in a request.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The Lease `serve` replicas elect their leader on, in the management namespace.
pub const LEASE_NAME: &str = "sprout-leader";

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Where the Lease lives (the management namespace).
    pub namespace: String,
    pub lease_name: String,
    /// This candidate, unique among the replicas (the pod name, or host/pid).
    pub identity: String,
    /// How long others wait, after they last saw the Lease renewed, before taking it over.
    pub lease_duration: Duration,
    /// How long after the start of its last successful renewal the leader stops acting.
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates try.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: &str, identity: &str) -> Self {
        ElectionConfig {
            namespace: namespace.to_string(),
            lease_name: LEASE_NAME.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Why these timings cannot keep the guarantee, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?}): a leader that cannot renew must stop before its Lease can be taken over",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.identity.is_empty() {
            return Err("a candidate needs an identity".into());
        }
        Ok(())
    }
}

/// An identity for this process: the pod's name (`POD_NAME`, `HOSTNAME`) and pid.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME").unwrap_or_else(|_| super::lock::hostname());
    format!("{host}/{}", std::process::id())
}

/// The state shared by the campaign task and everyone who asks.
struct Shared {
    /// Leader until this instant; None while following.
    leading_until: Mutex<Option<Instant>>,
}

impl Shared {
    fn is_leader(&self) -> bool {
        self.leading_until
            .lock()
            .expect("leader lock")
            .is_some_and(|until| Instant::now() < until)
    }
}

/// A cheap handle to ask "do I still lead?" before a destructive step.
#[derive(Clone)]
pub struct LeaderCheck {
    shared: Arc<Shared>,
}

impl LeaderCheck {
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }
}

/// A running campaign: started by [`campaign`], stopped by [`Leadership::stop`] (or dropped).
pub struct Leadership {
    shared: Arc<Shared>,
    changes: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    config: ElectionConfig,
}

/// Starts campaigning for the Lease `config` names, through `client` (of the management
/// cluster). `on_change` is called with every transition (true: now leading; false: no longer),
/// from the campaign task — for the `sprout_leader` gauge and logs.
pub fn campaign(
    client: kube::Client,
    config: ElectionConfig,
    on_change: impl Fn(bool) + Send + Sync + 'static,
) -> Result<Leadership, String> {
    config.check()?;
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let shared = Arc::new(Shared {
        leading_until: Mutex::new(None),
    });
    let (notify, changes) = watch::channel(false);
    let task = tokio::spawn(run(
        api.clone(),
        config.clone(),
        shared.clone(),
        notify,
        Box::new(on_change),
    ));
    Ok(Leadership {
        shared,
        changes,
        task,
        api,
        config,
    })
}

impl Leadership {
    /// Whether this replica leads now: re-check right before every destructive step.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// A handle for code that only needs to ask (operations deep in the loop).
    pub fn checker(&self) -> LeaderCheck {
        LeaderCheck {
            shared: self.shared.clone(),
        }
    }

    /// Transitions as they happen (`true`: leading). The value is the campaign's view; for a
    /// decision, [`Leadership::is_leader`] is the one to ask.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Stops campaigning and, if this replica leads, releases the Lease so another takes over
    /// at once (a graceful shutdown). Best effort: a Lease not released expires.
    pub async fn stop(self) {
        self.task.abort();
        let was_leader = self.shared.is_leader();
        *self.shared.leading_until.lock().expect("leader lock") = None;
        if !was_leader {
            return;
        }
        let released = async {
            let mut lease = self.api.get(&self.config.lease_name).await?;
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(());
            };
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = None;
            self.api
                .replace(&self.config.lease_name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(self.config.retry_period, released).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out; it will expire"),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.task.abort();
        *self.shared.leading_until.lock().expect("leader lock") = None;
    }
}

/// What one attempt found.
enum Attempt {
    /// This candidate holds the Lease, renewed by a request that started at the given instant.
    Holding(Instant),
    /// Someone else holds it.
    Held,
}

/// The campaign: try to take or renew every retry period, flip `leading_until` and notify.
async fn run(
    api: Api<Lease>,
    config: ElectionConfig,
    shared: Arc<Shared>,
    notify: watch::Sender<bool>,
    on_change: Box<dyn Fn(bool) + Send + Sync>,
) {
    let mut observed: Option<(String, Instant)> = None;
    let mut leading = false;
    loop {
        let started = Instant::now();
        // A slow answer (a busy API server) may still renew, but no attempt outlives the
        // leadership it could extend, nor the renew deadline: a hung connection must not keep
        // the loop from noticing that leadership has lapsed.
        let limit = match *shared.leading_until.lock().expect("leader lock") {
            Some(until) if until > started => until - started,
            _ => config.renew_deadline,
        };
        let attempt = tokio::time::timeout(
            limit,
            try_acquire_or_renew(&api, &config, &mut observed, started),
        )
        .await;
        {
            let mut until = shared.leading_until.lock().expect("leader lock");
            match &attempt {
                Ok(Ok(Attempt::Holding(started))) => {
                    *until = Some(*started + config.renew_deadline);
                }
                Ok(Ok(Attempt::Held)) => *until = None,
                // Could not tell: keep leading until the deadline of the last renewal.
                Ok(Err(_)) | Err(_) => {}
            }
        }
        if let Ok(Err(e)) = &attempt {
            tracing::debug!(error = %e, "leader election: the API server did not answer");
        }
        let now_leading = shared.is_leader();
        if now_leading != leading {
            leading = now_leading;
            if leading {
                tracing::info!(identity = %config.identity, "leader election: now leading");
            } else {
                tracing::warn!(identity = %config.identity, "leader election: no longer leading");
            }
            let _ = notify.send(leading);
            on_change(leading);
        }
        // Wake for the next attempt, or earlier when leadership lapses in between (so the
        // transition is announced on time).
        let mut next = started + config.retry_period;
        if let Some(until) = *shared.leading_until.lock().expect("leader lock")
            && until > Instant::now()
            && until < next
        {
            next = until;
        }
        tokio::time::sleep_until(next).await;
    }
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &ElectionConfig,
    observed: &mut Option<(String, Instant)>,
    started: Instant,
) -> kube::Result<Attempt> {
    let name = &config.lease_name;
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            spec: Some(held_spec(config, None, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Holding(started)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Held),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let mine = holder == config.identity;
    if !mine && !holder.is_empty() {
        // Another holder: free only once its Lease has not changed for a lease duration, as
        // seen on this candidate's clock since it first saw this version.
        let seen_at = match observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                *observed = Some((version.clone(), started));
                started
            }
        };
        let duration = spec
            .lease_duration_seconds
            .map_or(config.lease_duration, |s| {
                Duration::from_secs(s.max(0) as u64)
            });
        if started < seen_at + duration {
            return Ok(Attempt::Held);
        }
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquired = if mine {
        spec.acquire_time.clone()
    } else {
        None
    };
    lease.spec = Some(held_spec(config, acquired, transitions));
    // The resourceVersion read above rides along: a concurrent writer makes this a 409.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Attempt::Holding(started)),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Held),
        Err(e) => Err(e),
    }
}

fn held_spec(config: &ElectionConfig, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs().max(1) as i32),
        acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_that_cannot_keep_the_guarantee_are_refused() {
        let mut config = ElectionConfig::new("sprout-system", "a");
        config.check().unwrap();
        config.renew_deadline = config.lease_duration;
        assert!(
            config
                .check()
                .unwrap_err()
                .contains("shorter than the lease")
        );
        let mut config = ElectionConfig::new("sprout-system", "a");
        config.retry_period = config.renew_deadline;
        assert!(config.check().unwrap_err().contains("retry period"));
    }
}
