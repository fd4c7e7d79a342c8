//! The last step: send the request to one ready endpoint and relay the response.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::Body;
use crate::denial::Denial;

/// Pooled HTTP/1.1 client to function endpoints.
pub type UpstreamClient = Client<HttpConnector, Body>;

/// Builds the pooled upstream client.
pub fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Headers that describe one connection and must not be forwarded
/// (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Destination and timeout of one upstream request.
pub struct Upstream<'a> {
    /// Endpoint chosen for this request.
    pub endpoint: SocketAddr,
    /// Path and query the function receives.
    pub path_and_query: &'a str,
    /// Route timeout for the response head.
    pub timeout: Duration,
}

/// Sends `request` upstream and returns the response, or the denial that
/// describes the failure, with the time until the response head.
pub async fn send(
    client: &UpstreamClient,
    upstream: Upstream<'_>,
    request: Request<Body>,
) -> Result<(Response<Incoming>, Duration), Denial> {
    let (mut parts, body) = request.into_parts();
    parts.uri = upstream_uri(upstream.endpoint, upstream.path_and_query)?;
    parts.version = Version::HTTP_11;

    let started = Instant::now();
    let response = tokio::time::timeout(
        upstream.timeout,
        client.request(Request::from_parts(parts, body)),
    )
    .await;
    let elapsed = started.elapsed();

    match response {
        Err(_) => Err(Denial::UpstreamTimedOut),
        Ok(Err(error)) => {
            tracing::warn!(
                upstream.address = %upstream.endpoint,
                error = %error,
                connect = error.is_connect(),
                "upstream request failed"
            );
            Err(Denial::UpstreamFailed)
        }
        Ok(Ok(mut response)) => {
            strip_hop_by_hop(response.headers_mut());
            Ok((response, elapsed))
        }
    }
}

fn upstream_uri(endpoint: SocketAddr, path_and_query: &str) -> Result<Uri, Denial> {
    format!("http://{endpoint}{path_and_query}")
        .parse()
        .map_err(|_| Denial::BadRequest("the path cannot be forwarded".into()))
}

/// Turns a relayed response into the gateway's body type.
pub fn relay(response: Response<Incoming>) -> Response<Body> {
    response.map(|body| body.map_err(Into::into).boxed())
}

/// Appends the peer to `X-Forwarded-For` and records the original host and
/// scheme for the function.
pub fn add_forwarding_headers(headers: &mut HeaderMap, peer: SocketAddr, host: Option<&str>) {
    let peer_ip = peer.ip().to_canonical().to_string();
    let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {peer_ip}"),
        None => peer_ip,
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = host
        && !headers.contains_key(&X_FORWARDED_HOST)
        && let Ok(value) = HeaderValue::from_str(host)
    {
        headers.insert(X_FORWARDED_HOST, value);
    }
}
