//! Key rotation and revocation with `kubectl patch`, measured from the
//! moment kubectl returns to the moment the gateway enforces the change.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use portcullis_e2e::{Credential, Scenario};

/// Applies the route `orders` and the ApiKey `partner` for `key`, and waits
/// until `key` is accepted.
async fn partner_route(scenario: &Scenario, key: &Credential) {
    let ns = &scenario.namespace;
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
    scenario.wait_route_programmed("orders").await;
    scenario
        .call("GET", "/orders")
        .api_key(key)
        .send_until(200)
        .await;
}

#[tokio::test]
async fn patched_key_hash_rotates() {
    let Some(scenario) = Scenario::start("rotate").await else {
        return;
    };
    let old_key = Credential::generate();
    let new_key = Credential::generate();
    partner_route(&scenario, &old_key).await;

    let patch = format!(r#"{{"spec":{{"keyHash":"{}"}}}}"#, new_key.key_hash());
    scenario.patch("apikey", "partner", &patch).await;
    let patched = Instant::now();
    let old_call = scenario.call("GET", "/orders").api_key(&old_key);
    let new_call = scenario.call("GET", "/orders").api_key(&new_key);
    let old_rejected = scenario.time_until(&old_call, 401, patched).await;
    let new_accepted = scenario.time_until(&new_call, 200, patched).await;
    println!(
        "key rotation: old key rejected {} ms and new key accepted {} ms after kubectl patch returned",
        old_rejected.as_millis(),
        new_accepted.as_millis()
    );

    for _ in 0..5 {
        let old = old_call.send().await;
        assert_eq!(old.status, 401, "the old key works again: {old}");
        let new = new_call.send().await;
        assert_eq!(new.status, 200, "the new key stopped working: {new}");
    }

    let key = scenario.wait_key_ready("partner").await;
    assert_eq!(key["metadata"]["generation"], 2, "{}", key["metadata"]);
    assert_eq!(
        key["status"]["fingerprint"],
        new_key.fingerprint().as_str(),
        "status: {}",
        key["status"]
    );
}

#[tokio::test]
async fn inactive_key_is_revoked() {
    let Some(scenario) = Scenario::start("revoke").await else {
        return;
    };
    let key = Credential::generate();
    partner_route(&scenario, &key).await;

    scenario
        .patch("apikey", "partner", r#"{"spec":{"active":false}}"#)
        .await;
    let patched = Instant::now();
    let call = scenario.call("GET", "/orders").api_key(&key);
    let revoked = scenario.time_until(&call, 401, patched).await;
    println!(
        "revocation: key rejected {} ms after kubectl patch returned",
        revoked.as_millis()
    );
    let reply = call.send().await;
    assert_eq!(reply.status, 401, "{reply}");
    assert!(
        reply.header("www-authenticate").is_some(),
        "401 without WWW-Authenticate: {reply}"
    );
    scenario
        .wait_for_conditions("apikey", "partner", &[("Ready", "False", "Revoked")])
        .await;

    // Revocation is a flag: setting it back restores the same key.
    scenario
        .patch("apikey", "partner", r#"{"spec":{"active":true}}"#)
        .await;
    call.send_until(200).await;
    scenario.wait_key_ready("partner").await;
}

#[tokio::test]
async fn grace_rotation_expires_old_key() {
    let Some(scenario) = Scenario::start("grace").await else {
        return;
    };
    let old_key = Credential::generate();
    let new_key = Credential::generate();
    partner_route(&scenario, &old_key).await;

    // expiresAt has whole seconds, so the grace period is 8 to 9 seconds:
    // long enough to see both keys work, short enough for the suite.
    let expires_at = Utc::now() + chrono::Duration::seconds(9);
    let expires_text = expires_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let expires_at = chrono::DateTime::parse_from_rfc3339(&expires_text)
        .expect("RFC 3339 round trip")
        .with_timezone(&Utc);
    let patch = format!(
        r#"{{"spec":{{"keyHash":"{new}","previousKeyHashes":[{{"hash":"{old}","expiresAt":"{expires_text}"}}]}}}}"#,
        new = new_key.key_hash(),
        old = old_key.key_hash(),
    );
    scenario.patch("apikey", "partner", &patch).await;

    let old_call = scenario.call("GET", "/orders").api_key(&old_key);
    let new_call = scenario.call("GET", "/orders").api_key(&new_key);
    new_call.send_until(200).await;
    let old = old_call.send().await;
    assert!(
        Utc::now() < expires_at,
        "the new key took longer than the grace period to arrive"
    );
    assert_eq!(
        old.status, 200,
        "old key rejected during its grace period: {old}"
    );

    let mut last_accepted = Utc::now();
    let rejected_at = loop {
        let reply = old_call.send().await;
        let now = Utc::now();
        match reply.status {
            200 => last_accepted = now,
            401 => break now,
            _ => panic!("unexpected response for the old key: {reply}"),
        }
        assert!(
            now < expires_at + chrono::Duration::seconds(10),
            "the old key still works 10 s after its expiresAt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        rejected_at >= expires_at,
        "the old key was rejected at {rejected_at}, before its expiresAt {expires_at}"
    );
    // A reply is timed when it arrives, a little after the gateway checked
    // the key, hence the tolerance.
    assert!(
        last_accepted <= expires_at + chrono::Duration::milliseconds(500),
        "the old key was accepted at {last_accepted}, after its expiresAt {expires_at}"
    );
    println!(
        "grace rotation: old key last accepted {} ms before and first rejected {} ms after its expiresAt",
        (expires_at - last_accepted).num_milliseconds(),
        (rejected_at - expires_at).num_milliseconds()
    );

    let new = new_call.send().await;
    assert_eq!(new.status, 200, "the new key stopped working: {new}");
}
