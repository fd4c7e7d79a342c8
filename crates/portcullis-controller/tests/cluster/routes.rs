//! API-key routes, key rotation, a deleted Service and a duplicate route.

use std::time::{Duration, Instant};

use http::StatusCode;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use portcullis_api::ApiKey;
use serde_json::json;

use crate::harness::{
    CONTROLLER_USER, Cluster, Controller, Upstream, cluster, condition, create_backend,
    create_route, eventually, key_hash, kubectl_apply, status_of,
};

const WAIT: Duration = Duration::from_secs(15);

/// Creates a namespace with an `orders` backend, a route and an ApiKey
/// `partner` for `key` (with kubectl), then starts a controller.
async fn key_setup(cluster: &Cluster, prefix: &str, key: &str) -> (String, Upstream, Controller) {
    let namespace = cluster.namespace(prefix).await;
    let upstream = Upstream::start().await;
    create_backend(&cluster.admin, &namespace, "orders", upstream.address).await;

    let manifest = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: partner\n  namespace: {namespace}\nspec:\n  keyHash: \"{}\"\n  description: Orders partner\n",
        key_hash(key)
    );
    let method = kubectl_apply(cluster, &manifest).await;
    println!("ApiKey created with {method}");

    create_route(
        &cluster.admin,
        &namespace,
        "orders",
        json!({
            "method": "GET",
            "path": "/orders/:id",
            "allowedApiKeyIds": ["partner"],
            "target": {"service": "orders", "port": 80},
        }),
    )
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
    (namespace, upstream, controller)
}

async fn wait_for_status(
    controller: &Controller,
    path: &str,
    key: &str,
    expected: StatusCode,
) -> Duration {
    let started = Instant::now();
    eventually(WAIT, &format!("{path} to answer {expected}"), || async {
        (controller.call(path, &[("x-api-key", key)]).await.0 == expected).then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_route_allows_and_rejects() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let key = "orders-partner-key-0123456789abcdefghijklmnop";
    let (namespace, _upstream, controller) = key_setup(&cluster, "pc-keys", key).await;
    create_route(
        &cluster.admin,
        &namespace,
        "health",
        json!({"method": "GET", "path": "/health", "authType": "none", "target": {"service": "orders", "port": 80}}),
    )
    .await;

    let path = format!("/gw/{namespace}/orders/42");
    wait_for_status(&controller, &path, key, StatusCode::OK).await;
    let (_, body, _) = controller.call(&path, &[("x-api-key", key)]).await;
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["principal"], "api-key:partner");
    assert_eq!(echoed["tenant"], namespace.as_str());
    assert_eq!(echoed["path"], "/orders/42");
    assert_eq!(
        echoed["apiKeyForwarded"], false,
        "the key must not reach the function"
    );

    let (status, _, headers) = controller.call(&path, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    let wrong = "orders-partner-key-wrong-0123456789abcdefghij";
    let (status, body, _) = controller.call(&path, &[("x-api-key", wrong)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.contains(wrong), "error body echoes the key: {body}");

    let health = format!("/gw/{namespace}/health");
    eventually(WAIT, "public route to serve", || async {
        (controller.call(&health, &[]).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let (_, body, _) = controller.call(&health, &[]).await;
    assert!(body.contains("\"principal\":\"anonymous\""), "{body}");

    let route = eventually(WAIT, "route status", || async {
        let status = status_of(&cluster.admin, &namespace, "gatewayroutes", "orders").await?;
        condition(&status, "Programmed").is_some().then_some(status)
    })
    .await;
    assert_eq!(
        condition(&route, "Accepted"),
        Some(("True".into(), "Accepted".into()))
    );
    assert_eq!(
        condition(&route, "ResolvedRefs"),
        Some(("True".into(), "ResolvedRefs".into()))
    );
    assert_eq!(
        condition(&route, "Programmed"),
        Some(("True".into(), "Programmed".into()))
    );
    assert_eq!(route["observedGeneration"], 1);

    let key_status = eventually(WAIT, "ApiKey status", || async {
        let status = status_of(&cluster.admin, &namespace, "apikeys", "partner").await?;
        status.get("fingerprint").is_some().then_some(status)
    })
    .await;
    let fingerprint = &key_hash(key)["sha256:".len().."sha256:".len() + 8];
    assert_eq!(key_status["fingerprint"], fingerprint);
    assert_eq!(key_status["referencedBy"], json!(["orders"]));
    assert_eq!(
        condition(&key_status, "Ready"),
        Some(("True".into(), "Ready".into()))
    );
    let text = key_status.to_string();
    assert!(
        !text.contains(&key_hash(key)[7..]),
        "status shows the whole hash: {text}"
    );

    // Least privilege: the controller's user may not read Secrets.
    let as_controller: Client = cluster.client_for(CONTROLLER_USER).await;
    let secrets = Api::<Secret>::namespaced(as_controller, &namespace)
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(secrets, Err(kube::Error::Api(ref s)) if s.code == 403),
        "controller user can list Secrets: {secrets:?}"
    );

    controller.stop().await;
    cluster.delete_namespace(&namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_patch_rotates_key() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let old_key = "rotation-old-key-0123456789abcdefghijklmnopq";
    let new_key = "rotation-new-key-0123456789abcdefghijklmnopq";
    let (namespace, _upstream, controller) = key_setup(&cluster, "pc-rotate", old_key).await;
    let path = format!("/gw/{namespace}/orders/7");
    wait_for_status(&controller, &path, old_key, StatusCode::OK).await;
    assert_eq!(
        controller.call(&path, &[("x-api-key", new_key)]).await.0,
        StatusCode::UNAUTHORIZED
    );

    let keys: Api<ApiKey> = Api::namespaced(cluster.admin.clone(), &namespace);
    let patch = json!({"spec": {"keyHash": key_hash(new_key)}});
    let patched_at = Instant::now();
    keys.patch("partner", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch keyHash");

    let mut old_rejected = None;
    while patched_at.elapsed() < WAIT {
        if controller.call(&path, &[("x-api-key", old_key)]).await.0 == StatusCode::UNAUTHORIZED {
            old_rejected = Some(patched_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let old_rejected = old_rejected.expect("old key still accepted 15 s after the patch");
    println!("old key first answered 401 {old_rejected:?} after the keyHash patch");
    assert!(
        old_rejected < Duration::from_secs(5),
        "rotation took {old_rejected:?}"
    );
    assert_eq!(
        controller.call(&path, &[("x-api-key", new_key)]).await.0,
        StatusCode::OK
    );

    let new_fingerprint = key_hash(new_key)["sha256:".len().."sha256:".len() + 8].to_owned();
    eventually(WAIT, "fingerprint of the new key in status", || async {
        let status = status_of(&cluster.admin, &namespace, "apikeys", "partner").await?;
        (status["fingerprint"] == new_fingerprint.as_str() && status["observedGeneration"] == 2)
            .then_some(())
    })
    .await;

    // Revoking the key rejects it at once and is reported.
    let revoke = json!({"spec": {"active": false}});
    keys.patch("partner", &PatchParams::default(), &Patch::Merge(&revoke))
        .await
        .expect("patch active");
    wait_for_status(&controller, &path, new_key, StatusCode::UNAUTHORIZED).await;
    let status = eventually(WAIT, "Ready=False in status", || async {
        let status = status_of(&cluster.admin, &namespace, "apikeys", "partner").await?;
        (condition(&status, "Ready")?.0 == "False").then_some(status)
    })
    .await;
    assert_eq!(
        condition(&status, "Ready"),
        Some(("False".into(), "Revoked".into()))
    );
    let events = events_for(&cluster.admin, &namespace, "partner", "Revoked").await;
    assert_eq!(events[0].type_.as_deref(), Some("Normal"));

    controller.stop().await;
    cluster.delete_namespace(&namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_service_turns_route_503() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let namespace = cluster.namespace("pc-nosvc").await;
    let upstream = Upstream::start().await;
    create_backend(&cluster.admin, &namespace, "hello", upstream.address).await;
    create_route(
        &cluster.admin,
        &namespace,
        "hello",
        json!({"method": "GET", "path": "/hello", "authType": "none", "target": {"service": "hello", "port": "http"}}),
    )
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

    let path = format!("/gw/{namespace}/hello");
    eventually(WAIT, "route to serve", || async {
        (controller.call(&path, &[]).await.0 == StatusCode::OK).then_some(())
    })
    .await;

    Api::<Service>::namespaced(cluster.admin.clone(), &namespace)
        .delete("hello", &DeleteParams::default())
        .await
        .expect("delete Service");
    eventually(WAIT, "route to answer 503", || async {
        (controller.call(&path, &[]).await.0 == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;

    let status = eventually(WAIT, "ResolvedRefs=False", || async {
        let status = status_of(&cluster.admin, &namespace, "gatewayroutes", "hello").await?;
        (condition(&status, "ResolvedRefs")?.0 == "False").then_some(status)
    })
    .await;
    assert_eq!(
        condition(&status, "ResolvedRefs"),
        Some(("False".into(), "ServiceNotFound".into()))
    );
    assert_eq!(
        condition(&status, "Programmed"),
        Some(("False".into(), "NoReadyEndpoints".into()))
    );

    let events = events_for(&cluster.admin, &namespace, "hello", "ServiceNotFound").await;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(
        events[0].reporting_controller.as_deref(),
        Some("portcullis")
    );

    controller.stop().await;
    cluster.delete_namespace(&namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_route_reported_while_others_serve() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let namespace = cluster.namespace("pc-dup").await;
    let upstream = Upstream::start().await;
    create_backend(&cluster.admin, &namespace, "items", upstream.address).await;
    let public = |path: &str| json!({"method": "GET", "path": path, "authType": "none", "target": {"service": "items", "port": 80}});
    // Created in the same second, routes tie on age and are ordered by name,
    // so `a-items` owns the path and `b-items` is the duplicate.
    create_route(&cluster.admin, &namespace, "a-items", public("/items")).await;
    create_route(&cluster.admin, &namespace, "b-items", public("/items")).await;
    create_route(&cluster.admin, &namespace, "other", public("/other")).await;

    let controller = cluster
        .start_controller(
            CONTROLLER_USER,
            &namespace,
            &format!("lease-{namespace}"),
            &format!("{namespace}-a"),
        )
        .await;
    controller.wait_ready().await;

    for path in ["/items", "/other"] {
        let url = format!("/gw/{namespace}{path}");
        eventually(WAIT, &format!("{path} to serve"), || async {
            (controller.call(&url, &[]).await.0 == StatusCode::OK).then_some(())
        })
        .await;
    }

    let duplicate = eventually(WAIT, "status of the duplicate", || async {
        let status = status_of(&cluster.admin, &namespace, "gatewayroutes", "b-items").await?;
        condition(&status, "Accepted").is_some().then_some(status)
    })
    .await;
    assert_eq!(
        condition(&duplicate, "Accepted"),
        Some(("False".into(), "DuplicateRoute".into()))
    );
    assert_eq!(
        condition(&duplicate, "Programmed"),
        Some(("False".into(), "NotAccepted".into()))
    );
    for name in ["a-items", "other"] {
        let status = eventually(WAIT, &format!("status of {name}"), || async {
            status_of(&cluster.admin, &namespace, "gatewayroutes", name).await
        })
        .await;
        assert_eq!(
            condition(&status, "Accepted"),
            Some(("True".into(), "Accepted".into())),
            "{name}"
        );
    }

    let events = events_for(&cluster.admin, &namespace, "b-items", "DuplicateRoute").await;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    let note = events[0].note.clone().unwrap_or_default();
    assert!(!note.is_empty(), "event has no note");

    controller.stop().await;
    cluster.delete_namespace(&namespace).await;
}

/// Waits for Events about `name` with `reason` and returns them.
async fn events_for(client: &Client, namespace: &str, name: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    eventually(WAIT, &format!("a {reason} Event for {name}"), || async {
        let events: Vec<Event> = api
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
            .collect();
        (!events.is_empty()).then_some(events)
    })
    .await
}
