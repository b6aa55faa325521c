//! loom models of the races of the read/dirty design.
//!
//! Run with
//! `RUSTFLAGS="--cfg dualmap_loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom`.
//!
//! Under `cfg(dualmap_loom)` every primitive of the crate (`Arc`, the atomics, the map mutex and the
//! snapshot cell) is loom's (see `src/sync.rs`), so loom explores every interleaving of the
//! map's synchronisation points up to the preemption bound. Each model uses 2-3 threads and
//! very few operations, a hasher that gives every key the same hash (`SameHash`), and forces the promotions it needs: with `n`
//! entries in the dirty map, `n` counted misses (`get` of an absent key while amended)
//! promote it, and `iter()` promotes an amended map at once.
//!
//! The preemption bound of each model is the constant passed to `check`; setting
//! `LOOM_MAX_PREEMPTIONS` overrides it for every model.
#![cfg(dualmap_loom)]

use dualmap::{DualMap, GetOrInsert, RETIRED_PER_EPOCH};
use loom::sync::Arc;
use loom::thread;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

type Map<V> = DualMap<u32, V, SameHash>;

/// One read/dirty pair with Go's promotion rule: Go's `sync.Map` (every model but the
/// last section's), so that a model's few misses reach promotions.
fn new_map<V>() -> Map<V> {
    DualMap::builder()
        .pairs(1)
        .min_promotion_misses(0)
        .hasher(SameHash)
        .build()
}

/// Hashes every key alike. Once the map is amended, its miss filter holds that one hash, so
/// every lookup of an absent key takes the lock and counts a miss, exactly as Go's `Load`
/// does: the models drive promotions through misses without any test hook in the map. The
/// tables stay correct, since they compare keys.
#[derive(Clone, Copy)]
struct SameHash;

impl BuildHasher for SameHash {
    type Hasher = OneHash;
    fn build_hasher(&self) -> OneHash {
        OneHash
    }
}

struct OneHash;

/// The one hash of `SameHash`.
const ONE_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for OneHash {
    fn finish(&self) -> u64 {
        ONE_HASH
    }
    fn write(&mut self, _: &[u8]) {}
}

/// Runs `model` under loom with `bound` preemptions (unless `LOOM_MAX_PREEMPTIONS` is set)
/// and prints how long it took and how many executions loom explored.
fn check(name: &str, bound: usize, model: impl Fn() + Sync + Send + 'static) {
    check_with_branches(name, bound, loom::model::Builder::new().max_branches, model);
}

/// As `check`, allowing `max_branches` scheduling points per execution (loom's default is
/// 1,000; single-threaded setup counts too).
fn check_with_branches(
    name: &str,
    bound: usize,
    max_branches: usize,
    model: impl Fn() + Sync + Send + 'static,
) {
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    let mut builder = loom::model::Builder::new();
    builder.max_branches = builder.max_branches.max(max_branches);
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    let bound = builder.preemption_bound;
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Relaxed);
        model();
    });
    eprintln!(
        "loom model {name}: preemption bound {bound:?}, {} executions, {:.2?}",
        executions.load(Relaxed),
        start.elapsed()
    );
}

/// Promotes an amended map at once (`iter` does) and checks that it did.
fn promote<V>(map: &Map<V>) {
    drop(map.iter());
    assert!(!map.stats().amended);
}

/// The map's contents through `iter`, after checking that no key is visited twice.
fn contents<V: Copy>(map: &Map<V>) -> BTreeMap<u32, V> {
    let mut seen = BTreeMap::new();
    for (key, value) in map.iter() {
        assert!(
            seen.insert(*key, *value).is_none(),
            "key {} visited twice",
            *key
        );
    }
    seen
}

/// Checks that `len`, `iter` and `get` all agree with `expected`.
fn assert_contents(map: &Map<u32>, expected: &[(u32, u32)]) {
    let expected: BTreeMap<u32, u32> = expected.iter().copied().collect();
    assert_eq!(contents(map), expected);
    assert_eq!(map.len(), expected.len());
    for key in 0..8 {
        assert_eq!(
            map.get_cloned(&key),
            expected.get(&key).copied(),
            "get({key})"
        );
    }
}

fn get(map: &Map<u32>, key: u32) -> Option<u32> {
    map.get(&key).map(|value| *value)
}

fn insert(map: &Map<u32>, key: u32, value: u32) -> Option<u32> {
    map.insert(key, value).map(|previous| *previous)
}

fn remove(map: &Map<u32>, key: u32) -> Option<u32> {
    map.remove(&key).map(|previous| *previous)
}

/// Key 99 (and 98, 97) are never inserted.
const ABSENT: u32 = 99;

/// A lookup of the absent `key`: it counts a miss while the map is amended, as in Go (see
/// [`SameHash`]).
fn missed<V>(map: &Map<V>, key: u32) -> bool {
    map.get(&key).is_none()
}

// ---------------------------------------------------------------------------------------
// 1. store vs promotion
// ---------------------------------------------------------------------------------------

/// A lock-free overwrite of a snapshot key and a locked store of a dirty-only key race with a
/// promotion triggered by another thread's miss; afterwards both stored values are visible.
#[test]
fn store_vs_promotion() {
    check("store_vs_promotion", 5, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        promote(&map); // read {1}
        map.insert(2, 20); // dirty rebuild: dirty {1, 2}, amended
        assert!(missed(&map, ABSENT)); // misses = 1 of 2
        assert!(map.stats().amended);

        let storer = {
            let map = map.clone();
            thread::spawn(move || {
                assert_eq!(insert(&map, 1, 11), Some(10)); // key of the snapshot: lock-free
                assert_eq!(insert(&map, 2, 21), Some(20)); // dirty-only until promoted
            })
        };
        let promoter = {
            let map = map.clone();
            thread::spawn(move || {
                assert!(missed(&map, ABSENT - 1)); // the second miss promotes
            })
        };
        storer.join().unwrap();
        promoter.join().unwrap();

        let stats = map.stats();
        assert_eq!(stats.promotions, 2);
        assert!(!stats.amended);
        assert_eq!(stats.snapshot_len, 2);
        assert_contents(&map, &[(1, 11), (2, 21)]);
    });
}

/// The same with a dirty-only key that one thread overwrites while the other reads it: both
/// count a miss (an overwrite of a dirty-only key does, so that it is not stranded behind the
/// lock, Go's W6), and whichever counts first promotes. Exactly one promotion, whatever the
/// interleaving, and the overwrite is never lost: a promotion by the storer's own miss
/// carries the value it just stored.
#[test]
fn store_of_dirty_key_vs_promotion_by_get() {
    check("store_of_dirty_key_vs_promotion_by_get", 5, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10); // dirty {1}, amended: one miss promotes

        let storer = {
            let map = map.clone();
            thread::spawn(move || assert_eq!(insert(&map, 1, 11), Some(10)))
        };
        let reader = {
            let map = map.clone();
            thread::spawn(move || {
                let seen = get(&map, 1);
                assert!(seen == Some(10) || seen == Some(11), "{seen:?}");
            })
        };
        storer.join().unwrap();
        reader.join().unwrap();

        let stats = map.stats();
        assert_eq!((stats.amended, stats.promotions), (false, 1), "{stats:?}");
        assert_contents(&map, &[(1, 11)]);
    });
}

// ---------------------------------------------------------------------------------------
// 2. store into an expunged entry vs dirty rebuild
// ---------------------------------------------------------------------------------------

/// Key 1 is a tombstone of the read snapshot. One thread inserts key 2, whose dirty rebuild
/// expunges the tombstone; the other stores into key 1, either before the expunge (the
/// rebuild then keeps the entry) or after it (the store unexpunges under the lock).
#[test]
fn store_into_expunged_vs_dirty_rebuild() {
    check("store_into_expunged_vs_dirty_rebuild", 5, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        promote(&map);
        assert_eq!(remove(&map, 1), Some(10)); // tombstone in read, no dirty map
        let stats = map.stats();
        assert_eq!((stats.snapshot_len, stats.dirty_len), (1, None));

        let inserter = {
            let map = map.clone();
            thread::spawn(move || assert_eq!(insert(&map, 2, 20), None))
        };
        let storer = {
            let map = map.clone();
            thread::spawn(move || assert_eq!(insert(&map, 1, 11), None))
        };
        inserter.join().unwrap();
        storer.join().unwrap();

        assert_eq!(get(&map, 1), Some(11));
        assert_eq!(get(&map, 2), Some(20));
        assert_eq!(map.len(), 2);
        let stats = map.stats();
        assert!(stats.amended);
        assert_eq!(stats.dirty_len, Some(2), "the dirty map holds both keys");

        // Promote through counted misses, then check both keys survived it.
        while map.stats().amended {
            assert!(missed(&map, ABSENT));
        }
        assert_eq!(map.stats().snapshot_len, 2);
        assert_contents(&map, &[(1, 11), (2, 20)]);
    });
}

/// Key 1 is live in the read snapshot, and no key is a tombstone, so the live-key count lets
/// a dirty rebuild skip its expunge pass. One thread removes key 1 lock-free (the slot, then
/// the count); the other inserts key 2, whose rebuild reads the count under the lock before or
/// after the removal's update, and so expunges key 1's tombstone or keeps it in the dirty map
/// as an ordinary tombstone. Either way key 1 is absent, the promotion after keeps it so, and
/// the next rebuild and a new store of key 1 see a consistent map.
#[test]
fn remove_vs_dirty_rebuild_that_may_skip_expunging() {
    check("remove_vs_dirty_rebuild_that_may_skip_expunging", 5, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        promote(&map);

        let remover = {
            let map = map.clone();
            thread::spawn(move || assert_eq!(remove(&map, 1), Some(10)))
        };
        let inserter = {
            let map = map.clone();
            thread::spawn(move || assert_eq!(insert(&map, 2, 20), None))
        };
        remover.join().unwrap();
        inserter.join().unwrap();

        assert_contents(&map, &[(2, 20)]);
        promote(&map);
        assert_eq!(insert(&map, 3, 30), None); // the next rebuild
        assert_contents(&map, &[(2, 20), (3, 30)]);
        assert_eq!(insert(&map, 1, 11), None);
        assert_contents(&map, &[(1, 11), (2, 20), (3, 30)]);
    });
}

// ---------------------------------------------------------------------------------------
// 3. concurrent get_or_insert of the same absent key
// ---------------------------------------------------------------------------------------

fn get_or_insert_race(setup: fn(&Map<u32>)) {
    let map = Arc::new(new_map::<u32>());
    setup(&map);
    let spawn = |value: u32| {
        let map = map.clone();
        thread::spawn(move || match map.get_or_insert(1, value) {
            GetOrInsert::Inserted(now) => {
                assert_eq!(*now, value);
                (true, value)
            }
            GetOrInsert::Loaded(now) => (false, *now),
        })
    };
    let a = spawn(100);
    let b = spawn(200);
    let a = a.join().unwrap();
    let b = b.join().unwrap();
    assert!(a.0 ^ b.0, "exactly one inserts: {a:?} {b:?}");
    assert_eq!(a.1, b.1, "both see the inserted value");
    assert_eq!(get(&map, 1), Some(a.1));
    let mut expected = vec![(1, a.1)];
    if map.get(&0).is_some() {
        expected.push((0, 0));
    }
    assert_contents(&map, &expected);
}

/// Both threads take the locked path on an empty map; one inserts a new key (rebuild and
/// amended publication), the other must load it.
#[test]
fn get_or_insert_same_absent_key() {
    check("get_or_insert_same_absent_key", 5, || {
        get_or_insert_race(|_| {});
    });
}

/// The key is a tombstone of the read snapshot: both threads race lock-free to CAS the slot
/// from NIL to their value.
#[test]
fn get_or_insert_same_tombstoned_key() {
    check("get_or_insert_same_tombstoned_key", 5, || {
        get_or_insert_race(|map| {
            map.insert(1, 1);
            promote(map);
            map.remove(&1);
        });
    });
}

/// The key is an expunged entry of the read snapshot (a rebuild ran after it was removed):
/// both threads fall back to the locked path, where the first unexpunges it.
#[test]
fn get_or_insert_same_expunged_key() {
    check("get_or_insert_same_expunged_key", 5, || {
        get_or_insert_race(|map| {
            map.insert(1, 1);
            promote(map);
            map.remove(&1);
            map.insert(0, 0); // rebuild expunges key 1
            assert_eq!(map.stats().dirty_len, Some(1));
        });
    });
}

// ---------------------------------------------------------------------------------------
// 4. remove vs store on the same key
// ---------------------------------------------------------------------------------------

/// Checks the outcome of `remove(1)` racing with `insert(1, 11)` on a map where key 1 held 10.
fn assert_remove_store_outcome(map: &Map<u32>, removed: Option<u32>, replaced: Option<u32>) {
    match (removed, replaced) {
        // remove, then store
        (Some(10), None) => assert_contents(map, &[(1, 11)]),
        // store, then remove
        (Some(11), Some(10)) => assert_contents(map, &[]),
        outcome => panic!("not linearizable: (removed, replaced) = {outcome:?}"),
    }
}

/// Races `remove(1)` with `insert(1, 11)` on a map that `setup` made (key 1 holding 10), and
/// hands the map and both results to `after`.
fn remove_vs_store(setup: impl Fn(&Map<u32>), after: impl Fn(&Map<u32>, Option<u32>, Option<u32>)) {
    let map = Arc::new(new_map::<u32>());
    setup(&map);
    let remover = {
        let map = map.clone();
        thread::spawn(move || remove(&map, 1))
    };
    let storer = {
        let map = map.clone();
        thread::spawn(move || insert(&map, 1, 11))
    };
    let removed = remover.join().unwrap();
    let replaced = storer.join().unwrap();
    after(&map, removed, replaced);
}

/// Key 1 is in the read snapshot: both operations are lock-free CASes on its slot.
#[test]
fn remove_vs_store_snapshot_key() {
    check("remove_vs_store_snapshot_key", 5, || {
        let setup = |map: &Map<u32>| {
            map.insert(1, 10);
            promote(map);
        };
        remove_vs_store(setup, assert_remove_store_outcome);
    });
}

/// Key 1 is only in the dirty map, alone: the remove's miss promotes it first (the threshold
/// leaves out the key being removed), so the remove deletes a snapshot key; the store goes
/// through the lock or, after the promotion, lock-free.
#[test]
fn remove_vs_store_dirty_key() {
    check("remove_vs_store_dirty_key", 5, || {
        let setup = |map: &Map<u32>| drop(map.insert(1, 10)); // dirty {1}
        remove_vs_store(setup, |map, removed, replaced| {
            assert_remove_store_outcome(map, removed, replaced);
            // And once more after a forced promotion.
            drop(map.iter());
            assert_remove_store_outcome(map, removed, replaced);
        });
    });
}

/// Keys 2, 3 and 4 beside key 1 in the dirty map, with key 1 holding `value`: a remove of key
/// 1 counts it as leaving (threshold 3) and one other miss before it does not reach that, so
/// the remove always takes key 1 out of the dirty map rather than promoting it.
fn key_1_dirty_beside_three(map: &Map<u32>, value: u32) {
    map.insert(1, value);
    for key in 2..5 {
        map.insert(key, key * 10);
    }
    assert_eq!(map.stats().dirty_len, Some(4));
}

/// Checks that keys 2, 3 and 4 are as `key_1_dirty_beside_three` left them, and key 1 holds
/// `key_1`.
fn assert_beside_three(map: &Map<u32>, key_1: Option<u32>) {
    let mut expected = vec![(2, 20), (3, 30), (4, 40)];
    expected.extend(key_1.map(|value| (1, value)));
    assert_contents(map, &expected);
}

/// A remove takes dirty-only key 1 out of the dirty map (no promotion) while a store of the
/// key either refills it under the lock first, or finds it gone and makes a new entry: no
/// store is lost, and the taken-out entry is freed once the remove lets go of it.
#[test]
fn remove_takes_a_dirty_only_key_out_vs_store() {
    check("remove_takes_a_dirty_only_key_out_vs_store", 4, || {
        let setup = |map: &Map<u32>| key_1_dirty_beside_three(map, 10);
        remove_vs_store(setup, |map, removed, replaced| {
            assert_eq!(map.stats().promotions, 0, "the take-out path ran");
            match (removed, replaced) {
                (Some(10), None) => assert_beside_three(map, Some(11)), // remove, then store
                (Some(11), Some(10)) => assert_beside_three(map, None), // store, then remove
                outcome => panic!("not linearizable: (removed, replaced) = {outcome:?}"),
            }
        });
    });
}

/// A compare-and-swap of dirty-only key 1 locates the entry under the lock and swaps outside
/// it, while a remove takes the entry out of the dirty map and deletes its value after
/// unlocking: either the swap comes first and the remove returns its value, or it fails on
/// the deleted slot. Key 1 is absent afterwards either way.
#[test]
fn remove_takes_a_dirty_only_key_out_vs_compare_and_swap() {
    check(
        "remove_takes_a_dirty_only_key_out_vs_compare_and_swap",
        4,
        || {
            cas_vs_remove(
                |map| key_1_dirty_beside_three(map, 0),
                |map| {
                    assert_eq!(map.stats().promotions, 0, "the take-out path ran");
                    assert_beside_three(map, None);
                },
            );
        },
    );
}

/// A remove takes dirty-only key 1 out of the dirty map while an `update_or_insert_with` may
/// hold its entry, found under the lock: the update either comes first (and the remove
/// returns its value) or finds the entry deleted and inserts the key anew, as a new entry,
/// which no remove took out.
#[test]
fn remove_takes_a_dirty_only_key_out_vs_update_or_insert() {
    check(
        "remove_takes_a_dirty_only_key_out_vs_update_or_insert",
        4,
        || {
            let setup = |map: &Map<u32>| key_1_dirty_beside_three(map, 0);
            update_or_insert_vs_remove(setup, assert_beside_three);
        },
    );
}

/// A remove takes dirty-only key 1 out of the dirty map while a compare-and-remove of it
/// counts a tombstone there (it deletes after unlocking): exactly one of them deletes the
/// value, and the tombstone count, now above the real number, only brings the promotion
/// sooner: the key comes back, and misses still promote.
#[test]
fn remove_takes_a_dirty_only_key_out_vs_compare_and_remove() {
    check(
        "remove_takes_a_dirty_only_key_out_vs_compare_and_remove",
        4,
        || {
            let map = Arc::new(new_map::<u32>());
            key_1_dirty_beside_three(&map, 10);
            let comparer = {
                let map = map.clone();
                thread::spawn(move || map.compare_and_remove(&1, &10))
            };
            let remover = {
                let map = map.clone();
                thread::spawn(move || remove(&map, 1))
            };
            let compared = comparer.join().unwrap();
            let removed = remover.join().unwrap();
            match (compared, removed) {
                (true, None) | (false, Some(10)) => {}
                outcome => panic!("not linearizable: (compared, removed) = {outcome:?}"),
            }
            assert_beside_three(&map, None);
            assert_eq!(insert(&map, 1, 11), None);
            for _ in 0..8 {
                missed(&map, ABSENT);
            }
            assert!(!map.stats().amended);
            assert_beside_three(&map, Some(11));
        },
    );
}

// ---------------------------------------------------------------------------------------
// 5. compare_and_swap races
// ---------------------------------------------------------------------------------------

/// Key 1 with value 0 in the read snapshot.
fn key_1_in_snapshot(map: &Map<u32>) {
    map.insert(1, 0);
    promote(map);
}

/// Key 1 with value 0 only in the dirty map.
fn key_1_only_dirty(map: &Map<u32>) {
    map.insert(1, 0);
}

fn cas_vs_cas(setup: fn(&Map<u32>)) {
    let map = Arc::new(new_map::<u32>());
    setup(&map);
    let spawn = |new: u32| {
        let map = map.clone();
        thread::spawn(move || map.compare_and_swap(&1, &0, new).is_ok())
    };
    let a = spawn(100);
    let b = spawn(200);
    let a = a.join().unwrap();
    let b = b.join().unwrap();
    assert!(a ^ b, "exactly one CAS succeeds: {a} {b}");
    let winner = if a { 100 } else { 200 };
    let mut expected = vec![(1, winner)];
    if map.get(&0).is_some() {
        expected.push((0, 0));
    }
    assert_contents(&map, &expected);
}

/// Two lock-free CASes of a snapshot key from the same expected value.
#[test]
fn cas_vs_cas_snapshot_key() {
    check("cas_vs_cas_snapshot_key", 5, || {
        cas_vs_cas(key_1_in_snapshot);
    });
}

/// Two CASes of a dirty-only key: both locate it under the lock and CAS outside it; the
/// first one's miss (found in dirty) promotes the one-entry dirty map.
#[test]
fn cas_vs_cas_dirty_key() {
    check("cas_vs_cas_dirty_key", 5, || {
        cas_vs_cas(key_1_only_dirty);
    });
}

/// Races `compare_and_swap(1, 0 -> 1)` with `remove(1)` on a map that `setup` made (key 1
/// holding 0): either the CAS wins and the remove takes its value, or the remove wins and
/// the CAS fails. Then `after` checks the map.
fn cas_vs_remove(setup: impl Fn(&Map<u32>), after: impl Fn(&Map<u32>)) {
    let map = Arc::new(new_map::<u32>());
    setup(&map);
    let swapper = {
        let map = map.clone();
        thread::spawn(move || map.compare_and_swap(&1, &0, 1).is_ok())
    };
    let remover = {
        let map = map.clone();
        thread::spawn(move || remove(&map, 1))
    };
    let swapped = swapper.join().unwrap();
    let removed = remover.join().unwrap();
    match (swapped, removed) {
        (true, Some(1)) | (false, Some(0)) => {}
        outcome => panic!("not linearizable: (swapped, removed) = {outcome:?}"),
    }
    after(&map);
}

/// Key 1 is absent, and nothing else changed (key 0 is there if a setup put it there).
fn key_1_removed(map: &Map<u32>) {
    let mut expected = vec![];
    if map.get(&0).is_some() {
        expected.push((0, 0));
    }
    assert_contents(map, &expected);
}

/// CAS vs remove on a snapshot key: either the CAS wins and the remove takes its value, or
/// the remove wins and the CAS fails. The key is absent afterwards either way.
#[test]
fn cas_vs_remove_snapshot_key() {
    check("cas_vs_remove_snapshot_key", 5, || {
        cas_vs_remove(key_1_in_snapshot, key_1_removed);
    });
}

/// CAS vs remove on a dirty-only key alone in the dirty map: either's miss promotes it (the
/// remove's counts the key as leaving), so the remove deletes it from the new read table
/// while the CAS may already hold it; `remove_takes_a_dirty_only_key_out_vs_compare_and_swap`
/// covers the take-out.
#[test]
fn cas_vs_remove_dirty_key() {
    check("cas_vs_remove_dirty_key", 5, || {
        cas_vs_remove(key_1_only_dirty, key_1_removed);
    });
}

// ---------------------------------------------------------------------------------------
// 5b. update races
// ---------------------------------------------------------------------------------------

fn update_vs_update(setup: fn(&Map<u32>)) {
    let map = Arc::new(new_map::<u32>());
    setup(&map);
    let spawn = |add: u32| {
        let map = map.clone();
        thread::spawn(move || {
            *map.update(&1, |value| value + add)
                .expect("key 1 is present")
        })
    };
    let a = spawn(10);
    let b = spawn(100);
    let a = a.join().unwrap();
    let b = b.join().unwrap();
    // The second update saw the first one's value: no update is lost.
    assert!(
        matches!((a, b), (10, 110) | (110, 100)),
        "lost update: {a} {b}"
    );
    assert_contents(&map, &[(1, 110)]);
}

/// Two lock-free updates of a snapshot key: compare-and-swap loops on one slot.
#[test]
fn update_vs_update_snapshot_key() {
    check("update_vs_update_snapshot_key", 4, || {
        update_vs_update(key_1_in_snapshot);
    });
}

/// Two updates of a dirty-only key: both locate it under the lock and update it after
/// unlocking; the first one's miss (found in dirty) promotes the one-entry dirty map.
#[test]
fn update_vs_update_dirty_key() {
    check("update_vs_update_dirty_key", 4, || {
        update_vs_update(key_1_only_dirty);
    });
}

/// Races `update_or_insert_with(1, +10, 5)` with `remove(1)` on a map that `setup` made (key
/// 1 holding 0): the update then the remove, or the remove then an insert. Then `contents`
/// checks the map, given key 1's value.
fn update_or_insert_vs_remove(
    setup: impl Fn(&Map<u32>),
    contents: impl Fn(&Map<u32>, Option<u32>),
) {
    let map = Arc::new(new_map::<u32>());
    setup(&map);
    let counter = {
        let map = map.clone();
        thread::spawn(move || *map.update_or_insert_with(1, |value| value + 10, || 5))
    };
    let remover = {
        let map = map.clone();
        thread::spawn(move || remove(&map, 1))
    };
    let counted = counter.join().unwrap();
    let removed = remover.join().unwrap();
    let after = get(&map, 1);
    match (counted, removed, after) {
        (10, Some(10), None) | (5, Some(0), Some(5)) => {}
        outcome => panic!("not linearizable: (counted, removed, after) = {outcome:?}"),
    }
    contents(&map, after);
}

/// Key 1 holds `after` and no other key is present.
fn key_1_alone(map: &Map<u32>, after: Option<u32>) {
    let expected: Vec<_> = after.map(|value| (1, value)).into_iter().collect();
    assert_contents(map, &expected);
}

/// An update-or-insert races a remove of a snapshot key: if the remove wins, the update finds
/// a tombstone and inserts through the lock.
#[test]
fn update_or_insert_vs_remove_snapshot_key() {
    check("update_or_insert_vs_remove_snapshot_key", 4, || {
        update_or_insert_vs_remove(key_1_in_snapshot, key_1_alone);
    });
}

/// The same on a dirty-only key alone in the dirty map: the first miss promotes it (the
/// remove's counts the key as leaving), so the remove deletes it from the new read table
/// while the update may hold it, found under the lock, and an insert after that refills it.
#[test]
fn update_or_insert_vs_remove_dirty_key() {
    check("update_or_insert_vs_remove_dirty_key", 4, || {
        update_or_insert_vs_remove(key_1_only_dirty, key_1_alone);
    });
}

// ---------------------------------------------------------------------------------------
// 6. clear vs store
// ---------------------------------------------------------------------------------------

/// A view taken before a `clear` shows none of the cleared keys once the `clear` has
/// returned, although their entries keep their values: the clearer marks the generation
/// cleared before publishing the empty table, and the view checks the mark before it shows a
/// key. Once it reads absent, the key stays absent in the view.
#[test]
fn view_vs_clear() {
    check("view_vs_clear", 4, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        map.insert(2, 20);
        promote(&map);
        let cleared = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (map, cleared) = (map.clone(), cleared.clone());
            thread::spawn(move || {
                let view = map.view();
                let mut gone = false;
                for key in [1, 2, 1] {
                    let done = cleared.load(std::sync::atomic::Ordering::SeqCst);
                    let value = view.get(&key).copied();
                    assert!(
                        value.is_none() || !(done || gone),
                        "key {key} after the clear"
                    );
                    if let Some(value) = value {
                        assert_eq!(value, key * 10);
                    }
                    gone |= value.is_none();
                }
            })
        };
        map.clear();
        cleared.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.join().unwrap();
        assert_contents(&map, &[]);
    });
}

/// A clear races with a lock-free overwrite of a snapshot key and then the insert of a new
/// key. The final contents must be one of the three linearizations, and `len` must agree
/// with `iter`.
#[test]
fn clear_vs_store() {
    check("clear_vs_store", 5, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        promote(&map);

        let clearer = {
            let map = map.clone();
            thread::spawn(move || map.clear())
        };
        let storer = {
            let map = map.clone();
            thread::spawn(move || {
                let replaced = insert(&map, 1, 11);
                assert!(replaced == Some(10) || replaced.is_none(), "{replaced:?}");
                assert_eq!(insert(&map, 2, 20), None);
                replaced
            })
        };
        clearer.join().unwrap();
        let replaced = storer.join().unwrap();

        let seen = contents(&map);
        assert_eq!(map.len(), seen.len(), "len agrees with iter: {seen:?}");
        let seen: Vec<_> = seen.into_iter().collect();
        match seen.as_slice() {
            // clear before both stores: the overwrite found key 1 absent
            [(1, 11), (2, 20)] => assert_eq!(replaced, None),
            // clear between the stores
            [(2, 20)] => assert_eq!(replaced, Some(10)),
            // clear after both
            [] => assert_eq!(replaced, Some(10)),
            _ => panic!("not linearizable: {seen:?}, insert(1) returned {replaced:?}"),
        }
        for key in [1, 2] {
            assert_eq!(
                get(&map, key).is_some(),
                seen.iter().any(|&(k, _)| k == key)
            );
        }
    });
}

/// A clear races with a store to a dirty-only key (the map is amended): the store goes
/// through the lock and finds the key in the dirty map, or, after the clear, inserts it anew.
#[test]
fn clear_vs_store_amended() {
    check("clear_vs_store_amended", 5, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10); // dirty {1}

        let clearer = {
            let map = map.clone();
            thread::spawn(move || map.clear())
        };
        let storer = {
            let map = map.clone();
            thread::spawn(move || insert(&map, 1, 11))
        };
        clearer.join().unwrap();
        let replaced = storer.join().unwrap();

        let seen: Vec<_> = contents(&map).into_iter().collect();
        assert_eq!(map.len(), seen.len(), "len agrees with iter: {seen:?}");
        match seen.as_slice() {
            [(1, 11)] => assert_eq!(replaced, None), // clear, then store
            [] => assert_eq!(replaced, Some(10)),    // store, then clear
            _ => panic!("not linearizable: {seen:?}, insert returned {replaced:?}"),
        }
    });
}

/// After a clear in place the pair is marked empty, and a `clear` that reads the mark returns
/// without locking. Each thread inserts a new key and then clears: whichever clear comes last
/// runs after both inserts, so the map ends empty, which fails if a new key can be put while
/// the mark stays set. A third thread, told (through an atomic) that key 1's insert has
/// returned, clears too and must not find key 1 afterwards.
#[test]
fn clear_skipping_an_emptied_pair_vs_inserts() {
    check("clear_skipping_an_emptied_pair_vs_inserts", 3, || {
        let map = Arc::new(DualMap::builder().pairs(1).hasher(SameHash).build());
        map.insert(9, 90);
        map.clear(); // in place: the pair is marked empty
        assert!(map.stats().amended);
        let inserted = Arc::new(loom::sync::atomic::AtomicBool::new(false));

        let a = {
            let (map, inserted) = (map.clone(), inserted.clone());
            thread::spawn(move || {
                assert_eq!(insert(&map, 1, 10), None);
                inserted.store(true, std::sync::atomic::Ordering::Release);
                map.clear();
            })
        };
        let b = {
            let map = map.clone();
            thread::spawn(move || {
                insert(&map, 2, 20);
                map.clear();
            })
        };
        if inserted.load(std::sync::atomic::Ordering::Acquire) {
            map.clear();
            assert_eq!(get(&map, 1), None, "key 1 survived a later clear");
        }
        a.join().unwrap();
        b.join().unwrap();
        assert_contents(&map, &[]);
    });
}

// ---------------------------------------------------------------------------------------
// 7. iteration vs promotion / insert
// ---------------------------------------------------------------------------------------

/// Keys 1 and 2 are in the read snapshot, key 3 only in the dirty map (amended, two misses of
/// three counted). An iterator (which promotes the amended map) runs while another thread
/// misses (the third miss: it promotes, unless the iterator did first) and inserts key 4 (a
/// dirty rebuild and an amended publication). Keys 1-3 are visited exactly once each; key 4
/// at most once.
#[test]
fn iteration_vs_insert_and_promotion() {
    check("iteration_vs_insert_and_promotion", 5, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        map.insert(2, 20);
        promote(&map);
        map.insert(3, 30); // rebuild: dirty {1, 2, 3}
        assert!(missed(&map, ABSENT));
        assert!(missed(&map, ABSENT));
        let stats = map.stats();
        assert!(stats.amended);
        assert_eq!(stats.misses, 2);

        let iterator = {
            let map = map.clone();
            thread::spawn(move || {
                let mut visits: Vec<u32> = map.keys().map(|key| *key).collect();
                visits.sort_unstable();
                visits
            })
        };
        let writer = {
            let map = map.clone();
            thread::spawn(move || {
                assert!(missed(&map, ABSENT));
                assert_eq!(insert(&map, 4, 40), None);
            })
        };
        let visits = iterator.join().unwrap();
        writer.join().unwrap();

        assert!(
            visits == [1, 2, 3] || visits == [1, 2, 3, 4],
            "every key present at the start exactly once: {visits:?}"
        );
        // Either one of the two threads promoted and key 4 went into a rebuilt dirty map
        // after the iterator pinned its snapshot, or the writer promoted, inserted key 4, and
        // the iterator promoted again and visited it.
        let stats = map.stats();
        if visits.contains(&4) {
            assert_eq!((stats.promotions, stats.amended), (3, false));
        } else {
            assert_eq!((stats.promotions, stats.amended), (2, true));
        }
        assert_contents(&map, &[(1, 10), (2, 20), (3, 30), (4, 40)]);
    });
}

/// An iterator over a non-amended map runs while another thread inserts a new key (a dirty
/// rebuild and an amended publication; an iterator that starts after it promotes) and
/// misses (counted under the lock while amended).
#[test]
fn iteration_vs_rebuild_and_promotion() {
    check("iteration_vs_rebuild_and_promotion", 5, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        map.insert(2, 20);
        promote(&map);

        let iterator = {
            let map = map.clone();
            thread::spawn(move || {
                let mut visits: Vec<(u32, u32)> =
                    map.iter().map(|(key, value)| (*key, *value)).collect();
                visits.sort_unstable();
                visits
            })
        };
        let writer = {
            let map = map.clone();
            thread::spawn(move || {
                assert_eq!(insert(&map, 3, 30), None);
                assert!(missed(&map, ABSENT)); // miss 1 of 3
            })
        };
        let visits = iterator.join().unwrap();
        writer.join().unwrap();

        assert!(
            visits == [(1, 10), (2, 20)] || visits == [(1, 10), (2, 20), (3, 30)],
            "every key present at the start exactly once: {visits:?}"
        );
        assert_contents(&map, &[(1, 10), (2, 20), (3, 30)]);
    });
}

// ---------------------------------------------------------------------------------------
// 8. reclamation
// ---------------------------------------------------------------------------------------

/// How many tracked values one model may create.
const TRACKED: usize = 80;
/// What a dropped value's id is overwritten with, so that a read through a dangling `Ref`
/// (before the allocator reuses the memory) shows an id no value has.
const POISON: u32 = 0xDEAD_BEEF;

#[derive(Default)]
struct TrackState {
    /// How many readers are reading value `id` through a `Ref` right now.
    held: Vec<u32>,
    /// How many times value `id` was dropped.
    drops: Vec<u32>,
    /// How many values were created.
    created: usize,
}

/// Records, for every value of one model, whether a reader holds it and whether it was
/// dropped; every check runs under a loom mutex, so loom orders it against the others.
#[derive(Default)]
struct Tracker(loom::sync::Mutex<TrackState>);

/// A new tracked value with the next id.
fn tracked(tracker: &Arc<Tracker>) -> Tracked {
    let mut state = tracker.0.lock().unwrap();
    let id = state.created;
    assert!(id < TRACKED);
    state.created += 1;
    state.held.push(0);
    state.drops.push(0);
    Tracked {
        id: id as u32,
        tracker: tracker.clone(),
    }
}

impl Tracker {
    /// Called by a reader that read `id` through a `Ref` it still holds.
    fn hold(&self, id: u32) {
        let mut state = self.0.lock().unwrap();
        assert!(
            (id as usize) < state.created,
            "read a freed value (id {id:#x})"
        );
        assert_eq!(
            state.drops[id as usize], 0,
            "value {id} read after it was dropped"
        );
        state.held[id as usize] += 1;
    }

    /// Called by the reader just before it drops its `Ref`.
    fn release(&self, id: u32) {
        self.0.lock().unwrap().held[id as usize] -= 1;
    }

    fn assert_all_dropped_once(&self) {
        let state = self.0.lock().unwrap();
        for id in 0..state.created {
            assert_eq!(
                state.drops[id], 1,
                "value {id} dropped {} times",
                state.drops[id]
            );
            assert_eq!(state.held[id], 0);
        }
    }
}

/// A value that records its drop and checks that no reader holds it then.
struct Tracked {
    id: u32,
    tracker: Arc<Tracker>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let id = self.id as usize;
        {
            let mut state = self.tracker.0.lock().unwrap();
            assert!(id < state.created, "dropped a freed value (id {id:#x})");
            assert_eq!(
                state.held[id], 0,
                "value {id} dropped while a reader holds it"
            );
            state.drops[id] += 1;
            assert_eq!(state.drops[id], 1, "value {id} dropped twice");
        }
        // SAFETY: `self.id` is a valid, exclusive place; volatile so the store is not elided.
        unsafe { std::ptr::write_volatile(&mut self.id, POISON) };
    }
}

/// Reads `id` through a value a `Ref` (or an iteration item) points at.
fn read_id(value: &Tracked) -> u32 {
    // SAFETY: a valid reference; volatile so that the second read really reads memory.
    unsafe { std::ptr::read_volatile(&value.id) }
}

/// Holds `value` across a scheduling point and checks it stays alive.
fn hold_and_check(tracker: &Tracker, value: &Tracked) {
    let id = read_id(value);
    tracker.hold(id);
    assert_eq!(read_id(value), id, "value {id} changed under a held Ref");
    tracker.release(id);
}

/// Runs a reader, which reads key 1 if present and holds its value across a scheduling point,
/// against `writer`; then drops the map and checks every value was dropped once.
fn reader_vs_writer(
    map: Arc<Map<Tracked>>,
    tracker: &Arc<Tracker>,
    writer: impl FnOnce(&Map<Tracked>) + Send + 'static,
) {
    let reader = {
        let (map, tracker) = (map.clone(), tracker.clone());
        thread::spawn(move || {
            if let Some(value) = map.get(&1) {
                hold_and_check(&tracker, &value);
            }
        })
    };
    let writer = {
        let map = map.clone();
        thread::spawn(move || writer(&map))
    };
    reader.join().unwrap();
    writer.join().unwrap();
    finish(map, tracker);
}

/// Drops the map (the model's last handle) and checks every value was dropped exactly once.
fn finish(map: Arc<Map<Tracked>>, tracker: &Tracker) {
    let map = Arc::try_unwrap(map)
        .ok()
        .expect("every other handle was dropped");
    drop(map);
    tracker.assert_all_dropped_once();
}

/// A reader holds a `Ref` to a snapshot key while a writer overwrites it and then inserts a
/// new key, and a third thread's miss promotes the dirty map. Depending on the order the
/// reader pins the snapshot from before or after the promotion, the overwrite retires the
/// value to the epoch before or after it, and the writer's new key (a dirty rebuild once
/// promoted) publishes yet another snapshot, so the epoch the value was retired to can be
/// dropped while the reader still holds it unless the epoch chain keeps it.
#[test]
fn reclamation_overwrite_vs_reader_and_promotion() {
    check("reclamation_overwrite_vs_reader_and_promotion", 4, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker)); // id 0
        promote(&map);
        map.insert(2, tracked(&tracker)); // id 1; dirty {1, 2}
        assert!(missed(&map, ABSENT)); // miss 1 of 2
        let overwrite = tracked(&tracker); // id 2
        let new_key = tracked(&tracker); // id 3

        let reader = {
            let (map, tracker) = (map.clone(), tracker.clone());
            thread::spawn(move || {
                let value = map.get(&1).expect("key 1 is never removed");
                hold_and_check(&tracker, &value);
            })
        };
        let writer = {
            let map = map.clone();
            thread::spawn(move || {
                let previous = map.insert(1, overwrite).expect("key 1 was present");
                assert_eq!(read_id(&previous), 0);
                drop(previous);
                assert!(map.insert(3, new_key).is_none());
            })
        };
        let promoter = {
            let map = map.clone();
            thread::spawn(move || assert!(missed(&map, ABSENT - 1)))
        };
        reader.join().unwrap();
        writer.join().unwrap();
        promoter.join().unwrap();

        // No promotion if key 3 went into the dirty map first (then 2 misses of 3).
        assert!(map.get(&3).is_some());
        finish(map, &tracker);
    });
}

/// An update's `Ref` shows the value it stored. While the updater holds it, a writer
/// overwrites that value (retiring it to the epoch current then) and a third thread's miss
/// promotes, so the updater may retire the value it displaced to a newer epoch than the one
/// the overwrite used: the `Ref` must pin the snapshot the update swapped under, not the one
/// it retired to.
#[test]
fn reclamation_update_ref_vs_overwrite_and_promotion() {
    check(
        "reclamation_update_ref_vs_overwrite_and_promotion",
        3,
        || {
            let tracker = Arc::new(Tracker::default());
            let map = Arc::new(new_map::<Tracked>());
            map.insert(1, tracked(&tracker)); // id 0
            promote(&map);
            map.insert(2, tracked(&tracker)); // id 1; dirty {1, 2}
            assert!(missed(&map, ABSENT)); // miss 1 of 2
            let overwrite = tracked(&tracker); // id 2

            let updater = {
                let (map, tracker) = (map.clone(), tracker.clone());
                thread::spawn(move || {
                    let stored = map
                        .update(&1, |_| tracked(&tracker))
                        .expect("key 1 is never removed");
                    hold_and_check(&tracker, &stored);
                })
            };
            let writer = {
                let map = map.clone();
                thread::spawn(move || {
                    drop(map.insert(1, overwrite).expect("key 1 was present"));
                })
            };
            let promoter = {
                let map = map.clone();
                thread::spawn(move || assert!(missed(&map, ABSENT - 1)))
            };
            updater.join().unwrap();
            writer.join().unwrap();
            promoter.join().unwrap();
            finish(map, &tracker);
        },
    );
}

/// A reader holds a `Ref` to a snapshot key while a writer inserts a new key (publishing an
/// amended snapshot), removes the read key (retiring its value to the new epoch), and
/// iterates (promoting: a third snapshot, which releases the second). The reader's older
/// snapshot must keep the newer epoch, and so the removed value, alive.
#[test]
fn reclamation_remove_vs_reader() {
    check("reclamation_remove_vs_reader", 5, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker)); // id 0
        promote(&map);
        let new_key = tracked(&tracker); // id 1

        reader_vs_writer(map, &tracker, move |map| {
            assert!(map.insert(2, new_key).is_none());
            let removed = map.remove(&1).expect("key 1 was present");
            assert_eq!(read_id(&removed), 0);
            drop(removed);
            assert_eq!(map.iter().count(), 1);
        });
    });
}

/// A reader holds a `Ref` to a dirty-only key (its `get` locks, counts a miss and promotes)
/// while a writer removes the key (taking it out of the dirty map, or lock-free after the
/// promotion), inserts it again and iterates (another promotion if the map is amended).
#[test]
fn reclamation_dirty_only_key() {
    check("reclamation_dirty_only_key", 5, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker)); // id 0; dirty {1}
        let again = tracked(&tracker); // id 1

        reader_vs_writer(map, &tracker, move |map| {
            let removed = map.remove(&1).expect("key 1 was present");
            assert_eq!(read_id(&removed), 0);
            drop(removed);
            assert!(map.insert(1, again).is_none());
            assert_eq!(map.iter().count(), 1);
        });
    });
}

/// A reader holds a `Ref` to a dirty-only key, found under the lock (a miss that does not
/// promote: three other dirty entries), while a writer removes the key, which takes its entry
/// out of the dirty map (dropping only the map's share), and inserts it again (a new entry,
/// perhaps in the taken-out one's memory, once every share is gone). The reader's `Ref`
/// must keep the entry and its first value alive.
#[test]
fn reclamation_dirty_only_key_taken_out() {
    check("reclamation_dirty_only_key_taken_out", 4, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        for key in 1..5 {
            map.insert(key, tracked(&tracker)); // ids 0 to 3; dirty {1, 2, 3, 4}
        }
        let again = tracked(&tracker); // id 4

        reader_vs_writer(map, &tracker, move |map| {
            let removed = map.remove(&1).expect("key 1 was present");
            assert_eq!(read_id(&removed), 0);
            drop(removed);
            assert_eq!(map.stats().dirty_len, Some(3), "taken out");
            assert!(map.insert(1, again).is_none());
        });
    });
}

/// A reader holds a `Ref` to a dirty-only key (a miss that does not promote: two dirty
/// entries) while a writer clears the map, discarding the dirty map (to the epoch of the
/// snapshot the clear replaces) and with it the last reference the map had to the reader's
/// entry, then inserts again.
#[test]
fn reclamation_dirty_only_key_vs_clear() {
    check("reclamation_dirty_only_key_vs_clear", 5, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker)); // id 0
        map.insert(2, tracked(&tracker)); // id 1; dirty {1, 2}
        let again = tracked(&tracker); // id 2

        reader_vs_writer(map, &tracker, move |map| {
            map.clear();
            assert!(map.insert(1, again).is_none());
        });
    });
}

/// A reader holds a `Ref` while a writer clears the map (orphaning the entry, which only the
/// reader's snapshot still reaches) and inserts the key again (a new publication).
#[test]
fn reclamation_clear_vs_reader() {
    check("reclamation_clear_vs_reader", 5, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker)); // id 0
        promote(&map);
        let again = tracked(&tracker); // id 1

        reader_vs_writer(map, &tracker, move |map| {
            map.clear();
            assert!(map.insert(1, again).is_none());
            assert_eq!(map.iter().count(), 1);
        });
    });
}

/// A reader holds a `Ref` to key 1's first value, which lives inside its entry, while a
/// writer inserts key 2: the dirty rebuild takes over the shares of the read table the reader
/// may have pinned, which from then on owns nothing. The writer then either promotes and
/// clears the map (the promoted table, which holds the entry's share now, is replaced) or
/// clears it while amended (the dirty map, which holds it, is discarded), and inserts key 1
/// again. The entry, and so the value, must live until the reader lets go: the epoch of the
/// replaced snapshot adopts what held the share.
fn taken_over_shares_vs_reader(promote_first: bool) {
    let tracker = Arc::new(Tracker::default());
    let map = Arc::new(new_map::<Tracked>());
    map.insert(1, tracked(&tracker)); // id 0, the entry's first value
    promote(&map);
    let (new_key, again) = (tracked(&tracker), tracked(&tracker)); // ids 1, 2

    reader_vs_writer(map, &tracker, move |map| {
        assert!(map.insert(2, new_key).is_none()); // the rebuild takes the shares over
        if promote_first {
            promote(map);
        }
        map.clear();
        assert!(map.insert(1, again).is_none());
    });
}

#[test]
fn reclamation_taken_over_shares_vs_promotion_and_clear() {
    check(
        "reclamation_taken_over_shares_vs_promotion_and_clear",
        5,
        || taken_over_shares_vs_reader(true),
    );
}

#[test]
fn reclamation_taken_over_shares_vs_clear_while_amended() {
    check(
        "reclamation_taken_over_shares_vs_clear_while_amended",
        5,
        || taken_over_shares_vs_reader(false),
    );
}

/// A reader holds key 1's first value, of a type without drop glue, while a writer displaces
/// it (with no retirement record: freeing it would do nothing, so only the entry's own life
/// keeps its memory), removes the key, makes the map let go of the entry (a rebuild that
/// expunges it, a promotion that hands it to an epoch, a clear) and inserts new keys, which
/// take freed entries' memory from the pair's arena. The snapshot the reader pinned must keep
/// the entry, so the value it holds never changes.
#[test]
fn reclamation_first_value_without_drop_glue_vs_reader() {
    check(
        "reclamation_first_value_without_drop_glue_vs_reader",
        3,
        || {
            let map = Arc::new(new_map::<u64>());
            map.insert(1, 7);
            promote(&map);
            let reader = {
                let map = map.clone();
                thread::spawn(move || {
                    if let Some(value) = map.get(&1) {
                        let seen = *value;
                        thread::yield_now();
                        assert_eq!(*value, seen, "a value changed under a held Ref");
                        assert!(seen == 7 || seen == 8, "read {seen}");
                    }
                })
            };
            let writer = {
                let map = map.clone();
                thread::spawn(move || {
                    assert_eq!(map.insert(1, 8).as_deref(), Some(&7));
                    assert_eq!(map.remove(&1).as_deref(), Some(&8));
                    assert!(map.insert(2, 9).is_none()); // the rebuild expunges key 1
                    promote(&map);
                    map.clear();
                    assert!(map.insert(3, 10).is_none());
                    assert!(map.insert(4, 11).is_none());
                })
            };
            reader.join().unwrap();
            writer.join().unwrap();
        },
    );
}

/// Rotation: the epoch of the current snapshot already holds `RETIRED_PER_EPOCH - 1` retired
/// values (4 - 1 under loom; made in the single-threaded setup, which costs loom no
/// interleavings), so the writer's overwrite fills it and rotates: it publishes a fresh snapshot around the same table. The writer
/// then overwrites again (retiring to the rotated epoch) and inserts a new key (a rebuild and
/// another publication, which releases the rotated snapshot). A reader holding the key
/// across all that must keep its value alive, and every value is dropped exactly once.
#[test]
fn reclamation_rotation_vs_reader() {
    // The setup overwrites cost loom branches but no interleavings (one runnable thread).
    check_with_branches("reclamation_rotation_vs_reader", 3, 10_000, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker));
        map.insert(2, tracked(&tracker));
        promote(&map);
        for _ in 0..RETIRED_PER_EPOCH - 1 {
            drop(map.insert(2, tracked(&tracker)));
        }
        let stats = map.stats();
        assert_eq!((stats.retired, stats.rotations), (RETIRED_PER_EPOCH - 1, 0));
        let first = tracked(&tracker);
        let second = tracked(&tracker);
        let new_key = tracked(&tracker);

        let reader = {
            let (map, tracker) = (map.clone(), tracker.clone());
            thread::spawn(move || {
                let value = map.get(&1).expect("key 1 is never removed");
                hold_and_check(&tracker, &value);
            })
        };
        let writer = {
            let (map, tracker) = (map.clone(), tracker.clone());
            thread::spawn(move || {
                // The epoch's last retirement: rotates. The displaced value comes back as a `Ref`
                // that must keep it alive across the rotation.
                let previous = map.insert(1, first).expect("key 1 was present");
                hold_and_check(&tracker, &previous);
                drop(previous);
                let previous = map.insert(1, second).expect("key 1 was present");
                assert!(map.insert(3, new_key).is_none());
                hold_and_check(&tracker, &previous);
            })
        };
        reader.join().unwrap();
        writer.join().unwrap();

        assert_eq!(map.stats().rotations, 1);
        finish(map, &tracker);
    });
}

/// Retirement batches: two writers share one batch (loom has one stripe, and
/// `RETIRED_PER_BATCH` is 2). Writer A overwrites key 1 and reads the displaced value through
/// the `Ref` it gets back; writer B overwrites key 2, which fills the batch and hands both
/// displaced values to the epoch current then, and inserts key 3 (a dirty rebuild: a new
/// snapshot). When B hands A's value over before A checks whether its own snapshot is still
/// current, the value goes to the older epoch: A's `Ref` must pin the snapshot A loaded
/// before displacing the value, not one loaded after (which does not keep that epoch).
#[test]
fn reclamation_batch_handed_over_by_another_writer() {
    check("reclamation_batch_handed_over_by_another_writer", 3, || {
        let (tracker, map) = keys_1_and_2_promoted();
        let first = tracked(&tracker);
        let second = tracked(&tracker);
        let new_key = tracked(&tracker);

        let a = {
            let (map, tracker) = (map.clone(), tracker.clone());
            thread::spawn(move || {
                let previous = map.insert(1, first).expect("key 1 was present");
                hold_and_check(&tracker, &previous);
                assert_eq!(read_id(&previous), 0);
            })
        };
        let b = {
            let map = map.clone();
            thread::spawn(move || {
                drop(map.insert(2, second).expect("key 2 was present"));
                assert!(map.insert(3, new_key).is_none());
            })
        };
        join_and_finish([a, b], map, &tracker);
    });
}

/// Retirement batches, the other order: the thread that fills a batch must find the current
/// snapshot *after* taking the batch. Writer A overwrites key 1; writer B inserts key 3 (a
/// dirty rebuild: a new snapshot) and then overwrites key 2, whose old value a reader holds
/// from the new snapshot. If A chose its epoch before pushing its record, and B pushed in
/// between, A would hand B's value to the epoch before the reader's, which nothing keeps.
#[test]
fn reclamation_batch_filled_after_a_publication() {
    check("reclamation_batch_filled_after_a_publication", 3, || {
        let (tracker, map) = keys_1_and_2_promoted();
        let first = tracked(&tracker);
        let new_key = tracked(&tracker);
        let second = tracked(&tracker);

        let a = {
            let map = map.clone();
            thread::spawn(move || drop(map.insert(1, first).expect("key 1 was present")))
        };
        let b = {
            let map = map.clone();
            thread::spawn(move || {
                assert!(map.insert(3, new_key).is_none());
                drop(map.insert(2, second).expect("key 2 was present"));
            })
        };
        let reader = {
            let (map, tracker) = (map.clone(), tracker.clone());
            thread::spawn(move || {
                let value = map.get(&2).expect("key 2 is never removed");
                hold_and_check(&tracker, &value);
            })
        };
        join_and_finish([a, b, reader], map, &tracker);
    });
}

/// Keys 1 and 2 (values 0 and 1) in the read snapshot, and the retirement batch empty.
fn keys_1_and_2_promoted() -> (Arc<Tracker>, Arc<Map<Tracked>>) {
    let tracker = Arc::new(Tracker::default());
    let map = Arc::new(new_map::<Tracked>());
    map.insert(1, tracked(&tracker)); // id 0
    map.insert(2, tracked(&tracker)); // id 1
    promote(&map);
    assert_eq!(map.stats().retired, 0, "the batch starts empty");
    (tracker, map)
}

/// Joins a model's threads, then drops the map and checks every value was dropped once.
fn join_and_finish<const N: usize>(
    threads: [thread::JoinHandle<()>; N],
    map: Arc<Map<Tracked>>,
    tracker: &Tracker,
) {
    for thread in threads {
        thread.join().unwrap();
    }
    finish(map, tracker);
}

/// A `Reader` hands out plain `&V`s that live until its next call, pinned only by its cached
/// snapshot or, for a key found under the lock, by the `Ref` it keeps. The reader reads key
/// 1 (a snapshot key), key 2 (dirty-only if present: found under the lock) and key 1 again,
/// while a writer overwrites key 1, inserts key 2 (a rebuild and a new snapshot) and clears
/// the map (which discards the dirty map, and with it the map's last reference to key 2's
/// entry: the reader's `Ref` holds its own). Each `&V` must stay alive until the reader's next call.
#[test]
fn reclamation_reader_handle() {
    check("reclamation_reader_handle", 4, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker)); // id 0
        promote(&map);
        let overwrite = tracked(&tracker); // id 1
        let new_key = tracked(&tracker); // id 2

        let reader = {
            let (map, tracker) = (map.clone(), tracker.clone());
            thread::spawn(move || {
                let mut reader = map.reader();
                for key in [1, 2, 1] {
                    if let Some(value) = reader.get(&key) {
                        hold_and_check(&tracker, value);
                    }
                }
            })
        };
        let writer = {
            let map = map.clone();
            thread::spawn(move || {
                assert!(map.insert(1, overwrite).is_some());
                assert!(map.insert(2, new_key).is_none());
                map.clear();
            })
        };
        reader.join().unwrap();
        writer.join().unwrap();
        finish(map, &tracker);
    });
}

/// A `Reader` keeps its snapshot between calls and checks only the snapshot's own
/// "superseded" flag. Once another thread has seen a newer snapshot, a lookup that starts
/// afterwards must not answer from the old one. `clear` is the publication that shows this
/// without the lock: it orphans the entries rather than emptying them, so the old snapshot
/// still says key 1 is present. Setting the flag after the swap instead of before fails this
/// model.
#[test]
fn reader_never_answers_from_a_snapshot_older_than_one_seen() {
    check(
        "reader_never_answers_from_a_snapshot_older_than_one_seen",
        3,
        || {
            let map = Arc::new(new_map::<u32>());
            map.insert(1, 1);
            promote(&map);
            let seen = Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let mut reader = map.reader(); // keeps the snapshot with key 1
            assert_eq!(reader.get(&1), Some(&1));

            let writer = {
                let map = map.clone();
                thread::spawn(move || map.clear())
            };
            let observer = {
                let (map, seen) = (map.clone(), seen.clone());
                thread::spawn(move || {
                    if get(&map, 1).is_none() {
                        seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            };
            if seen.load(std::sync::atomic::Ordering::SeqCst) {
                assert_eq!(reader.get(&1), None, "answered from a superseded snapshot");
            }
            drop(reader);
            writer.join().unwrap();
            observer.join().unwrap();
        },
    );
}

/// Two threads make their first `Reader`s of a map at once (the first makes the map's
/// placeholder snapshot, which every `Reader` keeps for the pairs it has not read) while a
/// third publishes (a new key, then a promotion). Each `Reader` must move from the
/// placeholder to a current snapshot at its first lookup and see key 1, and key 2 once
/// another thread has seen it.
#[test]
fn first_readers_vs_publication() {
    check("first_readers_vs_publication", 3, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 1);
        promote(&map);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let map = map.clone();
                thread::spawn(move || {
                    let mut reader = map.reader();
                    assert_eq!(reader.get(&1), Some(&1));
                    let seen = get(&map, 2).is_some();
                    if seen {
                        assert_eq!(reader.get(&2), Some(&2), "answered from an older snapshot");
                    }
                })
            })
            .collect();
        map.insert(2, 2);
        promote(&map);
        for reader in readers {
            reader.join().unwrap();
        }
    });
}

/// A `Reader`'s lookup of a key only the dirty map holds races the promotion that moves the
/// key into the read table. The reader searched its kept snapshot, then locks: the lock
/// holder skips the read table only while that very snapshot is still current, so the key,
/// present throughout, is found. Handing the locked lookup a guard loaded after the search
/// instead (the current snapshot, whose table nobody searched) fails this model.
#[test]
fn reader_locked_lookup_vs_promotion() {
    check("reader_locked_lookup_vs_promotion", 3, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 1);
        promote(&map);
        map.insert(2, 2); // only in the dirty map
        let promoter = {
            let map = map.clone();
            thread::spawn(move || promote(&map))
        };
        let mut reader = map.reader();
        assert_eq!(reader.get(&2), Some(&2), "a present key not found");
        drop(reader);
        promoter.join().unwrap();
    });
}

/// An iterator item holds a value while a writer overwrites it, inserts a new key (a dirty
/// rebuild and a new snapshot) and promotes (another one).
#[test]
fn reclamation_iteration_item_vs_overwrite() {
    check("reclamation_iteration_item_vs_overwrite", 5, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker)); // id 0
        promote(&map);
        let overwrite = tracked(&tracker); // id 1
        let new_key = tracked(&tracker); // id 2

        let reader = {
            let (map, tracker) = (map.clone(), tracker.clone());
            thread::spawn(move || {
                let visited = map
                    .values()
                    .map(|value| hold_and_check(&tracker, &value))
                    .count();
                // Key 2 is visited if the iteration starts after it was inserted.
                assert!(visited == 1 || visited == 2, "{visited}");
            })
        };
        let writer = {
            let map = map.clone();
            thread::spawn(move || {
                assert!(map.insert(1, overwrite).is_some());
                assert!(map.insert(2, new_key).is_none());
                assert!(missed(&map, ABSENT));
                assert!(missed(&map, ABSENT)); // second miss of 2: promotes
            })
        };
        reader.join().unwrap();
        writer.join().unwrap();
        finish(map, &tracker);
    });
}

/// A view's references are plain `&V`s that live as long as the view: the reader reads key 1
/// through a view and keeps the reference while it iterates the view, as a writer overwrites
/// key 1 twice (so a value the view read may be displaced and retired), inserts a new key (a
/// dirty rebuild and a new snapshot) and promotes (another one).
#[test]
fn reclamation_view_references_vs_overwrites() {
    check("reclamation_view_references_vs_overwrites", 3, || {
        let tracker = Arc::new(Tracker::default());
        let map = Arc::new(new_map::<Tracked>());
        map.insert(1, tracked(&tracker)); // id 0
        promote(&map);
        let overwrites = [tracked(&tracker), tracked(&tracker)]; // ids 1, 2
        let new_key = tracked(&tracker); // id 3

        let reader = {
            let (map, tracker) = (map.clone(), tracker.clone());
            thread::spawn(move || {
                let view = map.view();
                let first = view.get(&1).expect("key 1 is never removed");
                let id = read_id(first);
                tracker.hold(id);
                for (_, value) in &view {
                    hold_and_check(&tracker, value);
                }
                assert_eq!(read_id(first), id, "value {id} changed under the view");
                tracker.release(id);
            })
        };
        let writer = {
            let map = map.clone();
            thread::spawn(move || {
                for value in overwrites {
                    assert!(map.insert(1, value).is_some());
                }
                assert!(map.insert(2, new_key).is_none());
                assert!(missed(&map, ABSENT));
                assert!(missed(&map, ABSENT)); // second miss of 2: promotes
            })
        };
        reader.join().unwrap();
        writer.join().unwrap();
        finish(map, &tracker);
    });
}

// ---------------------------------------------------------------------------------------
// 9. len accounting
// ---------------------------------------------------------------------------------------

/// Concurrent inserts and removes of distinct and equal keys, on a snapshot key and on new
/// keys; after the join `len` equals the number of keys iterated.
#[test]
fn len_accounting_inserts_and_removes() {
    check("len_accounting_inserts_and_removes", 4, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        promote(&map);

        let a = {
            let map = map.clone();
            thread::spawn(move || {
                insert(&map, 2, 20);
                remove(&map, 1);
            })
        };
        let b = {
            let map = map.clone();
            thread::spawn(move || {
                insert(&map, 1, 11);
                remove(&map, 2);
            })
        };
        a.join().unwrap();
        b.join().unwrap();

        let seen = contents(&map);
        assert_eq!(map.len(), seen.len(), "{seen:?}");
        assert_eq!(map.stats().len, seen.len());
        drop(map.iter());
        assert_eq!(map.len(), contents(&map).len());
    });
}

/// Equal keys: both threads insert the same new key (one with `get_or_insert`) and one removes
/// it (a dirty-only key: the remove's counted miss promotes the one-entry dirty map); `len`
/// equals the number of keys iterated afterwards.
#[test]
fn len_accounting_equal_keys() {
    check("len_accounting_equal_keys", 5, || {
        let map = Arc::new(new_map::<u32>());

        let a = {
            let map = map.clone();
            thread::spawn(move || {
                drop(map.get_or_insert(1, 10));
                remove(&map, 1);
            })
        };
        let b = {
            let map = map.clone();
            thread::spawn(move || {
                insert(&map, 1, 11);
            })
        };
        a.join().unwrap();
        b.join().unwrap();

        let seen = contents(&map);
        assert_eq!(map.len(), seen.len(), "{seen:?}");
        assert!(
            seen.is_empty() || seen == BTreeMap::from([(1, 11)]),
            "{seen:?}"
        );
    });
}

/// The other operations that change `len`: `compare_and_remove` and `retain` (which promotes,
/// then removes through the snapshot) race with `insert` and `get_or_insert`.
#[test]
fn len_accounting_compare_and_remove_and_retain() {
    check("len_accounting_compare_and_remove_and_retain", 4, || {
        let map = Arc::new(new_map::<u32>());
        map.insert(1, 10);
        promote(&map);
        map.insert(2, 20); // dirty {1, 2}, amended

        let a = {
            let map = map.clone();
            thread::spawn(move || {
                map.compare_and_remove(&1, &10);
                insert(&map, 3, 30);
            })
        };
        let b = {
            let map = map.clone();
            thread::spawn(move || {
                map.retain(|key, _| *key != 2);
                drop(map.get_or_insert(1, 12));
            })
        };
        a.join().unwrap();
        b.join().unwrap();

        let seen = contents(&map);
        assert_eq!(map.len(), seen.len(), "{seen:?}");
        assert!(!seen.contains_key(&2), "{seen:?}");
        assert_eq!(seen.get(&3), Some(&30));
        assert!(matches!(seen.get(&1), None | Some(&12)), "{seen:?}");
    });
}

/// A clear in place (every key dirty-only, so no publication: the entries are expunged under
/// the lock) races with a remove and a compare-and-swap that locate their dirty-only keys
/// under the lock and act on them after unlocking: each acts before the clear, or finds its
/// entry expunged, that is absent. Either way `len` stays exact: the clear counts off only
/// the values it deleted itself. Then a new key after the clear. The default promotion floor,
/// so that the remove's miss does not promote the dirty map (the clear would then publish).
#[test]
fn len_accounting_clear_in_place_vs_remove_and_compare_and_swap() {
    check(
        "len_accounting_clear_in_place_vs_remove_and_compare_and_swap",
        4,
        || {
            let map = Arc::new(DualMap::builder().pairs(1).hasher(SameHash).build());
            map.insert(1, 10);
            map.insert(2, 20); // dirty {1, 2}, the read table empty

            let a = {
                let map = map.clone();
                thread::spawn(move || {
                    let removed = remove(&map, 1);
                    let swapped = map.compare_and_swap(&2, &20, 21).is_ok();
                    (removed, swapped)
                })
            };
            let b = {
                let map = map.clone();
                thread::spawn(move || {
                    map.clear();
                    insert(&map, 3, 30);
                })
            };
            let (removed, swapped) = a.join().unwrap();
            b.join().unwrap();
            // No promotion, so the read table stayed empty: the clear went in place.
            assert_eq!(map.stats().promotions, 0);

            assert!(matches!(removed, None | Some(10)), "{removed:?}");
            let seen = contents(&map);
            assert_eq!(map.len(), seen.len(), "{seen:?}");
            // key 2 was cleared after the swap or before it (then the swap failed)
            assert!(!seen.contains_key(&2), "{seen:?}, swapped {swapped}");
            assert_eq!(seen, BTreeMap::from([(3, 30)]));
            if removed.is_none() {
                assert!(!swapped, "remove saw the clear, so the later swap did too");
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 10. The miss filter (golang/go#21032): lookups that skip the lock stay linearizable.

/// The store-buffering shape: each thread inserts a new key, then looks up the other's. If
/// both lookups answered "absent", each would have to come before the other thread's insert,
/// which comes before its own lookup: a cycle, so not linearizable. `amended_first` decides
/// whether the filter exists before the race or is created by one of the inserts.
fn miss_filter_store_buffering(name: &str, amended_first: bool) {
    check(name, 4, move || {
        let map = Arc::new(new_map::<u32>());
        map.insert(0, 0);
        if !amended_first {
            promote(&map);
        }
        let other = map.clone();
        let thread = thread::spawn(move || {
            other.insert(1, 1);
            other.get(&2).map(|value| *value)
        });
        map.insert(2, 2);
        let seen_here = map.get(&1).map(|value| *value);
        let seen_there = thread.join().unwrap();
        assert!(
            seen_here == Some(1) || seen_there == Some(2),
            "both lookups missed the other's insert: {seen_here:?} {seen_there:?}"
        );
        assert_eq!(map.len(), 3);
        assert_eq!(contents(&map), BTreeMap::from([(0, 0), (1, 1), (2, 2)]));
    });
}

#[test]
fn miss_filter_store_buffering_while_amended() {
    miss_filter_store_buffering("miss_filter_store_buffering_while_amended", true);
}

#[test]
fn miss_filter_store_buffering_as_the_filter_is_created() {
    miss_filter_store_buffering(
        "miss_filter_store_buffering_as_the_filter_is_created",
        false,
    );
}

/// A lookup racing the insert that outgrows the filter (64 dirty-only keys fill the first
/// one; the 65th publishes one four times larger): it sees the key or not, and once the insert
/// has returned every lookup sees every key, on both threads.
#[test]
fn miss_filter_regrow_vs_lookup() {
    check_with_branches("miss_filter_regrow_vs_lookup", 3, 20_000, || {
        let map = Arc::new(new_map::<u32>());
        for key in 0..64 {
            map.insert(key, key);
        }
        let other = map.clone();
        let thread = thread::spawn(move || {
            let racing = other.get(&100).map(|value| *value);
            assert!(racing.is_none() || racing == Some(100));
            other.insert(200, 200);
            other.get(&100).map(|value| *value)
        });
        map.insert(100, 100); // the 65th dirty-only key: regrows the filter
        let seen_here = map.get(&200).map(|value| *value);
        let seen_there = thread.join().unwrap();
        assert!(seen_here == Some(200) || seen_there == Some(100));
        assert_eq!(map.get(&100).map(|value| *value), Some(100));
        assert_eq!(map.get(&200).map(|value| *value), Some(200));
        assert_eq!(map.len(), 66);
    });
}

// ---------------------------------------------------------------------------------------
// Independent read/dirty pairs
// ---------------------------------------------------------------------------------------

/// Hashes even keys to read/dirty pair 0 and odd keys to pair 1 of a two-pair map (the pair
/// index is hash bit 44 there), every key of a pair alike, as `SameHash` does.
#[derive(Clone, Copy)]
struct ByParity;

struct ParityHash(u64);

impl BuildHasher for ByParity {
    type Hasher = ParityHash;
    fn build_hasher(&self) -> ParityHash {
        ParityHash(0)
    }
}

impl Hasher for ParityHash {
    fn finish(&self) -> u64 {
        (ONE_HASH & !(1 << 44)) | ((self.0 & 1) << 44)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = u64::from(bytes[0]);
    }
}

/// Iteration walks the pairs one after another, pinning each when it reaches it, while
/// another thread adds a key to each pair and removes one. No key is visited twice; the keys
/// present throughout (1 and 2, one per pair) are visited with their values; a key added or
/// removed meanwhile may or may not be; and `len` never counts a key twice.
#[test]
fn iteration_across_pairs_vs_inserts_and_removes() {
    walk_across_pairs_vs_inserts_and_removes(
        "iteration_across_pairs_vs_inserts_and_removes",
        |map, visit| {
            for (key, value) in map.iter() {
                visit(*key, *value);
            }
        },
    );
}

/// The same with `for_each`, whose walk pins each pair with a guard for the call.
#[test]
fn for_each_across_pairs_vs_inserts_and_removes() {
    walk_across_pairs_vs_inserts_and_removes(
        "for_each_across_pairs_vs_inserts_and_removes",
        |map, visit| map.for_each(|key, value| visit(*key, *value)),
    );
}

type ParityMap = DualMap<u32, u32, ByParity>;

fn walk_across_pairs_vs_inserts_and_removes(
    name: &'static str,
    walk: fn(&ParityMap, &mut dyn FnMut(u32, u32)),
) {
    check(name, 3, move || {
        let map: Arc<ParityMap> = Arc::new(DualMap::builder().pairs(2).hasher(ByParity).build());
        map.insert(1, 10);
        map.insert(2, 20);
        map.insert(3, 30);
        drop(map.iter()); // promotes both pairs
        assert_eq!(map.stats().pairs, 2);

        let iterator = {
            let map = map.clone();
            thread::spawn(move || {
                let mut seen = BTreeMap::new();
                walk(&map, &mut |key, value| {
                    assert!(seen.insert(key, value).is_none(), "key {key} twice");
                });
                seen
            })
        };
        let writer = {
            let map = map.clone();
            thread::spawn(move || {
                assert_eq!(map.insert(4, 40).map(|v| *v), None); // pair 0
                assert_eq!(map.remove(&3).map(|v| *v), Some(30)); // pair 1
                assert_eq!(map.insert(5, 50).map(|v| *v), None); // pair 1
                assert!(map.len() <= 4);
            })
        };
        let seen = iterator.join().unwrap();
        writer.join().unwrap();

        assert_eq!(seen.get(&1), Some(&10));
        assert_eq!(seen.get(&2), Some(&20));
        for (key, value) in &seen {
            assert_eq!(*value, key * 10);
        }
        assert_eq!(map.len(), 4);
        let mut keys: Vec<u32> = map.keys().map(|key| *key).collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 2, 4, 5]);
    });
}
