//! The immutable routing snapshot served by the data plane.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use portcullis_api::{EventFormat, KeyScope};

use crate::key_hash::KeyHash;
use crate::path::{PathError, contains_encoded_slash, normalize_request_path};

/// Everything the data plane needs to serve requests, compiled once per
/// configuration change and never mutated afterwards (apart from the
/// round-robin cursor of each backend).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Monotonic number of this snapshot, set when it is installed.
    pub generation: u64,
    /// True once the source delivered a complete view of keys and routes.
    /// Until then protected routes fail closed with 503.
    pub synced: bool,
    pub(crate) tenants: HashMap<String, RouteTable>,
    pub(crate) hosts: HashMap<String, RouteTable>,
    pub(crate) keys: HashMap<KeyHash, KeyGrant>,
    pub(crate) route_count: usize,
}

/// Routes of one tenant, or of one custom host, indexed by path.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    pub(crate) router: matchit::Router<Vec<Arc<RouteSpec>>>,
    /// The same routes in insertion order, for summaries.
    pub(crate) routes: Vec<Arc<RouteSpec>>,
}

/// One compiled GatewayRoute.
#[derive(Debug)]
pub struct RouteSpec {
    /// Namespace, which is the tenant.
    pub namespace: String,
    /// GatewayRoute name.
    pub name: String,
    /// Stable 64-bit identity of `namespace/name`, used to key runtime state
    /// such as rate-limit counters across snapshots.
    pub id: u64,
    /// Method to match, or `None` for `ANY`.
    pub method: Option<http::Method>,
    /// Path pattern as written in the resource.
    pub path: String,
    /// Authentication required before the function is invoked.
    pub auth: AuthPolicy,
    /// Ready endpoints of the target Service port.
    pub backend: Backend,
    /// Delivery format of requests to the function.
    pub event_format: EventFormat,
    /// Requests per minute per client IP.
    pub rate_limit: Option<u32>,
    /// CORS settings, present only when enabled.
    pub cors: Option<CorsPolicy>,
    /// Upstream timeout.
    pub timeout: Duration,
}

/// Authentication required by a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthPolicy {
    /// Public route.
    None,
    /// `X-Api-Key`, optionally restricted to the named ApiKeys.
    ApiKey {
        /// Names of the ApiKeys allowed to call the route; `None` allows any
        /// active invoke key of the namespace and the session fallback.
        allowlist: Option<Vec<String>>,
    },
    /// `Authorization: Bearer` session of the same tenant.
    Bearer,
}

impl AuthPolicy {
    /// Returns true for routes that need a credential.
    pub fn is_protected(&self) -> bool {
        !matches!(self, AuthPolicy::None)
    }
}

/// CORS behavior of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Allowed origins; empty allows any origin.
    pub allowed_origins: Vec<String>,
    /// Seconds a preflight response may be cached.
    pub max_age_seconds: u32,
}

impl CorsPolicy {
    /// Returns the `Access-Control-Allow-Origin` value for a request origin,
    /// or `None` when the origin is not allowed.
    pub fn allow_origin<'a>(&'a self, origin: Option<&'a str>) -> Option<&'a str> {
        if self.allowed_origins.is_empty() {
            return Some("*");
        }
        let origin = origin?;
        self.allowed_origins
            .iter()
            .find(|allowed| allowed.as_str() == origin || allowed.as_str() == "*")
            .map(|_| origin)
    }
}

/// The ready endpoints of a route's target, with a round-robin cursor.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port` for logs and metrics.
    pub service: String,
    /// Ready endpoint addresses; empty means 503.
    pub endpoints: Vec<SocketAddr>,
    cursor: AtomicUsize,
}

impl Backend {
    /// Creates a backend over a fixed endpoint list.
    pub fn new(service: String, endpoints: Vec<SocketAddr>) -> Self {
        Backend {
            service,
            endpoints,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Picks the next endpoint in round-robin order.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let turn = self.cursor.fetch_add(1, Ordering::Relaxed);
        Some(self.endpoints[turn % self.endpoints.len()])
    }
}

/// Grant of one key hash: the key, and for a superseded hash the time it
/// stops being accepted.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    /// The ApiKey the hash belongs to.
    pub key: Arc<KeyInfo>,
    /// For an entry of `previousKeyHashes`, when the hash stops working.
    pub hash_expires_at: Option<DateTime<Utc>>,
}

/// The state of one ApiKey that matters per request.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Namespace of the key.
    pub namespace: String,
    /// ApiKey name, reported as the principal `api-key:<name>`.
    pub name: String,
    /// Invoke or deploy.
    pub scope: KeyScope,
    /// False once revoked.
    pub active: bool,
    /// When the key stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A request resolved to one route.
#[derive(Debug)]
pub struct RouteMatch<'s> {
    /// The matched route.
    pub route: &'s Arc<RouteSpec>,
    /// Captured path parameters, percent-encoding kept as sent.
    pub params: Vec<(String, String)>,
    /// Path the function receives: the request path without the
    /// `/gw/{tenant}` prefix.
    pub upstream_path: String,
}

/// Reason a request matched no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchError {
    /// No route has this path.
    NotFound,
    /// Routes exist for the path, but not for this method.
    MethodNotAllowed {
        /// Methods that the path accepts, for the `Allow` header.
        allow: Vec<String>,
    },
    /// A dot segment, a bad percent-encoding or an encoded `/` in a
    /// captured parameter.
    BadPath(String),
}

impl Snapshot {
    /// Looks up a key by the hash of the presented value.
    pub fn key(&self, hash: &KeyHash) -> Option<&KeyGrant> {
        self.keys.get(hash)
    }

    /// Number of routes served.
    pub fn route_count(&self) -> usize {
        self.route_count
    }

    /// Number of key hashes, current and previous, that can authenticate.
    pub fn key_hash_count(&self) -> usize {
        self.keys.len()
    }

    /// Resolves a request to a route.
    ///
    /// A request on a custom host is first matched against that host's
    /// routes; a path starting with `/gw/{tenant}` is matched against the
    /// tenant's routes on any host. `method` of `None` skips the method
    /// check, which CORS preflights use to find their route by the
    /// requested method instead.
    pub fn resolve(
        &self,
        host: Option<&str>,
        raw_path: &str,
        method: &http::Method,
    ) -> Result<RouteMatch<'_>, MatchError> {
        let path = normalize_request_path(raw_path).map_err(bad_path)?;

        let mut result = Err(MatchError::NotFound);
        if let Some(table) = host.and_then(|h| self.hosts.get(h)) {
            result = table.resolve(&path, method, &path);
        }
        if matches!(result, Err(MatchError::NotFound))
            && let Some((tenant, rest)) = split_tenant_prefix(&path)
            && let Some(table) = self.tenants.get(tenant)
        {
            result = table.resolve(rest, method, rest);
        }
        result
    }
}

fn bad_path(error: PathError) -> MatchError {
    MatchError::BadPath(error.to_string())
}

/// Splits `/gw/{tenant}{rest}` into the tenant and the rest (`/` when empty).
fn split_tenant_prefix(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/gw/")?;
    match after.find('/') {
        Some(slash) => Some((&after[..slash], &after[slash..])),
        None => Some((after, "/")),
    }
}

impl RouteTable {
    fn resolve(
        &self,
        path: &str,
        method: &http::Method,
        upstream_path: &str,
    ) -> Result<RouteMatch<'_>, MatchError> {
        let matched = self.router.at(path).map_err(|_| MatchError::NotFound)?;

        let mut params = Vec::new();
        for (name, value) in matched.params.iter() {
            if contains_encoded_slash(value) {
                return Err(MatchError::BadPath(format!(
                    "parameter `{name}` contains an encoded `/`"
                )));
            }
            params.push((name.to_owned(), value.to_owned()));
        }

        let routes = matched.value;
        let route = routes
            .iter()
            .find(|r| r.method.as_ref() == Some(method))
            .or_else(|| routes.iter().find(|r| r.method.is_none()));
        match route {
            Some(route) => Ok(RouteMatch {
                route,
                params,
                upstream_path: upstream_path.to_owned(),
            }),
            None => Err(MatchError::MethodNotAllowed {
                allow: routes
                    .iter()
                    .filter_map(|r| r.method.as_ref().map(|m| m.to_string()))
                    .collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_prefix_split() {
        assert_eq!(split_tenant_prefix("/gw/acme/x/y"), Some(("acme", "/x/y")));
        assert_eq!(split_tenant_prefix("/gw/acme"), Some(("acme", "/")));
        assert_eq!(split_tenant_prefix("/other"), None);
    }

    #[test]
    fn backend_round_robin() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let backend = Backend::new("ns/s:1".into(), vec![a, b]);
        assert_eq!(backend.pick(), Some(a));
        assert_eq!(backend.pick(), Some(b));
        assert_eq!(backend.pick(), Some(a));
        assert_eq!(Backend::new("ns/s:1".into(), vec![]).pick(), None);
    }

    #[test]
    fn cors_origin_allowlist() {
        let any = CorsPolicy {
            allowed_origins: vec![],
            max_age_seconds: 0,
        };
        assert_eq!(any.allow_origin(Some("https://a.example")), Some("*"));
        let listed = CorsPolicy {
            allowed_origins: vec!["https://a.example".into()],
            max_age_seconds: 0,
        };
        assert_eq!(
            listed.allow_origin(Some("https://a.example")),
            Some("https://a.example")
        );
        assert_eq!(listed.allow_origin(Some("https://b.example")), None);
        assert_eq!(listed.allow_origin(None), None);
    }
}

/// A plain, ordered view of a snapshot for golden tests and the admin
/// endpoint. Keys appear by fingerprint only.
#[derive(Debug, serde::Serialize)]
pub struct SnapshotSummary {
    /// Routes served under `/gw/{tenant}`, by tenant.
    pub tenants: std::collections::BTreeMap<String, Vec<String>>,
    /// Routes served on custom hosts, by host.
    pub hosts: std::collections::BTreeMap<String, Vec<String>>,
    /// One line per accepted key hash.
    pub keys: Vec<String>,
}

impl Snapshot {
    /// Summarizes the snapshot: one line per route and per key hash.
    pub fn summary(&self) -> SnapshotSummary {
        let describe = |table: &RouteTable| {
            let mut lines: Vec<String> = table
                .routes
                .iter()
                .map(|route| {
                    format!(
                        "{} {} -> {}/{} auth={} backend={} endpoints={:?}{}{}",
                        route.method.as_ref().map_or("ANY", |m| m.as_str()),
                        route.path,
                        route.namespace,
                        route.name,
                        describe_auth(&route.auth),
                        route.backend.service,
                        route.backend.endpoints,
                        route
                            .rate_limit
                            .map(|l| format!(" rateLimit={l}"))
                            .unwrap_or_default(),
                        if route.cors.is_some() { " cors" } else { "" },
                    )
                })
                .collect();
            lines.sort();
            lines
        };
        let mut keys: Vec<String> = self
            .keys
            .iter()
            .map(|(hash, grant)| {
                format!(
                    "{} -> {}/{} scope={:?} active={}{}{}",
                    hash.fingerprint(),
                    grant.key.namespace,
                    grant.key.name,
                    grant.key.scope,
                    grant.key.active,
                    grant
                        .key
                        .expires_at
                        .map(|t| format!(" expiresAt={}", t.to_rfc3339()))
                        .unwrap_or_default(),
                    grant
                        .hash_expires_at
                        .map(|t| format!(" previousUntil={}", t.to_rfc3339()))
                        .unwrap_or_default(),
                )
            })
            .collect();
        keys.sort();
        SnapshotSummary {
            tenants: self
                .tenants
                .iter()
                .map(|(k, v)| (k.clone(), describe(v)))
                .collect(),
            hosts: self
                .hosts
                .iter()
                .map(|(k, v)| (k.clone(), describe(v)))
                .collect(),
            keys,
        }
    }
}

fn describe_auth(auth: &AuthPolicy) -> String {
    match auth {
        AuthPolicy::None => "none".into(),
        AuthPolicy::ApiKey { allowlist: None } => "api-key".into(),
        AuthPolicy::ApiKey {
            allowlist: Some(ids),
        } => format!("api-key[{}]", ids.join(",")),
        AuthPolicy::Bearer => "bearer".into(),
    }
}
