//! `sprout serve` as a process: the HTTP endpoints (webhooks, `/healthz`, `/readyz`,
//! `/metrics`) and the loop that runs a [`pass`](super::pass) every interval, or at once when a
//! webhook hints that a repository changed. A hint is never an order: it only makes the next
//! pass come sooner, and that pass re-reads the truth.
//!
//! SIGTERM or Ctrl-C: no new pass starts; a pass already running is finished first
//! (operations are resumable, so even a kill loses nothing), and the process exits 0.

use super::handoff;
use super::metrics::Metrics;
use super::pass::{Daemon, PassReport};
use super::scm::HttpOptions;
use super::webhook::{self, Provider, WebhookSecrets};
use crate::error::{Error, Result};
use crate::project::Project;
use crate::state::leader::{self, ElectionConfig};
use crate::sync::SyncOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub interval: Duration,
    pub once: bool,
    /// Providers whose webhook route is served (each needs its secret).
    pub webhooks: Vec<Provider>,
    pub sync: SyncOptions,
    pub state: crate::cli::StateArgs,
}

/// Runs one pass (`once`) or the daemon until a signal. The report of the last pass is
/// returned; with `once`, a failed operation is an error (exit 1).
pub async fn run(
    root: PathBuf,
    user_kubeconfig: Option<PathBuf>,
    options: ServeOptions,
) -> Result<PassReport> {
    let mut project = Project::open(&root)?;
    options.state.apply(&mut project.settings.state)?;
    crate::ops::adopt_stored_specs(&mut project, user_kubeconfig.as_deref())?;
    let metrics = Metrics::new();
    let secrets =
        WebhookSecrets::load(&options.webhooks, &root).map_err(|e| Error::Usage(e.to_string()))?;
    let mut daemon = Daemon::new(
        &project,
        user_kubeconfig.clone(),
        metrics.clone(),
        options.sync.clone(),
        HttpOptions::default(),
        options.state.clone(),
    )?;
    // With records in a management cluster, replicas elect one leader there; alone (file
    // records), this process is the only one that can act.
    let (leadership, management) = match project.settings.state.backend {
        crate::project::StateBackend::Kubernetes => {
            let settings = &project.settings.state;
            let client =
                crate::state::kube::management_client(settings, user_kubeconfig.as_deref())
                    .await
                    .map_err(|e| Error::Usage(e.to_string()))?;
            let gauge = metrics.clone();
            let config = ElectionConfig::new(&settings.namespace, &leader::default_identity());
            let leadership = leader::campaign(client.clone(), config, move |leading| {
                gauge.set_leader(leading);
                tracing::info!(leader = leading, "leadership changed");
            })
            .map_err(Error::Usage)?;
            daemon.leader = Some(leadership.checker());
            let hints: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                kube::Api::namespaced(client, &settings.namespace);
            (Some(leadership), Some(hints))
        }
        crate::project::StateBackend::File => {
            metrics.set_leader(true);
            (None, None)
        }
    };
    if options.once {
        if let Some(leadership) = &leadership {
            // One pass needs the leadership: wait for it as long as a lease could be held.
            let mut changes = leadership.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(30), changes.wait_for(|l| *l)).await;
        }
        let report = daemon.pass().await;
        if let Some(leadership) = leadership {
            leadership.stop().await;
        }
        let report = report?;
        log_report(&report);
        return match report.failed() {
            0 => Ok(report),
            failed => Err(Error::ServeFailed { failed }),
        };
    }
    let ready = Arc::new(AtomicBool::new(false));
    let (hints_in, mut hints) = mpsc::channel(256);
    // Any replica accepts a webhook; a follower's go to the leader through the store.
    let accepted = match (&leadership, management) {
        (Some(leadership), Some(store)) => {
            let (accepted_in, accepted) = mpsc::channel(256);
            tokio::spawn(handoff::relay(
                store.clone(),
                leadership.checker(),
                leadership.identity().to_string(),
                accepted,
                hints_in.clone(),
            ));
            tokio::spawn(handoff::watch(store, leadership.checker(), hints_in));
            accepted_in
        }
        _ => hints_in,
    };
    let router = webhook::router(secrets, accepted, ready.clone(), metrics.clone());
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {}", options.listen), e))?;
    tracing::info!(listen = %options.listen, interval_s = options.interval.as_secs(), "serving");
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    // Registered once, before the first pass: a signal that arrives while a pass runs is kept
    // for the next wait instead of being lost (and SIGTERM no longer kills the process).
    let mut stop = Shutdown::listen()?;
    let mut last = None;
    loop {
        match daemon.pass().await {
            Ok(report) => {
                log_report(&report);
                last = Some(report);
            }
            Err(error) => tracing::error!(%error, "pass failed; the next one retries"),
        }
        ready.store(true, Ordering::Release);
        tokio::select! {
            _ = stop.requested() => break,
            _ = tokio::time::sleep(options.interval) => {}
            Some(hint) = hints.recv() => {
                // Several deliveries for one change arrive together: one pass reads them all.
                tracing::info!(provider = hint.provider.name(), repository = %hint.repository, number = ?hint.number, "webhook: re-reading");
                tokio::time::sleep(Duration::from_millis(200)).await;
                while hints.try_recv().is_ok() {}
            }
        }
    }
    tracing::info!("stopping: no pass is running");
    if let Some(leadership) = leadership {
        leadership.stop().await;
    }
    server.abort();
    last.ok_or_else(|| Error::Usage("stopped before the first pass finished".into()))
}

/// SIGTERM (what Kubernetes sends) and SIGINT (Ctrl-C).
struct Shutdown {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn listen() -> Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| signal(kind).map_err(|e| Error::io("cannot listen for signals", e));
        Ok(Shutdown {
            terminate: listen(SignalKind::terminate())?,
            interrupt: listen(SignalKind::interrupt())?,
        })
    }

    async fn requested(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

fn log_report(report: &PassReport) {
    for operation in &report.operations {
        if operation.ok {
            tracing::info!(environment = %operation.environment, operation = operation.kind, message = ?operation.message, "done");
        } else {
            tracing::warn!(environment = %operation.environment, operation = operation.kind, error = ?operation.message, "failed");
        }
    }
    for (generator, reason) in &report.frozen {
        tracing::warn!(%generator, %reason, "frozen: listing unknown, no deletion this pass");
    }
    if let Some(lifecycle) = &report.lifecycle {
        for action in &lifecycle.actions {
            tracing::info!(environment = %action.action.environment, action = ?action.action.action, reason = ?action.action.reason, outcome = ?action.outcome, "lifecycle");
        }
    }
}
