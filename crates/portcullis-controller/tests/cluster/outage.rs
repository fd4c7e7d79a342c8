//! A broken connection to the API server: the last snapshot keeps serving,
//! watch errors are counted, and changes made meanwhile arrive once the
//! watches recover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::StatusCode;
use kube::Api;
use kube::api::{Patch, PatchParams};
use portcullis_api::ApiKey;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::harness::{
    CONTROLLER_USER, Controller, Upstream, apply_yaml, cluster, create_backend, create_route,
    eventually, key_hash,
};

const WAIT: Duration = Duration::from_secs(20);

/// A TCP forwarder on 127.0.0.1 in front of the API server that can drop
/// every connection and refuse new ones.
struct Forwarder {
    address: String,
    broken: Arc<AtomicBool>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Forwarder {
    async fn start(target: String) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let broken = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let (flag, tasks) = (broken.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue; // dropping the stream closes it
                }
                let target = target.clone();
                tasks.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Forwarder {
            address,
            broken,
            connections,
        }
    }

    async fn break_connections(&self) {
        self.broken.store(true, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }

    fn restore(&self) {
        self.broken.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_outage_keeps_last_snapshot() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let namespace = cluster.namespace("pc-outage").await;
    let upstream = Upstream::start().await;
    create_backend(&cluster.admin, &namespace, "app", upstream.address).await;
    create_route(
        &cluster.admin,
        &namespace,
        "app",
        json!({"method": "GET", "path": "/app", "target": {"service": "app", "port": 80}}),
    )
    .await;
    let old_key = "outage-old-key-0123456789abcdefghijklmnopqrs";
    let new_key = "outage-new-key-0123456789abcdefghijklmnopqrs";
    apply_yaml(
        &cluster.admin,
        &format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: caller, namespace: {namespace}}}\nspec: {{keyHash: \"{}\"}}\n",
            key_hash(old_key)
        ),
    )
    .await;

    // The API server is unreachable at start: not ready until it is.
    let forwarder = Forwarder::start(cluster.server_address()).await;
    forwarder.break_connections().await;
    let kubeconfig =
        cluster.kubeconfig_via(CONTROLLER_USER, &format!("https://{}", forwarder.address));
    let controller = Controller::start(
        &kubeconfig,
        &namespace,
        &format!("lease-{namespace}"),
        "outage-a",
    )
    .await;
    eventually(WAIT, "initial list errors to be counted", || async {
        let errors = controller
            .metric(r#"portcullis_watch_errors_total{kind="GatewayRoute"}"#)
            .await;
        (errors >= 1.0).then_some(())
    })
    .await;
    let (status, _, _) = get_readyz(&controller).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    forwarder.restore();
    controller.wait_ready().await;
    let path = format!("/gw/{namespace}/app");
    eventually(WAIT, "route to serve", || async {
        (controller.call(&path, &[("x-api-key", old_key)]).await.0 == StatusCode::OK).then_some(())
    })
    .await;

    forwarder.break_connections().await;
    let keys: Api<ApiKey> = Api::namespaced(cluster.admin.clone(), &namespace);
    let patch = json!({"spec": {"keyHash": key_hash(new_key)}});
    keys.patch("caller", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    eventually(WAIT, "watch errors to be counted", || async {
        let errors = controller
            .metric(r#"portcullis_watch_errors_total{kind="ApiKey"}"#)
            .await;
        (errors >= 1.0).then_some(())
    })
    .await;
    for _ in 0..5 {
        let (status, body, _) = controller.call(&path, &[("x-api-key", old_key)]).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "last snapshot must keep serving: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, _) = get_readyz(&controller).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a replica stays ready through a watch outage"
    );

    forwarder.restore();
    eventually(WAIT, "patched key to arrive after the outage", || async {
        (controller.call(&path, &[("x-api-key", new_key)]).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(
        controller.call(&path, &[("x-api-key", old_key)]).await.0,
        StatusCode::UNAUTHORIZED
    );

    controller.stop().await;
    cluster.delete_namespace(&namespace).await;
}

async fn get_readyz(
    controller: &Controller,
) -> (
    StatusCode,
    String,
    std::collections::BTreeMap<String, String>,
) {
    crate::harness::get(&format!("{}/readyz", controller.admin), &[]).await
}
