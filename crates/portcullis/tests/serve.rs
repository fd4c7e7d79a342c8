//! End-to-end tests of `portcullis serve`: the real binary, real upstream
//! HTTP servers, a real config directory.

mod common;

use std::time::Duration;

use common::*;

const KEY: &str = "partner-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const OTHER_KEY: &str = "other-key-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

/// Writes a directory with a locked route, an open route, a public route
/// and two keys, all pointing at `upstream`.
async fn standard_setup(upstream: &Upstream) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let routes = [
        route_yaml(
            "locked",
            "GET",
            "/locked/:id",
            "fn",
            "  allowedApiKeyIds: [partner]\n",
        ),
        route_yaml("open", "ANY", "/open", "fn", ""),
        route_yaml("public", "GET", "/public", "fn", "  authType: none\n"),
    ]
    .concat();
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
    std::fs::write(
        dir.path().join("keys.yaml"),
        [
            key_yaml("partner", KEY, ""),
            key_yaml("other", OTHER_KEY, ""),
        ]
        .concat(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("slices.yaml"),
        slice_yaml("fn", &[upstream.address]),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn protected_route_needs_key() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;
    let client = client();

    let ok = client
        .get(served.url("/gw/acme/locked/7"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.last().path_and_query, "/locked/7");

    let missing = client
        .get(served.url("/gw/acme/locked/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert!(missing.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body["error"].is_string());

    let wrong = client
        .get(served.url("/gw/acme/locked/7"))
        .header("x-api-key", OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // Neither rejected request reached the function.
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn forwarded_headers_are_cleaned() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;

    let response = client()
        .post(served.url("/gw/acme/open?page=2&x=a%20b"))
        .header("x-api-key", KEY)
        .header("authorization", "Bearer app-own-jwt")
        .header("x-portcullis-principal", "api-key:admin")
        .header("x-portcullis-anything", "spoofed")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let seen = upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path_and_query, "/open?page=2&x=a%20b");
    assert!(
        !seen.headers.contains_key("x-api-key"),
        "the consumed key reached the function"
    );
    assert_eq!(seen.headers["authorization"], "Bearer app-own-jwt");
    assert_eq!(seen.headers["x-portcullis-principal"], "api-key:partner");
    assert_eq!(seen.headers["x-portcullis-tenant"], "acme");
    assert!(!seen.headers.contains_key("x-portcullis-anything"));
    assert_eq!(seen.body, "payload");
}

#[tokio::test]
async fn public_route_is_anonymous() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;

    let response = client()
        .get(served.url("/gw/acme/public"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.last().headers["x-portcullis-principal"],
        "anonymous"
    );
}

#[tokio::test]
async fn routing_errors_have_their_status() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;
    let client = client();

    let not_found = client
        .get(served.url("/gw/acme/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), 404);
    let wrong_method = client
        .delete(served.url("/gw/acme/public"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET");
    // reqwest resolves dot segments before sending, so these go raw.
    for path in [
        "/gw/acme/locked/%2e%2e",
        "/gw/acme/locked/../open",
        "/gw/acme/locked/a%2Fb",
    ] {
        let status = raw_get(&served.base, path, &[("x-api-key", KEY)]).await;
        assert_eq!(status, 400, "{path}");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn upstream_failures_map_to_502_503_504() {
    let slow = Upstream::start(Duration::from_secs(3)).await;
    let dead_address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let routes = [
        route_yaml("dead", "GET", "/dead", "dead", "  authType: none\n"),
        route_yaml("empty", "GET", "/empty", "empty", "  authType: none\n"),
        route_yaml(
            "slow",
            "GET",
            "/slow",
            "slow",
            "  authType: none\n  timeoutSeconds: 1\n",
        ),
    ]
    .concat();
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
    let slices = [
        slice_yaml("dead", &[dead_address]),
        slice_yaml("empty", &[]),
        slice_yaml("slow", &[slow.address]),
    ]
    .concat();
    std::fs::write(dir.path().join("slices.yaml"), slices).unwrap();
    let served = Served::start(dir.path(), &[]).await;
    let client = client();

    assert_eq!(
        client
            .get(served.url("/gw/acme/dead"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    assert_eq!(
        client
            .get(served.url("/gw/acme/empty"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        client
            .get(served.url("/gw/acme/slow"))
            .send()
            .await
            .unwrap()
            .status(),
        504
    );
}

#[tokio::test]
async fn editing_key_file_rotates_without_restart() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;
    let client = client();
    let url = served.url("/gw/acme/locked/1");

    assert_eq!(
        client
            .get(&url)
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let new_key = "rotated-key-CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
    write_atomic(
        &dir.path().join("keys.yaml"),
        &[
            key_yaml("partner", new_key, ""),
            key_yaml("other", OTHER_KEY, ""),
        ]
        .concat(),
    );
    let rotated = eventually(Duration::from_secs(5), || async {
        client
            .get(&url)
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap()
            .status()
            == 401
    })
    .await;
    assert!(
        rotated,
        "the old key still works five seconds after the edit"
    );
    assert_eq!(
        client
            .get(&url)
            .header("x-api-key", new_key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn broken_file_keeps_last_good_version() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;
    let client = client();
    let url = served.url("/gw/acme/locked/1");

    write_atomic(
        &dir.path().join("keys.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: [unclosed\n",
    );
    let reported = eventually(Duration::from_secs(5), || async {
        served.log_text().contains("keys.yaml:3:1: invalid YAML")
    })
    .await;
    assert!(
        reported,
        "the parse error was not logged with its line:\n{}",
        served.log_text()
    );
    assert_eq!(
        client
            .get(&url)
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let status = served.status().await;
    let problems = status["report"]["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["kind"] == "ConfigFile"
            && p["message"]
                .as_str()
                .unwrap()
                .contains("keys.yaml:3:1: invalid YAML")),
        "{status}"
    );
    // Polls keep finding the same broken content; it is logged once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        served.log_text().matches("invalid YAML").count(),
        1,
        "the broken file was logged more than once:\n{}",
        served.log_text()
    );
}

#[tokio::test]
async fn invalid_object_is_reported_and_skipped() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    std::fs::write(
        dir.path().join("more.yaml"),
        route_yaml(
            "needs-ghost-key",
            "GET",
            "/ghost",
            "fn",
            "  allowedApiKeyIds: [ghost]\n",
        ),
    )
    .unwrap();
    let served = Served::start(dir.path(), &[]).await;

    let status = served.status().await;
    let problems = status["report"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["name"] == "needs-ghost-key" && p["reason"] == "ApiKeyNotFound"),
        "{status}"
    );
    // Logged once at load, not per request.
    assert_eq!(
        served.log_text().matches("ApiKeyNotFound").count(),
        1,
        "{}",
        served.log_text()
    );
    // The rest of the configuration keeps serving.
    let ok = client()
        .get(served.url("/gw/acme/locked/1"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn rate_limit_answers_429() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        [
            route_yaml(
                "limited",
                "GET",
                "/limited",
                "fn",
                "  authType: none\n  rateLimit: 3\n",
            ),
            slice_yaml("fn", &[upstream.address]),
        ]
        .concat(),
    )
    .unwrap();
    let served = Served::start(dir.path(), &[]).await;
    let client = client();

    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = client
            .get(served.url("/gw/acme/limited"))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "60");
        }
        statuses.push(response.status().as_u16());
    }
    // A minute boundary may fall inside the loop and reset the window once.
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 1,
        "{statuses:?}"
    );
    assert!(
        upstream.count() <= 4,
        "{} requests reached the function",
        upstream.count()
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_without_credentials() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        [
            route_yaml(
                "browser",
                "POST",
                "/browser",
                "fn",
                "  cors: {enabled: true, allowedOrigins: [\"https://app.example\"]}\n",
            ),
            key_yaml("partner", KEY, ""),
            slice_yaml("fn", &[upstream.address]),
        ]
        .concat(),
    )
    .unwrap();
    let served = Served::start(dir.path(), &[]).await;
    let client = client();

    let preflight = client
        .request(reqwest::Method::OPTIONS, served.url("/gw/acme/browser"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(!preflight.headers().contains_key("www-authenticate"));
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for header in ["X-Api-Key", "Authorization", "Content-Type"] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert_eq!(upstream.count(), 0);

    let denied = client
        .post(served.url("/gw/acme/browser"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(
        denied.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    let foreign = client
        .post(served.url("/gw/acme/browser"))
        .header("origin", "https://evil.example")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn credentials_never_reach_the_log() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;
    let client = client();
    let query_secret = "query-secret-DDDDDDDDDDDDDDDDDDDDDDDDDDDD";
    let bearer = "bearer-secret-EEEEEEEEEEEEEEEEEEEEEEEEEEEE";

    client
        .get(served.url("/gw/acme/locked/1"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    client
        .get(served.url("/gw/acme/locked/1"))
        .header("x-api-key", OTHER_KEY)
        .send()
        .await
        .unwrap();
    client
        .get(served.url("/gw/acme/open"))
        .header("authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap();
    client
        .get(served.url(&format!(
            "/gw/acme/public?api_key={query_secret}&token={query_secret}&page=1"
        )))
        .send()
        .await
        .unwrap();

    // Give the log a moment to be flushed.
    let logged = eventually(Duration::from_secs(3), || async {
        served.log_text().matches("\"request\"").count() >= 4
            || served.log_text().matches(" request").count() >= 4
    })
    .await;
    let log = served.log_text();
    assert!(logged, "access log lines missing:\n{log}");
    for secret in [KEY, OTHER_KEY, query_secret, bearer] {
        assert!(
            !log.contains(secret),
            "a credential reached the log:\n{log}"
        );
    }
    assert!(log.contains("api_key=[REDACTED]"), "{log}");
    assert!(log.contains("page=1"), "{log}");
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(served.url("/gw/acme/public")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_outcome() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let dir = standard_setup(&upstream).await;
    let served = Served::start(dir.path(), &[]).await;
    let client = client();
    client
        .get(served.url("/gw/acme/locked/1"))
        .send()
        .await
        .unwrap();
    client
        .get(served.url("/gw/acme/public"))
        .send()
        .await
        .unwrap();

    let metrics = client
        .get(format!("{}/metrics", served.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"portcullis_requests_total{code="401",outcome="unauthenticated",route="locked",tenant="acme"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"portcullis_rejected_before_invoke_total{reason="unauthenticated",route="locked",tenant="acme"} 1"#));
    assert!(metrics.contains(r#"portcullis_requests_total{code="200",outcome="forwarded",route="public",tenant="acme"} 1"#));
    assert!(metrics.contains("portcullis_snapshot_generation 1"));
    assert!(metrics.contains("portcullis_request_duration_seconds_bucket"));
}
