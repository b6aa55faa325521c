//! The model-checking core shared by the model test (`tests/model.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/ops.rs`), both through `#[path]`: tracked keys and values with exact
//! drop accounting, the operations, and how each one is run on a `DualMap` and on a
//! `std::collections::HashMap` and compared. How operations are chosen (a seeded generator,
//! or the fuzzer's bytes) and how a mismatch is reported (the [`Fail`] trait) are up to each
//! user.
//!
//! Include it with `#[macro_use]` to get `check!` and `check_eq!`.
#![allow(dead_code)] // each user takes a different part

use dualmap::{DualMap, GetOrInsert, Ref};
use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;

/// Values are `0..VALUES`: few enough that compare-and-swap hits are frequent.
pub const VALUES: u64 = 4;

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

pub fn is_live(id: u64) -> bool {
    LIVE.with(|live| live.borrow().contains(&id))
}

/// Forgets instances left over from an earlier sequence (one that panicked).
pub fn reset_registry() {
    LIVE.with(|live| live.borrow_mut().clear());
    CREATED.with(|created| created.set(0));
    BAD_DROPS.with(|bad| bad.set(0));
}

/// A key: compared and hashed by `k` only, so the map can be queried with `&u8`. A clone is
/// a new tracked instance.
pub struct Key {
    pub k: u8,
    pub id: u64,
}

impl Key {
    pub fn new(k: u8) -> Self {
        Self { k, id: register() }
    }
}

impl Clone for Key {
    fn clone(&self) -> Self {
        Self::new(self.k)
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
pub struct Val {
    pub v: u8,
    pub id: u64,
}

impl Val {
    pub fn new(v: u8) -> Self {
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

#[derive(Debug, Clone, Copy)]
pub enum Op {
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
    /// key, added to the value (modulo `VALUES`)
    Update(u8, u8),
    /// key, added to the value, inserted if absent
    UpdateOrInsertWith(u8, u8, u8),
    Iter,
    /// `try_for_each`, breaking at the visit of this number (none at 0)
    ForEach(u8),
    Keys,
    Values,
    /// keep (k, v) iff the bit of `mask` at `(k * VALUES + v) % 64` is set
    Retain(u64),
    Clear,
    Len,
    /// Keep a `Ref` to the key's value across later operations.
    Hold(u8),
    DropHeld,
}

/// What `Update` stores: the value plus `add`, within `0..VALUES`.
pub fn plus(v: u8, add: u8) -> u8 {
    ((u64::from(v) + u64::from(add)) % VALUES) as u8
}

pub fn keep(mask: u64, k: u8, v: u8) -> bool {
    mask >> ((u64::from(k) * VALUES + u64::from(v)) % 64) & 1 == 1
}

// ---------------------------------------------------------------------------------------------
// Running operations.

pub type Map = DualMap<Key, Val>;
pub type Model = HashMap<u8, u8>;
/// `Ref`s kept across operations, with the key and the value each was read as.
pub type Held = Vec<(u8, u8, Ref<Key, Val>)>;

/// A map of `pairs` read/dirty pairs promoting after `min_promotion_misses` misses at least
/// (0: Go's rule), with a fixed hasher, so that a sequence always takes the same internal path.
pub fn new_map(pairs: usize, min_promotion_misses: usize) -> Map {
    DualMap::builder()
        .pairs(pairs)
        .min_promotion_misses(min_promotion_misses)
        .hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
        .build()
}

/// Reports a mismatch; implemented by each user's context (which says where it happened).
pub trait Fail {
    fn fail(&self, what: fmt::Arguments<'_>) -> !;
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

pub fn sorted_model(model: &Model) -> Vec<(u8, u8)> {
    let mut pairs: Vec<(u8, u8)> = model.iter().map(|(&k, &v)| (k, v)).collect();
    pairs.sort_unstable();
    pairs
}

pub fn sorted_map(map: &Map) -> Vec<(u8, u8)> {
    let mut pairs: Vec<(u8, u8)> = map.iter().map(|(k, v)| (k.k, v.v)).collect();
    pairs.sort_unstable();
    pairs
}

/// Checks `len`, `is_empty`, `stats().len` and the structural invariants of the stats of a
/// map made by `new_map(_, min_promotion_misses)`.
pub fn check_shape(ctx: &impl Fail, map: &Map, model: &Model, min_promotion_misses: usize) {
    check_eq!(ctx, map.len(), model.len(), "len");
    check_eq!(ctx, map.is_empty(), model.is_empty(), "is_empty");
    let stats = map.stats();
    check_eq!(ctx, stats.len, model.len(), "stats().len");
    // amended exactly while a dirty map exists (rebuilds publish amended; promotions and
    // publishing clears drop the dirty map and publish non-amended; a clear in place keeps
    // both, the dirty map empty).
    check_eq!(
        ctx,
        stats.amended,
        stats.dirty_len.is_some(),
        "amended vs dirty map"
    );
    // Every miss is checked against the dirty map's size and the floor, so misses stay below
    // the larger (summed over pairs too: a pair without a dirty map has no misses), or are
    // none at all (a dirty map emptied in place, with no floor, has a threshold of 0).
    match stats.dirty_len {
        Some(dirty_len) => {
            let most = if stats.pairs == 1 {
                dirty_len.max(min_promotion_misses)
            } else {
                dirty_len + stats.pairs * min_promotion_misses
            };
            check!(ctx, stats.misses < most.max(1), "misses {stats:?}");
            // Per pair, an amended pair's dirty map holds every live key of the pair; summed
            // over pairs, the live keys of the pairs that are not amended are in their
            // snapshots.
            let bound = if stats.pairs == 1 {
                dirty_len
            } else {
                dirty_len + stats.snapshot_len
            };
            check!(
                ctx,
                stats.len <= bound,
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

/// A held `Ref` shows the value it was read as, and that value is still alive.
pub fn check_held(ctx: &impl Fail, held: &Held) {
    for (k, v, r) in held {
        check!(
            ctx,
            r.v == *v && is_live(r.id),
            "held Ref of key {k} changed"
        );
    }
}

/// The end of a sequence: compares the contents once more, drops the held `Ref`s and the
/// map, and checks that every key and value created since [`reset_registry`] was dropped
/// exactly once.
pub fn finish(ctx: &impl Fail, map: Map, model: &Model, held: Held) {
    check_eq!(ctx, sorted_map(&map), sorted_model(model), "final contents");
    for (k, v) in model {
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
}

pub fn apply(ctx: &impl Fail, op: Op, map: &Map, model: &mut Model, held: &mut Held) {
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
        Op::Update(k, add) => {
            let mut calls = 0;
            let updated = map.update(&k, |current| {
                calls += 1;
                Val::new(plus(current.v, add))
            });
            let expected = model.get(&k).map(|&v| plus(v, add));
            check_eq!(ctx, updated.map(|r| r.v), expected, "update");
            check_eq!(
                ctx,
                calls,
                usize::from(expected.is_some()),
                "update's calls"
            );
            if let Some(v) = expected {
                model.insert(k, v);
            }
        }
        Op::UpdateOrInsertWith(k, add, v) => {
            let (mut updates, mut makes) = (0, 0);
            let stored = map.update_or_insert_with(
                Key::new(k),
                |current| {
                    updates += 1;
                    Val::new(plus(current.v, add))
                },
                || {
                    makes += 1;
                    Val::new(v)
                },
            );
            let present = model.contains_key(&k);
            let expected = model.get(&k).map_or(v, |&current| plus(current, add));
            check_eq!(ctx, stored.v, expected, "update_or_insert_with");
            check_eq!(
                ctx,
                (updates, makes),
                if present { (1, 0) } else { (0, 1) },
                "update_or_insert_with's calls"
            );
            model.insert(k, expected);
        }
        Op::Iter => {
            check_eq!(ctx, sorted_map(map), sorted_model(model), "iter");
        }
        Op::ForEach(stop_at) => {
            let mut visited = Vec::new();
            let flow = map.try_for_each(|k, v| {
                visited.push((k.k, v.v));
                if visited.len() == usize::from(stop_at) {
                    ControlFlow::Break(k.k)
                } else {
                    ControlFlow::Continue(())
                }
            });
            let broke = usize::from(stop_at) >= 1 && usize::from(stop_at) <= model.len();
            let last = visited.last().map(|&(k, _)| k);
            check_eq!(
                ctx,
                flow,
                match last {
                    Some(k) if broke => ControlFlow::Break(k),
                    _ => ControlFlow::Continue(()),
                },
                "try_for_each's result"
            );
            // Each visit is of a present key with its value, no key twice; all of them
            // unless it broke.
            visited.sort_unstable();
            let mut expected = sorted_model(model);
            if broke {
                expected.retain(|pair| visited.contains(pair));
                check_eq!(
                    ctx,
                    visited.len(),
                    usize::from(stop_at),
                    "visits before the break"
                );
            }
            check_eq!(ctx, visited, expected, "try_for_each visits each pair once");
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
            check_eq!(ctx, map.is_empty(), model.is_empty(), "is_empty");
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
