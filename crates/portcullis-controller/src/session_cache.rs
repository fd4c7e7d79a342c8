//! A bounded, time-limited cache of bearer session decisions.
//!
//! Entries are keyed by the SHA-256 of the token and the tenant, so the
//! cache never contains a token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_gateway::SessionOutcome;
use sha2::{Digest, Sha256};

/// Maximum number of cached decisions.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;
/// How long an allowed or forbidden decision is reused.
pub(crate) const DECIDED_TTL: Duration = Duration::from_secs(10);
/// How long an invalid-token decision is reused.
pub(crate) const INVALID_TTL: Duration = Duration::from_secs(5);

type CacheKey = ([u8; 32], String);

/// Session decisions by token hash and tenant.
pub(crate) struct SessionCache {
    capacity: usize,
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

struct Entry {
    outcome: SessionOutcome,
    expires: Instant,
}

impl SessionCache {
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the cache key of a token for a tenant.
    pub fn key(token: &str, tenant: &str) -> CacheKey {
        (Sha256::digest(token.as_bytes()).into(), tenant.to_owned())
    }

    /// Returns the cached decision if it has not expired.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<SessionOutcome> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some(entry) if entry.expires > now => Some(entry.outcome.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores a decision. `Unavailable` is never stored, so a backend
    /// failure is retried on the next request.
    pub fn insert(&self, key: CacheKey, outcome: SessionOutcome, now: Instant) {
        let ttl = match outcome {
            SessionOutcome::Allowed { .. } | SessionOutcome::Forbidden { .. } => DECIDED_TTL,
            SessionOutcome::Invalid => INVALID_TTL,
            SessionOutcome::Unavailable => return,
        };

        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.expires > now);
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            // Still full of live entries: drop the one closest to expiry.
            let soonest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.expires)
                .map(|(key, _)| key.clone());
            if let Some(soonest) = soonest {
                entries.remove(&soonest);
            }
        }
        entries.insert(
            key,
            Entry {
                outcome,
                expires: now + ttl,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> SessionOutcome {
        SessionOutcome::Allowed {
            user: "alice".into(),
        }
    }

    #[test]
    fn decisions_expire_by_kind() {
        let cache = SessionCache::new(10);
        let now = Instant::now();
        let good = SessionCache::key("token-a", "acme");
        let bad = SessionCache::key("token-b", "acme");
        cache.insert(good.clone(), allowed(), now);
        cache.insert(bad.clone(), SessionOutcome::Invalid, now);

        let later = now + Duration::from_secs(6);
        assert_eq!(cache.get(&good, later), Some(allowed()));
        assert_eq!(cache.get(&bad, later), None, "invalid expires after 5 s");
        assert_eq!(cache.get(&good, now + Duration::from_secs(11)), None);
    }

    #[test]
    fn unavailable_not_cached() {
        let cache = SessionCache::new(10);
        let now = Instant::now();
        let key = SessionCache::key("token", "acme");
        cache.insert(key.clone(), SessionOutcome::Unavailable, now);
        assert_eq!(cache.get(&key, now), None);
    }

    #[test]
    fn key_depends_on_tenant() {
        let cache = SessionCache::new(10);
        let now = Instant::now();
        cache.insert(SessionCache::key("token", "acme"), allowed(), now);
        assert_eq!(cache.get(&SessionCache::key("token", "beta"), now), None);
    }

    #[test]
    fn size_stays_bounded() {
        let cache = SessionCache::new(100);
        let now = Instant::now();
        for i in 0..1_000 {
            let at = now + Duration::from_millis(i);
            cache.insert(
                SessionCache::key(&format!("token-{i}"), "acme"),
                allowed(),
                at,
            );
        }
        assert_eq!(cache.len(), 100);
        let newest = SessionCache::key("token-999", "acme");
        assert_eq!(
            cache.get(&newest, now + Duration::from_secs(1)),
            Some(allowed())
        );
        let oldest = SessionCache::key("token-0", "acme");
        assert_eq!(cache.get(&oldest, now + Duration::from_secs(1)), None);
    }
}
