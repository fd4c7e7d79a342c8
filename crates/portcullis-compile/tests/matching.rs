//! Route matching on a compiled snapshot: parameters, wildcards, 404 versus
//! 405, hosts, and paths that must be rejected instead of normalized.

use http::Method;
use portcullis_api::GatewayRoute;
use portcullis_compile::{CompileOptions, MatchError, Resources, Snapshot, compile};

fn route(name: &str, method: &str, path: &str, extra: &str) -> GatewayRoute {
    serde_yaml::from_str(&format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: {name}, namespace: acme}}\nspec:\n  method: {method}\n  path: \"{path}\"\n  authType: none\n  target: {{service: svc, port: 80}}\n{extra}"
    ))
    .unwrap()
}

fn snapshot() -> Snapshot {
    let resources = Resources {
        routes: vec![
            route("get-customer", "GET", "/customers/:id", ""),
            route("put-customer", "PUT", "/customers/:id", ""),
            route("me", "GET", "/customers/me", ""),
            route("files", "GET", "/files/*rest", ""),
            route("anything", "ANY", "/any", ""),
            route("root", "GET", "/", ""),
            route("hosted", "GET", "/hello", "  hosts: [api.acme.example]\n"),
        ],
        ..Resources::default()
    };
    let compiled = compile(&resources, CompileOptions::default());
    assert!(
        compiled
            .report
            .problems
            .iter()
            .all(|p| p.reason == "ServiceNotFound")
    );
    compiled.snapshot
}

fn matched(
    snapshot: &Snapshot,
    host: Option<&str>,
    path: &str,
    method: Method,
) -> Result<String, MatchError> {
    snapshot
        .resolve(host, path, &method)
        .map(|m| format!("{} {} {:?}", m.route.name, m.upstream_path, m.params))
}

#[test]
fn parameter_is_captured() {
    let s = snapshot();
    assert_eq!(
        matched(&s, None, "/gw/acme/customers/42", Method::GET).unwrap(),
        "get-customer /customers/42 [(\"id\", \"42\")]"
    );
}

#[test]
fn static_segment_wins_over_parameter() {
    let s = snapshot();
    assert_eq!(
        matched(&s, None, "/gw/acme/customers/me", Method::GET).unwrap(),
        "me /customers/me []"
    );
}

#[test]
fn wildcard_captures_rest() {
    let s = snapshot();
    assert_eq!(
        matched(&s, None, "/gw/acme/files/a/b/c.txt", Method::GET).unwrap(),
        "files /files/a/b/c.txt [(\"rest\", \"a/b/c.txt\")]"
    );
}

#[test]
fn unknown_path_is_not_found() {
    let s = snapshot();
    assert_eq!(
        matched(&s, None, "/gw/acme/nothing", Method::GET),
        Err(MatchError::NotFound)
    );
    assert_eq!(
        matched(&s, None, "/gw/other/customers/1", Method::GET),
        Err(MatchError::NotFound)
    );
    assert_eq!(
        matched(&s, None, "/customers/1", Method::GET),
        Err(MatchError::NotFound)
    );
}

#[test]
fn wrong_method_is_method_not_allowed() {
    let result = matched(&snapshot(), None, "/gw/acme/customers/1", Method::DELETE);
    let Err(MatchError::MethodNotAllowed { mut allow }) = result else {
        panic!("expected 405, got {result:?}");
    };
    allow.sort();
    assert_eq!(allow, vec!["GET", "PUT"]);
}

#[test]
fn any_method_matches_every_method() {
    let s = snapshot();
    for method in [Method::GET, Method::POST, Method::DELETE, Method::PATCH] {
        assert!(matched(&s, None, "/gw/acme/any", method).is_ok());
    }
}

#[test]
fn tenant_root_maps_to_slash() {
    let s = snapshot();
    assert_eq!(
        matched(&s, None, "/gw/acme", Method::GET).unwrap(),
        "root / []"
    );
    assert_eq!(
        matched(&s, None, "/gw/acme/", Method::GET).unwrap(),
        "root / []"
    );
}

#[test]
fn custom_host_serves_without_prefix() {
    let s = snapshot();
    assert_eq!(
        matched(&s, Some("api.acme.example"), "/hello", Method::GET).unwrap(),
        "hosted /hello []"
    );
    assert_eq!(
        matched(&s, Some("other.example"), "/hello", Method::GET),
        Err(MatchError::NotFound)
    );
    // The prefixed form works on any host, the custom one included.
    assert!(matched(&s, Some("api.acme.example"), "/gw/acme/hello", Method::GET).is_ok());
}

#[test]
fn dot_segments_are_rejected() {
    let s = snapshot();
    for path in [
        "/gw/acme/files/../customers/1",
        "/gw/acme/customers/./1",
        "/gw/acme/files/%2e%2e/secret",
        "/gw/acme/files/a/%2E",
    ] {
        assert!(
            matches!(
                matched(&s, None, path, Method::GET),
                Err(MatchError::BadPath(_))
            ),
            "{path}"
        );
    }
}

#[test]
fn encoded_slash_in_parameter_is_rejected() {
    let s = snapshot();
    assert!(matches!(
        matched(&s, None, "/gw/acme/customers/1%2F2", Method::GET),
        Err(MatchError::BadPath(_))
    ));
    assert!(matches!(
        matched(&s, None, "/gw/acme/files/a%2fb", Method::GET),
        Err(MatchError::BadPath(_))
    ));
}

#[test]
fn unreserved_encoding_is_decoded_before_matching() {
    let s = snapshot();
    assert_eq!(
        matched(&s, None, "/gw/acme/%63ustomers/%34%32", Method::GET).unwrap(),
        "get-customer /customers/42 [(\"id\", \"42\")]"
    );
    // Reserved characters stay encoded and are passed on as sent.
    assert_eq!(
        matched(&s, None, "/gw/acme/customers/a%20b", Method::GET).unwrap(),
        "get-customer /customers/a%20b [(\"id\", \"a%20b\")]"
    );
}
