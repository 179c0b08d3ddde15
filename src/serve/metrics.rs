//! sprout's Prometheus metrics (prometheus-client), every name prefixed `sprout_`.
//!
//! One [`Metrics`] is made at start and cloned into the loop, the SCM clients and the webhook
//! router; `/metrics` serves [`Metrics::encode`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Phase {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderResult {
    provider: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderStatus {
    provider: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Provider {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GeneratorLabel {
    generator: String,
}

struct Inner {
    registry: Registry,
    environments: Family<Phase, Gauge>,
    operation_seconds: Family<Kind, Histogram>,
    errors: Family<StageLabel, Counter>,
    teardowns: Family<Reason, Counter>,
    webhook_deliveries: Family<ProviderResult, Counter>,
    scm_requests: Family<ProviderStatus, Counter>,
    scm_rate_limit_remaining: Family<Provider, Gauge>,
    listing_unknown: Family<GeneratorLabel, Gauge>,
    leader: Gauge,
}

/// The daemon's metrics; cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn operation_histogram() -> Histogram {
    // 0.25 s to about 34 min: a namespace sync takes seconds, an EKS cluster tens of minutes.
    Histogram::new(exponential_buckets(0.25, 2.0, 14))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sprout");
        let environments = Family::<Phase, Gauge>::default();
        registry.register(
            "environments",
            "Environments by phase (including asleep, queued and frozen)",
            environments.clone(),
        );
        let operation_seconds =
            Family::<Kind, Histogram>::new_with_constructor(operation_histogram as fn() -> _);
        registry.register(
            "operation_duration_seconds",
            "Duration of operations (up, sync, sleep, wake, down) by kind",
            operation_seconds.clone(),
        );
        let errors = Family::<StageLabel, Counter>::default();
        registry.register("errors", "Errors by pipeline stage", errors.clone());
        let teardowns = Family::<Reason, Counter>::default();
        registry.register("teardowns", "Teardowns by reason", teardowns.clone());
        let webhook_deliveries = Family::<ProviderResult, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by provider and result",
            webhook_deliveries.clone(),
        );
        let scm_requests = Family::<ProviderStatus, Counter>::default();
        registry.register(
            "scm_requests",
            "SCM API requests by provider and HTTP status (or timeout, error, blocked)",
            scm_requests.clone(),
        );
        let scm_rate_limit_remaining = Family::<Provider, Gauge>::default();
        registry.register(
            "scm_rate_limit_remaining",
            "Requests left in the SCM's rate-limit window, as it last said",
            scm_rate_limit_remaining.clone(),
        );
        let listing_unknown = Family::<GeneratorLabel, Gauge>::default();
        registry.register(
            "generator_listing_unknown",
            "1 while a generator's last listing was unknown (its deletions are frozen)",
            listing_unknown.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 on the replica that acts, 0 on the others",
            leader.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            environments,
            operation_seconds,
            errors,
            teardowns,
            webhook_deliveries,
            scm_requests,
            scm_rate_limit_remaining,
            listing_unknown,
            leader,
        }))
    }

    /// Replaces the per-phase counts (phases not given drop out).
    pub fn set_environments<'a>(&self, counts: impl IntoIterator<Item = (&'a str, i64)>) {
        self.0.environments.clear();
        for (phase, count) in counts {
            self.0
                .environments
                .get_or_create(&Phase {
                    phase: phase.to_string(),
                })
                .set(count);
        }
    }

    pub fn observe_operation(&self, kind: &str, seconds: f64) {
        self.0
            .operation_seconds
            .get_or_create(&Kind {
                kind: kind.to_string(),
            })
            .observe(seconds);
    }

    pub fn count_error(&self, stage: &str) {
        self.0
            .errors
            .get_or_create(&StageLabel {
                stage: stage.to_string(),
            })
            .inc();
    }

    pub fn count_teardown(&self, reason: &str) {
        self.0
            .teardowns
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn count_webhook(&self, provider: &str, result: &str) {
        self.0
            .webhook_deliveries
            .get_or_create(&ProviderResult {
                provider: provider.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn count_scm_request(&self, provider: &str, status: &str) {
        self.0
            .scm_requests
            .get_or_create(&ProviderStatus {
                provider: provider.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub fn set_scm_rate_limit_remaining(&self, provider: &str, remaining: i64) {
        self.0
            .scm_rate_limit_remaining
            .get_or_create(&Provider {
                provider: provider.to_string(),
            })
            .set(remaining);
    }

    /// `generator` names it for people (e.g. `github:acme/shop`).
    pub fn set_listing_unknown(&self, generator: &str, unknown: bool) {
        self.0
            .listing_unknown
            .get_or_create(&GeneratorLabel {
                generator: generator.to_string(),
            })
            .set(i64::from(unknown));
    }

    pub fn set_leader(&self, leader: bool) {
        self.0.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.0.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.set_environments([("ready", 3), ("asleep", 1), ("queued", 2), ("frozen", 1)]);
        metrics.observe_operation("up", 4.2);
        metrics.count_error("sync");
        metrics.count_teardown("closed");
        metrics.count_webhook("github", "accepted");
        metrics.count_scm_request("github", "200");
        metrics.set_scm_rate_limit_remaining("github", 4999);
        metrics.set_listing_unknown("github:acme/shop", true);
        metrics.set_leader(true);
        let text = metrics.encode();
        for line in [
            "sprout_environments{phase=\"queued\"} 2",
            "sprout_environments{phase=\"frozen\"} 1",
            "sprout_operation_duration_seconds_count{kind=\"up\"} 1",
            "sprout_errors_total{stage=\"sync\"} 1",
            "sprout_teardowns_total{reason=\"closed\"} 1",
            "sprout_webhook_deliveries_total{provider=\"github\",result=\"accepted\"} 1",
            "sprout_scm_requests_total{provider=\"github\",status=\"200\"} 1",
            "sprout_scm_rate_limit_remaining{provider=\"github\"} 4999",
            "sprout_generator_listing_unknown{generator=\"github:acme/shop\"} 1",
            "sprout_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        metrics.set_environments([("ready", 4)]);
        assert!(!metrics.encode().contains("phase=\"queued\""));
    }
}
