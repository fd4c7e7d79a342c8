//! Bearer sessions: TokenReview of token-file users, then a
//! SubjectAccessReview for verb `invoke` on `gatewayroutes`.

use std::time::Duration;

use http::StatusCode;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::harness::{
    CONTROLLER_USER, Controller, Upstream, apply_yaml, cluster, create_backend, create_route,
    eventually, token_of,
};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_sessions_use_token_review() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let namespace = cluster.namespace("pc-bearer").await;
    let upstream = Upstream::start().await;
    create_backend(&cluster.admin, &namespace, "profile", upstream.address).await;
    create_route(
        &cluster.admin,
        &namespace,
        "me",
        json!({"method": "GET", "path": "/me", "authType": "bearer", "target": {"service": "profile", "port": 80}}),
    )
    .await;

    // Only alice may invoke routes of this namespace.
    apply_yaml(
        &cluster.admin,
        &format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: route-invoker, namespace: {namespace}}}
rules:
  - apiGroups: ["portcullis.dev"]
    resources: ["gatewayroutes"]
    verbs: ["invoke"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: alice-invokes, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: route-invoker}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}
"#
        ),
    )
    .await;
    // The authorizer reads bindings from a cache; wait until it applies
    // this one, so that the controller caches no Forbidden decision.
    let reviews: Api<SubjectAccessReview> = Api::all(cluster.admin.clone());
    eventually(WAIT, "RoleBinding to take effect", || async {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some("alice".into()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("invoke".into()),
                    group: Some("portcullis.dev".into()),
                    resource: Some("gatewayroutes".into()),
                    namespace: Some(namespace.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = reviews.create(&PostParams::default(), &review).await.ok()?;
        answer.status?.allowed.then_some(())
    })
    .await;

    let controller = cluster
        .start_controller(
            CONTROLLER_USER,
            &namespace,
            &format!("lease-{namespace}"),
            &format!("{namespace}-a"),
        )
        .await;
    controller.wait_ready().await;
    let path = format!("/gw/{namespace}/me");

    let alice = format!("Bearer {}", token_of("alice"));
    let (status, body, _) = eventually(WAIT, "alice to be served", || async {
        let response = controller.call(&path, &[("authorization", &alice)]).await;
        (response.0 != StatusCode::NOT_FOUND).then_some(response)
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["principal"], "user:alice");

    let bob = format!("Bearer {}", token_of("bob"));
    let (status, body, _) = controller.call(&path, &[("authorization", &bob)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let unknown = "Bearer portcullis-test-unknown-token";
    let (status, body, headers) = controller.call(&path, &[("authorization", unknown)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.contains_key("www-authenticate"));
    assert!(
        !body.contains("unknown-token"),
        "error body echoes the token: {body}"
    );

    let (status, _, _) = controller.call(&path, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let hits_before = controller
        .metric("portcullis_session_cache_hits_total")
        .await;
    assert_eq!(
        controller.call(&path, &[("authorization", &alice)]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        controller.call(&path, &[("authorization", &bob)]).await.0,
        StatusCode::FORBIDDEN
    );
    let hits_after = controller
        .metric("portcullis_session_cache_hits_total")
        .await;
    assert!(
        hits_after >= hits_before + 2.0,
        "cache hits {hits_before} -> {hits_after}"
    );
    assert!(
        controller
            .metric("portcullis_session_cache_misses_total")
            .await
            >= 3.0
    );
    assert!(
        controller
            .metric(r#"portcullis_session_reviews_total{result="forbidden"}"#)
            .await
            >= 1.0
    );

    controller.stop().await;

    // With --session-audience the token must be valid for that audience.
    // Token-file tokens are valid only for the API server's audiences, so
    // the same session is now rejected.
    let kubeconfig = cluster.kubeconfig_for(CONTROLLER_USER);
    let strict = Controller::start_with(
        &kubeconfig,
        &namespace,
        &format!("lease-{namespace}"),
        &format!("{namespace}-audience"),
        &["--session-audience", "portcullis-gateway"],
    )
    .await;
    strict.wait_ready().await;
    let (status, body, _) = eventually(WAIT, "bearer route on the audience replica", || async {
        let response = strict.call(&path, &[("authorization", &alice)]).await;
        (response.0 != StatusCode::NOT_FOUND).then_some(response)
    })
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    strict.stop().await;
    cluster.delete_namespace(&namespace).await;
}
