//! Measures the heap used by a compile of 10,000 routes and 100,000 keys
//! with a counting global allocator. It prints the peak while `compile`
//! runs and what the compiled snapshot and report keep afterwards. Both
//! exclude the heap that the input resources already use.
//!
//! Run with `cargo bench -p portcullis-compile --bench compile_memory`.
//! Under `cargo test --benches` it runs a 100-route compile instead, so the
//! test suite stays fast.

mod fixtures;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use portcullis_compile::{CompileOptions, compile};

/// The system allocator, counting live bytes and their maximum.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only
// updates two counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grow(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grow(new_size);
        }
        moved
    }
}

fn grow(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mebibytes(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let (routes, keys) = if fixtures::full_run() {
        (10_000, 100_000)
    } else {
        (100, 1_000)
    };

    let resources = fixtures::resources(routes, keys);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);

    let started = Instant::now();
    let compiled = compile(&resources, CompileOptions::default());
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let retained = LIVE.load(Ordering::Relaxed) - before;

    assert_eq!(
        compiled.snapshot.route_count(),
        routes,
        "every route compiles"
    );
    assert_eq!(
        compiled.snapshot.key_hash_count(),
        keys,
        "every key compiles"
    );
    println!(
        "compile_memory: routes={routes} keys={keys} time_ms={:.0} peak_heap_mib={:.1} retained_heap_mib={:.1} input_heap_mib={:.1}",
        elapsed.as_secs_f64() * 1000.0,
        mebibytes(peak),
        mebibytes(retained),
        mebibytes(before),
    );
}
