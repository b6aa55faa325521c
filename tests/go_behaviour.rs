//! Go's `sync.Map` behaviour tests, in spirit (`shared/spec/sync-map.md`, "Go's tests"):
//! nested calls inside iteration (#46399), compare-and-swap of an absent key (#51972), removed
//! dirty-only keys really freed (#40999), concurrent iteration, concurrent stores, loads and
//! clears, and iteration and clear of an empty map without allocating (#62404).

#[path = "support/counted.rs"]
mod counted;

use counted::Counted;
use dualmap::{DualMap, GetOrInsert};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;

fn map<K, V>() -> DualMap<K, V> {
    // One read/dirty pair with Go's promotion rule: Go's sync.Map.
    DualMap::builder()
        .pairs(1)
        .min_promotion_misses(0)
        .hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
        .build()
}

// ---------------------------------------------------------------------------------------------
// An allocator that counts the allocations of each thread.

struct CountingAllocator;

thread_local! {
    // `const` and without a destructor: accessing it never allocates, so the allocator can
    // use it without re-entering itself.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_allocation() {
    // `try_with`: during thread teardown the slot may be gone; those allocations are not
    // inside any measured section.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: delegates every call to `System` unchanged; counting touches only a thread-local
// `Cell`, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations this thread makes while running `f`.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = std::hint::black_box(f());
    (ALLOCATIONS.with(Cell::get) - before, result)
}

// ---------------------------------------------------------------------------------------------
// (a) Nested calls inside iteration (Go's TestMapRangeNestedCall, golang/go#46399).

/// A walk over every key and value of a map: `iter`, or the closure of `for_each`.
type Walk = fn(&DualMap<u32, String>, &mut dyn FnMut(&u32, &String));

fn by_iter(m: &DualMap<u32, String>, visit: &mut dyn FnMut(&u32, &String)) {
    for (key, value) in m.iter() {
        visit(&key, &value);
    }
}

fn by_for_each(m: &DualMap<u32, String>, visit: &mut dyn FnMut(&u32, &String)) {
    m.for_each(|key, value| visit(key, value));
}

#[test]
fn nested_calls_inside_iteration() {
    nested_calls_inside(by_iter);
}

#[test]
fn nested_calls_inside_for_each() {
    nested_calls_inside(by_for_each);
}

fn nested_calls_inside(walk: Walk) {
    let m: DualMap<u32, String> = map();
    let keys = [1, 2, 3, 4, 5];
    for k in keys {
        m.insert(k, format!("v{k}"));
    }
    let mut remaining: Vec<u32> = keys.to_vec();
    let mut outer_visits = 0;
    walk(&m, &mut |key, value| {
        outer_visits += 1;
        // The value seen by the iteration is the current one (no concurrent writers).
        assert_eq!(m.get(key).as_deref(), Some(value));
        assert_eq!(*value, format!("v{}", *key));

        let mut inner_keys = Vec::new();
        walk(&m, &mut |inner_key, inner_value| {
            // Load of the key offered by the nested iteration returns the same value.
            assert_eq!(m.get(inner_key).as_deref(), Some(inner_value));
            assert_eq!(m.get_cloned(inner_key).as_ref(), Some(inner_value));
            // 42 was never kept in the map: load_or_store must store it...
            match m.get_or_insert(42, "dummy".to_owned()) {
                GetOrInsert::Inserted(v) => assert_eq!(*v, "dummy"),
                GetOrInsert::Loaded(v) => panic!("42 loaded {:?} inside a nested iter", *v),
            }
            // ... a store replaces it and a load-and-delete takes it out again.
            assert_eq!(
                m.insert(42, "sync.Map".to_owned())
                    .as_deref()
                    .map(String::as_str),
                Some("dummy")
            );
            assert_eq!(
                m.remove(&42).as_deref().map(String::as_str),
                Some("sync.Map")
            );
            assert!(m.get(&42).is_none());
            // compare_and_swap of the same value and back is consistent too.
            let current = inner_value.clone();
            assert_eq!(
                m.compare_and_swap(inner_key, &current, format!("{current}'")),
                Ok(())
            );
            assert_eq!(
                m.compare_and_swap(inner_key, &format!("{current}'"), current.clone()),
                Ok(())
            );
            inner_keys.push(*inner_key);
        });
        // The nested iteration saw exactly the keys not yet deleted by the outer loop, and
        // never the transient key 42.
        inner_keys.sort_unstable();
        assert_eq!(inner_keys, remaining);

        // Remove the outer key on the fly.
        assert_eq!(m.remove(key).as_deref(), Some(value));
        remaining.retain(|k| *k != *key);
        assert_eq!(m.len(), remaining.len());
    });
    assert_eq!(outer_visits, keys.len());
    // After deleting every key in the iteration, the map is empty.
    let mut left = 0;
    walk(&m, &mut |_, _| left += 1);
    assert_eq!(left, 0);
    assert_eq!(m.len(), 0);
    assert!(m.is_empty());
    assert!(m.get(&42).is_none());
}

/// `try_for_each` visits every key once, across pairs and with keys only dirty maps hold
/// (their pairs are promoted when reached), and stops at the first `Break`, returning it.
#[test]
fn try_for_each_visits_every_key_once_and_stops_at_the_first_break() {
    let m: DualMap<u32, u32> = DualMap::builder().pairs(4).build();
    for k in 0..100 {
        m.insert(k, k * 2);
    }
    drop(m.iter()); // promotes every pair
    for k in 100..150 {
        m.insert(k, k * 2); // dirty-only: the snapshots are amended again
    }
    assert!(m.stats().amended);
    let mut seen = Vec::new();
    let flow = m.try_for_each(|&key, &value| {
        assert_eq!(value, key * 2);
        seen.push(key);
        ControlFlow::<()>::Continue(())
    });
    assert_eq!(flow, ControlFlow::Continue(()));
    seen.sort_unstable();
    assert_eq!(seen, (0..150).collect::<Vec<_>>());
    assert!(!m.stats().amended, "every pair was promoted when reached");

    for stop_after in [1, 7, 149] {
        let mut visits = 0;
        let flow = m.try_for_each(|&key, _| {
            visits += 1;
            if visits == stop_after {
                ControlFlow::Break(key)
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(visits, stop_after, "no visit after the break");
        assert!(matches!(flow, ControlFlow::Break(key) if key < 150));
    }
    let mut visits = 0;
    m.for_each(|_, _| visits += 1);
    assert_eq!(visits, 150);
}

#[test]
fn nested_iteration_on_an_amended_map() {
    // The outer iteration promotes; the body adds keys (amending again), so every nested
    // iteration promotes as well. The outer iteration still visits only its starting keys.
    let m: DualMap<u32, u32> = map();
    for k in 0..8 {
        m.insert(k, k);
    }
    let mut outer = Vec::new();
    for (key, _) in m.iter() {
        outer.push(*key);
        m.insert(100 + *key, *key);
        let inner: Vec<u32> = m.keys().map(|k| *k).collect();
        assert!(
            inner.contains(&(100 + *key)),
            "nested iter misses a key added before it"
        );
        assert_eq!(inner.len(), m.len());
    }
    outer.sort_unstable();
    assert_eq!(outer, (0..8).collect::<Vec<_>>());
    assert_eq!(m.len(), 16);
    assert!(m.stats().promotions >= 9);
}

// ---------------------------------------------------------------------------------------------
// (b) CompareAndSwap on an absent key (golang/go#51972).

#[test]
fn compare_and_swap_of_an_absent_key_fails_in_every_state() {
    let m: DualMap<u32, Option<u32>> = map();
    // Fresh map; `None` as expected value must not mean "from nothing".
    assert_eq!(m.compare_and_swap(&1, &None, Some(1)), Err(Some(1)));
    assert_eq!(m.compare_and_swap(&1, &Some(0), Some(1)), Err(Some(1)));
    assert!(m.get(&1).is_none());
    assert_eq!(m.len(), 0);
    // Amended map (key 2 only in the dirty map).
    m.insert(2, None);
    assert!(m.stats().amended);
    assert_eq!(m.compare_and_swap(&1, &None, Some(1)), Err(Some(1)));
    // Promoted map.
    assert_eq!(m.iter().count(), 1);
    assert!(!m.stats().amended);
    assert_eq!(m.compare_and_swap(&1, &None, Some(1)), Err(Some(1)));
    // A deleted key (tombstone in the snapshot).
    m.insert(1, None);
    m.iter().count();
    m.remove(&1);
    assert_eq!(m.compare_and_swap(&1, &None, Some(1)), Err(Some(1)));
    // An expunged key (the next new key rebuilds the dirty map).
    m.insert(3, Some(3));
    assert_eq!(m.compare_and_swap(&1, &None, Some(1)), Err(Some(1)));
    // None of this inserted anything.
    let mut contents: Vec<(u32, Option<u32>)> = m.iter().map(|(k, v)| (*k, *v)).collect();
    contents.sort_unstable();
    assert_eq!(contents, [(2, None), (3, Some(3))]);
    assert_eq!(m.len(), 2);
    // A present key with the expected value does swap.
    assert_eq!(m.compare_and_swap(&2, &None, Some(2)), Ok(()));
    assert_eq!(m.get_cloned(&2), Some(Some(2)));
}

// ---------------------------------------------------------------------------------------------
// (c) A removed dirty-only key is really dropped (golang/go#40999).
//
// As Go does, `remove` takes a dirty-only key out of the dirty map, unless the miss its lookup
// counts promotes the dirty map first (then the key is in the snapshot, and its removal leaves
// a tombstone there, as for any snapshot key). Its entry, key included, is freed once nothing
// holds it: the removed value's `Ref`, and for a value with drop glue the value's epoch.

/// A map whose dirty map holds `base` keys besides the ones a test removes.
fn map_with_dirty_keys(
    base: u64,
    key_drops: &Arc<AtomicUsize>,
    value_drops: &Arc<AtomicUsize>,
) -> DualMap<Counted, Counted> {
    let m = map();
    for k in 0..base {
        m.insert(Counted::new(k, key_drops), Counted::new(k, value_drops));
    }
    let stats = m.stats();
    assert_eq!(
        (stats.amended, stats.dirty_len, stats.promotions),
        (true, Some(base as usize), 0)
    );
    m
}

#[test]
fn a_removed_dirty_only_key_leaves_the_dirty_map_and_is_dropped_with_its_epoch() {
    let key_drops = Arc::new(AtomicUsize::new(0));
    let value_drops = Arc::new(AtomicUsize::new(0));
    let m = map_with_dirty_keys(16, &key_drops, &value_drops);

    m.insert(
        Counted::new(1_000, &key_drops),
        Counted::new(1_000, &value_drops),
    );
    let removed = m.remove(&1_000).expect("present");
    assert_eq!(removed.id, 1_000);
    let stats = m.stats();
    assert_eq!(stats.dirty_len, Some(16), "out of the dirty map");
    assert_eq!(stats.promotions, 0, "16 other entries, one miss");
    assert_eq!(stats.len, 16);
    drop(removed);
    assert!(m.get(&1_000).is_none());
    assert!(m.remove(&1_000).is_none());
    // The value waits for its epoch (it has drop glue), and holds its entry, key included.
    assert_eq!(value_drops.load(SeqCst), 0);
    assert_eq!(key_drops.load(SeqCst), 0);
    // A publication ends the epoch; with no snapshot left pinning it, value and key go.
    drop(m.iter());
    assert_eq!(value_drops.load(SeqCst), 1, "{:?}", m.stats());
    assert_eq!(key_drops.load(SeqCst), 1, "{:?}", m.stats());
    assert_eq!(
        m.stats().snapshot_len,
        16,
        "the promotion did not carry the key"
    );
    assert_eq!(m.len(), 16);
}

#[test]
fn removed_dirty_only_keys_never_pile_up_and_are_all_dropped() {
    // Go's test stores and deletes fresh keys until one is finalized; here the dirty map never
    // holds one of them after its remove, and every key is dropped in the end.
    const BASE: u64 = 200;
    const REMOVED: u64 = 1_000;
    let key_drops = Arc::new(AtomicUsize::new(0));
    let value_drops = Arc::new(AtomicUsize::new(0));
    let m = map_with_dirty_keys(BASE, &key_drops, &value_drops);
    for k in 1_000..1_000 + REMOVED {
        m.insert(Counted::new(k, &key_drops), Counted::new(k, &value_drops));
        assert_eq!(m.remove(&k).map(|v| v.id), Some(k));
        // Besides the live keys, only the tombstones of keys whose remove promoted, which a
        // rebuild copies from the snapshot (until they are more than one entry in 8).
        let stats = m.stats();
        let dirty_len = stats.dirty_len.unwrap_or(0) as u64;
        assert!(dirty_len <= BASE + stats.promotions, "{stats:?}");
    }
    let stats = m.stats();
    // Each remove counts a miss, so the pair still promotes about every `BASE` removes (the
    // key whose miss promotes goes into the snapshot as a tombstone).
    assert!(stats.promotions >= REMOVED / BASE - 1, "{stats:?}");
    assert_eq!(stats.len as u64, BASE);
    drop(m.iter());
    let stats = m.stats();
    // Every removed value is freed or waiting (bounded) for its epoch; every key but those
    // the promotions carried into a snapshot as tombstones went with it.
    assert!(stats.retired <= dualmap::RETIRED_PER_EPOCH, "{stats:?}");
    let values = value_drops.load(SeqCst) as u64;
    assert_eq!(values + stats.retired as u64, REMOVED);
    let keys = key_drops.load(SeqCst) as u64;
    assert!(
        keys + stats.promotions >= values && keys <= values,
        "{keys} {stats:?}"
    );
    drop(m);
    assert_eq!(key_drops.load(SeqCst) as u64, REMOVED + BASE);
    assert_eq!(value_drops.load(SeqCst) as u64, REMOVED + BASE);
}

// ---------------------------------------------------------------------------------------------
// (d) Concurrent iteration (Go's TestConcurrentRange).

#[test]
fn concurrent_iteration_visits_every_key_once_with_valid_values() {
    const KEYS: u64 = 1024;
    const READERS: usize = 3;
    const ITERATIONS: usize = 100;
    let m: DualMap<u64, u64> = map();
    // value = generation * KEYS + key
    for k in 0..KEYS {
        m.insert(k, k);
    }
    let readers_done = AtomicUsize::new(0);
    let writer_stores = AtomicUsize::new(0);
    thread::scope(|s| {
        // Writer: overwrites existing keys with new generations; now and then adds and
        // removes an extra key (>= KEYS) so that iterations also meet amended maps,
        // promotions and rebuilds.
        s.spawn(|| {
            let mut generation = 1;
            while readers_done.load(SeqCst) < READERS {
                for k in 0..KEYS {
                    m.insert(k, generation * KEYS + k);
                    if k % 128 == 0 {
                        let extra = KEYS + (generation * 7 + k) % 64;
                        m.insert(extra, extra);
                        m.remove(&(KEYS + (generation * 13 + k) % 64));
                    }
                }
                writer_stores.fetch_add(KEYS as usize, SeqCst);
                generation += 1;
            }
        });
        for _ in 0..READERS {
            s.spawn(|| {
                for _ in 0..ITERATIONS {
                    let mut seen = vec![0u32; KEYS as usize];
                    let mut extra_seen = vec![0u32; 64];
                    for (k, v) in m.iter() {
                        let (k, v) = (*k, *v);
                        if k < KEYS {
                            seen[k as usize] += 1;
                            assert_eq!(v % KEYS, k, "value {v} of key {k} is not valid");
                        } else {
                            assert!(k < KEYS + 64);
                            assert_eq!(v, k);
                            extra_seen[(k - KEYS) as usize] += 1;
                        }
                    }
                    for (k, n) in seen.iter().enumerate() {
                        assert_eq!(*n, 1, "key {k} visited {n} times");
                    }
                    assert!(extra_seen.iter().all(|n| *n <= 1));
                    // Point loads agree on validity too.
                    for k in (0..KEYS).step_by(97) {
                        let v = m.get_cloned(&k).expect("existing keys are never removed");
                        assert_eq!(v % KEYS, k);
                    }
                }
                readers_done.fetch_add(1, SeqCst);
            });
        }
    });
    assert_eq!(readers_done.load(SeqCst), READERS);
    // Final state: every key present with a value of some generation.
    let mut count = 0;
    for (k, v) in m.iter() {
        if *k < KEYS {
            assert_eq!(*v % KEYS, *k);
            count += 1;
        }
    }
    assert_eq!(count, KEYS);
    eprintln!(
        "concurrent iteration: {} readers x {ITERATIONS} iterations, writer stored {} values",
        READERS,
        writer_stores.load(SeqCst)
    );
}

// ---------------------------------------------------------------------------------------------
// (e) Concurrent stores, loads and clears (Go's TestConcurrentClear).

#[test]
fn concurrent_stores_loads_and_clears_then_clear_leaves_an_empty_map() {
    const THREADS: u64 = 4;
    const OPS: u64 = 3_000;
    const KEYS: u64 = 64;
    let key_drops = Arc::new(AtomicUsize::new(0));
    let value_drops = Arc::new(AtomicUsize::new(0));
    let created = AtomicUsize::new(0);
    let m: DualMap<Counted, Counted> = map();
    thread::scope(|s| {
        for t in 0..THREADS {
            let (m, key_drops, value_drops, created) = (&m, &key_drops, &value_drops, &created);
            s.spawn(move || {
                let mut state = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..OPS {
                    // xorshift64
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let k = state % KEYS;
                    match (state >> 32) % 100 {
                        0..=44 => {
                            // value id = k * 1_000_000 + anything: valid iff id / 1e6 == k
                            let id = k * 1_000_000 + t * OPS + i;
                            m.insert(Counted::new(k, key_drops), Counted::new(id, value_drops));
                            created.fetch_add(1, SeqCst);
                        }
                        45..=54 => {
                            let id = k * 1_000_000 + t * OPS + i;
                            let r = m.get_or_insert(
                                Counted::new(k, key_drops),
                                Counted::new(id, value_drops),
                            );
                            assert_eq!(r.into_ref().id / 1_000_000, k);
                            created.fetch_add(1, SeqCst);
                        }
                        55..=89 => {
                            if let Some(v) = m.get(&k) {
                                assert_eq!(v.id / 1_000_000, k, "value of another key");
                            }
                        }
                        90..=95 => {
                            if let Some(v) = m.remove(&k) {
                                assert_eq!(v.id / 1_000_000, k);
                            }
                        }
                        96..=97 => {
                            for (key, value) in m.iter() {
                                assert_eq!(value.id / 1_000_000, key.id);
                            }
                        }
                        _ => m.clear(),
                    }
                }
            });
        }
    });
    m.clear();
    assert_eq!(m.len(), 0);
    assert!(m.is_empty());
    assert_eq!(m.iter().count(), 0);
    for k in 0..KEYS {
        assert!(m.get(&k).is_none(), "key {k} survived the final clear");
    }
    // A pair an earlier clear emptied in place, with no new key since, stays amended with an
    // empty dirty map (`Stats::amended`); every other pair is published empty.
    let stats = m.stats();
    assert_eq!(
        (stats.len, stats.snapshot_len, stats.dirty_len.unwrap_or(0)),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.amended, stats.dirty_len.is_some(), "{stats:?}");
    // Every key and value created was dropped exactly once.
    drop(m);
    let created = created.load(SeqCst);
    assert!(created > 0);
    assert_eq!(key_drops.load(SeqCst), created);
    assert_eq!(value_drops.load(SeqCst), created);
}

// ---------------------------------------------------------------------------------------------
// (f) Iteration and clear of an empty map do not allocate (golang/go#62404).

/// The keys `for_each` visits.
fn for_each_count(m: &DualMap<u64, u64>) -> usize {
    let mut count = 0;
    m.for_each(|_, _| count += 1);
    count
}

#[test]
fn iter_and_clear_on_an_empty_map_do_not_allocate() {
    let m: DualMap<u64, u64> = map();
    // Warm up: the first snapshot load on a thread may register the thread with arc-swap.
    m.clear();
    assert_eq!(m.iter().count(), 0);
    assert!(m.get(&0).is_none());

    let (allocations, ()) = allocations_in(|| m.clear());
    assert_eq!(allocations, 0, "clear of a fresh map allocated");
    let (allocations, count) = allocations_in(|| m.iter().count());
    assert_eq!(count, 0);
    assert_eq!(allocations, 0, "iter of a fresh map allocated");
    let (allocations, count) = allocations_in(|| for_each_count(&m));
    assert_eq!(count, 0);
    assert_eq!(allocations, 0, "for_each of a fresh map allocated");

    // The same once the map has held keys and been cleared.
    for k in 0..100 {
        m.insert(k, k);
    }
    m.clear();
    let (allocations, ()) = allocations_in(|| m.clear());
    assert_eq!(allocations, 0, "clear of a cleared map allocated");
    let (allocations, count) = allocations_in(|| m.iter().count());
    assert_eq!(count, 0);
    assert_eq!(allocations, 0, "iter of a cleared map allocated");
    let (allocations, count) = allocations_in(|| for_each_count(&m));
    assert_eq!(count, 0);
    assert_eq!(allocations, 0, "for_each of a cleared map allocated");
    // Nor does a walk of a map with keys: its pins are guards, not reference counts.
    m.insert(7, 7);
    for_each_count(&m); // promotes
    let (allocations, count) = allocations_in(|| for_each_count(&m));
    assert_eq!(
        (allocations, count),
        (0, 1),
        "for_each of a map with a key allocated"
    );

    // Sanity check of the counter itself.
    let (allocations, boxed) = allocations_in(|| Box::new(1u64));
    assert_eq!((allocations, *boxed), (1, 1));
}
