//! The request pipeline, in the order the gateway runs it:
//! route match, CORS preflight, authentication, rate limit, forward.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use portcullis_api::EventFormat;
use portcullis_compile::{MatchError, RouteMatch, RouteSpec, Snapshot};

use crate::Gateway;
use crate::auth::{self, Authenticated, Principal};
use crate::body::{self, Body};
use crate::client_ip::client_ip;
use crate::denial::Denial;
use crate::event::{self, Event, EventPrincipal, RequestContext};
use crate::forward::{self, Upstream};
use crate::rate_limit::RateDecision;
use crate::secret::redact_query;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_PORTCULLIS_PRINCIPAL: HeaderName = HeaderName::from_static("x-portcullis-principal");
const X_PORTCULLIS_TENANT: HeaderName = HeaderName::from_static("x-portcullis-tenant");

/// Headers a browser may send on a CORS request to a route.
const CORS_ALLOWED_HEADERS: &str = "X-Api-Key, Authorization, Content-Type, X-Request-Id";

/// Facts about one request, for the access log and metrics.
#[derive(Default)]
struct Outcome {
    /// Set when the gateway itself produced a successful response.
    answered_by_gateway: Option<&'static str>,
    route: Option<Arc<RouteSpec>>,
    principal: Option<Principal>,
    auth_result: Option<&'static str>,
    client: Option<IpAddr>,
    cors_origin: Option<HeaderValue>,
    upstream_seconds: Option<f64>,
}

/// Handles one request. Client input never causes a panic, because every
/// failure is a [`Denial`] with its own status.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let snapshot = gateway.snapshot();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(redact_query);
    let request_id = request_id(request.headers());

    let mut outcome = Outcome::default();
    let result = run(
        &gateway,
        &snapshot,
        request,
        peer,
        &request_id,
        &mut outcome,
    )
    .await;
    let (mut response, label) = match result {
        Ok(response) => (response, outcome.answered_by_gateway.unwrap_or("forwarded")),
        Err(denial) => {
            let label = denial.label();
            if denial.before_invoke() {
                let (tenant, route) = route_labels(&outcome);
                gateway
                    .metrics
                    .rejected_before_invoke_total
                    .with_label_values(&[tenant, route, label])
                    .inc();
            }
            (denial.into_response(), label)
        }
    };

    if let Some(origin) = outcome.cors_origin.take() {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }

    record(&gateway, &outcome, response.status(), label, started);
    tracing::info!(
        target: "portcullis::access",
        request_id = %request_id,
        method = %method,
        path = %path,
        query = query.as_deref().unwrap_or(""),
        status = response.status().as_u16(),
        outcome = label,
        tenant = outcome.route.as_ref().map_or("", |r| r.namespace.as_str()),
        route = outcome.route.as_ref().map_or("", |r| r.name.as_str()),
        principal = outcome.principal.as_ref().map(Principal::header_value).unwrap_or_default(),
        auth = outcome.auth_result.unwrap_or(""),
        client_ip = %outcome.client.unwrap_or(peer.ip()),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

async fn run(
    gateway: &Gateway,
    snapshot: &Snapshot,
    request: Request<Incoming>,
    peer: SocketAddr,
    request_id: &str,
    outcome: &mut Outcome,
) -> Result<Response<Body>, Denial> {
    let host = request_host(&request);
    let is_preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

    // 1. Route match. A preflight is matched by its requested method.
    let match_method = if is_preflight {
        requested_method(request.headers())?
    } else {
        request.method().clone()
    };
    let matched = snapshot
        .resolve(host.as_deref(), request.uri().path(), &match_method)
        .map_err(|error| match error {
            // Before the first full sync an unknown path may be a route that
            // has not arrived yet, and 503 asks the client to retry.
            MatchError::NotFound if !snapshot.synced => Denial::NotReady,
            other => match_denial(other),
        })?;
    let route = matched.route.clone();
    outcome.route = Some(route.clone());
    if let Some(cors) = &route.cors {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        outcome.cors_origin = cors
            .allow_origin(origin)
            .and_then(|o| HeaderValue::from_str(o).ok());
    }

    // 2. CORS preflight, handled without credentials.
    if is_preflight && route.cors.is_some() {
        outcome.answered_by_gateway = Some("preflight");
        return Ok(preflight(&route, &match_method));
    }

    // 3. Authentication, before anything touches a function.
    let authenticated = match auth::authenticate(
        snapshot,
        &route,
        request.headers(),
        gateway.sessions(),
        Utc::now(),
    )
    .await
    {
        Ok(authenticated) => {
            outcome.auth_result = Some(match authenticated.principal {
                Principal::Anonymous => "anonymous",
                Principal::ApiKey(_) => "api_key",
                Principal::User(_) => "session",
            });
            authenticated
        }
        Err(rejection) => {
            outcome.auth_result = Some(rejection.reason);
            count_auth(gateway, &route, rejection.reason);
            return Err(rejection.denial);
        }
    };
    count_auth(gateway, &route, outcome.auth_result.unwrap_or(""));
    outcome.principal = Some(authenticated.principal.clone());

    // 4. Rate limit per route and client address.
    let client = client_ip(peer.ip(), request.headers(), gateway.trusted_proxies());
    outcome.client = Some(client);
    if let Some(limit) = route.rate_limit {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if gateway.limiter().check(route.id, client, limit, now) == RateDecision::Limited {
            return Err(Denial::RateLimited);
        }
    }

    // 5. Forward to one ready endpoint.
    let endpoint = route.backend.pick().ok_or(Denial::NoEndpoint)?;
    let (mut parts, incoming) = request.into_parts();
    prepare_headers(
        &mut parts.headers,
        &authenticated,
        &route,
        request_id,
        peer,
        host.as_deref(),
    );
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{}?{query}", matched.upstream_path),
        None => matched.upstream_path.clone(),
    };
    let upstream = Upstream {
        endpoint,
        path_and_query: &path_and_query,
        timeout: route.timeout,
    };

    let response = match route.event_format {
        EventFormat::Http => {
            let request = Request::from_parts(parts, incoming.map_err(Into::into).boxed());
            let (response, elapsed) = forward::send(gateway.client(), upstream, request).await?;
            outcome.upstream_seconds = Some(elapsed.as_secs_f64());
            forward::relay(response)
        }
        EventFormat::Simple => {
            let event = build_event(&matched, &parts, incoming, &authenticated, request_id).await?;
            let request = event_request(&parts.headers, &event)?;
            let event_upstream = Upstream {
                path_and_query: "/",
                ..upstream
            };
            let (response, elapsed) =
                forward::send(gateway.client(), event_upstream, request).await?;
            outcome.upstream_seconds = Some(elapsed.as_secs_f64());
            event::decode_response(response).await?
        }
    };
    Ok(response)
}

fn match_denial(error: MatchError) -> Denial {
    match error {
        MatchError::NotFound => Denial::NotFound,
        MatchError::MethodNotAllowed { allow } => Denial::MethodNotAllowed {
            allow: allow.join(", "),
        },
        MatchError::BadPath(reason) => Denial::BadRequest(reason),
    }
}

fn requested_method(headers: &HeaderMap) -> Result<Method, Denial> {
    headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
        .ok_or_else(|| Denial::BadRequest("invalid Access-Control-Request-Method".into()))
}

/// Host of the request, lower-case and without port: the URI authority for
/// HTTP/2, the `Host` header for HTTP/1.1.
fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = match request.uri().host() {
        Some(host) => host,
        None => request.headers().get(header::HOST)?.to_str().ok()?,
    };
    let without_port = strip_port(raw);
    Some(without_port.to_ascii_lowercase())
}

fn strip_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        // IPv6 literal: `[::1]:8080`.
        return raw.find(']').map_or(raw, |end| &raw[..=end]);
    }
    match raw.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => raw,
    }
}

fn preflight(route: &RouteSpec, requested: &Method) -> Response<Body> {
    let allow_method = route.method.as_ref().unwrap_or(requested).to_string();
    let max_age = route
        .cors
        .as_ref()
        .map_or(0, |c| c.max_age_seconds)
        .to_string();
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&allow_method) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOWED_HEADERS),
    );
    if let Ok(value) = HeaderValue::from_str(&max_age) {
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, value);
    }
    response
}

/// Removes the consumed credential and any client-sent `X-Portcullis-*`
/// header, then adds the principal, tenant and request id.
fn prepare_headers(
    headers: &mut HeaderMap,
    authenticated: &Authenticated,
    route: &RouteSpec,
    request_id: &str,
    peer: SocketAddr,
    host: Option<&str>,
) {
    forward::strip_hop_by_hop(headers);
    headers.remove(X_API_KEY);
    if authenticated.consumed_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    let spoofed: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-portcullis-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }

    if let Ok(value) = HeaderValue::from_str(&authenticated.principal.header_value()) {
        headers.insert(X_PORTCULLIS_PRINCIPAL, value);
    }
    if let Ok(value) = HeaderValue::from_str(&route.namespace) {
        headers.insert(X_PORTCULLIS_TENANT, value);
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    forward::add_forwarding_headers(headers, peer, host);
}

async fn build_event(
    matched: &RouteMatch<'_>,
    parts: &http::request::Parts,
    incoming: Incoming,
    authenticated: &Authenticated,
    request_id: &str,
) -> Result<Event, Denial> {
    let bytes = http_body_util::Limited::new(incoming, event::MAX_EVENT_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                Denial::PayloadTooLarge
            } else {
                Denial::BadRequest("the request body could not be read".into())
            }
        })?
        .to_bytes();
    let (body, is_base64_encoded) = event::encode_body(&bytes);
    let (query_string_parameters, multi_value_query_string_parameters) =
        event::parse_query(parts.uri.query());
    let path_parameters: BTreeMap<String, String> = matched
        .params
        .iter()
        .map(|(name, value)| (name.clone(), event::decode_parameter(value)))
        .collect();

    Ok(Event {
        http_method: parts.method.to_string(),
        path: matched.upstream_path.clone(),
        path_parameters,
        query_string_parameters,
        multi_value_query_string_parameters,
        headers: event::event_headers(&parts.headers),
        body,
        is_base64_encoded,
        request_context: RequestContext {
            route_name: matched.route.name.clone(),
            tenant: matched.route.namespace.clone(),
            request_id: request_id.to_owned(),
            principal: EventPrincipal::from(&authenticated.principal),
        },
    })
}

fn event_request(headers: &HeaderMap, event: &Event) -> Result<Request<Body>, Denial> {
    let json = serde_json::to_vec(event)
        .map_err(|_| Denial::BadRequest("the request cannot be encoded as an event".into()))?;
    let mut request = Request::new(body::full(json));
    *request.method_mut() = Method::POST;
    let out = request.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out.insert(
        event::EVENT_FORMAT_HEADER,
        HeaderValue::from_static("simple"),
    );
    for name in [
        "x-portcullis-principal",
        "x-portcullis-tenant",
        "x-request-id",
        "host",
    ] {
        if let Some(value) = headers.get(name) {
            out.insert(name, value.clone());
        }
    }
    Ok(request)
}

/// Reuses a sane client-sent `X-Request-Id`, or makes a new one.
fn request_id(headers: &HeaderMap) -> String {
    if let Some(value) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| b.is_ascii_graphic())
    {
        return value.to_owned();
    }
    // A random per-process prefix and a counter: unique without hashing or
    // a random draw per request.
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| RandomState::new().hash_one(std::process::id()) as u32);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:08x}{sequence:012x}")
}

fn route_labels(outcome: &Outcome) -> (&str, &str) {
    outcome
        .route
        .as_ref()
        .map_or(("", ""), |r| (r.namespace.as_str(), r.name.as_str()))
}

fn count_auth(gateway: &Gateway, route: &RouteSpec, result: &str) {
    gateway
        .metrics
        .auth_total
        .with_label_values(&[route.namespace.as_str(), route.name.as_str(), result])
        .inc();
}

// NOTE: each `with_label_values` call takes the read side of the metric
// family's RwLock inside the prometheus crate (about 1% of the instructions
// of a proxied request in bench/profile.sh). Caching the handles per route
// would remove that lock from the request path.
fn record(gateway: &Gateway, outcome: &Outcome, status: StatusCode, label: &str, started: Instant) {
    let (tenant, route) = route_labels(outcome);
    let metrics = &gateway.metrics;
    metrics
        .requests_total
        .with_label_values(&[tenant, route, status.as_str(), label])
        .inc();
    metrics
        .request_duration_seconds
        .with_label_values(&[tenant, route])
        .observe(started.elapsed().as_secs_f64());
    if let Some(seconds) = outcome.upstream_seconds {
        metrics
            .upstream_duration_seconds
            .with_label_values(&[tenant, route])
            .observe(seconds);
    }
}
