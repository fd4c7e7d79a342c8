//! Values that must never reach a log line.

use std::fmt;

/// A credential as presented by a client. `Debug` and `Display` print
/// `[REDACTED]`; [`Secret::expose`] is the only way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Secret(value.into())
    }

    /// Returns the credential for the one place that needs it (hashing or a
    /// TokenReview call).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Returns true for a header or parameter name whose value is likely a
/// credential: it contains `token`, `bearer`, `api-key` (any separator),
/// `authorization`, `secret`, `password`, `cookie` or `session`.
pub fn looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let squashed: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    [
        "token",
        "bearer",
        "apikey",
        "authorization",
        "secret",
        "password",
        "passwd",
        "cookie",
        "session",
        "signature",
    ]
    .iter()
    .any(|word| squashed.contains(word))
}

/// Rewrites a query string for logs: values of secret-looking parameters
/// become `[REDACTED]`, everything else is kept.
pub fn redact_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for (index, pair) in query.split('&').enumerate() {
        if index > 0 {
            out.push('&');
        }
        let (name, has_value) = match pair.split_once('=') {
            Some((name, _)) => (name, true),
            None => (pair, false),
        };
        let decoded_name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        if looks_secret(&decoded_name) {
            out.push_str(name);
            out.push_str("=[REDACTED]");
        } else if has_value {
            out.push_str(pair);
        } else {
            out.push_str(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_prints_redacted() {
        let secret = Secret::new("hunter2-key-value");
        assert_eq!(format!("{secret}"), "[REDACTED]");
        assert_eq!(format!("{secret:?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([REDACTED])");
        assert_eq!(secret.expose(), "hunter2-key-value");
    }

    #[test]
    fn secret_names_detected() {
        for name in [
            "X-Api-Key",
            "api_key",
            "apikey",
            "Authorization",
            "access_token",
            "client_secret",
            "password",
            "X-Bearer",
            "Cookie",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["page", "customerId", "content-type", "x-request-id"] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn query_redaction() {
        assert_eq!(
            redact_query("page=2&api_key=abc123&token=zzz&flag"),
            "page=2&api_key=[REDACTED]&token=[REDACTED]&flag"
        );
        assert_eq!(
            redact_query("access%5Ftoken=x"),
            "access%5Ftoken=[REDACTED]"
        );
        assert_eq!(redact_query("password"), "password=[REDACTED]");
    }
}
