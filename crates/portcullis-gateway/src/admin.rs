//! The admin listener: `/healthz`, `/readyz`, `/metrics` and `/status`.

use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::Gateway;
use crate::body::{self, Body};

/// Handles one admin request.
pub async fn handle<B>(gateway: Arc<Gateway>, request: Request<B>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if gateway.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first full sync of routes and keys\n",
        ),
        "/metrics" => {
            let mut response = text(StatusCode::OK, gateway.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/status" => {
            let status = serde_json::json!({
                "generation": gateway.snapshot().generation,
                "ready": gateway.is_ready(),
                "report": &*gateway.report(),
            });
            let mut response = Response::new(body::full(
                serde_json::to_vec_pretty(&status).unwrap_or_default(),
            ));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz, /metrics or /status\n",
        ),
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(body::full(message.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
