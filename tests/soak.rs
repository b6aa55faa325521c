//! Soak: every operation at once for a fixed time, with invariants checked all along and at
//! quiescent checkpoints, and exact drop accounting at the end.
//!
//! Workers own keys whose values they write with increasing versions (exact model per key),
//! increment shared counters by compare-and-swap, race to get-or-insert fresh keys each phase,
//! iterate, retain, and read everyone's keys through `get`, `Reader`s and held `Ref`s; a
//! dedicated thread only reads. Checked throughout: every value seen is intact, alive (never
//! read after its drop), made for its key, written by the key's owner and not newer than the
//! owner's progress; each thread sees the versions of a key, counters included, only go up;
//! a race key never changes once seen. At each checkpoint (every thread parked at a barrier):
//! the contents equal the union of the models, counters equal the number of successful
//! compare-and-swaps, each race key was inserted exactly once, `len` agrees, and values alive
//! = values in the map + `stats().retired`. Some checkpoints clear the map (so that the models
//! stay exact; `clear` racing with everything is `tests/stress.rs`'s
//! `clear_races_with_writers_and_readers`). At the end every key and value ever created has
//! been dropped exactly once (`support/tracked.rs`). `stats().retired` is sampled but not
//! bounded here: nothing limits how long a descheduled thread holds its handles; see
//! `tests/memory.rs` for the bound.
//!
//! Duration: `DUALMAP_SOAK_SECS` (default 3). A long run, in release:
//! `DUALMAP_SOAK_SECS=600 cargo test --release --test soak -- --nocapture`. Under Miri the
//! phases are a fixed, tiny number of operations: `cargo +nightly miri test --test soak`.

#[path = "support/tracked.rs"]
mod tracked;

use dualmap::{DualMap, GetOrInsert, Ref, RETIRED_PER_EPOCH};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use tracked::{Key, Rng, Tracker, Val};

type Map<'t> = DualMap<Key<'t>, Val<'t>>;
type ValRef<'t> = Ref<Key<'t>, Val<'t>>;

const fn size(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

const WORKERS: usize = size(3, 2);
/// Keys each worker owns; the first `STABLE` are removed only by clears.
const OWN: usize = size(48, 4);
const STABLE: usize = size(8, 1);
const COUNTERS: usize = size(4, 2);
const RACES_PER_PHASE: usize = size(16, 2);
const HELD: usize = size(4, 2);
/// Operations per worker per phase under Miri (natively, phases are timed).
const MIRI_OPS: usize = 30;
const MIRI_PHASES: usize = 3;
/// Every how many checkpoints the map is cleared.
const CLEAR_EVERY: usize = 3;

/// Worker `w` owns keys `own_key(w, i)`.
fn own_key(w: usize, i: usize) -> u64 {
    ((w as u64 + 1) << 32) | i as u64
}

const COUNTER_BASE: u64 = 1 << 20;
const RACE_BASE: u64 = 1 << 24;

fn race_key(phase: usize, r: usize) -> u64 {
    RACE_BASE + (phase * RACES_PER_PHASE + r) as u64
}

enum Kind {
    Own(usize, usize),
    Counter,
    Race,
}

fn kind(key: u64) -> Kind {
    if key >= 1 << 32 {
        Kind::Own((key >> 32) as usize - 1, (key & 0xFFFF_FFFF) as usize)
    } else if key >= RACE_BASE {
        Kind::Race
    } else {
        assert!(
            (COUNTER_BASE..COUNTER_BASE + COUNTERS as u64).contains(&key),
            "unknown key {key}"
        );
        Kind::Counter
    }
}

/// A value of an own key that `retain` removes.
fn doomed(i: usize, ver: u64) -> bool {
    i >= STABLE && ver % 3 == 0
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

/// A spinning barrier that fails instead of hanging when a participant panicked.
struct Rendezvous {
    parties: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    failed: AtomicBool,
}

impl Rendezvous {
    /// Waits for every party; true for exactly one of them (the last to arrive).
    fn wait(&self) -> bool {
        let generation = self.generation.load(SeqCst);
        if self.arrived.fetch_add(1, SeqCst) + 1 == self.parties {
            self.arrived.store(0, SeqCst);
            self.generation.fetch_add(1, SeqCst);
            return true;
        }
        while self.generation.load(SeqCst) == generation {
            assert!(!self.failed.load(SeqCst), "another thread failed");
            thread::yield_now();
        }
        false
    }
}

/// Marks the rendezvous failed if its thread panics.
struct FailsRendezvous<'a>(&'a Rendezvous);

impl Drop for FailsRendezvous<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.failed.store(true, SeqCst);
        }
    }
}

/// What a worker reports at a checkpoint.
#[derive(Default)]
struct Report {
    model: Vec<Option<u64>>,
    /// Successful increments per counter since the last clear.
    increments: Vec<u64>,
    /// This phase's race keys: the winner each saw, and whether it inserted.
    races: Vec<(u64, bool)>,
}

#[derive(Default)]
struct Totals {
    ops: AtomicU64,
    checks: AtomicU64,
    inserts: AtomicU64,
    removes: AtomicU64,
    get_or_inserts: AtomicU64,
    cas_ok: AtomicU64,
    cas_failed: AtomicU64,
    compare_and_removes: AtomicU64,
    increments: AtomicU64,
    increment_retries: AtomicU64,
    races: AtomicU64,
    reads: AtomicU64,
    reader_reads: AtomicU64,
    iterations: AtomicU64,
    retains: AtomicU64,
    checkpoints: AtomicU64,
    clears: AtomicU64,
    peak_retired: AtomicUsize,
}

struct Shared<'t> {
    map: Map<'t>,
    tracker: &'t Tracker,
    rendezvous: Rendezvous,
    /// Each owner's latest version, stored before it writes it.
    progress: Vec<AtomicU64>,
    reports: Mutex<Vec<Report>>,
    /// Race keys inserted since the last clear, with their winners (checkpoints only).
    races: Mutex<HashMap<u64, u64>>,
    phase: AtomicUsize,
    /// Nanoseconds after `start` at which the current phase ends.
    phase_end: AtomicU64,
    start: Instant,
    cleared: AtomicBool,
    stop: AtomicBool,
    totals: Totals,
}

impl Shared<'_> {
    fn phase_over(&self, ops_in_phase: usize) -> bool {
        if cfg!(miri) {
            ops_in_phase >= MIRI_OPS
        } else {
            ops_in_phase % 16 == 0
                && self.start.elapsed().as_nanos() as u64 >= self.phase_end.load(SeqCst)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Observations of keys a thread does not own
// ---------------------------------------------------------------------------------------------

/// What one thread has seen: per key, the last version (versions only go up, for one
/// observer); reset for counters and race keys when the map is cleared.
#[derive(Default)]
struct Seen {
    last: HashMap<u64, u64>,
    checks: u64,
}

impl Seen {
    /// Checks a value of any key seen by a thread that may not own it; returns its version.
    fn check(&mut self, shared: &Shared<'_>, key: u64, value: &Val<'_>) -> u64 {
        let ver = value.check(key);
        match kind(key) {
            Kind::Own(owner, i) => {
                assert!(owner < WORKERS && i < OWN, "unknown key {key}");
                let progress = shared.progress[owner].load(SeqCst);
                assert!(
                    ver <= progress,
                    "{value:?}: not written yet (owner at {progress})"
                );
            }
            Kind::Counter => {}
            Kind::Race => assert!(ver < WORKERS as u64, "{value:?}: no such worker"),
        }
        let last = self.last.entry(key).or_insert(ver);
        match kind(key) {
            Kind::Race => assert_eq!(*last, ver, "race key {key} changed"),
            _ => assert!(ver >= *last, "key {key} went back from {} to {ver}", *last),
        }
        *last = ver;
        self.checks += 1;
        ver
    }

    fn cleared(&mut self) {
        self.last
            .retain(|&key, _| matches!(kind(key), Kind::Own(..)));
    }
}

// ---------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------

struct Worker<'s, 't> {
    shared: &'s Shared<'t>,
    w: usize,
    rng: Rng,
    model: Vec<Option<u64>>,
    seq: u64,
    held: VecDeque<(u64, u64, ValRef<'t>)>,
    seen: Seen,
    increments: Vec<u64>,
    races: Vec<(u64, bool)>,
}

impl<'s, 't> Worker<'s, 't> {
    fn map(&self) -> &'s Map<'t> {
        &self.shared.map
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, SeqCst);
    }

    fn hold(&mut self, key: u64, ver: u64, value: ValRef<'t>) {
        self.held.push_back((key, ver, value));
        while self.held.len() > HELD {
            let (key, ver, value) = self.held.pop_front().unwrap();
            assert_eq!(value.check(key), ver, "a held Ref changed");
        }
    }

    fn release_all(&mut self) {
        for (key, ver, value) in self.held.drain(..) {
            assert_eq!(value.check(key), ver, "a held Ref changed");
        }
    }

    /// One operation on an own key, checked exactly against the model.
    fn own_op(&mut self) {
        let shared = self.shared;
        let (map, tracker, totals) = (&shared.map, shared.tracker, &shared.totals);
        let i = self.rng.below(OWN);
        let k = own_key(self.w, i);
        let current = self.model[i];
        self.seq += 1;
        let ver = self.seq;
        self.shared.progress[self.w].store(ver, SeqCst);
        let fresh = || Val::new(tracker, k, ver);
        let key = || Key::new(tracker, k);
        let removable = i >= STABLE;
        match self.rng.below(100) {
            0..=29 => {
                let previous = map.insert(key(), fresh());
                assert_eq!(previous.map(|p| p.check(k)), current, "insert {k}");
                self.model[i] = Some(ver);
                self.count(&totals.inserts);
            }
            30..=41 if removable => {
                let removed = map.remove(&k);
                assert_eq!(removed.map(|r| r.check(k)), current, "remove {k}");
                self.model[i] = None;
                self.count(&totals.removes);
            }
            42..=53 => {
                let result = match self.rng.below(3) {
                    0 => map.get_or_insert(key(), fresh()),
                    1 => match map.try_insert(key(), fresh()) {
                        Ok(inserted) => GetOrInsert::Inserted(inserted),
                        Err(occupied) => {
                            assert_eq!(occupied.not_inserted.check(k), ver);
                            GetOrInsert::Loaded(occupied.current)
                        }
                    },
                    _ => {
                        let mut made = false;
                        let result = map.get_or_insert_with(key(), || {
                            made = true;
                            fresh()
                        });
                        assert_eq!(made, result.is_inserted());
                        result
                    }
                };
                match result {
                    GetOrInsert::Loaded(present) => assert_eq!(Some(present.check(k)), current),
                    GetOrInsert::Inserted(inserted) => {
                        assert_eq!((current, inserted.check(k)), (None, ver), "inserted {k}");
                        self.model[i] = Some(ver);
                    }
                }
                self.count(&totals.get_or_inserts);
            }
            54..=67 => {
                let expected = Val::new(tracker, k, current.unwrap_or(u64::MAX));
                match (current, map.compare_and_swap(&k, &expected, fresh())) {
                    (Some(_), Ok(())) => self.model[i] = Some(ver),
                    (None, Err(back)) => assert_eq!(back.check(k), ver),
                    (current, result) => panic!("compare_and_swap {k} on {current:?}: {result:?}"),
                }
                self.count(&totals.cas_ok);
            }
            68..=71 => {
                let wrong = Val::new(tracker, k, u64::MAX - 1);
                let back = map
                    .compare_and_swap(&k, &wrong, fresh())
                    .expect_err("wrong expected");
                assert_eq!(back.check(k), ver);
                self.count(&totals.cas_failed);
            }
            72..=79 if removable => {
                let expected = Val::new(tracker, k, current.unwrap_or(u64::MAX));
                assert_eq!(map.compare_and_remove(&k, &expected), current.is_some());
                self.model[i] = None;
                self.count(&totals.compare_and_removes);
            }
            _ => {
                match map.get(&k) {
                    Some(value) => {
                        let got = value.check(k);
                        assert_eq!(Some(got), current, "get {k}");
                        self.hold(k, got, value);
                    }
                    None => assert_eq!(current, None, "get {k}"),
                }
                self.count(&totals.reads);
            }
        }
        self.seen.checks += 1;
    }

    /// Increments a counter by compare-and-swap against the value just read.
    fn increment(&mut self) {
        let (map, tracker) = (self.map(), self.shared.tracker);
        let c = self.rng.below(COUNTERS);
        let k = COUNTER_BASE + c as u64;
        loop {
            let current = map.get(&k).expect("counters are present between clears");
            let count = self.seen.check(self.shared, k, &current);
            match map.compare_and_swap(&k, &current, Val::new(tracker, k, count + 1)) {
                Ok(()) => break,
                Err(back) => {
                    assert_eq!(back.check(k), count + 1);
                    self.count(&self.shared.totals.increment_retries);
                }
            }
        }
        self.increments[c] += 1;
        self.count(&self.shared.totals.increments);
    }

    /// Get-or-inserts the next race key of this phase (each worker starts at its own).
    fn race(&mut self) {
        let r = (self.races.len() + self.w * RACES_PER_PHASE / WORKERS) % RACES_PER_PHASE;
        let k = race_key(self.shared.phase.load(SeqCst), r);
        let (map, tracker) = (self.map(), self.shared.tracker);
        let mine = self.w as u64;
        let (value, inserted) =
            match map.get_or_insert(Key::new(tracker, k), Val::new(tracker, k, mine)) {
                GetOrInsert::Inserted(value) => (value, true),
                GetOrInsert::Loaded(value) => (value, false),
            };
        let winner = self.seen.check(self.shared, k, &value);
        if inserted {
            assert_eq!(winner, mine);
        }
        self.races.push((winner, inserted));
        self.count(&self.shared.totals.races);
    }

    /// Reads a key of any kind, by `get` (holding the `Ref`) or through the `Reader`.
    fn read_any(&mut self, reader: &mut dualmap::Reader<'s, Key<'t>, Val<'t>>) {
        let k = any_key(&mut self.rng, self.shared.phase.load(SeqCst));
        if self.rng.below(2) == 0 {
            if let Some(value) = self.map().get(&k) {
                let ver = self.seen.check(self.shared, k, &value);
                self.hold(k, ver, value);
            }
            self.count(&self.shared.totals.reads);
        } else {
            if let Some(value) = reader.get(&k) {
                self.seen.check(self.shared, k, value);
            }
            self.count(&self.shared.totals.reader_reads);
        }
    }

    /// Iterates, with `iter` or `for_each`: every key at most once, own keys exactly as
    /// modelled, every counter present.
    fn iterate(&mut self, by_for_each: bool) {
        let mut visited = HashSet::new();
        let mut own = 0;
        let (map, shared, w, model, seen) =
            (self.map(), self.shared, self.w, &self.model, &mut self.seen);
        let mut visit = |key: &Key, value: &Val<'_>| {
            assert!(visited.insert(key.k), "key {} visited twice", key.k);
            let ver = seen.check(shared, key.k, value);
            if let Kind::Own(owner, i) = kind(key.k) {
                if owner == w {
                    assert_eq!(Some(ver), model[i], "iteration: own key {}", key.k);
                    own += 1;
                }
            }
        };
        if by_for_each {
            map.for_each(|key, value| visit(key, value));
        } else {
            for (key, value) in map.iter() {
                visit(&key, &value);
            }
        }
        assert_eq!(
            own,
            self.model.iter().flatten().count(),
            "iteration missed own keys"
        );
        for c in 0..COUNTERS as u64 {
            assert!(
                visited.contains(&(COUNTER_BASE + c)),
                "iteration missed a counter"
            );
        }
        self.count(&self.shared.totals.iterations);
    }

    /// Removes this worker's doomed values, and nothing else, with `retain`.
    fn retain_doomed(&mut self) {
        let (w, shared) = (self.w, self.shared);
        let model = &self.model;
        let seen = &mut self.seen;
        let mut visited = HashSet::new();
        self.shared.map.retain(|key, value| {
            let ver = seen.check(shared, key.k, value);
            match kind(key.k) {
                Kind::Own(owner, i) if owner == w => {
                    visited.insert(i);
                    assert_eq!(Some(ver), model[i], "retain: own key {}", key.k);
                    !doomed(i, ver)
                }
                _ => true,
            }
        });
        let present: HashSet<usize> = (0..OWN).filter(|&i| self.model[i].is_some()).collect();
        assert_eq!(visited, present, "retain: own keys visited");
        for (i, slot) in self.model.iter_mut().enumerate() {
            if slot.is_some_and(|ver| doomed(i, ver)) {
                *slot = None;
            }
        }
        self.count(&self.shared.totals.retains);
    }

    fn run(mut self) {
        let shared = self.shared;
        let _fails = FailsRendezvous(&shared.rendezvous);
        loop {
            let mut reader = shared.map.reader();
            let mut ops = 0;
            while !shared.phase_over(ops) {
                ops += 1;
                self.own_op();
                self.read_any(&mut reader);
                if ops % 8 == 0 {
                    self.increment();
                }
                if ops % 32 == 0 && self.races.len() < RACES_PER_PHASE {
                    self.race();
                }
                if ops % size(500, 10) == 250 % size(500, 10) {
                    self.iterate(ops % size(1000, 20) == 250 % size(1000, 20));
                }
                if ops % size(2000, 25) == size(1999, 24) {
                    self.retain_doomed();
                }
                if ops % 64 == 0 {
                    shared
                        .totals
                        .peak_retired
                        .fetch_max(shared.map.stats().retired, SeqCst);
                }
            }
            while self.races.len() < RACES_PER_PHASE {
                self.race();
            }
            shared.totals.ops.fetch_add(ops as u64, SeqCst);
            // Quiesce: no handle survives into the checkpoint.
            self.release_all();
            drop(reader);
            shared.reports.lock().unwrap()[self.w] = Report {
                model: self.model.clone(),
                increments: self.increments.clone(),
                races: std::mem::take(&mut self.races),
            };
            if shared.rendezvous.wait() {
                checkpoint(shared);
            }
            shared.rendezvous.wait();
            if shared.cleared.load(SeqCst) {
                self.model.iter_mut().for_each(|slot| *slot = None);
                self.increments.iter_mut().for_each(|n| *n = 0);
                self.seen.cleared();
            }
            if shared.stop.load(SeqCst) {
                break;
            }
        }
        shared.totals.checks.fetch_add(self.seen.checks, SeqCst);
    }
}

fn any_key(rng: &mut Rng, phase: usize) -> u64 {
    match rng.below(8) {
        0 => COUNTER_BASE + rng.below(COUNTERS) as u64,
        1 => race_key(rng.below(phase + 1), rng.below(RACES_PER_PHASE)),
        _ => own_key(rng.below(WORKERS), rng.below(OWN)),
    }
}

/// The reading thread: a `Reader` and `get`s with held `Ref`s, on every kind of key.
fn reader_thread(shared: &Shared<'_>) {
    let _fails = FailsRendezvous(&shared.rendezvous);
    let mut rng = Rng::new(1_000);
    let mut seen = Seen::default();
    let mut held: VecDeque<(u64, u64, ValRef<'_>)> = VecDeque::new();
    loop {
        let mut reader = shared.map.reader();
        let mut ops = 0;
        while !shared.phase_over(ops) {
            ops += 1;
            let k = any_key(&mut rng, shared.phase.load(SeqCst));
            if let Some(value) = reader.get(&k) {
                seen.check(shared, k, value);
            }
            let k = any_key(&mut rng, shared.phase.load(SeqCst));
            if let Some(value) = shared.map.get(&k) {
                let ver = seen.check(shared, k, &value);
                held.push_back((k, ver, value));
                if held.len() > HELD {
                    let (k, ver, value) = held.pop_front().unwrap();
                    assert_eq!(value.check(k), ver, "a held Ref changed");
                }
            }
            if ops % 4 == 0 {
                thread::yield_now(); // two cores: leave most of the time to the workers
            }
        }
        shared.totals.reader_reads.fetch_add(ops as u64 * 2, SeqCst);
        held.clear();
        drop(reader);
        if shared.rendezvous.wait() {
            checkpoint(shared);
        }
        shared.rendezvous.wait();
        if shared.cleared.load(SeqCst) {
            seen.cleared();
        }
        if shared.stop.load(SeqCst) {
            break;
        }
    }
    shared.totals.checks.fetch_add(seen.checks, SeqCst);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------

/// Run by one thread while all others wait: checks the whole map against the reports, then
/// decides whether to clear, and whether to stop.
fn checkpoint(shared: &Shared<'_>) {
    let map = &shared.map;
    let tracker = shared.tracker;
    let phase = shared.phase.load(SeqCst);
    let reports = shared.reports.lock().unwrap();
    let mut expected: HashMap<u64, u64> = HashMap::new();
    for (w, report) in reports.iter().enumerate() {
        for (i, ver) in report.model.iter().enumerate() {
            if let Some(ver) = ver {
                expected.insert(own_key(w, i), *ver);
            }
        }
    }
    for c in 0..COUNTERS {
        let total: u64 = reports.iter().map(|report| report.increments[c]).sum();
        expected.insert(COUNTER_BASE + c as u64, total);
    }
    // Race keys: this phase's from the reports, and those of earlier phases since the last clear.
    let mut races = shared.races.lock().unwrap();
    for r in 0..RACES_PER_PHASE {
        // Worker w's j-th race was key (j + w * RACES_PER_PHASE / WORKERS) % RACES_PER_PHASE.
        let outcomes: Vec<(u64, bool)> = (0..WORKERS)
            .map(|w| {
                let j = (r + RACES_PER_PHASE - w * RACES_PER_PHASE / WORKERS % RACES_PER_PHASE)
                    % RACES_PER_PHASE;
                reports[w].races[j]
            })
            .collect();
        let winner = outcomes[0].0;
        assert!(
            outcomes.iter().all(|&(seen, _)| seen == winner),
            "race {r}: {outcomes:?}"
        );
        let inserted = outcomes.iter().filter(|&&(_, inserted)| inserted).count();
        assert_eq!(
            inserted, 1,
            "race key {r} inserted {inserted} times: {outcomes:?}"
        );
        assert!(
            outcomes[winner as usize].1,
            "race {r}: the winner did not insert"
        );
        races.insert(race_key(phase, r), winner);
    }
    expected.extend(races.iter().map(|(&k, &winner)| (k, winner)));
    drop(reports);

    let mut found: HashMap<u64, u64> = HashMap::new();
    for (key, value) in map.iter() {
        let ver = value.check(key.k);
        assert!(
            found.insert(key.k, ver).is_none(),
            "key {} visited twice",
            key.k
        );
    }
    assert_eq!(found.len(), expected.len(), "contents differ in size");
    for (k, ver) in &expected {
        assert_eq!(found.get(k), Some(ver), "key {k}");
        assert_eq!(map.get(k).map(|v| v.check(*k)), Some(*ver), "get {k}");
    }
    // Quiescent, no handle anywhere: exact counts (the iteration promoted everything).
    let stats = map.stats();
    assert_eq!(map.len(), expected.len(), "{stats:?}");
    assert_eq!(stats.len, expected.len(), "{stats:?}");
    assert_eq!(stats.dirty_len, None, "{stats:?}");
    // A removed key whose entry still held its first value lives until that value's epoch
    // ends, and a retirement that raced a promotion waits in the newer epoch.
    assert!(
        (stats.snapshot_len..=stats.snapshot_len + stats.retired).contains(&tracker.live_keys()),
        "{} live keys: {stats:?}",
        tracker.live_keys()
    );
    assert_eq!(
        tracker.live_values(),
        stats.len + stats.retired,
        "{stats:?}"
    );
    // In each read/dirty pair, the last epoch to fill was rotated.
    assert!(stats.retired < stats.pairs * RETIRED_PER_EPOCH, "{stats:?}");

    let checkpoints = shared.totals.checkpoints.fetch_add(1, SeqCst) + 1;
    let clear = checkpoints % CLEAR_EVERY as u64 == 0;
    if clear {
        map.clear();
        assert!(map.is_empty() && map.iter().next().is_none());
        let stats = map.stats();
        assert!(
            tracker.live_keys() <= stats.retired,
            "entries survived a clear: {} live keys, {stats:?}",
            tracker.live_keys()
        );
        for c in 0..COUNTERS as u64 {
            let k = COUNTER_BASE + c;
            map.insert(Key::new(tracker, k), Val::new(tracker, k, 0));
        }
        races.clear();
        shared.totals.clears.fetch_add(1, SeqCst);
    }
    shared.cleared.store(clear, SeqCst);
    let stop = if cfg!(miri) {
        phase + 1 >= MIRI_PHASES
    } else {
        shared.start.elapsed() >= soak_duration()
    };
    shared.stop.store(stop, SeqCst);
    shared.phase.store(phase + 1, SeqCst);
    let phase_end = (shared.start.elapsed() + phase_length()).min(soak_duration());
    shared.phase_end.store(phase_end.as_nanos() as u64, SeqCst);
}

fn soak_duration() -> Duration {
    let secs = std::env::var("DUALMAP_SOAK_SECS")
        .ok()
        .and_then(|secs| secs.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// A checkpoint about every quarter second (more often in short runs).
fn phase_length() -> Duration {
    (soak_duration() / 12).min(Duration::from_millis(250))
}

#[test]
fn soak() {
    let tracker = Tracker::new();
    {
        let shared = Shared {
            map: DualMap::new(),
            tracker: &tracker,
            rendezvous: Rendezvous {
                parties: WORKERS + 1,
                arrived: AtomicUsize::new(0),
                generation: AtomicUsize::new(0),
                failed: AtomicBool::new(false),
            },
            progress: (0..WORKERS).map(|_| AtomicU64::new(0)).collect(),
            reports: Mutex::new((0..WORKERS).map(|_| Report::default()).collect()),
            races: Mutex::new(HashMap::new()),
            phase: AtomicUsize::new(0),
            phase_end: AtomicU64::new(phase_length().as_nanos() as u64),
            start: Instant::now(),
            cleared: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            totals: Totals::default(),
        };
        for c in 0..COUNTERS as u64 {
            let k = COUNTER_BASE + c;
            shared
                .map
                .insert(Key::new(&tracker, k), Val::new(&tracker, k, 0));
        }
        thread::scope(|s| {
            let shared = &shared;
            for w in 0..WORKERS {
                s.spawn(move || {
                    Worker {
                        shared,
                        w,
                        rng: Rng::new(w as u64 + 1),
                        model: vec![None; OWN],
                        seq: 0,
                        held: VecDeque::new(),
                        seen: Seen::default(),
                        increments: vec![0; COUNTERS],
                        races: Vec::new(),
                    }
                    .run()
                });
            }
            s.spawn(move || reader_thread(shared));
        });
        let elapsed = shared.start.elapsed();
        let stats = shared.map.stats();
        let t = &shared.totals;
        let n = |counter: &AtomicU64| counter.load(SeqCst);
        eprintln!(
            "soak: {elapsed:.1?}, {WORKERS} workers + 1 reader: {} worker steps ({:.0}/s), \
             {} value checks, {} checkpoints, {} clears\n  \
             inserts {}, removes {}, get-or-inserts {}, CAS {} ok-or-absent + {} wrong, \
             compare-and-removes {}, counter increments {} ({} retries), races {}, \
             gets {}, Reader reads {}, iterations {}, retains {}\n  \
             peak retired {}; instances created {}, slots used {}; final {stats:?}",
            n(&t.ops),
            n(&t.ops) as f64 / elapsed.as_secs_f64(),
            n(&t.checks),
            n(&t.checkpoints),
            n(&t.clears),
            n(&t.inserts),
            n(&t.removes),
            n(&t.get_or_inserts),
            n(&t.cas_ok),
            n(&t.cas_failed),
            n(&t.compare_and_removes),
            n(&t.increments),
            n(&t.increment_retries),
            n(&t.races),
            n(&t.reads),
            n(&t.reader_reads),
            n(&t.iterations),
            n(&t.retains),
            t.peak_retired.load(SeqCst),
            tracker.created(),
            tracker.slots(),
        );
        assert!(n(&t.checkpoints) >= 2);
    }
    tracker.assert_all_dropped();
}
