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
//! callgrind runs). Keys are `u64`; maps hold 1,000 keys (the remove case: one key per
//! operation); every map uses ahash. `iterate` is counted per key visited and `rebuild` (a
//! dualmap dirty-map cycle: one new key, its removal and a promotion) per key of the map. The
//! counts include the loop around each operation
//! (about 10 instructions: the key computation and a check of the result).

use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;

const KEYS: u64 = 1_000;
const OPS: u64 = 100_000;
/// Iterations over the whole map for the `iterate` case (counted per key visited).
const PASSES: u64 = 100;
type Hasher = ahash::RandomState;

/// One map under test. Each method runs `ops` operations in a loop compiled for that map.
trait Map {
    fn get_hits(&self, ops: u64);
    fn get_misses(&self, ops: u64);
    fn overwrites(&self, ops: u64);
    fn inserts_of_new_keys(&self, ops: u64);
    fn removes(&self, ops: u64);
    fn iterate(&self, passes: u64);
    /// `cycles` dirty-map rebuilds (counted per key copied); only dualmap has a dirty map.
    fn rebuilds(&self, cycles: u64) {
        let _ = cycles;
        unreachable!("only dualmap rebuilds a dirty map")
    }
}

/// The loop shared by every map's lookups: `ops` lookups of `keys`, each checked.
#[inline(always)]
fn lookups(ops: u64, first_key: u64, expect: bool, mut lookup: impl FnMut(u64) -> bool) {
    for i in 0..ops {
        assert_eq!(lookup(black_box(first_key + i % KEYS)), expect);
    }
}

#[inline(always)]
fn writes(ops: u64, first_key: u64, mut write: impl FnMut(u64)) {
    for i in 0..ops {
        write(black_box(first_key + i % (ops.max(KEYS))));
    }
}

type DualMap = dualmap::DualMap<u64, u64>;

impl Map for DualMap {
    fn get_hits(&self, ops: u64) {
        lookups(ops, 0, true, |k| self.get(&k).is_some_and(|v| *v == k));
    }
    fn get_misses(&self, ops: u64) {
        lookups(ops, KEYS, false, |k| self.get(&k).is_some());
    }
    fn overwrites(&self, ops: u64) {
        writes(ops, 0, |k| drop(self.insert(k % KEYS, k)));
    }
    fn inserts_of_new_keys(&self, ops: u64) {
        writes(ops, KEYS, |k| drop(self.insert(k, k)));
    }
    fn removes(&self, ops: u64) {
        writes(ops, 0, |k| assert!(self.remove(&k).is_some()));
    }
    fn iterate(&self, passes: u64) {
        for _ in 0..passes {
            assert_eq!(self.iter().map(|(k, v)| *k ^ *v).sum::<u64>(), 0);
        }
    }
    /// Go's dirty-map cycle (W1): the first new key after a promotion copies the snapshot's
    /// entries into a new dirty map; taking the key out again and iterating promotes that
    /// map, so every cycle rebuilds from the same `KEYS` entries.
    fn rebuilds(&self, cycles: u64) {
        for cycle in 0..cycles {
            let key = KEYS + cycle;
            assert!(self.insert(key, key).is_none());
            assert!(self.remove(&key).is_some());
            drop(self.iter());
        }
    }
}

/// dualmap read through a `Reader` (reads only).
struct ViaReader(DualMap);

impl Map for ViaReader {
    fn get_hits(&self, ops: u64) {
        let mut reader = self.0.reader();
        lookups(ops, 0, true, |k| reader.get(&k) == Some(&k));
    }
    fn get_misses(&self, ops: u64) {
        let mut reader = self.0.reader();
        lookups(ops, KEYS, false, |k| reader.get(&k).is_some());
    }
    fn overwrites(&self, _: u64) {
        unreachable!("a Reader only reads")
    }
    fn inserts_of_new_keys(&self, _: u64) {
        unreachable!("a Reader only reads")
    }
    fn removes(&self, _: u64) {
        unreachable!("a Reader only reads")
    }
    fn iterate(&self, _: u64) {
        unreachable!("a Reader only reads")
    }
}

type RwLockMap = parking_lot::RwLock<HashMap<u64, u64, Hasher>>;

impl Map for RwLockMap {
    fn get_hits(&self, ops: u64) {
        lookups(ops, 0, true, |k| self.read().get(&k) == Some(&k));
    }
    fn get_misses(&self, ops: u64) {
        lookups(ops, KEYS, false, |k| self.read().contains_key(&k));
    }
    fn overwrites(&self, ops: u64) {
        writes(ops, 0, |k| {
            self.write().insert(k % KEYS, k);
        });
    }
    fn inserts_of_new_keys(&self, ops: u64) {
        writes(ops, KEYS, |k| {
            self.write().insert(k, k);
        });
    }
    fn removes(&self, ops: u64) {
        writes(ops, 0, |k| assert!(self.write().remove(&k).is_some()));
    }
    fn iterate(&self, passes: u64) {
        for _ in 0..passes {
            assert_eq!(self.read().iter().map(|(k, v)| k ^ v).sum::<u64>(), 0);
        }
    }
}

type DashMap = dashmap::DashMap<u64, u64, Hasher>;

impl Map for DashMap {
    fn get_hits(&self, ops: u64) {
        lookups(ops, 0, true, |k| self.get(&k).is_some_and(|v| *v == k));
    }
    fn get_misses(&self, ops: u64) {
        lookups(ops, KEYS, false, |k| self.contains_key(&k));
    }
    fn overwrites(&self, ops: u64) {
        writes(ops, 0, |k| {
            self.insert(k % KEYS, k);
        });
    }
    fn inserts_of_new_keys(&self, ops: u64) {
        writes(ops, KEYS, |k| {
            self.insert(k, k);
        });
    }
    fn removes(&self, ops: u64) {
        writes(ops, 0, |k| assert!(self.remove(&k).is_some()));
    }
    fn iterate(&self, passes: u64) {
        for _ in 0..passes {
            assert_eq!(self.iter().map(|e| e.key() ^ e.value()).sum::<u64>(), 0);
        }
    }
}

/// An unsynchronised `HashMap` never written after setup: the floor for reads.
struct Frozen(HashMap<u64, u64, Hasher>);

impl Map for Frozen {
    fn get_hits(&self, ops: u64) {
        lookups(ops, 0, true, |k| self.0.get(&k) == Some(&k));
    }
    fn get_misses(&self, ops: u64) {
        lookups(ops, KEYS, false, |k| self.0.contains_key(&k));
    }
    fn overwrites(&self, _: u64) {
        unreachable!("the frozen map is read-only")
    }
    fn inserts_of_new_keys(&self, _: u64) {
        unreachable!("the frozen map is read-only")
    }
    fn removes(&self, _: u64) {
        unreachable!("the frozen map is read-only")
    }
    fn iterate(&self, passes: u64) {
        for _ in 0..passes {
            assert_eq!(self.0.iter().map(|(k, v)| k ^ v).sum::<u64>(), 0);
        }
    }
}

const MAPS: [&str; 5] = [
    "dualmap",
    "dualmap-reader",
    "rwlock-hashmap",
    "dashmap",
    "frozen-hashmap",
];
const OPERATIONS: [&str; 7] = [
    "get_hit",
    "get_miss",
    "overwrite",
    "insert_new",
    "remove",
    "iterate",
    "rebuild",
];

/// Which (map, operation) pairs exist: the reader and the frozen map only read, and only
/// dualmap has a dirty map to rebuild.
fn supported(map: &str, operation: &str) -> bool {
    match map {
        _ if operation == "rebuild" => map == "dualmap",
        "dualmap-reader" => operation.starts_with("get"),
        "frozen-hashmap" => operation.starts_with("get") || operation == "iterate",
        _ => true,
    }
}

fn build(name: &str, operation: &str) -> Box<dyn Map> {
    let keys = if operation == "remove" { OPS } else { KEYS };
    let pairs = || (0..keys).map(|key| (key, key));
    let dualmap = || {
        let map: DualMap = pairs().collect();
        // The steady state of a read-mostly map: one pass of gets promotes every key.
        for key in 0..keys {
            map.get(&key);
        }
        assert_eq!(map.stats().dirty_len, None, "the setup promotes every key");
        map
    };
    match name {
        "dualmap" => Box::new(dualmap()),
        "dualmap-reader" => Box::new(ViaReader(dualmap())),
        "rwlock-hashmap" => Box::new(RwLockMap::new(pairs().collect())),
        "dashmap" => Box::new(pairs().collect::<DashMap>()),
        "frozen-hashmap" => Box::new(Frozen(pairs().collect())),
        other => panic!("unknown map {other}; one of {MAPS:?}"),
    }
}

/// The only function whose instructions callgrind counts (`--toggle-collect`).
#[inline(never)]
fn measured(map: &dyn Map, operation: &str) {
    match operation {
        "get_hit" => map.get_hits(OPS),
        "get_miss" => map.get_misses(OPS),
        "overwrite" => map.overwrites(OPS),
        "insert_new" => map.inserts_of_new_keys(OPS),
        "remove" => map.removes(OPS),
        "iterate" => map.iterate(PASSES),
        "rebuild" => map.rebuilds(OPS / KEYS),
        other => panic!("unknown operation {other}; one of {OPERATIONS:?}"),
    }
}

/// Operations counted by one run of `operation`.
fn operations(operation: &str) -> u64 {
    match operation {
        "iterate" => PASSES * KEYS,
        "rebuild" => OPS / KEYS * KEYS,
        _ => OPS,
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
    if !output.status.success() {
        return None;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let collected = stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some(collected / operations(operation) as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [map, operation] = args.as_slice() {
        // Building a dualmap reads every key once, which also registers the thread with
        // arc-swap outside the measured function.
        measured(&*build(map, operation), operation);
        return;
    }
    println!("instructions per operation (callgrind), u64 keys, {KEYS}-key maps");
    print!("{:<16}", "map");
    for operation in OPERATIONS {
        print!(" {operation:>11}");
    }
    println!();
    for map in MAPS {
        print!("{map:<16}");
        for operation in OPERATIONS {
            let cell = if supported(map, operation) {
                count(map, operation).map_or("failed".to_string(), |n| format!("{n:.1}"))
            } else {
                "-".to_string()
            };
            print!(" {cell:>11}");
        }
        println!();
    }
}
