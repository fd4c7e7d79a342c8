//! Fail-closed start: until ApiKeys are listed, protected routes and
//! `/readyz` return 503 while public routes serve.

use std::time::Duration;

use http::StatusCode;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use crate::harness::{
    PARTIAL_USER, SYSTEM_NAMESPACE, Upstream, apply_yaml, cluster, create_backend, create_route,
    eventually, get, key_hash,
};

const WAIT: Duration = Duration::from_secs(15);
const FULL_BINDING: &str = "portcullis-tests-partial-full";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_routes_503_until_keys_listed() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let bindings: Api<ClusterRoleBinding> = Api::all(cluster.admin.clone());
    let _ = bindings
        .delete(FULL_BINDING, &DeleteParams::default())
        .await;

    // The controller's permissions minus ApiKeys: its ApiKey watch fails
    // with 403 while everything else works.
    apply_yaml(
        &cluster.admin,
        &format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: portcullis-tests-without-apikeys}}
rules:
  - apiGroups: ["portcullis.dev"]
    resources: ["gatewayroutes"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["portcullis.dev"]
    resources: ["gatewayroutes/status"]
    verbs: ["update", "patch"]
  - apiGroups: [""]
    resources: ["services"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["discovery.k8s.io"]
    resources: ["endpointslices"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: portcullis-tests-without-apikeys}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis-tests-without-apikeys}}
subjects:
  - {{kind: ServiceAccount, name: portcullis-partial, namespace: {SYSTEM_NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: portcullis-tests-partial-leases, namespace: {SYSTEM_NAMESPACE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-leader-election}}
subjects:
  - {{kind: ServiceAccount, name: portcullis-partial, namespace: {SYSTEM_NAMESPACE}}}
"#
        ),
    )
    .await;

    let namespace = cluster.namespace("pc-ready").await;
    let upstream = Upstream::start().await;
    create_backend(&cluster.admin, &namespace, "app", upstream.address).await;
    let route = |path: &str, auth: &str| json!({"method": "GET", "path": path, "authType": auth, "target": {"service": "app", "port": 80}});
    create_route(
        &cluster.admin,
        &namespace,
        "public",
        route("/public", "none"),
    )
    .await;
    create_route(
        &cluster.admin,
        &namespace,
        "private",
        route("/private", "api-key"),
    )
    .await;
    let key = "readiness-key-0123456789abcdefghijklmnopqrstu";
    apply_yaml(
        &cluster.admin,
        &format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: caller, namespace: {namespace}}}\nspec: {{keyHash: \"{}\"}}\n",
            key_hash(key)
        ),
    )
    .await;

    let controller = cluster
        .start_controller(
            PARTIAL_USER,
            &namespace,
            &format!("lease-{namespace}"),
            &format!("{namespace}-a"),
        )
        .await;
    let public = format!("/gw/{namespace}/public");
    let private = format!("/gw/{namespace}/private");
    eventually(
        WAIT,
        "public route to serve before the full sync",
        || async { (controller.call(&public, &[]).await.0 == StatusCode::OK).then_some(()) },
    )
    .await;

    let (status, body, _) = controller.call(&private, &[("x-api-key", key)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _, _) = get(&format!("{}/readyz", controller.admin), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        controller
            .metric(r#"portcullis_watch_errors_total{kind="ApiKey"}"#)
            .await
            >= 1.0
    );
    assert_eq!(controller.metric("portcullis_ready").await, 0.0);

    // Grant the full role from rbac.yaml: the ApiKey watch recovers on its
    // next retry and the replica becomes ready.
    apply_yaml(
        &cluster.admin,
        &format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {FULL_BINDING}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis}}
subjects:
  - {{kind: ServiceAccount, name: portcullis-partial, namespace: {SYSTEM_NAMESPACE}}}
"#
        ),
    )
    .await;
    controller.wait_ready().await;
    let (status, body, _) = controller.call(&private, &[("x-api-key", key)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    controller.stop().await;
    let _ = bindings
        .delete(FULL_BINDING, &DeleteParams::default())
        .await;
    cluster.delete_namespace(&namespace).await;
}
