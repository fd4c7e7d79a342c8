//! API-key routes: what a protected route forwards and rejects, allowlists,
//! deploy keys and public routes.

use portcullis_e2e::{Credential, Scenario};

#[tokio::test]
async fn protected_route_needs_key() {
    let Some(mut scenario) = Scenario::start("protected").await else {
        return;
    };
    let ns = scenario.namespace.clone();
    let key = Credential::generate();
    let expired_key = Credential::generate();
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
  path: /orders/:orderId
  # authType omitted: api-key
  target:
    service: echo
    port: 8080
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner
  namespace: {ns}
spec:
  keyHash: "{hash}"
  description: Orders partner
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: old-partner
  namespace: {ns}
spec:
  keyHash: "{expired_hash}"
  expiresAt: "2020-01-01T00:00:00Z"
"#,
            hash = key.key_hash(),
            expired_hash = expired_key.key_hash(),
        ))
        .await;
    scenario.wait_route_programmed("orders").await;
    scenario
        .wait_for_conditions("apikey", "old-partner", &[("Ready", "False", "Expired")])
        .await;

    let ok = scenario
        .call("GET", "/orders/7?page=2&sort=desc")
        .api_key(&key)
        .header("x-portcullis-principal", "api-key:admin")
        .header("x-portcullis-tenant", "someone-else")
        .send_until(200)
        .await;
    let echo = ok.json();
    assert_eq!(echo["function"], "echo", "{ok}");
    assert_eq!(echo["path"], "/orders/7", "{ok}");
    assert_eq!(echo["query"], "page=2&sort=desc", "{ok}");
    assert_eq!(echo["principal"], "api-key:partner", "{ok}");
    assert_eq!(echo["tenant"], ns.as_str(), "{ok}");
    assert!(
        echo["headers"].get("x-api-key").is_none(),
        "the consumed key reached the function: {ok}"
    );

    let missing = scenario.call("GET", "/orders/7").send().await;
    assert_eq!(missing.status, 401, "{missing}");
    assert!(
        missing.header("www-authenticate").is_some(),
        "401 without WWW-Authenticate: {missing}"
    );
    assert!(missing.json()["error"].is_string(), "{missing}");

    let unknown = scenario
        .call("GET", "/orders/7")
        .api_key(&Credential::generate())
        .send()
        .await;
    assert_eq!(unknown.status, 401, "{unknown}");
    assert!(
        !unknown.echoes_credential(),
        "the error body echoes the key"
    );

    let expired = scenario
        .call("GET", "/orders/7")
        .api_key(&expired_key)
        .send()
        .await;
    assert_eq!(expired.status, 401, "{expired}");

    // A valid key of another namespace is unknown here: keys never cross
    // tenants.
    let other_ns = scenario.create_namespace("protected-other").await;
    let other_key = Credential::generate();
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner
  namespace: {other_ns}
spec:
  keyHash: "{hash}"
"#,
            hash = other_key.key_hash(),
        ))
        .await;
    scenario
        .wait_for_conditions_in(
            &other_ns,
            "apikey",
            "partner",
            &[("Ready", "True", "Ready")],
        )
        .await;
    let cross_tenant = scenario
        .call("GET", "/orders/7")
        .api_key(&other_key)
        .send()
        .await;
    assert_eq!(cross_tenant.status, 401, "{cross_tenant}");
}

#[tokio::test]
async fn allowlist_limits_keys() {
    let Some(scenario) = Scenario::start("allowlist").await else {
        return;
    };
    let ns = &scenario.namespace;
    let partner = Credential::generate();
    let other = Credential::generate();
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: locked
  namespace: {ns}
spec:
  method: GET
  path: /locked
  allowedApiKeyIds: [partner]
  target: {{service: echo, port: 8080}}
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: open
  namespace: {ns}
spec:
  method: GET
  path: /open
  target: {{service: echo, port: http}}
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner
  namespace: {ns}
spec:
  keyHash: "{partner_hash}"
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: other
  namespace: {ns}
spec:
  keyHash: "{other_hash}"
"#,
            partner_hash = partner.key_hash(),
            other_hash = other.key_hash(),
        ))
        .await;
    scenario.wait_route_programmed("locked").await;
    scenario.wait_route_programmed("open").await;
    scenario.wait_key_ready("other").await;

    let allowed = scenario
        .call("GET", "/locked")
        .api_key(&partner)
        .send_until(200)
        .await;
    assert_eq!(allowed.json()["principal"], "api-key:partner", "{allowed}");

    let not_listed = scenario.call("GET", "/locked").api_key(&other).send().await;
    assert_eq!(not_listed.status, 401, "{not_listed}");
    assert!(not_listed.header("www-authenticate").is_some());

    // Without an allowlist any active invoke key of the namespace works; the
    // route names its Service port by name here.
    let open = scenario
        .call("GET", "/open")
        .api_key(&other)
        .send_until(200)
        .await;
    assert_eq!(open.json()["principal"], "api-key:other", "{open}");

    let partner_status = scenario.wait_key_ready("partner").await;
    assert_eq!(
        partner_status["status"]["referencedBy"],
        serde_json::json!(["locked"]),
        "ApiKey partner status: {}",
        partner_status["status"]
    );
}

#[tokio::test]
async fn deploy_key_is_forbidden() {
    let Some(scenario) = Scenario::start("deploy-key").await else {
        return;
    };
    let ns = &scenario.namespace;
    let deploy_key = Credential::generate();
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
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: ci-pipeline
  namespace: {ns}
spec:
  keyHash: "{hash}"
  scope: deploy
  description: Deploys functions; must not invoke them
"#,
            hash = deploy_key.key_hash(),
        ))
        .await;
    scenario.wait_route_programmed("orders").await;
    scenario.wait_key_ready("ci-pipeline").await;

    let forbidden = scenario
        .call("POST", "/orders")
        .api_key(&deploy_key)
        .body("{}")
        .send_until(403)
        .await;
    assert!(forbidden.json()["error"].is_string(), "{forbidden}");
    assert!(
        !forbidden.echoes_credential(),
        "the error body echoes the key"
    );
}

#[tokio::test]
async fn public_route_is_anonymous() {
    let Some(scenario) = Scenario::start("public").await else {
        return;
    };
    let ns = &scenario.namespace;
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: health
  namespace: {ns}
spec:
  method: GET
  path: /health
  authType: none
  target: {{service: echo, port: 8080}}
"#
        ))
        .await;
    scenario.wait_route_programmed("health").await;

    let public = scenario.call("GET", "/health").send_until(200).await;
    assert_eq!(public.json()["principal"], "anonymous", "{public}");
    assert_eq!(public.json()["tenant"], ns.as_str(), "{public}");

    // A key sent to a public route is still removed before the function.
    let with_key = scenario
        .call("GET", "/health")
        .api_key(&Credential::generate())
        .send()
        .await;
    assert_eq!(with_key.status, 200, "{with_key}");
    assert!(
        with_key.json()["headers"].get("x-api-key").is_none(),
        "the key reached the function: {with_key}"
    );

    let unknown_path = scenario.call("GET", "/nothing-here").send().await;
    assert_eq!(unknown_path.status, 404, "{unknown_path}");

    let wrong_method = scenario.call("DELETE", "/health").send().await;
    assert_eq!(wrong_method.status, 405, "{wrong_method}");
    assert_eq!(wrong_method.header("allow"), Some("GET"), "{wrong_method}");
}
