//! `create`, `import`, `rotate` and `revoke`.
//!
//! Output contract: the plaintext key is the only text written to stdout,
//! followed by a newline, so `KEY=$(portcullis key create NAME)` captures
//! it. Everything else goes to stderr. A key is printed only after its hash
//! was stored.

use std::io::{self, IsTerminal, Read, Write};

use anyhow::Context;
use chrono::Utc;
use portcullis_api::{ApiKey, ApiKeySpec, KeyScope};

use crate::cli::{CreateArgs, ImportArgs, KeyProperties, RevokeArgs, RotateArgs};
use crate::expiry::{format_time, parse_time};
use crate::rotation::rotate;
use crate::secret::{MAX_IMPORTED_KEY_CHARS, PlaintextKey};
use crate::store::{Store, validate_name};

/// Runs `key create`.
pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let key = PlaintextKey::generate()?;
    let spec = new_spec(&args.properties, &key)?;
    let store = Store::open(&args.target).await?;

    store.create(&ApiKey::new(&args.name, spec.clone())).await?;

    print_key(&key)?;
    eprintln!(
        "Created ApiKey {}/{} (scope {}, fingerprint {}{}).",
        store.namespace(),
        args.name,
        scope_name(spec.scope),
        key.hash().fingerprint(),
        expiry_note(spec.expires_at.as_deref()),
    );
    eprintln!("{}", shown_once_warning());
    Ok(())
}

/// Runs `key import`.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let value = match &args.from_env {
        Some(variable) => read_env(variable)?,
        None => read_stdin()?,
    };
    let key = PlaintextKey::import(value).context("cannot import the key")?;
    let spec = new_spec(&args.properties, &key)?;
    let store = Store::open(&args.target).await?;

    store.create(&ApiKey::new(&args.name, spec.clone())).await?;

    eprintln!(
        "Imported ApiKey {}/{} (scope {}, fingerprint {}{}). Only the key's SHA-256 was stored.",
        store.namespace(),
        args.name,
        scope_name(spec.scope),
        key.hash().fingerprint(),
        expiry_note(spec.expires_at.as_deref()),
    );
    Ok(())
}

/// Runs `key rotate`.
pub async fn rotate_key(args: RotateArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let store = Store::open(&args.target).await?;
    let key = PlaintextKey::generate()?;
    let new_hash = key.hash();

    let updated = store
        .update(&args.name, |spec| {
            rotate(spec, new_hash, args.grace, Utc::now())
        })
        .await?;
    let summary = updated.outcome;

    print_key(&key)?;
    eprintln!(
        "Rotated ApiKey {}/{}: new fingerprint {}.",
        store.namespace(),
        args.name,
        new_hash.fingerprint()
    );
    let old = summary
        .old_fingerprint
        .map(|f| format!("The old key (fingerprint {f})"))
        .unwrap_or_else(|| "The old key".to_owned());
    match summary.old_accepted_until {
        Some(until) => eprintln!(
            "{old} is accepted until {}; move clients to the new key before then.",
            format_time(until)
        ),
        None => eprintln!(
            "{old} and any earlier key still in a grace period stop working as soon as the \
             gateway applies the change."
        ),
    }
    if summary.pruned > 0 {
        eprintln!("Removed {} expired previous key hash(es).", summary.pruned);
    }
    if !updated.after.active {
        eprintln!(
            "warning: the ApiKey is revoked (active: false), so the new key is rejected too \
             until it is reactivated"
        );
    }
    eprintln!("{}", shown_once_warning());
    Ok(())
}

/// Runs `key revoke`.
pub async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let store = Store::open(&args.target).await?;

    let updated = store
        .update(&args.name, |spec| {
            spec.active = false;
            Ok(())
        })
        .await?;

    if updated.before.active {
        eprintln!(
            "Revoked ApiKey {}/{}: requests with it are rejected as soon as the gateway applies \
             the change.",
            store.namespace(),
            args.name
        );
    } else {
        eprintln!(
            "ApiKey {}/{} was already revoked; nothing changed.",
            store.namespace(),
            args.name
        );
    }
    Ok(())
}

/// Builds the spec of a new ApiKey holding `key`'s hash.
fn new_spec(properties: &KeyProperties, key: &PlaintextKey) -> anyhow::Result<ApiKeySpec> {
    let expires_at = match properties.expires {
        Some(expiry) => Some(format_time(
            expiry.resolve(Utc::now()).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    Ok(ApiKeySpec {
        key_hash: key.hash().to_spec_string(),
        previous_key_hashes: Vec::new(),
        scope: KeyScope::from(properties.scope),
        active: true,
        expires_at,
        description: properties.description.clone(),
    })
}

/// Writes the key and a newline to stdout, the only place it ever appears.
fn print_key(key: &PlaintextKey) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{}", key.expose())
        .and_then(|()| stdout.flush())
        .context(
            "the key was stored but could not be written to stdout; \
             run `portcullis key rotate` to get a new one",
        )
}

fn shown_once_warning() -> &'static str {
    "The key was written to stdout. It is shown only this once and cannot be retrieved \
     later; store it now."
}

fn expiry_note(expires_at: Option<&str>) -> String {
    match expires_at.and_then(|t| parse_time(t).ok()) {
        Some(at) => format!(", expires {}", format_time(at)),
        None => String::new(),
    }
}

fn scope_name(scope: KeyScope) -> &'static str {
    match scope {
        KeyScope::Invoke => "invoke",
        KeyScope::Deploy => "deploy",
    }
}

fn read_env(variable: &str) -> anyhow::Result<String> {
    match std::env::var(variable) {
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => {
            anyhow::bail!("environment variable {variable} is not set")
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("environment variable {variable} is not valid UTF-8")
        }
    }
}

/// Reads the key from stdin. A terminal is rejected, because typing or
/// pasting the key there would echo it to the screen and scrollback.
fn read_stdin() -> anyhow::Result<String> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        anyhow::bail!(
            "standard input is a terminal; pipe the key in \
             (`portcullis key import NAME < key.txt`) or use --from-env VAR"
        );
    }

    // Read one byte past the longest accepted key plus a CRLF, so an
    // oversized input is reported as too long without reading it all.
    let limit = (MAX_IMPORTED_KEY_CHARS + 3) as u64;
    let mut bytes = Vec::new();
    stdin
        .lock()
        .take(limit)
        .read_to_end(&mut bytes)
        .context("cannot read the key from standard input")?;
    // Invalid UTF-8 becomes U+FFFD, which the import check rejects as not
    // printable ASCII.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
