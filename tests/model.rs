//! Model-based test: random operation sequences on a small key space, run on a `DualMap` and
//! on a `std::collections::HashMap`, compared op by op (Go's `TestMapMatchesRWMutex` in
//! spirit). Six keys and four values make promotions, tombstones, expunges and
//! compare-and-swap hits frequent.
//!
//! quickcheck 1.1 prints no seed, so the property takes an arbitrary `u64` seed and a length,
//! and the operations come from a SplitMix64 generator seeded by it. A mismatch panics with
//! the seed, the length and the op index. Replay one sequence with
//! `DUALMAP_SEED=<u64> [DUALMAP_LEN=<ops>] cargo test --test model replay`; the number of
//! random sequences is `QUICKCHECK_TESTS` (default 2,000).
//!
//! Keys and values are tracked instances: each one registers a fresh id when created (or
//! cloned) and unregisters it when dropped, so after each sequence the test checks that every
//! key and value ever created was dropped exactly once.

use dualmap::{DualMap, GetOrInsert, Ref};
use quickcheck::QuickCheck;
use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Keys are `0..KEYS`, values `0..VALUES`.
const KEYS: u64 = 6;
const VALUES: u64 = 4;
/// Longest sequence the property generates.
const MAX_LEN: usize = 200;
const DEFAULT_CASES: u64 = 2_000;

// ---------------------------------------------------------------------------------------------
// Tracked keys and values.

thread_local! {
    static LIVE: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
    static CREATED: Cell<u64> = const { Cell::new(0) };
    static BAD_DROPS: Cell<u64> = const { Cell::new(0) };
}

fn register() -> u64 {
    let id = NEXT_ID.with(|next| {
        let id = next.get();
        next.set(id + 1);
        id
    });
    CREATED.with(|created| created.set(created.get() + 1));
    LIVE.with(|live| live.borrow_mut().insert(id));
    id
}

fn unregister(id: u64) {
    let was_live = LIVE.with(|live| live.borrow_mut().remove(&id));
    if !was_live {
        // A double drop or a drop of something never created: counted, checked later
        // (panicking inside `Drop` could abort).
        BAD_DROPS.with(|bad| bad.set(bad.get() + 1));
    }
}

fn is_live(id: u64) -> bool {
    LIVE.with(|live| live.borrow().contains(&id))
}

/// Forgets instances left over from an earlier sequence (one that panicked).
fn reset_registry() {
    LIVE.with(|live| live.borrow_mut().clear());
    CREATED.with(|created| created.set(0));
    BAD_DROPS.with(|bad| bad.set(0));
}

/// A key: compared and hashed by `k` only, so the map can be queried with `&u8`.
struct Key {
    k: u8,
    id: u64,
}

impl Key {
    fn new(k: u8) -> Self {
        Self { k, id: register() }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        unregister(self.id);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.k.hash(state);
    }
}

impl Borrow<u8> for Key {
    fn borrow(&self) -> &u8 {
        &self.k
    }
}

/// A value: compared by `v` only; a clone is a new tracked instance.
struct Val {
    v: u8,
    id: u64,
}

impl Val {
    fn new(v: u8) -> Self {
        Self { v, id: register() }
    }
}

impl Clone for Val {
    fn clone(&self) -> Self {
        Self::new(self.v)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        unregister(self.id);
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        self.v == other.v
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.v)
    }
}

// ---------------------------------------------------------------------------------------------
// Operations.

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn key(&mut self) -> u8 {
        self.below(KEYS) as u8
    }

    fn value(&mut self) -> u8 {
        self.below(VALUES) as u8
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Get(u8),
    GetCloned(u8),
    ContainsKey(u8),
    Insert(u8, u8),
    GetOrInsert(u8, u8),
    TryInsert(u8, u8),
    GetOrInsertWith(u8, u8),
    Remove(u8),
    /// key, expected, new
    CompareAndSwap(u8, u8, u8),
    /// key, expected
    CompareAndRemove(u8, u8),
    Iter,
    Keys,
    Values,
    /// keep (k, v) iff the bit of `mask` at `k * VALUES + v` is set
    Retain(u64),
    Clear,
    Len,
    /// Keep a `Ref` to the key's value across later operations.
    Hold(u8),
    DropHeld,
}

impl Op {
    /// The next operation. Compare-and-swap and compare-and-remove use the model's current
    /// value as `expected` half of the time, so that both outcomes are frequent.
    fn generate(rng: &mut SplitMix64, model: &HashMap<u8, u8>) -> Op {
        let key = rng.key();
        let expected = |rng: &mut SplitMix64| match model.get(&key) {
            Some(&v) if rng.below(2) == 0 => v,
            _ => rng.value(),
        };
        match rng.below(100) {
            0..=13 => Op::Get(key),
            14..=17 => Op::GetCloned(key),
            18..=21 => Op::ContainsKey(key),
            22..=43 => Op::Insert(key, rng.value()),
            44..=48 => Op::GetOrInsert(key, rng.value()),
            49..=52 => Op::TryInsert(key, rng.value()),
            53..=56 => Op::GetOrInsertWith(key, rng.value()),
            57..=66 => Op::Remove(key),
            67..=74 => Op::CompareAndSwap(key, expected(rng), rng.value()),
            75..=81 => Op::CompareAndRemove(key, expected(rng)),
            82..=84 => Op::Iter,
            85..=86 => Op::Keys,
            87..=88 => Op::Values,
            89..=90 => Op::Retain(rng.next()),
            91 => Op::Clear,
            92..=93 => Op::Len,
            94..=97 => Op::Hold(key),
            _ => Op::DropHeld,
        }
    }
}

fn keep(mask: u64, k: u8, v: u8) -> bool {
    mask >> (u64::from(k) * VALUES + u64::from(v)) & 1 == 1
}

// ---------------------------------------------------------------------------------------------
// Running a sequence.

/// Sequences and ops run by the quickcheck property (other tests run beside it).
static SEQUENCES: AtomicU64 = AtomicU64::new(0);
static OPS: AtomicU64 = AtomicU64::new(0);

type Map = DualMap<Key, Val>;

/// Where a mismatch happened, for the panic message.
struct Context {
    seed: u64,
    len: usize,
    index: usize,
    op: Option<Op>,
}

impl Context {
    fn fail(&self, what: fmt::Arguments<'_>) -> ! {
        panic!(
            "model mismatch: seed={} len={} op #{} {:?}: {}\n\
             replay: DUALMAP_SEED={} DUALMAP_LEN={} cargo test --test model replay",
            self.seed, self.len, self.index, self.op, what, self.seed, self.len
        )
    }
}

macro_rules! check {
    ($ctx:expr, $cond:expr, $($what:tt)+) => {
        if !$cond {
            $ctx.fail(format_args!($($what)+))
        }
    };
}

macro_rules! check_eq {
    ($ctx:expr, $left:expr, $right:expr, $($what:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            $ctx.fail(format_args!(
                "{}: map {:?} != model {:?}",
                format_args!($($what)+),
                left,
                right
            ))
        }
    }};
}

fn sorted_model(model: &HashMap<u8, u8>) -> Vec<(u8, u8)> {
    let mut pairs: Vec<(u8, u8)> = model.iter().map(|(&k, &v)| (k, v)).collect();
    pairs.sort_unstable();
    pairs
}

fn sorted_map(map: &Map) -> Vec<(u8, u8)> {
    let mut pairs: Vec<(u8, u8)> = map.iter().map(|(k, v)| (k.k, v.v)).collect();
    pairs.sort_unstable();
    pairs
}

/// Checks `len`, `is_empty`, `stats().len` and the structural invariants of the stats.
fn check_shape(ctx: &Context, map: &Map, model: &HashMap<u8, u8>) {
    check_eq!(ctx, map.len(), model.len(), "len");
    check_eq!(ctx, map.is_empty(), model.is_empty(), "is_empty");
    let stats = map.stats();
    check_eq!(ctx, stats.len, model.len(), "stats().len");
    // amended exactly while a dirty map exists (rebuilds publish amended; promotions and
    // clears drop the dirty map and publish non-amended).
    check_eq!(
        ctx,
        stats.amended,
        stats.dirty_len.is_some(),
        "amended vs dirty map"
    );
    // Every miss is checked against the dirty map's size, so misses stay below it.
    match stats.dirty_len {
        Some(dirty_len) => {
            check!(ctx, stats.misses < dirty_len, "misses {stats:?}");
            check!(
                ctx,
                stats.len <= dirty_len,
                "dirty map lacks live keys {stats:?}"
            );
        }
        None => {
            check_eq!(ctx, stats.misses, 0, "misses without a dirty map");
            check!(
                ctx,
                stats.len <= stats.snapshot_len,
                "snapshot lacks live keys {stats:?}"
            );
        }
    }
}

/// Runs `len` operations derived from `seed`; panics on the first mismatch. Returns the
/// number of operations run.
fn run_sequence(seed: u64, len: usize) -> u64 {
    reset_registry();
    let mut rng = SplitMix64(seed);
    let mut ctx = Context {
        seed,
        len,
        index: 0,
        op: None,
    };
    let map: Map = DualMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4));
    let mut model: HashMap<u8, u8> = HashMap::new();
    let mut held: Vec<(u8, u8, Ref<Key, Val>)> = Vec::new();

    for index in 0..len {
        let op = Op::generate(&mut rng, &model);
        ctx.index = index;
        ctx.op = Some(op);
        apply(&ctx, op, &map, &mut model, &mut held);
        check_shape(&ctx, &map, &model);
        // A held Ref shows the value it was read as, and that value is still alive.
        for (k, v, r) in &held {
            check!(
                ctx,
                r.v == *v && is_live(r.id),
                "held Ref of key {k} changed"
            );
        }
    }

    ctx.index = len;
    ctx.op = None;
    check_eq!(
        ctx,
        sorted_map(&map),
        sorted_model(&model),
        "final contents"
    );
    for (k, v) in &model {
        check_eq!(
            ctx,
            map.get_cloned(k).map(|v| v.v),
            Some(*v),
            "final get {k}"
        );
    }
    drop(held);
    drop(map);
    let live = LIVE.with(|live| live.borrow().len());
    let bad = BAD_DROPS.with(Cell::get);
    let created = CREATED.with(Cell::get);
    check!(
        ctx,
        live == 0 && bad == 0,
        "after dropping the map: {live} of {created} keys and values never dropped, \
         {bad} dropped twice"
    );
    len as u64
}

fn apply(
    ctx: &Context,
    op: Op,
    map: &Map,
    model: &mut HashMap<u8, u8>,
    held: &mut Vec<(u8, u8, Ref<Key, Val>)>,
) {
    match op {
        Op::Get(k) => {
            check_eq!(ctx, map.get(&k).map(|r| r.v), model.get(&k).copied(), "get");
        }
        Op::GetCloned(k) => {
            let cloned = map.get_cloned(&k);
            check_eq!(
                ctx,
                cloned.as_ref().map(|v| v.v),
                model.get(&k).copied(),
                "get_cloned"
            );
        }
        Op::ContainsKey(k) => {
            check_eq!(
                ctx,
                map.contains_key(&k),
                model.contains_key(&k),
                "contains_key"
            );
        }
        Op::Insert(k, v) => {
            let previous = map.insert(Key::new(k), Val::new(v)).map(|r| r.v);
            check_eq!(ctx, previous, model.insert(k, v), "insert's previous value");
        }
        Op::GetOrInsert(k, v) => {
            let result = map.get_or_insert(Key::new(k), Val::new(v));
            match (result, model.get(&k).copied()) {
                (GetOrInsert::Loaded(r), Some(current)) => {
                    check_eq!(ctx, r.v, current, "get_or_insert loaded");
                }
                (GetOrInsert::Inserted(r), None) => {
                    check_eq!(ctx, r.v, v, "get_or_insert inserted");
                    model.insert(k, v);
                }
                (result, current) => ctx.fail(format_args!(
                    "get_or_insert: map {result:?}, model had {current:?}"
                )),
            }
        }
        Op::TryInsert(k, v) => {
            let offered = Val::new(v);
            let offered_id = offered.id;
            match (map.try_insert(Key::new(k), offered), model.get(&k).copied()) {
                (Ok(r), None) => {
                    check!(
                        ctx,
                        r.v == v && r.id == offered_id,
                        "try_insert stored another value"
                    );
                    model.insert(k, v);
                }
                (Err(err), Some(current)) => {
                    check_eq!(ctx, err.current.v, current, "OccupiedError::current");
                    check!(
                        ctx,
                        err.not_inserted.v == v && err.not_inserted.id == offered_id,
                        "OccupiedError::not_inserted is not the offered value"
                    );
                }
                (Ok(r), Some(current)) => {
                    ctx.fail(format_args!("try_insert inserted {} over {current}", r.v))
                }
                (Err(err), None) => ctx.fail(format_args!(
                    "try_insert refused over an absent key: {err:?}"
                )),
            }
        }
        Op::GetOrInsertWith(k, v) => {
            let mut called = false;
            let result = map.get_or_insert_with(Key::new(k), || {
                called = true;
                Val::new(v)
            });
            let current = model.get(&k).copied();
            check_eq!(
                ctx,
                called,
                current.is_none(),
                "get_or_insert_with called make"
            );
            match (result, current) {
                (GetOrInsert::Loaded(r), Some(current)) => {
                    check_eq!(ctx, r.v, current, "get_or_insert_with loaded");
                }
                (GetOrInsert::Inserted(r), None) => {
                    check_eq!(ctx, r.v, v, "get_or_insert_with inserted");
                    model.insert(k, v);
                }
                (result, current) => ctx.fail(format_args!(
                    "get_or_insert_with: map {result:?}, model had {current:?}"
                )),
            }
        }
        Op::Remove(k) => {
            check_eq!(ctx, map.remove(&k).map(|r| r.v), model.remove(&k), "remove");
        }
        Op::CompareAndSwap(k, expected, new) => {
            let result = map.compare_and_swap(&k, &Val::new(expected), Val::new(new));
            if model.get(&k) == Some(&expected) {
                check!(ctx, result.is_ok(), "compare_and_swap refused: {result:?}");
                model.insert(k, new);
            } else {
                match result {
                    Err(back) => check_eq!(ctx, back.v, new, "compare_and_swap gave back"),
                    Ok(()) => ctx.fail(format_args!(
                        "compare_and_swap succeeded, model has {:?}",
                        model.get(&k)
                    )),
                }
            }
        }
        Op::CompareAndRemove(k, expected) => {
            let removed = map.compare_and_remove(&k, &Val::new(expected));
            let matches = model.get(&k) == Some(&expected);
            check_eq!(ctx, removed, matches, "compare_and_remove");
            if matches {
                model.remove(&k);
            }
        }
        Op::Iter => {
            check_eq!(ctx, sorted_map(map), sorted_model(model), "iter");
        }
        Op::Keys => {
            let mut keys: Vec<u8> = map.keys().map(|k| k.k).collect();
            keys.sort_unstable();
            let mut expected: Vec<u8> = model.keys().copied().collect();
            expected.sort_unstable();
            check_eq!(ctx, keys, expected, "keys");
        }
        Op::Values => {
            let mut values: Vec<u8> = map.values().map(|v| v.v).collect();
            values.sort_unstable();
            let mut expected: Vec<u8> = model.values().copied().collect();
            expected.sort_unstable();
            check_eq!(ctx, values, expected, "values");
        }
        Op::Retain(mask) => {
            let mut visited = Vec::new();
            map.retain(|k, v| {
                visited.push((k.k, v.v));
                keep(mask, k.k, v.v)
            });
            visited.sort_unstable();
            check_eq!(
                ctx,
                visited,
                sorted_model(model),
                "retain visits each pair once"
            );
            model.retain(|&k, &mut v| keep(mask, k, v));
        }
        Op::Clear => {
            map.clear();
            model.clear();
        }
        Op::Len => {
            check_eq!(ctx, map.len(), model.len(), "len");
        }
        Op::Hold(k) => {
            if held.len() >= 4 {
                held.remove(0);
            }
            if let Some(r) = map.get(&k) {
                check_eq!(ctx, Some(r.v), model.get(&k).copied(), "get to hold");
                held.push((k, r.v, r));
            }
        }
        Op::DropHeld => held.clear(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

fn property(seed: u64, len: u16) -> bool {
    let ops = run_sequence(seed, usize::from(len) % (MAX_LEN + 1));
    SEQUENCES.fetch_add(1, Relaxed);
    OPS.fetch_add(ops, Relaxed);
    true
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a u64")),
    )
}

#[test]
fn matches_hashmap_on_random_sequences() {
    let cases = env_u64("QUICKCHECK_TESTS").unwrap_or(DEFAULT_CASES);
    QuickCheck::new()
        .tests(cases)
        .max_tests(cases.saturating_mul(10))
        .quickcheck(property as fn(u64, u16) -> bool);
    let (sequences, ops) = (SEQUENCES.load(Relaxed), OPS.load(Relaxed));
    eprintln!("model: checked {sequences} random sequences, {ops} ops (up to {MAX_LEN} ops each)");
    assert!(
        sequences >= cases,
        "{sequences} sequences run, {cases} asked"
    );
}

/// Seeds checked on every run. Add a seed here when a random run finds a bug.
const REGRESSION_SEEDS: &[u64] = &[
    0,
    1,
    2,
    3,
    42,
    0xDEAD_BEEF,
    0x0123_4567_89AB_CDEF,
    u64::MAX,
    u64::MAX / 3,
    1 << 63,
];

/// With `DUALMAP_SEED` set, replays exactly that sequence (length `DUALMAP_LEN`, default
/// 200); otherwise runs the regression seeds.
#[test]
fn replay() {
    match env_u64("DUALMAP_SEED") {
        Some(seed) => {
            let len = env_u64("DUALMAP_LEN").map_or(MAX_LEN, |len| len as usize);
            run_sequence(seed, len);
            eprintln!("model: replayed seed {seed}, {len} ops: ok");
        }
        None => {
            let mut ops = 0;
            for &seed in REGRESSION_SEEDS {
                ops += run_sequence(seed, MAX_LEN);
            }
            eprintln!(
                "model: {} regression seeds, {ops} ops: ok",
                REGRESSION_SEEDS.len()
            );
        }
    }
}

/// A few long sequences, long enough for many promotion / rebuild cycles and for epoch
/// rotations (`RETIRED_PER_EPOCH` displaced values per epoch) while `Ref`s are held.
#[test]
fn long_sequences() {
    let mut ops = 0;
    for seed in 1_000..1_010 {
        ops += run_sequence(seed, 5_000);
    }
    eprintln!("model: 10 long sequences, {ops} ops: ok");
}

/// The generator itself: a sequence is a function of its seed, and the op mix reaches every
/// operation and both outcomes of the conditional ones.
#[test]
fn generator_is_deterministic_and_covers_every_op() {
    let ops = |seed| {
        let mut rng = SplitMix64(seed);
        let model = HashMap::from([(0, 0), (1, 1), (2, 2)]);
        (0..2_000)
            .map(|_| format!("{:?}", Op::generate(&mut rng, &model)))
            .collect::<Vec<_>>()
    };
    assert_eq!(ops(7), ops(7));
    assert_ne!(ops(7), ops(8));
    let seen: HashSet<String> = ops(7)
        .iter()
        .map(|op| op.split('(').next().unwrap().to_owned())
        .collect();
    assert_eq!(seen.len(), 18, "{seen:?}");
}
