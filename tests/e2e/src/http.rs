//! HTTP requests to the gateway and its admin port.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::credential::{Credential, redact};
use crate::wait::{PROPAGATION_TIMEOUT, eventually};

/// Maximum number of body characters in a failure message.
const BODY_EXCERPT_CHARS: usize = 2_000;

/// Builds the HTTP client of one test. Each test has its own, because a
/// pooled connection belongs to the Tokio runtime that opened it and every
/// test runs on its own runtime.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("build the HTTP client")
}

/// A response, read completely.
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body as text.
    pub body: String,
    /// Credentials sent with the request, hidden in [`Reply::describe`].
    secrets: Vec<String>,
}

impl Reply {
    /// Returns a header value as text, or `None` when absent or not text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Parses the body as JSON.
    ///
    /// # Panics
    ///
    /// Panics when the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("response body is not JSON ({error}): {self}"))
    }

    /// Returns true when the body contains one of the credentials sent with
    /// the request.
    pub fn echoes_credential(&self) -> bool {
        self.secrets
            .iter()
            .any(|secret| !secret.is_empty() && self.body.contains(secret.as_str()))
    }

    /// Describes the status and the start of the body, with the request's
    /// credentials replaced by `[REDACTED]`.
    pub fn describe(&self) -> String {
        let body = redact(&self.body, &self.secrets);
        let excerpt: String = body.chars().take(BODY_EXCERPT_CHARS).collect();
        format!("HTTP {} {excerpt}", self.status)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.describe())
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.describe())
    }
}

/// A request that can be sent several times.
#[derive(Clone)]
pub struct Call {
    client: reqwest::Client,
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    secrets: Vec<String>,
}

impl Call {
    /// Creates a request without headers.
    ///
    /// # Panics
    ///
    /// Panics on an invalid method name.
    pub fn new(client: &reqwest::Client, method: &str, url: String) -> Call {
        Call {
            client: client.clone(),
            method: Method::from_bytes(method.as_bytes())
                .unwrap_or_else(|_| panic!("invalid HTTP method {method:?}")),
            url,
            headers: Vec::new(),
            body: None,
            secrets: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends `key` in `X-Api-Key`.
    pub fn api_key(mut self, key: &Credential) -> Call {
        self.secrets.push(key.expose().to_owned());
        self.header("x-api-key", key.expose())
    }

    /// Sends `token` as `Authorization: Bearer`.
    pub fn bearer(mut self, token: &Credential) -> Call {
        self.secrets.push(token.expose().to_owned());
        let value = format!("Bearer {}", token.expose());
        self.header("authorization", &value)
    }

    /// Sets the request body.
    pub fn body(mut self, body: &str) -> Call {
        self.body = Some(body.to_owned());
        self
    }

    /// Sends the request.
    ///
    /// # Errors
    ///
    /// Returns a message when no response arrives.
    pub async fn try_send(&self) -> Result<Reply, String> {
        let mut request = self.client.request(self.method.clone(), &self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|error| format!("{} {} failed: {error}", self.method, self.url))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.map_err(|error| {
            format!("reading the body of {} {}: {error}", self.method, self.url)
        })?;
        Ok(Reply {
            status,
            headers,
            body,
            secrets: self.secrets.clone(),
        })
    }

    /// Sends the request.
    ///
    /// # Panics
    ///
    /// Panics when no response arrives.
    pub async fn send(&self) -> Reply {
        self.try_send()
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Sends the request until it returns `status`, for changes that take
    /// a moment to reach the data plane.
    ///
    /// # Panics
    ///
    /// Panics after [`PROPAGATION_TIMEOUT`] with the last response.
    pub async fn send_until(&self, status: u16) -> Reply {
        let condition = format!("{} {} to return {status}", self.method, self.url);
        eventually(PROPAGATION_TIMEOUT, &condition, || async {
            let reply = self.try_send().await?;
            if reply.status == status {
                Ok(reply)
            } else {
                Err(reply.describe())
            }
        })
        .await
    }
}
