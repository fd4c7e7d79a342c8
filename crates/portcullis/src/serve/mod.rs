//! `portcullis serve`: the data plane fed from a directory of YAML instead
//! of the Kubernetes API, reloading on change.

mod directory;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ipnet::IpNet;
use notify::{RecursiveMode, Watcher};
use portcullis_compile::{CompileOptions, compile};
use portcullis_gateway::logging::LogFormat;
use portcullis_gateway::{FileSessions, Gateway, GatewayConfig, Metrics, SessionVerifier};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use directory::ConfigDirectory;

/// How often the directory is checked even without a file-system event, for
/// mounts that do not deliver them.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Quiet time after an event before reloading, so an editor's
/// write-rename-chmod burst compiles once.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Flags of `portcullis serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Directory of GatewayRoute, ApiKey and EndpointSlice YAML files
    /// (`.yaml` or `.yml`, several documents per file allowed).
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// Address of the traffic listener.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the admin listener (/healthz, /readyz, /metrics, /status).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// File of bearer sessions, one per line:
    /// `sha256:<hex of the token> <user> <tenant>[,<tenant>...]`. Without
    /// it, bearer routes and the session fallback return 503.
    #[arg(long, value_name = "FILE")]
    session_tokens: Option<PathBuf>,
    /// Comma-separated CIDRs of proxies whose X-Forwarded-For is trusted.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    trusted_proxies: Vec<IpNet>,
    /// Log format (default text).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Runs the standalone data plane until ctrl-c or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let sessions: Option<Arc<dyn SessionVerifier>> = match &args.session_tokens {
        Some(path) => Some(Arc::new(
            FileSessions::load(path).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let config = GatewayConfig {
        trusted_proxies: args.trusted_proxies.clone(),
        sessions,
        rate_limit_slots: 0,
    };
    let gateway = Gateway::new(config, Metrics::new());

    let traffic = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {} (--listen)", args.listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("failed to listen on {} (--admin-listen)", args.admin_listen))?;

    let mut directory = ConfigDirectory::new(args.config.clone());
    if !args.config.is_dir() {
        anyhow::bail!("--config {} is not a directory", args.config.display());
    }
    reload(&gateway, &mut directory, true);

    let shutdown = CancellationToken::new();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events_tx.send(event);
    })
    .context("failed to start the file watcher")?;
    watcher
        .watch(&args.config, RecursiveMode::Recursive)
        .with_context(|| format!("failed to watch {}", args.config.display()))?;

    tracing::info!(
        listen = %args.listen,
        admin_listen = %args.admin_listen,
        config = %args.config.display(),
        "portcullis serve started"
    );
    let traffic_task = tokio::spawn(portcullis_gateway::serve_traffic(
        gateway.clone(),
        traffic,
        shutdown.clone(),
    ));
    let admin_task = tokio::spawn(portcullis_gateway::serve_admin(
        gateway.clone(),
        admin,
        shutdown.clone(),
    ));
    let reload_task = tokio::spawn(watch_loop(
        gateway.clone(),
        directory,
        events_rx,
        shutdown.clone(),
    ));

    shutdown_signal().await;
    tracing::info!("shutting down: draining open connections");
    shutdown.cancel();
    drop(watcher);
    let _ = tokio::join!(traffic_task, admin_task, reload_task);
    tracing::info!("portcullis serve stopped");
    Ok(())
}

async fn watch_loop(
    gateway: Arc<Gateway>,
    mut directory: ConfigDirectory,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    shutdown: CancellationToken,
) {
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = poll.tick() => {}
            event = events.recv() => {
                match event {
                    Some(Err(error)) => {
                        tracing::warn!(error = %error, "file watcher error; polling continues");
                        gateway.metrics.watch_errors_total.with_label_values(&["ConfigFile"]).inc();
                    }
                    // Reads (including this loop's own scans) change nothing.
                    Some(Ok(event)) if matches!(event.kind, notify::EventKind::Access(_)) => continue,
                    Some(Ok(_)) => {
                        tokio::time::sleep(DEBOUNCE).await;
                        while events.try_recv().is_ok() {}
                    }
                    None => return,
                }
            }
        }
        // Compiling a large configuration takes milliseconds to seconds;
        // `block_in_place` moves this worker's other tasks elsewhere first.
        tokio::task::block_in_place(|| reload(&gateway, &mut directory, false));
    }
}

/// Rescans the directory and installs a new snapshot when anything
/// changed (always on the first call).
fn reload(gateway: &Gateway, directory: &mut ConfigDirectory, first: bool) {
    let scan = directory.scan();
    // Broken files are logged once by `Gateway::apply`, as problems.
    if scan.failures > 0 {
        gateway
            .metrics
            .watch_errors_total
            .with_label_values(&["ConfigFile"])
            .inc_by(scan.failures as u64);
    }
    if !scan.changed && !first {
        return;
    }

    let started = Instant::now();
    let mut compiled = compile(&directory.resources(), CompileOptions::default());
    compiled.report.problems.extend(directory.problems());
    gateway.apply(compiled, true, started.elapsed());
}

/// Waits for Ctrl-C or SIGTERM (how Kubernetes and most supervisors stop a
/// process).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler cannot fail on Unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
