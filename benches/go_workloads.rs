//! Go's 24 `sync.Map` benchmark workloads (`../shared/spec/sync-map.md`, "Go's benchmark
//! workloads") for dualmap, dashmap, `parking_lot::RwLock<HashMap>`, `Mutex<HashMap>`,
//! papaya and `scc::HashMap`, all hashing with ahash, plus the frozen `HashMap` ceiling on
//! the three workloads that only read.
//!
//! ```text
//! cargo bench --bench go_workloads                      # everything (about 5 minutes)
//! cargo bench --bench go_workloads -- LoadMostlyHits    # one workload
//! DUALMAP_BENCH_THREADS=1,4 cargo bench --bench go_workloads
//! ```
//!
//! Each benchmark id is `Workload/map/threads`. Criterion's time per iteration is Go's
//! `ns/op`: one iteration is one operation of Go's loop, the operations of a sample are split
//! over the threads (thread `t` works on keys from `t * N` upward, `N` the sample's total),
//! and the time is the wall time from the start barrier to the last thread's end. Threads: 1
//! and `available_parallelism`, or the list in `DUALMAP_BENCH_THREADS`.
//!
//! The workloads are defined once, in `bench/src/workloads.rs`, shared with the
//! `dualmap-bench` harness (`cargo run --release -p dualmap-bench`), which also runs the
//! mixed workloads and the write-scaling benchmark and writes BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;

// The harness's module, compiled here too; this bench uses only Go's workloads from it.
#[allow(dead_code)]
#[path = "../bench/src/workloads.rs"]
mod workloads;

use workloads::{GoWorkload, MapKind};

fn go_workloads(c: &mut Criterion) {
    let threads = workloads::go_thread_counts();
    for workload in GoWorkload::ALL {
        let mut group = c.benchmark_group(workload.name());
        for &threads in &threads {
            for kind in MapKind::ALL {
                if !workload.runs_on(kind) {
                    continue;
                }
                let id = BenchmarkId::new(kind.name(), threads);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| workloads::run_go(kind, workload, threads, iters))
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500))
        .sample_size(10);
    targets = go_workloads
}
criterion_main!(benches);
