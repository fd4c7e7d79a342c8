//! Compile time of large configurations: 10,000 routes with 100,000 keys,
//! and each half alone at two sizes to show how the time grows.
//!
//! Run with `cargo bench -p portcullis-compile --bench compile`. Peak memory
//! of the same compile is measured by the `compile_memory` bench.

mod fixtures;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis_compile::{CompileOptions, compile};

fn compile_sizes(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    let full = fixtures::full_run();
    let cases: &[(&str, usize, usize)] = if full {
        &[
            ("routes", 1_000, 0),
            ("routes", 10_000, 0),
            ("keys", 0, 10_000),
            ("keys", 0, 100_000),
        ]
    } else {
        &[("routes", 10, 0), ("keys", 0, 10)]
    };
    for &(kind, routes, keys) in cases {
        let resources = fixtures::resources(routes, keys);
        group.bench_with_input(
            BenchmarkId::new(kind, routes.max(keys)),
            &resources,
            |b, resources| b.iter_with_large_drop(|| compile(resources, CompileOptions::default())),
        );
    }

    let (routes, keys) = if full { (10_000, 100_000) } else { (10, 100) };
    let resources = fixtures::resources(routes, keys);
    group.bench_function(format!("routes_{routes}_keys_{keys}"), |b| {
        b.iter_with_large_drop(|| compile(&resources, CompileOptions::default()))
    });
    group.finish();
}

criterion_group!(benches, compile_sizes);
criterion_main!(benches);
