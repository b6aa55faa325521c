//! Concurrent stress tests: threads run every operation at once, on keys they own and on keys
//! they share, while others read, hold `Ref`s, iterate, retain and clear. Afterwards the map
//! must hold exactly the expected contents, and every key and value ever created must have been
//! dropped exactly once (no leak, no double drop, no use after free).
//!
//! Keys and values are instrumented: each instance has a unique id whose state goes
//! never-created → alive → dropped, once; a second drop, a drop of an unknown id, or a read of
//! a dropped value panics at once. Values also carry a canary that their `Drop` poisons.
//!
//! Sizes shrink under Miri, which runs this file to check the unsafe code:
//! `cargo +nightly miri test --test stress`. No test asserts anything about timing.
//! `STRESS_SEED=<u64>` changes the operation sequences of a native run.

use dualmap::{DualMap, GetOrInsert, Ref};
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU8, AtomicUsize};
use std::sync::{Arc, Barrier};
use std::thread;

/// The native size, or the Miri size under `cfg(miri)`.
const fn size(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

/// How many displaced values an epoch collects before the map rotates.
const ROTATE_EVERY: usize = dualmap::RETIRED_PER_EPOCH;

// ---------------------------------------------------------------------------------------------
// Instrumented keys and values
// ---------------------------------------------------------------------------------------------

const NEVER_CREATED: u8 = 0;
const ALIVE: u8 = 1;
const DROPPED: u8 = 2;

/// Records, per unique id, whether an instance was created and dropped. One per test, so tests
/// running in parallel do not see each other's instances.
struct Tracker {
    states: Box<[AtomicU8]>,
    next: AtomicUsize,
    live_keys: AtomicIsize,
    live_values: AtomicIsize,
}

impl Tracker {
    fn new(capacity: usize) -> Self {
        Self {
            states: (0..capacity)
                .map(|_| AtomicU8::new(NEVER_CREATED))
                .collect(),
            next: AtomicUsize::new(0),
            live_keys: AtomicIsize::new(0),
            live_values: AtomicIsize::new(0),
        }
    }

    fn create(&self) -> usize {
        let id = self.next.fetch_add(1, Relaxed);
        let state = self.states.get(id).unwrap_or_else(|| {
            panic!("tracker capacity {} exceeded", self.states.len());
        });
        let previous = state.swap(ALIVE, AcqRel);
        assert_eq!(previous, NEVER_CREATED, "id {id} created twice");
        id
    }

    fn destroy(&self, id: usize) {
        let Some(state) = self.states.get(id) else {
            panic!("drop of id {id}, which was never created");
        };
        if let Err(actual) = state.compare_exchange(ALIVE, DROPPED, AcqRel, Acquire) {
            let what = if actual == DROPPED {
                "dropped twice"
            } else {
                "dropped but never created"
            };
            panic!("id {id} {what}");
        }
    }

    fn is_alive(&self, id: usize) -> bool {
        self.states
            .get(id)
            .is_some_and(|state| state.load(Acquire) == ALIVE)
    }

    fn live_keys(&self) -> usize {
        usize::try_from(self.live_keys.load(SeqCst)).expect("more keys dropped than created")
    }

    fn live_values(&self) -> usize {
        usize::try_from(self.live_values.load(SeqCst)).expect("more values dropped than created")
    }

    /// Every instance ever created was dropped (exactly once: a second drop panics).
    fn assert_all_dropped(&self) {
        let created = self.next.load(SeqCst);
        let leaked: Vec<usize> = (0..created)
            .filter(|&id| self.states[id].load(SeqCst) != DROPPED)
            .collect();
        assert!(
            leaked.is_empty(),
            "{} of {created} instances were never dropped, e.g. ids {:?}",
            leaked.len(),
            &leaked[..leaked.len().min(10)]
        );
        assert_eq!(self.live_keys(), 0);
        assert_eq!(self.live_values(), 0);
    }
}

/// A key that counts its instances. Hashes and compares as its `u64`, so the map can be
/// searched with `&u64`.
struct Key<'t> {
    k: u64,
    id: usize,
    tracker: &'t Tracker,
}

impl<'t> Key<'t> {
    fn new(tracker: &'t Tracker, k: u64) -> Self {
        tracker.live_keys.fetch_add(1, Relaxed);
        Self {
            k,
            id: tracker.create(),
            tracker,
        }
    }
}

impl Drop for Key<'_> {
    fn drop(&mut self) {
        self.tracker.destroy(self.id);
        self.tracker.live_keys.fetch_sub(1, Relaxed);
    }
}

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.k.hash(state);
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k
    }
}

impl Eq for Key<'_> {}

impl Borrow<u64> for Key<'_> {
    fn borrow(&self) -> &u64 {
        &self.k
    }
}

impl fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} #{})", self.k, self.id)
    }
}

fn canary(key: u64, ver: u64) -> u64 {
    (key.rotate_left(17) ^ ver).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// A value: the key it was stored for and a version that says who stored it and when.
/// Equality (used by compare-and-swap) checks both sides are intact and alive.
struct Val<'t> {
    key: u64,
    ver: u64,
    canary: u64,
    id: usize,
    tracker: &'t Tracker,
}

impl<'t> Val<'t> {
    fn new(tracker: &'t Tracker, key: u64, ver: u64) -> Self {
        tracker.live_values.fetch_add(1, Relaxed);
        Self {
            key,
            ver,
            canary: canary(key, ver),
            id: tracker.create(),
            tracker,
        }
    }

    /// Asserts that the value is intact, not dropped, and stored for `key`; returns its version.
    fn check(&self, key: u64) -> u64 {
        assert_eq!(
            self.canary,
            canary(self.key, self.ver),
            "corrupt value (freed?): {self:?}"
        );
        assert!(
            self.tracker.is_alive(self.id),
            "value read after its drop: {self:?}"
        );
        assert_eq!(
            self.key, key,
            "key {key} holds a value of another key: {self:?}"
        );
        self.ver
    }
}

impl Drop for Val<'_> {
    fn drop(&mut self) {
        self.tracker.destroy(self.id);
        self.tracker.live_values.fetch_sub(1, Relaxed);
        // SAFETY: a valid, aligned pointer to our own field. Volatile so that the poisoning is
        // not optimised away although the memory is freed right after.
        unsafe { std::ptr::write_volatile(&mut self.canary, 0) };
    }
}

impl PartialEq for Val<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.check(self.key);
        other.check(other.key);
        self.key == other.key && self.ver == other.ver
    }
}

impl Clone for Val<'_> {
    fn clone(&self) -> Self {
        Val::new(self.tracker, self.key, self.check(self.key))
    }
}

impl fmt::Debug for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Val(key {}, owner {}, seq {}, #{})",
            self.key,
            owner_of_ver(self.ver),
            self.ver & SEQ_MASK,
            self.id
        )
    }
}

/// The default hasher (ahash). Every lookup here goes through `Borrow<u64>`, so on a nightly
/// compiler (so under Miri) this also checks that the map does not hash keys with ahash's
/// specialised `hash_one`, which hashes `&u64` differently from `Key` (fixed in c4dc02f).
type Map<'t> = DualMap<Key<'t>, Val<'t>>;

fn new_map<'t>() -> Map<'t> {
    DualMap::new()
}
type ValRef<'t> = Ref<Key<'t>, Val<'t>>;

// ---------------------------------------------------------------------------------------------
// Key spaces, versions, randomness
// ---------------------------------------------------------------------------------------------

/// Versions are `owner << SEQ_BITS | seq`: the thread that made the value, and its sequence.
const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// A version no thread ever stores.
const NEVER_STORED: u64 = u64::MAX >> 1;

fn ver_of(owner: usize, seq: u64) -> u64 {
    ((owner as u64) << SEQ_BITS) | seq
}

fn owner_of_ver(ver: u64) -> usize {
    (ver >> SEQ_BITS) as usize
}

/// Thread `w` owns keys `OWN_BASE * (w + 1) + i`: only it writes them.
const OWN_BASE: u64 = 1 << 32;
/// Counters: every thread increments them with compare-and-swap loops.
const COUNTER_BASE: u64 = 1 << 20;
/// Race keys: every thread get-or-inserts each of them once; the first one wins.
const RACE_BASE: u64 = 1 << 24;

fn own_key(owner: usize, i: usize) -> u64 {
    OWN_BASE * (owner as u64 + 1) + i as u64
}

/// `(owner, index)` of a thread-owned key.
fn owner_of_key(key: u64) -> Option<(usize, usize)> {
    (key >= OWN_BASE).then(|| ((key / OWN_BASE) as usize - 1, (key % OWN_BASE) as usize))
}

fn seed() -> u64 {
    std::env::var("STRESS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5EED_CAFE)
}

/// xorshift64*: deterministic per thread.
struct Rng(u64);

impl Rng {
    fn new(stream: u64) -> Self {
        Self((seed() ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `Ref`s a thread keeps for a while: each is checked when taken and again when released (the
/// value a `Ref` shows never changes and must stay alive while it is held).
struct Held<'t> {
    refs: VecDeque<(u64, u64, ValRef<'t>)>,
    capacity: usize,
}

impl<'t> Held<'t> {
    fn new(capacity: usize) -> Self {
        Self {
            refs: VecDeque::with_capacity(capacity + 1),
            capacity,
        }
    }

    fn push(&mut self, key: u64, ver: u64, value: ValRef<'t>) {
        assert_eq!(value.check(key), ver);
        self.refs.push_back((key, ver, value));
        while self.refs.len() > self.capacity {
            self.release_oldest();
        }
    }

    fn release_oldest(&mut self) {
        if let Some((key, ver, value)) = self.refs.pop_front() {
            assert_eq!(value.check(key), ver, "a held Ref changed");
        }
    }

    fn release_all(&mut self) {
        while !self.refs.is_empty() {
            self.release_oldest();
        }
    }
}

/// Counts a thread out when it finishes, by panic too, so that a thread that waits for the
/// others to finish never spins forever after one of them failed.
struct CountsOut<'a>(&'a AtomicUsize);

impl Drop for CountsOut<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Mixed workload: every operation at once, exact final contents
// ---------------------------------------------------------------------------------------------

const MIXED_THREADS: usize = size(4, 2);
/// Keys each thread owns; the first `MIXED_STABLE` are prefilled and never removed.
const MIXED_KEYS: usize = size(1_500, 10);
const MIXED_STABLE: usize = size(150, 3);
const MIXED_OPS: usize = size(100_000, 100);
const MIXED_COUNTERS: usize = size(4, 2);
const MIXED_RACE_KEYS: usize = size(2_000, 6);
const MIXED_COUNTER_EVERY: usize = size(50, 12);
const MIXED_RACE_EVERY: usize = MIXED_OPS / MIXED_RACE_KEYS;
const MIXED_ITER_EVERY: usize = size(4_000, 40);
const MIXED_RETAIN_EVERY: usize = size(6_000, 45);
const MIXED_HELD: usize = size(16, 3);

struct MixedOutcome {
    /// Version of each owned key at the end, `None` if absent.
    model: Vec<Option<u64>>,
    /// Successful increments per counter.
    increments: Vec<u64>,
    /// The value each race key held when this thread reached it.
    race_winners: Vec<u64>,
    /// Race keys this thread inserted.
    race_inserted: usize,
}

/// Checks a value of a key that this thread may not own.
fn check_any(key: u64, value: &Val<'_>) -> u64 {
    let ver = value.check(key);
    if let Some((owner, i)) = owner_of_key(key) {
        assert!(owner < MIXED_THREADS && i < MIXED_KEYS, "unknown key {key}");
        assert_eq!(owner_of_ver(ver), owner, "a foreign value under {key}");
    } else if (RACE_BASE..RACE_BASE + MIXED_RACE_KEYS as u64).contains(&key) {
        assert!(owner_of_ver(ver) < MIXED_THREADS, "{value:?}");
        assert_eq!(ver & SEQ_MASK, key - RACE_BASE, "{value:?}");
    } else if (COUNTER_BASE..COUNTER_BASE + MIXED_COUNTERS as u64).contains(&key) {
        assert!(ver <= (MIXED_THREADS * MIXED_OPS) as u64, "{value:?}");
    } else {
        panic!("unknown key {key}");
    }
    ver
}

fn doomed(ver: u64) -> bool {
    (ver & SEQ_MASK) % 3 == 0
}

/// One operation on a key this thread owns, checked exactly against the thread's model.
fn own_op<'t>(
    map: &Map<'t>,
    tracker: &'t Tracker,
    w: usize,
    rng: &mut Rng,
    model: &mut [Option<u64>],
    seq: &mut u64,
) {
    let i = rng.below(model.len());
    let k = own_key(w, i);
    let removable = i >= MIXED_STABLE;
    let current = model[i];
    *seq += 1;
    let ver = ver_of(w, *seq);
    let fresh = || Val::new(tracker, k, ver);
    let key = || Key::new(tracker, k);
    match rng.below(100) {
        0..=29 => {
            let previous = map.insert(key(), fresh());
            assert_eq!(
                previous.map(|p| p.check(k)),
                current,
                "insert {k}: previous"
            );
            model[i] = Some(ver);
        }
        30..=39 if removable => {
            let removed = map.remove(&k);
            assert_eq!(removed.map(|r| r.check(k)), current, "remove {k}");
            model[i] = None;
        }
        40..=49 => match map.get_or_insert(key(), fresh()) {
            GetOrInsert::Loaded(present) => {
                assert_eq!(Some(present.check(k)), current, "get_or_insert {k}: loaded");
            }
            GetOrInsert::Inserted(inserted) => {
                assert_eq!(current, None, "get_or_insert {k}: inserted over a value");
                assert_eq!(inserted.check(k), ver);
                model[i] = Some(ver);
            }
        },
        50..=54 => match map.try_insert(key(), fresh()) {
            Ok(inserted) => {
                assert_eq!(current, None, "try_insert {k}: inserted over a value");
                assert_eq!(inserted.check(k), ver);
                model[i] = Some(ver);
            }
            Err(occupied) => {
                assert_eq!(Some(occupied.current.check(k)), current, "try_insert {k}");
                assert_eq!(occupied.not_inserted.check(k), ver);
            }
        },
        55..=57 => {
            let mut made = false;
            let result = map.get_or_insert_with(key(), || {
                made = true;
                fresh()
            });
            assert_eq!(made, result.is_inserted());
            assert_eq!(made, current.is_none(), "get_or_insert_with {k}");
            let got = result.into_ref().check(k);
            if made {
                assert_eq!(got, ver);
                model[i] = Some(ver);
            } else {
                assert_eq!(Some(got), current);
            }
        }
        58..=69 => {
            let expected = Val::new(tracker, k, current.unwrap_or(ver_of(w, 0)));
            let result = map.compare_and_swap(&k, &expected, fresh());
            match (current, result) {
                (Some(_), Ok(())) => model[i] = Some(ver),
                (None, Err(back)) => assert_eq!(back.check(k), ver),
                (current, result) => panic!("compare_and_swap {k} on {current:?}: {result:?}"),
            }
        }
        70..=73 => {
            let wrong = Val::new(tracker, k, NEVER_STORED);
            let back = map
                .compare_and_swap(&k, &wrong, fresh())
                .expect_err("compare_and_swap with a wrong expected value");
            assert_eq!(back.check(k), ver);
        }
        74..=81 if removable => {
            let expected = Val::new(tracker, k, current.unwrap_or(ver_of(w, 0)));
            let removed = map.compare_and_remove(&k, &expected);
            assert_eq!(removed, current.is_some(), "compare_and_remove {k}");
            model[i] = None;
        }
        82..=84 => {
            let wrong = Val::new(tracker, k, NEVER_STORED);
            assert!(!map.compare_and_remove(&k, &wrong));
        }
        95..=99 => {
            assert_eq!(map.contains_key(&k), current.is_some());
            assert_eq!(map.get_cloned(&k).map(|v| v.check(k)), current);
        }
        _ => {
            assert_eq!(map.get(&k).map(|v| v.check(k)), current, "get {k}");
        }
    }
}

/// Increments a shared counter by compare-and-swap against the `Ref` just read.
fn increment<'t>(map: &Map<'t>, tracker: &'t Tracker, counter: usize) {
    let k = COUNTER_BASE + counter as u64;
    loop {
        let current = map.get(&k).expect("counters are never removed");
        let count = current.check(k);
        match map.compare_and_swap(&k, &current, Val::new(tracker, k, count + 1)) {
            Ok(()) => return,
            Err(back) => assert_eq!(back.check(k), count + 1),
        }
    }
}

/// Get-or-inserts race key `r` (by one of three methods); returns the value present after.
fn race<'t>(map: &Map<'t>, tracker: &'t Tracker, w: usize, r: usize) -> (u64, bool) {
    let k = RACE_BASE + r as u64;
    let mine = ver_of(w, r as u64);
    let offer = || Val::new(tracker, k, mine);
    let (value, inserted) = match r % 3 {
        0 => match map.get_or_insert(Key::new(tracker, k), offer()) {
            GetOrInsert::Inserted(value) => (value, true),
            GetOrInsert::Loaded(value) => (value, false),
        },
        1 => match map.try_insert(Key::new(tracker, k), offer()) {
            Ok(value) => (value, true),
            Err(occupied) => {
                assert_eq!(occupied.not_inserted.check(k), mine);
                (occupied.current, false)
            }
        },
        _ => {
            let result = map.get_or_insert_with(Key::new(tracker, k), offer);
            let inserted = result.is_inserted();
            (result.into_ref(), inserted)
        }
    };
    let ver = check_any(k, &value);
    if inserted {
        assert_eq!(
            ver, mine,
            "race key {k}: inserted, but another value is present"
        );
    }
    (ver, inserted)
}

/// Iterates the whole map: every key at most once, every value intact; this thread's own keys
/// exactly as its model says (nobody else writes them), and every key that is present all along
/// (stable keys, counters, race keys already inserted) visited.
fn check_iteration(map: &Map<'_>, w: usize, model: &[Option<u64>], race_winners: &[u64]) {
    let mut seen = HashSet::new();
    let mut own = 0;
    for (key, value) in map.iter() {
        let k = key.k;
        assert!(seen.insert(k), "iteration visited key {k} twice");
        let ver = check_any(k, &value);
        if let Some((owner, i)) = owner_of_key(k) {
            if owner == w {
                assert_eq!(Some(ver), model[i], "iteration: own key {k}");
                // A nested call while iterating.
                assert_eq!(map.get(&k).map(|v| v.check(k)), model[i]);
                own += 1;
            }
        }
    }
    assert_eq!(
        own,
        model.iter().flatten().count(),
        "iteration missed own keys"
    );
    for owner in 0..MIXED_THREADS {
        for i in 0..MIXED_STABLE {
            assert!(seen.contains(&own_key(owner, i)), "missed stable key");
        }
    }
    for c in 0..MIXED_COUNTERS {
        assert!(
            seen.contains(&(COUNTER_BASE + c as u64)),
            "missed a counter"
        );
    }
    for (r, &winner) in race_winners.iter().enumerate() {
        if winner != u64::MAX {
            assert!(seen.contains(&(RACE_BASE + r as u64)), "missed race key");
        }
    }
}

/// Removes this thread's doomed values (and nothing else) with `retain`, which visits every
/// key of every thread. `keep` may be asked more than once about the same value (a spurious
/// `compare_exchange_weak` failure retries the test; Miri simulates those), so own keys are
/// counted as a set.
fn retain_doomed(map: &Map<'_>, w: usize, model: &mut [Option<u64>]) {
    let mut own_visited = HashSet::new();
    map.retain(|key, value| {
        let k = key.k;
        let ver = check_any(k, value);
        match owner_of_key(k) {
            Some((owner, i)) if owner == w => {
                own_visited.insert(i);
                assert_eq!(Some(ver), model[i], "retain: own key {k}");
                !(i >= MIXED_STABLE && doomed(ver))
            }
            _ => true,
        }
    });
    let present: HashSet<usize> = (0..model.len()).filter(|&i| model[i].is_some()).collect();
    assert_eq!(own_visited, present, "retain: own keys visited");
    for slot in &mut model[MIXED_STABLE..] {
        if slot.is_some_and(doomed) {
            *slot = None;
        }
    }
}

/// A key of any kind, for reads by a thread that may not own it.
fn any_key(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0 => COUNTER_BASE + rng.below(MIXED_COUNTERS) as u64,
        1 => RACE_BASE + rng.below(MIXED_RACE_KEYS) as u64,
        _ => own_key(rng.below(MIXED_THREADS), rng.below(MIXED_KEYS)),
    }
}

/// Whether `key` is certainly present now: stable keys and counters always are, and a race key
/// is once any thread has reported it inserted (`raced`, with release/acquire), so a lookup that
/// happens after that report must find it, whether the key is in the snapshot or only in the
/// dirty map (this checks the miss filter's "certainly absent" answers).
fn certainly_present(key: u64, raced: &[AtomicBool]) -> bool {
    match owner_of_key(key) {
        Some((_, i)) => i < MIXED_STABLE,
        None if key >= RACE_BASE => raced[(key - RACE_BASE) as usize].load(Acquire),
        None => true,
    }
}

fn mixed_worker<'t>(
    map: &Map<'t>,
    tracker: &'t Tracker,
    w: usize,
    raced: &[AtomicBool],
) -> MixedOutcome {
    let mut rng = Rng::new(w as u64 + 1);
    let mut model: Vec<Option<u64>> = (0..MIXED_KEYS)
        .map(|i| (i < MIXED_STABLE).then(|| ver_of(w, 0)))
        .collect();
    let mut seq = 0;
    let mut held = Held::new(MIXED_HELD);
    let mut reader = map.reader();
    let mut increments = vec![0; MIXED_COUNTERS];
    let mut race_winners = vec![u64::MAX; MIXED_RACE_KEYS];
    let mut race_inserted = 0;
    let mut races = 0;
    // Each thread goes through the race keys from a different starting point.
    let next_race = |races: &mut usize, winners: &mut [u64], inserted: &mut usize| {
        let r = (*races + w * MIXED_RACE_KEYS / MIXED_THREADS) % MIXED_RACE_KEYS;
        *races += 1;
        let (winner, mine) = race(map, tracker, w, r);
        winners[r] = winner;
        *inserted += usize::from(mine);
        raced[r].store(true, Release);
    };
    for op in 0..MIXED_OPS {
        // A `Reader` lookup, whose `&V` is kept across this thread's own operation.
        let k = any_key(&mut rng);
        let must = certainly_present(k, raced);
        let kept = reader.get(&k).map(|value| (value, check_any(k, value)));
        assert!(
            kept.is_some() || !must,
            "Reader::get missed present key {k}"
        );

        own_op(map, tracker, w, &mut rng, &mut model, &mut seq);

        if let Some((value, ver)) = kept {
            assert_eq!(value.check(k), ver, "a Reader's value changed");
        }
        if op % 97 == 0 {
            reader.refresh();
        }

        // Read someone's key with `get` and hold the `Ref` for a while.
        let k = any_key(&mut rng);
        let must = certainly_present(k, raced);
        match map.get(&k) {
            Some(value) => {
                let ver = check_any(k, &value);
                held.push(k, ver, value);
            }
            None => assert!(!must, "get missed present key {k}"),
        }

        if op % MIXED_COUNTER_EVERY == 0 {
            let c = rng.below(MIXED_COUNTERS);
            increment(map, tracker, c);
            increments[c] += 1;
        }
        if op % MIXED_RACE_EVERY == 0 && races < MIXED_RACE_KEYS {
            next_race(&mut races, &mut race_winners, &mut race_inserted);
        }
        if op % MIXED_ITER_EVERY == MIXED_ITER_EVERY / 2 {
            check_iteration(map, w, &model, &race_winners);
        }
        if op % MIXED_RETAIN_EVERY == MIXED_RETAIN_EVERY - 1 {
            retain_doomed(map, w, &mut model);
        }
        if op % 64 == 0 {
            let stats = map.stats();
            let most = MIXED_THREADS * MIXED_KEYS + MIXED_COUNTERS + MIXED_RACE_KEYS;
            assert!(stats.len <= most && map.len() <= most, "{stats:?}");
            assert!(stats.snapshot_len <= most, "{stats:?}");
        }
    }
    while races < MIXED_RACE_KEYS {
        next_race(&mut races, &mut race_winners, &mut race_inserted);
    }
    held.release_all();
    check_iteration(map, w, &model, &race_winners);
    MixedOutcome {
        model,
        increments,
        race_winners,
        race_inserted,
    }
}

/// Threads own disjoint key ranges and run every operation on them (insert, remove,
/// get_or_insert, try_insert, get_or_insert_with, compare_and_swap, compare_and_remove, get,
/// get_cloned, contains_key), each checked exactly against a per-thread model, while also
/// reading and holding `Ref`s to other threads' keys, incrementing shared counters by
/// compare-and-swap, racing get-or-inserts on shared keys, iterating and retaining.
/// Afterwards: the exact expected contents, `len`, and no leaked or doubly dropped instance.
#[test]
fn mixed_operations_lose_nothing_and_drop_everything_once() {
    let tracker = Tracker::new(8 * MIXED_THREADS * MIXED_OPS + 8 * MIXED_RACE_KEYS + 10_000);
    {
        let map: Map<'_> = new_map();
        let tracker = &tracker;
        for w in 0..MIXED_THREADS {
            for i in 0..MIXED_STABLE {
                let k = own_key(w, i);
                map.insert(Key::new(tracker, k), Val::new(tracker, k, ver_of(w, 0)));
            }
        }
        for c in 0..MIXED_COUNTERS {
            let k = COUNTER_BASE + c as u64;
            map.insert(Key::new(tracker, k), Val::new(tracker, k, 0));
        }

        let raced: Vec<AtomicBool> = (0..MIXED_RACE_KEYS)
            .map(|_| AtomicBool::new(false))
            .collect();
        let outcomes: Vec<MixedOutcome> = thread::scope(|s| {
            let (map, raced) = (&map, &raced[..]);
            let workers: Vec<_> = (0..MIXED_THREADS)
                .map(|w| s.spawn(move || mixed_worker(map, tracker, w, raced)))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });

        // The exact expected contents.
        let mut expected: HashMap<u64, u64> = HashMap::new();
        for (w, outcome) in outcomes.iter().enumerate() {
            for (i, ver) in outcome.model.iter().enumerate() {
                if let Some(ver) = ver {
                    expected.insert(own_key(w, i), *ver);
                }
            }
        }
        for c in 0..MIXED_COUNTERS {
            let total: u64 = outcomes.iter().map(|o| o.increments[c]).sum();
            expected.insert(COUNTER_BASE + c as u64, total);
        }
        let inserted: usize = outcomes.iter().map(|o| o.race_inserted).sum();
        assert_eq!(
            inserted, MIXED_RACE_KEYS,
            "each race key inserted exactly once"
        );
        for r in 0..MIXED_RACE_KEYS {
            let winner = outcomes[0].race_winners[r];
            for outcome in &outcomes {
                assert_eq!(
                    outcome.race_winners[r], winner,
                    "threads disagree on race key {r}"
                );
            }
            expected.insert(RACE_BASE + r as u64, winner);
        }

        for w in 0..MIXED_THREADS {
            for i in 0..MIXED_KEYS {
                let k = own_key(w, i);
                assert_eq!(map.get(&k).map(|v| v.check(k)), expected.get(&k).copied());
            }
        }
        for (&k, &ver) in &expected {
            assert_eq!(map.get(&k).map(|v| v.check(k)), Some(ver), "key {k}");
        }
        assert_eq!(map.len(), expected.len());
        let mut iterated = HashMap::new();
        for (key, value) in &map {
            assert!(iterated.insert(key.k, value.check(key.k)).is_none());
        }
        assert_eq!(iterated, expected);

        // Nothing leaked while the map lives: after the iteration promoted everything, the
        // live keys are the snapshot's entries, and the live values are the present ones plus
        // the displaced ones still waiting in the current epoch.
        let stats = map.stats();
        eprintln!("mixed: {stats:?}");
        assert_eq!(stats.len, expected.len());
        assert_eq!(stats.dirty_len, None, "iteration promotes");
        // A removed key whose entry still held its first value lives until that value's
        // epoch ends, and a retirement that raced a promotion waits in the newer epoch.
        assert!(
            (stats.snapshot_len..=stats.snapshot_len + stats.retired)
                .contains(&tracker.live_keys()),
            "{} live keys: {stats:?}",
            tracker.live_keys()
        );
        assert_eq!(
            tracker.live_values(),
            stats.len + stats.retired,
            "{stats:?}"
        );
    }
    tracker.assert_all_dropped();
}

// ---------------------------------------------------------------------------------------------
// Overwrite-only churn: garbage stays bounded
// ---------------------------------------------------------------------------------------------

/// Several threads overwrite a few keys many times (by insert and compare-and-swap) while a
/// reader holds `Ref`s briefly; afterwards, with no handle left, the retired values still
/// waiting are bounded by the rotation threshold.
#[test]
fn overwrite_churn_keeps_retired_values_bounded() {
    const WRITERS: usize = size(4, 2);
    const KEYS: usize = size(8, 3);
    const OPS: usize = size(100_000, 90);
    let tracker = Tracker::new(3 * WRITERS * OPS + 10_000);
    {
        let map: Map<'_> = new_map();
        let tracker = &tracker;
        for k in 0..KEYS as u64 {
            map.insert(Key::new(tracker, k), Val::new(tracker, k, 0));
        }
        // Promote, so that every overwrite is a lock-free swap of a snapshot entry.
        assert_eq!(map.iter().count(), KEYS);
        let before = map.stats();
        assert!(!before.amended && before.dirty_len.is_none(), "{before:?}");

        let peak = AtomicUsize::new(0);
        let writers_left = AtomicUsize::new(WRITERS);
        let sample = || {
            peak.fetch_max(map.stats().retired, Relaxed);
        };
        thread::scope(|s| {
            for w in 0..WRITERS {
                let (map, writers_left, sample) = (&map, &writers_left, &sample);
                s.spawn(move || {
                    let _counts_out = CountsOut(writers_left);
                    let mut rng = Rng::new(100 + w as u64);
                    for seq in 1..=OPS as u64 {
                        let k = rng.below(KEYS) as u64;
                        let ver = ver_of(w + 1, seq);
                        if seq % 8 == 0 {
                            let current = map.get(&k).expect("never removed");
                            current.check(k);
                            if let Err(back) =
                                map.compare_and_swap(&k, &current, Val::new(tracker, k, ver))
                            {
                                assert_eq!(back.check(k), ver);
                            }
                        } else {
                            let previous =
                                map.insert(Key::new(tracker, k), Val::new(tracker, k, ver));
                            previous.expect("never removed").check(k);
                        }
                        if seq % 256 == 0 {
                            sample();
                        }
                    }
                });
            }
            let (map, writers_left, sample) = (&map, &writers_left, &sample);
            s.spawn(move || {
                let mut rng = Rng::new(99);
                let mut held = Held::new(4);
                let mut reader = map.reader();
                let mut reads = 0_usize;
                while writers_left.load(SeqCst) > 0 {
                    // A `Reader` value, kept across a `get` whose `Ref` is held for a while.
                    let k = rng.below(KEYS) as u64;
                    let kept = reader.get(&k).expect("never removed");
                    let kept_ver = kept.check(k);
                    let k2 = rng.below(KEYS) as u64;
                    let value = map.get(&k2).expect("never removed");
                    let ver = value.check(k2);
                    held.push(k2, ver, value);
                    assert_eq!(kept.check(k), kept_ver, "a Reader's value changed");
                    reads += 1;
                    if reads % 64 == 0 {
                        sample();
                    }
                    if cfg!(miri) {
                        thread::yield_now();
                    }
                }
                held.release_all();
            });
        });

        map.insert(Key::new(tracker, 0), Val::new(tracker, 0, 1));
        let stats = map.stats();
        let peak = peak.load(SeqCst).max(stats.retired);
        eprintln!(
            "overwrite churn: peak retired {peak}, after {} overwrites: {stats:?}",
            WRITERS * OPS
        );
        let bound = ROTATE_EVERY * (WRITERS + 1) + ROTATE_EVERY;
        assert!(
            stats.retired <= bound,
            "{} retired > {bound}: {stats:?}",
            stats.retired
        );
        if WRITERS * OPS >= 2 * ROTATE_EVERY {
            // (Miri's sizes write too little to fill an epoch.)
            assert!(stats.rotations > 0, "{stats:?}");
        }
        assert_eq!(
            stats.promotions, before.promotions,
            "no new key, no promotion"
        );
        assert_eq!(tracker.live_values(), KEYS + stats.retired, "{stats:?}");
    }
    tracker.assert_all_dropped();
}

/// A `Ref` held across heavy concurrent overwrites keeps its own value and every value
/// displaced meanwhile alive; dropping it frees them all (a long chain of epochs at once).
#[test]
fn held_ref_pins_retired_values_until_dropped() {
    const WRITERS: usize = size(3, 2);
    const KEYS: usize = size(4, 2);
    // Under Miri, just enough overwrites to fill an epoch, so that it rotates while pinned.
    const OPS: usize = size(50_000, ROTATE_EVERY / 2 + 40);
    let tracker = Tracker::new(2 * WRITERS * OPS + 1_000);
    {
        // One read/dirty pair: a Ref pins the epochs of its own pair only.
        let map: Map<'_> = DualMap::builder().pairs(1).build();
        let tracker = &tracker;
        for k in 0..KEYS as u64 {
            map.insert(Key::new(tracker, k), Val::new(tracker, k, 0));
        }
        assert_eq!(map.iter().count(), KEYS);
        let held = map.get(&0).unwrap();
        assert_eq!(held.check(0), 0);

        thread::scope(|s| {
            for w in 0..WRITERS {
                let map = &map;
                s.spawn(move || {
                    let mut rng = Rng::new(200 + w as u64);
                    for seq in 1..=OPS as u64 {
                        let k = rng.below(KEYS) as u64;
                        let previous =
                            map.insert(Key::new(tracker, k), Val::new(tracker, k, ver_of(w, seq)));
                        previous.unwrap().check(k);
                    }
                });
            }
        });

        let pinned = map.stats();
        eprintln!("held Ref: {pinned:?}");
        assert!(pinned.retired >= WRITERS * OPS, "{pinned:?}");
        assert!(
            pinned.rotations >= (WRITERS * OPS / ROTATE_EVERY) as u64 / 2,
            "{pinned:?}"
        );
        assert!(pinned.rotations >= 1, "{pinned:?}");
        assert_eq!(tracker.live_values(), KEYS + pinned.retired);
        assert_eq!(held.check(0), 0, "the held value changed");

        drop(held);
        map.insert(Key::new(tracker, 0), Val::new(tracker, 0, 1));
        let released = map.stats();
        let bound = ROTATE_EVERY * (WRITERS + 1) + ROTATE_EVERY;
        assert!(released.retired <= bound, "{released:?}");
        assert!(
            released.retired < pinned.retired,
            "nothing freed: {released:?}"
        );
        assert_eq!(tracker.live_values(), KEYS + released.retired);
    }
    tracker.assert_all_dropped();
}

// ---------------------------------------------------------------------------------------------
// Clear racing with everything
// ---------------------------------------------------------------------------------------------

/// Writers insert, overwrite, remove and compare-and-swap their own keys and hold `Ref`s while
/// clears interleave (from the writers themselves and, natively, from a dedicated thread).
/// Values seen are always intact and belong to the right key and writer; afterwards `len`
/// matches an iteration, a final clear empties the map and frees every entry, the map works
/// again, and the drop accounting balances.
#[test]
fn clear_races_with_writers_and_readers() {
    const WRITERS: usize = size(3, 2);
    const KEYS: usize = size(300, 6);
    const OPS: usize = size(100_000, 80);
    const CLEAR_EVERY: usize = size(700, 20);
    const ITER_EVERY: usize = size(1_000, 25);
    let tracker = Tracker::new(4 * WRITERS * OPS + 10_000);
    {
        let map: Map<'_> = new_map();
        let tracker = &tracker;
        let writers_left = AtomicUsize::new(WRITERS);
        let clears = AtomicUsize::new(0);
        thread::scope(|s| {
            for w in 0..WRITERS {
                let (map, writers_left, clears) = (&map, &writers_left, &clears);
                s.spawn(move || {
                    let _counts_out = CountsOut(writers_left);
                    let mut rng = Rng::new(300 + w as u64);
                    let mut held = Held::new(6);
                    // A value seen for key `k` was stored by its owner, at or before now.
                    let check = |k: u64, value: &Val<'_>, now: u64| {
                        let ver = value.check(k);
                        let (owner, _) = owner_of_key(k).unwrap();
                        assert_eq!(owner_of_ver(ver), owner, "{value:?}");
                        if owner == w {
                            assert!(ver & SEQ_MASK <= now, "{value:?} from the future");
                        }
                        ver
                    };
                    for op in 0..OPS {
                        let seq = op as u64 + 1;
                        let k = own_key(w, rng.below(KEYS));
                        let ver = ver_of(w, seq);
                        match rng.below(10) {
                            0..=3 => {
                                let previous =
                                    map.insert(Key::new(tracker, k), Val::new(tracker, k, ver));
                                if let Some(previous) = previous {
                                    check(k, &previous, seq - 1);
                                }
                            }
                            4 => {
                                if let Some(removed) = map.remove(&k) {
                                    check(k, &removed, seq - 1);
                                }
                            }
                            5 => {
                                let value = map
                                    .get_or_insert(Key::new(tracker, k), Val::new(tracker, k, ver))
                                    .into_ref();
                                check(k, &value, seq);
                            }
                            6 => {
                                if let Some(current) = map.get(&k) {
                                    check(k, &current, seq - 1);
                                    let new = Val::new(tracker, k, ver);
                                    if let Err(back) = map.compare_and_swap(&k, &current, new) {
                                        assert_eq!(back.check(k), ver);
                                    }
                                }
                            }
                            7 => {
                                if let Some(current) = map.get(&k) {
                                    check(k, &current, seq - 1);
                                    map.compare_and_remove(&k, &current);
                                }
                            }
                            _ => {
                                if let Some(value) = map.get(&k) {
                                    let ver = check(k, &value, seq - 1);
                                    held.push(k, ver, value);
                                }
                            }
                        }
                        let other = own_key(rng.below(WRITERS), rng.below(KEYS));
                        if let Some(value) = map.get(&other) {
                            let ver = check(other, &value, seq);
                            held.push(other, ver, value);
                        }
                        if op % CLEAR_EVERY == w * CLEAR_EVERY / WRITERS {
                            map.clear();
                            clears.fetch_add(1, Relaxed);
                        }
                        if op % ITER_EVERY == ITER_EVERY / 2 {
                            let mut seen = HashSet::new();
                            for (key, value) in map.iter() {
                                assert!(seen.insert(key.k), "iteration visited {} twice", key.k);
                                check(key.k, &value, seq);
                            }
                        }
                    }
                    held.release_all();
                });
            }
            if !cfg!(miri) {
                let (map, writers_left, clears) = (&map, &writers_left, &clears);
                s.spawn(move || {
                    while writers_left.load(SeqCst) > 0 {
                        map.clear();
                        clears.fetch_add(1, Relaxed);
                        for _ in 0..100 {
                            thread::yield_now();
                        }
                    }
                });
            }
        });

        // Quiescent: the length counter agrees with an iteration, and nothing leaked.
        let present = map.iter().count();
        assert_eq!(map.len(), present);
        let stats = map.stats();
        eprintln!(
            "clear: {} clears; before the final clear: {stats:?}",
            clears.load(SeqCst)
        );
        assert_eq!(stats.len, present);
        assert_eq!(tracker.live_values(), present + stats.retired, "{stats:?}");

        map.clear();
        let stats = map.stats();
        assert_eq!(map.len(), 0);
        assert!(map.is_empty());
        assert!(map.iter().next().is_none());
        for w in 0..WRITERS {
            for i in 0..KEYS {
                assert!(map.get(&own_key(w, i)).is_none());
            }
        }
        // A pair an earlier clear emptied in place, with no new key since, stays amended
        // with an empty dirty map (`Stats::amended`); every other pair is published empty.
        assert_eq!(
            (stats.len, stats.snapshot_len, stats.dirty_len.unwrap_or(0)),
            (0, 0, 0),
            "{stats:?}"
        );
        assert_eq!(stats.amended, stats.dirty_len.is_some(), "{stats:?}");
        // Only keys pinned by a retired first value outlive the clear: a removal that raced
        // a clear retires to the newer, empty snapshot's epoch, which this clear leaves be.
        assert!(
            tracker.live_keys() <= stats.retired,
            "entries survived the final clear: {} live keys, {stats:?}",
            tracker.live_keys()
        );
        assert_eq!(tracker.live_values(), stats.retired, "{stats:?}");

        // The map still works.
        for i in 0..KEYS {
            let k = own_key(0, i);
            assert!(map
                .insert(Key::new(tracker, k), Val::new(tracker, k, 1))
                .is_none());
        }
        assert_eq!(map.len(), KEYS);
        assert_eq!(map.iter().count(), KEYS);
        map.clear();
        assert!(map.is_empty());
    }
    tracker.assert_all_dropped();
}

// ---------------------------------------------------------------------------------------------
// Refs outlive the map
// ---------------------------------------------------------------------------------------------

/// `Ref`s borrow nothing from the map: threads keep some, every owner of the map lets go of it
/// (so it is dropped while they are held), and the held values are still intact until the
/// `Ref`s are dropped; then everything is freed exactly once.
#[test]
fn refs_outlive_the_map() {
    const THREADS: usize = size(3, 2);
    const KEYS: usize = size(64, 4);
    const OPS: usize = size(20_000, 40);
    let tracker = Tracker::new(3 * THREADS * OPS + 1_000);
    let map: Arc<Map<'_>> = Arc::new(new_map());
    let barrier = Barrier::new(THREADS + 1);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (map, tracker, barrier) = (Arc::clone(&map), &tracker, &barrier);
            s.spawn(move || {
                // Caught, so that this thread reaches the barrier even if it fails.
                let work = panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut rng = Rng::new(400 + t as u64);
                    let mut held = Held::new(8);
                    for seq in 1..=OPS as u64 {
                        let k = rng.below(KEYS) as u64;
                        match rng.below(4) {
                            0 => drop(map.remove(&k)),
                            1 => {
                                let value = Val::new(tracker, k, ver_of(t, seq));
                                if let Some(previous) = map.insert(Key::new(tracker, k), value) {
                                    let ver = previous.check(k);
                                    held.push(k, ver, previous);
                                }
                            }
                            _ => {
                                if let Some(value) = map.get(&k) {
                                    let ver = value.check(k);
                                    held.push(k, ver, value);
                                }
                            }
                        }
                    }
                    held
                }));
                drop(map);
                barrier.wait(); // every owner of the map has let go: it is dropped
                let mut held = work.unwrap_or_else(|panic| panic::resume_unwind(panic));
                assert!(!held.refs.is_empty() || OPS < 8);
                held.release_all();
            });
        }
        drop(map);
        barrier.wait();
    });
    tracker.assert_all_dropped();
}

/// Counters: threads increment shared keys with `update_or_insert_with` (plain `update` on
/// every other call) while one more thread inserts and removes keys of its own, which drives
/// dirty rebuilds, misses and promotions under the counters' feet. No increment is lost or
/// applied twice: the counters add up to the number of increments.
#[test]
fn counters_lose_no_increment() {
    const THREADS: usize = size(2, 2);
    const COUNTERS: u64 = size(8, 3) as u64;
    const INCREMENTS: usize = size(200_000, 150);
    const CHURN: u64 = 1_000_000;
    let map: DualMap<u64, u64> = DualMap::builder().pairs(2).build();
    let done = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (map, done) = (&map, &done);
            s.spawn(move || {
                let mut rng = Rng::new(900 + t as u64);
                for i in 0..INCREMENTS {
                    let k = rng.below(COUNTERS as usize) as u64;
                    if i % 2 == 0 || map.update(&k, |n| n + 1).is_none() {
                        map.update_or_insert_with(k, |n| n + 1, || 1);
                    }
                }
                done.fetch_add(1, SeqCst);
            });
        }
        let (map, done) = (&map, &done);
        s.spawn(move || {
            let mut next = CHURN;
            while done.load(SeqCst) < THREADS {
                map.insert(next, 0);
                if next % 3 == 0 {
                    map.remove(&(next - 2));
                }
                assert!(map.get(&(next + 1)).is_none());
                next += 1;
            }
        });
    });
    let total: u64 = (0..COUNTERS).map(|k| map.get_cloned(&k).unwrap_or(0)).sum();
    assert_eq!(
        total,
        (THREADS * INCREMENTS) as u64,
        "increments lost or doubled"
    );
}
