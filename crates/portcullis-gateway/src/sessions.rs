//! Bearer session verification.
//!
//! The data plane asks a [`SessionVerifier`] whether a bearer token is a
//! platform session allowed to invoke routes of a tenant. In a cluster the
//! controller provides one backed by TokenReview and SubjectAccessReview;
//! `portcullis serve` reads sessions from a file ([`FileSessions`]).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use portcullis_compile::KeyHash;

use crate::secret::Secret;

/// Result of checking a bearer token for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    /// A valid session allowed to invoke the tenant's routes.
    Allowed {
        /// User name, reported as the principal `user:<name>`.
        user: String,
    },
    /// A valid session whose user may not invoke in this tenant (403).
    Forbidden {
        /// User name, for logs.
        user: String,
    },
    /// Unknown, malformed or expired token (401).
    Invalid,
    /// The backend could not decide (503, never an accept).
    Unavailable,
}

/// Boxed future returned by [`SessionVerifier::verify`].
pub type VerifyFuture<'a> = Pin<Box<dyn Future<Output = SessionOutcome> + Send + 'a>>;

/// A source of truth for bearer sessions.
pub trait SessionVerifier: Send + Sync + 'static {
    /// Decides whether `token` may invoke routes of `tenant`.
    fn verify<'a>(&'a self, token: &'a Secret, tenant: &'a str) -> VerifyFuture<'a>;
}

/// Sessions listed in a file, one per line:
/// `sha256:<hex of the token> <user> <tenant>[,<tenant>…]`. Blank lines and
/// lines starting with `#` are ignored.
#[derive(Debug, Default)]
pub struct FileSessions {
    sessions: HashMap<KeyHash, (String, Vec<String>)>,
}

impl FileSessions {
    /// Reads a session file. Errors name the line that failed.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read session file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the session file format.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut sessions = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [hash, user, tenants] = fields[..] else {
                return Err(format!(
                    "line {}: expected `sha256:<hex> <user> <tenant>[,<tenant>...]`",
                    index + 1
                ));
            };
            let hash = KeyHash::parse(hash).map_err(|e| format!("line {}: {e}", index + 1))?;
            let tenants = tenants.split(',').map(str::to_owned).collect();
            sessions.insert(hash, (user.to_owned(), tenants));
        }
        Ok(FileSessions { sessions })
    }
}

impl SessionVerifier for FileSessions {
    fn verify<'a>(&'a self, token: &'a Secret, tenant: &'a str) -> VerifyFuture<'a> {
        let outcome = match self
            .sessions
            .get(&KeyHash::of_key(token.expose().as_bytes()))
        {
            None => SessionOutcome::Invalid,
            Some((user, tenants)) if tenants.iter().any(|t| t == tenant) => {
                SessionOutcome::Allowed { user: user.clone() }
            }
            Some((user, _)) => SessionOutcome::Forbidden { user: user.clone() },
        };
        Box::pin(std::future::ready(outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_sessions_decide_by_tenant() {
        let hash = KeyHash::of_key(b"session-token").to_spec_string();
        let sessions =
            FileSessions::parse(&format!("# comment\n\n{hash} alice acme,beta\n")).unwrap();
        let token = Secret::new("session-token");
        assert_eq!(
            sessions.verify(&token, "acme").await,
            SessionOutcome::Allowed {
                user: "alice".into()
            }
        );
        assert_eq!(
            sessions.verify(&token, "other").await,
            SessionOutcome::Forbidden {
                user: "alice".into()
            }
        );
        assert_eq!(
            sessions.verify(&Secret::new("nope"), "acme").await,
            SessionOutcome::Invalid
        );
    }

    #[test]
    fn file_sessions_report_bad_line() {
        let error = FileSessions::parse("sha256:abc alice acme\n").unwrap_err();
        assert!(error.starts_with("line 1:"), "{error}");
        let error = FileSessions::parse("\nonly-two fields\n").unwrap_err();
        assert!(error.starts_with("line 2:"), "{error}");
    }
}
