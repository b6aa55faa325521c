//! A cost model of every map: instructions and cache lines per operation, counted by
//! valgrind's callgrind. Timings on a shared machine vary from run to run; these counts do
//! not, so they show what an operation costs on one thread, and why. Needs valgrind:
//!
//! ```text
//! cargo run --release --example instructions                      # 1,000 and 1,000,000 keys
//! cargo run --release --example instructions -- --sizes 1000,50000
//! cargo run --release --example instructions -- --quick           # a check that all cases run
//! cargo run --release --example instructions -- --csv cost.csv    # also write the numbers as CSV
//! cargo run --release --example instructions -- --breakdown dualmap --sizes 1000  # where they go
//! ```
//!
//! Flags: `--sizes N,...` the map sizes (default 1000,1000000); `--quick` sizes 1000 and
//! 10000 with 2,000 operations per case instead of 100,000 (for CI: it checks only that every
//! case runs); `--csv PATH` also writes `map,operation,keys,ops,instructions,lines` rows, the
//! costs per operation of the table (`ops`: how many operations were counted); `--breakdown
//! MAP` splits each of MAP's operations' instructions by the part of the code that runs them
//! (`breakdown.rs`; it also needs binutils' `addr2line`) instead of printing the table.
//!
//! The program re-runs itself under `valgrind --tool=callgrind --cache-sim=yes` once per
//! (map, size), as many at a time as the machine has cores. That run builds the map once
//! (most of its time: a 1,000,000-key map takes far longer to build under valgrind than any
//! operation takes) and then runs every operation the map supports, one after another, each
//! in its own call of `measured`. Callgrind zeroes its counters as that call begins
//! (`--zero-before`) and writes them out as it returns (`--dump-after`), so its Nth dump holds
//! the Nth operation alone; what runs between the calls (the setup, and putting the map back
//! as the next operation expects it) is in no dump. `instructions MAP KEYS [OPS]` runs one
//! map's operations directly; that is what callgrind runs.
//!
//! Each cell of the table is `instructions / lines` per operation:
//!
//! * instructions: instructions executed (callgrind's `Ir`).
//! * lines: L1 data read misses (`D1mr`) in callgrind's cache model with a fixed geometry
//!   (32 KiB 8-way L1 caches, an 8 MiB 16-way last-level cache, 64-byte lines), so the
//!   numbers do not depend on the host. On a map far larger than the cache, such as the
//!   1,000,000-key maps, this is a deterministic proxy for the cache lines an operation must
//!   fetch from memory one after another (the table's slot, then what it points to), which
//!   dominate its time there. On a 1,000-key map it shows how much of the map the 32 KiB L1
//!   cache holds: near 0 for a `HashMap` of `u64`s, not for maps with an allocation per key.
//!
//! Keys are `u64` and values equal their keys; every map uses ahash, with fixed seeds, so two
//! runs of the same build print the same numbers. Maps hold `KEYS` keys (`--sizes`);
//! dualmap's are settled (every key promoted to the lock-free snapshot), the steady state of
//! a read-mostly map. Lookups, overwrites and removes visit the keys in a
//! scattered order (a stride of about 0.618 × `KEYS`), so that entries allocated one after
//! another, which sit next to each other in memory, do not share cache lines between
//! consecutive operations.
//!
//! One run measures all the operations of its map, in the order of `Operation::ORDER`, so
//! that each finds the map as if it had been built for that operation alone: holding the
//! keys `0..KEYS`, each with itself as its value (`overwrite` stores each key's own value
//! again), with nothing left over from an earlier operation for it to pay for (`Map::settle`
//! frees or finishes that, uncounted). The reads come first, as they change nothing; then
//! `rebuild`, which copies the snapshot's table as it is; then `remove`, whose keys are put
//! back, uncounted, after it; then `overwrite`; and `insert_new` last, as it grows the map.
//! Removes and overwrites leave the values they meet at new addresses, away from their
//! entries, so `remove` comes before `overwrite` (at 1,000 keys both meet every key) and
//! takes keys that `overwrite` does not (`each_removed_key`) where the map has enough.
//!
//! The simulated caches are not flushed between operations: an operation finds in them what
//! the one before it left, where a run of its own would find what building the map left.
//! `lines` counts misses of the L1 cache, which holds 512 lines, so this shows only in short
//! runs (`remove` at 1,000 keys: 1,000 operations), by about 0.1 line per operation at most;
//! flushing the caches (reading a large buffer first) made such runs dearer than either, by
//! up to 0.45 line per operation. The operations, each checked so that the compiler cannot
//! drop it:
//!
//! * `get_hit`, `get_miss` (keys `KEYS..2 × KEYS`), `overwrite` (an existing key),
//!   `insert_new` (distinct keys never in the map; includes the map's growth and, for
//!   dualmap, the dirty-map rebuild of its first new key, amortized over the operations, so
//!   this cell depends on how many operations there are per key), `remove` (distinct
//!   existing keys, so at most `KEYS` operations);
//! * `iterate`: per key visited, over whole passes of the map, each map's cheapest full walk
//!   (dualmap's `for_each`, the others' iterators);
//! * `rebuild` (dualmap only): one dirty-map cycle (a new key per read/dirty pair, its
//!   removal and a promotion), per key of the map copied; fresh keys every cycle, so the
//!   tombstones they leave gather until a rebuild expunges them (`CycleKeys`).
//!
//! The first five include the loop around the operation: the key's computation, a
//! `black_box` and the loop's counter. The `loop` line of the table is that loop alone
//! (8 instructions and no lines); subtract it for the cost of the operation itself.
//!
//! Maps: dualmap (and dualmap read through a `Reader`, reads only), dashmap, a
//! `parking_lot::RwLock` and a `std::sync::Mutex` around a `HashMap`, papaya (pinned per
//! operation, as a user would), scc, and a `HashMap` nobody writes (reads and `iterate`
//! only), the floor for reads.

mod breakdown;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::IsTerminal;
use std::path::Path;
use std::process::{exit, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Operations per case (remove: at most one per key of the map).
const OPS: u64 = 100_000;
const SIZES: [u64; 2] = [1_000, 1_000_000];
const QUICK_OPS: u64 = 2_000;
const QUICK_SIZES: [u64; 2] = [1_000, 10_000];
/// The cache model: size, associativity and line size of each cache, fixed so that the line
/// counts do not depend on the host.
const CACHES: [&str; 3] = ["--I1=32768,8,64", "--D1=32768,8,64", "--LL=8388608,16,64"];
type Hasher = ahash::RandomState;
/// Every map's hasher: ahash with fixed seeds, so that every run puts the keys in the same
/// buckets and counts the same probes (`RandomState::new` seeds from the OS, and the counts
/// then vary by a few percent from run to run).
const HASHER: Hasher = Hasher::with_seeds(1, 2, 3, 4);

/// One map under test, as its users call it. Each method does one operation; the loops
/// around them are shared (`operate`), so every map pays for the same loop. The impls of the
/// per-operation methods, and the getters' closures, are `#[inline(always)]`: inlined into
/// the loop, as into a user's code, they add no call that a user's build would not make.
///
/// Every method but `settle` defaults to a panic: `supported` keeps each map to the
/// operations it has.
trait Map {
    /// The map's get, as a closure: dualmap's `Reader` gets through `&mut` and keeps its
    /// snapshot between gets, so the closure owns one, a local of the loop as in a user's
    /// code; every other map gets through `&self`.
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        |_| unsupported()
    }
    /// Inserts or overwrites; returns the previous value.
    fn insert(&self, key: u64, value: u64) -> Option<u64> {
        let _ = (key, value);
        unsupported()
    }
    /// Inserts a key that is not in the map; false if it was there.
    #[inline(always)]
    fn insert_new(&self, key: u64) -> bool {
        self.insert(key, key).is_none()
    }
    /// Removes `key`; returns its value.
    fn remove(&self, key: u64) -> Option<u64> {
        let _ = key;
        unsupported()
    }
    /// Calls `visit` with every key and value.
    fn for_each(&self, visit: impl FnMut(u64, u64)) {
        let _ = visit;
        unsupported()
    }
    /// One dirty-map cycle of the whole map (only dualmap has a dirty map): every key
    /// copied once.
    fn rebuild(&self) {
        unsupported()
    }
    /// Prepares, uncounted, the next `cycles` calls of `rebuild`.
    fn prepare_rebuilds(&self, cycles: u64) {
        let _ = cycles;
        unsupported()
    }
    /// Brings the map, uncounted, to the state every operation starts from: settled, with
    /// nothing left pending by an earlier operation that the next one would pay for. Only
    /// dualmap and papaya have such state.
    fn settle(&self) {}
}

fn unsupported() -> ! {
    unreachable!("`supported` rules this operation out for this map")
}

type DualMap = dualmap::DualMap<u64, u64, Hasher>;

/// Fresh keys for the dirty-map cycles (`rebuild`) of the (one) dualmap this process
/// measures: per cycle one key per read/dirty pair, each the first new key of its pair in its
/// set, so that its insert rebuilds that pair's dirty map. No key is used twice: a removed key
/// stays in its pair as a tombstone, which rebuilds carry along until more than one entry in
/// 8 of the pair is one, and storing such a key again would refill its tombstone without a
/// rebuild. Found uncounted (`prepare`) on a map of their own with the same hasher and pair
/// count, every pair of which has a snapshot to rebuild from: a key's pair follows from its
/// hash alone.
struct CycleKeys {
    finder: DualMap,
    candidates: std::ops::RangeFrom<u64>,
    ready: VecDeque<Vec<u64>>,
}

impl CycleKeys {
    fn get() -> &'static Mutex<CycleKeys> {
        static KEYS: OnceLock<Mutex<CycleKeys>> = OnceLock::new();
        KEYS.get_or_init(|| {
            let finder = DualMap::with_hasher(HASHER);
            for key in 0..4096 {
                finder.insert(key, key);
            }
            drop(finder.iter());
            Mutex::new(CycleKeys {
                finder,
                candidates: u64::MAX / 2..,
                ready: VecDeque::new(),
            })
        })
    }

    /// Finds key sets for `cycles` more cycles of `map` than are ready.
    fn prepare(map: &DualMap, cycles: u64) {
        let mut keys = Self::get().lock().expect("not poisoned");
        let pairs = keys.finder.stats().pairs;
        assert_eq!(
            pairs,
            map.stats().pairs,
            "the finder pairs keys as the map does"
        );
        for _ in 0..cycles {
            let mut set = Vec::with_capacity(pairs);
            while set.len() < pairs {
                let key = keys.candidates.next().expect("enough candidates");
                let rebuilds = keys.finder.stats().dirty_rebuilds;
                assert!(keys.finder.insert(key, key).is_none());
                if keys.finder.stats().dirty_rebuilds > rebuilds {
                    set.push(key);
                }
            }
            drop(keys.finder.iter());
            keys.ready.push_back(set);
        }
    }

    /// The keys of the next cycle.
    fn next() -> Vec<u64> {
        let mut keys = Self::get().lock().expect("not poisoned");
        keys.ready.pop_front().expect("prepared")
    }
}

impl Map for DualMap {
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        #[inline(always)]
        |key| self.get(&key).map(|value| *value)
    }
    #[inline(always)]
    fn insert(&self, key: u64, value: u64) -> Option<u64> {
        DualMap::insert(self, key, value).map(|previous| *previous)
    }
    #[inline(always)]
    fn remove(&self, key: u64) -> Option<u64> {
        DualMap::remove(self, &key).map(|value| *value)
    }
    fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        DualMap::for_each(self, |key, value| visit(*key, *value));
    }
    /// Go's dirty-map cycle (W1) in every read/dirty pair: the first new key of a pair after
    /// its promotion copies the pair's snapshot into a new dirty map; removing the keys again
    /// and iterating promotes those maps. Each cycle leaves one tombstone per pair, which
    /// later rebuilds carry until they are more than one entry in 8 of the pair; the one
    /// that finds that many expunges them all (at 1,000 keys, about every 16th cycle).
    fn rebuild(&self) {
        dirty_cycle(self, false);
    }
    fn prepare_rebuilds(&self, cycles: u64) {
        CycleKeys::prepare(self, cycles);
    }
    /// Iterating an amended map promotes its dirty map at once (one lock, no copy); the
    /// snapshot's load also registers the thread with arc-swap, so that no operation counts it.
    /// The values that overwrites and removes retired are freed as the next snapshot is
    /// published, which would charge them to the next operation: a dirty-map cycle whose
    /// removed values are handed to their epochs (by `stats`) before its promotion publishes
    /// two snapshots and frees them all here instead.
    fn settle(&self) {
        drop(self.iter());
        CycleKeys::prepare(self, 1);
        dirty_cycle(self, true);
        let stats = self.stats();
        assert_eq!(stats.dirty_len, None, "every key is promoted");
        assert_eq!(stats.retired, 0, "every displaced value is freed");
    }
}

/// One dirty-map cycle of `map` (see `rebuild`); `hand_over` also hands the batches of
/// retired values to their epochs (with `stats`) before the promotion, which then frees them.
fn dirty_cycle(map: &DualMap, hand_over: bool) {
    for key in CycleKeys::next() {
        assert!(DualMap::insert(map, key, key).is_none());
        assert!(DualMap::remove(map, &key).is_some());
    }
    if hand_over {
        map.stats();
    }
    drop(map.iter());
}

/// dualmap read through a `Reader` (a cached snapshot; its hits take no guard): reads only.
struct ViaReader(DualMap);

impl Map for ViaReader {
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        let mut reader = self.0.reader();
        #[inline(always)]
        move |key| reader.get(&key).copied()
    }
    fn settle(&self) {
        self.0.settle();
    }
}

type DashMap = dashmap::DashMap<u64, u64, Hasher>;

impl Map for DashMap {
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        #[inline(always)]
        |key| self.get(&key).map(|value| *value)
    }
    #[inline(always)]
    fn insert(&self, key: u64, value: u64) -> Option<u64> {
        DashMap::insert(self, key, value)
    }
    #[inline(always)]
    fn remove(&self, key: u64) -> Option<u64> {
        DashMap::remove(self, &key).map(|(_, value)| value)
    }
    fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        for pair in self.iter() {
            visit(*pair.key(), *pair.value());
        }
    }
}

type RwLockMap = parking_lot::RwLock<HashMap<u64, u64, Hasher>>;

impl Map for RwLockMap {
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        #[inline(always)]
        |key| self.read().get(&key).copied()
    }
    #[inline(always)]
    fn insert(&self, key: u64, value: u64) -> Option<u64> {
        self.write().insert(key, value)
    }
    #[inline(always)]
    fn remove(&self, key: u64) -> Option<u64> {
        self.write().remove(&key)
    }
    fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        for (&key, &value) in self.read().iter() {
            visit(key, value);
        }
    }
}

type MutexMap = std::sync::Mutex<HashMap<u64, u64, Hasher>>;

impl Map for MutexMap {
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        #[inline(always)]
        |key| self.lock().unwrap().get(&key).copied()
    }
    #[inline(always)]
    fn insert(&self, key: u64, value: u64) -> Option<u64> {
        self.lock().unwrap().insert(key, value)
    }
    #[inline(always)]
    fn remove(&self, key: u64) -> Option<u64> {
        self.lock().unwrap().remove(&key)
    }
    fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        for (&key, &value) in self.lock().unwrap().iter() {
            visit(key, value);
        }
    }
}

type Papaya = papaya::HashMap<u64, u64, Hasher>;

impl Map for Papaya {
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        #[inline(always)]
        |key| self.pin().get(&key).copied()
    }
    #[inline(always)]
    fn insert(&self, key: u64, value: u64) -> Option<u64> {
        self.pin().insert(key, value).copied()
    }
    #[inline(always)]
    fn remove(&self, key: u64) -> Option<u64> {
        self.pin().remove(&key).copied()
    }
    fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        for (&key, &value) in self.pin().iter() {
            visit(key, value);
        }
    }
    /// Finishes a resize in progress (an iterator waits for one): papaya reuses no removed
    /// key's slot before its next resize, so putting back the keys that `remove` took out
    /// fills new slots, which may start one that the next operation would help finish.
    fn settle(&self) {
        let _ = self.pin().iter();
    }
}

type Scc = scc::HashMap<u64, u64, Hasher>;

impl Map for Scc {
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        #[inline(always)]
        |key| self.read_sync(&key, |_, value| *value)
    }
    #[inline(always)]
    fn insert(&self, key: u64, value: u64) -> Option<u64> {
        self.upsert_sync(key, value)
    }
    #[inline(always)]
    fn insert_new(&self, key: u64) -> bool {
        self.insert_sync(key, key).is_ok()
    }
    #[inline(always)]
    fn remove(&self, key: u64) -> Option<u64> {
        self.remove_sync(&key).map(|(_, value)| value)
    }
    fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        self.iter_sync(|&key, &value| {
            visit(key, value);
            true
        });
    }
}

/// A `HashMap` that nobody writes after setup, read with no synchronisation: the floor for
/// reads.
struct Frozen(HashMap<u64, u64, Hasher>);

impl Map for Frozen {
    fn getter(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
        #[inline(always)]
        |key| self.0.get(&key).copied()
    }
    fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        for (&key, &value) in &self.0 {
            visit(key, value);
        }
    }
}

/// No map at all, for the `loop` pseudo-operation, which only runs the loop.
struct NoMap;

impl Map for NoMap {}

const MAPS: [&str; 8] = [
    "dualmap",
    "dualmap-reader",
    "dashmap",
    "rwlock-hashmap",
    "mutex-hashmap",
    "papaya",
    "scc",
    "frozen-hashmap",
];
/// The pseudo-map of the `loop` pseudo-operation.
const LOOP: &str = "loop";

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    GetHit,
    GetMiss,
    Overwrite,
    InsertNew,
    Remove,
    Iterate,
    Rebuild,
    /// The loop of the first five, around no operation.
    Loop,
}

impl Operation {
    /// The table's columns, in order.
    const COLUMNS: [Operation; 7] = [
        Operation::GetHit,
        Operation::GetMiss,
        Operation::Overwrite,
        Operation::InsertNew,
        Operation::Remove,
        Operation::Iterate,
        Operation::Rebuild,
    ];

    /// The order in which one run measures a map's operations, so that each finds the map as
    /// if built for it alone (the module docs say why this one). `rebuild` must come before
    /// `insert_new`: it copies the snapshot's table as it is, buckets and all, and would copy
    /// the table `insert_new` grew.
    const ORDER: [Operation; 8] = [
        Operation::GetHit,
        Operation::GetMiss,
        Operation::Iterate,
        Operation::Rebuild,
        Operation::Remove,
        Operation::Overwrite,
        Operation::InsertNew,
        Operation::Loop,
    ];

    fn name(self) -> &'static str {
        match self {
            Operation::GetHit => "get_hit",
            Operation::GetMiss => "get_miss",
            Operation::Overwrite => "overwrite",
            Operation::InsertNew => "insert_new",
            Operation::Remove => "remove",
            Operation::Iterate => "iterate",
            Operation::Rebuild => "rebuild",
            Operation::Loop => "loop",
        }
    }

    /// Operations counted by one run with `ops` operations on a `keys`-key map: keys visited
    /// for `iterate`, keys copied for `rebuild`.
    fn counted(self, keys: u64, ops: u64) -> u64 {
        match self {
            Operation::Remove => ops.min(keys),
            Operation::Iterate | Operation::Rebuild => passes(keys, ops) * keys,
            _ => ops,
        }
    }
}

/// Passes over the map (`iterate`) or rebuilds of it (`rebuild`): enough to visit `ops` keys,
/// and at least one.
fn passes(keys: u64, ops: u64) -> u64 {
    ops.div_ceil(keys)
}

/// The operations one run measures on `map`, in the order it measures them.
fn operations(map: &str) -> Vec<Operation> {
    Operation::ORDER
        .into_iter()
        .filter(|&operation| supported(map, operation))
        .collect()
}

/// Which (map, operation) pairs exist: the reader and the frozen map only read, only dualmap
/// has a dirty map to rebuild, and the loop runs on no map.
fn supported(map: &str, operation: Operation) -> bool {
    match (map, operation) {
        (LOOP, operation) => operation == Operation::Loop,
        (_, Operation::Loop) => false,
        (_, Operation::Rebuild) => map == "dualmap",
        ("dualmap-reader", operation) => {
            matches!(operation, Operation::GetHit | Operation::GetMiss)
        }
        ("frozen-hashmap", operation) => matches!(
            operation,
            Operation::GetHit | Operation::GetMiss | Operation::Iterate
        ),
        _ => true,
    }
}

/// A stride through `0..range` that visits every number once per `range` steps: about
/// 0.618 × `range` (consecutive keys land far apart, and the golden ratio spreads the later
/// ones evenly), made coprime with `range` so that the steps form a permutation.
fn stride(range: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let mut stride = (range as f64 * 0.618_033_988_749_895) as u64 | 1;
    while gcd(stride, range) != 1 {
        stride += 2;
    }
    stride
}

/// The loop around every operation but `iterate` and `rebuild`: calls `body` `ops` times
/// with keys `offset + k`, k running over `0..range` in the scattered order of `stride`,
/// from its `skip`th number on (and around again when `ops > range`). The key goes through
/// `black_box`, so the compiler knows nothing of it.
#[inline(always)]
fn each_key(ops: u64, offset: u64, range: u64, skip: u64, mut body: impl FnMut(u64)) {
    let stride = stride(range);
    let mut k = (u128::from(skip) * u128::from(stride) % u128::from(range)) as u64;
    for _ in 0..ops {
        body(black_box(offset + k));
        k += stride;
        if k >= range {
            k -= range;
        }
    }
}

/// The keys `remove` takes out, and `measure_all` puts back, in order: `ops` keys at most,
/// from where the `ops` keys of `overwrite` end in the scattered order. Both operations
/// replace the values they meet with new allocations, elsewhere in memory than the ones
/// the map was built with; on a map of twice `ops` keys or more, each thus meets only
/// values as built, as on a map built for it alone.
#[inline(always)]
fn each_removed_key(keys: u64, ops: u64, body: impl FnMut(u64)) {
    each_key(ops.min(keys), 0, keys, ops, body);
}

/// The function whose calls callgrind counts, one dump per call, with everything it calls
/// (`--zero-before` and `--dump-after` with `MEASURED`, its name). The map comes as a `&M`
/// argument, as into a user's function: the compiler may then keep what a `&` promises
/// unchanged (a frozen map's table, say) in registers across the loop. The work is in
/// `operate`, not here, so that no closure is named `measured::{{closure}}`.
#[inline(never)]
fn measured<M: Map>(map: &M, operation: Operation, keys: u64, ops: u64) {
    operate(map, operation, keys, ops);
}

/// `ops` operations (see `Operation::counted`) on `map`, which holds the keys `0..keys`.
/// Every result is checked, so the compiler cannot leave the operation out (with `assert!`:
/// `assert_eq!` would store both sides for its message before comparing them, a few
/// instructions per operation).
#[inline(always)]
fn operate<M: Map>(map: &M, operation: Operation, keys: u64, ops: u64) {
    let n = operation.counted(keys, ops);
    match operation {
        Operation::GetHit => {
            let mut get = map.getter();
            each_key(n, 0, keys, 0, |k| assert!(get(k) == Some(k)));
        }
        Operation::GetMiss => {
            let mut get = map.getter();
            each_key(n, keys, keys, 0, |k| assert!(get(k).is_none()));
        }
        Operation::Overwrite => {
            each_key(n, 0, keys, 0, |k| assert!(map.insert(k, k) == Some(k)));
        }
        Operation::InsertNew => each_key(n, keys, n, 0, |k| assert!(map.insert_new(k))),
        Operation::Remove => each_removed_key(keys, ops, |k| assert!(map.remove(k) == Some(k))),
        Operation::Iterate => {
            for _ in 0..passes(keys, ops) {
                let mut sum = 0;
                map.for_each(|_, value| sum += value);
                assert_eq!(sum, keys * (keys - 1) / 2, "every value once");
            }
        }
        Operation::Rebuild => {
            for _ in 0..passes(keys, ops) {
                map.rebuild();
            }
        }
        Operation::Loop => each_key(n, 0, keys, 0, |_| ()),
    }
}

/// `map`, empty and sized for `keys` keys, with the keys `0..keys`, each with itself as its
/// value.
fn filled<M: Map>(map: M, keys: u64) -> M {
    for key in 0..keys {
        map.insert(key, key);
    }
    map
}

/// A `HashMap` with the keys `0..keys`, each with itself as its value.
fn hashmap(keys: u64) -> HashMap<u64, u64, Hasher> {
    let mut map = HashMap::with_capacity_and_hasher(keys as usize, HASHER);
    map.extend((0..keys).map(|key| (key, key)));
    map
}

/// A dualmap with the keys `0..keys`, each with itself as its value, all in its dirty map
/// until `settle` promotes them.
fn dualmap(keys: u64) -> DualMap {
    filled(
        DualMap::with_capacity_and_hasher(keys as usize, HASHER),
        keys,
    )
}

/// Runs `operations` on `map`, which holds the keys `0..keys`, each in its own call of
/// `measured`. Between the calls, uncounted, it settles the map and puts back the keys that
/// `remove` took out, so that each operation finds the keys `0..keys` (`insert_new`, say,
/// grows a map of `keys` keys, as on a map built for it alone). The map is then leaked, not
/// dropped: under valgrind, freeing a 1,000,000-key map entry by entry takes as long as a
/// quarter of the run, and the process ends right after.
fn measure_all<M: Map>(map: M, operations: &[Operation], keys: u64, ops: u64) {
    for &operation in operations {
        map.settle();
        if operation == Operation::Rebuild {
            map.prepare_rebuilds(passes(keys, ops));
        }
        measured(&map, operation, keys, ops);
        if operation == Operation::Remove {
            each_removed_key(keys, ops, |k| assert!(map.insert(k, k).is_none()));
        }
    }
    std::mem::forget(map);
}

/// Builds `map` with `keys` keys and measures every operation it supports (the direct-run
/// mode).
fn run_map(map: &str, keys: u64, ops: u64) {
    let operations = &operations(map);
    let capacity = keys as usize;
    match map {
        "dualmap" => measure_all(dualmap(keys), operations, keys, ops),
        "dualmap-reader" => measure_all(ViaReader(dualmap(keys)), operations, keys, ops),
        "dashmap" => {
            let map = filled(DashMap::with_capacity_and_hasher(capacity, HASHER), keys);
            measure_all(map, operations, keys, ops);
        }
        "rwlock-hashmap" => measure_all(RwLockMap::new(hashmap(keys)), operations, keys, ops),
        "mutex-hashmap" => measure_all(MutexMap::new(hashmap(keys)), operations, keys, ops),
        "papaya" => {
            let map = filled(Papaya::with_capacity_and_hasher(capacity, HASHER), keys);
            measure_all(map, operations, keys, ops);
        }
        "scc" => {
            let map = filled(Scc::with_capacity_and_hasher(capacity, HASHER), keys);
            measure_all(map, operations, keys, ops);
        }
        "frozen-hashmap" => measure_all(Frozen(hashmap(keys)), operations, keys, ops),
        LOOP => measure_all(NoMap, operations, keys, ops),
        _ => unreachable!("checked by `run_one`"),
    }
}

/// Instructions and cache lines (L1 data read misses) per operation.
#[derive(Clone, Copy)]
struct Cost {
    instructions: f64,
    lines: f64,
}

/// The name of `measured` in callgrind's profiles, which `--zero-before` and `--dump-after`
/// match. The exact name, not a pattern such as `*measured*`: given the same pattern twice,
/// callgrind 3.19 applies only the first option (it zeroes, but never dumps).
const MEASURED: &str = "instructions::measured";

/// One valgrind run: one map at one size, all its operations.
struct Case {
    map: &'static str,
    keys: u64,
}

impl Case {
    /// Runs the case under callgrind, with `extra` options, and returns its profiles: one per
    /// operation, in the order of `operations(self.map)`; the error says why it failed.
    fn profiles(&self, ops: u64, extra: &[&str]) -> Result<Vec<String>, String> {
        let me = std::env::current_exe().map_err(|error| format!("own path: {error}"))?;
        let out = std::env::temp_dir().join(format!(
            "instructions-{}-{}-{}.callgrind",
            std::process::id(),
            self.map,
            self.keys
        ));
        let output = Command::new("valgrind")
            .args(["--tool=callgrind", "--cache-sim=yes"])
            .args(CACHES)
            .args(extra)
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(format!("--zero-before={MEASURED}"))
            .arg(format!("--dump-after={MEASURED}"))
            .arg(&me)
            .args([self.map.to_string(), self.keys.to_string(), ops.to_string()])
            .output()
            .map_err(|error| format!("valgrind: {error}"));
        let dumps = take_dumps(&out);
        let output = output?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = lines[lines.len().saturating_sub(10)..].join("\n");
            return Err(format!("{}\n{tail}", output.status));
        }
        let operations = operations(self.map);
        if dumps.len() != operations.len() {
            return Err(format!(
                "{} dumps after `{MEASURED}` for {} operations",
                dumps.len(),
                operations.len()
            ));
        }
        Ok(dumps)
    }

    /// Runs the case under callgrind and reads the cost of each of its operations, in the
    /// order of `operations(self.map)`; the error says why it failed.
    fn count(&self, ops: u64) -> Result<Vec<Cost>, String> {
        let dumps = self.profiles(ops, &[])?;
        operations(self.map)
            .iter()
            .zip(&dumps)
            .map(|(operation, dump)| {
                let [instructions, lines] = totals(dump, ["Ir", "D1mr"]).ok_or_else(|| {
                    format!("no Ir and D1mr totals in the dump of {}", operation.name())
                })?;
                let counted = operation.counted(self.keys, ops) as f64;
                Ok(Cost {
                    instructions: instructions as f64 / counted,
                    lines: lines as f64 / counted,
                })
            })
            .collect()
    }
}

/// Reads and deletes the dumps of a callgrind run that wrote to `out`: `out.1`, `out.2`, ...,
/// one per call of `measured`, in order; and deletes `out`, the dump callgrind writes at
/// exit, of what ran after the last call.
fn take_dumps(out: &Path) -> Vec<String> {
    let mut dumps = Vec::new();
    for n in 1.. {
        let mut path = out.as_os_str().to_owned();
        path.push(format!(".{n}"));
        let Ok(dump) = std::fs::read_to_string(&path) else {
            break;
        };
        let _ = std::fs::remove_file(&path);
        dumps.push(dump);
    }
    let _ = std::fs::remove_file(out);
    dumps
}

/// The totals of `names` in a callgrind profile: its `events:` line names the columns of its
/// `totals:` (or, in older versions, `summary:`) line, which may leave out trailing zeros.
fn totals<const N: usize>(profile: &str, names: [&str; N]) -> Option<[u64; N]> {
    let field = |prefix: &str| profile.lines().find_map(|line| line.strip_prefix(prefix));
    let events: Vec<&str> = field("events:")?.split_whitespace().collect();
    let totals: Vec<u64> = field("totals:")
        .or_else(|| field("summary:"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let mut found = [0; N];
    for (found, name) in found.iter_mut().zip(names) {
        let column = events.iter().position(|event| *event == name)?;
        *found = totals.get(column).copied().unwrap_or(0);
    }
    Some(found)
}

/// Counts every case, as many at a time as there are cores; the results are in the order
/// of `cases`. The largest maps go first, so that the slowest runs do not end up last.
fn count_all(cases: &[Case], ops: u64) -> Vec<Result<Vec<Cost>, String>> {
    let mut order: Vec<usize> = (0..cases.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cases[i].keys));
    let results: Vec<OnceLock<Result<Vec<Cost>, String>>> =
        cases.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let progress = std::io::stderr().is_terminal();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(cases.len()) {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let _ = results[i].set(cases[i].count(ops));
                    let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if progress {
                        eprint!("\rcounted {done}/{}", cases.len());
                    }
                }
            });
        }
    });
    if progress {
        eprintln!();
    }
    results
        .into_iter()
        .map(|result| result.into_inner().expect("every case is counted"))
        .collect()
}

/// The table's cell: instructions (one decimal below 10) and lines per operation.
fn cell(cost: Cost) -> String {
    let decimals = if cost.instructions < 10.0 { 1 } else { 0 };
    format!("{:.*} / {:.1}", decimals, cost.instructions, cost.lines)
}

struct Options {
    sizes: Vec<u64>,
    ops: u64,
    csv: Option<String>,
    /// The map whose operations `--breakdown` splits, instead of counting every map.
    breakdown: Option<String>,
}

const USAGE: &str = "usage: instructions [--quick] [--sizes N,...] [--csv PATH]
       instructions [--quick] [--sizes N,...] --breakdown MAP   (where MAP's instructions go)
       instructions MAP KEYS [OPS]   (one map's operations, run directly; what callgrind runs)";

fn usage_error(message: &str) -> ! {
    eprintln!("error: {message}\n{USAGE}");
    exit(2)
}

fn parse_options(args: &[String]) -> Options {
    let mut quick = false;
    let mut sizes = None;
    let mut csv = None;
    let mut breakdown = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--sizes" => {
                let list = args
                    .next()
                    .unwrap_or_else(|| usage_error("--sizes needs N,..."));
                let parsed: Option<Vec<u64>> = list
                    .split(',')
                    .map(|size| size.trim().parse().ok().filter(|&size| size > 0))
                    .collect();
                sizes = Some(parsed.unwrap_or_else(|| usage_error("sizes are numbers over 0")));
            }
            "--csv" => {
                csv = Some(
                    args.next()
                        .unwrap_or_else(|| usage_error("--csv needs a path")),
                );
            }
            "--breakdown" => {
                let map = args
                    .next()
                    .unwrap_or_else(|| usage_error("--breakdown needs a map"));
                if !MAPS.contains(&map.as_str()) {
                    usage_error(&format!("unknown map {map}; one of {MAPS:?}"));
                }
                breakdown = Some(map.clone());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            other => usage_error(&format!("unknown argument {other}")),
        }
    }
    let (default_sizes, ops) = if quick {
        (QUICK_SIZES, QUICK_OPS)
    } else {
        (SIZES, OPS)
    };
    Options {
        sizes: sizes.unwrap_or(default_sizes.to_vec()),
        ops,
        csv: csv.cloned(),
        breakdown,
    }
}

/// Exits with an error unless valgrind runs.
fn require_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!(
            "error: valgrind not found: this program counts with valgrind's callgrind \
             (install valgrind, e.g. `apt-get install valgrind`)"
        );
        exit(1);
    }
}

/// Counts every case under callgrind and prints the table (and writes the CSV).
fn count_and_report(options: Options) {
    require_valgrind();
    let Options {
        sizes, ops, csv, ..
    } = options;
    // The loop costs the same at every size: count it once.
    let mut cases = vec![Case {
        map: LOOP,
        keys: sizes[0],
    }];
    for &keys in &sizes {
        cases.extend(MAPS.map(|map| Case { map, keys }));
    }
    let counts = count_all(&cases, ops);
    let mut costs: HashMap<(&str, Operation, u64), Cost> = HashMap::new();
    let mut failed = 0;
    for (case, count) in cases.iter().zip(counts) {
        match count {
            Ok(count) => costs.extend(
                operations(case.map)
                    .into_iter()
                    .zip(count)
                    .map(|(operation, cost)| ((case.map, operation, case.keys), cost)),
            ),
            Err(error) => {
                failed += 1;
                eprintln!("{} at {} keys failed: {error}", case.map, case.keys);
            }
        }
    }

    let shown =
        |map: &str, operation: Operation, keys: u64| match costs.get(&(map, operation, keys)) {
            Some(&cost) => cell(cost),
            None if supported(map, operation) => "failed".into(),
            None => "-".into(),
        };
    println!("Cost per operation: instructions / cache lines, counted by callgrind");
    println!(
        "(one thread, u64 keys, ahash; {ops} operations per case, remove: at most one per key)"
    );
    println!(
        "lines: L1 data read misses in a fixed cache model: \
         L1 32 KiB 8-way, LL 8 MiB 16-way, 64-byte lines"
    );
    println!("iterate: per key visited; rebuild: per key copied; -: not supported");
    println!(
        "loop: {} (the loop around each get, overwrite, insert and remove, included in them)",
        shown(LOOP, Operation::Loop, sizes[0])
    );
    println!();
    print!("{:<16} {:>8}", "map", "keys");
    for operation in Operation::COLUMNS {
        print!(" {:>13}", operation.name());
    }
    println!();
    for &keys in &sizes {
        for map in MAPS {
            print!("{map:<16} {keys:>8}");
            for operation in Operation::COLUMNS {
                print!(" {:>13}", shown(map, operation, keys));
            }
            println!();
        }
    }

    if let Some(path) = csv {
        let mut text = String::from("map,operation,keys,ops,instructions,lines\n");
        for case in &cases {
            for operation in Operation::COLUMNS.into_iter().chain([Operation::Loop]) {
                if let Some(cost) = costs.get(&(case.map, operation, case.keys)) {
                    let _ = writeln!(
                        text,
                        "{},{},{},{},{:.2},{:.3}",
                        case.map,
                        operation.name(),
                        case.keys,
                        operation.counted(case.keys, ops),
                        cost.instructions,
                        cost.lines
                    );
                }
            }
        }
        if let Err(error) = std::fs::write(&path, text) {
            eprintln!("error: writing {path}: {error}");
            exit(1);
        }
    }
    if failed > 0 {
        eprintln!("error: {failed} of {} runs failed", cases.len());
        exit(1);
    }
}

/// Prints where each of `map`'s operations' instructions go at each size (`breakdown.rs`):
/// the parts that run at least 1% of them, largest first, then the rest. Checks that the
/// parts add up to callgrind's total for the operation.
fn report_breakdown(map: &str, sizes: &[u64], ops: u64) {
    require_valgrind();
    let fail = |message: String| -> ! {
        eprintln!("error: {message}");
        exit(1)
    };
    let me = std::env::current_exe().unwrap_or_else(|error| fail(format!("own path: {error}")));
    let me = me.to_string_lossy();
    let map = MAPS
        .into_iter()
        .find(|&known| known == map)
        .expect("checked by `parse_options`");
    for &keys in sizes {
        let case = Case { map, keys };
        let dumps = case
            .profiles(ops, &["--dump-instr=yes"])
            .unwrap_or_else(|error| fail(format!("{map} at {keys} keys: {error}")));
        let profiles: Vec<breakdown::Profile> = dumps
            .iter()
            .map(|dump| breakdown::parse(dump, &me))
            .collect();
        let frames = breakdown::frames(&me, breakdown::addresses(profiles.iter()).into_iter())
            .unwrap_or_else(|error| fail(error));
        for ((operation, dump), profile) in operations(map).into_iter().zip(&dumps).zip(&profiles) {
            let parts = breakdown::by_part(profile, &frames, map);
            let total: u64 = parts.iter().map(|(_, instructions)| instructions).sum();
            if totals(dump, ["Ir"]) != Some([total]) {
                fail(format!(
                    "{map} {} at {keys} keys: the parts add up to {total} instructions, \
                     callgrind's total is {:?}",
                    operation.name(),
                    totals(dump, ["Ir"])
                ));
            }
            let counted = operation.counted(keys, ops) as f64;
            println!(
                "{map} {} at {keys} keys: {:.1} instructions an operation",
                operation.name(),
                total as f64 / counted
            );
            let (shown, rest): (Vec<_>, Vec<_>) = parts
                .iter()
                .partition(|(_, instructions)| *instructions * 100 >= total);
            for (part, instructions) in &shown {
                let share = *instructions as f64 * 100.0 / total as f64;
                println!(
                    "{:>9.1} {share:>4.0}%  {part}",
                    *instructions as f64 / counted
                );
            }
            let rest_total: u64 = rest.iter().map(|(_, instructions)| instructions).sum();
            if !rest.is_empty() {
                println!(
                    "{:>9.1} {:>4.0}%  the rest ({} parts under 1% each)",
                    rest_total as f64 / counted,
                    rest_total as f64 * 100.0 / total as f64,
                    rest.len()
                );
            }
            println!();
        }
    }
}

/// The direct-run mode, `MAP KEYS [OPS]`: checks the arguments and measures that map.
fn run_one(args: &[String]) {
    let (map, keys, ops) = match args {
        [map, keys] => (map, keys, None),
        [map, keys, ops] => (map, keys, Some(ops)),
        _ => usage_error("one map's operations are MAP KEYS [OPS]"),
    };
    let number = |text: &str| text.parse::<u64>().ok().filter(|&n| n > 0);
    let keys = number(keys).unwrap_or_else(|| usage_error("KEYS is a number over 0"));
    let ops = ops
        .map_or(Some(OPS), |ops| number(ops))
        .unwrap_or_else(|| usage_error("OPS is a number over 0"));
    if !MAPS.contains(&map.as_str()) && map != LOOP {
        usage_error(&format!("unknown map {map}; one of {MAPS:?} or {LOOP}"));
    }
    run_map(map, keys, ops);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first() {
        Some(first) if !first.starts_with('-') => run_one(&args),
        _ => {
            let options = parse_options(&args);
            match &options.breakdown {
                Some(map) => report_breakdown(map, &options.sizes, options.ops),
                None => count_and_report(options),
            }
        }
    }
}
