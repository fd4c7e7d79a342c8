//! Route matching: `Snapshot::resolve` with 10, 1,000 and 10,000 routes in
//! one tenant. `hit` requests the last route of the table with a captured
//! `:id`; `not_found` requests a path that no route has.
//!
//! Run with `cargo bench -p portcullis-compile --bench matching`.

mod fixtures;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis_compile::{CompileOptions, compile};

fn resolve(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    let sizes: &[usize] = if fixtures::full_run() {
        &[10, 1_000, 10_000]
    } else {
        &[10]
    };
    for &routes in sizes {
        let snapshot = compile(&fixtures::resources(routes, 0), CompileOptions::default()).snapshot;
        assert_eq!(snapshot.route_count(), routes, "every route compiles");

        let hit = format!("/gw/{}/svc{}/items/42", fixtures::NAMESPACE, routes - 1);
        group.bench_with_input(BenchmarkId::new("hit", routes), &hit, |b, path| {
            b.iter(|| {
                let matched = snapshot.resolve(None, black_box(path), &http::Method::GET);
                black_box(matched.is_ok())
            })
        });

        let miss = format!("/gw/{}/svc{}/other/42", fixtures::NAMESPACE, routes - 1);
        group.bench_with_input(BenchmarkId::new("not_found", routes), &miss, |b, path| {
            b.iter(|| {
                let matched = snapshot.resolve(None, black_box(path), &http::Method::GET);
                black_box(matched.is_err())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, resolve);
criterion_main!(benches);
