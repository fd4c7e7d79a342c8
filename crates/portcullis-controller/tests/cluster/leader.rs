//! Two replicas: both serve, only the Lease holder writes status, and the
//! other takes over when the holder shuts down.

use std::time::Duration;

use http::StatusCode;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use crate::harness::{
    CONTROLLER_USER, Controller, SYSTEM_NAMESPACE, Upstream, cluster, condition, create_backend,
    create_route, eventually, status_of,
};

const WAIT: Duration = Duration::from_secs(15);
const WRITES: &str = r#"portcullis_status_writes_total{kind="GatewayRoute"}"#;

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get(name).await.ok()?.spec?.holder_identity
}

async fn wait_leader(controller: &Controller, leading: f64) {
    eventually(
        WAIT,
        &format!("portcullis_leader to be {leading}"),
        || async { (controller.metric("portcullis_leader").await == leading).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_leader_writes_status() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let namespace = cluster.namespace("pc-leader").await;
    let upstream = Upstream::start().await;
    create_backend(&cluster.admin, &namespace, "app", upstream.address).await;
    create_route(
        &cluster.admin,
        &namespace,
        "app",
        json!({"method": "GET", "path": "/app", "authType": "none", "target": {"service": "app", "port": 80}}),
    )
    .await;

    let lease = format!("lease-{namespace}");
    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), SYSTEM_NAMESPACE);
    let first = cluster
        .start_controller(CONTROLLER_USER, &namespace, &lease, "replica-a")
        .await;
    wait_leader(&first, 1.0).await;
    let second = cluster
        .start_controller(CONTROLLER_USER, &namespace, &lease, "replica-b")
        .await;
    first.wait_ready().await;
    second.wait_ready().await;

    // Both replicas serve traffic.
    let path = format!("/gw/{namespace}/app");
    for replica in [&first, &second] {
        eventually(WAIT, "route to serve", || async {
            (replica.call(&path, &[]).await.0 == StatusCode::OK).then_some(())
        })
        .await;
    }

    eventually(WAIT, "Programmed=True written", || async {
        let status = status_of(&cluster.admin, &namespace, "gatewayroutes", "app").await?;
        (condition(&status, "Programmed")?.0 == "True").then_some(())
    })
    .await;
    Api::<Service>::namespaced(cluster.admin.clone(), &namespace)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "ResolvedRefs=False written", || async {
        let status = status_of(&cluster.admin, &namespace, "gatewayroutes", "app").await?;
        (condition(&status, "ResolvedRefs")?.0 == "False").then_some(())
    })
    .await;

    assert_eq!(holder(&leases, &lease).await.as_deref(), Some("replica-a"));
    assert_eq!(second.metric("portcullis_leader").await, 0.0);
    let first_writes = first.metric(WRITES).await;
    assert!(first_writes >= 2.0, "leader wrote {first_writes} times");
    assert_eq!(
        second.metric(WRITES).await,
        0.0,
        "the follower wrote status"
    );

    // A graceful stop releases the Lease; the follower takes over on its
    // next check (5 s) instead of waiting for expiry (15 s).
    first.stop().await;
    wait_leader(&second, 1.0).await;
    assert_eq!(holder(&leases, &lease).await.as_deref(), Some("replica-b"));

    create_backend(&cluster.admin, &namespace, "app", upstream.address).await;
    eventually(WAIT, "new leader to write ResolvedRefs=True", || async {
        let status = status_of(&cluster.admin, &namespace, "gatewayroutes", "app").await?;
        (condition(&status, "ResolvedRefs")?.0 == "True").then_some(())
    })
    .await;
    assert!(second.metric(WRITES).await >= 1.0);

    second.stop().await;
    assert_eq!(
        holder(&leases, &lease).await,
        None,
        "the last replica released the Lease"
    );
    cluster.delete_namespace(&namespace).await;
}
