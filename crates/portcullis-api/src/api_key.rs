use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::gateway_route::conditions_schema;

/// Desired state of an API key. Only the SHA-256 of the key is stored; the
/// plaintext never reaches the cluster.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "ApiKey",
    namespaced,
    status = "ApiKeyStatus",
    shortname = "apikey",
    category = "portcullis",
    doc = "A hashed API key that may invoke routes of its namespace.",
    printcolumn = r#"{"name":"Scope","type":"string","jsonPath":".spec.scope"}"#,
    printcolumn = r#"{"name":"Active","type":"boolean","jsonPath":".spec.active"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Fingerprint","type":"string","jsonPath":".status.fingerprint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.previousKeyHashes) || self.previousKeyHashes.all(p, p.hash != self.keyHash)"
).message("previousKeyHashes must not contain the current keyHash").field_path(".previousKeyHashes"))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySpec {
    /// `sha256:` followed by 64 lowercase hex digits of the key's SHA-256.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub key_hash: String,

    /// Earlier hashes still accepted until their `expiresAt`, so clients can
    /// move to a rotated key without downtime.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub previous_key_hashes: Vec<PreviousKeyHash>,

    /// `invoke` keys call routes; `deploy` keys are rejected with 403 on
    /// every route.
    #[serde(default)]
    pub scope: KeyScope,

    /// `false` revokes the key at once.
    #[serde(default = "default_true")]
    pub active: bool,

    /// RFC 3339 time after which the key is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,

    /// Free text for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

/// A superseded key hash that stays valid until `expiresAt`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousKeyHash {
    /// `sha256:` followed by 64 lowercase hex digits.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub hash: String,
    /// RFC 3339 time after which this hash is rejected.
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: String,
}

/// Permission level of a key.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum KeyScope {
    /// Calls routes.
    #[default]
    Invoke,
    /// Reserved for deployment tooling; never accepted by a route.
    Deploy,
}

/// Observed state of an API key. Holds nothing secret: the fingerprint is
/// the first 8 hex digits of the hash.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// First 8 hex digits of `keyHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Names of the routes in this namespace that list the key in
    /// `allowedApiKeyIds`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referenced_by: Vec<String>,
    /// `Ready` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

fn default_true() -> bool {
    true
}
