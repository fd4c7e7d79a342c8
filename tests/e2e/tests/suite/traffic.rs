//! Route features between authentication and the function: rate limits,
//! CORS preflights and the JSON event format.

use std::time::Duration;

use chrono::{Timelike, Utc};
use portcullis_e2e::{Credential, Scenario};

#[tokio::test]
async fn rate_limit_returns_429() {
    let Some(scenario) = Scenario::start("rate-limit").await else {
        return;
    };
    let ns = &scenario.namespace;
    let key = Credential::generate();
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: search
  namespace: {ns}
spec:
  method: GET
  path: /search
  rateLimit: 3
  target: {{service: echo, port: 8080}}
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner
  namespace: {ns}
spec:
  keyHash: "{hash}"
"#,
            hash = key.key_hash(),
        ))
        .await;
    scenario.wait_route_programmed("search").await;
    scenario.wait_key_ready("partner").await;

    // The gateway counts in fixed windows that start on each minute of the
    // Unix epoch, so all four requests must fall into one window.
    let second = Utc::now().second();
    if second >= 50 {
        let wait = Duration::from_millis(u64::from(60 - second) * 1_000 + 200);
        tokio::time::sleep(wait).await;
    }

    let search = scenario.call("GET", "/search").api_key(&key);
    // Requests before the route is live return 404 and are not counted.
    search.send_until(200).await;
    for attempt in 2..=3 {
        let reply = search.send().await;
        assert_eq!(reply.status, 200, "request {attempt}: {reply}");
    }
    let limited = search.send().await;
    assert_eq!(limited.status, 429, "request 4: {limited}");
    assert_eq!(limited.header("retry-after"), Some("60"), "{limited}");
    assert!(limited.json()["error"].is_string(), "{limited}");
}

#[tokio::test]
async fn cors_preflight_skips_auth() {
    let Some(scenario) = Scenario::start("cors").await else {
        return;
    };
    let ns = &scenario.namespace;
    let key = Credential::generate();
    let origin = "https://console.example.test";
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: orders
  namespace: {ns}
spec:
  method: POST
  path: /orders
  target: {{service: echo, port: 8080}}
  cors:
    enabled: true
    allowedOrigins: ["{origin}"]
    maxAgeSeconds: 600
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: console
  namespace: {ns}
spec:
  keyHash: "{hash}"
"#,
            hash = key.key_hash(),
        ))
        .await;
    scenario.wait_route_programmed("orders").await;
    scenario.wait_key_ready("console").await;

    // A browser sends the preflight without credentials.
    let preflight = scenario
        .call("OPTIONS", "/orders")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-api-key, content-type")
        .send_until(204)
        .await;
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(origin),
        "{preflight}"
    );
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(methods.contains("post"), "allowed methods: {methods}");
    let headers = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for expected in ["x-api-key", "authorization", "content-type"] {
        assert!(
            headers.contains(expected),
            "allowed headers lack {expected}: {headers}"
        );
    }
    assert_eq!(
        preflight.header("access-control-max-age"),
        Some("600"),
        "{preflight}"
    );

    let foreign = scenario
        .call("OPTIONS", "/orders")
        .header("origin", "https://other.example.test")
        .header("access-control-request-method", "POST")
        .send()
        .await;
    assert_eq!(
        foreign.header("access-control-allow-origin"),
        None,
        "an origin outside allowedOrigins was allowed: {foreign}"
    );

    let actual = scenario
        .call("POST", "/orders")
        .header("origin", origin)
        .header("content-type", "application/json")
        .api_key(&key)
        .body(r#"{"item": 1}"#)
        .send()
        .await;
    assert_eq!(actual.status, 200, "{actual}");
    assert_eq!(
        actual.header("access-control-allow-origin"),
        Some(origin),
        "{actual}"
    );

    // The preflight does not open the route itself.
    let without_key = scenario
        .call("POST", "/orders")
        .header("origin", origin)
        .send()
        .await;
    assert_eq!(without_key.status, 401, "{without_key}");
}

#[tokio::test]
async fn simple_event_reaches_function() {
    let Some(scenario) = Scenario::start("events").await else {
        return;
    };
    let ns = &scenario.namespace;
    let key = Credential::generate();
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: customer-data
  namespace: {ns}
spec:
  method: GET
  path: /customers/:customerId
  allowedApiKeyIds: [partner-reporting]
  target: {{service: events, port: 8080}}
  eventFormat: simple
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner-reporting
  namespace: {ns}
spec:
  keyHash: "{hash}"
  description: Reporting partner, read-only customer data
"#,
            hash = key.key_hash(),
        ))
        .await;
    scenario.wait_route_programmed("customer-data").await;

    let reply = scenario
        .call("GET", "/customers/42?tag=a&tag=b")
        .api_key(&key)
        .send_until(200)
        .await;
    assert_eq!(
        reply.header("x-demo-function"),
        Some("events"),
        "the function's event response headers were not applied: {reply}"
    );
    let event = reply.json();
    assert_eq!(event["format"], "simple", "{reply}");
    assert_eq!(event["method"], "GET", "{reply}");
    assert_eq!(event["path"], "/customers/42", "{reply}");
    assert_eq!(event["pathParameters"]["customerId"], "42", "{reply}");
    assert_eq!(
        event["query"]["tag"],
        serde_json::json!(["a", "b"]),
        "{reply}"
    );
    assert_eq!(event["route"], "customer-data", "{reply}");
    assert_eq!(event["tenant"], ns.as_str(), "{reply}");
    assert_eq!(event["principal"]["type"], "api-key", "{reply}");
    assert_eq!(
        event["principal"]["apiKeyId"], "partner-reporting",
        "{reply}"
    );
    assert!(
        event["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "{reply}"
    );

    let without_key = scenario.call("GET", "/customers/42").send().await;
    assert_eq!(without_key.status, 401, "{without_key}");
}
