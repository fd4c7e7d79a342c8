//! `compile`: resources in, snapshot and report out. No IO.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use portcullis_api::{ApiKey, AuthType, GatewayRoute, GatewayRouteSpec};

use crate::Compiled;
use crate::key_hash::KeyHash;
use crate::path::RoutePattern;
use crate::report::{Check, KeyReport, Report, RouteReport};
use crate::snapshot::{
    AuthPolicy, Backend, CorsPolicy, KeyGrant, KeyInfo, RouteSpec, RouteTable, Snapshot,
};

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The objects a compile reads.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// GatewayRoutes of every watched namespace.
    pub routes: Vec<GatewayRoute>,
    /// ApiKeys of every watched namespace.
    pub keys: Vec<ApiKey>,
    /// EndpointSlices of the target Services.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Services, in a cluster. `None` in a config directory, where
    /// `target.port` is matched directly against EndpointSlice ports.
    pub services: Option<Vec<Service>>,
}

/// Inputs of a compile that are not resources.
#[derive(Debug, Clone, Copy)]
pub struct CompileOptions {
    /// Time used to report keys as expired. Requests check expiry again at
    /// their own time.
    pub now: DateTime<Utc>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { now: Utc::now() }
    }
}

/// Compiles resources into a snapshot and a report.
///
/// Objects are processed oldest first (creation time, then namespace and
/// name), so when two routes collide or two namespaces claim a host, the
/// older object wins and the newer one is reported.
pub fn compile(resources: &Resources, options: CompileOptions) -> Compiled {
    let mut report = Report::default();
    let mut snapshot = Snapshot::default();

    let key_names = compile_keys(resources, options, &mut snapshot, &mut report);
    let endpoints = EndpointIndex::new(resources);
    compile_routes(
        resources,
        &key_names,
        &endpoints,
        &mut snapshot,
        &mut report,
    );
    add_key_references(resources, &mut report);

    report.finish();
    Compiled { snapshot, report }
}

/// Names of the usable keys per namespace, for resolving allowlists.
type KeyNames = HashMap<String, BTreeSet<String>>;

fn compile_keys(
    resources: &Resources,
    options: CompileOptions,
    snapshot: &mut Snapshot,
    report: &mut Report,
) -> KeyNames {
    let mut names = KeyNames::new();
    let mut keys: Vec<&ApiKey> = resources.keys.iter().collect();
    keys.sort_by_key(|k| age_key(k.creation_timestamp().map(|t| t.0), *k));

    for key in keys {
        let namespace = key.namespace().unwrap_or_default();
        let name = key.name_any();
        let mut entry = KeyReport {
            namespace: namespace.clone(),
            name: name.clone(),
            generation: key.metadata.generation,
            ready: Check::pass("Ready", "key can authenticate requests"),
            fingerprint: None,
            referenced_by: Vec::new(),
        };

        match compile_key(key, &namespace, &name, snapshot, options) {
            Ok((hash, ready)) => {
                entry.fingerprint = Some(hash.fingerprint());
                entry.ready = ready;
                names.entry(namespace).or_default().insert(name);
            }
            Err(check) => entry.ready = check,
        }
        report.keys.push(entry);
    }
    names
}

fn compile_key(
    key: &ApiKey,
    namespace: &str,
    name: &str,
    snapshot: &mut Snapshot,
    options: CompileOptions,
) -> Result<(KeyHash, Check), Check> {
    let spec = &key.spec;
    let hash = KeyHash::parse(&spec.key_hash)
        .map_err(|e| Check::fail("InvalidKeyHash", format!("keyHash: {e}")))?;
    let expires_at = parse_time(spec.expires_at.as_deref())
        .map_err(|e| Check::fail("InvalidExpiry", format!("expiresAt: {e}")))?;

    let mut previous = Vec::new();
    for (index, entry) in spec.previous_key_hashes.iter().enumerate() {
        let old = KeyHash::parse(&entry.hash).map_err(|e| {
            Check::fail(
                "InvalidKeyHash",
                format!("previousKeyHashes[{index}].hash: {e}"),
            )
        })?;
        let until = parse_time(Some(&entry.expires_at)).map_err(|e| {
            Check::fail(
                "InvalidExpiry",
                format!("previousKeyHashes[{index}].expiresAt: {e}"),
            )
        })?;
        previous.push((old, until));
    }

    if snapshot.keys.contains_key(&hash) {
        return Err(Check::fail(
            "DuplicateKeyHash",
            "another ApiKey already has this keyHash; generate a new key for this one",
        ));
    }

    let info = Arc::new(KeyInfo {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        scope: spec.scope,
        active: spec.active,
        expires_at,
    });
    snapshot.keys.insert(
        hash,
        KeyGrant {
            key: info.clone(),
            hash_expires_at: None,
        },
    );
    // An old hash that is now someone's current hash stays with its owner.
    for (old, until) in previous {
        snapshot.keys.entry(old).or_insert(KeyGrant {
            key: info.clone(),
            hash_expires_at: until,
        });
    }

    let ready = if !spec.active {
        Check::fail("Revoked", "key is revoked (active: false)")
    } else if expires_at.is_some_and(|t| t <= options.now) {
        Check::fail("Expired", "key is past its expiresAt")
    } else {
        Check::pass("Ready", "key can authenticate requests")
    };
    Ok((hash, ready))
}

fn parse_time(text: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{t:?} is not an RFC 3339 time ({e})"))
    })
    .transpose()
}

/// Routes under construction: one router per tenant and per host, each
/// mapping a pattern to its group of routes (one per method).
#[derive(Default)]
struct TableBuilder {
    patterns: HashMap<String, Vec<Arc<RouteSpec>>>,
    router: matchit::Router<()>,
}

impl TableBuilder {
    /// Adds `route` under the router pattern `syntax`, or returns why it
    /// overlaps a route already in the table.
    fn add(&mut self, syntax: &str, route: &Arc<RouteSpec>) -> Result<(), String> {
        if let Some(group) = self.patterns.get_mut(syntax) {
            if let Some(other) = group
                .iter()
                .find(|o| o.method.is_none() || route.method.is_none() || o.method == route.method)
            {
                return Err(format!(
                    "route {} already serves {} {}",
                    other.name,
                    other.method.as_ref().map_or("ANY", |m| m.as_str()),
                    other.path
                ));
            }
            group.push(route.clone());
            return Ok(());
        }

        if let Err(error) = self.router.insert(syntax, ()) {
            // A failed insert may leave the router partly changed, so it is
            // rebuilt from the accepted patterns. Conflicts are rare, so the
            // common path stays one insert per pattern.
            self.rebuild_router();
            let owner = match &error {
                matchit::InsertError::Conflict { with } => self
                    .patterns
                    .get(with)
                    .and_then(|group| group.first())
                    .map(|other| format!("route {} ({})", other.name, other.path)),
                _ => None,
            };
            return Err(match owner {
                Some(owner) => format!("path overlaps {owner}"),
                None => format!("path cannot be routed ({error})"),
            });
        }
        self.patterns.insert(syntax.to_owned(), vec![route.clone()]);
        Ok(())
    }

    /// Takes back a route added by [`TableBuilder::add`].
    fn remove(&mut self, syntax: &str, route: &Arc<RouteSpec>) {
        let Some(group) = self.patterns.get_mut(syntax) else {
            return;
        };
        group.retain(|r| !Arc::ptr_eq(r, route));
        if group.is_empty() {
            self.patterns.remove(syntax);
            self.rebuild_router();
        }
    }

    fn rebuild_router(&mut self) {
        let mut router = matchit::Router::new();
        for syntax in self.patterns.keys() {
            router
                .insert(syntax.as_str(), ())
                .expect("accepted patterns do not conflict");
        }
        self.router = router;
    }

    fn build(self) -> RouteTable {
        let mut router = matchit::Router::new();
        let mut routes = Vec::new();
        for (syntax, group) in self.patterns {
            routes.extend(group.iter().cloned());
            router
                .insert(syntax, group)
                .expect("patterns were inserted once without conflict");
        }
        RouteTable { router, routes }
    }
}

fn compile_routes(
    resources: &Resources,
    key_names: &KeyNames,
    endpoints: &EndpointIndex<'_>,
    snapshot: &mut Snapshot,
    report: &mut Report,
) {
    let mut tenants: HashMap<String, TableBuilder> = HashMap::new();
    let mut hosts: HashMap<String, TableBuilder> = HashMap::new();
    let mut host_owner: HashMap<String, String> = HashMap::new();

    let mut routes: Vec<&GatewayRoute> = resources.routes.iter().collect();
    routes.sort_by_key(|r| age_key(r.creation_timestamp().map(|t| t.0), *r));

    for route in routes {
        let namespace = route.namespace().unwrap_or_default();
        let name = route.name_any();
        let mut entry = RouteReport {
            namespace: namespace.clone(),
            name: name.clone(),
            generation: route.metadata.generation,
            accepted: Check::pass("Accepted", "route is valid"),
            resolved_refs: Check::pass("ResolvedRefs", "all references resolved"),
            programmed: Check::pass("Programmed", "route is served"),
        };
        let spec = &route.spec;

        entry.resolved_refs = resolve_key_refs(spec, &namespace, key_names);
        let backend = match endpoints.resolve(&namespace, &spec.target) {
            Ok(addresses) => Backend::new(backend_name(&namespace, spec), addresses),
            Err(check) => {
                if entry.resolved_refs.status {
                    entry.resolved_refs = check;
                }
                Backend::new(backend_name(&namespace, spec), Vec::new())
            }
        };

        if !spec.enabled {
            entry.programmed = Check::fail("Disabled", "route is disabled (enabled: false)");
            report.routes.push(entry);
            continue;
        }

        let accepted = validate_route(spec).and_then(|pattern| {
            let compiled = Arc::new(route_spec(&namespace, &name, spec, &pattern, backend));
            let route_hosts = claim_hosts(spec, &namespace, &host_owner)?;
            let syntax = &pattern.router_syntax;
            let tenant = tenants.entry(namespace.clone()).or_default();
            tenant
                .add(syntax, &compiled)
                .map_err(|m| Check::fail("DuplicateRoute", m))?;
            // A host belongs to one namespace, so its table contains a subset of
            // the tenant's patterns and cannot conflict where the tenant's
            // table did not. The check stays for safety.
            let mut added: Vec<&String> = Vec::new();
            for host in &route_hosts {
                let table = hosts.entry(host.clone()).or_default();
                if let Err(message) = table.add(syntax, &compiled) {
                    tenant.remove(syntax, &compiled);
                    for earlier in added {
                        if let Some(table) = hosts.get_mut(earlier) {
                            table.remove(syntax, &compiled);
                        }
                    }
                    return Err(Check::fail(
                        "DuplicateRoute",
                        format!("host {host}: {message}"),
                    ));
                }
                added.push(host);
            }
            for host in route_hosts {
                host_owner.insert(host, namespace.clone());
            }
            snapshot.route_count += 1;
            Ok(compiled)
        });

        match accepted {
            Ok(compiled) if compiled.backend.endpoints.is_empty() => {
                entry.programmed = Check::fail(
                    "NoReadyEndpoints",
                    format!(
                        "route is served but answers 503 until {} has ready endpoints",
                        compiled.backend.service
                    ),
                );
            }
            Ok(_) => {}
            Err(check) => {
                entry.accepted = check;
                entry.programmed =
                    Check::fail("NotAccepted", "route is not served until it is accepted");
            }
        }
        report.routes.push(entry);
    }

    snapshot.tenants = tenants.into_iter().map(|(k, v)| (k, v.build())).collect();
    snapshot.hosts = hosts.into_iter().map(|(k, v)| (k, v.build())).collect();
}

/// Applies the cross-field rules that the CRD's CEL rules enforce at
/// admission, because a config directory has no admission step.
fn validate_route(spec: &GatewayRouteSpec) -> Result<RoutePattern, Check> {
    let pattern = RoutePattern::parse(&spec.path)
        .map_err(|e| Check::fail("InvalidPath", format!("path {:?}: {e}", spec.path)))?;
    if spec.allowed_api_key_ids.is_some() && spec.auth_type != AuthType::ApiKey {
        return Err(Check::fail(
            "InvalidSpec",
            "allowedApiKeyIds is only valid with authType api-key",
        ));
    }
    if !(1..=900).contains(&spec.timeout_seconds) {
        return Err(Check::fail(
            "InvalidSpec",
            format!(
                "timeoutSeconds is {}; it must be 1 to 900",
                spec.timeout_seconds
            ),
        ));
    }
    if spec.rate_limit == Some(0) {
        return Err(Check::fail("InvalidSpec", "rateLimit must be at least 1"));
    }
    if let IntOrString::Int(port) = spec.target.port
        && !(1..=65535).contains(&port)
    {
        return Err(Check::fail(
            "InvalidSpec",
            format!("target.port {port} is not a valid port number"),
        ));
    }
    Ok(pattern)
}

fn claim_hosts(
    spec: &GatewayRouteSpec,
    namespace: &str,
    host_owner: &HashMap<String, String>,
) -> Result<Vec<String>, Check> {
    let mut claimed = Vec::new();
    for host in spec.hosts.iter().flatten() {
        let host = host.to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ':', ' ']) {
            return Err(Check::fail(
                "InvalidSpec",
                format!("hosts: {host:?} is not a host name"),
            ));
        }
        if let Some(owner) = host_owner.get(&host)
            && owner != namespace
        {
            return Err(Check::fail(
                "HostConflict",
                format!("host {host} is already claimed by namespace {owner}"),
            ));
        }
        if !claimed.contains(&host) {
            claimed.push(host);
        }
    }
    Ok(claimed)
}

fn resolve_key_refs(spec: &GatewayRouteSpec, namespace: &str, key_names: &KeyNames) -> Check {
    let Some(allowlist) = &spec.allowed_api_key_ids else {
        return Check::pass("ResolvedRefs", "all references resolved");
    };
    let known = key_names.get(namespace);
    let missing: Vec<&str> = allowlist
        .iter()
        .filter(|id| !known.is_some_and(|k| k.contains(*id)))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Check::pass("ResolvedRefs", "all references resolved")
    } else {
        Check::fail(
            "ApiKeyNotFound",
            format!(
                "allowedApiKeyIds names ApiKeys that do not exist or are invalid in namespace {namespace}: {}",
                missing.join(", ")
            ),
        )
    }
}

fn route_spec(
    namespace: &str,
    name: &str,
    spec: &GatewayRouteSpec,
    pattern: &RoutePattern,
    backend: Backend,
) -> RouteSpec {
    let auth = match spec.auth_type {
        AuthType::None => AuthPolicy::None,
        AuthType::ApiKey => AuthPolicy::ApiKey {
            allowlist: spec.allowed_api_key_ids.clone(),
        },
        AuthType::Bearer => AuthPolicy::Bearer,
    };
    let cors = spec
        .cors
        .as_ref()
        .filter(|c| c.enabled)
        .map(|c| CorsPolicy {
            allowed_origins: c.allowed_origins.clone(),
            max_age_seconds: c.max_age_seconds.unwrap_or(600),
        });

    RouteSpec {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        id: route_id(namespace, name),
        method: spec.method.as_http(),
        path: pattern.source.clone(),
        auth,
        backend,
        event_format: spec.event_format,
        rate_limit: spec.rate_limit,
        cors,
        timeout: Duration::from_secs(u64::from(spec.timeout_seconds)),
    }
}

fn route_id(namespace: &str, name: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    (namespace, name).hash(&mut hasher);
    hasher.finish()
}

fn backend_name(namespace: &str, spec: &GatewayRouteSpec) -> String {
    let port = match &spec.target.port {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    };
    format!("{namespace}/{}:{port}", spec.target.service)
}

fn add_key_references(resources: &Resources, report: &mut Report) {
    let mut references: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for route in &resources.routes {
        let namespace = route.namespace().unwrap_or_default();
        for id in route.spec.allowed_api_key_ids.iter().flatten() {
            references
                .entry((namespace.clone(), id.clone()))
                .or_default()
                .insert(route.name_any());
        }
    }
    for key in &mut report.keys {
        if let Some(routes) = references.remove(&(key.namespace.clone(), key.name.clone())) {
            key.referenced_by = routes.into_iter().collect();
        }
    }
}

/// Sort key that puts older objects first. Objects without a creation time
/// (files in a config directory) sort by namespace and name.
fn age_key<K: ResourceExt>(
    created: Option<k8s_openapi::jiff::Timestamp>,
    object: &K,
) -> (i64, String, String) {
    (
        created.map_or(0, |t| t.as_second()),
        object.namespace().unwrap_or_default(),
        object.name_any(),
    )
}

/// Ready endpoints per Service, indexed from EndpointSlices.
struct EndpointIndex<'r> {
    slices: HashMap<(String, String), Vec<&'r EndpointSlice>>,
    services: Option<HashMap<(String, String), &'r Service>>,
}

impl<'r> EndpointIndex<'r> {
    fn new(resources: &'r Resources) -> Self {
        let mut slices: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for slice in &resources.endpoint_slices {
            if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
                slices
                    .entry((slice.namespace().unwrap_or_default(), service.clone()))
                    .or_default()
                    .push(slice);
            }
        }
        let services = resources.services.as_ref().map(|services| {
            services
                .iter()
                .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s))
                .collect()
        });
        EndpointIndex { slices, services }
    }

    /// Returns the ready addresses of a route's target, or the failed
    /// `ResolvedRefs` verdict.
    fn resolve(
        &self,
        namespace: &str,
        target: &portcullis_api::Target,
    ) -> Result<Vec<SocketAddr>, Check> {
        let key = (namespace.to_owned(), target.service.clone());
        let slices = self.slices.get(&key).map(Vec::as_slice).unwrap_or(&[]);

        let port = match &self.services {
            Some(services) => {
                let service = services.get(&key).ok_or_else(|| {
                    Check::fail(
                        "ServiceNotFound",
                        format!("Service {namespace}/{} not found", target.service),
                    )
                })?;
                SlicePort::Name(service_port_name(service, &target.port).ok_or_else(|| {
                    Check::fail(
                        "PortNotFound",
                        format!(
                            "Service {namespace}/{} has no port {}",
                            target.service,
                            port_text(&target.port)
                        ),
                    )
                })?)
            }
            None => {
                if slices.is_empty() {
                    return Err(Check::fail(
                        "ServiceNotFound",
                        format!(
                            "no EndpointSlice in namespace {namespace} is labeled {SERVICE_NAME_LABEL}={}",
                            target.service
                        ),
                    ));
                }
                match &target.port {
                    IntOrString::Int(n) => SlicePort::Number(*n),
                    IntOrString::String(s) => SlicePort::Name(s.clone()),
                }
            }
        };

        let mut addresses = BTreeSet::new();
        let mut port_found = false;
        for slice in slices {
            let Some(number) = slice_port_number(slice, &port) else {
                continue;
            };
            port_found = true;
            for endpoint in slice.endpoints.iter().flatten() {
                let conditions = endpoint.conditions.as_ref();
                // A missing `ready` means ready, as for kube-proxy.
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
                if !ready || terminating {
                    continue;
                }
                for address in &endpoint.addresses {
                    if let Ok(ip) = address.parse::<IpAddr>() {
                        addresses.insert(SocketAddr::new(ip, number));
                    }
                }
            }
        }
        if !slices.is_empty() && !port_found && self.services.is_none() {
            return Err(Check::fail(
                "PortNotFound",
                format!(
                    "no EndpointSlice of {namespace}/{} has port {}",
                    target.service,
                    port_text(&target.port)
                ),
            ));
        }
        Ok(addresses.into_iter().collect())
    }
}

enum SlicePort {
    Name(String),
    Number(i32),
}

fn service_port_name(service: &Service, port: &IntOrString) -> Option<String> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    let found = ports.iter().find(|p| match port {
        IntOrString::Int(n) => p.port == *n,
        IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
    })?;
    Some(found.name.clone().unwrap_or_default())
}

fn slice_port_number(slice: &EndpointSlice, port: &SlicePort) -> Option<u16> {
    let ports = slice.ports.as_ref()?;
    let found = ports.iter().find(|p| match port {
        SlicePort::Name(name) => p.name.as_deref().unwrap_or("") == name,
        SlicePort::Number(n) => p.port == Some(*n),
    })?;
    u16::try_from(found.port?).ok()
}

fn port_text(port: &IntOrString) -> String {
    match port {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}
