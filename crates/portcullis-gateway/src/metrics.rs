//! Prometheus metrics of the data plane and of configuration changes.
//!
//! Labels are resource names or fixed words, never client-supplied values:
//! an unmatched request is counted with empty `tenant` and `route`.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric the gateway exports, registered in one registry that the
/// controller adds its own metrics to.
#[derive(Clone)]
pub struct Metrics {
    /// Registry served on `/metrics`.
    pub registry: Registry,
    /// Requests by tenant, route, status code and outcome.
    pub requests_total: IntCounterVec,
    /// Authentication decisions by tenant, route and result.
    pub auth_total: IntCounterVec,
    /// Requests stopped before any function ran, by reason.
    pub rejected_before_invoke_total: IntCounterVec,
    /// End-to-end latency as seen by the gateway.
    pub request_duration_seconds: HistogramVec,
    /// Time from sending upstream to the response head.
    pub upstream_duration_seconds: HistogramVec,
    /// Generation of the snapshot being served.
    pub snapshot_generation: IntGauge,
    /// Time to compile resources into a snapshot.
    pub compile_duration_seconds: Histogram,
    /// Objects in the latest compile, by kind.
    pub config_objects: IntGaugeVec,
    /// Objects with problems in the latest compile, by kind.
    pub config_problems: IntGaugeVec,
    /// Failed watches or unreadable config files, by kind.
    pub watch_errors_total: IntCounterVec,
    /// 1 once the first full sync completed.
    pub ready: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ];
        let metrics = Metrics {
            requests_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_requests_total",
                    "Requests by route, status and outcome.",
                ),
                &["tenant", "route", "code", "outcome"],
            )
            .unwrap(),
            auth_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_auth_decisions_total",
                    "Authentication decisions by route and result.",
                ),
                &["tenant", "route", "result"],
            )
            .unwrap(),
            rejected_before_invoke_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_rejected_before_invoke_total",
                    "Requests answered by the gateway before any function ran.",
                ),
                &["tenant", "route", "reason"],
            )
            .unwrap(),
            request_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "portcullis_request_duration_seconds",
                    "Time from request head to response head, in seconds.",
                )
                .buckets(latency_buckets.clone()),
                &["tenant", "route"],
            )
            .unwrap(),
            upstream_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "portcullis_upstream_duration_seconds",
                    "Time the function took to return its response head, in seconds.",
                )
                .buckets(latency_buckets),
                &["tenant", "route"],
            )
            .unwrap(),
            snapshot_generation: IntGauge::new(
                "portcullis_snapshot_generation",
                "Generation of the routing snapshot being served.",
            )
            .unwrap(),
            compile_duration_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "portcullis_compile_duration_seconds",
                    "Time to compile resources into a snapshot, in seconds.",
                )
                .buckets(vec![0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            )
            .unwrap(),
            config_objects: IntGaugeVec::new(
                Opts::new(
                    "portcullis_config_objects",
                    "Objects in the latest compile.",
                ),
                &["kind"],
            )
            .unwrap(),
            config_problems: IntGaugeVec::new(
                Opts::new(
                    "portcullis_config_problems",
                    "Objects reported with a problem by the latest compile.",
                ),
                &["kind"],
            )
            .unwrap(),
            watch_errors_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_watch_errors_total",
                    "Watch failures or unreadable configuration files.",
                ),
                &["kind"],
            )
            .unwrap(),
            ready: IntGauge::new(
                "portcullis_ready",
                "1 once the first full sync of keys and routes completed.",
            )
            .unwrap(),
            registry,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 11] = [
            Box::new(self.requests_total.clone()),
            Box::new(self.auth_total.clone()),
            Box::new(self.rejected_before_invoke_total.clone()),
            Box::new(self.request_duration_seconds.clone()),
            Box::new(self.upstream_duration_seconds.clone()),
            Box::new(self.snapshot_generation.clone()),
            Box::new(self.compile_duration_seconds.clone()),
            Box::new(self.config_objects.clone()),
            Box::new(self.config_problems.clone()),
            Box::new(self.watch_errors_total.clone()),
            Box::new(self.ready.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("metric names are unique");
        }
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
