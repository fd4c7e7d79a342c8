//! Golden tests: each folder under `tests/golden/` contains `input.yaml`
//! (GatewayRoutes, ApiKeys, EndpointSlices and optionally Services) and
//! `expected.json` (snapshot summary and report). After an intended change,
//! regenerate with:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p portcullis-compile --test golden
//! ```

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use portcullis_api::{ApiKey, GatewayRoute};
use portcullis_compile::{CompileOptions, Resources, compile};
use serde::Deserialize;

/// Fixed compile time, so expiry verdicts do not depend on the clock.
const NOW: &str = "2026-06-01T00:00:00Z";

fn load(path: &Path) -> Resources {
    let text = std::fs::read_to_string(path).unwrap();
    let mut resources = Resources::default();
    let mut services: Vec<Service> = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).unwrap();
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "GatewayRoute" => resources
                .routes
                .push(serde_yaml::from_value::<GatewayRoute>(value).unwrap()),
            "ApiKey" => resources
                .keys
                .push(serde_yaml::from_value::<ApiKey>(value).unwrap()),
            "EndpointSlice" => resources
                .endpoint_slices
                .push(serde_yaml::from_value::<EndpointSlice>(value).unwrap()),
            "Service" => services.push(serde_yaml::from_value(value).unwrap()),
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
    if !services.is_empty() {
        resources.services = Some(services);
    }
    resources
}

fn run_case(dir: &Path) -> Result<(), String> {
    let resources = load(&dir.join("input.yaml"));
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let compiled = compile(&resources, CompileOptions { now });
    let actual = serde_json::to_string_pretty(&serde_json::json!({
        "snapshot": compiled.snapshot.summary(),
        "report": compiled.report,
    }))
    .unwrap()
        + "\n";

    let expected_path = dir.join("expected.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&expected_path, &actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{} differs from the compile output; review and run with UPDATE_GOLDEN=1.\n--- actual ---\n{actual}",
            expected_path.display()
        ))
    }
}

#[test]
fn golden_cases() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("input.yaml").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 3,
        "expected golden cases under {}",
        root.display()
    );

    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
