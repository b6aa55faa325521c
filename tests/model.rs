//! Model-based test: random operation sequences on a small key space, run on a `DualMap` and
//! on a `std::collections::HashMap`, compared op by op (Go's `TestMapMatchesRWMutex` in
//! spirit). Six keys and four values make promotions, tombstones, expunges and
//! compare-and-swap hits frequent. Sequences of even seeds run on one read/dirty pair (every
//! per-pair invariant of the stats checked), odd seeds on four pairs (the keys spread over
//! them; the stats' sums checked); seeds 0 and 1 modulo 4 with Go's promotion rule (so a
//! quarter of the sequences run on Go's `sync.Map`), 2 and 3 with the default floor of
//! misses.
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
//!
//! The tracked types, the operations and how each is checked live in
//! `tests/support/model_ops.rs`, shared with the fuzz target (`fuzz/fuzz_targets/ops.rs`);
//! this file generates the sequences.

#[path = "support/model_ops.rs"]
mod model_ops;
#[path = "support/splitmix.rs"]
mod splitmix;

use model_ops::{
    apply, check_held, check_shape, finish, new_map, reset_registry, Fail, Held, Model, Op, VALUES,
};
use quickcheck::QuickCheck;
use splitmix::SplitMix64;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Keys are `0..KEYS`, values `0..VALUES`.
const KEYS: u64 = 6;
/// Longest sequence the property generates.
const MAX_LEN: usize = 200;
const DEFAULT_CASES: u64 = 2_000;

// ---------------------------------------------------------------------------------------------
// Operations.

/// The model test's draws from the shared generator.
trait Draw {
    fn key(&mut self) -> u8;
    fn value(&mut self) -> u8;
}

impl Draw for SplitMix64 {
    fn key(&mut self) -> u8 {
        self.below(KEYS) as u8
    }

    fn value(&mut self) -> u8 {
        self.below(VALUES) as u8
    }
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
            22..=37 => Op::Insert(key, rng.value()),
            38..=40 => Op::Update(key, rng.value()),
            41..=43 => Op::UpdateOrInsertWith(key, rng.value(), rng.value()),
            44..=48 => Op::GetOrInsert(key, rng.value()),
            49..=52 => Op::TryInsert(key, rng.value()),
            53..=56 => Op::GetOrInsertWith(key, rng.value()),
            57..=66 => Op::Remove(key),
            67..=74 => Op::CompareAndSwap(key, expected(rng), rng.value()),
            75..=81 => Op::CompareAndRemove(key, expected(rng)),
            82..=83 => Op::Iter,
            84 => Op::ForEach(rng.below(KEYS + 2) as u8),
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

// ---------------------------------------------------------------------------------------------
// Running a sequence.

/// Sequences and ops run by the quickcheck property (other tests run beside it).
static SEQUENCES: AtomicU64 = AtomicU64::new(0);
static OPS: AtomicU64 = AtomicU64::new(0);

/// Where a mismatch happened, for the panic message.
struct Context {
    seed: u64,
    len: usize,
    index: usize,
    op: Option<Op>,
}

impl Fail for Context {
    fn fail(&self, what: fmt::Arguments<'_>) -> ! {
        panic!(
            "model mismatch: seed={} len={} op #{} {:?}: {}\n\
             replay: DUALMAP_SEED={} DUALMAP_LEN={} cargo test --test model replay",
            self.seed, self.len, self.index, self.op, what, self.seed, self.len
        )
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
    // Half the sequences run on one read/dirty pair, half on four; half with Go's promotion
    // rule, half with the default floor (so one sequence in four is Go's sync.Map).
    let pairs = if seed % 2 == 0 { 1 } else { 4 };
    let min_promotion_misses = if seed % 4 < 2 {
        0
    } else {
        dualmap::MIN_PROMOTION_MISSES
    };
    let map = new_map(pairs, min_promotion_misses);
    let mut model = Model::new();
    let mut held = Held::new();

    for index in 0..len {
        let op = Op::generate(&mut rng, &model);
        ctx.index = index;
        ctx.op = Some(op);
        apply(&ctx, op, &map, &mut model, &mut held);
        check_shape(&ctx, &map, &model, min_promotion_misses);
        check_held(&ctx, &held);
    }

    ctx.index = len;
    ctx.op = None;
    finish(&ctx, map, &model, held);
    len as u64
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
    assert_eq!(seen.len(), 21, "{seen:?}");
}
