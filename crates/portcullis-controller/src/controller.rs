//! Wiring of one replica: watch caches → compile → gateway, plus leader
//! election and the status writer.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use portcullis_api::{ApiKey, GatewayRoute};
use portcullis_compile::{CompileOptions, Compiled, Report, Resources};
use portcullis_gateway::{Gateway, GatewayConfig, Metrics};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::leader::{LeaderElector, LeaseTiming};
use crate::metrics::ControllerMetrics;
use crate::sessions::KubeSessions;
use crate::status_writer::StatusWriter;
use crate::watch::{ChangeFilter, WatchContext, Watchable, Watched};

/// Quiet time after a change before compiling, so a burst of changes is
/// compiled once.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Upper bound on the wait for a quiet moment under constant change.
const MAX_DEBOUNCE: Duration = Duration::from_millis(500);
/// Label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Maximum wait for background tasks at shutdown, after the listeners
/// have drained.
const TASK_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a replica needs besides its listeners.
pub struct Settings {
    /// Client for every API call.
    pub client: Client,
    /// Namespaces to watch; `None` watches all.
    pub namespaces: Option<Vec<String>>,
    /// Settings of the data plane. `sessions` is replaced by a
    /// TokenReview-backed verifier.
    pub gateway: GatewayConfig,
    /// Audience required of bearer session tokens.
    pub session_audience: Option<String>,
    /// Namespace of the leader Lease.
    pub lease_namespace: String,
    /// Name of the leader Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events.
    pub identity: String,
    /// Lease durations.
    pub lease_timing: LeaseTiming,
}

/// The four watch caches a compile reads.
struct Caches {
    routes: Arc<Watched<GatewayRoute>>,
    keys: Arc<Watched<ApiKey>>,
    services: Watched<Service>,
    slices: Watched<EndpointSlice>,
}

impl Caches {
    fn start(
        namespaces: Option<&[String]>,
        context: &WatchContext,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let all = watcher::Config::default();
        // Slices without the label belong to no Service, so no route can use them.
        let slices = watcher::Config::default().labels(SERVICE_NAME_LABEL);
        Caches {
            routes: Arc::new(Watched::start(
                "GatewayRoute",
                namespaces,
                all.clone(),
                ChangeFilter::Generation,
                context,
                tasks,
            )),
            keys: Arc::new(Watched::start(
                "ApiKey",
                namespaces,
                all.clone(),
                ChangeFilter::Generation,
                context,
                tasks,
            )),
            services: Watched::start(
                "Service",
                namespaces,
                all,
                ChangeFilter::Any,
                context,
                tasks,
            ),
            slices: Watched::start(
                "EndpointSlice",
                namespaces,
                slices,
                ChangeFilter::Any,
                context,
                tasks,
            ),
        }
    }

    /// True when routes and their backends are listed, so a snapshot does
    /// not show every route as missing its Service.
    fn routes_ready(&self) -> bool {
        self.routes.is_ready() && self.services.is_ready() && self.slices.is_ready()
    }

    /// True when every cache has completed its first list.
    fn synced(&self) -> bool {
        self.routes_ready() && self.keys.is_ready()
    }

    /// Copies the cached objects into compile input. Services and slices
    /// that no route targets are left out.
    fn resources(&self, metrics: &ControllerMetrics) -> Resources {
        let routes = owned(self.routes.objects());
        let targets: HashSet<(String, String)> = routes
            .iter()
            .map(|r| {
                (
                    r.namespace().unwrap_or_default(),
                    r.spec.target.service.clone(),
                )
            })
            .collect();
        let targeted = |namespace: Option<String>, service: Option<&String>| {
            service.is_some_and(|s| targets.contains(&(namespace.unwrap_or_default(), s.clone())))
        };

        let keys = owned(self.keys.objects());
        let services = self.services.objects();
        let slices = self.slices.objects();
        for (kind, count) in [
            (self.routes.kind(), routes.len()),
            (self.keys.kind(), keys.len()),
            (self.services.kind(), services.len()),
            (self.slices.kind(), slices.len()),
        ] {
            metrics
                .watched_objects
                .with_label_values(&[kind])
                .set(count as i64);
        }

        let services = services
            .into_iter()
            .filter(|s| targeted(s.namespace(), s.metadata.name.as_ref()))
            .map(|s| (*s).clone())
            .collect();
        let endpoint_slices = slices
            .into_iter()
            .filter(|s| targeted(s.namespace(), s.labels().get(SERVICE_NAME_LABEL)))
            .map(|s| (*s).clone())
            .collect();
        Resources {
            routes,
            keys,
            endpoint_slices,
            services: Some(services),
        }
    }
}

fn owned<K: Watchable>(objects: Vec<Arc<K>>) -> Vec<K> {
    objects.into_iter().map(|o| (*o).clone()).collect()
}

/// Runs one replica until `shutdown` is cancelled: serves traffic and admin
/// endpoints, keeps the snapshot current, and writes status while leading.
pub async fn serve(
    settings: Settings,
    traffic: TcpListener,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let gateway_metrics = Metrics::new();
    let metrics = ControllerMetrics::register(&gateway_metrics)
        .context("failed to register controller metrics")?;

    let sessions = KubeSessions::new(
        settings.client.clone(),
        settings.session_audience.clone(),
        metrics.clone(),
    );
    let gateway = Gateway::new(
        GatewayConfig {
            sessions: Some(Arc::new(sessions)),
            ..settings.gateway
        },
        gateway_metrics,
    );

    let address = |listener: &TcpListener| {
        listener
            .local_addr()
            .map_or_else(|_| "unknown".to_owned(), |a| a.to_string())
    };
    let traffic_address = address(&traffic);
    let admin_address = address(&admin);
    let mut servers = JoinSet::new();
    servers.spawn(portcullis_gateway::serve_traffic(
        gateway.clone(),
        traffic,
        shutdown.clone(),
    ));
    servers.spawn(portcullis_gateway::serve_admin(
        gateway.clone(),
        admin,
        shutdown.clone(),
    ));
    tracing::info!(
        traffic = %traffic_address,
        admin = %admin_address,
        identity = %settings.identity,
        namespaces = ?settings.namespaces,
        "portcullis controller started"
    );

    let mut tasks = JoinSet::new();
    let changes = Arc::new(Notify::new());
    let context = WatchContext {
        client: settings.client.clone(),
        changes: changes.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let caches = Caches::start(settings.namespaces.as_deref(), &context, &mut tasks);

    let elector = LeaderElector::new(
        settings.client.clone(),
        &settings.lease_namespace,
        &settings.lease_name,
        &settings.identity,
        settings.lease_timing,
        metrics.clone(),
    );
    let leading = elector.subscribe();
    tasks.spawn(elector.run(shutdown.clone()));

    let (reports, reports_rx) = watch::channel::<Option<Arc<Report>>>(None);
    let writer = StatusWriter::new(
        settings.client.clone(),
        &settings.identity,
        caches.routes.clone(),
        caches.keys.clone(),
        metrics.clone(),
    );
    tasks.spawn(writer.run(reports_rx, leading, shutdown.clone()));

    sync_loop(&caches, &gateway, &metrics, &changes, &reports, &shutdown).await;

    tracing::info!("shutting down: draining connections");
    while servers.join_next().await.is_some() {}
    let drained = tokio::time::timeout(TASK_SHUTDOWN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("background tasks did not stop in time; abandoning them");
    }
    tracing::info!("portcullis controller stopped");
    Ok(())
}

/// Compiles and installs a snapshot after every burst of changes.
async fn sync_loop(
    caches: &Caches,
    gateway: &Arc<Gateway>,
    metrics: &ControllerMetrics,
    changes: &Notify,
    reports: &watch::Sender<Option<Arc<Report>>>,
    shutdown: &CancellationToken,
) {
    let mut announced_sync = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = changes.notified() => {}
        }
        if !debounce(changes, shutdown).await {
            return;
        }
        if !caches.routes_ready() {
            continue;
        }

        let synced = caches.synced();
        let resources = caches.resources(metrics);
        let started = Instant::now();
        let compiled = tokio::task::spawn_blocking(move || {
            portcullis_compile::compile(&resources, CompileOptions::default())
        })
        .await;
        let compiled: Compiled = match compiled {
            Ok(compiled) => compiled,
            Err(error) => {
                tracing::error!(error = %error, "compile panicked; keeping the previous snapshot");
                continue;
            }
        };
        let report = Arc::new(compiled.report.clone());
        gateway.apply(compiled, synced, started.elapsed());

        if synced {
            if !announced_sync {
                tracing::info!("first full sync complete; ready");
                announced_sync = true;
            }
            reports.send_replace(Some(report));
        }
    }
}

/// Waits until no change arrived for [`DEBOUNCE`], or [`MAX_DEBOUNCE`]
/// passed. Returns false on shutdown.
async fn debounce(changes: &Notify, shutdown: &CancellationToken) -> bool {
    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
    loop {
        let quiet = tokio::time::sleep(DEBOUNCE);
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = quiet => return true,
            () = tokio::time::sleep_until(deadline) => return true,
            () = changes.notified() => {}
        }
    }
}
