//! Authentication: the step that runs before anything touches a function.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use portcullis_api::KeyScope;
use portcullis_compile::{AuthPolicy, KeyHash, RouteSpec, Snapshot};

use crate::denial::Denial;
use crate::secret::Secret;
use crate::sessions::{SessionOutcome, SessionVerifier};

/// `WWW-Authenticate` for routes that take an API key.
pub const API_KEY_CHALLENGE: &str = "ApiKey realm=\"portcullis\", header=\"X-Api-Key\"";
/// `WWW-Authenticate` for bearer routes when no token was sent.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"portcullis\"";
/// `WWW-Authenticate` for bearer routes when the token was rejected.
pub const BEARER_INVALID_CHALLENGE: &str = "Bearer realm=\"portcullis\", error=\"invalid_token\"";

/// Caller identity, as the function receives it in `X-Portcullis-Principal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Public route.
    Anonymous,
    /// Authenticated by the ApiKey of this name.
    ApiKey(String),
    /// Authenticated by a platform session of this user.
    User(String),
}

impl Principal {
    /// Header form: `anonymous`, `api-key:<id>` or `user:<name>`.
    pub fn header_value(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".to_owned(),
            Principal::ApiKey(id) => format!("api-key:{id}"),
            Principal::User(name) => format!("user:{name}"),
        }
    }
}

/// A successful authentication.
#[derive(Debug)]
pub struct Authenticated {
    /// The caller.
    pub principal: Principal,
    /// True when `Authorization` carried the credential and must not reach
    /// the function.
    pub consumed_authorization: bool,
}

/// A failed authentication: the denial, and a short reason for metrics and
/// logs (never the credential).
#[derive(Debug)]
pub struct Rejection {
    /// The response to send.
    pub denial: Denial,
    /// Why, as a fixed word: `missing`, `unknown_key`, `revoked`, ...
    pub reason: &'static str,
}

fn reject(denial: Denial, reason: &'static str) -> Rejection {
    Rejection { denial, reason }
}

/// Runs the authentication step for `route`.
pub async fn authenticate(
    snapshot: &Snapshot,
    route: &RouteSpec,
    headers: &HeaderMap,
    sessions: Option<&dyn SessionVerifier>,
    now: DateTime<Utc>,
) -> Result<Authenticated, Rejection> {
    if !route.auth.is_protected() {
        return Ok(Authenticated {
            principal: Principal::Anonymous,
            consumed_authorization: false,
        });
    }

    // Fail closed: until the first full sync, an absent key could be a key
    // that has not arrived yet, or a revocation that has not arrived yet.
    if !snapshot.synced {
        return Err(reject(Denial::AuthUnavailable, "not_synced"));
    }

    match &route.auth {
        AuthPolicy::None => unreachable!("public routes returned above"),
        AuthPolicy::ApiKey { allowlist } => {
            if let Some(key) = api_key_header(headers) {
                return check_api_key(snapshot, route, allowlist.as_deref(), &key, now);
            }
            // Console testing: a same-tenant session may stand in for a key,
            // but only on routes that do not name their callers.
            if allowlist.is_none()
                && let Some(token) = bearer_token(headers)
            {
                return check_session(sessions, &token, &route.namespace, API_KEY_CHALLENGE).await;
            }
            Err(reject(
                Denial::Unauthenticated {
                    challenge: API_KEY_CHALLENGE,
                },
                "missing",
            ))
        }
        AuthPolicy::Bearer => match bearer_token(headers) {
            Some(token) => {
                check_session(sessions, &token, &route.namespace, BEARER_INVALID_CHALLENGE).await
            }
            None if sessions.is_none() => {
                Err(reject(Denial::AuthUnavailable, "no_session_backend"))
            }
            None => Err(reject(
                Denial::Unauthenticated {
                    challenge: BEARER_CHALLENGE,
                },
                "missing",
            )),
        },
    }
}

fn check_api_key(
    snapshot: &Snapshot,
    route: &RouteSpec,
    allowlist: Option<&[String]>,
    key: &Secret,
    now: DateTime<Utc>,
) -> Result<Authenticated, Rejection> {
    let unauthenticated = Denial::Unauthenticated {
        challenge: API_KEY_CHALLENGE,
    };
    let hash = KeyHash::of_key(key.expose().as_bytes());
    let Some(grant) = snapshot.key(&hash) else {
        return Err(reject(unauthenticated, "unknown_key"));
    };
    let info = &grant.key;

    // Every check below returns the same 401, so a caller learns nothing
    // about keys of other tenants or why a key stopped working.
    if info.namespace != route.namespace {
        return Err(reject(unauthenticated, "other_tenant"));
    }
    if !info.active {
        return Err(reject(unauthenticated, "revoked"));
    }
    if info.expires_at.is_some_and(|t| t <= now) {
        return Err(reject(unauthenticated, "expired"));
    }
    if grant.hash_expires_at.is_some_and(|t| t <= now) {
        return Err(reject(unauthenticated, "rotated_out"));
    }
    if info.scope == KeyScope::Deploy {
        return Err(reject(Denial::Forbidden, "deploy_scope"));
    }
    if let Some(allowed) = allowlist
        && !allowed.iter().any(|id| *id == info.name)
    {
        return Err(reject(unauthenticated, "not_allowlisted"));
    }

    Ok(Authenticated {
        principal: Principal::ApiKey(info.name.clone()),
        consumed_authorization: false,
    })
}

async fn check_session(
    sessions: Option<&dyn SessionVerifier>,
    token: &Secret,
    tenant: &str,
    invalid_challenge: &'static str,
) -> Result<Authenticated, Rejection> {
    let Some(sessions) = sessions else {
        return Err(reject(Denial::AuthUnavailable, "no_session_backend"));
    };
    match sessions.verify(token, tenant).await {
        SessionOutcome::Allowed { user } => Ok(Authenticated {
            principal: Principal::User(user),
            consumed_authorization: true,
        }),
        SessionOutcome::Forbidden { .. } => Err(reject(Denial::Forbidden, "session_not_allowed")),
        SessionOutcome::Invalid => Err(reject(
            Denial::Unauthenticated {
                challenge: invalid_challenge,
            },
            "invalid_session",
        )),
        SessionOutcome::Unavailable => {
            Err(reject(Denial::AuthUnavailable, "session_backend_error"))
        }
    }
}

/// Reads the `X-Api-Key` value, if present and not empty.
fn api_key_header(headers: &HeaderMap) -> Option<Secret> {
    let value = headers.get("x-api-key")?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| Secret::new(value))
}

/// Reads the token of `Authorization: Bearer <token>`, if present.
fn bearer_token(headers: &HeaderMap) -> Option<Secret> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| Secret::new(token))
}
