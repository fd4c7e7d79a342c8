//! Custom resource types of the `portcullis.dev/v1alpha1` API.
//!
//! The types carry no IO. Admission-time validation lives in the schema:
//! OpenAPI constraints on single fields and CEL rules for cross-field rules.
//! What admission cannot check (collisions, missing references) is reported
//! by the compiler in each object's `status`.

#![deny(missing_docs)]

mod api_key;
mod gateway_route;

pub use api_key::{ApiKey, ApiKeySpec, ApiKeyStatus, KeyScope, PreviousKeyHash};
pub use gateway_route::{
    AuthType, Cors, EventFormat, GatewayRoute, GatewayRouteSpec, GatewayRouteStatus, Method, Target,
};

use kube::CustomResourceExt;

/// API group of every Portcullis resource.
pub const GROUP: &str = "portcullis.dev";
/// API version served by this release.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as it appears in manifests.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";

/// Renders both CustomResourceDefinitions as one multi-document YAML stream.
///
/// `manifests/crds.yaml` and the Helm chart's `crds/` folder hold exactly this output.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in [GatewayRoute::crd(), ApiKey::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD always serializes to YAML"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_manifest_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../manifests/crds.yaml");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, crds_yaml()).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == crds_yaml(),
            "manifests/crds.yaml is stale: run `cargo run -p portcullis -- crds > manifests/crds.yaml` or `UPDATE_GOLDEN=1 cargo test -p portcullis-api`"
        );
    }

    #[test]
    fn route_defaults_close_the_route() {
        let spec: GatewayRouteSpec =
            serde_yaml::from_str("method: GET\npath: /x\ntarget: {service: s, port: 8080}\n")
                .unwrap();
        assert_eq!(spec.auth_type, AuthType::ApiKey);
        assert_eq!(spec.timeout_seconds, 5);
        assert_eq!(spec.event_format, EventFormat::Http);
        assert!(spec.enabled);
    }

    #[test]
    fn crd_carries_cel_rules_and_columns() {
        let yaml = crds_yaml();
        assert!(yaml.contains("allowedApiKeyIds is only valid with authType api-key"));
        assert!(yaml.contains("x-kubernetes-validations"));
        assert!(yaml.contains("name: Fingerprint"));
        assert!(yaml.contains("name: Ready"));
    }
}
