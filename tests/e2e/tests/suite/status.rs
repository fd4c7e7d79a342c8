//! Status of GatewayRoutes and ApiKeys: Gateway API conditions with
//! observedGeneration, the key fingerprint, and what admission cannot
//! check, such as references to objects that do not exist.

use portcullis_e2e::{Credential, Scenario};

#[tokio::test]
async fn route_and_key_report_status() {
    let Some(scenario) = Scenario::start("status").await else {
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
  name: orders
  namespace: {ns}
spec:
  method: GET
  path: /orders
  allowedApiKeyIds: [partner]
  target: {{service: echo, port: 8080}}
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: paused
  namespace: {ns}
spec:
  method: GET
  path: /paused
  enabled: false
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

    let route = scenario.wait_route_programmed("orders").await;
    assert_eq!(route["metadata"]["generation"], 1, "{}", route["metadata"]);
    let api_key = scenario.wait_key_ready("partner").await;
    let status = &api_key["status"];
    assert_eq!(
        status["fingerprint"],
        key.fingerprint().as_str(),
        "{status}"
    );
    assert_eq!(
        status["referencedBy"],
        serde_json::json!(["orders"]),
        "{status}"
    );
    let full_hash = &key.key_hash()["sha256:".len()..];
    assert!(
        !status.to_string().contains(full_hash),
        "ApiKey status shows the whole key hash: {status}"
    );

    scenario
        .wait_for_conditions(
            "gatewayroute",
            "paused",
            &[("Programmed", "False", "Disabled")],
        )
        .await;
    let paused = scenario.call("GET", "/paused").api_key(&key).send().await;
    assert_eq!(paused.status, 404, "a disabled route is served: {paused}");

    // A spec change raises the generation; the conditions follow it.
    scenario
        .patch(
            "gatewayroute",
            "orders",
            r#"{"spec":{"path":"/v2/orders"}}"#,
        )
        .await;
    let route = scenario.wait_route_programmed("orders").await;
    assert_eq!(route["metadata"]["generation"], 2, "{}", route["metadata"]);
    scenario
        .call("GET", "/v2/orders")
        .api_key(&key)
        .send_until(200)
        .await;
}

#[tokio::test]
async fn missing_references_reported() {
    let Some(scenario) = Scenario::start("references").await else {
        return;
    };
    let ns = &scenario.namespace;
    let key = Credential::generate();
    let ghost_key = Credential::generate();
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: reports
  namespace: {ns}
spec:
  method: GET
  path: /reports
  allowedApiKeyIds: [ghost]
  target: {{service: echo, port: 8080}}
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: billing
  namespace: {ns}
spec:
  method: GET
  path: /billing
  target: {{service: billing, port: 8080}}
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

    let reports = scenario
        .wait_for_conditions(
            "gatewayroute",
            "reports",
            &[
                ("Accepted", "True", "Accepted"),
                ("ResolvedRefs", "False", "ApiKeyNotFound"),
            ],
        )
        .await;
    let conditions = reports["status"]["conditions"].to_string();
    assert!(
        conditions.contains("ghost"),
        "the condition does not name the missing ApiKey: {conditions}"
    );
    scenario.wait_key_ready("partner").await;
    let not_allowed = scenario.call("GET", "/reports").api_key(&key).send().await;
    assert_eq!(not_allowed.status, 401, "{not_allowed}");

    let billing = scenario
        .wait_for_conditions(
            "gatewayroute",
            "billing",
            &[
                ("ResolvedRefs", "False", "ServiceNotFound"),
                ("Programmed", "False", ""),
            ],
        )
        .await;
    let conditions = billing["status"]["conditions"].to_string();
    assert!(
        conditions.contains("billing"),
        "the condition does not name the missing Service: {conditions}"
    );
    let no_backend = scenario.call("GET", "/billing").api_key(&key).send().await;
    assert_eq!(no_backend.status, 503, "{no_backend}");

    // Creating the missing key resolves the reference.
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: ghost
  namespace: {ns}
spec:
  keyHash: "{hash}"
"#,
            hash = ghost_key.key_hash(),
        ))
        .await;
    scenario.wait_route_programmed("reports").await;
    scenario
        .call("GET", "/reports")
        .api_key(&ghost_key)
        .send_until(200)
        .await;
}
