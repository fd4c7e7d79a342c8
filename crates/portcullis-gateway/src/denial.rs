//! Every response the gateway sends itself, without a function's response.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;

/// A response the gateway sends itself. Each variant maps to exactly one
/// HTTP status, one JSON error body and one metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No route for this host and path.
    NotFound,
    /// No route matched, but the configuration has not been fully loaded
    /// yet, so the route may simply not have arrived.
    NotReady,
    /// The path exists with other methods.
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: String,
    },
    /// Dot segments, an encoded `/` in a parameter, or an unreadable request.
    BadRequest(String),
    /// Missing or invalid credential.
    Unauthenticated {
        /// Value of the `WWW-Authenticate` header.
        challenge: &'static str,
    },
    /// Valid credential without permission for this route.
    Forbidden,
    /// Authentication cannot be decided yet: the first sync has not
    /// completed, or the session backend is missing or unreachable.
    AuthUnavailable,
    /// Over the route's per-client rate limit.
    RateLimited,
    /// The request body exceeds what the event format can carry.
    PayloadTooLarge,
    /// The target Service has no ready endpoint.
    NoEndpoint,
    /// The upstream connection failed or the function returned an invalid
    /// response.
    UpstreamFailed,
    /// The upstream did not answer within the route's timeout.
    UpstreamTimedOut,
}

impl Denial {
    /// HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::NotFound => StatusCode::NOT_FOUND,
            Denial::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Denial::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Denial::BadRequest(_) => StatusCode::BAD_REQUEST,
            Denial::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Denial::Forbidden => StatusCode::FORBIDDEN,
            Denial::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Denial::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Denial::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Denial::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            Denial::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Denial::UpstreamTimedOut => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Metric label and log value.
    pub fn label(&self) -> &'static str {
        match self {
            Denial::NotFound => "not_found",
            Denial::NotReady => "not_ready",
            Denial::MethodNotAllowed { .. } => "method_not_allowed",
            Denial::BadRequest(_) => "bad_request",
            Denial::Unauthenticated { .. } => "unauthenticated",
            Denial::Forbidden => "forbidden",
            Denial::AuthUnavailable => "auth_unavailable",
            Denial::RateLimited => "rate_limited",
            Denial::PayloadTooLarge => "payload_too_large",
            Denial::NoEndpoint => "no_endpoint",
            Denial::UpstreamFailed => "upstream_failed",
            Denial::UpstreamTimedOut => "upstream_timed_out",
        }
    }

    /// Sentence for the JSON body. Never contains a credential.
    fn message(&self) -> String {
        match self {
            Denial::NotFound => "no route matches this host and path".into(),
            Denial::NotReady => {
                "the gateway is still loading its configuration; retry later".into()
            }
            Denial::MethodNotAllowed { allow } => {
                format!("method not allowed on this path; allowed: {allow}")
            }
            Denial::BadRequest(reason) => format!("bad request: {reason}"),
            Denial::Unauthenticated { .. } => "missing or invalid credentials".into(),
            Denial::Forbidden => "the credential is not allowed to call this route".into(),
            Denial::AuthUnavailable => {
                "authentication is temporarily unavailable; retry later".into()
            }
            Denial::RateLimited => "rate limit exceeded; retry after 60 seconds".into(),
            Denial::PayloadTooLarge => "request body is too large".into(),
            Denial::NoEndpoint => "the function has no ready endpoint".into(),
            Denial::UpstreamFailed => "the function could not be reached or answered badly".into(),
            Denial::UpstreamTimedOut => "the function did not answer in time".into(),
        }
    }

    /// Returns true when the request was stopped before any function code
    /// could run.
    pub fn before_invoke(&self) -> bool {
        !matches!(self, Denial::UpstreamFailed | Denial::UpstreamTimedOut)
    }

    /// Builds the HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({ "error": self.message() }).to_string();
        let mut response = Response::new(crate::body::full(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Denial::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            Denial::Unauthenticated { challenge } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            Denial::RateLimited => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_denial_has_distinct_label() {
        let all = [
            Denial::NotFound,
            Denial::MethodNotAllowed {
                allow: "GET".into(),
            },
            Denial::BadRequest("x".into()),
            Denial::Unauthenticated {
                challenge: "ApiKey",
            },
            Denial::Forbidden,
            Denial::AuthUnavailable,
            Denial::RateLimited,
            Denial::PayloadTooLarge,
            Denial::NoEndpoint,
            Denial::UpstreamFailed,
            Denial::UpstreamTimedOut,
        ];
        let mut labels: Vec<_> = all.iter().map(Denial::label).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
    }

    #[test]
    fn rate_limited_has_retry_after() {
        let response = Denial::RateLimited.into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "60");
    }

    #[test]
    fn unauthenticated_has_challenge() {
        let response = Denial::Unauthenticated {
            challenge: "ApiKey realm=\"portcullis\"",
        }
        .into_response();
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
