//! The authentication decision for one request on an allowlisted api-key
//! route, with 10, 10,000 and 100,000 keys in the snapshot: a valid key, an
//! unknown key and no key. `key_hash` and `key_lookup` split the valid-key
//! case into its two costs, SHA-256 of the presented key and the map lookup.
//!
//! Run with `cargo bench -p portcullis-gateway --bench auth`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use portcullis_api::{ApiKey, GatewayRoute};
use portcullis_compile::{CompileOptions, KeyHash, Resources, Snapshot, compile};
use portcullis_gateway::auth::authenticate;
use serde_json::json;

/// Key presented by the valid-key cases; its ApiKey is named `bench`.
const VALID_KEY: &str = "bench-valid-key-0000000000000000000000000";
/// A well-formed key that no ApiKey has.
const UNKNOWN_KEY: &str = "bench-unknown-key-00000000000000000000000";

fn api_key(name: &str, plaintext: &str) -> ApiKey {
    serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "ApiKey",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"keyHash": KeyHash::of_key(plaintext.as_bytes()).to_spec_string()}
    }))
    .expect("valid ApiKey")
}

/// Compiles a synced snapshot with the route `GET /bench` allowlisting
/// `bench`, the key `bench` and `keys - 1` other keys of the same namespace.
fn snapshot(keys: usize) -> Snapshot {
    let route: GatewayRoute = serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "GatewayRoute",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "method": "GET",
            "path": "/bench",
            "allowedApiKeyIds": ["bench"],
            "target": {"service": "up", "port": 80}
        }
    }))
    .expect("valid GatewayRoute");
    let mut api_keys = vec![api_key("bench", VALID_KEY)];
    api_keys.extend((1..keys).map(|i| api_key(&format!("key-{i}"), &format!("other-key-{i:031}"))));

    let resources = Resources {
        routes: vec![route],
        keys: api_keys,
        ..Resources::default()
    };
    let mut snapshot = compile(&resources, CompileOptions::default()).snapshot;
    snapshot.synced = true;
    assert_eq!(snapshot.key_hash_count(), keys, "every key compiles");
    snapshot
}

fn headers(key: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static("*/*"));
    if let Some(key) = key {
        headers.insert("x-api-key", HeaderValue::from_str(key).expect("ASCII key"));
    }
    headers
}

/// Polls `future` once and returns its output. The api-key path of
/// `authenticate` never awaits, so one poll completes it.
fn run_ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the api-key path of authenticate awaited"),
    }
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("authenticate");
    let cases = [
        ("valid_key", Some(VALID_KEY), true),
        ("unknown_key", Some(UNKNOWN_KEY), false),
        ("missing_key", None, false),
    ];
    // `cargo bench` passes `--bench`. Under `cargo test --benches` each
    // case runs once in a debug build, so only the smallest snapshot is built.
    let sizes: &[usize] = if std::env::args().any(|arg| arg == "--bench") {
        &[10, 10_000, 100_000]
    } else {
        &[10]
    };
    for &keys in sizes {
        let snapshot = snapshot(keys);
        let route = snapshot
            .resolve(None, "/gw/default/bench", &http::Method::GET)
            .expect("route compiles")
            .route
            .clone();
        for (name, key, accepted) in cases {
            let headers = headers(key);
            let now = Utc::now();
            let result = run_ready(authenticate(&snapshot, &route, &headers, None, now));
            assert_eq!(result.is_ok(), accepted, "{name} with {keys} keys");

            group.bench_function(BenchmarkId::new(name, keys), |b| {
                b.iter(|| {
                    let result = run_ready(authenticate(
                        black_box(&snapshot),
                        &route,
                        black_box(&headers),
                        None,
                        now,
                    ));
                    black_box(result.is_ok())
                })
            });
        }

        let hash = KeyHash::of_key(VALID_KEY.as_bytes());
        group.bench_function(BenchmarkId::new("key_lookup", keys), |b| {
            b.iter(|| black_box(snapshot.key(black_box(&hash)).is_some()))
        });
    }
    group.bench_function("key_hash", |b| {
        b.iter(|| KeyHash::of_key(black_box(VALID_KEY.as_bytes())))
    });
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
