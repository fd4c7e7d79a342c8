//! The Portcullis data plane.
//!
//! A [`Gateway`] serves requests from an immutable
//! [`portcullis_compile::Snapshot`] that is swapped atomically on every
//! configuration change: a request keeps the snapshot it started with, and
//! the request path takes no lock and copies no configuration.
//!
//! The pipeline (see `pipeline.rs`) runs, in order: route match, CORS
//! preflight, authentication, rate limit, forward.

#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod body;
pub mod client_ip;
pub mod denial;
pub mod event;
pub mod forward;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod rate_limit;
pub mod secret;
pub mod server;
pub mod sessions;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use portcullis_compile::{Compiled, Problem, Report, Snapshot};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use metrics::Metrics;
pub use sessions::{FileSessions, SessionOutcome, SessionVerifier};

/// Settings of the data plane that do not come from resources.
#[derive(Clone, Default)]
pub struct GatewayConfig {
    /// Proxies whose `X-Forwarded-For` is believed when attributing a
    /// request to a client address.
    pub trusted_proxies: Vec<IpNet>,
    /// Bearer session backend. `None` makes bearer routes and the session
    /// fallback of api-key routes return 503.
    pub sessions: Option<Arc<dyn SessionVerifier>>,
    /// Slots per row of the rate-limit sketch; 0 picks the default (65,536,
    /// which is 1 MiB of counters).
    pub rate_limit_slots: usize,
}

/// The data plane: current snapshot, upstream connection pool, rate-limit
/// counters and metrics.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    report: ArcSwap<Report>,
    generation: AtomicU64,
    config: GatewayConfig,
    limiter: rate_limit::RateLimiter,
    client: forward::UpstreamClient,
    /// Metrics registry; the controller registers its own metrics here.
    pub metrics: Metrics,
}

impl Gateway {
    /// Creates a gateway serving an empty, unsynced snapshot: every route is
    /// 404 and readiness is false until the first [`Gateway::apply`] with
    /// `synced`.
    pub fn new(config: GatewayConfig, metrics: Metrics) -> Arc<Self> {
        let slots = if config.rate_limit_slots == 0 {
            1 << 16
        } else {
            config.rate_limit_slots
        };
        Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            report: ArcSwap::from_pointee(Report::default()),
            generation: AtomicU64::new(0),
            limiter: rate_limit::RateLimiter::new(slots),
            client: forward::upstream_client(),
            config,
            metrics,
        })
    }

    /// Installs a compiled configuration and returns its generation.
    ///
    /// `synced` is true when the source has delivered a complete view. Until
    /// a synced snapshot is installed, protected routes return 503. Problems
    /// that were not in the previous report are logged once here, never per
    /// request.
    pub fn apply(&self, compiled: Compiled, synced: bool, compile_time: Duration) -> u64 {
        let Compiled {
            mut snapshot,
            report,
        } = compiled;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        snapshot.generation = generation;
        snapshot.synced = synced;

        let previous = self.report.load();
        let known: HashSet<&Problem> = previous.problems.iter().collect();
        for problem in report.problems.iter().filter(|p| !known.contains(p)) {
            tracing::warn!(
                kind = problem.kind,
                namespace = %problem.namespace,
                name = %problem.name,
                reason = %problem.reason,
                "{}",
                problem.message
            );
        }

        let metrics = &self.metrics;
        metrics.snapshot_generation.set(generation as i64);
        metrics
            .compile_duration_seconds
            .observe(compile_time.as_secs_f64());
        metrics.ready.set(i64::from(synced));
        metrics
            .config_objects
            .with_label_values(&["GatewayRoute"])
            .set(report.routes.len() as i64);
        metrics
            .config_objects
            .with_label_values(&["ApiKey"])
            .set(report.keys.len() as i64);
        for kind in ["GatewayRoute", "ApiKey"] {
            let count = report.problems.iter().filter(|p| p.kind == kind).count();
            metrics
                .config_problems
                .with_label_values(&[kind])
                .set(count as i64);
        }

        tracing::info!(
            snapshot.generation = generation,
            routes = snapshot.route_count(),
            key_hashes = snapshot.key_hash_count(),
            problems = report.problems.len(),
            synced,
            compile_ms = compile_time.as_secs_f64() * 1000.0,
            "snapshot installed"
        );
        self.report.store(Arc::new(report));
        self.snapshot.store(Arc::new(snapshot));
        generation
    }

    /// Returns the snapshot that new requests are served from.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Returns the report of the installed snapshot.
    pub fn report(&self) -> Arc<Report> {
        self.report.load_full()
    }

    /// True once a synced snapshot is installed.
    pub fn is_ready(&self) -> bool {
        self.snapshot.load().synced
    }

    fn sessions(&self) -> Option<&dyn SessionVerifier> {
        self.config.sessions.as_deref()
    }

    fn trusted_proxies(&self) -> &[IpNet] {
        &self.config.trusted_proxies
    }

    fn limiter(&self) -> &rate_limit::RateLimiter {
        &self.limiter
    }

    fn client(&self) -> &forward::UpstreamClient {
        &self.client
    }
}

/// Serves traffic on `listener` until `shutdown` is cancelled.
pub async fn serve_traffic(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    server::serve(listener, shutdown, move |request, peer| {
        pipeline::handle(gateway.clone(), request, peer)
    })
    .await;
}

/// Serves the admin endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve_admin(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    server::serve(listener, shutdown, move |request, _peer| {
        admin::handle(gateway.clone(), request)
    })
    .await;
}
