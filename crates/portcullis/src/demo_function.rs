//! `portcullis demo-function`: a small function server for the quickstart
//! and end-to-end tests. It serves both event formats:
//!
//! - `http`: every request gets a JSON echo of what arrived
//!   (method, path, query, headers, principal), so a test can see exactly
//!   what the gateway forwarded.
//! - `simple`: a POSTed event (marked by `X-Portcullis-Event-Format`) gets
//!   an event response whose body echoes the event.
//!
//! A `delay_ms` query parameter (at most 60,000) delays the response, for
//! timeout tests.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use portcullis_gateway::body::{self, Body};
use portcullis_gateway::event::{EVENT_FORMAT_HEADER, Event};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Flags of `portcullis demo-function`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Name reported in every response, to tell several functions apart.
    #[arg(long, default_value = "demo")]
    name: String,
}

/// Serves until ctrl-c or SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    tracing::info!(listen = %args.listen, name = %args.name, "demo function started");

    let shutdown = CancellationToken::new();
    let name: &'static str = Box::leak(args.name.into_boxed_str());
    let server = tokio::spawn(portcullis_gateway::server::serve(
        listener,
        shutdown.clone(),
        move |request, _peer| answer(name, request),
    ));
    crate::serve::shutdown_signal().await;
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

async fn answer(name: &'static str, request: Request<Incoming>) -> Response<Body> {
    if let Some(delay) = delay(request.uri().query()) {
        tokio::time::sleep(delay).await;
    }
    let is_event = request.headers().contains_key(EVENT_FORMAT_HEADER);
    let (parts, incoming) = request.into_parts();
    let bytes = match incoming.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_response(StatusCode::BAD_REQUEST, json!({"error": "unreadable body"}));
        }
    };

    if is_event {
        let event: Event = match serde_json::from_slice(&bytes) {
            Ok(event) => event,
            Err(error) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("not an event: {error}")}),
                );
            }
        };
        if let Some(delay) = delay_from_event(&event) {
            tokio::time::sleep(delay).await;
        }
        let echo = json!({
            "function": name,
            "format": "simple",
            "method": event.http_method,
            "path": event.path,
            "pathParameters": event.path_parameters,
            "query": event.multi_value_query_string_parameters,
            "principal": event.request_context.principal,
            "tenant": event.request_context.tenant,
            "route": event.request_context.route_name,
            "requestId": event.request_context.request_id,
            "body": event.body,
        });
        return json_response(
            StatusCode::OK,
            json!({
                "statusCode": 200,
                "headers": {"content-type": "application/json", "x-demo-function": name},
                "body": echo.to_string(),
                "isBase64Encoded": false,
            }),
        );
    }

    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({
            "function": name,
            "format": "http",
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "principal": parts.headers.get("x-portcullis-principal").and_then(|v| v.to_str().ok()),
            "tenant": parts.headers.get("x-portcullis-tenant").and_then(|v| v.to_str().ok()),
            "headers": headers,
            "bodyBytes": bytes.len(),
        }),
    )
}

fn delay(query: Option<&str>) -> Option<Duration> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay_ms="))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.min(60_000)))
}

fn delay_from_event(event: &Event) -> Option<Duration> {
    event
        .query_string_parameters
        .get("delay_ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.min(60_000)))
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
