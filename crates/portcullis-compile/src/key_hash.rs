use std::fmt;

use sha2::{Digest, Sha256};

/// SHA-256 of an API key.
///
/// The data plane hashes a presented key once and looks the hash up in a
/// map, so lookup cost does not depend on the number of keys or on how much
/// of a key matches. `Debug` and `Display` print only the fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

/// Why a `sha256:<hex>` string is not a valid key hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHashError;

impl fmt::Display for KeyHashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected `sha256:` followed by 64 lowercase hex digits")
    }
}

impl std::error::Error for KeyHashError {}

impl KeyHash {
    /// Hashes a key as presented by a client.
    pub fn of_key(key: &[u8]) -> Self {
        KeyHash(Sha256::digest(key).into())
    }

    /// Parses the `sha256:<64 lowercase hex>` form stored in an ApiKey.
    pub fn parse(text: &str) -> Result<Self, KeyHashError> {
        let hex_digits = text.strip_prefix("sha256:").ok_or(KeyHashError)?;
        if hex_digits.len() != 64 || hex_digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(KeyHashError);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| KeyHashError)?;
        Ok(KeyHash(bytes))
    }

    /// Formats the hash as stored in an ApiKey: `sha256:<64 hex>`.
    pub fn to_spec_string(&self) -> String {
        format!("sha256:{}", hex::encode(self.0))
    }

    /// First 8 hex digits of the hash: enough to tell keys apart in status
    /// and logs, useless for guessing the key.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.fingerprint())
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips() {
        let hash = KeyHash::of_key(b"example");
        assert_eq!(KeyHash::parse(&hash.to_spec_string()), Ok(hash));
    }

    #[test]
    fn parse_rejects_bad_forms() {
        let hex = "a".repeat(64);
        assert!(KeyHash::parse(&hex).is_err());
        assert!(KeyHash::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(KeyHash::parse(&format!("sha256:{}", &hex[..63])).is_err());
        assert!(KeyHash::parse(&format!("sha256:{}g", &hex[..63])).is_err());
        assert!(KeyHash::parse(&format!("sha256:{hex}")).is_ok());
    }

    #[test]
    fn debug_prints_fingerprint_only() {
        let hash = KeyHash::of_key(b"example");
        let full = hash.to_spec_string();
        let debug = format!("{hash:?}");
        assert!(!debug.contains(&full[7..]));
        assert_eq!(debug, format!("KeyHash({})", &full[7..15]));
    }
}
