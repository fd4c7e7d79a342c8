//! Rotation of an ApiKey spec: the new hash replaces the current one, the
//! old hash optionally stays accepted for a grace period, and expired
//! previous hashes are pruned. No IO, so both targets share it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use portcullis_api::{ApiKeySpec, PreviousKeyHash};
use portcullis_compile::KeyHash;

use crate::expiry::{add_duration, format_time, parse_time};

/// Maximum length of `previousKeyHashes`, as the CRD schema enforces.
pub const MAX_PREVIOUS_KEY_HASHES: usize = 16;

/// Changes made by a rotation, for the message printed to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSummary {
    /// Fingerprint of the replaced hash, if it was a valid hash.
    pub old_fingerprint: Option<String>,
    /// Time until which the replaced hash stays accepted, with `--grace`.
    pub old_accepted_until: Option<DateTime<Utc>>,
    /// Previous hashes removed because they had expired or their
    /// `expiresAt` was not an RFC 3339 time.
    pub pruned: usize,
    /// Previous hashes still accepted after the rotation, including the one
    /// kept by `--grace`.
    pub previous_remaining: usize,
}

/// Removes previous hashes that expired at or before `now`, and those whose
/// `expiresAt` cannot be parsed (the compiler rejects the whole ApiKey for
/// those). Returns how many were removed.
pub fn prune_expired(spec: &mut ApiKeySpec, now: DateTime<Utc>) -> usize {
    let before = spec.previous_key_hashes.len();
    spec.previous_key_hashes
        .retain(|entry| parse_time(&entry.expires_at).is_ok_and(|until| until > now));
    before - spec.previous_key_hashes.len()
}

/// Replaces the spec's key hash with `new_hash`.
///
/// Without `grace` every earlier hash is dropped, the ones still in a grace
/// period included, so only the new key works as soon as the data plane
/// applies the change. With `grace` the old hash is appended to
/// `previousKeyHashes` with `expiresAt = now + grace`, and hashes kept by
/// earlier rotations stay until their own `expiresAt`. A revoked key cannot
/// keep its old hash, because reactivating it would bring the old key back.
/// On error the spec is left unchanged.
pub fn rotate(
    spec: &mut ApiKeySpec,
    new_hash: KeyHash,
    grace: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<RotationSummary, String> {
    let mut next = spec.clone();
    let summary = rotate_in_place(&mut next, new_hash, grace, now)?;
    *spec = next;
    Ok(summary)
}

fn rotate_in_place(
    spec: &mut ApiKeySpec,
    new_hash: KeyHash,
    grace: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<RotationSummary, String> {
    let new_hash_text = new_hash.to_spec_string();
    let old_hash_text = std::mem::replace(&mut spec.key_hash, new_hash_text.clone());
    let old_fingerprint = KeyHash::parse(&old_hash_text).ok().map(|h| h.fingerprint());

    let pruned = prune_expired(spec, now);
    spec.previous_key_hashes
        .retain(|entry| entry.hash != new_hash_text && entry.hash != old_hash_text);

    let mut old_accepted_until = None;
    if grace.is_none() {
        spec.previous_key_hashes.clear();
    }
    if let Some(grace) = grace {
        if !spec.active {
            return Err(
                "the ApiKey is revoked (active: false), so its old key cannot be kept for a \
                 grace period; rotate without --grace"
                    .to_owned(),
            );
        }
        let until = add_duration(now, grace).map_err(|e| format!("--grace: {e}"))?;
        if KeyHash::parse(&old_hash_text).is_err() {
            return Err(
                "the current keyHash is not a valid `sha256:<64 hex>` value, so it cannot be kept \
                 for a grace period; rotate without --grace"
                    .to_owned(),
            );
        }
        if spec.previous_key_hashes.len() >= MAX_PREVIOUS_KEY_HASHES {
            return Err(format!(
                "the ApiKey already keeps {MAX_PREVIOUS_KEY_HASHES} previous hashes, the maximum; \
                 wait until one expires or rotate without --grace"
            ));
        }
        spec.previous_key_hashes.push(PreviousKeyHash {
            hash: old_hash_text,
            expires_at: format_time(until),
        });
        old_accepted_until = Some(until);
    }

    Ok(RotationSummary {
        old_fingerprint,
        old_accepted_until,
        pruned,
        previous_remaining: spec.previous_key_hashes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use portcullis_api::KeyScope;

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }

    fn spec_with_hash(key: &[u8]) -> ApiKeySpec {
        ApiKeySpec {
            key_hash: KeyHash::of_key(key).to_spec_string(),
            previous_key_hashes: Vec::new(),
            scope: KeyScope::Invoke,
            active: true,
            expires_at: None,
            description: None,
        }
    }

    fn previous(key: &[u8], expires_at: &str) -> PreviousKeyHash {
        PreviousKeyHash {
            hash: KeyHash::of_key(key).to_spec_string(),
            expires_at: expires_at.into(),
        }
    }

    #[test]
    fn rotate_without_grace_drops_old_hash() {
        let mut spec = spec_with_hash(b"old");
        let new = KeyHash::of_key(b"new");

        let summary = rotate(&mut spec, new, None, noon()).unwrap();

        assert_eq!(spec.key_hash, new.to_spec_string());
        assert!(spec.previous_key_hashes.is_empty());
        assert_eq!(
            summary.old_fingerprint,
            Some(KeyHash::of_key(b"old").fingerprint())
        );
        assert_eq!(summary.old_accepted_until, None);
    }

    #[test]
    fn rotate_with_grace_keeps_old_hash() {
        let mut spec = spec_with_hash(b"old");
        let new = KeyHash::of_key(b"new");

        let summary = rotate(&mut spec, new, Some(Duration::from_secs(90)), noon()).unwrap();

        assert_eq!(spec.key_hash, new.to_spec_string());
        assert_eq!(
            spec.previous_key_hashes,
            vec![previous(b"old", "2030-01-01T12:01:30Z")]
        );
        assert_eq!(
            summary.old_accepted_until,
            Some(Utc.with_ymd_and_hms(2030, 1, 1, 12, 1, 30).unwrap())
        );
        assert_eq!(summary.previous_remaining, 1);
    }

    #[test]
    fn rotate_without_grace_drops_grace_hashes() {
        let mut spec = spec_with_hash(b"second");
        spec.previous_key_hashes = vec![previous(b"first", "2030-01-01T13:00:00Z")];

        let summary = rotate(&mut spec, KeyHash::of_key(b"third"), None, noon()).unwrap();

        assert!(spec.previous_key_hashes.is_empty());
        assert_eq!(summary.previous_remaining, 0);
    }

    #[test]
    fn rotate_with_grace_keeps_unexpired_hashes() {
        let mut spec = spec_with_hash(b"second");
        spec.previous_key_hashes = vec![previous(b"first", "2030-01-01T13:00:00Z")];

        rotate(
            &mut spec,
            KeyHash::of_key(b"third"),
            Some(Duration::from_secs(60)),
            noon(),
        )
        .unwrap();

        assert_eq!(
            spec.previous_key_hashes,
            vec![
                previous(b"first", "2030-01-01T13:00:00Z"),
                previous(b"second", "2030-01-01T12:01:00Z"),
            ]
        );
    }

    #[test]
    fn rotate_revoked_key_rejects_grace() {
        let mut spec = spec_with_hash(b"current");
        spec.active = false;
        let original = spec.clone();

        let error = rotate(
            &mut spec,
            KeyHash::of_key(b"next"),
            Some(Duration::from_secs(60)),
            noon(),
        )
        .unwrap_err();

        assert!(error.contains("revoked"), "{error}");
        assert_eq!(spec, original);
    }

    #[test]
    fn rotate_prunes_expired_previous_hashes() {
        let mut spec = spec_with_hash(b"current");
        spec.previous_key_hashes = vec![
            previous(b"expired", "2030-01-01T11:59:59Z"),
            previous(b"expires-now", "2030-01-01T12:00:00Z"),
            previous(b"unparseable", "tomorrow"),
            previous(b"valid", "2030-01-02T00:00:00Z"),
        ];

        let summary = rotate(
            &mut spec,
            KeyHash::of_key(b"next"),
            Some(Duration::from_secs(60)),
            noon(),
        )
        .unwrap();

        assert_eq!(summary.pruned, 3);
        assert_eq!(
            spec.previous_key_hashes,
            vec![
                previous(b"valid", "2030-01-02T00:00:00Z"),
                previous(b"current", "2030-01-01T12:01:00Z"),
            ]
        );
    }

    #[test]
    fn prune_keeps_future_entries_in_order() {
        let mut spec = spec_with_hash(b"current");
        spec.previous_key_hashes = vec![
            previous(b"a", "2030-01-03T00:00:00Z"),
            previous(b"b", "2030-01-01T00:00:00Z"),
            previous(b"c", "2030-01-02T00:00:00Z"),
        ];

        assert_eq!(prune_expired(&mut spec, noon()), 1);
        assert_eq!(
            spec.previous_key_hashes,
            vec![
                previous(b"a", "2030-01-03T00:00:00Z"),
                previous(b"c", "2030-01-02T00:00:00Z"),
            ]
        );
    }

    #[test]
    fn rotate_rejects_seventeenth_previous_hash() {
        let mut spec = spec_with_hash(b"current");
        spec.previous_key_hashes = (0..MAX_PREVIOUS_KEY_HASHES)
            .map(|i| previous(format!("old-{i}").as_bytes(), "2030-01-02T00:00:00Z"))
            .collect();
        let original = spec.clone();

        let error = rotate(
            &mut spec,
            KeyHash::of_key(b"next"),
            Some(Duration::from_secs(60)),
            noon(),
        )
        .unwrap_err();

        assert!(error.contains("16 previous hashes"), "{error}");
        assert_eq!(spec, original);
    }

    #[test]
    fn rotate_without_grace_allowed_at_maximum() {
        let mut spec = spec_with_hash(b"current");
        spec.previous_key_hashes = (0..MAX_PREVIOUS_KEY_HASHES)
            .map(|i| previous(format!("old-{i}").as_bytes(), "2030-01-02T00:00:00Z"))
            .collect();

        let summary = rotate(&mut spec, KeyHash::of_key(b"next"), None, noon()).unwrap();

        assert_eq!(summary.previous_remaining, 0);
    }

    #[test]
    fn rotate_preserves_other_fields() {
        let mut spec = spec_with_hash(b"old");
        spec.scope = KeyScope::Deploy;
        spec.active = false;
        spec.expires_at = Some("2031-01-01T00:00:00Z".into());
        spec.description = Some("partner".into());

        rotate(&mut spec, KeyHash::of_key(b"new"), None, noon()).unwrap();

        assert_eq!(spec.scope, KeyScope::Deploy);
        assert!(!spec.active);
        assert_eq!(spec.expires_at.as_deref(), Some("2031-01-01T00:00:00Z"));
        assert_eq!(spec.description.as_deref(), Some("partner"));
    }

    #[test]
    fn rotate_never_lists_current_hash_as_previous() {
        let mut spec = spec_with_hash(b"old");
        spec.previous_key_hashes = vec![previous(b"new", "2030-01-02T00:00:00Z")];
        let new = KeyHash::of_key(b"new");

        rotate(&mut spec, new, Some(Duration::from_secs(60)), noon()).unwrap();

        assert!(
            spec.previous_key_hashes
                .iter()
                .all(|entry| entry.hash != new.to_spec_string())
        );
    }
}
