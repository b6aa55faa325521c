//! Deterministic unit tests of the read/dirty algorithm: every method, every entry transition
//! of the spec's table (`shared/spec/sync-map.md`), the miss-counting rules, promotions,
//! rebuilds, `clear`, `len` accounting and bounded reclamation, observed through
//! [`DualMap::stats`] and through results.
//!
//! Promotions and rebuilds are forced deterministically: new keys amend the snapshot; `n`
//! counted misses promote a dirty map of `n` entries; the first new key after a promotion
//! rebuilds the dirty map and expunges the snapshot's tombstones.
//!
//! Stats are compared as whole structs, built from the previous stats with struct update
//! syntax, so that every field not named is asserted unchanged (`retired` included: a
//! displacement retires one value, and every publication of a snapshot frees what was
//! retired to the old one when no handle pins it).

#[path = "../../tests/support/counted.rs"]
mod counted;

use crate::{Builder, DualMap, GetOrInsert, Stats};
use crate::{MIN_PROMOTION_MISSES, RETIRED_PER_EPOCH};
use counted::Counted;

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

type Map<K = u32, V = u32> = DualMap<K, V>;

/// One read/dirty pair with a fixed hasher, so that every test takes the same path.
fn one_pair() -> Builder {
    DualMap::builder()
        .pairs(1)
        .hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
}

/// One read/dirty pair with Go's promotion rule: Go's `sync.Map`, so promotions
/// count as in Go. (The default floor has its own tests at the end.)
fn map<K, V>() -> Map<K, V> {
    one_pair().min_promotion_misses(0).build()
}

/// Makes the miss filter claim `key`, as a false positive would, so that lookups of it while
/// it is absent and the map amended take the lock and count misses as in Go.
fn filter_claims<K: Hash + Eq + Borrow<Q>, V, Q: Hash + Eq + ?Sized>(m: &DualMap<K, V>, key: &Q) {
    m.pairs().at(0).record_in_miss_filter(m.hash(key));
}

/// A lookup of the absent `key` that goes through the lock while the map is amended (a miss
/// in Go's terms): the way these tests force promotions.
fn miss<K: Hash + Eq + Borrow<Q>, V, Q: Hash + Eq + ?Sized>(m: &DualMap<K, V>, key: &Q) {
    filter_claims(m, key);
    assert!(m.get(key).is_none(), "the key is absent");
}

fn fresh_stats() -> Stats {
    Stats {
        len: 0,
        snapshot_len: 0,
        amended: false,
        dirty_len: None,
        misses: 0,
        promotions: 0,
        dirty_rebuilds: 0,
        rotations: 0,
        retired: 0,
        pairs: 1,
    }
}

/// Inserts `keys` (value = key) into a fresh map and promotes them into the read snapshot,
/// checking the resulting shape: `keys.len()` misses on an absent key promote.
fn promoted(keys: std::ops::Range<u32>) -> Map {
    let m = map();
    for k in keys.clone() {
        assert!(m.insert(k, k).is_none());
    }
    let n = keys.len();
    for _ in 0..n {
        miss(&m, &u32::MAX);
    }
    assert_eq!(
        m.stats(),
        Stats {
            len: n,
            snapshot_len: n,
            promotions: u64::from(n > 0),
            dirty_rebuilds: u64::from(n > 0),
            ..fresh_stats()
        }
    );
    m
}

fn sorted_pairs(m: &Map) -> Vec<(u32, u32)> {
    let mut pairs: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
    pairs.sort_unstable();
    pairs
}

// ---------------------------------------------------------------------------------------------
// Basic shape: fresh map, new keys, promotion by misses.

#[test]
fn fresh_map_has_no_dirty_map_and_no_counters() {
    let m: Map = map();
    assert_eq!(m.stats(), fresh_stats());
    assert_eq!(m.len(), 0);
    assert!(m.is_empty());
    // Lookups on a fresh (non-amended) map are lock-free misses: nothing is counted.
    assert!(m.get(&1).is_none());
    assert!(m.remove(&1).is_none());
    assert!(!m.compare_and_remove(&1, &1));
    assert_eq!(m.compare_and_swap(&1, &1, 2), Err(2));
    assert_eq!(m.stats(), fresh_stats());
}

#[test]
fn first_new_key_rebuilds_and_amends_later_ones_do_not() {
    let m: Map = map();
    assert!(m.insert(1, 10).is_none());
    let after_first = Stats {
        len: 1,
        amended: true,
        dirty_len: Some(1),
        dirty_rebuilds: 1,
        ..fresh_stats()
    };
    assert_eq!(m.stats(), after_first);
    assert!(m.insert(2, 20).is_none());
    assert!(m.insert(3, 30).is_none());
    assert_eq!(
        m.stats(),
        Stats {
            len: 3,
            dirty_len: Some(3),
            ..after_first
        }
    );
    assert_eq!(m.len(), 3);
    assert!(!m.is_empty());
}

#[test]
fn get_of_absent_key_promotes_after_dirty_len_misses() {
    let m: Map = map();
    for k in 0..5 {
        m.insert(k, k);
    }
    let amended = m.stats();
    assert_eq!(amended.dirty_len, Some(5));
    for i in 1..5 {
        miss(&m, &100);
        assert_eq!(
            m.stats(),
            Stats {
                misses: i,
                ..amended.clone()
            },
            "miss {i} of 5 must not promote yet"
        );
    }
    miss(&m, &100);
    let after = Stats {
        len: 5,
        snapshot_len: 5,
        amended: false,
        dirty_len: None,
        misses: 0,
        promotions: 1,
        dirty_rebuilds: 1,
        rotations: 0,
        retired: 0,
        pairs: 1,
    };
    assert_eq!(m.stats(), after);
    // Not amended any more: misses and hits are lock-free and not counted.
    for _ in 0..10 {
        miss(&m, &100);
        assert_eq!(m.get_cloned(&3), Some(3));
    }
    assert_eq!(m.stats(), after);
}

#[test]
fn get_found_in_dirty_counts_a_miss_and_promotes() {
    let m: Map = map();
    for k in 0..3 {
        m.insert(k, k + 10);
    }
    let s = m.stats();
    assert_eq!(m.get_cloned(&0), Some(10));
    assert_eq!(
        m.stats(),
        Stats {
            misses: 1,
            ..s.clone()
        }
    );
    assert!(m.contains_key(&1));
    assert_eq!(
        m.stats(),
        Stats {
            misses: 2,
            ..s.clone()
        }
    );
    assert_eq!(*m.get(&2).unwrap(), 12);
    assert_eq!(
        m.stats(),
        Stats {
            snapshot_len: 3,
            amended: false,
            dirty_len: None,
            misses: 0,
            promotions: 1,
            ..s
        }
    );
    assert_eq!(sorted_pairs(&m), [(0, 10), (1, 11), (2, 12)]);
}

#[test]
fn a_removed_dirty_only_key_stays_as_a_tombstone_that_a_store_refills_lock_free() {
    // Removing the only dirty-only key leaves it in the dirty map as a tombstone, which the
    // promotion threshold leaves out: the miss promotes it, deleted, into the snapshot. (Go
    // takes it out of the dirty map, so the next insert of the key is a new key again.)
    let m: Map = map();
    m.insert(1, 1);
    assert_eq!(m.remove(&1).as_deref(), Some(&1));
    let s = Stats {
        snapshot_len: 1, // the tombstone
        promotions: 1,
        dirty_rebuilds: 1,
        retired: 0, // a first value without drop glue: nothing to free, no record
        ..fresh_stats()
    };
    assert_eq!(m.stats(), s);
    assert!(m.get(&1).is_none());
    assert_eq!(m.iter().count(), 0);
    // A store fills the tombstone lock-free: no rebuild, no miss, not amended.
    assert!(m.insert(1, 2).is_none());
    assert_eq!(m.stats(), Stats { len: 1, ..s });
    assert_eq!(m.get_cloned(&1), Some(2));
}

// ---------------------------------------------------------------------------------------------
// The miss-counting rules, one method at a time, on an amended map with a large enough dirty
// map that nothing promotes by accident.

/// Keys 0..4 in the snapshot, keys 10..14 only in the dirty map (value = key); amended,
/// dirty_len 8, misses 0.
fn split_map() -> Map {
    let m = promoted(0..4);
    for k in 10..14 {
        assert!(m.insert(k, k).is_none());
    }
    assert_eq!(
        m.stats(),
        Stats {
            len: 8,
            snapshot_len: 4,
            amended: true,
            dirty_len: Some(8),
            misses: 0,
            promotions: 1,
            dirty_rebuilds: 2,
            rotations: 0,
            retired: 0,
            pairs: 1,
        }
    );
    // Key 99 stays absent; make the filter claim it so lookups of it go through the lock.
    filter_claims(&m, &99);
    m
}

#[test]
fn get_counts_a_miss_on_every_locked_lookup() {
    let m = split_map();
    let s = m.stats();
    assert_eq!(m.get_cloned(&1), Some(1)); // in the snapshot: lock-free
    assert_eq!(m.stats(), s);
    assert_eq!(m.get_cloned(&10), Some(10)); // dirty-only: found
    assert_eq!(
        m.stats(),
        Stats {
            misses: 1,
            ..s.clone()
        }
    );
    assert_eq!(m.get_cloned(&99), None); // absent while amended
    assert_eq!(
        m.stats(),
        Stats {
            misses: 2,
            ..s.clone()
        }
    );
    // A key the miss filter has never seen: answered without the lock, no miss counted
    // (golang/go#21032; the dualmap deviation from Go's promotion timing).
    assert!(!m.contains_key(&98));
    assert_eq!(m.stats(), Stats { misses: 2, ..s });
}

#[test]
fn remove_counts_a_miss_on_every_locked_lookup_and_takes_dirty_only_keys_out() {
    let m = split_map();
    let s = m.stats();
    // A snapshot key: a lock-free tombstone. (A first value without drop glue is not
    // retired: freeing it would do nothing.)
    assert_eq!(m.remove(&1).as_deref(), Some(&1));
    let s = Stats { len: 7, ..s };
    assert_eq!(m.stats(), s);
    let dirty_len = s.dirty_len.expect("amended");
    assert_eq!(m.remove(&10).as_deref(), Some(&10)); // dirty-only: out of the dirty map
    let s = Stats {
        len: 6,
        dirty_len: Some(dirty_len - 1),
        misses: 1,
        ..s
    };
    assert_eq!(m.stats(), s);
    assert!(m.remove(&10).is_none()); // now absent while amended: still a miss
    assert_eq!(
        m.stats(),
        Stats {
            misses: 2,
            ..s.clone()
        }
    );
    assert!(m.remove(&99).is_none());
    assert_eq!(m.stats(), Stats { misses: 3, ..s });
    assert!(m.get(&10).is_none());
    assert_eq!(m.len(), 6);
}

#[test]
fn compare_and_remove_counts_a_miss_on_every_locked_lookup_and_leaves_a_tombstone() {
    let m = split_map();
    let s = m.stats();
    assert!(!m.compare_and_remove(&10, &11)); // dirty-only, value differs
    assert_eq!(
        m.stats(),
        Stats {
            misses: 1,
            ..s.clone()
        }
    );
    assert_eq!(m.get_cloned(&10), Some(10)); // untouched (and one more miss)
    assert!(m.compare_and_remove(&10, &10)); // dirty-only, equal: tombstone stays in dirty
    let s = Stats {
        len: 7,
        misses: 3,
        ..s
    };
    assert_eq!(m.stats(), s);
    assert_eq!(m.stats().dirty_len, Some(8), "dirty_len unchanged");
    assert!(!m.compare_and_remove(&10, &10)); // tombstone: found in dirty, no value
    let s = Stats { misses: 4, ..s };
    assert_eq!(m.stats(), s);
    assert!(!m.compare_and_remove(&2, &3)); // snapshot key, differs: lock-free
    assert_eq!(m.stats(), s);
    assert!(m.compare_and_remove(&2, &2)); // snapshot key, equal: lock-free tombstone
    let s = Stats { len: 6, ..s };
    assert_eq!(m.stats(), s);
    // Each of the three locked compare-and-removes of key 10 counted a tombstone of the dirty
    // map, whatever it found (it compares after unlocking): the threshold is 8 - 3 = 5, so
    // the fifth miss, a compare-and-remove of a key absent while amended, promotes.
    assert!(!m.compare_and_remove(&99, &0));
    let s = m.stats();
    assert_eq!((s.promotions, s.misses, s.amended, s.len), (2, 0, false, 6));
}

#[test]
fn get_or_insert_counts_a_miss_only_when_found_in_dirty() {
    let m = split_map();
    let s = m.stats();
    // New key: no miss, goes to the dirty map.
    match m.get_or_insert(20, 200) {
        GetOrInsert::Inserted(v) => assert_eq!(*v, 200),
        GetOrInsert::Loaded(v) => panic!("loaded {}", *v),
    }
    let s = Stats {
        len: 9,
        dirty_len: Some(9),
        ..s
    };
    assert_eq!(m.stats(), s);
    // Snapshot key: lock-free, no miss.
    match m.get_or_insert(1, 100) {
        GetOrInsert::Loaded(v) => assert_eq!(*v, 1),
        GetOrInsert::Inserted(_) => panic!("inserted over a present key"),
    }
    assert_eq!(m.stats(), s);
    // Dirty-only key: loaded, one miss.
    assert_eq!(*m.get_or_insert(10, 100).into_ref(), 10);
    assert_eq!(
        m.stats(),
        Stats {
            misses: 1,
            ..s.clone()
        }
    );
    // try_insert is the same operation.
    let err = m.try_insert(11, 111).unwrap_err();
    assert_eq!((*err.current, err.not_inserted), (11, 111));
    assert_eq!(
        m.stats(),
        Stats {
            misses: 2,
            ..s.clone()
        }
    );
    // A tombstone in the dirty map: found in dirty (a miss) and stored into.
    assert!(m.compare_and_remove(&12, &12)); // miss 3
    assert!(m.get_or_insert(12, 120).is_inserted()); // miss 4
    assert_eq!(m.stats(), Stats { misses: 4, ..s });
    assert_eq!(m.get_cloned(&12), Some(120));
}

#[test]
fn compare_and_swap_counts_a_miss_only_when_found_in_dirty_and_never_inserts() {
    let m = split_map();
    let s = m.stats();
    // Absent while amended: locks, finds nothing, no miss, inserts nothing.
    assert_eq!(m.compare_and_swap(&99, &0, 5), Err(5));
    assert_eq!(m.stats(), s);
    // Dirty-only, matching: swapped, one miss.
    assert_eq!(m.compare_and_swap(&10, &10, 100), Ok(()));
    assert_eq!(
        m.stats(),
        Stats {
            misses: 1,
            ..s.clone()
        }
    );
    // Dirty-only, not matching: refused, one more miss.
    assert_eq!(m.compare_and_swap(&11, &0, 7), Err(7));
    assert_eq!(
        m.stats(),
        Stats {
            misses: 2,
            ..s.clone()
        }
    );
    // Snapshot key: lock-free either way, no miss.
    assert_eq!(m.compare_and_swap(&1, &0, 7), Err(7));
    assert_eq!(m.compare_and_swap(&1, &1, 101), Ok(()));
    assert_eq!(m.stats(), Stats { misses: 2, ..s });
    miss(&m, &99);
    assert_eq!(m.get_cloned(&10), Some(100));
    assert_eq!(m.get_cloned(&11), Some(11));
    assert_eq!(m.get_cloned(&1), Some(101));
    assert_eq!(m.len(), 8);
}

#[test]
fn compare_and_swap_on_absent_key_without_amendment_does_nothing() {
    let m = promoted(0..3);
    let s = m.stats();
    assert_eq!(m.compare_and_swap(&7, &0, 0), Err(0));
    assert_eq!(m.stats(), s);
    assert!(m.get(&7).is_none());
    // A deleted key (tombstone) is absent too: no "store from nothing".
    m.remove(&0);
    assert_eq!(m.compare_and_swap(&0, &0, 0), Err(0));
    assert!(m.get(&0).is_none());
    assert_eq!(m.len(), 2);
}

#[test]
fn insert_counts_a_miss_only_for_an_overwrite_of_a_dirty_only_key() {
    let m = split_map();
    miss(&m, &99);
    let s = m.stats();
    assert_eq!(s.misses, 1);
    // Overwrite of a dirty-only key: locked, and a miss (Go's Store counts none: W6).
    assert_eq!(m.insert(10, 1000).as_deref(), Some(&10));
    let s = Stats { misses: 2, ..s };
    assert_eq!(m.stats(), s);
    // New key: locked, no miss.
    assert!(m.insert(30, 30).is_none());
    let s = Stats {
        len: 9,
        dirty_len: Some(9),
        ..s
    };
    assert_eq!(m.stats(), s);
    // Snapshot key: lock-free, no miss.
    assert_eq!(m.insert(0, 1).as_deref(), Some(&0));
    assert_eq!(
        m.stats(),
        s,
        "first values without drop glue are not retired"
    );
}

#[test]
fn a_key_that_is_only_overwritten_is_not_stranded_behind_the_lock() {
    let m = split_map();
    // Key 11 is dirty-only and never read; other lookups miss without the lock.
    for i in 0..9 {
        assert!(m.get(&(1_000 + i)).is_none());
        m.insert(11, i);
    }
    // Its eighth locked overwrite brought the misses to dirty_len (8): promoted. The ninth
    // was lock-free.
    let s = m.stats();
    assert_eq!((s.promotions, s.amended, s.misses), (2, false, 0), "{s:?}");
    // Now its overwrites and reads are lock-free.
    m.insert(11, 100);
    assert_eq!(m.get_cloned(&11), Some(100));
    assert_eq!(m.stats().misses, 0);
    assert_eq!(m.stats().promotions, 2);
}

#[test]
fn get_or_insert_with_calls_the_closure_iff_the_key_is_absent() {
    let m = split_map();
    m.remove(&0); // snapshot tombstone
    assert!(m.compare_and_remove(&10, &10)); // dirty tombstone
    let mut calls = 0;
    let mut call = |k: u32, v: u32| {
        let r = m.get_or_insert_with(k, || {
            calls += 1;
            v
        });
        (r.is_inserted(), *r.into_ref())
    };
    assert_eq!(call(1, 50), (false, 1)); // snapshot key
    assert_eq!(call(11, 50), (false, 11)); // dirty-only key
    assert_eq!(call(0, 50), (true, 50)); // snapshot tombstone
    assert_eq!(call(10, 51), (true, 51)); // dirty tombstone
    assert_eq!(call(40, 52), (true, 52)); // new key
    assert_eq!(call(40, 53), (false, 52));
    assert_eq!(calls, 3);
    assert_eq!(m.len(), 9);
    assert_eq!(m.stats().len, 9);
}

// ---------------------------------------------------------------------------------------------
// The entry transitions of the spec's table.

#[test]
fn value_to_value_in_the_snapshot_is_lock_free() {
    let m = promoted(0..2);
    let s = m.stats();
    let previous = m.insert(0, 100).expect("key 0 is present");
    assert_eq!(*previous, 0);
    drop(previous);
    // A first value without drop glue is not retired (freeing it would do nothing); the
    // value node that replaced it is.
    assert_eq!(m.stats(), s);
    assert_eq!(m.compare_and_swap(&0, &100, 101), Ok(()));
    assert_eq!(m.stats(), Stats { retired: 1, ..s });
    assert_eq!(m.get_cloned(&0), Some(101));
    assert_eq!(sorted_pairs(&m), [(0, 101), (1, 1)]);
}

#[test]
fn value_to_nil_and_nil_to_value_in_the_snapshot_are_lock_free() {
    let m = promoted(0..2);
    let s = m.stats();
    // value -> NIL: the key stays in the snapshot as a tombstone.
    assert_eq!(m.remove(&0).as_deref(), Some(&0));
    // A first value without drop glue is not retired (freeing it would do nothing).
    let tomb = Stats {
        len: 1,
        ..s.clone()
    };
    assert_eq!(m.stats(), tomb);
    assert!(m.get(&0).is_none());
    assert!(m.remove(&0).is_none());
    assert!(!m.compare_and_remove(&0, &0));
    assert_eq!(m.compare_and_swap(&0, &0, 9), Err(9));
    assert_eq!(m.stats(), tomb, "no lock, no miss, no dirty map");
    // NIL -> value by insert: no dirty map is built, nothing is amended.
    assert!(m.insert(0, 5).is_none());
    assert_eq!(
        m.stats(),
        Stats {
            len: 2,
            ..tomb.clone()
        }
    );
    // value -> NIL by compare_and_remove, NIL -> value by get_or_insert.
    assert!(m.compare_and_remove(&0, &5));
    assert_eq!(
        m.stats(),
        Stats {
            retired: 1, // a value node
            ..tomb.clone()
        }
    );
    match m.get_or_insert(0, 6) {
        GetOrInsert::Inserted(v) => assert_eq!(*v, 6),
        GetOrInsert::Loaded(v) => panic!("loaded {} from a tombstone", *v),
    }
    assert_eq!(
        m.stats(),
        Stats {
            len: 2,
            retired: 1,
            ..tomb.clone()
        }
    );
    // And by try_insert.
    m.remove(&0);
    assert_eq!(*m.try_insert(0, 7).unwrap(), 7);
    assert_eq!(
        m.stats(),
        Stats {
            len: 2,
            retired: 2,
            ..tomb
        }
    );
    assert_eq!(sorted_pairs(&m), [(0, 7), (1, 1)]);
}

#[test]
fn rebuild_expunges_tombstones_and_a_store_puts_the_entry_back_into_dirty() {
    let m = promoted(0..3);
    assert!(m.remove(&0).is_some());
    assert!(m.compare_and_remove(&1, &1));
    assert_eq!(m.stats().retired, 0, "first values without drop glue");
    // The first new key after a promotion rebuilds the dirty map: tombstones 0 and 1 become
    // EXPUNGED and stay out of it. Publishing the amended snapshot frees what was retired.
    assert!(m.insert(10, 10).is_none());
    let rebuilt = Stats {
        len: 2,
        snapshot_len: 3,
        amended: true,
        dirty_len: Some(2),
        misses: 0,
        promotions: 1,
        dirty_rebuilds: 2,
        rotations: 0,
        retired: 0,
        pairs: 1,
    };
    assert_eq!(m.stats(), rebuilt);
    // Expunged keys are in the snapshot: reading, removing or compare-and-swapping them is
    // answered there, lock-free, with no miss.
    assert!(m.get(&0).is_none());
    assert!(m.remove(&0).is_none());
    assert!(!m.compare_and_remove(&1, &1));
    assert_eq!(m.compare_and_swap(&1, &1, 5), Err(5));
    assert_eq!(m.stats(), rebuilt);
    // EXPUNGED -> NIL -> value by insert: the entry goes back into the dirty map.
    assert!(m.insert(0, 100).is_none());
    let s = Stats {
        len: 3,
        dirty_len: Some(3),
        ..rebuilt
    };
    assert_eq!(m.stats(), s);
    // ... and by get_or_insert.
    assert!(m.get_or_insert(1, 101).is_inserted());
    let s = Stats {
        len: 4,
        dirty_len: Some(4),
        ..s
    };
    assert_eq!(m.stats(), s);
    // Both are snapshot keys again: lock-free, no misses.
    assert_eq!(m.get_cloned(&0), Some(100));
    assert_eq!(m.get_cloned(&1), Some(101));
    assert_eq!(m.stats(), s);
    // Promote: the dirty map (2, 10, 0, 1) becomes the snapshot with the same entries.
    for i in 1..=4 {
        miss(&m, &99);
        assert_eq!(m.stats().promotions, 1 + u64::from(i == 4));
    }
    assert_eq!(
        m.stats(),
        Stats {
            len: 4,
            snapshot_len: 4,
            amended: false,
            dirty_len: None,
            misses: 0,
            promotions: 2,
            dirty_rebuilds: 2,
            rotations: 0,
            retired: 0,
            pairs: 1,
        }
    );
    assert_eq!(sorted_pairs(&m), [(0, 100), (1, 101), (2, 2), (10, 10)]);
}

/// The rebuild reads every entry to expunge tombstones only when the pair's live-key count
/// says the read table has some. A remove whose tombstone is not counted yet (here: counted
/// back by hand, as if its decrement had not landed) leaves it in the dirty map, where it is
/// an ordinary tombstone; the next rebuild, counted right, expunges it.
#[test]
fn a_rebuild_expunges_only_when_the_live_count_shows_tombstones() {
    let m = promoted(0..3);
    let pair = m.pairs().at(0);
    assert!(m.remove(&0).is_some());
    pair.pin().live.added(); // the remove's count, not landed yet
    assert!(m.insert(10, 10).is_none()); // the rebuild: the count shows no tombstone
    let s = m.stats();
    assert_eq!((s.dirty_len, s.dirty_rebuilds), (Some(4), 2), "key 0 kept");
    pair.pin().live.removed(); // landed
    assert!(m.get(&0).is_none());
    for _ in 0..4 {
        miss(&m, &99);
    }
    let s = m.stats();
    assert_eq!((s.promotions, s.snapshot_len, s.len), (2, 4, 3));
    assert!(m.insert(11, 11).is_none()); // this rebuild expunges key 0
    let s = m.stats();
    assert_eq!(
        (s.dirty_len, s.dirty_rebuilds),
        (Some(4), 3),
        "key 0 expunged"
    );
    assert_eq!(sorted_pairs(&m), [(1, 1), (2, 2), (10, 10), (11, 11)]);
}

/// A rebuild expunges only when more than one entry in `TOMBSTONE_SHARE` of the read table
/// is a tombstone; fewer are carried into the dirty map, and so into the next read table,
/// still tombstones, and the first rebuild that finds enough of them expunges them all.
#[test]
fn a_rebuild_carries_tombstones_until_they_pass_one_entry_in_tombstone_share() {
    assert_eq!(crate::dirty::TOMBSTONE_SHARE, 8);
    let m = promoted(0..16);
    assert!(m.remove(&0).is_some() && m.remove(&1).is_some()); // 2 in 16: not over 1 in 8
    assert!(m.insert(100, 100).is_none()); // the rebuild
    assert_eq!(m.stats().dirty_len, Some(17), "keys 0 and 1 carried");
    assert!(m.get(&0).is_none() && m.get(&1).is_none());
    // A carried tombstone is an ordinary one: a store refills it without locking.
    assert!(m.insert(1, 11).is_none());
    assert_eq!(m.stats().dirty_len, Some(17));
    drop(m.iter()); // promotes: 17 entries, key 0 a tombstone
    assert_eq!((m.stats().snapshot_len, m.len()), (17, 16));
    assert!(m.remove(&2).is_some() && m.remove(&3).is_some()); // 3 in 17
    assert!(m.insert(101, 101).is_none()); // this rebuild expunges them all
    assert_eq!(m.stats().dirty_len, Some(15), "keys 0, 2 and 3 expunged");
    let mut expected: Vec<_> = (4..16).map(|k| (k, k)).collect();
    expected.extend([(1, 11), (100, 100), (101, 101)]);
    expected.sort_unstable();
    assert_eq!(sorted_pairs(&m), expected);
}

#[test]
fn expunge_by_try_insert_and_get_or_insert_with_also_unexpunges() {
    let m = promoted(0..2);
    m.remove(&0);
    m.remove(&1);
    m.insert(5, 5); // rebuild: 0 and 1 expunged
    assert_eq!(m.stats().dirty_len, Some(1));
    assert_eq!(*m.try_insert(0, 10).unwrap(), 10);
    assert_eq!(m.stats().dirty_len, Some(2));
    let mut called = false;
    let r = m.get_or_insert_with(1, || {
        called = true;
        11
    });
    assert!(called && r.is_inserted());
    drop(r);
    assert_eq!(m.stats().dirty_len, Some(3));
    assert_eq!(m.len(), 3);
    // A second rebuild cycle: promote, then a new key keeps the (live) entries.
    for _ in 0..3 {
        miss(&m, &99);
    }
    m.insert(6, 6);
    assert_eq!(m.stats().dirty_len, Some(4));
    assert_eq!(sorted_pairs(&m), [(0, 10), (1, 11), (5, 5), (6, 6)]);
}

#[test]
fn entries_are_shared_between_snapshot_and_dirty_map() {
    let m = promoted(0..2);
    assert!(m.insert(5, 5).is_none()); // rebuild: dirty = {0, 1, 5}
    assert_eq!(m.stats().dirty_len, Some(3));
    // value -> NIL in the snapshot while a dirty map exists: the same entry is in dirty, so
    // it stays there as a tombstone (dirty_len unchanged).
    assert_eq!(m.remove(&0).as_deref(), Some(&0));
    assert_eq!(m.stats().dirty_len, Some(3));
    // NIL -> value, lock-free, through the snapshot ...
    assert!(m.insert(0, 42).is_none());
    // ... and value -> value' through the snapshot.
    assert_eq!(m.insert(1, 43).as_deref(), Some(&1));
    let s = m.stats();
    assert_eq!((s.len, s.dirty_len, s.misses), (3, Some(3), 0));
    // After promoting the dirty map, the values written through the snapshot are there.
    for _ in 0..3 {
        miss(&m, &99);
    }
    assert_eq!(m.stats().promotions, 2);
    assert_eq!(sorted_pairs(&m), [(0, 42), (1, 43), (5, 5)]);
}

#[test]
fn dirty_tombstone_is_revived_by_insert_and_expunged_after_promotion() {
    let m: Map = map();
    for k in 0..3 {
        m.insert(k, k);
    }
    assert!(m.compare_and_remove(&0, &0)); // dirty tombstone; miss 1
    let s = m.stats();
    assert_eq!((s.len, s.dirty_len, s.misses), (2, Some(3), 1));
    // NIL -> value in a dirty-only entry: locked, dirty_len unchanged, and a miss, as for
    // every store into a dirty-only key (miss 2).
    assert!(m.insert(0, 7).is_none());
    assert_eq!(
        m.stats(),
        Stats {
            len: 3,
            misses: 2,
            ..s
        }
    );
    // Tombstone again (miss 3 of dirty_len 3: promotes, and the delete lands in the snapshot).
    assert!(m.compare_and_remove(&0, &7));
    let s = m.stats();
    assert_eq!(
        (s.len, s.snapshot_len, s.amended, s.dirty_len, s.promotions),
        (2, 3, false, None, 1)
    );
    // The next new key rebuilds and expunges the tombstone: dirty = {1, 2, 3}.
    m.insert(3, 3);
    let s = m.stats();
    assert_eq!(
        (s.snapshot_len, s.dirty_len, s.dirty_rebuilds),
        (3, Some(3), 2)
    );
    // The following promotion drops the expunged key from the snapshot.
    for _ in 0..3 {
        miss(&m, &99);
    }
    let s = m.stats();
    assert_eq!((s.len, s.snapshot_len, s.promotions), (3, 3, 2));
    assert_eq!(sorted_pairs(&m), [(1, 1), (2, 2), (3, 3)]);
}

#[test]
fn expunged_key_is_dropped_at_the_next_promotion() {
    // W7: a deleted key lives on as a tombstone, then as an expunged entry of the snapshot,
    // and is dropped when the dirty map (which lacks it) is promoted.
    let key_drops = Arc::new(AtomicUsize::new(0));
    let value_drops = Arc::new(AtomicUsize::new(0));
    let m: Map<Counted, Counted> = map();
    for k in 0..2 {
        m.insert(Counted::new(k, &key_drops), Counted::new(k, &value_drops));
    }
    miss(&m, &99);
    miss(&m, &99);
    assert_eq!(m.stats().promotions, 1);
    assert_eq!(key_drops.load(SeqCst), 0);
    drop(m.remove(&0)); // tombstone: the value is retired, the key stays
    assert_eq!(key_drops.load(SeqCst), 0);
    m.insert(Counted::new(2, &key_drops), Counted::new(2, &value_drops)); // rebuild: expunge 0
                                                                          // The rebuild published a new snapshot, which freed the value retired to the old one.
    assert_eq!(value_drops.load(SeqCst), 1);
    assert_eq!(key_drops.load(SeqCst), 0, "the snapshot still holds key 0");
    miss(&m, &99);
    miss(&m, &99);
    assert_eq!(m.stats().promotions, 2);
    assert_eq!(m.stats().snapshot_len, 2);
    assert_eq!(
        key_drops.load(SeqCst),
        1,
        "promotion drops the expunged key"
    );
    // Overwrites and removes of the others drop exactly the displaced values.
    m.insert(Counted::new(1, &key_drops), Counted::new(10, &value_drops));
    assert_eq!(
        key_drops.load(SeqCst),
        2,
        "the offered duplicate key is dropped"
    );
    drop(m);
    assert_eq!(key_drops.load(SeqCst), 4);
    assert_eq!(value_drops.load(SeqCst), 4);
}

/// A first value of a type without drop glue is displaced without a retirement record
/// (freeing it would do nothing): its memory is its entry's, so whatever can still read it
/// must keep the entry alive by itself. A `Ref` from a write under the lock (a dirty-only key)
/// holds a share of the entry; one from a lock-free write pins a snapshot whose table lists
/// it. The map then lets go of the entries every way it can (a remove that takes a dirty-only
/// key out of the dirty map, dropping the map's share at once; a clear in place, which drops the
/// dirty map's shares at once; a rebuild that expunges them, a promotion and a clear), and
/// new keys take the memory of freed entries: each `Ref` still reads its value (and Miri
/// checks every read).
#[test]
fn a_displaced_first_value_without_drop_glue_outlives_the_map_letting_go_of_its_entry() {
    let refill = |m: &Map<u32, [u64; 4]>, keys: std::ops::Range<u32>| {
        for k in keys {
            m.insert(k, [u64::from(k); 4]);
        }
    };
    // Under the lock: the read table is empty, so both keys are dirty-only, and the default
    // promotion floor keeps them there.
    let m: Map<u32, [u64; 4]> = one_pair().build();
    refill(&m, 1..3);
    let by_insert = m.insert(1, [10; 4]).expect("present");
    let by_remove = m.remove(&2).expect("present"); // out of the dirty map now
    let s = m.stats();
    assert_eq!(
        (s.retired, s.promotions, s.snapshot_len, s.dirty_len),
        (0, 0, 0, Some(1)),
        "{s:?}"
    );
    refill(&m, 40..45);
    m.clear(); // in place: the dirty map's shares are dropped now
    assert_eq!(m.stats().promotions, 0);
    refill(&m, 3..40);
    assert_eq!((*by_insert, *by_remove), ([1; 4], [2; 4]));
    drop((by_insert, by_remove));

    // Lock-free: promoted keys.
    let m: Map<u32, [u64; 4]> = map();
    refill(&m, 1..3);
    drop(m.iter()); // promotes
    let by_insert = m.insert(1, [10; 4]).expect("present");
    let by_remove = m.remove(&2).expect("present");
    assert_eq!(m.stats().dirty_rebuilds, 1, "both lock-free");
    drop(m.remove(&1));
    refill(&m, 3..4); // the rebuild expunges keys 1 and 2
    drop(m.iter()); // the promotion hands them to the replaced snapshot's epoch
    m.clear();
    refill(&m, 4..40);
    drop(m.iter());
    assert_eq!((*by_insert, *by_remove), ([1; 4], [2; 4]));
}

/// How the table an old snapshot reads stops being reachable from the map, after a rebuild
/// took its shares over.
#[derive(Clone, Copy, Debug)]
enum Replaced {
    /// A promotion replaces it; a clear of the map, not amended, then drops the table that
    /// holds the shares.
    PromotedThenCleared,
    /// A clear while amended discards the dirty map that holds the shares.
    ClearedWhileAmended,
    /// The map is dropped while amended.
    DroppedWhileAmended,
}

/// A rebuild takes the read table's shares over: that table owns nothing afterwards, while an
/// iterator and `Ref`s still read its entries through the snapshot they pin (a `Ref` of a
/// lock-free hit holds no share, and a first value lives inside its entry). Whatever then
/// replaces the table (a promotion, a clear, the map's drop), the entries stay alive until the
/// last handle goes, and each key and value is dropped once (Miri checks every read).
#[test]
fn an_old_snapshot_reads_its_entries_after_the_rebuild_took_its_shares_over() {
    for replaced in [
        Replaced::PromotedThenCleared,
        Replaced::ClearedWhileAmended,
        Replaced::DroppedWhileAmended,
    ] {
        let key_drops = Arc::new(AtomicUsize::new(0));
        let value_drops = Arc::new(AtomicUsize::new(0));
        let counted = |id| (Counted::new(id, &key_drops), Counted::new(id, &value_drops));
        let m: Map<Counted, Counted> = map();
        // Each key written twice: an entry whose first value is retired is held by that
        // record too, until its epoch is freed. The overwrites of dirty-only keys count
        // misses, and key 3's promotes: the first values of keys 0-2 are freed with the
        // replaced snapshot, so only the tables hold those entries' shares.
        for k in (0..4).chain(0..4) {
            let (key, value) = counted(k);
            m.insert(key, value);
        }
        assert_eq!(m.stats().promotions, 1, "{replaced:?}");
        assert_eq!(
            value_drops.load(SeqCst),
            3,
            "{replaced:?}: keys 0-2's first values"
        );
        let key_drops_before = key_drops.load(SeqCst); // the duplicates of the overwrites
        let held: Vec<_> = (0..4).map(|k| m.get(&k).expect("present")).collect();
        let mut iter = m.iter();
        let first = iter.next().expect("four keys").0.id; // pins the promoted snapshot
        let removed = (0..3).find(|&k| k != first).expect("another key");
        drop(m.remove(&removed)); // a tombstone, which the rebuild expunges
        let (key, value) = counted(4);
        m.insert(key, value); // the rebuild takes the pinned table's shares over
        let s = m.stats();
        assert_eq!((s.amended, s.dirty_rebuilds), (true, 2), "{replaced:?}");
        match replaced {
            Replaced::PromotedThenCleared => {
                for _ in 0..4 {
                    miss(&m, &99);
                }
                assert_eq!(m.stats().promotions, 2);
                m.clear();
            }
            Replaced::ClearedWhileAmended => m.clear(),
            Replaced::DroppedWhileAmended => {}
        }
        assert_eq!(
            key_drops.load(SeqCst),
            key_drops_before,
            "{replaced:?}: the handles pin every key"
        );
        let mut seen: Vec<u64> = iter
            .map(|(key, value)| {
                assert_eq!(key.id, value.id);
                key.id
            })
            .collect();
        seen.push(first);
        seen.sort_unstable();
        let expected: Vec<u64> = (0..4).filter(|&k| k != removed || k == first).collect();
        assert_eq!(seen, expected, "{replaced:?}");
        drop(m);
        assert_eq!(
            key_drops.load(SeqCst),
            key_drops_before,
            "{replaced:?}: the refs pin every key"
        );
        for (k, value) in (0..4).zip(&held) {
            assert_eq!(value.id, k, "{replaced:?}");
        }
        drop(held);
        assert_eq!(key_drops.load(SeqCst), key_drops_before + 5, "{replaced:?}");
        assert_eq!(value_drops.load(SeqCst), 9, "{replaced:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Iteration, retain, clear.

#[test]
fn iteration_on_an_amended_map_promotes_first() {
    let m: Map = map();
    for k in 0..3 {
        m.insert(k, k * 2);
    }
    miss(&m, &99);
    let s = m.stats();
    assert_eq!((s.amended, s.misses, s.promotions), (true, 1, 0));
    assert_eq!(sorted_pairs(&m), [(0, 0), (1, 2), (2, 4)]);
    let promoted = Stats {
        snapshot_len: 3,
        amended: false,
        dirty_len: None,
        misses: 0,
        promotions: 1,
        ..s
    };
    assert_eq!(m.stats(), promoted);
    // Not amended any more: iterating again promotes nothing.
    let mut keys: Vec<u32> = m.keys().map(|k| *k).collect();
    keys.sort_unstable();
    assert_eq!(keys, [0, 1, 2]);
    assert_eq!(m.stats(), promoted);
    // values() on an amended map promotes too.
    m.insert(3, 6);
    let mut values: Vec<u32> = m.values().map(|v| *v).collect();
    values.sort_unstable();
    assert_eq!(values, [0, 2, 4, 6]);
    let s = m.stats();
    assert_eq!((s.amended, s.promotions, s.snapshot_len), (false, 2, 4));
    // Tombstones are skipped.
    m.remove(&1);
    assert_eq!(sorted_pairs(&m), [(0, 0), (2, 4), (3, 6)]);
}

#[test]
fn iteration_visits_keys_present_when_the_pair_is_pinned_only() {
    let m = promoted(0..3);
    let mut iter = m.iter();
    let (first, _) = iter.next().expect("three keys"); // pins the only pair
    let first = *first;
    m.insert(10, 10); // new key after the pair was pinned: not visited
    let later = if first == 1 { 0 } else { 1 };
    m.insert(later, 100); // value read at visit time
    let mut seen: Vec<u32> = iter
        .by_ref()
        .map(|(k, v)| {
            assert_eq!(*v, if *k == later { 100 } else { *k });
            *k
        })
        .collect();
    seen.push(first);
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
    drop(iter);
    m.insert(later, later);
    assert_eq!(sorted_pairs(&m), [(0, 0), (1, 1), (2, 2), (10, 10)]);
}

#[test]
fn retain_promotes_and_removes_rejected_entries() {
    let m = promoted(0..4);
    for k in 10..14 {
        m.insert(k, k);
    }
    assert!(m.stats().amended);
    m.retain(|k, v| {
        assert_eq!(k, v);
        k % 2 == 0
    });
    let s = m.stats();
    assert_eq!(
        (s.len, s.snapshot_len, s.amended, s.dirty_len, s.promotions),
        (4, 8, false, None, 2)
    );
    assert_eq!(sorted_pairs(&m), [(0, 0), (2, 2), (10, 10), (12, 12)]);
    m.retain(|_, _| true);
    assert_eq!(m.len(), 4);
    m.retain(|_, _| false);
    assert_eq!(m.len(), 0);
    assert!(m.is_empty());
    assert_eq!(m.iter().count(), 0);
}

#[test]
fn clear_on_an_empty_map_changes_nothing() {
    let m: Map = map();
    m.clear();
    assert_eq!(m.stats(), fresh_stats());
    // After a clear in place (amended, the dirty map empty): skipped, changes nothing.
    m.insert(1, 1);
    m.clear();
    let s = m.stats();
    assert_eq!(
        (s.len, s.snapshot_len, s.amended, s.dirty_len),
        (0, 0, true, Some(0))
    );
    m.clear();
    assert_eq!(m.stats(), s);
}

/// A pair whose keys are all dirty-only, and few, is cleared in place: no publication (no
/// promotion, rebuild or rotation, the snapshot stays amended), every value dropped once,
/// `len` exact, a `Ref` taken before the clear still readable, and the keys absent to every
/// operation afterwards. Many cycles of clear and new keys keep the miss filter small.
#[test]
fn clear_in_place_removes_every_dirty_only_key_without_publishing() {
    let value_drops = Arc::new(AtomicUsize::new(0));
    let m: Map<u32, Counted> = one_pair().build(); // misses promote only from the 32nd
    for k in 0..3 {
        m.insert(k, Counted::new(k.into(), &value_drops));
    }
    m.remove(&2); // out of the dirty map
    let held = m.get(&0).expect("present"); // a locked lookup: a miss, no promotion yet
    let before = m.stats();
    assert_eq!(
        (before.amended, before.dirty_len, before.len),
        (true, Some(2), 2)
    );
    m.clear();
    let after = m.stats();
    assert_eq!(
        after,
        Stats {
            len: 0,
            dirty_len: Some(0),
            misses: 0,
            // keys 0 and 1's values, retired to the current epoch: freed at the next
            // publication (key 2's was retired by its remove)
            retired: before.retired + 2,
            ..before
        }
    );
    assert_eq!(held.id, 0, "a value read before the clear stays readable");
    drop(held);
    assert_eq!(value_drops.load(SeqCst), 0, "retired, not yet freed");
    for k in 0..3 {
        filter_claims(&m, &k);
        assert!(m.get(&k).is_none());
        assert!(m.remove(&k).is_none());
        assert!(!m.compare_and_remove(&k, &Counted::new(0, &value_drops)));
    }
    assert_eq!(m.len(), 0);
    assert!(m.insert(1, Counted::new(10, &value_drops)).is_none());
    assert_eq!(m.len(), 1);
    assert_eq!(m.get(&1).map(|v| v.id), Some(10));
    // Go's `Clear` benchmark: clear, then store a new key; the filter's bits of cleared keys
    // count toward its capacity (it does not saturate: absent keys rarely lock), but a
    // regrown filter holds only the keys since the clear (it does not grow without bound).
    let rounds = if cfg!(miri) { 2_000 } else { 100_000 };
    for k in 0..rounds {
        m.clear();
        m.insert(k, Counted::new(k.into(), &value_drops));
    }
    let s = m.stats();
    assert_eq!(
        (s.len, s.dirty_len, s.promotions),
        (1, Some(1), before.promotions)
    );
    assert!(m.pairs().at(0).filter_capacity() <= crate::filter::MIN_KEYS * 4);
    for k in rounds..rounds + 100 {
        assert!(m.get(&k).is_none());
    }
    let s = m.stats();
    assert!(s.misses < 10 && s.promotions == before.promotions, "{s:?}");
    m.clear();
    drop(m);
    // the 3 first values, the 3 offered to `compare_and_remove`, key 1's and the loop's
    assert_eq!(value_drops.load(SeqCst), 3 + 3 + 1 + rounds as usize);
}

/// A clear of a pair whose dirty map is larger than the in-place bound publishes an empty
/// snapshot (not amended), so that no locked section works in proportion to the map: by
/// entries, and by buckets (a map made with a large capacity clones its empty read table's
/// buckets into its first dirty map).
#[test]
fn clear_of_a_large_dirty_map_publishes() {
    let m: Map = map();
    for k in 0..1_000 {
        m.insert(k, k);
    }
    m.clear();
    let s = m.stats();
    assert_eq!(
        (s.len, s.snapshot_len, s.amended, s.dirty_len),
        (0, 0, false, None)
    );
    let m: Map = one_pair().capacity(100_000).build();
    m.insert(1, 1);
    m.clear();
    assert!(!m.stats().amended, "published: {:?}", m.stats());
    m.insert(1, 1); // a dirty map cloned from the empty published table: small
    m.clear();
    assert!(m.stats().amended, "in place: {:?}", m.stats());
}

/// After a clear in place, a `clear` returns without taking the pair's lock until the next
/// new key (here it runs while the test holds the lock), and a bulk load treats the pair as
/// vacant: `extend` publishes every key in the snapshot, not amended.
#[test]
fn an_emptied_pair_is_skipped_by_clear_and_vacant_for_a_bulk_load() {
    let mut m: Map = map();
    m.insert(1, 1);
    m.clear();
    assert!(m.stats().amended, "in place");
    {
        let locked = m.pairs().at(0).dirty.lock();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                m.clear();
                done.send(()).unwrap();
            });
            let skipped = finished.recv_timeout(std::time::Duration::from_secs(10));
            drop(locked);
            assert!(skipped.is_ok(), "clear waited for the lock");
        });
    }
    m.extend((0..100).map(|k| (k, k)));
    let s = m.stats();
    assert_eq!(
        (s.len, s.snapshot_len, s.amended, s.dirty_len),
        (100, 100, false, None)
    );
    assert!((0..100).all(|k| m.get(&k).is_some_and(|v| *v == k)));
    assert_eq!(m.stats().promotions, 0);
}

#[test]
fn clear_resets_misses_len_and_dirty_map_but_not_the_counters() {
    let value_drops = Arc::new(AtomicUsize::new(0));
    let m: Map<u32, Counted> = map();
    for k in 0..3 {
        m.insert(k, Counted::new(k.into(), &value_drops));
    }
    miss(&m, &9);
    miss(&m, &9);
    miss(&m, &9); // promotes
    m.insert(5, Counted::new(5, &value_drops)); // rebuild, amended
    miss(&m, &9);
    m.remove(&0);
    let s = m.stats();
    assert_eq!(
        (s.len, s.snapshot_len, s.amended, s.dirty_len, s.misses),
        (3, 3, true, Some(4), 1)
    );
    assert_eq!((s.promotions, s.dirty_rebuilds), (1, 2));
    m.clear();
    let cleared = Stats {
        len: 0,
        snapshot_len: 0,
        amended: false,
        dirty_len: None,
        misses: 0,
        promotions: 1,
        dirty_rebuilds: 2,
        rotations: 0,
        retired: 0,
        pairs: 1,
    };
    assert_eq!(m.stats(), cleared);
    assert_eq!(
        value_drops.load(SeqCst),
        4,
        "every value is dropped by clear"
    );
    assert!(m.get(&1).is_none());
    assert_eq!(m.iter().count(), 0);
    m.clear();
    assert_eq!(m.stats(), cleared);
    // The map works normally after a clear.
    m.insert(1, Counted::new(1, &value_drops));
    let s = m.stats();
    assert_eq!((s.len, s.dirty_len, s.dirty_rebuilds), (1, Some(1), 3));
    assert_eq!(m.get(&1).map(|v| v.id), Some(1)); // one miss: promotes
    assert_eq!(m.stats().promotions, 2);
}

#[test]
fn clear_of_a_snapshot_of_tombstones_empties_it() {
    let m = promoted(0..3);
    for k in 0..3 {
        m.remove(&k);
    }
    let s = m.stats();
    assert_eq!((s.len, s.snapshot_len), (0, 3));
    m.clear();
    assert_eq!(
        m.stats(),
        Stats {
            promotions: 1,
            dirty_rebuilds: 1,
            ..fresh_stats()
        }
    );
}

#[test]
fn a_ref_from_before_a_clear_keeps_its_value() {
    let m: Map<u32, String> = map();
    m.insert(1, "one".to_owned());
    let held = m.get(&1).unwrap();
    m.clear();
    assert!(m.get(&1).is_none());
    assert_eq!(*held, "one");
}

// ---------------------------------------------------------------------------------------------
// len accounting and reclamation.

#[test]
fn len_follows_every_transition() {
    let m: Map = map();
    let check = |expected: usize| {
        assert_eq!(m.len(), expected);
        assert_eq!(m.stats().len, expected);
        assert_eq!(m.is_empty(), expected == 0);
    };
    check(0);
    m.insert(0, 0); // new key (rebuild)
    check(1);
    m.insert(1, 1); // new key
    check(2);
    m.insert(1, 2); // dirty value -> value
    check(2);
    m.remove(&1); // dirty-only key, leaving: its miss promotes {0, 1} first
    check(1);
    assert_eq!(m.stats().promotions, 1);
    m.remove(&1); // a snapshot tombstone now: absent, lock-free
    check(1);
    m.insert(1, 1); // snapshot NIL -> value, lock-free
    check(2);
    m.insert(2, 2); // new key: rebuild, dirty = {0, 1, 2}
    assert!(!m.get_or_insert(2, 9).is_inserted()); // loaded from dirty: miss 1
    check(3);
    // Miss 2 promotes {0, 1, 2} before the delete: key 2 becomes a snapshot tombstone.
    assert!(m.compare_and_remove(&2, &2));
    check(2);
    assert_eq!(m.stats().promotions, 2);
    assert_eq!(m.stats().snapshot_len, 3);
    assert!(m.get_or_insert(2, 9).is_inserted()); // snapshot NIL -> value
    check(3);
    m.insert(0, 5); // snapshot value -> value
    check(3);
    assert_eq!(m.compare_and_swap(&0, &5, 6), Ok(()));
    check(3);
    m.remove(&0); // snapshot value -> NIL
    check(2);
    assert!(!m.compare_and_remove(&0, &6)); // NIL stays NIL
    check(2);
    m.insert(0, 7); // NIL -> value, lock-free
    check(3);
    m.remove(&0);
    check(2);
    m.insert(3, 3); // new key: rebuild expunges 0
    check(3);
    assert!(m.get(&0).is_none());
    check(3);
    m.insert(0, 8); // EXPUNGED -> NIL -> value
    check(4);
    m.remove(&0);
    m.insert(4, 4);
    check(4);
    m.retain(|k, _| *k != 4);
    check(3);
    m.clear();
    check(0);
    m.insert(5, 5);
    check(1);
}

#[test]
fn large_snapshots_prefetch_and_rotations_keep_their_probe_start() {
    use crate::sync::Arc as SyncArc; // the snapshot's own `Arc`, loom's under loom
    use crate::table::ProbeStart;
    let mut m: Map<u32, u32> = one_pair().build();
    // Enough keys for a table of `PREFETCH_MIN_BUCKETS`, few enough for Miri.
    m.extend((0..4_000).map(|k| (k, k)));
    let pair = m.pairs().at(0);
    let first = pair.snapshot();
    let start = ProbeStart::of(&first.table).expect("a large table");
    assert_eq!(first.probe_start(), Some(start));
    let rotations = m.stats().rotations;
    let mut value = 0;
    while m.stats().rotations == rotations {
        value += 1;
        m.insert(0, value);
    }
    let rotated = pair.snapshot();
    assert!(!SyncArc::ptr_eq(&rotated, &first) && SyncArc::ptr_eq(&rotated.table, &first.table));
    assert_eq!(rotated.probe_start(), Some(start));
    assert!(!first.is_current() && rotated.is_current());
    // Small tables prefetch nothing.
    let mut small: Map<u32, u32> = one_pair().build();
    small.extend((0..100).map(|k| (k, k)));
    assert_eq!(small.pairs().at(0).snapshot().probe_start(), None);
}

#[test]
fn retired_values_are_bounded_by_rotation() {
    let m = promoted(0..1);
    for i in 1..=10_000 {
        m.insert(0, i);
    }
    let s = m.stats();
    assert!(s.retired <= RETIRED_PER_EPOCH, "retired {}", s.retired);
    assert!(s.rotations > 0);
    assert!(
        s.rotations >= 10_000 / RETIRED_PER_EPOCH as u64 / 2,
        "{s:?}"
    );
    // Rotations republish the same table: nothing else changes.
    assert_eq!(
        (
            s.len,
            s.snapshot_len,
            s.amended,
            s.dirty_len,
            s.promotions,
            s.dirty_rebuilds
        ),
        (1, 1, false, None, 1, 1)
    );
    assert_eq!(m.get_cloned(&0), Some(10_000));
    // Overwrites of a dirty-only key (locked path) are bounded too.
    m.insert(1, 0);
    for i in 1..=1_000 {
        m.insert(1, i);
    }
    assert!(m.stats().retired <= RETIRED_PER_EPOCH);
    // So are removes and re-inserts.
    for i in 0..1_000 {
        m.remove(&0);
        m.insert(0, i);
    }
    assert!(m.stats().retired <= RETIRED_PER_EPOCH);
}

#[test]
fn a_held_ref_pins_retired_values_until_dropped() {
    let drops = Arc::new(AtomicUsize::new(0));
    let m: Map<u32, Counted> = map();
    m.insert(0, Counted::new(0, &drops));
    miss(&m, &9); // promote
    let held = m.get(&0).unwrap();
    let overwrites = 3 * RETIRED_PER_EPOCH as u64;
    for i in 1..=overwrites {
        m.insert(0, Counted::new(i, &drops));
    }
    let pinned = m.stats();
    assert!(pinned.retired as u64 >= overwrites, "{pinned:?}");
    assert!(pinned.rotations > 0);
    assert!(drops.load(SeqCst) == 0, "nothing may be freed while pinned");
    assert_eq!(held.id, 0, "the held value is intact");
    drop(held);
    m.insert(0, Counted::new(overwrites + 1, &drops));
    let after = m.stats();
    assert!(after.retired < pinned.retired, "{after:?}");
    assert!(after.retired <= RETIRED_PER_EPOCH, "{after:?}");
    assert_eq!(
        drops.load(SeqCst) as u64,
        overwrites + 1 - after.retired as u64
    );
    drop(m);
    assert_eq!(drops.load(SeqCst) as u64, overwrites + 2);
}

#[test]
fn offered_values_that_are_not_stored_are_dropped_or_returned() {
    let drops = Arc::new(AtomicUsize::new(0));
    let m: Map<u32, Counted> = map();
    m.insert(0, Counted::new(0, &drops));
    // get_or_insert drops the offered value; try_insert gives it back.
    assert!(!m.get_or_insert(0, Counted::new(1, &drops)).is_inserted());
    assert_eq!(drops.load(SeqCst), 1);
    let err = m.try_insert(0, Counted::new(2, &drops)).unwrap_err();
    assert_eq!((err.current.id, err.not_inserted.id), (0, 2));
    assert_eq!(drops.load(SeqCst), 1);
    drop(err);
    assert_eq!(drops.load(SeqCst), 2);
    // A failed compare_and_swap gives the new value back.
    let back = m
        .compare_and_swap(&0, &Counted::new(9, &drops), Counted::new(3, &drops))
        .unwrap_err();
    assert_eq!(back.id, 3);
    assert_eq!(
        drops.load(SeqCst),
        3,
        "only the `expected` temporary is dropped"
    );
    drop(back);
    assert_eq!(drops.load(SeqCst), 4);
    drop(m);
    assert_eq!(drops.load(SeqCst), 5);
}

// ---------------------------------------------------------------------------------------------
// The remaining public surface.

#[test]
fn constructors_start_empty_and_hash_with_the_given_hasher() {
    let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let m: Map = DualMap::with_capacity_and_hasher(100, hasher.clone());
    let default_pairs = Stats {
        pairs: crate::pairs::default_count(),
        ..fresh_stats()
    };
    assert_eq!(m.stats(), default_pairs);
    assert_eq!(m.hasher().hash_one(7u32), hasher.hash_one(7u32));
    let m: Map = DualMap::with_capacity(10);
    assert!(m.is_empty());
    let m: Map = DualMap::default();
    assert_eq!(m.stats(), default_pairs);
    m.insert(1, 1);
    assert_eq!(m.get_cloned(&1), Some(1));
}

#[test]
fn clone_copies_the_present_keys_only_and_is_independent() {
    let m = promoted(0..4);
    m.remove(&0); // snapshot tombstone
    m.insert(10, 10); // rebuild expunges 0; dirty-only key 10
    assert!(m.compare_and_remove(&10, &10)); // dirty tombstone
    m.insert(11, 11);
    let copy = m.clone();
    assert_eq!(sorted_pairs(&copy), [(1, 1), (2, 2), (3, 3), (11, 11)]);
    assert_eq!(copy.len(), 4);
    assert_eq!(copy.stats().len, 4);
    copy.insert(1, 100);
    copy.remove(&2);
    assert_eq!(sorted_pairs(&m), [(1, 1), (2, 2), (3, 3), (11, 11)]);
    assert_eq!(copy.hasher().hash_one(1u32), m.hasher().hash_one(1u32));
}

/// Reads every key of `m` (and misses once), and checks that none of it took the lock:
/// nothing counted a miss, promoted or rebuilt.
fn assert_served_from_the_snapshot(m: &Map, keys: impl IntoIterator<Item = u32>) {
    let before = m.stats();
    assert_eq!(before.dirty_len, None, "not amended: {before:?}");
    for key in keys {
        assert!(m.get(&key).is_some(), "{key}");
    }
    assert!(m.get(&u32::MAX).is_none());
    assert_eq!(m.stats(), before, "a read took the lock");
}

#[test]
fn maps_built_in_bulk_serve_every_key_from_the_snapshot() {
    let n: u32 = if cfg!(miri) { 100 } else { 1_000 };
    let m: Map = (0..n).map(|k| (k, k)).chain([(7, 700)]).collect();
    assert_eq!((m.len(), m.get_cloned(&7)), (n as usize, Some(700)));
    assert_eq!(m.stats().promotions, 0);
    assert_served_from_the_snapshot(&m, 0..n);

    let copy = m.clone();
    assert_eq!(sorted_pairs(&copy), sorted_pairs(&m));
    assert_served_from_the_snapshot(&copy, 0..n);

    let mut extended = map();
    extended.extend((0..100).map(|k| (k, k)));
    assert_served_from_the_snapshot(&extended, 0..100);
    // Into a map that is no longer vacant: one by one, through the dirty map, as Go does.
    extended.extend([(500, 5)]);
    assert_eq!(extended.stats().dirty_len, Some(101));
    // A map whose keys were all removed still holds their entries: not vacant either.
    let mut emptied = map();
    emptied.insert(1, 1);
    emptied.get(&1);
    emptied.remove(&1);
    emptied.extend([(2, 2)]);
    assert!(emptied.stats().dirty_len.is_some());
    assert_eq!(sorted_pairs(&emptied), [(2, 2)]);
    // Works on after a bulk load like on any other map.
    m.insert(5_000, 1);
    m.remove(&3);
    assert_eq!(
        (m.len(), m.get_cloned(&5_000), m.get_cloned(&3)),
        (n as usize, Some(1), None)
    );
}

#[test]
fn from_iter_extend_into_iter_and_debug() {
    let m: Map = [(1, 1), (2, 2), (1, 3)].into_iter().collect();
    assert_eq!(sorted_pairs(&m), [(1, 3), (2, 2)]);
    assert_eq!(m.len(), 2);
    let mut m2: Map = map();
    m2.extend([(5, 5), (6, 6)]);
    (&m2).extend([(6, 7), (8, 8)]);
    assert_eq!(sorted_pairs(&m2), [(5, 5), (6, 7), (8, 8)]);
    let mut via_ref: Vec<(u32, u32)> = (&m2).into_iter().map(|(k, v)| (*k, *v)).collect();
    via_ref.sort_unstable();
    assert_eq!(via_ref, [(5, 5), (6, 7), (8, 8)]);
    let one: Map = map();
    one.insert(4, 40);
    one.insert(9, 90);
    one.remove(&9);
    assert_eq!(format!("{one:?}"), "{4: 40}");
    let (k, v) = one.iter().next().unwrap();
    assert_eq!(
        (format!("{k:?} {v}"), format!("{:?}", one.get(&4).unwrap())),
        ("4 40".to_owned(), "Ref(40)".to_owned())
    );
}

#[test]
fn get_or_insert_and_occupied_error_helpers() {
    let m: Map = map();
    let first = m.get_or_insert(1, 10);
    assert!(first.is_inserted());
    assert_eq!(format!("{first:?}"), "Inserted(10)");
    assert_eq!(*first.into_ref(), 10);
    let second = m.get_or_insert(1, 11);
    assert!(!second.is_inserted());
    assert_eq!(format!("{second:?}"), "Loaded(10)");
    let err = m.try_insert(1, 12).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key already present with value 10; 12 was not inserted"
    );
    assert_eq!(m.get_cloned(&1), Some(10));
}

#[test]
fn refs_and_values_can_be_read_from_other_threads() {
    let m: Map<u32, String> = map();
    m.insert(1, "one".to_owned());
    let r = m.get(&1).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(*r, "one");
            m.insert(1, "uno".to_owned());
            assert_eq!(m.get_cloned(&1).as_deref(), Some("uno"));
        });
    });
    assert_eq!(*r, "one");
    let moved = std::thread::spawn(move || r.len()).join().unwrap();
    assert_eq!(moved, 3);
}

// ---------------------------------------------------------------------------------------------
// The miss filter (golang/go#21032).

#[test]
fn absent_keys_the_filter_never_saw_answer_without_the_lock() {
    let m = promoted(0..1_000);
    for k in 1_000..1_100 {
        m.insert(k, k); // 100 dirty-only keys: amended, with a filter
    }
    let s = m.stats();
    assert!(s.amended);
    let absent = 100_000..if cfg!(miri) { 100_500 } else { 110_000u32 };
    assert!(absent.clone().all(|k| m.get(&k).is_none()));
    assert!(absent.clone().all(|k| m.remove(&k).is_none()));
    assert!(absent.clone().all(|k| !m.compare_and_remove(&k, &k)));
    assert!(absent
        .clone()
        .all(|k| m.compare_and_swap(&k, &k, k).is_err()));
    let after = m.stats();
    // 4 lookups per key; only the filter's false positives (a few percent) took the lock.
    assert!(after.misses < absent.len() / 5, "{after:?}");
    assert_eq!(
        after.promotions, s.promotions,
        "filtered lookups do not promote"
    );
    // Every dirty-only key is still found (through the lock).
    assert!((1_000..1_100).all(|k| m.get_cloned(&k) == Some(k)));
}

#[test]
fn the_filter_grows_with_the_dirty_map_and_never_hides_a_key() {
    let keys = if cfg!(miri) { 10..1_010 } else { 10..20_010 };
    let m = promoted(0..10);
    for k in keys.clone() {
        m.insert(k, k);
        if k % 997 == 0 {
            // A key just added is found at once, whatever the filter's size.
            assert_eq!(m.get_cloned(&k), Some(k));
        }
    }
    assert!(m.stats().amended);
    let before = m.stats().misses;
    let false_positives = (1_000_000..1_020_000u32)
        .filter(|k| m.contains_key(k))
        .count();
    assert_eq!(false_positives, 0, "absent keys are absent");
    let locked = m.stats().misses - before;
    // The filter was regrown for 20,000 keys: still only a few percent of absent lookups lock.
    assert!(
        locked < 1_000,
        "{locked} of 20,000 absent lookups took the lock"
    );
    assert!(keys.clone().all(|k| m.get_cloned(&k) == Some(k)));
}

#[test]
fn the_new_keys_hashes_live_only_while_amended() {
    use crate::dirty::KEPT_HASHES;
    let m = promoted(0..4);
    let hashes = |m: &Map| {
        let dirty = m.pairs().at(0).dirty.lock();
        (dirty.new_key_hashes.len(), dirty.new_key_hashes.capacity())
    };
    let many = 10..10 + KEPT_HASHES as u32 + 50;
    many.clone().for_each(|k| drop(m.insert(k, k)));
    assert_eq!(hashes(&m).0, many.clone().count());
    drop(m.iter()); // promotes
    assert_eq!(
        hashes(&m),
        (0, 0),
        "a long list is freed with the dirty map's cycle"
    );
    for k in 1_000..1_010 {
        m.insert(k, k);
    }
    assert_eq!(hashes(&m).0, 10);
    drop(m.iter());
    let (len, capacity) = hashes(&m);
    assert_eq!(len, 0, "emptied with the dirty map's cycle");
    assert!(
        (10..=KEPT_HASHES).contains(&capacity),
        "a short list's room is kept: {capacity}"
    );
    m.insert(500, 5);
    m.clear();
    let (len, capacity) = hashes(&m);
    assert_eq!(len, 0, "emptied by clear too");
    assert!(capacity <= KEPT_HASHES);
}

#[test]
fn a_removed_dirty_only_key_keeps_its_filter_bits_and_is_still_absent() {
    let m = promoted(0..4);
    m.insert(10, 10);
    m.insert(11, 11);
    assert_eq!(m.remove(&10).as_deref(), Some(&10)); // a tombstone in dirty; bits stay
    let s = m.stats();
    assert!(m.get(&10).is_none()); // the filter still claims it: locked lookup, a miss
    assert_eq!(m.stats().misses, s.misses + 1);
    assert!(m.insert(10, 12).is_none()); // and it can come back
    assert_eq!(m.get_cloned(&10), Some(12));
}

/// A `BuildHasher` whose `hash_one` disagrees with hashing through its `Hasher`, as ahash's
/// nightly specialization does for primitive types.
#[derive(Clone, Default)]
struct InconsistentHashOne;

impl std::hash::BuildHasher for InconsistentHashOne {
    type Hasher = std::collections::hash_map::DefaultHasher;

    fn build_hasher(&self) -> Self::Hasher {
        Self::Hasher::default()
    }

    fn hash_one<T: Hash>(&self, _: T) -> u64 {
        // Differs between a key type and the type it is looked up by.
        std::any::type_name::<T>().len() as u64
    }
}

#[test]
fn borrow_lookups_never_rely_on_an_overridden_hash_one() {
    let drops = Arc::new(AtomicUsize::new(0));
    let m: DualMap<Counted, u64, InconsistentHashOne> = DualMap::with_hasher(InconsistentHashOne);
    for id in 0..100 {
        m.insert(Counted::new(id, &drops), id);
    }
    // `Counted` hashes its `u64` id, so it can be looked up by `&u64`.
    assert!((0..100u64).all(|id| m.get_cloned(&id) == Some(id)));
    assert!((0..100u64).all(|id| m.remove(&id).is_some()));
    assert!(m.is_empty());
}

/// Values of every layout the entry and the node pool treat differently: zero-sized, more
/// strictly aligned than the pool's blocks (`u128`), larger than its largest block, and owning
/// heap memory. Each is stored in place first, then displaced into a node (retiring the first
/// value through its record), removed and cleared; every value is dropped exactly once.
#[test]
fn values_of_every_layout_live_in_place_then_in_nodes() {
    fn cycle<V: Clone + PartialEq + std::fmt::Debug + Send + Sync>(first: V, second: V) {
        let m: Map<u32, V> = map();
        for k in 0..3 {
            assert!(m.insert(k, first.clone()).is_none());
        }
        drop(m.iter()); // promotes: the values are read lock-free from the entries
        assert_eq!(*m.get(&0).unwrap(), first);
        assert_eq!(*m.insert(0, second.clone()).unwrap(), first); // first value displaced
        assert_eq!(*m.insert(0, first.clone()).unwrap(), second); // a node displaced
        assert_eq!(*m.remove(&1).unwrap(), first); // first value removed
        assert!(m.compare_and_swap(&2, &first, second.clone()).is_ok());
        assert_eq!(m.get_cloned(&2), Some(second));
        m.clear();
        assert!(m.is_empty());
    }
    cycle((), ());
    cycle(u128::MAX, 7u128);
    cycle([1u64; 40], [2u64; 40]);
    cycle(String::from("first"), String::from("second"));
    let (first, second) = (Arc::new(1u8), Arc::new(2u8));
    cycle(first.clone(), second.clone());
    assert_eq!(
        (Arc::strong_count(&first), Arc::strong_count(&second)),
        (1, 1),
        "every clone the map held was dropped once"
    );
}

// ---------------------------------------------------------------------------------------------
// The default floor of misses (`MIN_PROMOTION_MISSES`).

/// One read/dirty pair with the default floor.
fn map_with_floor() -> Map {
    one_pair().build()
}

#[test]
fn a_small_dirty_map_promotes_after_the_floor_of_misses() {
    let m = map_with_floor();
    m.insert(1, 1); // a dirty map of one key: Go would promote at the first miss
    for i in 1..MIN_PROMOTION_MISSES {
        assert_eq!(m.get(&1).as_deref(), Some(&1));
        assert_eq!((m.stats().misses, m.stats().promotions), (i, 0));
    }
    assert_eq!(m.get(&1).as_deref(), Some(&1));
    assert_eq!(
        m.stats(),
        Stats {
            len: 1,
            snapshot_len: 1,
            promotions: 1,
            dirty_rebuilds: 1,
            ..fresh_stats()
        }
    );
}

#[test]
fn a_dirty_map_larger_than_the_floor_promotes_by_go_s_rule() {
    let m = map_with_floor();
    let keys = 2 * MIN_PROMOTION_MISSES as u32;
    for k in 0..keys {
        m.insert(k, k);
    }
    for k in 0..keys - 1 {
        assert_eq!(m.get(&k).as_deref(), Some(&k));
    }
    assert_eq!(m.stats().promotions, 0);
    m.get(&0);
    assert_eq!(m.stats().promotions, 1, "len(dirty) misses promote");
}

#[test]
fn inserting_and_removing_new_keys_promotes_once_per_floor_of_misses() {
    // Go's SwapMostlyMisses and LoadAndDeleteCollision: each remove of a dirty-only key
    // counts a miss against a dirty map of about one key, which promoted every time.
    let m = map_with_floor();
    m.insert(u32::MAX, 0);
    let rounds = 10 * MIN_PROMOTION_MISSES as u32;
    for k in 0..rounds {
        m.insert(k, k);
        assert_eq!(m.remove(&k).as_deref(), Some(&k));
    }
    let stats = m.stats();
    assert_eq!(stats.promotions, 10, "{stats:?}");
    assert_eq!((stats.len, m.get_cloned(&u32::MAX)), (1, Some(0)));
}

#[test]
fn a_clone_keeps_the_floor_of_misses() {
    for floor in [0, MIN_PROMOTION_MISSES, 3] {
        let m: Map = DualMap::builder()
            .pairs(1)
            .min_promotion_misses(floor)
            .build();
        let copy = m.clone();
        copy.insert(1, 1);
        for _ in 0..floor.max(1) {
            copy.get(&1);
        }
        assert_eq!(copy.stats().promotions, 1, "floor {floor}");
    }
    let builder = DualMap::builder().min_promotion_misses(7);
    assert!(format!("{builder:?}").contains("min_promotion_misses: 7"));
}

/// A key whose `Eq` answers "not equal" while `LIES` is above zero (counting it down): a
/// logic error in user code, which must not make the map unsound. Every key hashes alike, so
/// every lookup of an absent key passes the miss filter and takes the lock.
#[derive(Debug)]
struct Lying(u32);

thread_local!(static LIES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

impl PartialEq for Lying {
    fn eq(&self, other: &Self) -> bool {
        let lies = LIES.get();
        if lies > 0 {
            LIES.set(lies - 1);
            return false;
        }
        self.0 == other.0
    }
}

impl Eq for Lying {}

impl Hash for Lying {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// A remove whose lock-free search of the read table is told "not equal" finds the key in the
/// dirty map under the lock, where the rebuild copied it: the entry is listed by the read
/// table too, and the dirty map owns the share that table's readers rely on, so it must not
/// be taken out (that share would go with the removed value's `Ref`, and the read table
/// would list a freed entry: Miri's use after free before the check). It is deleted in place,
/// as a key of the read table is.
#[test]
fn a_remove_misled_by_eq_never_takes_out_an_entry_the_read_table_lists() {
    let m: Map<Lying, u64> = map();
    for k in 1..5 {
        m.insert(Lying(k), (k * 10).into());
    }
    drop(m.iter()); // promotes: keys 1 to 4 in the read table
    m.insert(Lying(5), 50); // the rebuild: the dirty map takes over the read table's shares
    let before = m.stats();
    assert_eq!((before.snapshot_len, before.dirty_len), (4, Some(5)));
    // The lock-free search of the read table misses key 1; a remove's miss would not promote
    // (threshold 4), so a dirty-only key would be taken out.
    LIES.set(1);
    assert_eq!(m.remove(&Lying(1)).as_deref(), Some(&10));
    assert_eq!(LIES.get(), 0, "the lie was told");
    let after = m.stats();
    assert_eq!(
        (after.dirty_len, after.misses),
        (Some(5), 0),
        "not taken out"
    );
    for k in 6..20 {
        m.insert(Lying(k), k.into()); // new entries, perhaps in freed entries' memory
    }
    assert!(m.get(&Lying(1)).is_none());
    assert_eq!(m.get(&Lying(2)).as_deref(), Some(&20));
    let mut keys: Vec<u32> = m.iter().map(|(key, _)| key.0).collect();
    keys.sort_unstable();
    assert_eq!(keys, (2..20).collect::<Vec<_>>());
}

/// A key removed and added again in one cycle (taken out of the dirty map each time, so each
/// addition is a new key's) sets no new bit of the miss filter: it does not count toward the
/// filter's fill, so the filter never regrows for it (before, 5,000 rounds grew it to 16,384
/// keys through eight publications). Its hash is listed again each time, within the bound
/// the list's documentation gives (each round's remove counts a miss), and a regrowth sizes
/// the new filter for the distinct keys only.
#[test]
fn a_key_removed_and_added_again_does_not_grow_the_miss_filter() {
    let m = map_with_floor();
    let keys = if cfg!(miri) { 200 } else { 10_000 };
    let rounds = keys / 2;
    for k in 0..keys {
        m.insert(k, k);
    }
    drop(m.iter()); // promotes
    m.insert(keys, 0); // amends: a filter of the smallest size
    let before = m.stats();
    let capacity = m.pairs().at(0).filter_capacity();
    for i in 0..rounds {
        m.insert(keys + 1, i);
        assert_eq!(m.remove(&(keys + 1)).as_deref(), Some(&i));
    }
    let after = m.stats();
    assert_eq!(
        after.promotions, before.promotions,
        "misses below the threshold"
    );
    assert_eq!(m.pairs().at(0).filter_capacity(), capacity, "{after:?}");
    let (listed, filtered) = {
        let dirty = m.pairs().at(0).dirty.lock();
        (dirty.new_key_hashes.len(), dirty.filtered)
    };
    assert_eq!((listed, filtered), (rounds as usize + 1, 2));
    assert!(listed <= 1 + after.misses, "{after:?}");
    // Enough distinct new keys to regrow the filter: it is sized for the keys that set bits,
    // not for the duplicates (sized by the list, it went from 64 to 32,768 keys here).
    for k in 0..capacity as u32 {
        m.insert(2 * keys + k, k);
    }
    let regrown = m.pairs().at(0).filter_capacity();
    assert!(regrown > capacity && regrown <= 8 * capacity, "{regrown}");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a prefetch hint, no unsafe code: the 8,192-bucket table it needs takes Miri minutes"
)]
fn locked_sections_prefetch_the_dirty_table_as_it_grows_and_is_rebuilt() {
    let m: Map = one_pair().min_promotion_misses(1 << 30).build();
    let pair = m.pairs().at(0);
    assert_eq!(pair.prefetches_the_dirty_table(), None, "no dirty map yet");
    // From 8,192 buckets (3,585 keys) the table is large enough to prefetch; it doubles
    // twice more.
    let keys = 30_000;
    for key in 0..keys {
        m.insert(key, key);
        if key % 1_000 == 0 || key == keys - 1 {
            assert_eq!(
                pair.prefetches_the_dirty_table(),
                Some(true),
                "after key {key}"
            );
        }
    }
    // Iteration promotes the keys; the next new key rebuilds the dirty map from them.
    assert_eq!(m.iter().count(), keys as usize);
    assert_eq!(pair.prefetches_the_dirty_table(), None, "promoted");
    m.insert(keys, 0);
    assert_eq!(pair.prefetches_the_dirty_table(), Some(true), "rebuilt");
    assert_eq!(m.len(), keys as usize + 1);
}
