//! The workloads, shared word for word by the criterion bench `benches/go_workloads.rs` (which
//! includes this file with `#[path]`) and the `dualmap-bench` harness: the maps under test
//! behind one trait ([`BenchMap`]), Go's 24 `sync.Map` benchmark workloads ([`GoWorkload`],
//! [`run_go`]), the mixed workloads ([`Mix`], [`mix_phase`]), the write workloads
//! ([`WriteLoad`], [`write_load_phase`]), the timed phases they share ([`run_phase`], and
//! [`interleaved_medians`], which runs several maps' phases in turn) and the write-scaling
//! benchmark ([`run_write_scaling`]).
//!
//! Keys and values are `u64`; every map hashes with `ahash::RandomState`. Every runner is
//! generic over the map type, so the per-operation code is monomorphised for each map (no
//! dynamic dispatch inside a timed loop); [`with_map_type!`] picks the type from a
//! [`MapKind`] once, outside the timing.

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The hasher of every map under test.
pub type Hasher = ahash::RandomState;

/// The environment variable that overrides the thread counts (a comma-separated list, e.g.
/// `1,2,4`), read by the criterion bench and, unless `--threads` is given, by the harness.
pub const THREADS_ENV: &str = "DUALMAP_BENCH_THREADS";

/// The number of hardware threads (`available_parallelism`, 1 if unknown).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The thread counts named by [`THREADS_ENV`], if it is set.
///
/// # Panics
/// If the variable is set but is not a comma-separated list of positive integers.
pub fn threads_from_env() -> Option<Vec<usize>> {
    let value = std::env::var(THREADS_ENV).ok()?;
    let threads: Vec<usize> = value
        .split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => panic!(
                "{THREADS_ENV}={value:?}: expected a comma-separated list of positive integers"
            ),
        })
        .collect();
    Some(threads)
}

/// Go's thread counts: 1 and `available_parallelism` (deduplicated), unless overridden by
/// [`THREADS_ENV`].
pub fn go_thread_counts() -> Vec<usize> {
    threads_from_env().unwrap_or_else(|| {
        let mut threads = vec![1, available_threads()];
        threads.dedup();
        threads
    })
}

/// How a setup step puts a key: Go's setups use `Store` in some workloads, `LoadOrStore` in
/// others, and dualmap's state afterwards can differ (amended or not), so this is kept.
#[derive(Clone, Copy, Debug)]
pub enum Put {
    /// Go's `Store`.
    Store,
    /// Go's `LoadOrStore`.
    LoadOrStore,
}

/// One map under test: Go's `sync.Map` operations on `u64` keys and values.
///
/// The lock-based maps follow Go's own `RWMutexMap` (the reference map of Go's benchmarks):
/// `load` takes the read lock; `load_or_store` tries under the read lock first and takes the
/// write lock only for an absent key; the compare operations take the write lock.
pub trait BenchMap: Sync + Sized {
    /// False for the frozen `HashMap`, which supports only `load` and `range` after setup.
    const WRITES: bool = true;

    /// An empty map with room for `capacity` keys.
    fn with_capacity(capacity: usize) -> Self;

    /// Puts a key during setup (single-threaded, untimed). The frozen map overrides this.
    fn setup_put(&mut self, key: u64, value: u64, how: Put) {
        match how {
            Put::Store => self.store(key, value),
            Put::LoadOrStore => {
                self.load_or_store(key, value);
            }
        }
    }

    /// Brings a freshly filled map to the steady state of a read-mostly map, untimed, before
    /// the mixed and write-scaling benchmarks (dualmap: one promotion, so that every key is
    /// in the read snapshot). Go's workloads do not call it: they prime with loads, as Go does.
    fn settle(&self) {}

    /// Go's `Load`.
    fn load(&self, key: u64) -> Option<u64>;
    /// Go's `Store`.
    fn store(&self, key: u64, value: u64);
    /// Go's `Swap`: stores and returns the previous value.
    fn swap(&self, key: u64, value: u64) -> Option<u64>;
    /// Go's `LoadOrStore`: the value now in the map, and true if it was loaded (present).
    fn load_or_store(&self, key: u64, value: u64) -> (u64, bool);
    /// Go's `LoadAndDelete`.
    fn load_and_delete(&self, key: u64) -> Option<u64>;
    /// Go's `Delete`.
    fn delete(&self, key: u64) {
        self.load_and_delete(key);
    }
    /// Go's `CompareAndSwap`: never inserts.
    fn compare_and_swap(&self, key: u64, old: u64, new: u64) -> bool;
    /// Go's `CompareAndDelete`.
    fn compare_and_delete(&self, key: u64, old: u64) -> bool;
    /// Go's `Range`: calls `f` on each pair until it returns false.
    fn range(&self, f: impl FnMut(u64, u64) -> bool);
    /// Go's `Clear`.
    fn clear(&self);

    /// Per-thread read state: dualmap's `Reader` for [`ViaReader`], nothing for every other
    /// map. The mixes create one per thread before timing and route their gets through it.
    type Local<'a>
    where
        Self: 'a;
    /// A thread's read state.
    fn local(&self) -> Self::Local<'_>;
    /// A get through the thread's read state (for every map but [`ViaReader`], [`load`](Self::load)).
    fn load_local(&self, local: &mut Self::Local<'_>, key: u64) -> Option<u64>;
}

/// Implements the per-thread read state of a map that has none.
macro_rules! no_local {
    () => {
        type Local<'a> = ();
        fn local(&self) -> Self::Local<'_> {}
        fn load_local(&self, _local: &mut (), key: u64) -> Option<u64> {
            self.load(key)
        }
    };
}

/// dualmap.
pub type DualMapT = dualmap::DualMap<u64, u64, Hasher>;

/// The read/dirty pairs of every dualmap built from now on (`--dualmap-pairs`); unset, the
/// crate's default.
static DUALMAP_PAIRS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Sets `--dualmap-pairs`, once, before any map is built.
pub fn set_dualmap_pairs(pairs: usize) {
    DUALMAP_PAIRS
        .set(pairs)
        .expect("--dualmap-pairs is set once");
}
/// dashmap, the sharded `RwLock` map.
pub type DashMapT = dashmap::DashMap<u64, u64, Hasher>;
/// One `parking_lot::RwLock` around a `HashMap`.
pub type RwLockMapT = parking_lot::RwLock<HashMap<u64, u64, Hasher>>;
/// One `std::sync::Mutex` around a `HashMap`.
pub type MutexMapT = std::sync::Mutex<HashMap<u64, u64, Hasher>>;
/// papaya, the lock-free map with epoch-based reclamation (seize).
pub type PapayaT = papaya::HashMap<u64, u64, Hasher>;
/// scc's `HashMap`, bucket locks with epoch-based reclamation (sdd).
pub type SccT = scc::HashMap<u64, u64, Hasher>;

/// A `HashMap` that nobody writes after setup, read with no synchronisation: the ceiling
/// for reads. Supports only `load` and `range`.
#[derive(Debug)]
pub struct Frozen(HashMap<u64, u64, Hasher>);

/// dualmap read through a per-thread [`dualmap::Reader`] (a cached snapshot; its hits take no
/// guard); every other operation goes to the map itself. Only the mixes use the reader.
#[derive(Debug)]
pub struct ViaReader(DualMapT);

impl BenchMap for ViaReader {
    type Local<'a> = dualmap::Reader<'a, u64, u64, Hasher>;
    fn local(&self) -> Self::Local<'_> {
        self.0.reader()
    }
    fn load_local(&self, local: &mut Self::Local<'_>, key: u64) -> Option<u64> {
        local.get(&key).copied()
    }

    fn with_capacity(capacity: usize) -> Self {
        ViaReader(<DualMapT as BenchMap>::with_capacity(capacity))
    }
    fn settle(&self) {
        self.0.settle();
    }
    fn load(&self, key: u64) -> Option<u64> {
        BenchMap::load(&self.0, key)
    }
    fn store(&self, key: u64, value: u64) {
        BenchMap::store(&self.0, key, value);
    }
    fn swap(&self, key: u64, value: u64) -> Option<u64> {
        BenchMap::swap(&self.0, key, value)
    }
    fn load_or_store(&self, key: u64, value: u64) -> (u64, bool) {
        BenchMap::load_or_store(&self.0, key, value)
    }
    fn load_and_delete(&self, key: u64) -> Option<u64> {
        BenchMap::load_and_delete(&self.0, key)
    }
    fn compare_and_swap(&self, key: u64, old: u64, new: u64) -> bool {
        BenchMap::compare_and_swap(&self.0, key, old, new)
    }
    fn compare_and_delete(&self, key: u64, old: u64) -> bool {
        BenchMap::compare_and_delete(&self.0, key, old)
    }
    fn range(&self, f: impl FnMut(u64, u64) -> bool) {
        BenchMap::range(&self.0, f);
    }
    fn clear(&self) {
        BenchMap::clear(&self.0);
    }
}

impl BenchMap for DualMapT {
    no_local!();

    fn with_capacity(capacity: usize) -> Self {
        match DUALMAP_PAIRS.get() {
            Some(&pairs) => dualmap::DualMap::builder()
                .pairs(pairs)
                .capacity(capacity)
                .hasher(Hasher::new())
                .build(),
            None => Self::with_capacity_and_hasher(capacity, Hasher::new()),
        }
    }
    fn settle(&self) {
        // Iterating an amended map promotes its dirty map at once (one lock, no copy).
        drop(self.iter());
    }
    fn load(&self, key: u64) -> Option<u64> {
        self.get(&key).map(|value| *value)
    }
    fn store(&self, key: u64, value: u64) {
        self.insert(key, value);
    }
    fn swap(&self, key: u64, value: u64) -> Option<u64> {
        self.insert(key, value).map(|previous| *previous)
    }
    fn load_or_store(&self, key: u64, value: u64) -> (u64, bool) {
        match self.get_or_insert(key, value) {
            dualmap::GetOrInsert::Loaded(current) => (*current, true),
            dualmap::GetOrInsert::Inserted(current) => (*current, false),
        }
    }
    fn load_and_delete(&self, key: u64) -> Option<u64> {
        self.remove(&key).map(|value| *value)
    }
    fn compare_and_swap(&self, key: u64, old: u64, new: u64) -> bool {
        dualmap::DualMap::compare_and_swap(self, &key, &old, new).is_ok()
    }
    fn compare_and_delete(&self, key: u64, old: u64) -> bool {
        self.compare_and_remove(&key, &old)
    }
    fn range(&self, mut f: impl FnMut(u64, u64) -> bool) {
        // Go's `Range` maps to `try_for_each`: a closure walk, with no pin per item.
        let _ = self.try_for_each(|key, value| {
            if f(*key, *value) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
    }
    fn clear(&self) {
        dualmap::DualMap::clear(self);
    }
}

impl BenchMap for DashMapT {
    no_local!();

    fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, Hasher::new())
    }
    fn load(&self, key: u64) -> Option<u64> {
        self.get(&key).map(|value| *value)
    }
    fn store(&self, key: u64, value: u64) {
        self.insert(key, value);
    }
    fn swap(&self, key: u64, value: u64) -> Option<u64> {
        self.insert(key, value)
    }
    fn load_or_store(&self, key: u64, value: u64) -> (u64, bool) {
        if let Some(current) = self.get(&key) {
            return (*current, true);
        }
        match self.entry(key) {
            dashmap::Entry::Occupied(entry) => (*entry.get(), true),
            dashmap::Entry::Vacant(entry) => {
                entry.insert(value);
                (value, false)
            }
        }
    }
    fn load_and_delete(&self, key: u64) -> Option<u64> {
        self.remove(&key).map(|(_, value)| value)
    }
    fn compare_and_swap(&self, key: u64, old: u64, new: u64) -> bool {
        match self.get_mut(&key) {
            Some(mut value) if *value == old => {
                *value = new;
                true
            }
            _ => false,
        }
    }
    fn compare_and_delete(&self, key: u64, old: u64) -> bool {
        self.remove_if(&key, |_, value| *value == old).is_some()
    }
    fn range(&self, mut f: impl FnMut(u64, u64) -> bool) {
        for pair in self.iter() {
            if !f(*pair.key(), *pair.value()) {
                break;
            }
        }
    }
    fn clear(&self) {
        dashmap::DashMap::clear(self);
    }
}

impl BenchMap for RwLockMapT {
    no_local!();

    fn with_capacity(capacity: usize) -> Self {
        parking_lot::RwLock::new(HashMap::with_capacity_and_hasher(capacity, Hasher::new()))
    }
    fn load(&self, key: u64) -> Option<u64> {
        self.read().get(&key).copied()
    }
    fn store(&self, key: u64, value: u64) {
        self.write().insert(key, value);
    }
    fn swap(&self, key: u64, value: u64) -> Option<u64> {
        self.write().insert(key, value)
    }
    fn load_or_store(&self, key: u64, value: u64) -> (u64, bool) {
        let present = self.read().get(&key).copied();
        if let Some(current) = present {
            return (current, true);
        }
        let mut map = self.write();
        match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => (*entry.get(), true),
            std::collections::hash_map::Entry::Vacant(entry) => (*entry.insert(value), false),
        }
    }
    fn load_and_delete(&self, key: u64) -> Option<u64> {
        self.write().remove(&key)
    }
    fn compare_and_swap(&self, key: u64, old: u64, new: u64) -> bool {
        match self.write().get_mut(&key) {
            Some(value) if *value == old => {
                *value = new;
                true
            }
            _ => false,
        }
    }
    fn compare_and_delete(&self, key: u64, old: u64) -> bool {
        let mut map = self.write();
        if map.get(&key) == Some(&old) {
            map.remove(&key);
            true
        } else {
            false
        }
    }
    fn range(&self, mut f: impl FnMut(u64, u64) -> bool) {
        for (&key, &value) in self.read().iter() {
            if !f(key, value) {
                break;
            }
        }
    }
    fn clear(&self) {
        self.write().clear();
    }
}

impl BenchMap for MutexMapT {
    no_local!();

    fn with_capacity(capacity: usize) -> Self {
        std::sync::Mutex::new(HashMap::with_capacity_and_hasher(capacity, Hasher::new()))
    }
    fn load(&self, key: u64) -> Option<u64> {
        self.lock().unwrap().get(&key).copied()
    }
    fn store(&self, key: u64, value: u64) {
        self.lock().unwrap().insert(key, value);
    }
    fn swap(&self, key: u64, value: u64) -> Option<u64> {
        self.lock().unwrap().insert(key, value)
    }
    fn load_or_store(&self, key: u64, value: u64) -> (u64, bool) {
        match self.lock().unwrap().entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => (*entry.get(), true),
            std::collections::hash_map::Entry::Vacant(entry) => (*entry.insert(value), false),
        }
    }
    fn load_and_delete(&self, key: u64) -> Option<u64> {
        self.lock().unwrap().remove(&key)
    }
    fn compare_and_swap(&self, key: u64, old: u64, new: u64) -> bool {
        match self.lock().unwrap().get_mut(&key) {
            Some(value) if *value == old => {
                *value = new;
                true
            }
            _ => false,
        }
    }
    fn compare_and_delete(&self, key: u64, old: u64) -> bool {
        let mut map = self.lock().unwrap();
        if map.get(&key) == Some(&old) {
            map.remove(&key);
            true
        } else {
            false
        }
    }
    fn range(&self, mut f: impl FnMut(u64, u64) -> bool) {
        for (&key, &value) in self.lock().unwrap().iter() {
            if !f(key, value) {
                break;
            }
        }
    }
    fn clear(&self) {
        self.lock().unwrap().clear();
    }
}

impl BenchMap for PapayaT {
    no_local!();

    fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, Hasher::new())
    }
    fn load(&self, key: u64) -> Option<u64> {
        self.pin().get(&key).copied()
    }
    fn store(&self, key: u64, value: u64) {
        self.pin().insert(key, value);
    }
    fn swap(&self, key: u64, value: u64) -> Option<u64> {
        self.pin().insert(key, value).copied()
    }
    fn load_or_store(&self, key: u64, value: u64) -> (u64, bool) {
        match self.pin().try_insert(key, value) {
            Ok(inserted) => (*inserted, false),
            Err(occupied) => (*occupied.current, true),
        }
    }
    fn load_and_delete(&self, key: u64) -> Option<u64> {
        self.pin().remove(&key).copied()
    }
    fn compare_and_swap(&self, key: u64, old: u64, new: u64) -> bool {
        let map = self.pin();
        let outcome = map.compute(key, |entry| match entry {
            Some((_, value)) if *value == old => papaya::Operation::Insert(new),
            _ => papaya::Operation::Abort(()),
        });
        matches!(outcome, papaya::Compute::Updated { .. })
    }
    fn compare_and_delete(&self, key: u64, old: u64) -> bool {
        matches!(
            self.pin().remove_if(&key, |_, value| *value == old),
            Ok(Some(_))
        )
    }
    fn range(&self, mut f: impl FnMut(u64, u64) -> bool) {
        for (&key, &value) in self.pin().iter() {
            if !f(key, value) {
                break;
            }
        }
    }
    fn clear(&self) {
        self.pin().clear();
    }
}

impl BenchMap for SccT {
    no_local!();

    fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, Hasher::new())
    }
    fn load(&self, key: u64) -> Option<u64> {
        self.read_sync(&key, |_, value| *value)
    }
    fn store(&self, key: u64, value: u64) {
        self.upsert_sync(key, value);
    }
    fn swap(&self, key: u64, value: u64) -> Option<u64> {
        self.upsert_sync(key, value)
    }
    fn load_or_store(&self, key: u64, value: u64) -> (u64, bool) {
        if let Some(current) = self.read_sync(&key, |_, value| *value) {
            return (current, true);
        }
        match self.entry_sync(key) {
            scc::hash_map::Entry::Occupied(entry) => (*entry.get(), true),
            scc::hash_map::Entry::Vacant(entry) => {
                entry.insert_entry(value);
                (value, false)
            }
        }
    }
    fn load_and_delete(&self, key: u64) -> Option<u64> {
        self.remove_sync(&key).map(|(_, value)| value)
    }
    fn compare_and_swap(&self, key: u64, old: u64, new: u64) -> bool {
        let swapped = self.update_sync(&key, |_, value| {
            let equal = *value == old;
            if equal {
                *value = new;
            }
            equal
        });
        swapped == Some(true)
    }
    fn compare_and_delete(&self, key: u64, old: u64) -> bool {
        self.remove_if_sync(&key, |value| *value == old).is_some()
    }
    fn range(&self, mut f: impl FnMut(u64, u64) -> bool) {
        self.iter_sync(|&key, &value| f(key, value));
    }
    fn clear(&self) {
        self.clear_sync();
    }
}

impl BenchMap for Frozen {
    no_local!();

    const WRITES: bool = false;

    fn with_capacity(capacity: usize) -> Self {
        Frozen(HashMap::with_capacity_and_hasher(capacity, Hasher::new()))
    }
    fn setup_put(&mut self, key: u64, value: u64, _how: Put) {
        self.0.insert(key, value);
    }
    fn load(&self, key: u64) -> Option<u64> {
        self.0.get(&key).copied()
    }
    fn store(&self, _key: u64, _value: u64) {
        unreachable!("the frozen map is read-only")
    }
    fn swap(&self, _key: u64, _value: u64) -> Option<u64> {
        unreachable!("the frozen map is read-only")
    }
    fn load_or_store(&self, _key: u64, _value: u64) -> (u64, bool) {
        unreachable!("the frozen map is read-only")
    }
    fn load_and_delete(&self, _key: u64) -> Option<u64> {
        unreachable!("the frozen map is read-only")
    }
    fn compare_and_swap(&self, _key: u64, _old: u64, _new: u64) -> bool {
        unreachable!("the frozen map is read-only")
    }
    fn compare_and_delete(&self, _key: u64, _old: u64) -> bool {
        unreachable!("the frozen map is read-only")
    }
    fn range(&self, mut f: impl FnMut(u64, u64) -> bool) {
        for (&key, &value) in &self.0 {
            if !f(key, value) {
                break;
            }
        }
    }
    fn clear(&self) {
        unreachable!("the frozen map is read-only")
    }
}

/// Runs `$body` with the type alias `$M` bound to the map type of the [`MapKind`] `$kind`.
macro_rules! with_map_type {
    ($kind:expr, $M:ident => $body:expr) => {
        match $kind {
            $crate::workloads::MapKind::DualMap => {
                type $M = $crate::workloads::DualMapT;
                $body
            }
            $crate::workloads::MapKind::DualMapReader => {
                type $M = $crate::workloads::ViaReader;
                $body
            }
            $crate::workloads::MapKind::DashMap => {
                type $M = $crate::workloads::DashMapT;
                $body
            }
            $crate::workloads::MapKind::RwLock => {
                type $M = $crate::workloads::RwLockMapT;
                $body
            }
            $crate::workloads::MapKind::Mutex => {
                type $M = $crate::workloads::MutexMapT;
                $body
            }
            $crate::workloads::MapKind::Papaya => {
                type $M = $crate::workloads::PapayaT;
                $body
            }
            $crate::workloads::MapKind::Scc => {
                type $M = $crate::workloads::SccT;
                $body
            }
            $crate::workloads::MapKind::Frozen => {
                type $M = $crate::workloads::Frozen;
                $body
            }
        }
    };
}
#[allow(unused_imports)] // used by the harness, not by the criterion bench
pub(crate) use with_map_type;

/// The maps under test, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapKind {
    /// [`DualMapT`].
    DualMap,
    /// [`ViaReader`]: dualmap with its gets through a per-thread `Reader` (mixes only).
    DualMapReader,
    /// [`DashMapT`].
    DashMap,
    /// [`RwLockMapT`].
    RwLock,
    /// [`MutexMapT`].
    Mutex,
    /// [`PapayaT`].
    Papaya,
    /// [`SccT`].
    Scc,
    /// [`Frozen`]: reads only, the ceiling.
    Frozen,
}

impl MapKind {
    /// Every map, the concurrent ones first and the frozen ceiling last.
    pub const ALL: [MapKind; 8] = [
        MapKind::DualMap,
        MapKind::DualMapReader,
        MapKind::DashMap,
        MapKind::RwLock,
        MapKind::Mutex,
        MapKind::Papaya,
        MapKind::Scc,
        MapKind::Frozen,
    ];

    /// The name used in tables, CSV files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::DualMap => "dualmap",
            MapKind::DualMapReader => "dualmap-reader",
            MapKind::DashMap => "dashmap",
            MapKind::RwLock => "rwlock-hashmap",
            MapKind::Mutex => "mutex-hashmap",
            MapKind::Papaya => "papaya",
            MapKind::Scc => "scc",
            MapKind::Frozen => "frozen-hashmap",
        }
    }

    /// The map named `name`, if any.
    pub fn from_name(name: &str) -> Option<MapKind> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// False for the frozen map (reads only).
    pub fn writes(self) -> bool {
        with_map_type!(self, M => <M as BenchMap>::WRITES)
    }

    /// True for the maps that only the mixes run: dualmap's `Reader` changes only how gets
    /// are done, and Go's workloads and the write-scaling benchmark go through the map.
    pub fn mixes_only(self) -> bool {
        self == MapKind::DualMapReader
    }
}

/// The operations done by `threads` threads, `total` in all, as Go's `RunParallel` divides
/// `b.N`: thread `t` gets its share of `total`.
fn share(total: u64, threads: usize, thread: usize) -> u64 {
    let threads = threads as u64;
    total / threads + u64::from((thread as u64) < total % threads)
}

/// Wall time from the first thread's start to the last thread's end.
fn wall(spans: &[(Instant, Instant)]) -> Duration {
    let start = spans.iter().map(|span| span.0).min().expect("one thread");
    let end = spans.iter().map(|span| span.1).max().expect("one thread");
    end - start
}

// ------------------------------------------------------------------------------------------
// Go's workloads
// ------------------------------------------------------------------------------------------

/// Go's `sync.Map` benchmark workloads (`map_bench_test.go`), in the order of the spec's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum GoWorkload {
    LoadMostlyHits,
    LoadMostlyMisses,
    LoadOrStoreBalanced,
    LoadOrStoreUnique,
    LoadOrStoreCollision,
    LoadAndDeleteBalanced,
    LoadAndDeleteUnique,
    LoadAndDeleteCollision,
    Range,
    AdversarialAlloc,
    AdversarialDelete,
    DeleteCollision,
    SwapCollision,
    SwapMostlyHits,
    SwapMostlyMisses,
    CompareAndSwapCollision,
    CompareAndSwapNoExistingKey,
    CompareAndSwapValueNotEqual,
    CompareAndSwapMostlyHits,
    CompareAndSwapMostlyMisses,
    CompareAndDeleteCollision,
    CompareAndDeleteMostlyHits,
    CompareAndDeleteMostlyMisses,
    Clear,
}

/// Go's `mapSize` of `Range` and `AdversarialDelete`.
const GO_MAP_SIZE: u64 = 1 << 10;

impl GoWorkload {
    /// All 24, in the spec's order.
    pub const ALL: [GoWorkload; 24] = [
        GoWorkload::LoadMostlyHits,
        GoWorkload::LoadMostlyMisses,
        GoWorkload::LoadOrStoreBalanced,
        GoWorkload::LoadOrStoreUnique,
        GoWorkload::LoadOrStoreCollision,
        GoWorkload::LoadAndDeleteBalanced,
        GoWorkload::LoadAndDeleteUnique,
        GoWorkload::LoadAndDeleteCollision,
        GoWorkload::Range,
        GoWorkload::AdversarialAlloc,
        GoWorkload::AdversarialDelete,
        GoWorkload::DeleteCollision,
        GoWorkload::SwapCollision,
        GoWorkload::SwapMostlyHits,
        GoWorkload::SwapMostlyMisses,
        GoWorkload::CompareAndSwapCollision,
        GoWorkload::CompareAndSwapNoExistingKey,
        GoWorkload::CompareAndSwapValueNotEqual,
        GoWorkload::CompareAndSwapMostlyHits,
        GoWorkload::CompareAndSwapMostlyMisses,
        GoWorkload::CompareAndDeleteCollision,
        GoWorkload::CompareAndDeleteMostlyHits,
        GoWorkload::CompareAndDeleteMostlyMisses,
        GoWorkload::Clear,
    ];

    /// Go's name, without the `Benchmark` prefix.
    pub fn name(self) -> &'static str {
        match self {
            GoWorkload::LoadMostlyHits => "LoadMostlyHits",
            GoWorkload::LoadMostlyMisses => "LoadMostlyMisses",
            GoWorkload::LoadOrStoreBalanced => "LoadOrStoreBalanced",
            GoWorkload::LoadOrStoreUnique => "LoadOrStoreUnique",
            GoWorkload::LoadOrStoreCollision => "LoadOrStoreCollision",
            GoWorkload::LoadAndDeleteBalanced => "LoadAndDeleteBalanced",
            GoWorkload::LoadAndDeleteUnique => "LoadAndDeleteUnique",
            GoWorkload::LoadAndDeleteCollision => "LoadAndDeleteCollision",
            GoWorkload::Range => "Range",
            GoWorkload::AdversarialAlloc => "AdversarialAlloc",
            GoWorkload::AdversarialDelete => "AdversarialDelete",
            GoWorkload::DeleteCollision => "DeleteCollision",
            GoWorkload::SwapCollision => "SwapCollision",
            GoWorkload::SwapMostlyHits => "SwapMostlyHits",
            GoWorkload::SwapMostlyMisses => "SwapMostlyMisses",
            GoWorkload::CompareAndSwapCollision => "CompareAndSwapCollision",
            GoWorkload::CompareAndSwapNoExistingKey => "CompareAndSwapNoExistingKey",
            GoWorkload::CompareAndSwapValueNotEqual => "CompareAndSwapValueNotEqual",
            GoWorkload::CompareAndSwapMostlyHits => "CompareAndSwapMostlyHits",
            GoWorkload::CompareAndSwapMostlyMisses => "CompareAndSwapMostlyMisses",
            GoWorkload::CompareAndDeleteCollision => "CompareAndDeleteCollision",
            GoWorkload::CompareAndDeleteMostlyHits => "CompareAndDeleteMostlyHits",
            GoWorkload::CompareAndDeleteMostlyMisses => "CompareAndDeleteMostlyMisses",
            GoWorkload::Clear => "Clear",
        }
    }

    /// True if the timed part only loads and ranges, so the frozen map can run it.
    pub fn read_only(self) -> bool {
        matches!(
            self,
            GoWorkload::LoadMostlyHits | GoWorkload::LoadMostlyMisses | GoWorkload::Range
        )
    }

    /// True if `kind` runs this workload (the frozen map runs only the read-only ones; the
    /// `Reader` path runs none: Go's loads go through the map).
    pub fn runs_on(self, kind: MapKind) -> bool {
        !kind.mixes_only() && (kind.writes() || self.read_only())
    }

    /// `(hits, misses)` of the workloads that have them.
    fn hits_misses(self) -> (u64, u64) {
        match self {
            GoWorkload::LoadMostlyHits
            | GoWorkload::SwapMostlyHits
            | GoWorkload::CompareAndSwapMostlyHits
            | GoWorkload::CompareAndDeleteMostlyHits => (1023, 1),
            GoWorkload::LoadMostlyMisses
            | GoWorkload::SwapMostlyMisses
            | GoWorkload::CompareAndSwapMostlyMisses
            | GoWorkload::CompareAndDeleteMostlyMisses => (1, 1023),
            GoWorkload::LoadOrStoreBalanced | GoWorkload::LoadAndDeleteBalanced => (128, 128),
            _ => (0, 0),
        }
    }

    /// Go's setup, untimed, on a fresh map: keys put with Go's operation, then, where Go
    /// primes, `2 * hits` loads of `i % hits` "to get it into a steady state".
    pub fn setup<M: BenchMap>(self, map: &mut M) {
        let (hits, _) = self.hits_misses();
        match self {
            GoWorkload::LoadMostlyHits
            | GoWorkload::LoadMostlyMisses
            | GoWorkload::LoadOrStoreBalanced
            | GoWorkload::LoadAndDeleteBalanced
            | GoWorkload::SwapMostlyHits
            | GoWorkload::SwapMostlyMisses
            | GoWorkload::CompareAndSwapMostlyHits
            | GoWorkload::CompareAndSwapMostlyMisses
            | GoWorkload::CompareAndDeleteMostlyHits
            | GoWorkload::CompareAndDeleteMostlyMisses => {
                for i in 0..hits {
                    map.setup_put(i, i, Put::LoadOrStore);
                }
                for i in 0..hits * 2 {
                    map.load(i % hits);
                }
            }
            GoWorkload::LoadOrStoreCollision
            | GoWorkload::LoadAndDeleteCollision
            | GoWorkload::DeleteCollision
            | GoWorkload::SwapCollision
            | GoWorkload::CompareAndSwapCollision
            | GoWorkload::CompareAndDeleteCollision => map.setup_put(0, 0, Put::LoadOrStore),
            GoWorkload::CompareAndSwapValueNotEqual => map.setup_put(0, 0, Put::Store),
            GoWorkload::Range | GoWorkload::AdversarialDelete => {
                for i in 0..GO_MAP_SIZE {
                    map.setup_put(i, i, Put::Store);
                }
            }
            GoWorkload::LoadOrStoreUnique
            | GoWorkload::LoadAndDeleteUnique
            | GoWorkload::AdversarialAlloc
            | GoWorkload::CompareAndSwapNoExistingKey
            | GoWorkload::Clear => {}
        }
    }

    /// One thread's part of the timed loop: Go's `perG` with `i` running over
    /// `start..start + count` (Go starts goroutine `id` at `id * b.N`).
    pub fn run_thread<M: BenchMap>(self, map: &M, start: u64, count: u64) {
        let range = start..start + count;
        let (hits, misses) = self.hits_misses();
        let cycle = hits + misses;
        match self {
            GoWorkload::LoadMostlyHits | GoWorkload::LoadMostlyMisses => {
                for i in range {
                    black_box(map.load(black_box(i % cycle)));
                }
            }
            GoWorkload::LoadOrStoreBalanced => {
                for i in range {
                    let j = i % cycle;
                    if j < hits {
                        let (_, loaded) = map.load_or_store(j, i);
                        assert!(loaded, "unexpected miss for {j}");
                    } else {
                        let (value, loaded) = map.load_or_store(i, i);
                        assert!(!loaded, "failed to store {i}: existing value {value}");
                    }
                }
            }
            GoWorkload::LoadOrStoreUnique => {
                for i in range {
                    black_box(map.load_or_store(i, i));
                }
            }
            GoWorkload::LoadOrStoreCollision => {
                for _ in range {
                    black_box(map.load_or_store(0, 0));
                }
            }
            GoWorkload::LoadAndDeleteBalanced => {
                for i in range {
                    let j = i % cycle;
                    black_box(map.load_and_delete(if j < hits { j } else { i }));
                }
            }
            GoWorkload::LoadAndDeleteUnique => {
                for i in range {
                    black_box(map.load_and_delete(i));
                }
            }
            GoWorkload::LoadAndDeleteCollision => {
                for _ in range {
                    if map.load_and_delete(0).is_some() {
                        map.store(0, 0);
                    }
                }
            }
            GoWorkload::Range => {
                for _ in range {
                    map.range(|key, value| {
                        black_box((key, value));
                        true
                    });
                }
            }
            GoWorkload::AdversarialAlloc => {
                let (mut stores, mut loads_since_store) = (0u64, 0u64);
                for i in range {
                    black_box(map.load(i));
                    loads_since_store += 1;
                    if loads_since_store > stores {
                        black_box(map.load_or_store(i, stores));
                        loads_since_store = 0;
                        stores += 1;
                    }
                }
            }
            GoWorkload::AdversarialDelete => {
                for i in range {
                    black_box(map.load(i));
                    if i % GO_MAP_SIZE == 0 {
                        // Go deletes the first key from inside the Range callback and stops;
                        // the lock-based maps here would deadlock doing that (their iterators
                        // hold a lock), so every map deletes it right after the range stops.
                        let mut first = None;
                        map.range(|key, _| {
                            first = Some(key);
                            false
                        });
                        if let Some(key) = first {
                            map.delete(key);
                        }
                        map.store(i, i);
                    }
                }
            }
            GoWorkload::DeleteCollision => {
                for _ in range {
                    map.delete(0);
                }
            }
            GoWorkload::SwapCollision => {
                for _ in range {
                    black_box(map.swap(0, 0));
                }
            }
            GoWorkload::SwapMostlyHits | GoWorkload::SwapMostlyMisses => {
                for i in range {
                    if i % cycle < hits {
                        let v = i % cycle;
                        black_box(map.swap(v, v));
                    } else {
                        black_box(map.swap(i, i));
                        map.delete(i);
                    }
                }
            }
            GoWorkload::CompareAndSwapCollision => {
                for _ in range {
                    if map.compare_and_swap(0, 0, 42) {
                        map.compare_and_swap(0, 42, 0);
                    }
                }
            }
            GoWorkload::CompareAndSwapNoExistingKey => {
                for i in range {
                    if map.compare_and_swap(i, 0, 0) {
                        map.delete(i);
                    }
                }
            }
            GoWorkload::CompareAndSwapValueNotEqual => {
                for _ in range {
                    black_box(map.compare_and_swap(0, 1, 2));
                }
            }
            GoWorkload::CompareAndSwapMostlyHits | GoWorkload::CompareAndSwapMostlyMisses => {
                for i in range {
                    let v = if i % cycle < hits { i % cycle } else { i };
                    black_box(map.compare_and_swap(v, v, v));
                }
            }
            GoWorkload::CompareAndDeleteCollision => {
                for _ in range {
                    if map.compare_and_delete(0, 0) {
                        map.store(0, 0);
                    }
                }
            }
            GoWorkload::CompareAndDeleteMostlyHits | GoWorkload::CompareAndDeleteMostlyMisses => {
                for i in range {
                    let v = if i % cycle < hits { i % cycle } else { i };
                    if map.compare_and_delete(v, v) {
                        map.store(v, v);
                    }
                }
            }
            GoWorkload::Clear => {
                for i in range {
                    let (key, value) = (i % 256, i % 256);
                    map.clear();
                    map.store(key, value);
                }
            }
        }
    }
}

/// Runs Go workload `workload` on a fresh map of type `M`: Go's setup (untimed), then
/// `total_ops` iterations split over `threads` threads that start together at a barrier.
/// Returns the wall time of the timed part; Go's `ns/op` is that divided by `total_ops`.
///
/// # Panics
/// If `M` is read-only and the workload writes.
pub fn run_go_on<M: BenchMap>(workload: GoWorkload, threads: usize, total_ops: u64) -> Duration {
    assert!(
        M::WRITES || workload.read_only(),
        "{} writes",
        workload.name()
    );
    let mut map = M::with_capacity(0);
    workload.setup(&mut map);
    let map = &map;
    let barrier = &Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let count = share(total_ops, threads, thread);
                let start = thread as u64 * total_ops;
                scope.spawn(move || {
                    barrier.wait();
                    let begin = Instant::now();
                    workload.run_thread(map, start, count);
                    (begin, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("worker panicked"))
            .collect()
    });
    wall(&spans)
}

/// [`run_go_on`] for the map `kind`: the one function behind both the criterion bench
/// (`iter_custom`) and the harness.
pub fn run_go(kind: MapKind, workload: GoWorkload, threads: usize, total_ops: u64) -> Duration {
    with_map_type!(kind, M => run_go_on::<M>(workload, threads, total_ops))
}

// ------------------------------------------------------------------------------------------
// Mixed workloads
// ------------------------------------------------------------------------------------------

/// An operation mix, in thousandths: `read` gets of prefilled keys, `update` overwrites of
/// prefilled keys, `insert` inserts of keys never used before, `remove` removes of keys the
/// same thread inserted (oldest first; of an absent key if it has none left).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mix {
    /// 100% reads, every one a hit.
    ReadOnly,
    /// 99.9% reads, 0.1% overwrites.
    Read999,
    /// 99% reads, 1% overwrites.
    Read99,
    /// 98% reads, 1% inserts, 1% removes.
    ReadHeavy,
    /// 10% reads, 40% inserts, 40% removes, 10% overwrites.
    Exchange,
    /// 5% reads, 80% inserts, 5% removes, 10% overwrites.
    RapidGrow,
}

impl Mix {
    /// All six, from reads only to write-heavy.
    pub const ALL: [Mix; 6] = [
        Mix::ReadOnly,
        Mix::Read999,
        Mix::Read99,
        Mix::ReadHeavy,
        Mix::Exchange,
        Mix::RapidGrow,
    ];

    /// The name used in tables, CSV files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mix::ReadOnly => "read-only",
            Mix::Read999 => "read-99.9",
            Mix::Read99 => "read-99",
            Mix::ReadHeavy => "read-heavy",
            Mix::Exchange => "exchange",
            Mix::RapidGrow => "rapid-grow",
        }
    }

    /// A one-line description for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Mix::ReadOnly => "100% get hits",
            Mix::Read999 => "99.9% get hits, 0.1% overwrites",
            Mix::Read99 => "99% get hits, 1% overwrites",
            Mix::ReadHeavy => "ReadHeavy: 98% get hits, 1% inserts of new keys, 1% removes",
            Mix::Exchange => "Exchange: 10% gets, 40% inserts, 40% removes, 10% overwrites",
            Mix::RapidGrow => "RapidGrow: 5% gets, 80% inserts, 5% removes, 10% overwrites",
        }
    }

    /// `(read, update, insert, remove)` in thousandths.
    pub fn weights(self) -> (u64, u64, u64, u64) {
        match self {
            Mix::ReadOnly => (1000, 0, 0, 0),
            Mix::Read999 => (999, 1, 0, 0),
            Mix::Read99 => (990, 10, 0, 0),
            Mix::ReadHeavy => (980, 0, 10, 10),
            Mix::Exchange => (100, 100, 400, 400),
            Mix::RapidGrow => (50, 100, 800, 50),
        }
    }

    /// True if only the frozen map's operations are used (so it runs as the ceiling).
    pub fn read_only(self) -> bool {
        self == Mix::ReadOnly
    }

    /// The mix named `name`, if any.
    pub fn from_name(name: &str) -> Option<Mix> {
        Self::ALL.into_iter().find(|mix| mix.name() == name)
    }
}

/// How keys are drawn from the prefilled range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dist {
    /// Every prefilled key equally likely.
    Uniform,
    /// Zipf with exponent [`ZIPF_THETA`] over the key ranks: a few hot keys take most draws.
    Zipf,
}

/// The Zipf exponent (YCSB's default): the hottest key takes 13% of the draws on 1,000 keys
/// and 6.5% on 1,000,000; the ten hottest 38% and 19%.
pub const ZIPF_THETA: f64 = 0.99;

impl Dist {
    /// Both.
    pub const ALL: [Dist; 2] = [Dist::Uniform, Dist::Zipf];

    /// The name used in tables, CSV files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Zipf => "zipf",
        }
    }

    /// The distribution named `name`, if any.
    pub fn from_name(name: &str) -> Option<Dist> {
        Self::ALL.into_iter().find(|dist| dist.name() == name)
    }
}

/// SplitMix64: a tiny, fast, deterministic generator (quality is plenty for picking keys).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A number in `[0, 1000)`.
    #[inline]
    fn next_thousandth(&mut self) -> u64 {
        ((self.next_u64() >> 32) * 1000) >> 32
    }
}

/// Gray et al.'s Zipf generator ("Quickly generating billion-record synthetic databases",
/// as used by YCSB): ranks `0..n`, rank 0 the most frequent.
struct Zipf {
    n: f64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: u64, theta: f64) -> Self {
        let zeta = |n: u64| (1..=n).map(|i| (i as f64).powf(-theta)).sum::<f64>();
        let zeta_n = zeta(n);
        let nf = n as f64;
        let eta = (1.0 - (2.0 / nf).powf(1.0 - theta)) / (1.0 - zeta(2) / zeta_n);
        Zipf {
            n: nf,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta,
        }
    }

    fn sample(&self, u: f64) -> u64 {
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(self.theta) {
            1
        } else {
            let rank = self.n * (self.eta * u - self.eta + 1.0).powf(self.alpha);
            (rank as u64).min(self.n as u64 - 1)
        }
    }
}

/// Pre-drawn keys, one stream per thread, so that drawing a key in a timed loop costs one
/// sequential load whatever the distribution. Every map gets the same streams.
#[derive(Debug)]
pub struct KeyStreams {
    /// The prefilled keys are `0..size`.
    pub size: u64,
    /// How the streams were drawn.
    pub dist: Dist,
    streams: Vec<Vec<u64>>,
}

impl KeyStreams {
    /// Streams for up to `threads` threads over keys `0..size`. Each holds a power of two of
    /// keys: at least 64 per key of the map up to 2^20, and at most 2^24 keys in all.
    pub fn new(size: u64, dist: Dist, threads: usize) -> Self {
        assert!(size > 0);
        let want = (size.saturating_mul(64)).next_power_of_two().min(1 << 20);
        let cap = ((1u64 << 24) / threads as u64).next_power_of_two() / 2;
        let len = want.min(cap.max(1 << 12)) as usize;
        let zipf = (dist == Dist::Zipf).then(|| Zipf::new(size, ZIPF_THETA));
        let streams = (0..threads)
            .map(|thread| {
                let mut rng = SplitMix64::new(0x5eed ^ ((thread as u64) << 32) ^ size);
                (0..len)
                    .map(|_| match &zipf {
                        Some(zipf) => zipf.sample(rng.next_f64()),
                        None => below(&mut rng, size),
                    })
                    .collect()
            })
            .collect();
        KeyStreams {
            size,
            dist,
            streams,
        }
    }

    /// The number of threads these streams serve.
    pub fn threads(&self) -> usize {
        self.streams.len()
    }
}

/// A map of type `M` holding keys `0..size` (value = key), settled (see [`BenchMap::settle`]).
pub fn prefilled<M: BenchMap>(size: u64) -> M {
    let mut map = M::with_capacity(size as usize);
    for key in 0..size {
        map.setup_put(key, key, Put::Store);
    }
    map.settle();
    map
}

/// Keys never used before, from one process-wide counter far above every prefilled key;
/// each thread takes blocks of them.
static NEXT_FRESH_BLOCK: AtomicU64 = AtomicU64::new(1 << 40);
const FRESH_BLOCK: u64 = 1024;

#[derive(Default)]
struct FreshKeys {
    next: u64,
    end: u64,
}

impl FreshKeys {
    fn peek(&mut self) -> u64 {
        if self.next == self.end {
            self.next = NEXT_FRESH_BLOCK.fetch_add(FRESH_BLOCK, Ordering::Relaxed);
            self.end = self.next + FRESH_BLOCK;
        }
        self.next
    }

    fn take(&mut self) -> u64 {
        let key = self.peek();
        self.next += 1;
        key
    }
}

/// What one timed phase did.
#[derive(Clone, Debug)]
pub struct Throughput {
    /// Operations done by all threads.
    pub ops: u64,
    /// Wall time from the first thread's start to the last thread's end.
    pub wall: Duration,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64()
    }

    /// Millions of operations per second, all threads together.
    pub fn mops(&self) -> f64 {
        self.per_second() / 1e6
    }
}

/// Operations between two looks at the stop flag.
const BATCH: u64 = 256;

/// The start line and the stop flag shared by the threads of one timed phase.
#[derive(Debug)]
pub struct Gate {
    barrier: Barrier,
    stop: AtomicBool,
}

impl Gate {
    /// Waits until every worker has done its untimed setup and the timer is ready; returns
    /// the worker's start time.
    pub fn start(&self) -> Instant {
        self.barrier.wait();
        Instant::now()
    }

    /// False once the phase's time is up (checked every [`BATCH`] operations).
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Starts, then calls `step` (which does `ops_per_step` operations) until the phase's
    /// time is up, looking at the stop flag about every [`BATCH`] operations. Returns the
    /// operations done and the worker's (start, end).
    fn work(&self, ops_per_step: u64, mut step: impl FnMut()) -> (u64, (Instant, Instant)) {
        let steps = (BATCH / ops_per_step).max(1);
        let mut ops = 0u64;
        let begin = self.start();
        while self.running() {
            for _ in 0..steps {
                step();
            }
            ops += steps * ops_per_step;
        }
        (ops, (begin, Instant::now()))
    }
}

/// One timed phase: `threads` workers (worker `t` gets `t` and the gate) that do their setup,
/// call [`Gate::start`] and work while [`Gate::running`]; the phase lasts `duration` from the
/// moment all of them have started. Returns what the workers returned, in thread order.
///
/// # Panics
/// If a worker panicked.
pub fn run_phase<T: Send>(
    threads: usize,
    duration: Duration,
    worker: impl Fn(usize, &Gate) -> T + Sync,
) -> Vec<T> {
    let gate = &Gate {
        barrier: Barrier::new(threads + 1),
        stop: AtomicBool::new(false),
    };
    let worker = &worker;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| scope.spawn(move || worker(thread, gate)))
            .collect();
        gate.barrier.wait();
        std::thread::sleep(duration);
        gate.stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|worker| worker.join().expect("worker panicked"))
            .collect()
    })
}

/// One contender's timed phase, as [`interleaved_medians`] runs it: `phase(duration, number)`
/// runs for `duration`; `number` varies the contender's random choices from phase to phase
/// (the warm-up is number 1).
pub type Phase<'a> = Box<dyn FnMut(Duration, u64) -> Throughput + 'a>;

/// Runs `rounds` rounds of one `run(contender, round)` per contender, in turn, each round
/// starting one contender later than the round before; returns each contender's results in
/// round order. The harness's comparisons of maps measure them so: Go's workloads (after
/// each map's calibration run), the mixes, the write workloads and the latency part; the
/// write-scaling part compares each map with itself and runs one map after another.
///
/// In turn, not one contender's runs after another's: this project's shared machines change
/// speed for seconds to minutes at a time (dashmap's churn on two threads ran at 17 or at 44
/// M/s in runs minutes apart), and one contender measured whole in a fast spell against
/// another measured whole in a slow one gives a ratio of the spells, not of the maps. In turn,
/// a spell that lasts a round slows every contender's run of that round alike; the rotation
/// keeps any contender from always running first, right after a warm-up or another
/// comparison (each still follows the same neighbour, but for the round it starts).
pub fn in_turn<T>(
    contenders: usize,
    rounds: usize,
    mut run: impl FnMut(usize, usize) -> T,
) -> Vec<Vec<T>> {
    let mut results: Vec<Vec<T>> = (0..contenders)
        .map(|_| Vec::with_capacity(rounds))
        .collect();
    for round in 0..rounds {
        for turn in 0..contenders {
            let contender = (round + turn) % contenders;
            results[contender].push(run(contender, round));
        }
    }
    results
}

/// Measures contenders side by side: an untimed warm-up phase of `warm_up` for each (skipped
/// if zero), then `repeats` timed phases of `duration` each, run [`in_turn`]; returns each
/// contender's phase of median throughput, in the order given, robust to a phase that
/// another process on the machine interrupted.
pub fn interleaved_medians(
    phases: &mut [Phase<'_>],
    warm_up: Duration,
    duration: Duration,
    repeats: usize,
) -> Vec<Throughput> {
    if !warm_up.is_zero() {
        for phase in phases.iter_mut() {
            phase(warm_up, 1);
        }
    }
    in_turn(phases.len(), repeats.max(1), |contender, round| {
        phases[contender](duration, 2 + round as u64)
    })
    .into_iter()
    .map(|mut phases| {
        phases.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
        phases.swap_remove(phases.len() / 2)
    })
    .collect()
}

/// Sums the operations of the workers of one phase and takes the wall time from the first
/// start to the last end.
fn throughput<'a>(workers: impl IntoIterator<Item = &'a (u64, (Instant, Instant))>) -> Throughput {
    let (ops, spans): (Vec<u64>, Vec<(Instant, Instant)>) = workers.into_iter().copied().unzip();
    Throughput {
        ops: ops.iter().sum(),
        wall: wall(&spans),
    }
}

/// A hook called around the operations of a mix: nothing for the throughput runs (`()`, which
/// compiles to nothing), a per-operation timer for the latency part.
pub trait OpClock: Send {
    /// Timing starts at `at`.
    fn start(&mut self, at: Instant);
    /// One operation has just finished.
    fn lap(&mut self);
}

impl OpClock for () {
    #[inline(always)]
    fn start(&mut self, _at: Instant) {}
    #[inline(always)]
    fn lap(&mut self) {}
}

/// What one worker of a mix phase did.
pub struct MixWorker<C> {
    /// Operations and the worker's (start, end).
    timed: (u64, (Instant, Instant)),
    reads: u64,
    hits: u64,
    leftovers: VecDeque<u64>,
    /// The worker's clock, for the caller to read.
    pub clock: C,
}

#[inline(never)]
fn mix_thread<M: BenchMap, C: OpClock>(
    map: &M,
    mix: Mix,
    keys: &[u64],
    seed: u64,
    gate: &Gate,
    mut clock: C,
) -> MixWorker<C> {
    let mask = keys.len() - 1;
    let mut rng = SplitMix64::new(seed);
    let mut position = rng.next_u64() as usize & mask;
    let (read, update, insert, _) = mix.weights();
    let (update_below, insert_below) = (read + update, read + update + insert);
    let mut own: VecDeque<u64> = VecDeque::new();
    let mut fresh = FreshKeys::default();
    let (mut ops, mut reads, mut hits) = (0u64, 0u64, 0u64);
    // dualmap's `Reader` for `ViaReader`, nothing for the other maps: created before timing.
    let mut local = map.local();
    let begin = gate.start();
    clock.start(begin);
    if mix == Mix::ReadOnly {
        while gate.running() {
            for _ in 0..BATCH {
                let key = keys[position];
                position = (position + 1) & mask;
                hits += u64::from(map.load_local(&mut local, key).is_some());
                clock.lap();
            }
            ops += BATCH;
        }
        reads = ops;
    } else {
        while gate.running() {
            for _ in 0..BATCH {
                let roll = rng.next_thousandth();
                let key = keys[position];
                position = (position + 1) & mask;
                if roll < read {
                    reads += 1;
                    hits += u64::from(map.load_local(&mut local, key).is_some());
                } else if roll < update_below {
                    map.store(key, roll ^ ops);
                } else if roll < insert_below {
                    let new = fresh.take();
                    map.store(new, new);
                    own.push_back(new);
                } else {
                    match own.pop_front() {
                        Some(old) => map.delete(old),
                        None => map.delete(fresh.peek()), // absent: a miss
                    }
                }
                clock.lap();
            }
            ops += BATCH;
        }
    }
    MixWorker {
        timed: (ops, (begin, Instant::now())),
        reads,
        hits,
        leftovers: own,
        clock,
    }
}

/// The phase of a mix on a map that the phase owns: `(mix, keys, threads, duration, number)`.
type OwnedMixPhase = Box<dyn Fn(Mix, &KeyStreams, usize, Duration, u64) -> Throughput>;

/// A prefilled map of any type, for the mixes of several maps measured side by side
/// ([`interleaved_medians`]): each type's timed loop stays generic, only the call of a phase
/// is dynamic.
pub struct MixTarget {
    /// False for the frozen `HashMap`, which runs only read-only mixes.
    pub writes: bool,
    phase: OwnedMixPhase,
}

impl MixTarget {
    /// A map of type `kind` holding `0..size` (see [`prefilled`]).
    pub fn prefilled(kind: MapKind, size: u64) -> Self {
        with_map_type!(kind, M => {
            let map = prefilled::<M>(size);
            Self {
                writes: M::WRITES,
                phase: Box::new(move |mix, keys, threads, duration, number| {
                    mix_phase(&map, mix, keys, threads, duration, number, || ()).0
                }),
            }
        })
    }

    /// One timed phase of `mix` on this map (see [`mix_phase`]), without the clocks.
    pub fn phase(
        &self,
        mix: Mix,
        keys: &KeyStreams,
        threads: usize,
        duration: Duration,
        number: u64,
    ) -> Throughput {
        (self.phase)(mix, keys, threads, duration, number)
    }
}

/// One timed phase of `mix` on `map` (which must hold exactly the keys `0..keys.size`) with
/// `threads` threads, and a fresh clock from `clock` on each worker; returns the phase's
/// throughput and the workers' clocks. `number` varies the workers' random choices from
/// phase to phase. Keys left over by the mix's inserts are removed after the phase
/// (untimed), so the map holds `0..keys.size` again and serves the next phase or
/// configuration.
///
/// # Panics
/// If `keys` serves fewer than `threads` threads, if the map is read-only and the mix
/// writes, or if a read of a prefilled key missed (the map adapter would be wrong).
pub fn mix_phase<M: BenchMap, C: OpClock>(
    map: &M,
    mix: Mix,
    keys: &KeyStreams,
    threads: usize,
    duration: Duration,
    number: u64,
    clock: impl Fn() -> C + Sync,
) -> (Throughput, Vec<C>) {
    assert!(keys.threads() >= threads, "key streams for too few threads");
    assert!(M::WRITES || mix.read_only(), "{} writes", mix.name());
    let workers = run_phase(threads, duration, |thread, gate| {
        let stream = &keys.streams[thread][..];
        let seed = (number << 56) ^ ((thread as u64) << 40) ^ keys.size;
        mix_thread(map, mix, stream, seed, gate, clock())
    });
    let reads: u64 = workers.iter().map(|worker| worker.reads).sum();
    let hits: u64 = workers.iter().map(|worker| worker.hits).sum();
    assert_eq!(
        hits,
        reads,
        "{}: a get of a prefilled key missed",
        mix.name()
    );
    let outcome = throughput(workers.iter().map(|worker| &worker.timed));
    let clocks = workers
        .into_iter()
        .map(|worker| {
            for key in worker.leftovers {
                map.delete(key);
            }
            worker.clock
        })
        .collect();
    (outcome, clocks)
}

// ------------------------------------------------------------------------------------------
// Write workloads
// ------------------------------------------------------------------------------------------

/// The workloads that only writes stress: sync.Map's second use case (threads overwriting
/// disjoint keys), a map that only grows, and churn through a steady-size map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteLoad {
    /// A full map; each thread overwrites random keys of its own slice of it.
    OverwriteDisjoint,
    /// The map starts empty; every operation inserts a key never seen before.
    Grow,
    /// Per step: insert a new key, remove the key this thread inserted [`CHURN_WINDOW`]
    /// steps earlier, and read [`CHURN_READS`] random prefilled keys.
    Churn,
}

/// How many steps a churned key lives.
pub const CHURN_WINDOW: usize = 1024;
/// Reads of prefilled keys per churn step.
pub const CHURN_READS: u64 = 8;

impl WriteLoad {
    /// All three.
    pub const ALL: [WriteLoad; 3] = [
        WriteLoad::OverwriteDisjoint,
        WriteLoad::Grow,
        WriteLoad::Churn,
    ];

    /// The name used in tables, CSV files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            WriteLoad::OverwriteDisjoint => "overwrite-disjoint",
            WriteLoad::Grow => "grow",
            WriteLoad::Churn => "churn",
        }
    }

    /// A one-line description for tables.
    pub fn describe(self) -> &'static str {
        match self {
            WriteLoad::OverwriteDisjoint => {
                "each thread overwrites random keys of its own slice of a full map"
            }
            WriteLoad::Grow => "the map starts empty; every operation inserts a new key",
            WriteLoad::Churn => {
                "per step: insert a new key, remove this thread's key from 1,024 steps back, \
                 read 8 random prefilled keys (10 operations)"
            }
        }
    }
}

/// The timed phase of `load` with `threads` threads on a map of type `M`, for
/// [`interleaved_medians`]. `keys` is the size of the prefilled map of `overwrite-disjoint`
/// and `churn`, which the phase owns (settled, and holding exactly `0..keys` again after each
/// phase); `grow` starts every phase on a fresh empty map.
///
/// # Panics
/// If `M` is read-only, or if `keys` is smaller than `threads`; the phase panics if a churn
/// read of a prefilled key missed.
pub fn write_load_phase<M: BenchMap + 'static>(
    load: WriteLoad,
    keys: u64,
    threads: usize,
) -> Phase<'static> {
    assert!(M::WRITES, "the frozen map cannot be written");
    assert!(keys >= threads as u64, "fewer keys than threads");
    match load {
        WriteLoad::Grow => Box::new(move |duration, _| {
            let map = M::with_capacity(0);
            let outcome = grow_phase(&map, threads, duration);
            drop(map);
            outcome
        }),
        WriteLoad::OverwriteDisjoint => {
            let map = prefilled::<M>(keys);
            Box::new(move |duration, number| overwrite_phase(&map, keys, threads, duration, number))
        }
        WriteLoad::Churn => {
            let map = prefilled::<M>(keys);
            Box::new(move |duration, number| churn_phase(&map, keys, threads, duration, number))
        }
    }
}

/// [`write_load_phase`] for the map `kind`.
pub fn write_load_phase_kind(
    kind: MapKind,
    load: WriteLoad,
    keys: u64,
    threads: usize,
) -> Phase<'static> {
    with_map_type!(kind, M => write_load_phase::<M>(load, keys, threads))
}

/// A uniform random number in `0..n`.
#[inline]
fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    ((rng.next_u64() >> 32) * n) >> 32
}

fn overwrite_phase<M: BenchMap>(
    map: &M,
    keys: u64,
    threads: usize,
    duration: Duration,
    number: u64,
) -> Throughput {
    let workers = run_phase(threads, duration, |thread, gate| {
        let t = thread as u64;
        let first = keys * t / threads as u64;
        let len = keys * (t + 1) / threads as u64 - first;
        let mut rng = SplitMix64::new((number << 56) ^ (t << 40) ^ keys);
        let mut value = 0u64;
        gate.work(1, || {
            value += 1;
            map.store(first + below(&mut rng, len), value);
        })
    });
    throughput(&workers)
}

fn grow_phase<M: BenchMap>(map: &M, threads: usize, duration: Duration) -> Throughput {
    let workers = run_phase(threads, duration, |_, gate| {
        let mut fresh = FreshKeys::default();
        gate.work(1, || {
            let key = fresh.take();
            map.store(key, key);
        })
    });
    throughput(&workers)
}

fn churn_phase<M: BenchMap>(
    map: &M,
    keys: u64,
    threads: usize,
    duration: Duration,
    number: u64,
) -> Throughput {
    let workers = run_phase(threads, duration, |thread, gate| {
        let mut rng = SplitMix64::new((number << 56) ^ ((thread as u64) << 40) ^ keys);
        let mut fresh = FreshKeys::default();
        // Untimed: the window is full from the first timed step, so every step removes.
        let mut own: VecDeque<u64> = (0..CHURN_WINDOW)
            .map(|_| {
                let key = fresh.take();
                map.store(key, key);
                key
            })
            .collect();
        let mut misses = 0u64;
        let (ops, span) = gate.work(2 + CHURN_READS, || {
            let new = fresh.take();
            map.store(new, new);
            own.push_back(new);
            map.delete(own.pop_front().expect("the window is full"));
            for _ in 0..CHURN_READS {
                misses += u64::from(map.load(below(&mut rng, keys)).is_none());
            }
        });
        for key in own {
            map.delete(key);
        }
        assert_eq!(misses, 0, "churn: a get of a prefilled key missed");
        (ops, span)
    });
    throughput(&workers)
}

// ------------------------------------------------------------------------------------------
// Write scaling
// ------------------------------------------------------------------------------------------

/// Keys of the write-scaling map.
pub const WRITE_SCALING_KEYS: u64 = 1024;

/// What [`run_write_scaling`] measured.
#[derive(Clone, Debug)]
pub struct WriteScaling {
    /// Overwrites done by the measuring thread.
    pub ops: u64,
    /// Their wall time.
    pub wall: Duration,
}

/// The cost of overwriting existing keys on one thread while `parked` other threads that
/// have used the map (a get, an overwrite, an insert and a remove each) sit blocked on a
/// barrier. A design that registers every thread that ever touched it (arc-swap's debt
/// list, an epoch scheme's thread list) shows here as a cost growing with `parked`. After
/// a warm-up, runs `repeats` timed runs of `duration` and returns the median.
pub fn run_write_scaling<M: BenchMap>(
    parked: usize,
    warm_up: Duration,
    duration: Duration,
    repeats: usize,
) -> WriteScaling {
    assert!(M::WRITES, "the frozen map cannot be written");
    let map = &prefilled::<M>(WRITE_SCALING_KEYS);
    let touched = &Barrier::new(parked + 1);
    let release = &Barrier::new(parked + 1);
    std::thread::scope(|scope| {
        for thread in 0..parked as u64 {
            scope.spawn(move || {
                let key = thread % WRITE_SCALING_KEYS;
                black_box(map.load(key));
                map.store(key, key);
                let new = u64::MAX - thread;
                map.store(new, new);
                map.delete(new);
                touched.wait();
                release.wait();
            });
        }
        touched.wait();
        map.settle();
        let overwrite = |i: u64| map.store(i % WRITE_SCALING_KEYS, i);
        let deadline = Instant::now() + warm_up;
        let mut i = 0u64;
        while Instant::now() < deadline {
            for _ in 0..1024 {
                overwrite(i);
                i += 1;
            }
        }
        let mut runs: Vec<WriteScaling> = (0..repeats.max(1))
            .map(|_| {
                let begin = Instant::now();
                let mut ops = 0u64;
                loop {
                    for _ in 0..1024 {
                        overwrite(i);
                        i += 1;
                    }
                    ops += 1024;
                    if begin.elapsed() >= duration {
                        break;
                    }
                }
                WriteScaling {
                    ops,
                    wall: begin.elapsed(),
                }
            })
            .collect();
        release.wait();
        runs.sort_by(|a, b| {
            let per_op = |r: &WriteScaling| r.wall.as_secs_f64() / r.ops as f64;
            per_op(a).total_cmp(&per_op(b))
        });
        runs.swap_remove(runs.len() / 2)
    })
}

/// [`run_write_scaling`] for the map `kind`.
pub fn run_write_scaling_kind(
    kind: MapKind,
    parked: usize,
    warm_up: Duration,
    duration: Duration,
    repeats: usize,
) -> WriteScaling {
    with_map_type!(kind, M => run_write_scaling::<M>(parked, warm_up, duration, repeats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's semantics, which every adapter must have for the comparison to be fair.
    fn go_semantics<M: BenchMap>() {
        let map = M::with_capacity(0);
        assert_eq!(map.load(1), None);
        assert_eq!(map.load_or_store(1, 10), (10, false));
        assert_eq!(map.load_or_store(1, 11), (10, true));
        assert_eq!(map.swap(1, 12), Some(10));
        assert_eq!(map.swap(2, 20), None);
        assert!(!map.compare_and_swap(1, 10, 13));
        assert!(map.compare_and_swap(1, 12, 13));
        assert!(
            !map.compare_and_swap(3, 0, 0),
            "compare_and_swap never inserts"
        );
        assert_eq!(map.load(3), None);
        assert!(!map.compare_and_delete(1, 12));
        assert!(map.compare_and_delete(1, 13));
        assert_eq!(map.load(1), None);
        let mut seen = Vec::new();
        map.range(|key, value| {
            seen.push((key, value));
            true
        });
        assert_eq!(seen, [(2, 20)]);
        assert_eq!(map.load_and_delete(2), Some(20));
        assert_eq!(map.load_and_delete(2), None);
        map.store(5, 5);
        map.store(6, 6);
        let mut visited = 0;
        map.range(|_, _| {
            visited += 1;
            false
        });
        assert_eq!(visited, 1, "range stops when told to");
        map.clear();
        assert_eq!(map.load(5), None);
        assert_eq!(map.load(6), None);
    }

    #[test]
    fn every_map_has_go_semantics() {
        for kind in MapKind::ALL {
            if kind.writes() {
                with_map_type!(kind, M => go_semantics::<M>());
            }
        }
    }

    #[test]
    fn every_go_workload_runs_on_every_map_it_applies_to() {
        for workload in GoWorkload::ALL {
            for kind in MapKind::ALL {
                if workload.runs_on(kind) {
                    for threads in [1, 3] {
                        run_go(kind, workload, threads, 3_000);
                    }
                }
            }
        }
        assert!(!GoWorkload::LoadOrStoreUnique.runs_on(MapKind::Frozen));
        assert!(GoWorkload::Range.runs_on(MapKind::Frozen));
    }

    fn key_set<M: BenchMap>(map: &M) -> Vec<u64> {
        let mut keys = Vec::new();
        map.range(|key, _| {
            keys.push(key);
            true
        });
        keys.sort_unstable();
        keys
    }

    #[test]
    fn interleaved_medians_take_turns_and_keep_each_contenders_median() {
        let calls = std::cell::RefCell::new(Vec::new());
        // Contender `c`'s phase `number` does `10 * c + number` operations in a second, so
        // its phases' throughputs are distinct and its median is its middle phase.
        let mut phases: Vec<Phase<'_>> = (0..3u64)
            .map(|contender| -> Phase<'_> {
                let calls = &calls;
                Box::new(move |_, number| {
                    calls.borrow_mut().push((contender, number));
                    Throughput {
                        ops: 10 * contender + number,
                        wall: Duration::from_secs(1),
                    }
                })
            })
            .collect();
        let medians = interleaved_medians(&mut phases, Duration::from_millis(1), Duration::ZERO, 3);
        drop(phases);
        let calls = calls.into_inner();
        let order: Vec<u64> = calls.iter().map(|&(contender, _)| contender).collect();
        // Warm-ups first, then rounds that start one contender later each time.
        assert_eq!(order, [0, 1, 2, 0, 1, 2, 1, 2, 0, 2, 0, 1]);
        assert!(calls[..3].iter().all(|&(_, number)| number == 1));
        let ops: Vec<u64> = medians.iter().map(|median| median.ops).collect();
        assert_eq!(ops, [3, 13, 23], "the middle of phases 2, 3 and 4");
    }

    #[test]
    fn mixes_leave_exactly_the_prefilled_keys() {
        let keys = KeyStreams::new(100, Dist::Zipf, 2);
        for kind in [
            MapKind::DualMap,
            MapKind::DashMap,
            MapKind::Papaya,
            MapKind::Scc,
        ] {
            with_map_type!(kind, M => {
                let map = prefilled::<M>(100);
                for mix in Mix::ALL {
                    let (outcome, _) = mix_phase(&map, mix, &keys, 2, Duration::from_millis(3), 2, || ());
                    assert!(outcome.ops > 0);
                    assert_eq!(key_set(&map), (0..100).collect::<Vec<_>>(), "{} {}", kind.name(), mix.name());
                }
            });
        }
        // Side by side, through `MixTarget`, the frozen map with the rest on a read-only mix.
        let targets: Vec<MixTarget> = MapKind::ALL
            .iter()
            .map(|&kind| MixTarget::prefilled(kind, 100))
            .collect();
        assert!(
            targets.iter().any(|target| !target.writes),
            "the frozen map reads only"
        );
        let mut phases: Vec<Phase<'_>> = targets
            .iter()
            .map(|target| -> Phase<'_> {
                let keys = &keys;
                Box::new(move |duration, number| {
                    target.phase(Mix::ReadOnly, keys, 2, duration, number)
                })
            })
            .collect();
        let medians = interleaved_medians(&mut phases, Duration::ZERO, Duration::from_millis(2), 1);
        assert!(medians.iter().all(|median| median.ops > 0));
    }

    #[test]
    fn write_loads_run_on_every_writer_and_keep_the_prefilled_keys() {
        for kind in MapKind::ALL {
            if !kind.writes() || kind.mixes_only() {
                continue;
            }
            for load in WriteLoad::ALL {
                let mut phase = write_load_phase_kind(kind, load, 64, 2);
                let outcome = phase(Duration::from_millis(2), 2);
                assert!(outcome.ops > 0, "{} {}", kind.name(), load.name());
            }
            with_map_type!(kind, M => {
                let map = prefilled::<M>(100);
                churn_phase(&map, 100, 2, Duration::from_millis(3), 2);
                overwrite_phase(&map, 100, 3, Duration::from_millis(3), 2);
                assert_eq!(key_set(&map), (0..100).collect::<Vec<_>>(), "{}", kind.name());
            });
        }
    }

    #[test]
    fn zipf_streams_follow_the_distribution() {
        let keys = KeyStreams::new(1_000, Dist::Zipf, 1);
        let stream = &keys.streams[0];
        let share =
            |key: u64| stream.iter().filter(|&&k| k == key).count() as f64 / stream.len() as f64;
        // Theory for n = 1,000, theta = 0.99: 12.9% for rank 0, 6.5% for rank 1.
        assert!((share(0) - 0.129).abs() < 0.01, "rank 0: {}", share(0));
        assert!((share(1) - 0.065).abs() < 0.01, "rank 1: {}", share(1));
        assert!(stream.iter().all(|&k| k < 1_000));
        let uniform = KeyStreams::new(1_000, Dist::Uniform, 2);
        assert!(uniform.streams.iter().all(|s| s.len().is_power_of_two()));
        let distinct: std::collections::HashSet<u64> = uniform.streams[1].iter().copied().collect();
        assert_eq!(distinct.len(), 1_000);
    }

    #[test]
    fn write_scaling_runs_with_parked_threads() {
        for kind in MapKind::ALL {
            if kind.writes() {
                let outcome =
                    run_write_scaling_kind(kind, 5, Duration::ZERO, Duration::from_millis(1), 3);
                assert!(outcome.ops >= 1024);
            }
        }
    }

    #[test]
    fn thread_shares_add_up() {
        for (total, threads) in [(0, 1), (7, 3), (1_000, 4), (5, 8)] {
            let sum: u64 = (0..threads).map(|t| share(total, threads, t)).sum();
            assert_eq!(sum, total);
        }
    }
}
