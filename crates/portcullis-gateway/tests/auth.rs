//! Every authentication row: missing, unknown, inactive, expired,
//! other-tenant and not-allowlisted keys are 401, a deploy key is 403, the
//! session fallback works only without an allowlist, and everything
//! protected fails closed with 503 before the first sync.

use chrono::{DateTime, Duration, Utc};
use http::HeaderMap;
use portcullis_api::{ApiKey, GatewayRoute};
use portcullis_compile::{CompileOptions, KeyHash, Resources, RouteSpec, Snapshot, compile};
use portcullis_gateway::FileSessions;
use portcullis_gateway::auth::{Principal, authenticate};
use portcullis_gateway::denial::Denial;
use portcullis_gateway::sessions::SessionVerifier;

fn hash(key: &str) -> String {
    KeyHash::of_key(key.as_bytes()).to_spec_string()
}

fn key(namespace: &str, name: &str, extra: &str) -> ApiKey {
    serde_yaml::from_str(&format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  keyHash: \"{}\"\n{extra}",
        hash(&format!("{namespace}-{name}-key-000000000000000000000"))
    ))
    .unwrap()
}

fn plaintext(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}-key-000000000000000000000")
}

fn route(name: &str, extra: &str) -> GatewayRoute {
    serde_yaml::from_str(&format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: {name}, namespace: acme}}\nspec:\n  method: GET\n  path: /{name}\n  target: {{service: svc, port: 80}}\n{extra}"
    ))
    .unwrap()
}

struct Fixture {
    snapshot: Snapshot,
    now: DateTime<Utc>,
}

fn fixture(synced: bool) -> Fixture {
    let now = Utc::now();
    let past = (now - Duration::hours(1)).to_rfc3339();
    let future = (now + Duration::hours(1)).to_rfc3339();
    let resources = Resources {
        routes: vec![
            route("open", ""),
            route("locked", "  allowedApiKeyIds: [partner]\n"),
            route("public", "  authType: none\n"),
            route("session-only", "  authType: bearer\n"),
        ],
        keys: vec![
            key("acme", "partner", ""),
            key("acme", "other", ""),
            key("acme", "deployer", "  scope: deploy\n"),
            key("acme", "revoked", "  active: false\n"),
            key("acme", "expired", &format!("  expiresAt: \"{past}\"\n")),
            key(
                "acme",
                "still-valid",
                &format!("  expiresAt: \"{future}\"\n"),
            ),
            key(
                "acme",
                "rotated",
                &format!(
                    "  previousKeyHashes:\n    - {{hash: \"{}\", expiresAt: \"{future}\"}}\n    - {{hash: \"{}\", expiresAt: \"{past}\"}}\n",
                    hash("grace-period-old-key-00000000000000"),
                    hash("rotated-out-old-key-000000000000000")
                ),
            ),
            key("beta", "partner", ""),
        ],
        ..Resources::default()
    };
    let mut snapshot = compile(&resources, CompileOptions::default()).snapshot;
    snapshot.synced = synced;
    Fixture { snapshot, now }
}

fn sessions() -> FileSessions {
    FileSessions::parse(&format!(
        "{} alice acme\n{} bob beta\n",
        hash("alice-session-token"),
        hash("bob-session-token")
    ))
    .unwrap()
}

impl Fixture {
    fn route(&self, name: &str) -> &RouteSpec {
        let matched = self
            .snapshot
            .resolve(None, &format!("/gw/acme/{name}"), &http::Method::GET)
            .unwrap();
        matched.route
    }

    async fn check(
        &self,
        route: &str,
        headers: &[(&str, &str)],
        sessions: Option<&dyn SessionVerifier>,
    ) -> Result<Principal, (Denial, &'static str)> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        authenticate(&self.snapshot, self.route(route), &map, sessions, self.now)
            .await
            .map(|a| a.principal)
            .map_err(|r| (r.denial, r.reason))
    }
}

fn status(result: &Result<Principal, (Denial, &'static str)>) -> u16 {
    match result {
        Ok(_) => 200,
        Err((denial, _)) => denial.status().as_u16(),
    }
}

#[tokio::test]
async fn valid_key_authenticates() {
    let f = fixture(true);
    let key = plaintext("acme", "partner");
    assert_eq!(
        f.check("open", &[("x-api-key", &key)], None).await,
        Ok(Principal::ApiKey("partner".into()))
    );
    assert_eq!(
        f.check("locked", &[("x-api-key", &key)], None).await,
        Ok(Principal::ApiKey("partner".into()))
    );
}

#[tokio::test]
async fn rejected_keys_are_401_with_reason() {
    let f = fixture(true);
    let cases = [
        ("open", None, "missing"),
        (
            "open",
            Some("not-a-known-key-000000000000000000000".to_owned()),
            "unknown_key",
        ),
        ("open", Some(plaintext("acme", "revoked")), "revoked"),
        ("open", Some(plaintext("acme", "expired")), "expired"),
        ("open", Some(plaintext("beta", "partner")), "other_tenant"),
        (
            "locked",
            Some(plaintext("acme", "other")),
            "not_allowlisted",
        ),
        (
            "open",
            Some("rotated-out-old-key-000000000000000".to_owned()),
            "rotated_out",
        ),
    ];
    for (route, key, reason) in cases {
        let headers: Vec<(&str, &str)> = key.iter().map(|k| ("x-api-key", k.as_str())).collect();
        let result = f.check(route, &headers, None).await;
        assert_eq!(status(&result), 401, "{route} {reason}");
        assert_eq!(result.unwrap_err().1, reason);
    }
}

#[tokio::test]
async fn grace_hash_and_future_expiry_still_work() {
    let f = fixture(true);
    assert_eq!(
        f.check(
            "open",
            &[("x-api-key", "grace-period-old-key-00000000000000")],
            None
        )
        .await,
        Ok(Principal::ApiKey("rotated".into()))
    );
    let key = plaintext("acme", "still-valid");
    assert_eq!(
        status(&f.check("open", &[("x-api-key", &key)], None).await),
        200
    );
}

#[tokio::test]
async fn deploy_key_is_403() {
    let f = fixture(true);
    let key = plaintext("acme", "deployer");
    let result = f.check("open", &[("x-api-key", &key)], None).await;
    assert_eq!(status(&result), 403);
    assert_eq!(result.unwrap_err().1, "deploy_scope");
}

#[tokio::test]
async fn session_fallback_only_without_allowlist() {
    let f = fixture(true);
    let sessions = sessions();
    let alice = [("authorization", "Bearer alice-session-token")];
    assert_eq!(
        f.check("open", &alice, Some(&sessions)).await,
        Ok(Principal::User("alice".into()))
    );
    let locked = f.check("locked", &alice, Some(&sessions)).await;
    assert_eq!(status(&locked), 401);
    assert_eq!(locked.unwrap_err().1, "missing");
}

#[tokio::test]
async fn bearer_route_outcomes() {
    let f = fixture(true);
    let sessions = sessions();
    assert_eq!(
        f.check(
            "session-only",
            &[("authorization", "Bearer alice-session-token")],
            Some(&sessions)
        )
        .await,
        Ok(Principal::User("alice".into()))
    );
    assert_eq!(
        status(
            &f.check(
                "session-only",
                &[("authorization", "Bearer bob-session-token")],
                Some(&sessions)
            )
            .await
        ),
        403
    );
    assert_eq!(
        status(
            &f.check(
                "session-only",
                &[("authorization", "Bearer nope")],
                Some(&sessions)
            )
            .await
        ),
        401
    );
    assert_eq!(
        status(&f.check("session-only", &[], Some(&sessions)).await),
        401
    );
    // An API key is not a session.
    let key = plaintext("acme", "partner");
    assert_eq!(
        status(
            &f.check("session-only", &[("x-api-key", &key)], Some(&sessions))
                .await
        ),
        401
    );
}

#[tokio::test]
async fn missing_session_backend_is_503() {
    let f = fixture(true);
    let alice = [("authorization", "Bearer alice-session-token")];
    assert_eq!(status(&f.check("session-only", &alice, None).await), 503);
    assert_eq!(status(&f.check("open", &alice, None).await), 503);
}

#[tokio::test]
async fn unsynced_snapshot_fails_closed() {
    let f = fixture(false);
    let key = plaintext("acme", "partner");
    for route in ["open", "locked", "session-only"] {
        let result = f
            .check(route, &[("x-api-key", &key)], Some(&sessions()))
            .await;
        assert_eq!(status(&result), 503, "{route}");
    }
    assert_eq!(f.check("public", &[], None).await, Ok(Principal::Anonymous));
}

#[tokio::test]
async fn public_route_is_anonymous_even_with_a_key() {
    let f = fixture(true);
    assert_eq!(
        f.check("public", &[("x-api-key", "whatever")], None).await,
        Ok(Principal::Anonymous)
    );
}
