//! Fail-closed start: until a controller has listed every ApiKey,
//! `/readyz` and protected routes return 503, while public routes serve.
//! These tests start their own `portcullis run`, so they run in local mode
//! only.

use std::time::Duration;

use portcullis_e2e::access::{CONTROLLER_USER, NO_KEYS_USER, token_of};
use portcullis_e2e::local::{Controller, SYSTEM_NAMESPACE};
use portcullis_e2e::process::free_port;
use portcullis_e2e::{Credential, PROPAGATION_TIMEOUT, Scenario, eventually};
use serde_json::json;

/// ClusterRole with the chart's rules minus everything on ApiKeys.
const NO_KEYS_ROLE: &str = "portcullis-e2e-nokeys";
/// ClusterRoleBinding that later grants the chart's own ClusterRole.
const FULL_BINDING: &str = "portcullis-e2e-nokeys-full";
/// How long a controller may take to recover once it is allowed to list.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Returns the chart's ClusterRole rules without the `apikeys` resources.
fn rules_without_api_keys(chart_role: &serde_json::Value) -> Vec<serde_json::Value> {
    chart_role["rules"]
        .as_array()
        .expect("the chart's ClusterRole has rules")
        .iter()
        .filter_map(|rule| {
            let resources: Vec<&serde_json::Value> = rule["resources"]
                .as_array()?
                .iter()
                .filter(|resource| !resource.as_str().is_some_and(|r| r.starts_with("apikeys")))
                .collect();
            if resources.is_empty() {
                return None;
            }
            let mut rule = rule.clone();
            rule["resources"] = json!(resources);
            Some(rule)
        })
        .collect()
}

/// Applies a public and a protected route and a key for the protected one.
async fn routes_and_key(scenario: &Scenario, key: &Credential) {
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
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: orders
  namespace: {ns}
spec:
  method: GET
  path: /orders
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
    scenario.wait_route_programmed("health").await;
    scenario.wait_route_programmed("orders").await;
    scenario.wait_key_ready("partner").await;
}

#[tokio::test]
async fn fail_closed_until_keys_listed() {
    let Some(scenario) = Scenario::start("fail-closed").await else {
        return;
    };
    if !scenario.local_only("a second controller without permission to list ApiKeys") {
        return;
    }
    let suite = scenario.suite;
    let local = scenario.local();
    let kubectl = &suite.kubectl;
    let ns = &scenario.namespace;
    kubectl
        .ok(
            &[
                "delete",
                "clusterrolebinding",
                FULL_BINDING,
                "--ignore-not-found",
            ],
            None,
        )
        .await;

    let chart_role = local.manifest.object("ClusterRole", "portcullis");
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": NO_KEYS_ROLE},
        "rules": rules_without_api_keys(chart_role),
    });
    let service_account = NO_KEYS_USER.rsplit(':').next().expect("user has a name");
    let rbac = format!(
        r#"{role}---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {service_account}
  namespace: {SYSTEM_NAMESPACE}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {NO_KEYS_ROLE}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {NO_KEYS_ROLE}}}
subjects:
  - {{kind: ServiceAccount, name: {service_account}, namespace: {SYSTEM_NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {NO_KEYS_ROLE}-leader-election
  namespace: {SYSTEM_NAMESPACE}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-leader-election}}
subjects:
  - {{kind: ServiceAccount, name: {service_account}, namespace: {SYSTEM_NAMESPACE}}}
"#,
        role = serde_yaml::to_string(&role).expect("a ClusterRole serializes as YAML"),
    );
    kubectl.apply(&rbac).await;
    let key = Credential::generate();
    routes_and_key(&scenario, &key).await;

    let kubeconfig = suite.scratch_path("nokeys.kubeconfig");
    suite
        .access
        .write_kubeconfig(&kubeconfig, &token_of(NO_KEYS_USER), None);
    let controller = Controller::start(
        &local.binary,
        &kubeconfig,
        &format!("portcullis-e2e-nokeys-{}", suite.run_id),
        &suite.work_dir,
        &["--watch-namespaces", ns],
    )
    .await;
    let at = |path: &str| format!("{}/gw/{ns}{path}", controller.traffic);

    let public = scenario
        .call_url("GET", at("/health"))
        .send_until(200)
        .await;
    assert_eq!(public.json()["principal"], "anonymous", "{public}");
    let protected = scenario
        .call_url("GET", at("/orders"))
        .api_key(&key)
        .send()
        .await;
    assert_eq!(protected.status, 503, "{protected}");
    assert!(protected.json()["error"].is_string(), "{protected}");
    assert!(
        !protected.echoes_credential(),
        "the error body echoes the key"
    );
    let readyz = scenario
        .call_url("GET", format!("{}/readyz", controller.admin))
        .send()
        .await;
    assert_eq!(readyz.status, 503, "{readyz}");
    let healthz = scenario
        .call_url("GET", format!("{}/healthz", controller.admin))
        .send()
        .await;
    assert_eq!(healthz.status, 200, "{healthz}");
    assert!(
        controller
            .metric(r#"portcullis_watch_errors_total{kind="ApiKey"}"#)
            .await
            >= 1.0,
        "no ApiKey watch error was counted; watch errors: {}",
        controller.watch_errors().await
    );

    // Granting the chart's ClusterRole lets the ApiKey watch list on its
    // next retry, and the replica turns ready.
    kubectl
        .apply(&format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {FULL_BINDING}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis}}
subjects:
  - {{kind: ServiceAccount, name: {service_account}, namespace: {SYSTEM_NAMESPACE}}}
"#
        ))
        .await;
    controller.wait_ready(RECOVERY_TIMEOUT).await;
    scenario
        .call_url("GET", at("/orders"))
        .api_key(&key)
        .send_until(200)
        .await;

    drop(controller);
    kubectl
        .ok(
            &[
                "delete",
                "clusterrolebinding",
                FULL_BINDING,
                NO_KEYS_ROLE,
                "--ignore-not-found",
            ],
            None,
        )
        .await;
    kubectl
        .ok(
            &["delete", "clusterrole", NO_KEYS_ROLE, "--ignore-not-found"],
            None,
        )
        .await;
    let leader_binding = format!("{NO_KEYS_ROLE}-leader-election");
    kubectl
        .ok(
            &[
                "delete",
                "rolebinding",
                &leader_binding,
                "-n",
                SYSTEM_NAMESPACE,
                "--ignore-not-found",
            ],
            None,
        )
        .await;
}

#[tokio::test]
async fn unreachable_api_server_not_ready() {
    let Some(scenario) = Scenario::start("unreachable").await else {
        return;
    };
    if !scenario.local_only("a second controller pointed at a closed port") {
        return;
    }
    let suite = scenario.suite;
    let ns = &scenario.namespace;
    let key = Credential::generate();
    routes_and_key(&scenario, &key).await;

    // Nothing listens on this port, so every request of the controller fails.
    let closed = format!("https://127.0.0.1:{}", free_port());
    let kubeconfig = suite.scratch_path("unreachable.kubeconfig");
    suite
        .access
        .write_kubeconfig(&kubeconfig, &token_of(CONTROLLER_USER), Some(&closed));
    let controller = Controller::start(
        &scenario.local().binary,
        &kubeconfig,
        &format!("portcullis-e2e-unreachable-{}", suite.run_id),
        &suite.work_dir,
        &["--watch-namespaces", ns],
    )
    .await;

    eventually(
        PROPAGATION_TIMEOUT,
        "watch errors to be counted",
        || async {
            let errors = controller
                .metric(r#"portcullis_watch_errors_total{kind="ApiKey"}"#)
                .await;
            if errors >= 1.0 {
                Ok(())
            } else {
                Err(format!("watch errors: {}", controller.watch_errors().await))
            }
        },
    )
    .await;
    let readyz = scenario
        .call_url("GET", format!("{}/readyz", controller.admin))
        .send()
        .await;
    assert_eq!(readyz.status, 503, "{readyz}");
    let healthz = scenario
        .call_url("GET", format!("{}/healthz", controller.admin))
        .send()
        .await;
    assert_eq!(healthz.status, 200, "{healthz}");

    // The controller has never seen the routes, so it cannot tell a
    // protected route from an unknown path: 503 tells clients to retry, and
    // nothing reaches a function.
    for path in ["/orders", "/health"] {
        let reply = scenario
            .call_url("GET", format!("{}/gw/{ns}{path}", controller.traffic))
            .api_key(&key)
            .send()
            .await;
        assert!(reply.status == 503, "{path} before the first sync: {reply}");
        assert!(reply.json()["error"].is_string(), "{path}: {reply}");
        println!(
            "unreachable API server: {path} returns {} before the first sync",
            reply.status
        );
    }
}
