//! Metrics of the controller, registered in the gateway's registry so that
//! one `/metrics` endpoint serves both.

use portcullis_gateway::Metrics;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

/// Controller metrics. The gateway's own `portcullis_watch_errors_total`,
/// `portcullis_config_objects` and snapshot metrics are shared through
/// [`Metrics`].
#[derive(Clone)]
pub struct ControllerMetrics {
    /// Gateway metrics this controller also updates.
    pub gateway: Metrics,
    /// Watches that restarted with a fresh list, by kind.
    pub watch_restarts_total: IntCounterVec,
    /// Status subresource writes, by kind.
    pub status_writes_total: IntCounterVec,
    /// Failed status subresource writes, by kind.
    pub status_write_errors_total: IntCounterVec,
    /// Kubernetes Events published, by kind and reason.
    pub events_total: IntCounterVec,
    /// 1 while this replica holds the leader Lease.
    pub leader: IntGauge,
    /// Bearer session decisions served from the cache.
    pub session_cache_hits_total: IntCounter,
    /// Bearer session decisions that needed a TokenReview.
    pub session_cache_misses_total: IntCounter,
    /// Session reviews by result (`allowed`, `forbidden`, `invalid`,
    /// `unavailable`).
    pub session_reviews_total: IntCounterVec,
    /// Objects held by the watch caches, by kind.
    pub watched_objects: IntGaugeVec,
}

impl ControllerMetrics {
    /// Creates the controller metrics and registers them next to the
    /// gateway's.
    pub fn register(gateway: &Metrics) -> prometheus::Result<Self> {
        let metrics = ControllerMetrics {
            gateway: gateway.clone(),
            watch_restarts_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_watch_restarts_total",
                    "Watches that restarted with a fresh list after the first one, by kind.",
                ),
                &["kind"],
            )?,
            status_writes_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_status_writes_total",
                    "Status subresource writes by the leader, by kind.",
                ),
                &["kind"],
            )?,
            status_write_errors_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_status_write_errors_total",
                    "Failed status subresource writes, by kind.",
                ),
                &["kind"],
            )?,
            events_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_events_total",
                    "Kubernetes Events published by the leader, by kind and reason.",
                ),
                &["kind", "reason"],
            )?,
            leader: IntGauge::new(
                "portcullis_leader",
                "1 while this replica holds the leader Lease and writes status.",
            )?,
            session_cache_hits_total: IntCounter::new(
                "portcullis_session_cache_hits_total",
                "Bearer session decisions served from the cache.",
            )?,
            session_cache_misses_total: IntCounter::new(
                "portcullis_session_cache_misses_total",
                "Bearer session decisions that needed a TokenReview.",
            )?,
            session_reviews_total: IntCounterVec::new(
                Opts::new(
                    "portcullis_session_reviews_total",
                    "TokenReview and SubjectAccessReview decisions, by result.",
                ),
                &["result"],
            )?,
            watched_objects: IntGaugeVec::new(
                Opts::new(
                    "portcullis_watched_objects",
                    "Objects held by the watch caches, by kind.",
                ),
                &["kind"],
            )?,
        };

        let registry = &gateway.registry;
        registry.register(Box::new(metrics.watch_restarts_total.clone()))?;
        registry.register(Box::new(metrics.status_writes_total.clone()))?;
        registry.register(Box::new(metrics.status_write_errors_total.clone()))?;
        registry.register(Box::new(metrics.events_total.clone()))?;
        registry.register(Box::new(metrics.leader.clone()))?;
        registry.register(Box::new(metrics.session_cache_hits_total.clone()))?;
        registry.register(Box::new(metrics.session_cache_misses_total.clone()))?;
        registry.register(Box::new(metrics.session_reviews_total.clone()))?;
        registry.register(Box::new(metrics.watched_objects.clone()))?;
        Ok(metrics)
    }
}
