use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Desired state of a route: which requests it matches, how callers
/// authenticate, and which Service receives the traffic.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "GatewayRoute",
    namespaced,
    status = "GatewayRouteStatus",
    shortname = "gwr",
    category = "portcullis",
    doc = "An HTTP route to a function Service, authenticated before the function runs.",
    printcolumn = r#"{"name":"Method","type":"string","jsonPath":".spec.method"}"#,
    printcolumn = r#"{"name":"Path","type":"string","jsonPath":".spec.path"}"#,
    printcolumn = r#"{"name":"Auth","type":"string","jsonPath":".spec.authType"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.target.service"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.allowedApiKeyIds) || self.authType == 'api-key'"
).message("allowedApiKeyIds is only valid with authType api-key").field_path(".allowedApiKeyIds"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.hosts) || self.hosts.all(h, self.hosts.exists_one(x, x == h))"
).message("hosts must not contain duplicates").field_path(".hosts"))]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouteSpec {
    /// HTTP method matched by the route, or `ANY`.
    pub method: Method,

    /// Path pattern starting with `/`. `:name` captures one segment and
    /// `*name` captures the rest of the path (last segment only).
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[^?#\s]*$"))]
    pub path: String,

    /// Authentication required from callers. The default, `api-key`, keeps
    /// a route closed unless it is declared public.
    #[serde(default)]
    pub auth_type: AuthType,

    /// Names of ApiKeys in the same namespace that may call the route.
    /// Unset means any active invoke key of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 253)))]
    pub allowed_api_key_ids: Option<Vec<String>>,

    /// Function Service that receives the traffic.
    pub target: Target,

    /// `http` proxies the request as is; `simple` sends a JSON event.
    #[serde(default)]
    pub event_format: EventFormat,

    /// Requests per minute per client IP, per replica. Unset is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000), extend("format" = "int32"))]
    pub rate_limit: Option<u32>,

    /// Cross-origin settings. The gateway responds to preflights itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,

    /// Upstream timeout in seconds.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 900), extend("format" = "int32"))]
    pub timeout_seconds: u32,

    /// Custom domains that serve the route at its path, without the
    /// `/gw/{namespace}` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 16),
        inner(
            length(min = 1, max = 253),
            regex(
                pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            )
        )
    )]
    pub hosts: Option<Vec<String>>,

    /// `false` removes the route from the data plane without deleting it.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// HTTP method of a route.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    /// Matches every method.
    Any,
}

impl Method {
    /// Returns the `http` method, or `None` for `ANY`.
    pub fn as_http(self) -> Option<http::Method> {
        use http::Method as M;
        Some(match self {
            Method::Get => M::GET,
            Method::Head => M::HEAD,
            Method::Post => M::POST,
            Method::Put => M::PUT,
            Method::Patch => M::PATCH,
            Method::Delete => M::DELETE,
            Method::Options => M::OPTIONS,
            Method::Any => return None,
        })
    }
}

/// Authentication scheme of a route.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AuthType {
    /// Public route: every caller is the anonymous principal.
    None,
    /// `X-Api-Key` header checked against the namespace's ApiKeys.
    #[default]
    ApiKey,
    /// `Authorization: Bearer` platform session of the same tenant.
    Bearer,
}

/// Delivery format of requests to the function.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum EventFormat {
    /// The request is proxied as is.
    #[default]
    Http,
    /// The request is turned into a JSON event POSTed to the function.
    Simple,
}

/// Function Service that receives a route's traffic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
pub struct Target {
    /// Name of a Service in the route's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub service: String,
    /// Port number or name of a Service port.
    pub port: IntOrString,
}

/// Cross-origin resource sharing settings of a route.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Respond to preflights at the gateway and add CORS headers to responses.
    #[serde(default)]
    pub enabled: bool,
    /// Origins allowed to call the route. Unset or empty allows any origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub allowed_origins: Vec<String>,
    /// Seconds a browser may cache a preflight response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400), extend("format" = "int32"))]
    pub max_age_seconds: Option<u32>,
}

/// Observed state of a route, in Gateway API condition form
/// (`Accepted`, `ResolvedRefs`, `Programmed`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouteStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Latest observations of the route's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

fn default_timeout_seconds() -> u32 {
    5
}

fn default_true() -> bool {
    true
}

/// Schema of a condition list, keyed by `type` so server-side apply merges
/// conditions one by one.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}
