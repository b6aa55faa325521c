//! Keys and values with an identity, for tests that must prove that every instance ever created
//! is dropped exactly once, and never read after its drop, however long they run.
//!
//! Each instance takes a *slot* and a *generation*: the slot's state is the generation while
//! the instance lives (odd) and the next one (even) once it is dropped. A second drop fails
//! that exchange; a read checks that the slot still holds its generation. Dropped slots are
//! recycled (through a few sharded free lists), so the table grows with the number of
//! instances alive at once, not with the number ever created: a soak test of many minutes
//! needs no more memory than a short one. A final scan of every slot finds the leaks.
//!
//! `tests/stress.rs` has its own, simpler tracker (one byte per instance ever created).
#![allow(dead_code)] // each test crate uses a different part

use std::borrow::Borrow;
use std::cell::Cell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Mutex, OnceLock};

const CHUNK_BITS: u32 = 14;
const CHUNK: usize = 1 << CHUNK_BITS;
/// At most `CHUNKS * CHUNK` (16 Mi) instances alive at once.
const CHUNKS: usize = 1 << 10;
const SHARDS: usize = 8;

/// The states of the slots, the free lists, and counts of keys and values alive.
pub struct Tracker {
    chunks: Box<[OnceLock<Box<[AtomicU32]>>]>,
    /// Slots handed out so far (recycled ones are not counted again).
    slots: AtomicUsize,
    free: Box<[Mutex<Vec<u32>>]>,
    created: AtomicU64,
    dropped: AtomicU64,
    live_keys: AtomicIsize,
    live_values: AtomicIsize,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn my_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|shard| {
        if shard.get() == usize::MAX {
            shard.set(NEXT.fetch_add(1, Relaxed) % SHARDS);
        }
        shard.get()
    })
}

impl Tracker {
    pub fn new() -> Self {
        Self {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
            slots: AtomicUsize::new(0),
            free: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            created: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            live_keys: AtomicIsize::new(0),
            live_values: AtomicIsize::new(0),
        }
    }

    fn state(&self, slot: u32) -> &AtomicU32 {
        let slot = slot as usize;
        let chunk = self.chunks[slot >> CHUNK_BITS]
            .get_or_init(|| (0..CHUNK).map(|_| AtomicU32::new(0)).collect());
        &chunk[slot & (CHUNK - 1)]
    }

    /// A free slot: a recycled one from this thread's shard, else from any shard, else a new one.
    fn take_slot(&self) -> u32 {
        let home = my_shard();
        if let Some(slot) = self.free[home].lock().unwrap().pop() {
            return slot;
        }
        for i in 1..SHARDS {
            if let Ok(mut free) = self.free[(home + i) % SHARDS].try_lock() {
                if let Some(slot) = free.pop() {
                    return slot;
                }
            }
        }
        let slot = self.slots.fetch_add(1, Relaxed);
        assert!(
            slot < CHUNKS * CHUNK,
            "more than {} instances alive",
            CHUNKS * CHUNK
        );
        slot as u32
    }

    fn create(&self) -> Tag<'_> {
        let slot = self.take_slot();
        let state = self.state(slot);
        let free = state.load(Acquire);
        assert_eq!(free % 2, 0, "slot {slot} handed out while in use");
        let generation = free.wrapping_add(1);
        state
            .compare_exchange(free, generation, AcqRel, Acquire)
            .unwrap_or_else(|now| panic!("slot {slot} changed while being taken: {now}"));
        self.created.fetch_add(1, Relaxed);
        Tag {
            slot,
            generation,
            tracker: self,
        }
    }

    /// Instances created so far.
    pub fn created(&self) -> u64 {
        self.created.load(SeqCst)
    }

    /// Instances dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(SeqCst)
    }

    /// Slots ever used: the most instances that were alive at once, plus what sits in free lists.
    pub fn slots(&self) -> usize {
        self.slots.load(SeqCst)
    }

    pub fn live_keys(&self) -> usize {
        usize::try_from(self.live_keys.load(SeqCst)).expect("more keys dropped than created")
    }

    pub fn live_values(&self) -> usize {
        usize::try_from(self.live_values.load(SeqCst)).expect("more values dropped than created")
    }

    /// Every instance ever created was dropped exactly once: a second drop panics at once, and
    /// no slot is still held.
    pub fn assert_all_dropped(&self) {
        let slots = self.slots();
        let held: Vec<u32> = (0..slots as u32)
            .filter(|&slot| self.state(slot).load(SeqCst) % 2 == 1)
            .collect();
        assert!(
            held.is_empty(),
            "{} instances were never dropped (slots {:?}...); {} created, {} dropped",
            held.len(),
            &held[..held.len().min(10)],
            self.created(),
            self.dropped()
        );
        assert_eq!(self.created(), self.dropped());
        assert_eq!(self.live_keys(), 0);
        assert_eq!(self.live_values(), 0);
    }
}

/// The identity of one instance.
pub struct Tag<'t> {
    slot: u32,
    generation: u32,
    tracker: &'t Tracker,
}

impl Tag<'_> {
    pub fn is_alive(&self) -> bool {
        self.tracker.state(self.slot).load(Acquire) == self.generation
    }

    fn mix(&self) -> u64 {
        (u64::from(self.slot) << 32) | u64::from(self.generation)
    }
}

impl Drop for Tag<'_> {
    fn drop(&mut self) {
        let state = self.tracker.state(self.slot);
        if let Err(now) = state.compare_exchange(
            self.generation,
            self.generation.wrapping_add(1),
            AcqRel,
            Acquire,
        ) {
            panic!(
                "slot {} generation {} dropped twice (or corrupt): the slot is at {now}",
                self.slot, self.generation
            );
        }
        self.tracker.dropped.fetch_add(1, Relaxed);
        self.tracker.free[my_shard()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(self.slot);
    }
}

impl fmt::Debug for Tag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.slot, self.generation)
    }
}

/// A key: hashes and compares as its `u64`, so the map can be searched with `&u64`.
pub struct Key<'t> {
    pub k: u64,
    tag: Tag<'t>,
}

impl<'t> Key<'t> {
    pub fn new(tracker: &'t Tracker, k: u64) -> Self {
        tracker.live_keys.fetch_add(1, SeqCst); // see `Val::new`
        Self {
            k,
            tag: tracker.create(),
        }
    }
}

impl Drop for Key<'_> {
    fn drop(&mut self) {
        self.tag.tracker.live_keys.fetch_sub(1, SeqCst); // see `Val::new`
    }
}

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.k.hash(state);
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        assert!(
            self.tag.is_alive() && other.tag.is_alive(),
            "a dropped key compared"
        );
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
        write!(f, "Key({} {:?})", self.k, self.tag)
    }
}

fn canary(key: u64, ver: u64, tag: &Tag<'_>) -> u64 {
    (key.rotate_left(17) ^ ver ^ tag.mix().rotate_left(41)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// A value: the key it was made for and a version whose meaning each test chooses. Equality
/// (used by compare-and-swap) checks that both sides are intact and alive.
pub struct Val<'t> {
    pub key: u64,
    pub ver: u64,
    canary: u64,
    tag: Tag<'t>,
}

impl<'t> Val<'t> {
    pub fn new(tracker: &'t Tracker, key: u64, ver: u64) -> Self {
        // SeqCst (a release) on both counters: a thread that reads a count sees, through it,
        // everything the creating or dropping thread did before, such as the map counting a
        // batch off `Stats::retired` just before freeing its values. With `Relaxed` a monitor could see
        // a value gone yet still read the older `retired` (Miri's weak-memory emulation does).
        tracker.live_values.fetch_add(1, SeqCst);
        let tag = tracker.create();
        Self {
            key,
            ver,
            canary: canary(key, ver, &tag),
            tag,
        }
    }

    /// Asserts that the value is intact, not dropped, and made for `key`; returns its version.
    pub fn check(&self, key: u64) -> u64 {
        assert_eq!(
            self.canary,
            canary(self.key, self.ver, &self.tag),
            "corrupt value (freed?): {self:?}"
        );
        assert!(self.tag.is_alive(), "value read after its drop: {self:?}");
        assert_eq!(
            self.key, key,
            "key {key} holds a value of another key: {self:?}"
        );
        self.ver
    }
}

impl Drop for Val<'_> {
    fn drop(&mut self) {
        assert_eq!(
            self.canary,
            canary(self.key, self.ver, &self.tag),
            "dropping a corrupt value: {self:?}"
        );
        self.tag.tracker.live_values.fetch_sub(1, SeqCst); // see `Val::new`
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

impl fmt::Debug for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Val(key {}, ver {:#x}, {:?})",
            self.key, self.ver, self.tag
        )
    }
}

/// xorshift64*: deterministic per stream. `DUALMAP_TEST_SEED=<u64>` changes every stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(stream: u64) -> Self {
        let seed = std::env::var("DUALMAP_TEST_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or(0x5EED_CAFE_u64);
        Self((seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
