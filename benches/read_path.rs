//! Read-path timings: `get` hits on a 1,000-key map (u64 keys, ahash everywhere), on one thread
//! and on every core at once over 16 hot keys, for dualmap and its peers in the same run.
//!
//! ```text
//! cargo bench --bench read_path
//! ```
//!
//! The full harness with Go's workloads is a later piece of work; this bench covers the path
//! the core was built for.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const KEYS: u64 = 1_000;
const HOT_KEYS: u64 = 16;
type Hasher = ahash::RandomState;

trait ReadMap: Sync {
    fn hit(&self, key: u64) -> bool;
}

impl ReadMap for dualmap::DualMap<u64, u64> {
    fn hit(&self, key: u64) -> bool {
        self.get(&key).is_some_and(|value| *value == key)
    }
}

impl ReadMap for parking_lot::RwLock<HashMap<u64, u64, Hasher>> {
    fn hit(&self, key: u64) -> bool {
        self.read().get(&key) == Some(&key)
    }
}

impl ReadMap for std::sync::Mutex<HashMap<u64, u64, Hasher>> {
    fn hit(&self, key: u64) -> bool {
        self.lock().unwrap().get(&key) == Some(&key)
    }
}

impl ReadMap for dashmap::DashMap<u64, u64, Hasher> {
    fn hit(&self, key: u64) -> bool {
        self.get(&key).is_some_and(|value| *value == key)
    }
}

impl ReadMap for HashMap<u64, u64, Hasher> {
    fn hit(&self, key: u64) -> bool {
        self.get(&key).is_some_and(|value| *value == key)
    }
}

fn pairs() -> impl Iterator<Item = (u64, u64)> {
    (0..KEYS).map(|key| (key, key))
}

fn maps() -> Vec<(&'static str, Box<dyn ReadMap>)> {
    let dualmap: dualmap::DualMap<u64, u64> = pairs().collect();
    for key in 0..KEYS {
        dualmap.get(&key); // promote: the steady state of a read-mostly map
    }
    vec![
        ("dualmap", Box::new(dualmap)),
        (
            "rwlock-hashmap",
            Box::new(parking_lot::RwLock::new(pairs().collect())),
        ),
        (
            "mutex-hashmap",
            Box::new(std::sync::Mutex::new(pairs().collect())),
        ),
        (
            "dashmap",
            Box::new(pairs().collect::<dashmap::DashMap<_, _, Hasher>>()),
        ),
        (
            "frozen-hashmap",
            Box::new(pairs().collect::<HashMap<_, _, Hasher>>()),
        ),
    ]
}

/// `iters` hits per thread on `threads` threads at once; returns the wall time of the slowest.
fn run_threads(map: &dyn ReadMap, threads: usize, iters: u64, keys: u64) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        assert!(map.hit(black_box((i + thread as u64) % keys)));
                    }
                    start.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    })
}

fn read_path(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let maps = maps();
    let mut single = c.benchmark_group("get_hit_1_thread_1000_keys");
    single.throughput(Throughput::Elements(1));
    for (name, map) in &maps {
        single.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| run_threads(&**map, 1, iters, KEYS))
        });
    }
    single.finish();
    let mut hot = c.benchmark_group(format!("get_hit_{threads}_threads_{HOT_KEYS}_hot_keys"));
    hot.throughput(Throughput::Elements(threads as u64));
    for (name, map) in &maps {
        hot.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| run_threads(&**map, threads, iters, HOT_KEYS))
        });
    }
    hot.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = read_path
}
criterion_main!(benches);
