//! Objects that the CRDs' OpenAPI schema and CEL rules reject at
//! admission, with the message kubectl prints.

use portcullis_e2e::{Credential, Scenario};

/// Spec lines of an invalid GatewayRoute, and text that kubectl's error
/// must contain.
const INVALID_ROUTES: [(&str, &str, &[&str]); 5] = [
    (
        "allowlist on a public route",
        "method: GET\n  path: /health\n  authType: none\n  allowedApiKeyIds: [partner]",
        &["allowedApiKeyIds is only valid with authType api-key"],
    ),
    (
        "allowlist on a bearer route",
        "method: GET\n  path: /me\n  authType: bearer\n  allowedApiKeyIds: [partner]",
        &["allowedApiKeyIds is only valid with authType api-key"],
    ),
    (
        "timeout above 900 seconds",
        "method: GET\n  path: /slow\n  timeoutSeconds: 901",
        &["spec.timeoutSeconds", "less than or equal to 900"],
    ),
    (
        "path without a leading slash",
        "method: GET\n  path: orders",
        &["spec.path", "should match"],
    ),
    (
        "unknown authType",
        "method: GET\n  path: /orders\n  authType: basic",
        &["spec.authType", "Unsupported value"],
    ),
];

#[tokio::test]
async fn invalid_objects_rejected_at_admission() {
    let Some(scenario) = Scenario::start_without_traffic("admission").await else {
        return;
    };
    let ns = &scenario.namespace;

    for (case, spec, expected) in INVALID_ROUTES {
        let yaml = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: GatewayRoute\nmetadata:\n  name: invalid\n  namespace: {ns}\nspec:\n  {spec}\n  target: {{service: echo, port: 8080}}\n"
        );
        let output = scenario.try_apply(&yaml).await;
        assert!(
            !output.success,
            "{case}: the API server accepted the object: {}",
            output.stdout.trim()
        );
        let error = output.stderr;
        for text in expected {
            assert!(
                error.contains(text),
                "{case}: kubectl's error lacks {text:?}: {error}"
            );
        }
    }

    let key = Credential::generate();
    let invalid_keys = [
        (
            "keyHash that is not sha256 hex",
            "keyHash: \"md5:0123456789abcdef\"".to_owned(),
            vec!["spec.keyHash", "should match"],
        ),
        (
            "current hash also listed as previous",
            format!(
                "keyHash: \"{hash}\"\n  previousKeyHashes:\n    - hash: \"{hash}\"\n      expiresAt: \"2030-01-01T00:00:00Z\"",
                hash = key.key_hash()
            ),
            vec!["previousKeyHashes must not contain the current keyHash"],
        ),
        (
            "unknown scope",
            format!("keyHash: \"{}\"\n  scope: admin", key.key_hash()),
            vec!["spec.scope", "Unsupported value"],
        ),
    ];
    for (case, spec, expected) in invalid_keys {
        let yaml = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: invalid\n  namespace: {ns}\nspec:\n  {spec}\n"
        );
        let output = scenario.try_apply(&yaml).await;
        assert!(
            !output.success,
            "{case}: the API server accepted the object: {}",
            output.stdout.trim()
        );
        let error = output.stderr;
        for text in expected {
            assert!(
                error.contains(text),
                "{case}: kubectl's error lacks {text:?}: {error}"
            );
        }
    }

    let stored = scenario
        .suite
        .kubectl
        .ok(
            &["get", "gatewayroutes,apikeys", "-n", ns, "-o", "name"],
            None,
        )
        .await;
    assert_eq!(stored.trim(), "", "rejected objects were stored");
}
