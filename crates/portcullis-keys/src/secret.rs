//! Plaintext API keys: generation, import checks and hashing.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_compile::KeyHash;

/// Number of random bytes in a generated key.
pub const GENERATED_KEY_BYTES: usize = 32;

/// Minimum length of an imported key, in characters.
pub const MIN_IMPORTED_KEY_CHARS: usize = 32;

/// Maximum length of an imported key, in characters. A value this long is
/// almost certainly the wrong file, not a key.
pub const MAX_IMPORTED_KEY_CHARS: usize = 1024;

/// A plaintext API key.
///
/// `Debug` and `Display` are redacted, so the key cannot reach a log or an
/// error message by accident. [`PlaintextKey::expose`] is the only way to
/// read it, and the commands call it once, to print the new key to stdout.
pub struct PlaintextKey(String);

/// Reason a value cannot be imported as an API key. The messages never
/// contain the value itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    /// The value is empty after removing the trailing newline.
    #[error("the key is empty")]
    Empty,
    /// The value is shorter than [`MIN_IMPORTED_KEY_CHARS`].
    #[error(
        "the key is {length} characters long but must be at least {MIN_IMPORTED_KEY_CHARS}; \
         use `portcullis key create` to generate a strong key instead"
    )]
    TooShort {
        /// Length of the rejected value, in characters.
        length: usize,
    },
    /// The value is longer than [`MAX_IMPORTED_KEY_CHARS`].
    #[error(
        "the key is {length} characters long but must be at most {MAX_IMPORTED_KEY_CHARS}; \
         check that the input is only the key"
    )]
    TooLong {
        /// Length of the rejected value, in characters.
        length: usize,
    },
    /// The value contains a character that cannot be sent in the `X-Api-Key`
    /// header as is.
    #[error(
        "the key contains a character that is not printable ASCII at position {position}; \
         clients send the key in the X-Api-Key header, which only carries printable ASCII"
    )]
    InvalidCharacter {
        /// One-based position of the first invalid character.
        position: usize,
    },
    /// The value starts or ends with a space, which HTTP clients and servers
    /// strip from header values.
    #[error(
        "the key starts or ends with a space, which HTTP strips from header values; \
         remove the space or generate a new key"
    )]
    SurroundingSpace,
}

impl PlaintextKey {
    /// Generates a key from [`GENERATED_KEY_BYTES`] bytes of the operating
    /// system's CSPRNG, encoded as base64url without padding (43 characters).
    pub fn generate() -> anyhow::Result<Self> {
        let mut bytes = [0u8; GENERATED_KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|error| {
            anyhow::anyhow!("failed to read random bytes from the operating system: {error}")
        })?;
        Ok(PlaintextKey(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Checks an existing value and wraps it as a key.
    ///
    /// One trailing newline (`\n` or `\r\n`) is removed first, because values
    /// piped from a file or `echo` usually end with one.
    pub fn import(mut value: String) -> Result<Self, ImportError> {
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }

        if value.is_empty() {
            return Err(ImportError::Empty);
        }
        if let Some(index) = value.chars().position(|c| !(' '..='~').contains(&c)) {
            return Err(ImportError::InvalidCharacter {
                position: index + 1,
            });
        }
        // Only ASCII is left, so the byte length is the character count.
        let length = value.len();
        if length < MIN_IMPORTED_KEY_CHARS {
            return Err(ImportError::TooShort { length });
        }
        if length > MAX_IMPORTED_KEY_CHARS {
            return Err(ImportError::TooLong { length });
        }
        if value.starts_with(' ') || value.ends_with(' ') {
            return Err(ImportError::SurroundingSpace);
        }
        Ok(PlaintextKey(value))
    }

    /// Hashes the key as the data plane does with a presented `X-Api-Key`.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of_key(self.0.as_bytes())
    }

    /// Returns the plaintext, to print it once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextKey([REDACTED])")
    }
}

impl fmt::Display for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_43_base64url_chars() {
        let key = PlaintextKey::generate().unwrap();
        let text = key.expose();

        assert_eq!(text.len(), 43);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "not base64url: {text}"
        );
        assert!(!text.contains('='));
    }

    #[test]
    fn generated_key_decodes_to_32_bytes() {
        let key = PlaintextKey::generate().unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(key.expose()).unwrap();
        assert_eq!(bytes.len(), GENERATED_KEY_BYTES);
    }

    #[test]
    fn generated_keys_differ() {
        let first = PlaintextKey::generate().unwrap();
        let second = PlaintextKey::generate().unwrap();
        assert_ne!(first.expose(), second.expose());
        assert_ne!(first.hash(), second.hash());
    }

    #[test]
    fn generated_key_hash_matches_data_plane() {
        let key = PlaintextKey::generate().unwrap();
        assert_eq!(key.hash(), KeyHash::of_key(key.expose().as_bytes()));
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let key = PlaintextKey::generate().unwrap();
        let debug = format!("{key:?}");
        let display = format!("{key}");
        assert!(!debug.contains(key.expose()));
        assert!(!display.contains(key.expose()));
        assert_eq!(display, "[REDACTED]");
    }

    #[test]
    fn import_accepts_32_chars() {
        let value = "a".repeat(32);
        let key = PlaintextKey::import(value.clone()).unwrap();
        assert_eq!(key.expose(), value);
    }

    #[test]
    fn import_rejects_31_chars() {
        let error = PlaintextKey::import("a".repeat(31)).unwrap_err();
        assert_eq!(error, ImportError::TooShort { length: 31 });
        assert!(error.to_string().contains("at least 32"));
    }

    #[test]
    fn import_trims_one_trailing_newline() {
        let value = "b".repeat(40);
        let unix = PlaintextKey::import(format!("{value}\n")).unwrap();
        let windows = PlaintextKey::import(format!("{value}\r\n")).unwrap();
        assert_eq!(unix.expose(), value);
        assert_eq!(windows.expose(), value);
    }

    #[test]
    fn import_keeps_second_newline() {
        let error = PlaintextKey::import(format!("{}\n\n", "c".repeat(40))).unwrap_err();
        assert_eq!(error, ImportError::InvalidCharacter { position: 41 });
    }

    #[test]
    fn import_newline_does_not_count_toward_length() {
        let error = PlaintextKey::import(format!("{}\n", "d".repeat(31))).unwrap_err();
        assert_eq!(error, ImportError::TooShort { length: 31 });
    }

    #[test]
    fn import_rejects_empty_value() {
        assert_eq!(
            PlaintextKey::import(String::new()).unwrap_err(),
            ImportError::Empty
        );
        assert_eq!(
            PlaintextKey::import("\n".into()).unwrap_err(),
            ImportError::Empty
        );
    }

    #[test]
    fn import_rejects_non_ascii_and_controls() {
        let tab = format!("{}\t{}", "e".repeat(20), "e".repeat(20));
        let accent = format!("{}é", "e".repeat(40));
        assert_eq!(
            PlaintextKey::import(tab).unwrap_err(),
            ImportError::InvalidCharacter { position: 21 }
        );
        assert_eq!(
            PlaintextKey::import(accent).unwrap_err(),
            ImportError::InvalidCharacter { position: 41 }
        );
    }

    #[test]
    fn import_rejects_surrounding_space() {
        let leading = format!(" {}", "f".repeat(40));
        let trailing = format!("{} ", "f".repeat(40));
        assert_eq!(
            PlaintextKey::import(leading).unwrap_err(),
            ImportError::SurroundingSpace
        );
        assert_eq!(
            PlaintextKey::import(trailing).unwrap_err(),
            ImportError::SurroundingSpace
        );
    }

    #[test]
    fn import_rejects_overlong_value() {
        let error = PlaintextKey::import("g".repeat(MAX_IMPORTED_KEY_CHARS + 1)).unwrap_err();
        assert_eq!(
            error,
            ImportError::TooLong {
                length: MAX_IMPORTED_KEY_CHARS + 1
            }
        );
    }

    #[test]
    fn import_error_never_contains_value() {
        let value = "secret-value-that-is-too-short";
        let error = PlaintextKey::import(value.into()).unwrap_err();
        assert!(!error.to_string().contains(value));
    }
}
