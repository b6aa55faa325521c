//! Fuzz target: the input bytes are an operation sequence, run on a `DualMap` and on a
//! `std::collections::HashMap` and compared op by op, with exact drop accounting at the end.
//!
//! The operations, the tracked keys and values and the per-op checks are the model test's
//! (`tests/support/model_ops.rs`, shared through `#[path]`); this file decodes the bytes and
//! adds operations that reach internal states cheaply: a long-lived `Reader`, repeated
//! lookups (misses toward promotion), scans of the whole key space (miss-filter false
//! positives, promotion), bulk inserts and removes of filler keys (dirty rebuilds with many
//! tombstones, miss-filter growth past its first 64 keys), and cloning the map.
//!
//! Encoding: one op-kind byte (taken modulo the number of kinds), then the op's operand
//! bytes; a missing byte at the end of the input reads as 0.
//! - key byte: below 0xC0 it names an ordinary key (`byte % 8`), from 0xC0 up it is the
//!   filler key of that number (192..=255);
//! - value byte: `byte % 4`;
//! - expected-value byte (compare-and-swap/remove): with the top bit set, the model's current
//!   value of the key when there is one, else `byte % 4`.
//!
//! See `fuzz/README.md` for how to run it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fmt;
use std::sync::OnceLock;

#[macro_use]
#[path = "../../tests/support/model_ops.rs"]
mod model_ops;

use model_ops::{
    apply, check_held, check_shape, finish, new_map, reset_registry, sorted_map, sorted_model,
    Fail, Held, Map, Model, Op, VALUES,
};

/// Ordinary keys are `0..KEYS`; filler keys `FILLER_BASE..=255`.
const KEYS: u8 = 8;
const FILLER_BASE: u8 = 16;
const FILLERS: u16 = 256 - FILLER_BASE as u16;
/// Op kinds, for the modulo of the op byte.
const KINDS: u8 = 28;

#[derive(Debug, Clone, Copy)]
enum FuzzOp {
    /// An operation of the model test.
    Model(Op),
    /// A lookup through the `Reader` that lives for the whole sequence.
    ReaderGet(u8),
    ReaderRefresh,
    /// `count` lookups of one key: a dirty-only key counts a miss each time.
    GetMany {
        key: u8,
        count: u8,
    },
    /// `rounds` lookups of every key 0..=255, compared with the model.
    Scan {
        rounds: u8,
    },
    /// Inserts filler keys `start..start + count` (wrapping inside the filler range).
    InsertFillers {
        start: u8,
        count: u8,
        value: u8,
    },
    RemoveFillers {
        start: u8,
        count: u8,
    },
    /// Clones the map, compares the copy, drops it.
    CloneMap,
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&byte, rest)) => {
                self.0 = rest;
                byte
            }
            None => 0,
        }
    }

    fn key(&mut self) -> u8 {
        match self.byte() {
            byte @ 0xC0.. => byte,
            byte => byte % KEYS,
        }
    }

    fn value(&mut self) -> u8 {
        self.byte() % VALUES as u8
    }

    fn expected(&mut self, key: u8, model: &Model) -> u8 {
        let byte = self.byte();
        match model.get(&key) {
            Some(&current) if byte & 0x80 != 0 => current,
            _ => byte % VALUES as u8,
        }
    }

    fn decode(&mut self, model: &Model) -> FuzzOp {
        let model_op = match self.byte() % KINDS {
            0 => Op::Get(self.key()),
            1 => Op::GetCloned(self.key()),
            2 => Op::ContainsKey(self.key()),
            3 => Op::Insert(self.key(), self.value()),
            4 => Op::GetOrInsert(self.key(), self.value()),
            5 => Op::TryInsert(self.key(), self.value()),
            6 => Op::GetOrInsertWith(self.key(), self.value()),
            7 => Op::Remove(self.key()),
            8 => {
                let key = self.key();
                Op::CompareAndSwap(key, self.expected(key, model), self.value())
            }
            9 => {
                let key = self.key();
                Op::CompareAndRemove(key, self.expected(key, model))
            }
            10 => Op::Iter,
            11 => Op::Keys,
            12 => Op::Values,
            13 => {
                let mask = u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]);
                Op::Retain(u64::from(mask) * 0x1_0000_0001)
            }
            14 => Op::Clear,
            15 => Op::Len,
            16 => Op::Hold(self.key()),
            17 => Op::DropHeld,
            18 => return FuzzOp::ReaderGet(self.byte()),
            19 => return FuzzOp::ReaderRefresh,
            20 => {
                return FuzzOp::GetMany {
                    key: self.byte(),
                    count: self.byte(),
                }
            }
            21 => {
                return FuzzOp::Scan {
                    rounds: 1 + self.byte() % 4,
                }
            }
            22 => {
                return FuzzOp::InsertFillers {
                    start: self.byte(),
                    count: self.byte(),
                    value: self.value(),
                }
            }
            23 => {
                return FuzzOp::RemoveFillers {
                    start: self.byte(),
                    count: self.byte(),
                }
            }
            24 => Op::Update(self.key(), self.value()),
            25 => Op::UpdateOrInsertWith(self.key(), self.value(), self.value()),
            26 => Op::ForEach(self.byte() % 8),
            _ => return FuzzOp::CloneMap,
        };
        FuzzOp::Model(model_op)
    }
}

fn filler(start: u8, i: u8) -> u8 {
    FILLER_BASE + ((u16::from(start) + u16::from(i)) % FILLERS) as u8
}

struct Context {
    index: usize,
    op: Option<FuzzOp>,
}

impl Fail for Context {
    fn fail(&self, what: fmt::Arguments<'_>) -> ! {
        panic!(
            "model mismatch at op #{} {:?}: {}",
            self.index, self.op, what
        )
    }
}

fn check_get(ctx: &Context, map: &Map, model: &Model, key: u8) {
    check_eq!(
        ctx,
        map.get(&key).map(|r| r.v),
        model.get(&key).copied(),
        "get {key}"
    );
}

fn apply_fuzz(
    ctx: &Context,
    op: FuzzOp,
    map: &Map,
    model: &mut Model,
    held: &mut Held,
    reader: &mut dualmap::Reader<'_, model_ops::Key, model_ops::Val>,
) {
    match op {
        FuzzOp::Model(op) => apply(ctx, op, map, model, held),
        FuzzOp::ReaderGet(key) => {
            check_eq!(
                ctx,
                reader.get(&key).map(|v| v.v),
                model.get(&key).copied(),
                "Reader::get {key}"
            );
        }
        FuzzOp::ReaderRefresh => reader.refresh(),
        FuzzOp::GetMany { key, count } => {
            for _ in 0..count {
                check_get(ctx, map, model, key);
            }
        }
        FuzzOp::Scan { rounds } => {
            for _ in 0..rounds {
                for key in 0..=u8::MAX {
                    check_get(ctx, map, model, key);
                }
            }
        }
        FuzzOp::InsertFillers {
            start,
            count,
            value,
        } => {
            for i in 0..count {
                let key = filler(start, i);
                let previous = map.insert(model_ops::Key::new(key), model_ops::Val::new(value));
                check_eq!(
                    ctx,
                    previous.map(|r| r.v),
                    model.insert(key, value),
                    "insert filler {key}"
                );
            }
        }
        FuzzOp::RemoveFillers { start, count } => {
            for i in 0..count {
                let key = filler(start, i);
                check_eq!(
                    ctx,
                    map.remove(&key).map(|r| r.v),
                    model.remove(&key),
                    "remove filler {key}"
                );
            }
        }
        FuzzOp::CloneMap => {
            let copy = map.clone();
            check_eq!(
                ctx,
                sorted_map(&copy),
                sorted_model(model),
                "clone's contents"
            );
            check_shape(ctx, &copy, model, 0);
        }
    }
}

/// With `DUALMAP_FUZZ_TRACE` set, each op and the stats after it go to stderr (for reading
/// what a reproducer does; far too slow for fuzzing).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("DUALMAP_FUZZ_TRACE").is_some())
}

fn run(data: &[u8]) {
    reset_registry();
    let mut input = Input(data);
    let mut ctx = Context { index: 0, op: None };
    let map = new_map(1, 0); // Go's sync.Map: one pair, Go's promotion rule
    let mut model = Model::new();
    let mut held = Held::new();
    let mut reader = map.reader();
    let mut last = map.stats();

    while !input.0.is_empty() {
        let op = input.decode(&model);
        ctx.op = Some(op);
        apply_fuzz(&ctx, op, &map, &mut model, &mut held, &mut reader);
        check_shape(&ctx, &map, &model, 0);
        check_held(&ctx, &held);
        // The lifetime counters never go back.
        let stats = map.stats();
        if trace() {
            eprintln!("#{} {op:?}\n    {stats:?}", ctx.index);
        }
        check!(
            ctx,
            stats.promotions >= last.promotions
                && stats.dirty_rebuilds >= last.dirty_rebuilds
                && stats.rotations >= last.rotations,
            "counters went back: {last:?} -> {stats:?}"
        );
        last = stats;
        ctx.index += 1;
    }

    ctx.op = None;
    for key in 0..=u8::MAX {
        check_eq!(
            ctx,
            reader.get(&key).map(|v| v.v),
            model.get(&key).copied(),
            "final Reader::get {key}"
        );
    }
    drop(reader);
    finish(&ctx, map, &model, held);
}

fuzz_target!(|data: &[u8]| run(data));
