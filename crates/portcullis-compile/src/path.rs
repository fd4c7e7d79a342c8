//! Route path patterns and request path normalization.
//!
//! A pattern such as `/customers/:id/files/*rest` becomes the router syntax
//! `/customers/{id}/files/{*rest}`. A request path is matched after decoding
//! percent-encoded unreserved characters (RFC 3986 section 2.3) and nothing
//! else, so `%2F` stays an encoded byte and can never create a new segment.

use std::fmt;

/// A validated route path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// The pattern as written in the GatewayRoute.
    pub source: String,
    /// The same pattern in `matchit` syntax.
    pub router_syntax: String,
}

/// Reason a path pattern or a request path is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The pattern or path does not start with `/`.
    MissingLeadingSlash,
    /// A `.` or `..` segment, literal or percent-encoded.
    DotSegment,
    /// `:` or `*` with no parameter name.
    EmptyParameterName,
    /// The same parameter name appears twice.
    DuplicateParameter(String),
    /// `*name` is only allowed as the last segment.
    WildcardNotLast,
    /// A character that cannot appear in a path pattern.
    InvalidCharacter(char),
    /// A `%` not followed by two hex digits.
    InvalidPercentEncoding,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::MissingLeadingSlash => f.write_str("path must start with `/`"),
            PathError::DotSegment => f.write_str("path must not contain `.` or `..` segments"),
            PathError::EmptyParameterName => {
                f.write_str("`:` and `*` must be followed by a parameter name")
            }
            PathError::DuplicateParameter(name) => {
                write!(f, "parameter `{name}` appears more than once")
            }
            PathError::WildcardNotLast => {
                f.write_str("a `*name` wildcard must be the last segment")
            }
            PathError::InvalidCharacter(c) => write!(f, "character {c:?} is not allowed in a path"),
            PathError::InvalidPercentEncoding => {
                f.write_str("`%` must be followed by two hex digits")
            }
        }
    }
}

impl std::error::Error for PathError {}

impl RoutePattern {
    /// Validates a GatewayRoute path and converts it to router syntax.
    pub fn parse(source: &str) -> Result<Self, PathError> {
        let rest = source
            .strip_prefix('/')
            .ok_or(PathError::MissingLeadingSlash)?;
        let segments: Vec<&str> = rest.split('/').collect();
        let mut router_syntax = String::with_capacity(source.len() + 8);
        let mut names: Vec<&str> = Vec::new();

        for (index, segment) in segments.iter().enumerate() {
            router_syntax.push('/');
            let is_last = index + 1 == segments.len();

            if let Some(name) = segment.strip_prefix(':') {
                check_parameter_name(name, &mut names)?;
                router_syntax.push('{');
                router_syntax.push_str(name);
                router_syntax.push('}');
            } else if let Some(name) = segment.strip_prefix('*') {
                if !is_last {
                    return Err(PathError::WildcardNotLast);
                }
                check_parameter_name(name, &mut names)?;
                router_syntax.push_str("{*");
                router_syntax.push_str(name);
                router_syntax.push('}');
            } else {
                let literal = decode_unreserved(segment)?;
                if literal == "." || literal == ".." {
                    return Err(PathError::DotSegment);
                }
                if let Some(c) = literal
                    .chars()
                    .find(|c| matches!(c, '{' | '}' | '?' | '#') || c.is_whitespace())
                {
                    return Err(PathError::InvalidCharacter(c));
                }
                router_syntax.push_str(&literal);
            }
        }

        Ok(RoutePattern {
            source: source.to_owned(),
            router_syntax,
        })
    }
}

fn check_parameter_name<'a>(name: &'a str, seen: &mut Vec<&'a str>) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::EmptyParameterName);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(PathError::InvalidCharacter(c));
    }
    if seen.contains(&name) {
        return Err(PathError::DuplicateParameter(name.to_owned()));
    }
    seen.push(name);
    Ok(())
}

/// Normalizes a request path for matching.
///
/// Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
/// decoded; every other encoding is kept as sent, with its hex digits
/// upper-cased. A path with a `.` or `..` segment, literal or encoded, is
/// rejected rather than resolved into another route.
pub fn normalize_request_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::MissingLeadingSlash);
    }
    let normalized = decode_unreserved(raw)?;
    if normalized
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(PathError::DotSegment);
    }
    Ok(normalized)
}

/// Returns true when a captured parameter carries an encoded `/`, which
/// would let one segment stand for several.
pub fn contains_encoded_slash(value: &str) -> bool {
    value
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] == b'F' || w[2] == b'f'))
}

fn decode_unreserved(input: &str) -> Result<String, PathError> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte != b'%' {
            // Multi-byte UTF-8 characters are copied whole.
            let width = utf8_width(byte);
            out.push_str(&input[index..index + width]);
            index += width;
            continue;
        }

        let (Some(high), Some(low)) = (
            bytes.get(index + 1).and_then(|b| hex_value(*b)),
            bytes.get(index + 2).and_then(|b| hex_value(*b)),
        ) else {
            return Err(PathError::InvalidPercentEncoding);
        };
        let decoded = high * 16 + low;
        if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
            out.push(decoded as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(high)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(low)]));
        }
        index += 3;
    }
    Ok(out)
}

fn utf8_width(first_byte: u8) -> usize {
    match first_byte {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pattern_converts_params_and_wildcard() {
        let pattern = RoutePattern::parse("/customers/:customerId/files/*rest").unwrap();
        assert_eq!(
            pattern.router_syntax,
            "/customers/{customerId}/files/{*rest}"
        );
    }

    #[test]
    fn pattern_rejects_invalid_forms() {
        assert_eq!(
            RoutePattern::parse("x"),
            Err(PathError::MissingLeadingSlash)
        );
        assert_eq!(RoutePattern::parse("/a/../b"), Err(PathError::DotSegment));
        assert_eq!(RoutePattern::parse("/a/%2e/b"), Err(PathError::DotSegment));
        assert_eq!(
            RoutePattern::parse("/a/:"),
            Err(PathError::EmptyParameterName)
        );
        assert_eq!(
            RoutePattern::parse("/*a/b"),
            Err(PathError::WildcardNotLast)
        );
        assert_eq!(
            RoutePattern::parse("/:id/:id"),
            Err(PathError::DuplicateParameter("id".into()))
        );
        assert_eq!(
            RoutePattern::parse("/a{b}"),
            Err(PathError::InvalidCharacter('{'))
        );
    }

    #[test]
    fn request_path_decodes_unreserved_only() {
        assert_eq!(normalize_request_path("/a%62c").unwrap(), "/abc");
        assert_eq!(normalize_request_path("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(normalize_request_path("/%7euser").unwrap(), "/~user");
        assert_eq!(normalize_request_path("/a%20b").unwrap(), "/a%20b");
    }

    #[test]
    fn request_path_rejects_dot_segments() {
        for path in [
            "/a/../b",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/%2E",
            "/..",
            "/a/.%2e",
        ] {
            assert_eq!(
                normalize_request_path(path),
                Err(PathError::DotSegment),
                "{path}"
            );
        }
        assert!(normalize_request_path("/a/.hidden/b").is_ok());
        assert!(normalize_request_path("/a/b..c").is_ok());
    }

    #[test]
    fn request_path_rejects_bad_percent() {
        assert_eq!(
            normalize_request_path("/a%zz"),
            Err(PathError::InvalidPercentEncoding)
        );
        assert_eq!(
            normalize_request_path("/a%2"),
            Err(PathError::InvalidPercentEncoding)
        );
    }

    #[test]
    fn encoded_slash_detection() {
        assert!(contains_encoded_slash("a%2Fb"));
        assert!(contains_encoded_slash("a%2fb"));
        assert!(!contains_encoded_slash("a%20b"));
    }

    proptest! {
        #[test]
        fn normalized_path_never_has_dot_segments(raw in "/[a-z%./2eE]{0,24}") {
            if let Ok(path) = normalize_request_path(&raw) {
                prop_assert!(path.split('/').all(|s| s != "." && s != ".."));
                // Normalizing twice changes nothing.
                prop_assert_eq!(normalize_request_path(&path).unwrap(), path);
            }
        }
    }
}
