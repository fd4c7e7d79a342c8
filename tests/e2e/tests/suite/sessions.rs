//! Bearer sessions: the gateway checks the token with a TokenReview and the
//! user's right to `invoke` gatewayroutes with a SubjectAccessReview.

use portcullis_e2e::{Credential, Scenario};

#[tokio::test]
async fn bearer_sessions_need_invoke() {
    let Some(scenario) = Scenario::start("sessions").await else {
        return;
    };
    let ns = &scenario.namespace;
    let alice = scenario.session_user("alice").await;
    let bob = scenario.session_user("bob").await;
    let key = Credential::generate();
    scenario
        .apply(&format!(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: profile
  namespace: {ns}
spec:
  method: GET
  path: /me
  authType: bearer
  target: {{service: echo, port: 8080}}
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: console
  namespace: {ns}
spec:
  method: GET
  path: /console
  # An api-key route without an allowlist also accepts a session.
  target: {{service: echo, port: 8080}}
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: partner-only
  namespace: {ns}
spec:
  method: GET
  path: /partner-only
  allowedApiKeyIds: [partner]
  target: {{service: echo, port: 8080}}
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner
  namespace: {ns}
spec:
  keyHash: "{hash}"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: route-invoker
  namespace: {ns}
rules:
  - apiGroups: ["portcullis.dev"]
    resources: ["gatewayroutes"]
    verbs: ["invoke"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-invokes
  namespace: {ns}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: route-invoker
subjects:
  - {alice_subject}
"#,
            hash = key.key_hash(),
            alice_subject = alice.subject,
        ))
        .await;
    scenario.wait_route_programmed("profile").await;
    scenario.wait_route_programmed("console").await;
    scenario.wait_route_programmed("partner-only").await;
    // The gateway caches review results, so the binding must be in effect
    // before the first request.
    scenario
        .wait_can_i(&alice, "invoke", "gatewayroutes.portcullis.dev")
        .await;

    let allowed = scenario
        .call("GET", "/me")
        .bearer(&alice.token)
        .send_until(200)
        .await;
    let echo = allowed.json();
    assert_eq!(echo["principal"], alice.principal.as_str(), "{allowed}");
    assert!(
        echo["headers"].get("authorization").is_none(),
        "the consumed token reached the function: {allowed}"
    );

    let forbidden = scenario.call("GET", "/me").bearer(&bob.token).send().await;
    assert_eq!(forbidden.status, 403, "{forbidden}");
    assert!(
        !forbidden.echoes_credential(),
        "the error body echoes the token"
    );

    let unknown = scenario
        .call("GET", "/me")
        .bearer(&Credential::generate())
        .send()
        .await;
    assert_eq!(unknown.status, 401, "{unknown}");
    assert!(
        unknown.header("www-authenticate").is_some(),
        "401 without WWW-Authenticate: {unknown}"
    );
    assert!(
        !unknown.echoes_credential(),
        "the error body echoes the token"
    );

    let anonymous = scenario.call("GET", "/me").send().await;
    assert_eq!(anonymous.status, 401, "{anonymous}");

    let console = scenario
        .call("GET", "/console")
        .bearer(&alice.token)
        .send()
        .await;
    assert_eq!(console.status, 200, "{console}");
    assert_eq!(
        console.json()["principal"],
        alice.principal.as_str(),
        "{console}"
    );

    // An allowlist turns the session fallback off.
    let partner_only = scenario
        .call("GET", "/partner-only")
        .bearer(&alice.token)
        .send()
        .await;
    assert_eq!(partner_only.status, 401, "{partner_only}");
}
