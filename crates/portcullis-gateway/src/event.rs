//! `eventFormat: simple`: the request becomes a JSON event POSTed to the
//! function, and the function's JSON response becomes the HTTP response.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::body::{self, Body};
use crate::denial::Denial;

/// Largest request body carried in an event, and largest function response
/// read back (6 MiB, the usual limit of serverless event payloads).
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;

/// Header that marks the body as an event rather than a proxied request,
/// for function servers that accept both.
pub const EVENT_FORMAT_HEADER: &str = "x-portcullis-event-format";

/// The JSON event sent to the function.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Request method.
    pub http_method: String,
    /// Path the function receives (tenant prefix removed).
    pub path: String,
    /// Captured path parameters, percent-decoded.
    pub path_parameters: BTreeMap<String, String>,
    /// Last value of each query parameter.
    pub query_string_parameters: BTreeMap<String, String>,
    /// Every value of each query parameter, in order.
    pub multi_value_query_string_parameters: BTreeMap<String, Vec<String>>,
    /// Request headers, lower-case names, repeated values joined by `, `.
    pub headers: BTreeMap<String, String>,
    /// Body as UTF-8 text, or base64 when it is not valid UTF-8.
    pub body: Option<String>,
    /// True when `body` is base64.
    pub is_base64_encoded: bool,
    /// Route, tenant, request id and principal of the call.
    pub request_context: RequestContext,
}

/// Context of an event.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// GatewayRoute name.
    pub route_name: String,
    /// Namespace of the route.
    pub tenant: String,
    /// Identifier of this request, also sent as `X-Request-Id`.
    pub request_id: String,
    /// The authenticated caller.
    pub principal: EventPrincipal,
}

/// Principal of an event.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventPrincipal {
    /// `api-key`, `user` or `anonymous`.
    #[serde(rename = "type")]
    pub kind: String,
    /// ApiKey name, for `api-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// User name, for `user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl From<&Principal> for EventPrincipal {
    fn from(principal: &Principal) -> Self {
        match principal {
            Principal::Anonymous => EventPrincipal {
                kind: "anonymous".into(),
                api_key_id: None,
                user_id: None,
            },
            Principal::ApiKey(id) => EventPrincipal {
                kind: "api-key".into(),
                api_key_id: Some(id.clone()),
                user_id: None,
            },
            Principal::User(name) => EventPrincipal {
                kind: "user".into(),
                api_key_id: None,
                user_id: Some(name.clone()),
            },
        }
    }
}

/// The function's response to an event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionResponse {
    status_code: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

/// Fills the body fields of an event.
pub fn encode_body(bytes: &[u8]) -> (Option<String>, bool) {
    if bytes.is_empty() {
        return (None, false);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), false),
        Err(_) => (Some(BASE64.encode(bytes)), true),
    }
}

/// Splits a raw query string into single- and multi-value maps, decoding
/// `+` and percent-encodings.
pub fn parse_query(
    query: Option<&str>,
) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        multi
            .entry(decode_component(name))
            .or_default()
            .push(decode_component(value));
    }
    let single = multi
        .iter()
        .filter_map(|(k, v)| v.last().map(|last| (k.clone(), last.clone())))
        .collect();
    (single, multi)
}

fn decode_component(text: &str) -> String {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Percent-decodes a captured path parameter.
pub fn decode_parameter(value: &str) -> String {
    percent_decode_str(value).decode_utf8_lossy().into_owned()
}

/// Headers of an event: lower-case names, repeated values joined.
pub fn event_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// Turns the function's event response into the HTTP response, or into 502
/// when it is malformed.
pub async fn decode_response(response: Response<Incoming>) -> Result<Response<Body>, Denial> {
    if !response.status().is_success() {
        tracing::warn!(
            upstream.status = response.status().as_u16(),
            "function answered the event with a non-2xx status"
        );
        return Err(Denial::UpstreamFailed);
    }
    let limited = http_body_util::Limited::new(response.into_body(), MAX_EVENT_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|_| Denial::UpstreamFailed)?
        .to_bytes();
    let answer: FunctionResponse = serde_json::from_slice(&bytes).map_err(|error| {
        tracing::warn!(error = %error, "function returned an invalid event response");
        Denial::UpstreamFailed
    })?;

    let status = StatusCode::from_u16(answer.status_code)
        .ok()
        .filter(|s| (100..=599).contains(&s.as_u16()) && !s.is_informational())
        .ok_or_else(|| {
            tracing::warn!(
                status = answer.status_code,
                "function answered an invalid statusCode"
            );
            Denial::UpstreamFailed
        })?;
    let body_bytes = match (answer.body, answer.is_base64_encoded) {
        (None, _) => Bytes::new(),
        (Some(text), false) => Bytes::from(text),
        (Some(text), true) => Bytes::from(BASE64.decode(text).map_err(|_| {
            tracing::warn!("function returned a body that is not valid base64");
            Denial::UpstreamFailed
        })?),
    };

    let mut out = Response::new(body::full(body_bytes));
    *out.status_mut() = status;
    for (name, value) in answer.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            tracing::warn!("function returned a header that is not valid HTTP");
            return Err(Denial::UpstreamFailed);
        };
        out.headers_mut().append(name, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_multi_value_aware() {
        let (single, multi) = parse_query(Some("a=1&a=2&b=x+y&c=%2F&d"));
        assert_eq!(single["a"], "2");
        assert_eq!(multi["a"], vec!["1", "2"]);
        assert_eq!(single["b"], "x y");
        assert_eq!(single["c"], "/");
        assert_eq!(single["d"], "");
    }

    #[test]
    fn binary_body_is_base64() {
        assert_eq!(encode_body(b"hello"), (Some("hello".into()), false));
        assert_eq!(encode_body(&[0xff, 0x00]), (Some("/wA=".into()), true));
        assert_eq!(encode_body(b""), (None, false));
    }

    #[test]
    fn principal_shapes() {
        let p = EventPrincipal::from(&Principal::ApiKey("k".into()));
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"type": "api-key", "apiKeyId": "k"})
        );
        let p = EventPrincipal::from(&Principal::User("u".into()));
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"type": "user", "userId": "u"})
        );
    }
}
