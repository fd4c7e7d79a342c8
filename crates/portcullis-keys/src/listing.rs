//! `key list`: the ApiKeys of a namespace, with fingerprints and the routes
//! that reference them. Hashes are not secret and may appear; plaintext keys
//! are never stored, so they cannot.

use std::collections::BTreeMap;
use std::io::{self, Write};

use anyhow::Context;
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use portcullis_api::{ApiKey, GatewayRoute, KeyScope};
use portcullis_compile::KeyHash;
use serde::Serialize;

use crate::cli::{ListArgs, OutputFormat};
use crate::expiry::parse_time;
use crate::store::Store;

/// One row of `key list`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyListing {
    /// Name of the ApiKey.
    pub name: String,
    /// Namespace of the ApiKey.
    pub namespace: String,
    /// `invoke` or `deploy`.
    pub scope: KeyScope,
    /// `false` when revoked.
    pub active: bool,
    /// RFC 3339 expiry of the key, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// First 8 hex digits of the current hash; `None` if `keyHash` is
    /// invalid.
    pub fingerprint: Option<String>,
    /// The stored `sha256:<hex>` hash of the current key.
    pub key_hash: String,
    /// Previous hashes not yet expired.
    pub previous_keys: Vec<PreviousListing>,
    /// Routes that list the key in `allowedApiKeyIds`; `None` when the
    /// routes could not be read.
    pub routes: Option<Vec<String>>,
    /// Free text stored with the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A previous hash still accepted after a rotation with a grace period.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviousListing {
    /// First 8 hex digits of the hash; `None` if the hash is invalid.
    pub fingerprint: Option<String>,
    /// RFC 3339 time until which the hash is accepted.
    pub expires_at: String,
}

/// Runs `key list`.
pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.target).await?;
    let keys = store.list_keys().await?;

    // Route names are a convenience: a user who may read ApiKeys but not
    // GatewayRoutes still gets the list.
    let routes = match store.list_routes().await {
        Ok(routes) => Some(routes),
        Err(error) => {
            eprintln!(
                "warning: the ROUTES column is unknown because routes cannot be read: {error}"
            );
            None
        }
    };

    let listings = build_listings(&keys, routes.as_deref(), Utc::now());
    let text = match args.output {
        OutputFormat::Table => render_table(&listings),
        OutputFormat::Json => {
            let mut json = serde_json::to_string_pretty(&listings)?;
            json.push('\n');
            json
        }
        OutputFormat::Yaml => serde_yaml::to_string(&listings)?,
    };

    if listings.is_empty() && args.output == OutputFormat::Table {
        eprintln!("No ApiKeys found in namespace {:?}.", store.namespace());
        return Ok(());
    }
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write to stdout")
}

/// Builds one row per key, sorted by name. `routes` is `None` when the
/// routes could not be read.
pub fn build_listings(
    keys: &[ApiKey],
    routes: Option<&[GatewayRoute]>,
    now: DateTime<Utc>,
) -> Vec<KeyListing> {
    let references = routes.map(references_by_key);

    let mut listings: Vec<KeyListing> = keys
        .iter()
        .map(|key| {
            let name = key.name_any();
            let spec = &key.spec;
            let previous_keys = spec
                .previous_key_hashes
                .iter()
                .filter(|entry| parse_time(&entry.expires_at).is_ok_and(|until| until > now))
                .map(|entry| PreviousListing {
                    fingerprint: fingerprint(&entry.hash),
                    expires_at: entry.expires_at.clone(),
                })
                .collect();
            KeyListing {
                routes: references
                    .as_ref()
                    .map(|r| r.get(&name).cloned().unwrap_or_default()),
                namespace: key.namespace().unwrap_or_default(),
                scope: spec.scope,
                active: spec.active,
                expires_at: spec.expires_at.clone(),
                fingerprint: fingerprint(&spec.key_hash),
                key_hash: spec.key_hash.clone(),
                previous_keys,
                description: spec.description.clone(),
                name,
            }
        })
        .collect();
    listings.sort_by(|a, b| a.name.cmp(&b.name));
    listings
}

/// Maps each key name to the sorted names of the routes whose
/// `allowedApiKeyIds` list it. Routes without an allowlist accept any invoke
/// key of the namespace and are not listed.
fn references_by_key(routes: &[GatewayRoute]) -> BTreeMap<String, Vec<String>> {
    let mut references: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for route in routes {
        for key in route.spec.allowed_api_key_ids.iter().flatten() {
            references
                .entry(key.clone())
                .or_default()
                .push(route.name_any());
        }
    }
    for names in references.values_mut() {
        names.sort();
        names.dedup();
    }
    references
}

fn fingerprint(hash: &str) -> Option<String> {
    KeyHash::parse(hash).ok().map(|h| h.fingerprint())
}

/// Renders aligned columns, as `kubectl get` does.
pub fn render_table(listings: &[KeyListing]) -> String {
    let header = [
        "NAME",
        "SCOPE",
        "ACTIVE",
        "EXPIRES",
        "FINGERPRINT",
        "PREVIOUS",
        "ROUTES",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for listing in listings {
        rows.push(vec![
            listing.name.clone(),
            match listing.scope {
                KeyScope::Invoke => "invoke".into(),
                KeyScope::Deploy => "deploy".into(),
            },
            listing.active.to_string(),
            listing
                .expires_at
                .clone()
                .unwrap_or_else(|| "<none>".into()),
            listing
                .fingerprint
                .clone()
                .unwrap_or_else(|| "<invalid>".into()),
            listing.previous_keys.len().to_string(),
            match &listing.routes {
                Some(routes) if routes.is_empty() => "<none>".into(),
                Some(routes) => routes.join(","),
                None => "<unknown>".into(),
            },
        ]);
    }

    let widths: Vec<usize> = (0..header.len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use portcullis_api::PreviousKeyHash;

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }

    fn key(yaml: &str) -> ApiKey {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn route(name: &str, allowed: Option<&[&str]>) -> GatewayRoute {
        let mut yaml = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: GatewayRoute\n\
             metadata: {{name: {name}, namespace: acme}}\n\
             spec: {{method: GET, path: /{name}, target: {{service: s, port: 80}}}}\n"
        );
        if let Some(allowed) = allowed {
            yaml = yaml.replace(
                "path:",
                &format!("allowedApiKeyIds: [{}], path:", allowed.join(", ")),
            );
        }
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn partner() -> ApiKey {
        let mut key = key(&format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ApiKey\n\
             metadata: {{name: partner, namespace: acme}}\n\
             spec: {{keyHash: '{}', description: Reporting}}\n",
            KeyHash::of_key(b"partner").to_spec_string()
        ));
        key.spec.previous_key_hashes = vec![
            PreviousKeyHash {
                hash: KeyHash::of_key(b"old").to_spec_string(),
                expires_at: "2030-01-01T13:00:00Z".into(),
            },
            PreviousKeyHash {
                hash: KeyHash::of_key(b"older").to_spec_string(),
                expires_at: "2030-01-01T11:00:00Z".into(),
            },
        ];
        key
    }

    #[test]
    fn listing_shows_referencing_routes() {
        let routes = [
            route("b-route", Some(&["partner", "other"])),
            route("a-route", Some(&["partner"])),
            route("open", None),
        ];

        let listings = build_listings(&[partner()], Some(&routes), noon());

        assert_eq!(
            listings[0].routes,
            Some(vec!["a-route".to_owned(), "b-route".to_owned()])
        );
    }

    #[test]
    fn listing_marks_unreadable_routes() {
        let listings = build_listings(&[partner()], None, noon());
        assert_eq!(listings[0].routes, None);
        assert!(render_table(&listings).contains("<unknown>"));
    }

    #[test]
    fn listing_counts_unexpired_previous_keys() {
        let listings = build_listings(&[partner()], Some(&[]), noon());
        assert_eq!(
            listings[0].previous_keys,
            vec![PreviousListing {
                fingerprint: Some(KeyHash::of_key(b"old").fingerprint()),
                expires_at: "2030-01-01T13:00:00Z".into(),
            }]
        );
    }

    #[test]
    fn listing_fields() {
        let listing = &build_listings(&[partner()], Some(&[]), noon())[0];
        assert_eq!(listing.name, "partner");
        assert_eq!(listing.namespace, "acme");
        assert_eq!(listing.scope, KeyScope::Invoke);
        assert!(listing.active);
        assert_eq!(
            listing.fingerprint,
            Some(KeyHash::of_key(b"partner").fingerprint())
        );
        assert_eq!(listing.description.as_deref(), Some("Reporting"));
    }

    #[test]
    fn table_aligns_columns() {
        let listings = build_listings(&[partner()], Some(&[]), noon());
        let table = render_table(&listings);
        let lines: Vec<&str> = table.lines().collect();

        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME      SCOPE    ACTIVE"), "{table}");
        assert_eq!(lines[0].find("SCOPE"), lines[1].find("invoke"));
        assert!(lines[1].ends_with("<none>"), "{table}");
    }

    #[test]
    fn json_uses_camel_case() {
        let listings = build_listings(&[partner()], Some(&[]), noon());
        let json = serde_json::to_value(&listings).unwrap();
        assert!(json[0].get("keyHash").is_some());
        assert!(json[0].get("previousKeys").is_some());
        assert_eq!(json[0]["scope"], "invoke");
    }
}
