//! Panic safety: user code that panics inside a public operation leaves the map usable,
//! consistent and leak-free (the crate docs' "Guarantees").
//!
//! User code the map runs, and where:
//! - `Hash` of keys: in `DualMap` before anything else (every keyed operation, `Reader`
//!   lookups, and the inserts of `Extend`, `FromIterator` and `Clone`);
//! - `Eq` of keys: in the lock-free lookup of the read snapshot, and under the map mutex in the
//!   locked lookup (re-check of the snapshot, then the dirty map). The locked lookup comes
//!   before anything is changed: before a miss is counted, before the promotion that miss may
//!   cause, and before the dirty rebuild that the first new key after a promotion causes;
//! - `PartialEq` of values: in `compare_and_swap` and `compare_and_remove`, after the lookup
//!   (which, for a key only the dirty map holds, may already have counted a miss and promoted);
//! - `Clone` of keys and values: `get_cloned` (map and `Reader`) and `DualMap::clone`;
//! - closures and iterators: `get_or_insert_with`'s `make`, `update`'s and
//!   `update_or_insert_with`'s closures (with no lock held), `retain`'s `keep`, the iterators
//!   given to `Extend` and `FromIterator`;
//! - `Drop` of keys and values: of what an operation consumes without storing it (the
//!   duplicate key of an insert over a present key, the value `get_or_insert` does not insert),
//!   of entries taken out of the maps, and of retired values, which are freed when the last
//!   snapshot that can reach them is released. That release happens when a locked section's
//!   garbage is dropped after unlocking (the snapshot replaced by a promotion, a dirty rebuild
//!   or a rotation), or when a `Ref`, a `Reader`, an iterator or an iteration item lets go.
//!   Neither a promotion nor a rebuild runs user code while it changes the map; the only user
//!   code "in the middle" of them is the `Eq` of the locked lookup before, and the `Drop`s of
//!   their garbage after.
//!
//! Each test arms exactly one trap (a panicking call: the n-th `Hash` or `Eq` involving a given
//! key, the n-th `Clone` or `PartialEq`, the `Drop` of one given instance, or a closure), runs
//! the operation inside `catch_unwind`, checks that it panicked at that trap, and then checks:
//! the stats that show what the operation got to do (misses, promotions, dirty rebuilds,
//! retired values); that the contents agree with a `HashMap` model to which the operation's
//! outcome was applied; that the mutex is free (a new key is inserted and removed, `stats()`
//! locks); and, once the map and every handle are dropped, that every key and value ever
//! created was dropped exactly once (one drop counter per instance, from `support/counted.rs`).
//! A trap fires once, and a `Drop` trap reached while already unwinding does not panic (that
//! would abort) but fails the test.
//!
//! # The outcome of a panicked operation
//! - A panic in user code that runs *before the operation changes anything* (`Hash`, `Eq`,
//!   `PartialEq`, `Clone` in `get_cloned`, `make`): the contents are unchanged, and whatever
//!   the operation was given (key, value, the value `make` returned) is dropped exactly once,
//!   after the mutex is released. What completed before the panic stays done: a locked lookup
//!   that counted a miss, and the promotion it caused, which never change the contents.
//! - A panic in the `Drop` of something the operation *consumed or released* (a duplicate key,
//!   an offered value not inserted, a retired value freed by the operation's garbage or by a
//!   handle, an entry taken out of the dirty map): the operation itself happened (the store,
//!   the removal, the promotion, the rebuild, the rotation), only its result is lost. Every
//!   other displaced value is still freed exactly once; the value whose `Drop` panicked counts
//!   as dropped.
//! - `retain`, `Extend`, `FromIterator` and `Clone` stopped midway: the keys handled before the
//!   panic keep their effect, the others are untouched; a map under construction is dropped.
//!   (The key being judged when `retain`'s `keep` panics is left as it was.)
//!
//! # Bugs these tests found
//! Tests named "Bug (fixed)" failed before the fixes in `src/raw.rs`, `src/map.rs` and
//! `src/reclaim.rs`: user `Drop`s under the mutex, and leaks when a `Drop` panicked between
//! displacing a value and retiring it, or after a result was computed (a value being returned
//! is leaked, not dropped, when a later `Drop` in the same function panics:
//! rust-lang/rust#47949), and leaks when a whole table was dropped: hashbrown's table `Drop`
//! stops at the first entry whose drop panics and leaks the rest (fixed by the table's own
//! `Drop` in `src/snapshot.rs`, which drains).
//!
//! Sizes shrink under Miri: `cargo +nightly miri test --test panic_safety`.

#[path = "support/counted.rs"]
mod counted;

use counted::Counted;
use dualmap::{DualMap, Reader, Stats, RETIRED_PER_EPOCH};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Once};
use std::thread;
use std::time::Duration;

/// Retired values in one epoch for the "long chain" tests.
const CHAIN: usize = if cfg!(miri) { 9 } else { 301 };

// ---------------------------------------------------------------------------------------------
// Traps: one armed panic at a time.

/// Where an armed trap panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Site {
    /// `Hash` of the key with this `k`.
    Hash(u64),
    /// `Eq` of two keys, one of which has this `k`.
    Eq(u64),
    /// `Clone` of any key.
    CloneKey,
    /// `Clone` of any value.
    CloneVal,
    /// `PartialEq` of values.
    ValEq,
    /// A closure or iterator given to the map.
    Closure,
    /// `Drop` of the key or value instance with this id.
    Drop(u64),
}

const TRAP: &str = "trap: ";

thread_local! {
    /// The armed trap and how many more calls at its site reach it.
    static ARMED: Cell<Option<(Site, u32)>> = const { Cell::new(None) };
    /// `Drop` traps reached while unwinding (they do not panic: that would abort).
    static MISFIRES: Cell<u32> = const { Cell::new(0) };
    /// Drop counter of each key and value instance, indexed by its id.
    static DROPS: RefCell<Vec<Arc<AtomicUsize>>> = const { RefCell::new(Vec::new()) };
    /// A map whose mutex the drop of the value with this id probes (see `mutex_is_free`).
    static PROBE: RefCell<Option<(u64, Arc<Map>)>> = const { RefCell::new(None) };
    /// What the probes found, and their threads.
    static PROBED: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
    static PROBE_THREADS: RefCell<Vec<thread::JoinHandle<()>>> = const { RefCell::new(Vec::new()) };
    /// Keys made to collide (`Key::hashed_as`): `k` to the key whose hash they take.
    static HASHED_AS: RefCell<HashMap<u64, u64>> = RefCell::new(HashMap::new());
    /// Runs once inside the next `PartialEq` or `Clone` of a value (which may use the map).
    static ON_VALUE_CODE: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    /// Runs once inside the next `Eq` of two keys with equal hashes (which may use the map).
    static ON_KEY_EQ: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}

/// Arms the trap: the `nth` call at `site` from now on panics.
fn arm(site: Site, nth: u32) {
    assert!(nth >= 1);
    let previous = ARMED.replace(Some((site, nth)));
    assert_eq!(previous, None, "one trap at a time");
}

fn armed() -> Option<Site> {
    ARMED.get().map(|(site, _)| site)
}

/// Called by user code at `site`: panics if this is the armed call.
fn trip(site: Site) {
    let Some((armed, left)) = ARMED.get() else {
        return;
    };
    if armed != site {
        return;
    }
    if left > 1 {
        ARMED.set(Some((armed, left - 1)));
        return;
    }
    ARMED.set(None);
    if thread::panicking() {
        MISFIRES.set(MISFIRES.get() + 1);
        return;
    }
    panic!("{TRAP}{site:?}");
}

/// Arms a trap at the `nth` call at `site`, runs `op` and checks that it panicked there.
#[track_caller]
fn expect_trap<R>(site: Site, nth: u32, op: impl FnOnce() -> R) {
    arm(site, nth);
    let outcome = panic::catch_unwind(AssertUnwindSafe(op));
    let Err(payload) = outcome else {
        ARMED.set(None);
        panic!("the trap at {site:?} was not reached");
    };
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    assert_eq!(message, format!("{TRAP}{site:?}"), "panicked elsewhere");
}

/// Starts a test: keeps the traps' panic messages out of the output, and forgets the
/// instances of a test that ran on this thread before.
fn start() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if !message.is_some_and(|message| message.starts_with(TRAP)) {
                default(info);
            }
        }));
    });
    ARMED.set(None);
    MISFIRES.set(0);
    DROPS.with_borrow_mut(Vec::clear);
    HASHED_AS.with_borrow_mut(HashMap::clear);
}

/// A drop counter for a new instance; its id indexes `DROPS`.
fn new_tag() -> Counted {
    DROPS.with_borrow_mut(|drops| {
        let counter = Arc::new(AtomicUsize::new(0));
        let tag = Counted::new(drops.len() as u64, &counter);
        drops.push(counter);
        tag
    })
}

fn drops_of(id: u64) -> usize {
    DROPS.with_borrow(|drops| drops[id as usize].load(SeqCst))
}

/// Drops the map and checks that every key and value ever created was dropped exactly once.
fn finish(map: Map) {
    drop(map);
    finish_all();
}

/// Checks, once every map and handle is gone, that every key and value ever created was
/// dropped exactly once.
fn finish_all() {
    assert_eq!(armed(), None, "a trap was armed and never reached");
    PROBE.set(None);
    for probe in PROBE_THREADS.take() {
        probe.join().unwrap();
    }
    assert_eq!(MISFIRES.get(), 0, "a Drop trap was reached while unwinding");
    assert_every_instance_dropped_once();
}

fn assert_every_instance_dropped_once() {
    DROPS.with_borrow(|drops| {
        let bad: Vec<(usize, usize)> = drops
            .iter()
            .map(|drops| drops.load(SeqCst))
            .enumerate()
            .filter(|&(_, drops)| drops != 1)
            .collect();
        assert!(
            bad.is_empty(),
            "(instance id, drops) of instances not dropped exactly once: {bad:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Keys, values and the hasher.

/// A key: compared by `k`, hashed as `hash_as` (`k` unless made to collide).
struct Key {
    k: u64,
    hash_as: u64,
    tag: Counted,
}

impl Key {
    /// Key `k`, with the hash of the key it was made to collide with, if it was.
    fn new(k: u64) -> Self {
        let hash_as = HASHED_AS.with_borrow(|hashed_as| hashed_as.get(&k).copied());
        Self::hashed_as(k, hash_as.unwrap_or(k))
    }

    /// Key `k` with the hash of key `hash_as`: looking it up compares it with that key. Every
    /// later key `k` of the test collides the same way.
    fn hashed_as(k: u64, hash_as: u64) -> Self {
        if hash_as != k {
            HASHED_AS.with_borrow_mut(|hashed_as| hashed_as.insert(k, hash_as));
        }
        Self {
            k,
            hash_as,
            tag: new_tag(),
        }
    }

    fn id(&self) -> u64 {
        self.tag.id
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        trip(Site::Hash(self.k));
        state.write_u64(self.hash_as);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        // Only comparisons of equal hashes count: hashbrown's portable group implementation
        // (the one Miri runs) also compares some keys whose tags differ.
        if self.hash_as == other.hash_as {
            if let Some(hook) = ON_KEY_EQ.take() {
                hook();
            }
            trip(Site::Eq(self.k));
            if other.k != self.k {
                trip(Site::Eq(other.k));
            }
        }
        self.k == other.k
    }
}
impl Eq for Key {}

impl Clone for Key {
    fn clone(&self) -> Self {
        trip(Site::CloneKey);
        Self::hashed_as(self.k, self.hash_as)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        trip(Site::Drop(self.id()));
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}", self.k)
    }
}

/// A value: compared by `v`.
struct Val {
    v: u64,
    tag: Counted,
}

impl Val {
    fn new(v: u64) -> Self {
        Self { v, tag: new_tag() }
    }

    fn id(&self) -> u64 {
        self.tag.id
    }
}

/// Runs the hook set in `ON_VALUE_CODE`, if any.
fn run_value_hook() {
    if let Some(hook) = ON_VALUE_CODE.take() {
        hook();
    }
}

impl Clone for Val {
    fn clone(&self) -> Self {
        run_value_hook();
        trip(Site::CloneVal);
        Self::new(self.v)
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        run_value_hook();
        trip(Site::ValEq);
        self.v == other.v
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        let probe = PROBE.with_borrow_mut(|probe| {
            probe
                .take_if(|(id, _)| *id == self.id())
                .map(|(_, map)| map)
        });
        if let Some(map) = probe {
            let free = mutex_is_free(map);
            PROBED.with_borrow_mut(|probed| probed.push(free));
        }
        trip(Site::Drop(self.id()));
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.v)
    }
}

/// Whether another thread can take the map's mutex now (`stats` takes it). A thread cannot
/// ask this about a mutex it holds itself without deadlocking, hence the helper thread and
/// the generous timeout: it only runs out if the mutex is held.
fn mutex_is_free(map: Arc<Map>) -> bool {
    let (done, finished) = mpsc::channel();
    let probe = thread::spawn(move || {
        let _ = map.stats();
        let _ = done.send(());
    });
    let free = finished.recv_timeout(Duration::from_secs(10)).is_ok();
    PROBE_THREADS.with_borrow_mut(|threads| threads.push(probe));
    free
}

/// A hasher whose top 7 bits (hashbrown's tag) are the key itself: distinct keys below 128
/// never share a tag, so (with SSE2 groups) `Eq` runs only on the key looked up and on keys
/// made to collide with it, and the number of `Eq` calls of each operation is known.
#[derive(Clone, Copy, Default)]
struct Spread;

struct SpreadHasher(u64);

impl BuildHasher for Spread {
    type Hasher = SpreadHasher;

    fn build_hasher(&self) -> SpreadHasher {
        SpreadHasher(0)
    }
}

impl Hasher for SpreadHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }

    fn finish(&self) -> u64 {
        (self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) | ((self.0 & 127) << 57)
    }
}

type Map = DualMap<Key, Val, Spread>;
type Model = HashMap<u64, u64>;

/// A key that tests insert and remove to check that the mutex is free.
const PROBE_KEY: u64 = 127;

/// Ids of the key and value instances a map stores for each `k`.
type Ids = HashMap<u64, (u64, u64)>;

/// Inserts `k` with value `v` into the map and the model; returns the instances' ids.
fn put(map: &Map, model: &mut Model, k: u64, v: u64) -> (u64, u64) {
    let (key, val) = (Key::new(k), Val::new(v));
    let ids = (key.id(), val.id());
    drop(map.insert(key, val));
    model.insert(k, v);
    ids
}

/// A map whose read snapshot holds the keys `read` and whose dirty map also holds the keys
/// `dirty` (the value of `k` is `100 + k`), its model and the ids of its instances.
fn setup(read: &[u64], dirty: &[u64]) -> (Map, Model, Ids) {
    // One read/dirty pair with Go's promotion rule: Go's sync.Map, so promotions
    // happen where Go's would.
    let map = DualMap::builder()
        .pairs(1)
        .min_promotion_misses(0)
        .hasher(Spread)
        .build();
    let mut model = Model::new();
    let mut ids = Ids::new();
    for &k in read {
        ids.insert(k, put(&map, &mut model, k, 100 + k));
    }
    drop(map.iter()); // promotes the dirty map
    for &k in dirty {
        ids.insert(k, put(&map, &mut model, k, 100 + k));
    }
    let stats = map.stats();
    assert_eq!(stats.snapshot_len, read.len());
    assert_eq!(stats.amended, !dirty.is_empty());
    (map, model, ids)
}

/// Overwrites `k` `n` times (values `1000..`); returns the ids of the `n` displaced values,
/// which are retired to the current epoch (no rotation: `n` < `RETIRED_PER_EPOCH`).
fn overwrite(map: &Map, model: &mut Model, k: u64, n: usize) -> Vec<u64> {
    assert!(n < RETIRED_PER_EPOCH);
    (0..n as u64)
        .map(|i| {
            let previous = map.insert(Key::new(k), Val::new(1000 + i));
            model.insert(k, 1000 + i);
            previous.expect("k is present").id()
        })
        .collect()
}

/// The map agrees with the model and its mutex is free.
#[track_caller]
fn check(map: &Map, model: &Model) {
    assert_eq!(map.len(), model.len(), "len");
    let _ = map.stats(); // takes the mutex: would hang if a panic had left it locked
    let mut seen: Vec<(u64, u64)> = map.iter().map(|(key, val)| (key.k, val.v)).collect();
    seen.sort_unstable();
    let mut expected: Vec<(u64, u64)> = model.iter().map(|(&k, &v)| (k, v)).collect();
    expected.sort_unstable();
    assert_eq!(seen, expected, "contents");
    for (&k, &v) in model {
        assert_eq!(map.get(&Key::new(k)).map(|val| val.v), Some(v), "get k{k}");
    }
    assert!(map.insert(Key::new(PROBE_KEY), Val::new(0)).is_none());
    assert_eq!(map.remove(&Key::new(PROBE_KEY)).map(|val| val.v), Some(0));
    assert_eq!(map.len(), model.len(), "len");
}

/// `before` with the given counters changed.
fn stats_after(before: &Stats, change: impl FnOnce(&mut Stats)) -> Stats {
    let mut expected = before.clone();
    change(&mut expected);
    expected
}

type Op = (&'static str, u64, fn(&Map));

// ---------------------------------------------------------------------------------------------
// Panics before anything changes: Hash, Eq, PartialEq, Clone, closures.

#[test]
fn a_panicking_hash_changes_nothing() {
    start();
    let (map, model, _) = setup(&[1, 2], &[3, 4]);
    let ops: &[Op] = &[
        ("get", 1, |m| drop(m.get(&Key::new(1)))),
        ("get_cloned", 3, |m| drop(m.get_cloned(&Key::new(3)))),
        ("contains_key", 5, |m| {
            let _ = m.contains_key(&Key::new(5));
        }),
        ("insert present", 1, |m| {
            drop(m.insert(Key::new(1), Val::new(7)))
        }),
        ("insert new", 6, |m| {
            drop(m.insert(Key::new(6), Val::new(7)))
        }),
        ("get_or_insert", 3, |m| {
            drop(m.get_or_insert(Key::new(3), Val::new(7)))
        }),
        ("try_insert", 7, |m| {
            drop(m.try_insert(Key::new(7), Val::new(7)))
        }),
        ("get_or_insert_with", 8, |m| {
            drop(m.get_or_insert_with(Key::new(8), || unreachable!("make ran")))
        }),
        ("remove", 2, |m| drop(m.remove(&Key::new(2)))),
        ("compare_and_swap", 4, |m| {
            drop(m.compare_and_swap(&Key::new(4), &Val::new(104), Val::new(7)))
        }),
        ("compare_and_remove", 1, |m| {
            let _ = m.compare_and_remove(&Key::new(1), &Val::new(101));
        }),
        ("Reader::get", 1, |m| {
            let _ = m.reader().get(&Key::new(1));
        }),
        ("Reader::get_cloned", 3, |m| {
            drop(m.reader().get_cloned(&Key::new(3)))
        }),
        ("Reader::contains_key", 4, |m| {
            let _ = m.reader().contains_key(&Key::new(4));
        }),
    ];
    for &(name, k, op) in ops {
        let before = map.stats();
        expect_trap(Site::Hash(k), 1, || op(&map));
        assert_eq!(map.stats(), before, "{name}");
    }
    check(&map, &model);
    finish(map);
}

#[test]
fn a_panicking_eq_on_the_lock_free_path_changes_nothing() {
    start();
    let (map, model, _) = setup(&[1, 2], &[3]);
    // Keys 1 and 2 are in the read snapshot: the lock-free lookup compares them once.
    let ops: &[Op] = &[
        ("get", 1, |m| drop(m.get(&Key::new(1)))),
        ("get_cloned", 2, |m| drop(m.get_cloned(&Key::new(2)))),
        ("insert", 1, |m| drop(m.insert(Key::new(1), Val::new(7)))),
        ("get_or_insert", 2, |m| {
            drop(m.get_or_insert(Key::new(2), Val::new(7)))
        }),
        ("try_insert", 1, |m| {
            drop(m.try_insert(Key::new(1), Val::new(7)))
        }),
        ("get_or_insert_with", 2, |m| {
            drop(m.get_or_insert_with(Key::new(2), || unreachable!("make ran")))
        }),
        ("remove", 1, |m| drop(m.remove(&Key::new(1)))),
        ("compare_and_swap", 2, |m| {
            drop(m.compare_and_swap(&Key::new(2), &Val::new(102), Val::new(7)))
        }),
        ("compare_and_remove", 1, |m| {
            let _ = m.compare_and_remove(&Key::new(1), &Val::new(101));
        }),
        ("Reader::get", 2, |m| {
            let _ = m.reader().get(&Key::new(2));
        }),
    ];
    for &(name, k, op) in ops {
        let before = map.stats();
        expect_trap(Site::Eq(k), 1, || op(&map));
        assert_eq!(map.stats(), before, "{name}");
    }
    check(&map, &model);
    finish(map);
}

#[test]
fn a_panicking_eq_under_the_lock_changes_nothing_and_counts_no_miss() {
    start();
    // Key 3 is only in the dirty map (of 5 entries, so no single miss promotes); key 9 is
    // expunged from the read snapshot.
    let (map, mut model, _) = setup(&[1, 2, 9], &[]);
    drop(map.remove(&Key::new(9)));
    model.remove(&9);
    for k in [3, 4, 5] {
        put(&map, &mut model, k, 100 + k);
    }
    assert_eq!(map.stats().dirty_len, Some(5));
    let ops: &[Op] = &[
        ("get", 3, |m| drop(m.get(&Key::new(3)))),
        ("get_cloned", 3, |m| drop(m.get_cloned(&Key::new(3)))),
        ("contains_key", 3, |m| {
            let _ = m.contains_key(&Key::new(3));
        }),
        ("insert", 3, |m| drop(m.insert(Key::new(3), Val::new(7)))),
        ("get_or_insert", 3, |m| {
            drop(m.get_or_insert(Key::new(3), Val::new(7)))
        }),
        ("try_insert", 3, |m| {
            drop(m.try_insert(Key::new(3), Val::new(7)))
        }),
        ("get_or_insert_with", 3, |m| {
            drop(m.get_or_insert_with(Key::new(3), || unreachable!("make ran")))
        }),
        ("remove", 3, |m| drop(m.remove(&Key::new(3)))),
        ("compare_and_swap", 3, |m| {
            drop(m.compare_and_swap(&Key::new(3), &Val::new(103), Val::new(7)))
        }),
        ("compare_and_remove", 3, |m| {
            let _ = m.compare_and_remove(&Key::new(3), &Val::new(103));
        }),
        ("Reader::get", 3, |m| {
            let _ = m.reader().get(&Key::new(3));
        }),
        // A new key hashed like key 4: compared with it in the dirty map, under the lock.
        ("insert colliding", 50, |m| {
            drop(m.insert(Key::hashed_as(50, 4), Val::new(7)))
        }),
    ];
    for &(name, k, op) in ops {
        let before = map.stats();
        expect_trap(Site::Eq(k), 1, || op(&map));
        assert_eq!(map.stats(), before, "{name}");
    }
    // The expunged key: compared once lock-free (the entry refuses the store), then again
    // under the lock, before it is unexpunged.
    let expunged: &[Op] = &[
        ("insert expunged", 9, |m| {
            drop(m.insert(Key::new(9), Val::new(7)))
        }),
        ("get_or_insert expunged", 9, |m| {
            drop(m.get_or_insert(Key::new(9), Val::new(7)))
        }),
    ];
    for &(name, k, op) in expunged {
        let before = map.stats();
        expect_trap(Site::Eq(k), 2, || op(&map));
        assert_eq!(map.stats(), before, "{name}");
    }
    // `make` ran (after a locked lookup that counted a miss), then the second lookup panics.
    let before = map.stats();
    let made = Cell::new(None);
    expect_trap(Site::Eq(51), 2, || {
        map.get_or_insert_with(Key::hashed_as(51, 4), || {
            let val = Val::new(7);
            made.set(Some(val.id()));
            val
        })
    });
    assert_eq!(drops_of(made.get().expect("make ran")), 1);
    assert_eq!(map.stats(), stats_after(&before, |s| s.misses += 1));
    check(&map, &model);
    finish(map);
}

/// Bug (fixed): when `Eq` panicked in the locked lookup of `insert` or `get_or_insert`, the
/// key and value they own were dropped while the mutex was still held (they were moved into
/// the locked section), so a value whose `Drop` uses the map deadlocked. The crate docs
/// promise that only `Eq` of keys runs under the mutex.
#[test]
fn offered_values_are_dropped_after_unlocking_when_eq_panics_under_the_lock() {
    start();
    let (map, model, _) = setup(&[1], &[3, 4]);
    let map = Arc::new(map);
    type Offer = fn(&Map, Val);
    let offers: &[(&str, Offer)] = &[
        ("insert", |m, val| drop(m.insert(Key::new(3), val))),
        ("get_or_insert", |m, val| {
            drop(m.get_or_insert(Key::new(3), val))
        }),
        ("try_insert", |m, val| drop(m.try_insert(Key::new(3), val))),
    ];
    for &(name, offer) in offers {
        let val = Val::new(7);
        PROBE.set(Some((val.id(), map.clone())));
        expect_trap(Site::Eq(3), 1, || offer(&map, val));
        let probed = PROBED.with_borrow_mut(|probed| probed.pop());
        assert_eq!(probed, Some(true), "{name}: value dropped under the mutex");
    }
    check(&map, &model);
    for probe in PROBE_THREADS.take() {
        probe.join().unwrap();
    }
    finish(Arc::into_inner(map).expect("no probe holds the map"));
}

#[test]
fn a_panicking_partial_eq_changes_nothing_even_after_its_lookup_promoted() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[]);
    let before = map.stats();
    expect_trap(Site::ValEq, 1, || {
        map.compare_and_swap(&Key::new(1), &Val::new(101), Val::new(7))
    });
    expect_trap(Site::ValEq, 1, || {
        map.compare_and_remove(&Key::new(2), &Val::new(102))
    });
    assert_eq!(map.stats(), before);
    // Key 3 only in the dirty map of 3 entries, 2 misses counted: the locked lookup of the
    // next compare-and-swap (found in the dirty map) counts the third and promotes, then the
    // comparison panics.
    put(&map, &mut model, 3, 103);
    for _ in 0..2 {
        drop(map.get(&Key::new(3)));
    }
    let before = map.stats();
    assert_eq!((before.misses, before.dirty_len), (2, Some(3)));
    expect_trap(Site::ValEq, 1, || {
        map.compare_and_swap(&Key::new(3), &Val::new(103), Val::new(7))
    });
    let promoted = stats_after(&before, |s| {
        s.promotions += 1;
        s.misses = 0;
        s.amended = false;
        s.dirty_len = None;
        s.snapshot_len = 3;
    });
    assert_eq!(map.stats(), promoted);
    // The same for compare-and-remove (every dirty lookup counts a miss).
    put(&map, &mut model, 4, 104);
    drop(map.get(&Key::new(4)));
    drop(map.get(&Key::new(4)));
    drop(map.get(&Key::new(4)));
    let before = map.stats();
    assert_eq!((before.misses, before.dirty_len), (3, Some(4)));
    expect_trap(Site::ValEq, 1, || {
        map.compare_and_remove(&Key::new(4), &Val::new(104))
    });
    assert_eq!(map.stats().promotions, before.promotions + 1);
    check(&map, &model);
    finish(map);
}

#[test]
fn a_panicking_clone_changes_nothing() {
    start();
    let (map, model, _) = setup(&[1, 2], &[3]);
    expect_trap(Site::CloneVal, 1, || map.get_cloned(&Key::new(1)));
    expect_trap(Site::CloneVal, 1, || map.get_cloned(&Key::new(3)));
    let mut reader = map.reader();
    expect_trap(Site::CloneVal, 1, || reader.get_cloned(&Key::new(2)));
    assert_eq!(reader.get(&Key::new(2)).map(|val| val.v), Some(102));
    drop(reader);
    // `DualMap::clone` stopped midway: the partial copy is dropped.
    expect_trap(Site::CloneVal, 2, || map.clone());
    expect_trap(Site::CloneKey, 3, || map.clone());
    expect_trap(Site::Hash(2), 1, || map.clone());
    let copy = map.clone();
    check(&copy, &model);
    drop(copy);
    check(&map, &model);
    finish(map);
}

#[test]
fn panicking_closures_and_iterators_keep_what_they_did_before() {
    start();
    let (map, mut model, _) = setup(&[1, 2, 3, 4], &[5, 6]);
    // `make` of get_or_insert_with.
    expect_trap(Site::Closure, 1, || {
        map.get_or_insert_with(Key::new(8), || {
            trip(Site::Closure);
            Val::new(8)
        })
    });
    check(&map, &model);
    // `keep` of retain, on its third call: the keys judged before keep their outcome, the
    // one it was judging stays. With no other thread, each key is judged once (the delete is
    // a strong compare-and-swap, so no spurious failure asks again).
    let judged = RefCell::new(Vec::new());
    let before = map.stats();
    expect_trap(Site::Closure, 3, || {
        map.retain(|key, _| {
            judged.borrow_mut().push(key.k);
            trip(Site::Closure);
            key.k % 2 == 0
        })
    });
    let judged = judged.into_inner();
    let (&panicked_on, done) = judged.split_last().unwrap();
    assert_eq!(done.len(), 2);
    assert!(
        !done.contains(&panicked_on) && done[0] != done[1],
        "{judged:?}"
    );
    for &k in done {
        if k % 2 == 1 && k != panicked_on {
            model.remove(&k);
        }
    }
    // retain promoted the amended map first (Go's `Range`).
    assert_eq!(map.stats().promotions, before.promotions + 1);
    check(&map, &model);
    // The closure of for_each, on its second call: nothing changes, the walk's pin goes.
    let mut visits = 0;
    expect_trap(Site::Closure, 2, || {
        map.for_each(|_, _| {
            visits += 1;
            trip(Site::Closure);
        })
    });
    assert_eq!(visits, 2);
    check(&map, &model);
    // Extend: an iterator that panics on its fourth item, and a key whose Hash panics.
    let pairs = |range: std::ops::Range<u64>| {
        range.map(|k| {
            trip(Site::Closure);
            (Key::new(k), Val::new(100 + k))
        })
    };
    expect_trap(Site::Closure, 4, || (&map).extend(pairs(10..20)));
    expect_trap(Site::Hash(22), 1, || (&map).extend(pairs(20..30)));
    for k in [10, 11, 12, 20, 21] {
        model.insert(k, 100 + k);
    }
    check(&map, &model);
    // FromIterator: the map under construction is dropped.
    expect_trap(Site::Closure, 4, || pairs(30..40).collect::<Map>());
    expect_trap(Site::Hash(32), 1, || pairs(30..40).collect::<Map>());
    check(&map, &model);
    finish(map);
}

/// `update`'s closure and `update_or_insert_with`'s two closures run with no lock held and
/// before anything changes: a panic in any of them leaves the value (or the absence) as it was,
/// and drops the key, and `make`'s value, exactly once.
#[test]
fn panicking_update_closures_change_nothing() {
    start();
    let (map, model, _) = setup(&[1, 2], &[3, 4]);
    let bump = |val: &Val| {
        trip(Site::Closure);
        Val::new(val.v + 1)
    };
    // A key of the snapshot (lock-free), and a key only the dirty map holds (found under the
    // lock, updated after unlocking).
    for k in [1, 3] {
        expect_trap(Site::Closure, 1, || map.update(&Key::new(k), bump));
        expect_trap(Site::Closure, 1, || {
            map.update_or_insert_with(Key::new(k), bump, || unreachable!("make ran"))
        });
    }
    check(&map, &model);
    // `make` for an absent key: the key offered is dropped, nothing is inserted.
    expect_trap(Site::Closure, 1, || {
        map.update_or_insert_with(
            Key::new(9),
            |_| unreachable!("update ran"),
            || {
                trip(Site::Closure);
                Val::new(9)
            },
        )
    });
    check(&map, &model);
    finish(map);
}

/// The `Drop` of what an update consumes without storing (its `update` closure, the key offered to
/// `update_or_insert*` over a present key, the value `update_or_insert` did not insert)
/// panics after the update: it happened, and the `Ref` being returned is dropped, not leaked
/// (rust-lang/rust#47949), with every value it pinned.
#[test]
fn a_panicking_drop_of_what_an_update_consumed_leaves_the_update_done() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[3]);
    let captured = Val::new(0);
    let id = captured.id();
    expect_trap(Site::Drop(id), 1, || {
        map.update(&Key::new(1), move |val| {
            let captured = &captured; // the whole value, not just its field
            Val::new(val.v + captured.v + 1)
        })
    });
    model.insert(1, 102);
    let key = Key::new(2);
    expect_trap(Site::Drop(key.id()), 1, || {
        map.update_or_insert_with(key, |val| Val::new(val.v + 1), || unreachable!("make ran"))
    });
    model.insert(2, 103);
    let val = Val::new(7);
    expect_trap(Site::Drop(val.id()), 1, || {
        map.update_or_insert(Key::new(3), |val| Val::new(val.v + 1), val)
    });
    model.insert(3, 104);
    let captured = Val::new(0);
    let id = captured.id();
    expect_trap(Site::Drop(id), 1, || {
        let update = move |_: &Val| -> Val {
            let _captured = &captured; // the whole value, not just its field
            unreachable!("update ran")
        };
        map.update_or_insert_with(Key::new(5), update, || Val::new(105))
    });
    model.insert(5, 105);
    check(&map, &model);
    finish(map);
}

// ---------------------------------------------------------------------------------------------
// Drop panics of what an operation consumes: the operation happened.

/// Bug (fixed): each of these leaked the `Ref` being returned, and with it the snapshot it
/// pins, so every value retired afterwards too: the duplicate key (`insert`, `get_or_insert`
/// and `get_or_insert_with`) or the value not inserted (`get_or_insert`) was dropped after
/// the result was computed, which leaks the result if that `Drop` panics
/// (rust-lang/rust#47949).
#[test]
fn a_panicking_drop_of_an_offered_key_or_value_leaves_the_operation_done() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[3, 4, 5]);
    // insert over a key of the snapshot (lock-free): the duplicate key is dropped.
    let key = Key::new(1);
    expect_trap(Site::Drop(key.id()), 1, || map.insert(key, Val::new(7)));
    model.insert(1, 7);
    // get_or_insert of present keys: the value not inserted, or the duplicate key.
    let val = Val::new(8);
    expect_trap(Site::Drop(val.id()), 1, || {
        map.get_or_insert(Key::new(2), val)
    });
    let val = Val::new(8);
    expect_trap(Site::Drop(val.id()), 1, || {
        map.get_or_insert(Key::new(3), val)
    });
    let key = Key::new(2);
    expect_trap(Site::Drop(key.id()), 1, || {
        map.get_or_insert(key, Val::new(8))
    });
    let key = Key::new(4); // found under the lock: dropped as the locked section's garbage
    expect_trap(Site::Drop(key.id()), 1, || map.try_insert(key, Val::new(8)));
    let key = Key::new(5);
    expect_trap(Site::Drop(key.id()), 1, || {
        map.get_or_insert_with(key, || unreachable!("make ran"))
    });
    check(&map, &model);
    finish(map);
}

/// Bug (fixed): `insert` over a key found under the lock returned the displaced value out of
/// the locked section while the duplicate key waited in the section's garbage; when that
/// key's `Drop` panicked, the displaced value was never retired: leaked.
#[test]
fn a_panicking_drop_of_the_duplicate_key_of_a_locked_insert_leaks_nothing() {
    start();
    let (map, mut model, ids) = setup(&[1], &[3, 4]);
    let key = Key::new(3);
    expect_trap(Site::Drop(key.id()), 1, || map.insert(key, Val::new(7)));
    model.insert(3, 7);
    assert_eq!(map.stats().retired, 1, "the displaced value is retired");
    check(&map, &model);
    assert_eq!(drops_of(ids[&3].1), 1, "the displaced value is freed");
    finish(map);
}

/// Bug (fixed, found in review): `insert` over a key it did not find in its snapshot swaps
/// the value out under the lock. The guard it loaded before locking, superseded meanwhile by
/// a promotion, went to the section's garbage, which was dropped before the displaced value
/// was retired; when that drop ended the old snapshot's epoch and a value freed there
/// panicked, the displaced value was leaked. Here the `Eq` of the insert's lock-free lookup
/// (key 3, dirty-only, collides with key 1 of the snapshot) overwrites key 1 and promotes:
/// the displaced value of key 1 goes to the epoch that only the insert's guard still pins.
#[test]
fn a_panicking_drop_freed_by_the_superseded_guard_of_a_locked_insert_leaks_nothing() {
    start();
    drop(Key::hashed_as(3, 1));
    let (map, mut model, ids) = setup(&[1], &[3]);
    let map = Arc::new(map);
    let in_eq = map.clone();
    ON_KEY_EQ.set(Some(Box::new(move || {
        drop(in_eq.insert(Key::new(1), Val::new(11))); // v101 waits in this thread's batch
        drop(in_eq.iter()); // promotes: v101 goes to the epoch of the insert's snapshot
    })));
    model.insert(1, 11);
    expect_trap(Site::Drop(ids[&1].1), 1, || {
        map.insert(Key::new(3), Val::new(7))
    });
    model.insert(3, 7);
    assert_eq!(map.stats().promotions, 2, "setup's and the hook's");
    check(&map, &model);
    assert_eq!(drops_of(ids[&1].1), 1, "the value freed with the guard");
    assert_eq!(
        drops_of(ids[&3].1),
        1,
        "the value the insert displaced is freed"
    );
    finish(Arc::into_inner(map).expect("the hook is gone"));
}

/// A removed key that only the dirty map held leaves it under the lock, where only the dirty
/// map's share of the entry is dropped (the remove holds another); when its value is a node
/// (key 3 is overwritten first, and a rotation ends the first value's epoch, so no retirement
/// record holds the entry), the remove's own share is the last, dropped once the removed
/// value is retired and its `Ref` is a local. A panicking key `Drop` there loses the `Ref`
/// only: the key is removed, the value freed once. (Before the tombstones, `remove` took the
/// entry out and dropped it before retiring the removed value, and this leaked the value.)
#[test]
fn a_panicking_drop_of_the_key_of_a_removed_dirty_entry_leaks_nothing() {
    start();
    let (map, mut model, ids) = setup(&[1], &[3, 4, 5]);
    drop(map.insert(Key::new(3), Val::new(33)));
    model.insert(3, 33);
    overwrite(&map, &mut model, 1, RETIRED_PER_EPOCH - 1);
    assert_eq!(drops_of(ids[&3].1), 1, "the first value's epoch has ended");
    let dirty_len = map.stats().dirty_len;
    expect_trap(Site::Drop(ids[&3].0), 1, || map.remove(&Key::new(3)));
    model.remove(&3);
    assert_eq!(
        map.stats().dirty_len,
        dirty_len.map(|len| len - 1),
        "out of the dirty map"
    );
    check(&map, &model);
    finish(map);
}

/// A removed dirty-only key whose first value was never displaced goes with that value: the
/// value's retirement record holds the entry, so the promotion by `iter`, which ends the
/// value's epoch, frees both; a panicking key `Drop` there leaves the promotion done and
/// frees the rest of the epoch.
#[test]
fn a_panicking_drop_of_a_key_freed_with_its_first_value_leaks_nothing() {
    start();
    let (map, mut model, ids) = setup(&[1], &[3, 4, 5]);
    let removed = map.remove(&Key::new(3)).expect("present");
    model.remove(&3);
    drop(removed);
    assert_eq!(
        drops_of(ids[&3].1),
        0,
        "the removed value waits for its epoch"
    );
    assert_eq!(
        drops_of(ids[&3].0),
        0,
        "its retirement record holds the key"
    );
    let promotions = map.stats().promotions;
    expect_trap(Site::Drop(ids[&3].0), 1, || drop(map.iter()));
    assert_eq!(map.stats().promotions, promotions + 1);
    assert_eq!(drops_of(ids[&3].1), 1, "the removed value is freed");
    check(&map, &model);
    finish(map);
}

// ---------------------------------------------------------------------------------------------
// Dirty rebuilds.

#[test]
fn a_panicking_eq_in_the_lookup_before_a_rebuild_prevents_it() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[]);
    let before = map.stats();
    assert!(!before.amended && before.dirty_len.is_none());
    // A new key hashed like key 1: compared with it lock-free (by `update`), then under the
    // lock, where the lookup precedes the rebuild the new key would cause. (Not `insert`:
    // its locked section skips the read table it searched while no snapshot was published
    // since, see `a_new_key_is_compared_with_a_colliding_snapshot_key_once`.)
    expect_trap(Site::Eq(60), 2, || {
        map.update_or_insert_with(Key::hashed_as(60, 1), |_| unreachable!(), || Val::new(7))
    });
    assert_eq!(map.stats(), before);
    let val = Val::new(7);
    drop(map.insert(Key::hashed_as(60, 1), val));
    model.insert(60, 7);
    let rebuilt = map.stats();
    assert_eq!(rebuilt.dirty_rebuilds, before.dirty_rebuilds + 1);
    assert_eq!(rebuilt.dirty_len, Some(3));
    check(&map, &model);
    finish(map);
}

/// A new key is compared with a snapshot key it collides with once, lock-free: while no
/// snapshot was published since, the locked section does not search the read table again
/// (and with no dirty map yet, it compares nothing before the rebuild).
#[test]
fn a_new_key_is_compared_with_a_colliding_snapshot_key_once() {
    for get_or_insert in [false, true] {
        start();
        let (map, mut model, _) = setup(&[1, 2], &[]);
        arm(Site::Eq(60), 2);
        let (key, val) = (Key::hashed_as(60, 1), Val::new(7));
        if get_or_insert {
            assert!(map.get_or_insert(key, val).is_inserted());
        } else {
            assert!(map.insert(key, val).is_none());
        }
        assert_eq!(
            ARMED.replace(None),
            Some((Site::Eq(60), 1)),
            "compared twice"
        );
        model.insert(60, 7);
        check(&map, &model);
        finish(map);
    }
}

#[test]
fn a_panicking_drop_in_the_garbage_of_a_rebuild_frees_the_rest_of_the_epoch() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[]);
    let retired = overwrite(&map, &mut model, 1, CHAIN);
    let before = map.stats();
    assert_eq!(before.retired, CHAIN);
    // The first new key rebuilds the dirty map and republishes the snapshot; the replaced one
    // is the only holder of the epoch those values were retired to, so dropping it after
    // unlocking frees them: the middle one panics.
    expect_trap(Site::Drop(retired[CHAIN / 2]), 1, || {
        map.insert(Key::new(5), Val::new(105))
    });
    model.insert(5, 105);
    for &id in &retired {
        assert_eq!(drops_of(id), 1, "retired value {id}");
    }
    let expected = stats_after(&before, |s| {
        s.dirty_rebuilds += 1;
        s.amended = true;
        s.dirty_len = Some(3);
        s.len += 1;
        s.retired = 0;
    });
    assert_eq!(map.stats(), expected);
    check(&map, &model);
    finish(map);
}

// ---------------------------------------------------------------------------------------------
// Promotions.

#[test]
fn a_panicking_eq_in_the_lookup_that_would_promote_prevents_it() {
    start();
    let (map, model, _) = setup(&[1], &[3, 4]);
    drop(map.get(&Key::new(3)));
    drop(map.get(&Key::new(4)));
    let before = map.stats();
    assert_eq!((before.misses, before.dirty_len), (2, Some(3)));
    expect_trap(Site::Eq(3), 1, || map.get(&Key::new(3)));
    expect_trap(Site::Eq(4), 1, || map.remove(&Key::new(4)));
    assert_eq!(map.stats(), before, "no miss counted, no promotion");
    assert_eq!(map.get(&Key::new(3)).map(|val| val.v), Some(103));
    assert_eq!(map.stats().promotions, before.promotions + 1);
    check(&map, &model);
    finish(map);
}

#[test]
fn a_panicking_drop_in_the_garbage_of_a_promotion_frees_the_rest_of_the_epoch() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[3]);
    let retired = overwrite(&map, &mut model, 1, CHAIN);
    let before = map.stats();
    // Iterating an amended map promotes; the replaced snapshot, dropped after unlocking,
    // frees the values retired to its epoch.
    expect_trap(Site::Drop(retired[1]), 1, || map.iter());
    for &id in &retired {
        assert_eq!(drops_of(id), 1, "retired value {id}");
    }
    let expected = stats_after(&before, |s| {
        s.promotions += 1;
        s.amended = false;
        s.dirty_len = None;
        s.snapshot_len = 3;
        s.retired = 0;
    });
    assert_eq!(map.stats(), expected);
    check(&map, &model);
    finish(map);
}

#[test]
fn a_panicking_drop_when_the_ref_of_a_promoting_get_is_dropped() {
    start();
    let (map, mut model, _) = setup(&[1], &[3]);
    let retired = overwrite(&map, &mut model, 1, CHAIN);
    drop(map.get(&Key::new(3))); // one miss of two
    let value = map.get(&Key::new(3)).unwrap(); // the second: promotes
    assert_eq!(value.v, 103);
    let promoted = map.stats();
    assert_eq!((promoted.promotions, promoted.amended), (2, false));
    assert_eq!(
        promoted.retired, CHAIN,
        "the Ref pins the replaced snapshot"
    );
    expect_trap(Site::Drop(retired[CHAIN - 1]), 1, || drop(value));
    assert_eq!(map.stats().retired, 0);
    check(&map, &model);
    finish(map);
}

/// Bug (fixed): operations that found a key under the lock dropped the snapshot guard they
/// got from the locked lookup before retiring the value they displaced. When that lookup had
/// promoted, the guard was the last holder of the replaced snapshot, so dropping it freed the
/// values retired to its epoch; a panicking `Drop` there leaked the displaced value (a
/// `Displaced` does nothing when dropped). The lock-free paths had the same order, and the
/// guard is the last holder there whenever the snapshot was replaced meanwhile.
#[test]
fn a_panicking_drop_freed_by_a_promoting_remove_or_compare_leaks_nothing() {
    start();
    type Promoting = (&'static str, fn(&Map), fn(&mut Model));
    let ops: &[Promoting] = &[
        // dirty {1, 3}: key 3 becomes a tombstone there, and one miss promotes {1, 3}
        (
            "remove",
            |m| drop(m.remove(&Key::new(3))),
            |model| {
                model.remove(&3);
            },
        ),
        // dirty {1, 3}, one miss counted before: the second promotes
        (
            "compare_and_swap",
            |m| drop(m.compare_and_swap(&Key::new(3), &Val::new(103), Val::new(7))),
            |model| {
                model.insert(3, 7);
            },
        ),
        (
            "compare_and_remove",
            |m| {
                let _ = m.compare_and_remove(&Key::new(3), &Val::new(103));
            },
            |model| {
                model.remove(&3);
            },
        ),
    ];
    for &(name, op, outcome) in ops {
        let (map, mut model, ids) = setup(&[1], &[3]);
        if name != "remove" {
            drop(map.get(&Key::new(3)));
        }
        let retired = overwrite(&map, &mut model, 1, CHAIN);
        let before = map.stats();
        expect_trap(Site::Drop(retired[CHAIN / 2]), 1, || op(&map));
        outcome(&mut model);
        assert_eq!(map.stats().promotions, before.promotions + 1, "{name}");
        for &id in &retired {
            assert_eq!(drops_of(id), 1, "{name}: retired value {id}");
        }
        check(&map, &model);
        drop(map);
        assert_eq!(
            drops_of(ids[&3].1),
            1,
            "{name}: the displaced value is freed"
        );
    }
    finish_all();
}

/// The lock-free form of the bug above: the snapshot is replaced while a compare-and-swap on
/// a key of it runs (here by the value's own `PartialEq`, which may use the map; in practice
/// by another thread), so the guard the compare-and-swap drops is the last holder.
#[test]
fn a_panicking_drop_freed_by_a_lock_free_compare_and_swap_leaks_nothing() {
    start();
    let (map, mut model, ids) = setup(&[1, 2], &[]);
    let retired = overwrite(&map, &mut model, 2, CHAIN);
    let map = Arc::new(map);
    let inner = map.clone();
    ON_VALUE_CODE.set(Some(Box::new(move || {
        drop(inner.insert(Key::new(5), Val::new(105))); // rebuild: republishes
    })));
    expect_trap(Site::Drop(retired[0]), 1, || {
        map.compare_and_swap(&Key::new(1), &Val::new(101), Val::new(7))
    });
    model.insert(1, 7);
    model.insert(5, 105);
    for &id in &retired {
        assert_eq!(drops_of(id), 1, "retired value {id}");
    }
    check(&map, &model);
    let map = Arc::into_inner(map).expect("the hook ran and dropped its map");
    drop(map);
    assert_eq!(drops_of(ids[&1].1), 1, "the displaced value is freed");
    finish_all();
}

/// The same for the results that are not a displaced value: the value `get_cloned` made,
/// and the value a failed compare-and-swap gives back, were leaked when dropping the guard
/// (or `Ref`) after computing them panicked: a value being returned is leaked, not dropped,
/// when a later `Drop` in the same function panics (rust-lang/rust#47949).
#[test]
fn a_panicking_drop_freed_after_the_result_is_made_leaks_nothing() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[]);
    let map = Arc::new(map);
    // Makes the next `Clone` or `PartialEq` of a value insert `k`, which republishes, and
    // promote, so that the next new key republishes again.
    let replace_snapshot = |model: &mut Model, k: u64| {
        let inner = map.clone();
        ON_VALUE_CODE.set(Some(Box::new(move || {
            drop(inner.insert(Key::new(k), Val::new(100 + k)));
            drop(inner.iter());
        })));
        model.insert(k, 100 + k);
    };
    // get_cloned: the clone is made, then the `Ref` (the last holder) is dropped.
    let retired = overwrite(&map, &mut model, 2, CHAIN);
    replace_snapshot(&mut model, 5);
    expect_trap(Site::Drop(retired[0]), 1, || map.get_cloned(&Key::new(1)));
    // compare_and_swap that fails: `new` is given back, then the guard is dropped.
    let retired = overwrite(&map, &mut model, 2, CHAIN);
    replace_snapshot(&mut model, 6);
    expect_trap(Site::Drop(retired[0]), 1, || {
        map.compare_and_swap(&Key::new(1), &Val::new(0), Val::new(7))
    });
    check(&map, &model);
    finish(Arc::into_inner(map).expect("the hooks ran and dropped their maps"));
}

// ---------------------------------------------------------------------------------------------
// Rotation and chains of epochs.

#[test]
fn a_panicking_drop_of_an_epoch_filled_by_a_rotating_insert_frees_the_rest() {
    start();
    let (map, mut model, _) = setup(&[1], &[]);
    let before = map.stats();
    assert_eq!(before.retired, 0);
    // The epoch receives full batches only (`stats` would hand the last one over early): all
    // but the last `RETIRED_PER_BATCH - 1` of these, which wait in this thread's batch.
    let mut retired = overwrite(&map, &mut model, 1, RETIRED_PER_EPOCH - 1);
    retired.push(map.get(&Key::new(1)).unwrap().id());
    // The insert that fills the batch hands it over, which fills the epoch: it rotates. Its
    // own guard keeps the replaced snapshot alive through the rotation (in a single thread,
    // the rotation's garbage is never the last holder) and into the `Ref` it returns, so
    // dropping that frees the full epoch.
    expect_trap(Site::Drop(retired[7]), 1, || {
        drop(map.insert(Key::new(1), Val::new(7)))
    });
    model.insert(1, 7);
    for &id in &retired {
        assert_eq!(drops_of(id), 1, "retired value {id}");
    }
    let expected = stats_after(&before, |s| {
        s.rotations += 1;
        s.retired = 0;
    });
    assert_eq!(map.stats(), expected);
    check(&map, &model);
    finish(map);
}

/// Bug (fixed): `Epoch::drop` walked the chain with `next = match .. { Ok(epoch) =>
/// epoch.successor.take(), .. }`; when dropping `epoch` at the end of the arm panicked, the
/// successor already taken out (the value of the arm) was leaked with the whole rest of the
/// chain (rust-lang/rust#47949).
#[test]
fn a_panicking_drop_in_a_chain_of_epochs_released_at_once_frees_the_rest() {
    start();
    let (map, mut model, _) = setup(&[1], &[]);
    let pin = map.get(&Key::new(1)).unwrap(); // pins the snapshot, so every later epoch
    let mut retired = Vec::new();
    let epochs = if cfg!(miri) { 4 } else { 40 };
    for round in 0..epochs {
        retired.extend(overwrite(&map, &mut model, 1, 3));
        put(&map, &mut model, 10 + round, round); // rebuild: a new epoch
        drop(map.iter()); // promotion: another one
    }
    let before = map.stats();
    assert_eq!(before.retired, retired.len());
    expect_trap(Site::Drop(retired[retired.len() / 2]), 1, || drop(pin));
    for &id in &retired {
        assert_eq!(drops_of(id), 1, "retired value {id}");
    }
    assert_eq!(map.stats(), stats_after(&before, |s| s.retired = 0));
    check(&map, &model);
    finish(map);
}

// ---------------------------------------------------------------------------------------------
// Readers and iteration.

/// Retires `CHAIN` values to the current epoch, then republishes (a promotion if the map is
/// amended, else a rebuild for `new_key`), so that the values are freed when the last holder
/// of the snapshot current before lets go.
fn retire_behind(map: &Map, model: &mut Model, new_key: u64) -> Vec<u64> {
    let retired = overwrite(map, model, 1, CHAIN);
    if map.stats().amended {
        drop(map.iter());
    } else {
        put(map, model, new_key, 100 + new_key);
    }
    assert_eq!(map.stats().retired, CHAIN, "pinned");
    retired
}

#[test]
fn a_panicking_drop_released_by_a_reader_leaves_it_usable() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[]);
    let mut reader: Reader<'_, Key, Val, Spread> = map.reader();
    assert_eq!(reader.get(&Key::new(2)).map(|val| val.v), Some(102));
    // refresh lets go of the cached snapshot.
    let retired = retire_behind(&map, &mut model, 5);
    expect_trap(Site::Drop(retired[3]), 1, || reader.refresh());
    assert_eq!(map.stats().retired, 0);
    assert_eq!(
        reader.get(&Key::new(1)).map(|val| val.v),
        model.get(&1).copied()
    );
    // A lookup moves on to the current snapshot by itself.
    let retired = retire_behind(&map, &mut model, 0);
    expect_trap(Site::Drop(retired[CHAIN - 1]), 1, || {
        reader.get(&Key::new(2)).map(|val| val.v)
    });
    assert_eq!(map.stats().retired, 0);
    assert_eq!(reader.get(&Key::new(2)).map(|val| val.v), Some(102));
    // The value kept from a locked lookup is let go, with the snapshot it pins, when the
    // Reader moves on to a newer snapshot: the values freed then may panic.
    put(&map, &mut model, 6, 106);
    assert_eq!(reader.get(&Key::new(6)).map(|val| val.v), Some(106)); // dirty-only: locked
    let retired = retire_behind(&map, &mut model, 0);
    expect_trap(Site::Drop(retired[CHAIN / 2]), 1, || {
        reader.get(&Key::new(2)).map(|val| val.v) // moves the cache on
    });
    assert_eq!(map.stats().retired, 0);
    assert_eq!(reader.get(&Key::new(6)).map(|val| val.v), Some(106));
    // A new locked lookup replaces the kept value while the kept snapshot is current.
    put(&map, &mut model, 8, 108); // rebuild: 8 is dirty-only
    put(&map, &mut model, 9, 109);
    assert_eq!(reader.get(&Key::new(8)).map(|val| val.v), Some(108)); // kept
    assert_eq!(reader.get(&Key::new(9)).map(|val| val.v), Some(109)); // replaces it
    drop(reader);
    check(&map, &model);
    finish(map);
}

#[test]
fn a_panicking_drop_released_by_an_iterator_or_an_item_leaves_the_map_usable() {
    start();
    let (map, mut model, _) = setup(&[1, 2], &[]);
    let mut iter = map.iter();
    drop(iter.next()); // an iterator pins its pair's snapshot once it reaches it
    let retired = retire_behind(&map, &mut model, 5);
    expect_trap(Site::Drop(retired[CHAIN / 2]), 1, || drop(iter));
    assert_eq!(map.stats().retired, 0);
    check(&map, &model);
    // Items share the iterator's pin; the last one to go releases it.
    let (key, val) = map.iter().next().unwrap();
    let retired = retire_behind(&map, &mut model, 6);
    drop(key);
    assert_eq!(map.stats().retired, CHAIN);
    expect_trap(Site::Drop(retired[2]), 1, || drop(val));
    assert_eq!(map.stats().retired, 0);
    let mut values = map.values();
    drop(values.next());
    let retired = retire_behind(&map, &mut model, 7);
    expect_trap(Site::Drop(retired[1]), 1, || values.count());
    check(&map, &model);
    finish(map);
}

// ---------------------------------------------------------------------------------------------
// Drops of whole tables: hashbrown alone stops dropping a table at the first panicking element.

/// Values in the first-visited (= first-dropped) order of the snapshot's table.
fn in_table_order(map: &Map) -> Vec<(u64, u64, u64)> {
    let order = map
        .iter()
        .map(|(key, val)| (key.k, key.id(), val.id()))
        .collect();
    order
}

/// Bug (fixed): `clear` drops the old table after unlocking; hashbrown's table `Drop` stops at
/// the first element whose drop panics and leaks the remaining entries and the table.
#[test]
fn a_panicking_drop_in_the_garbage_of_clear_leaks_nothing() {
    start();
    let (map, mut model, _) = setup(&[1, 2, 3, 4, 5], &[]);
    let first = in_table_order(&map)[0];
    expect_trap(Site::Drop(first.2), 1, || map.clear());
    model.clear();
    check(&map, &model);
    finish(map);
}

/// A clear in place (every key dirty-only) expunges the entries under the lock and drops the
/// old dirty table after unlocking (keys with a `Drop`): a panicking key `Drop` there leaks
/// nothing, and the map, still amended, works on. Key 4's entry must have no other owner: it
/// is overwritten until a rotation (a publication that keeps the read table empty) ends the
/// epoch its first value was retired to, with promotions off.
#[test]
fn a_panicking_key_drop_after_a_clear_in_place_leaks_nothing() {
    start();
    let map: Map = DualMap::builder()
        .pairs(1)
        .min_promotion_misses(usize::MAX)
        .hasher(Spread)
        .build();
    let mut model = Model::new();
    let key_4 = [3, 4, 5].map(|k| put(&map, &mut model, k, 100 + k))[1].0;
    for v in 0..RETIRED_PER_EPOCH as u64 {
        put(&map, &mut model, 4, 1000 + v);
    }
    let stats = map.stats();
    assert_eq!((stats.snapshot_len, stats.rotations), (0, 1), "{stats:?}");
    expect_trap(Site::Drop(key_4), 1, || map.clear());
    model.clear();
    assert!(map.stats().amended, "cleared in place");
    check(&map, &model);
    put(&map, &mut model, 4, 44);
    check(&map, &model);
    finish(map);
}

/// Bug (fixed): the same when the map itself is dropped.
#[test]
fn a_panicking_drop_while_the_map_is_dropped_leaks_nothing() {
    start();
    let (map, _, _) = setup(&[1, 2, 3, 4, 5], &[6]);
    let first = in_table_order(&map)[0];
    expect_trap(Site::Drop(first.1), 1, || drop(map));
    assert_every_instance_dropped_once();
}

/// Bug (fixed): the same when a promotion replaces a read table that holds expunged entries:
/// they are dropped with it, and a panicking key `Drop` leaks the ones after it.
#[test]
fn a_panicking_key_drop_of_an_expunged_entry_dropped_by_a_promotion_leaks_nothing() {
    start();
    let (map, mut model, _) = setup(&[1, 2, 3, 4, 5, 6], &[]);
    let order = in_table_order(&map);
    for &(k, _, _) in &order[..5] {
        drop(map.remove(&Key::new(k)));
        model.remove(&k);
    }
    put(&map, &mut model, 9, 109); // rebuild: expunges the five tombstones
    let before = map.stats();
    expect_trap(Site::Drop(order[0].1), 1, || map.iter()); // promotion drops them
    assert_eq!(map.stats().promotions, before.promotions + 1);
    check(&map, &model);
    finish(map);
}
