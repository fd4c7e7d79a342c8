//! An API server outage: the controller keeps serving its last snapshot and
//! applies the changes made meanwhile once the API server is back. Runs in
//! local mode only, because the suite must sit between the controller and
//! the API server.

use std::time::{Duration, Instant};

use portcullis_e2e::access::{CONTROLLER_USER, token_of};
use portcullis_e2e::forwarder::Forwarder;
use portcullis_e2e::local::Controller;
use portcullis_e2e::{Credential, PROPAGATION_TIMEOUT, Scenario, eventually};

/// How long the controller may take to reconnect after the outage. Its
/// watches retry with a backoff, so this is longer than a normal change.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn controller_catches_up_after_outage() {
    let Some(scenario) = Scenario::start("outage").await else {
        return;
    };
    if !scenario.local_only("a forwarder between its own controller and the API server") {
        return;
    }
    let suite = scenario.suite;
    let ns = &scenario.namespace;
    let old_key = Credential::generate();
    let new_key = Credential::generate();
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
            hash = old_key.key_hash(),
        ))
        .await;
    scenario.wait_route_programmed("orders").await;

    let forwarder = Forwarder::start(suite.access.server_address().to_owned()).await;
    let kubeconfig = suite.scratch_path("outage.kubeconfig");
    let through_forwarder = format!("https://{}", forwarder.address());
    suite.access.write_kubeconfig(
        &kubeconfig,
        &token_of(CONTROLLER_USER),
        Some(&through_forwarder),
    );
    let controller = Controller::start(
        &scenario.local().binary,
        &kubeconfig,
        &format!("portcullis-e2e-outage-{}", suite.run_id),
        &suite.work_dir,
        &["--watch-namespaces", ns],
    )
    .await;
    controller.wait_ready(PROPAGATION_TIMEOUT).await;
    let orders = format!("{}/gw/{ns}/orders", controller.traffic);
    let old_call = scenario.call_url("GET", orders.clone()).api_key(&old_key);
    let new_call = scenario.call_url("GET", orders).api_key(&new_key);
    old_call.send_until(200).await;

    forwarder.cut().await;
    scenario
        .patch(
            "apikey",
            "partner",
            &format!(r#"{{"spec":{{"keyHash":"{}"}}}}"#, new_key.key_hash()),
        )
        .await;
    eventually(
        PROPAGATION_TIMEOUT,
        "the controller to count a watch error",
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

    // During the outage the last snapshot keeps serving.
    for _ in 0..5 {
        let old = old_call.send().await;
        assert_eq!(old.status, 200, "the last snapshot stopped serving: {old}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let readyz = scenario
        .call_url("GET", format!("{}/readyz", controller.admin))
        .send()
        .await;
    assert_eq!(
        readyz.status, 200,
        "a synced replica turned unready during the outage: {readyz}"
    );

    forwarder.restore();
    let restored = Instant::now();
    let mut caught_up = None;
    while restored.elapsed() < CATCH_UP_TIMEOUT {
        if new_call.send().await.status == 200 {
            caught_up = Some(restored.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(caught_up) = caught_up else {
        panic!(
            "the key patched during the outage was not applied within {} s after the API server came back; watch errors: {}; log: {}",
            CATCH_UP_TIMEOUT.as_secs(),
            controller.watch_errors().await,
            controller.log().display()
        );
    };
    println!(
        "outage: the key patched during the outage was enforced {} ms after the API server came back",
        caught_up.as_millis()
    );
    let old = old_call.send().await;
    assert_eq!(
        old.status, 401,
        "the old key works after catching up: {old}"
    );
}
