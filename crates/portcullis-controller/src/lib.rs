//! `portcullis run`: the in-cluster controller and data plane.
//!
//! Every replica watches GatewayRoutes, ApiKeys, Services and
//! EndpointSlices through kube-runtime reflectors, compiles them into a
//! snapshot after each burst of changes and serves traffic from it. Until
//! every watch has completed its first list, `/readyz` and
//! protected routes return 503. The replica that holds the
//! `coordination.k8s.io/v1` Lease also writes `status` (server-side apply,
//! field manager `portcullis`) and publishes Events for transitions a user
//! should notice. Bearer sessions are checked with TokenReview and
//! SubjectAccessReview (verb `invoke` on `gatewayroutes.portcullis.dev` in
//! the route's namespace).
//!
//! # RBAC
//!
//! The controller needs exactly these permissions; `rbac.yaml` in this
//! crate grants them and the tests run the controller with nothing else:
//!
//! | API group | resources | verbs | scope |
//! |---|---|---|---|
//! | `portcullis.dev` | `gatewayroutes`, `apikeys` | get, list, watch | cluster (or each watched namespace) |
//! | `portcullis.dev` | `gatewayroutes/status`, `apikeys/status` | update, patch | cluster (or each watched namespace) |
//! | `""` | `services` | get, list, watch | cluster (or each watched namespace) |
//! | `discovery.k8s.io` | `endpointslices` | get, list, watch | cluster (or each watched namespace) |
//! | `authentication.k8s.io` | `tokenreviews` | create | cluster |
//! | `authorization.k8s.io` | `subjectaccessreviews` | create | cluster |
//! | `events.k8s.io` | `events` | create, patch | cluster (or each watched namespace) |
//! | `coordination.k8s.io` | `leases` | get, create, update | the Lease namespace |

#![deny(missing_docs)]

mod args;
mod connect;
mod controller;
mod leader;
mod metrics;
mod session_cache;
mod sessions;
mod status;
mod status_writer;
mod watch;

use anyhow::Context;
use portcullis_gateway::GatewayConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use args::RunArgs;
pub use controller::{Settings, serve};
pub use leader::LeaseTiming;
pub use metrics::ControllerMetrics;
pub use sessions::{INVOKE_VERB, KubeSessions};
pub use status_writer::FIELD_MANAGER;

/// Runs `portcullis run` until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let traffic = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on --listen {}", args.listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("failed to listen on --admin-listen {}", args.admin_listen))?;

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run_with_listeners(args, traffic, admin, shutdown).await
}

/// Runs `portcullis run` on listeners the caller bound, until `shutdown` is
/// cancelled. `--listen` and `--admin-listen` are ignored.
pub async fn run_with_listeners(
    args: RunArgs,
    traffic: TcpListener,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (client, client_namespace) = connect::client(&args).await?;
    let settings = Settings {
        client,
        namespaces: args.namespaces(),
        gateway: GatewayConfig {
            trusted_proxies: args.trusted_proxies.clone(),
            sessions: None,
            rate_limit_slots: 0,
        },
        session_audience: args.session_audience.clone(),
        lease_namespace: args
            .lease_namespace
            .clone()
            .filter(|ns| !ns.trim().is_empty())
            .unwrap_or(client_namespace),
        lease_name: args.lease_name.clone(),
        identity: args.identity(),
        lease_timing: LeaseTiming::default(),
    };
    serve(settings, traffic, admin, shutdown).await
}

/// Cancels `shutdown` on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => tracing::info!("received SIGTERM"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("received Ctrl-C"),
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; only Ctrl-C stops the controller");
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("received Ctrl-C");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("received Ctrl-C");
    }
    shutdown.cancel();
}
