//! Instructions per operation, counted by valgrind's callgrind: stable single-thread costs
//! that timings on a shared machine cannot give. Runs with no arguments:
//!
//! ```text
//! cargo run --release --example instructions
//! ```
//!
//! With no arguments it re-runs itself under `valgrind --tool=callgrind` once per (map,
//! operation), counting only the instructions inside `measured`, and prints a table of
//! instructions per operation. `instructions MAP OP` runs one case directly (that is what
//! callgrind runs). Keys are `u64`; the map holds 1,000 keys; every map uses ahash.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;

const KEYS: u64 = 1_000;
const OPS: u64 = 100_000;
type Hasher = ahash::RandomState;

/// One map under test, behind the operations measured.
trait Map: Sync {
    fn get_hit(&self, key: u64) -> bool;
    fn insert_existing(&self, key: u64);
}

impl Map for dualmap::DualMap<u64, u64> {
    fn get_hit(&self, key: u64) -> bool {
        self.get(&key).is_some_and(|value| *value == key)
    }
    fn insert_existing(&self, key: u64) {
        self.insert(key, key);
    }
}

impl Map for parking_lot::RwLock<HashMap<u64, u64, Hasher>> {
    fn get_hit(&self, key: u64) -> bool {
        self.read().get(&key) == Some(&key)
    }
    fn insert_existing(&self, key: u64) {
        self.write().insert(key, key);
    }
}

impl Map for dashmap::DashMap<u64, u64, Hasher> {
    fn get_hit(&self, key: u64) -> bool {
        self.get(&key).is_some_and(|value| *value == key)
    }
    fn insert_existing(&self, key: u64) {
        self.insert(key, key);
    }
}

/// An unsynchronised `HashMap` that is never written after setup: the floor for reads.
struct Frozen(HashMap<u64, u64, Hasher>);

impl Map for Frozen {
    fn get_hit(&self, key: u64) -> bool {
        self.0.get(&key) == Some(&key)
    }
    fn insert_existing(&self, _key: u64) {
        unreachable!("the frozen map is read-only")
    }
}

const MAPS: [&str; 4] = ["dualmap", "rwlock-hashmap", "dashmap", "frozen-hashmap"];
const OPERATIONS: [&str; 2] = ["get_hit", "insert_existing"];

fn filled<M: FromIterator<(u64, u64)>>() -> M {
    (0..KEYS).map(|key| (key, key)).collect()
}

fn build(name: &str) -> Box<dyn Map> {
    match name {
        "dualmap" => {
            let map: dualmap::DualMap<u64, u64> = filled();
            // Make every key lock-free, as in a read-mostly steady state: one pass of gets
            // promotes the dirty map.
            for key in 0..KEYS {
                map.get(&key);
            }
            assert_eq!(map.stats().dirty_len, None, "the setup promotes every key");
            Box::new(map)
        }
        "rwlock-hashmap" => Box::new(parking_lot::RwLock::new(filled::<HashMap<_, _, Hasher>>())),
        "dashmap" => Box::new(filled::<dashmap::DashMap<_, _, Hasher>>()),
        "frozen-hashmap" => Box::new(Frozen(filled())),
        other => panic!("unknown map {other}; one of {MAPS:?}"),
    }
}

/// The only function whose instructions callgrind counts (`--toggle-collect`).
#[inline(never)]
fn measured(map: &dyn Map, operation: &str) {
    run(map, operation, OPS);
}

fn run(map: &dyn Map, operation: &str, ops: u64) {
    match operation {
        "get_hit" => {
            for i in 0..ops {
                assert!(map.get_hit(black_box(i % KEYS)));
            }
        }
        "insert_existing" => {
            for i in 0..ops {
                map.insert_existing(black_box(i % KEYS));
            }
        }
        other => panic!("unknown operation {other}; one of {OPERATIONS:?}"),
    }
}

fn count(map: &str, operation: &str) -> Option<f64> {
    let me = std::env::current_exe().expect("own path");
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg("--toggle-collect=*measured*")
        .arg(&me)
        .args([map, operation])
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let collected = stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some(collected / OPS as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [map, operation] = args.as_slice() {
        let map_under_test = build(map);
        run(&*map_under_test, operation, 1_000); // warm up: thread registration, caches
        measured(&*map_under_test, operation);
        return;
    }
    println!("instructions per operation (callgrind), u64 keys, {KEYS}-key map, {OPS} ops each");
    println!("{:<16} {:>10} {:>16}", "map", "get_hit", "insert_existing");
    for map in MAPS {
        let cell = |operation| match (map, operation) {
            ("frozen-hashmap", "insert_existing") => "-".to_string(),
            _ => count(map, operation).map_or("n/a".to_string(), |n| format!("{n:.1}")),
        };
        println!(
            "{map:<16} {:>10} {:>16}",
            cell("get_hit"),
            cell("insert_existing")
        );
    }
}
