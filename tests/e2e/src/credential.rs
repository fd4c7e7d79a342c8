//! API keys and bearer tokens, kept out of every message the suite prints.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// An API key or a bearer token. `Debug` prints `[REDACTED]`, and the value
/// is reachable only through [`Credential::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// Generates an API key as `portcullis key create` does: 32 random bytes
    /// from the operating system, base64url without padding.
    pub fn generate() -> Credential {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
        Credential(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Wraps a token obtained elsewhere, such as from `kubectl create token`.
    pub fn from_secret(value: String) -> Credential {
        Credential(value)
    }

    /// Returns `sha256:<64 hex>`, the `keyHash` of an ApiKey for this key.
    pub fn key_hash(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// Returns the first 8 hex digits of the hash, as ApiKey status shows.
    pub fn fingerprint(&self) -> String {
        self.key_hash()["sha256:".len().."sha256:".len() + 8].to_owned()
    }

    /// Returns the secret value, to put in a request or a kubeconfig.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Credential([REDACTED])")
    }
}

/// Replaces every occurrence of each secret in `text` with `[REDACTED]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "[REDACTED]")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_43_characters() {
        let key = Credential::generate();
        assert_eq!(key.expose().len(), 43);
        assert_ne!(key, Credential::generate());
    }

    #[test]
    fn key_hash_has_crd_format() {
        let hash = Credential::from_secret("abc".into()).key_hash();
        assert_eq!(
            hash,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fingerprint_is_first_8_hex() {
        let key = Credential::from_secret("abc".into());
        assert_eq!(key.fingerprint(), "ba7816bf");
    }

    #[test]
    fn debug_hides_value() {
        let key = Credential::from_secret("very-secret".into());
        assert!(!format!("{key:?}").contains("very-secret"));
    }

    #[test]
    fn redact_replaces_every_secret() {
        let text = redact("a=one b=two c=one", &["one".into(), "two".into()]);
        assert_eq!(text, "a=[REDACTED] b=[REDACTED] c=[REDACTED]");
    }
}
