//! Per-thread retirement batches: a write retires its displaced value without writing
//! anything that other threads' writes also write.
//!
//! Handing each displaced value straight to its epoch cost two shared writes per write (the
//! pair's counter of retired values and the epoch's list) and a write into the displaced value's
//! own memory (its link on the list), which is rarely in cache: on one thread that write was
//! 39% of an overwrite's time on a map of 100,000 keys (`perf`), and on two threads both
//! shared lines bounced between the cores on every write. Here a write pushes the record onto
//! a batch of its own and hands the batch to the current epoch only once it holds
//! [`RETIRED_PER_BATCH`] records: one shared write per batch.
//!
//! Each pair keeps a small array of batches, one per *stripe*, each behind its own try-lock
//! on its own cache line; a thread uses the stripe of its thread number, so threads rarely
//! share one. Nobody waits for a stripe: a thread that finds its stripe held uses the next free
//! one, or, if all are held at that instant, hands its record over alone; a drain skips a held
//! stripe. That is safe because any thread may hand any batch to an epoch. The array belongs
//! to the map, not to the threads, so dropping the map reaches every batch (`RawMap`'s `Drop`
//! hands them all to the last epoch) and no value outlives the map's last handle.
//!
//! The safety argument (DESIGN.md, "Reclamation"): a batch is handed to the epoch of a
//! snapshot that the handing thread has seen current *after* its own displacement, which comes
//! after the displacement of every other value in the batch, since they were pushed before.
//! So every value goes to an epoch at least as new as the one it would have gone to at once.

use crate::reclaim::Retired;
use crate::sync::TryLock;
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// How many displaced values a thread collects before handing them to an epoch
/// ([`RETIRED_PER_EPOCH`](crate::RETIRED_PER_EPOCH)), which frees them once no thread can
/// read them any more.
///
/// Each read/dirty pair keeps one batch per *stripe*: as many stripes as the machine has
/// cores (`available_parallelism`), rounded up to a power of two, at most 8; a thread uses
/// the stripe of the smallest number no other running thread holds (or, if another thread is
/// pushing onto that stripe at that instant, the next one). So between calls up to
/// `stripes × (RETIRED_PER_BATCH - 1)` displaced values per pair wait in batches, freed later
/// than they would be at once: when the batch fills, at the pair's next publication of a
/// snapshot (a promotion, a rotation, a new key's dirty-map rebuild, a `clear`), at
/// [`DualMap::stats`](crate::DualMap::stats), or when the map is dropped.
/// [`Stats::retired`](crate::Stats::retired) counts them, since `stats` hands every batch over
/// first. Under the loom models it is 2 and under Miri 4, so that their small runs hand
/// batches over.
///
/// Why 64: a batch is a vector of 64 two-word records (1 KiB), and handing one over costs a
/// lock of the epoch's list and an update of the pair's counter, amortised to nothing at 64.
///
/// ```
/// use dualmap::{DualMap, RETIRED_PER_BATCH};
///
/// // Values with drop glue: a first value without it is never retired (see `Stats::retired`).
/// let map: DualMap<&str, String> = [("hot", "0".to_string())].into_iter().collect();
/// for i in 1..RETIRED_PER_BATCH {
///     map.insert("hot", i.to_string()); // the displaced value waits in this thread's batch
/// }
/// // `stats` hands every batch to its epoch, and counts what it holds.
/// assert_eq!(map.stats().retired, RETIRED_PER_BATCH - 1);
/// map.insert("hot", RETIRED_PER_BATCH.to_string()); // fills the batch: handed over at once
/// assert_eq!(map.stats().retired, RETIRED_PER_BATCH);
/// ```
pub const RETIRED_PER_BATCH: usize = if cfg!(dualmap_loom) {
    2
} else if cfg!(miri) {
    4
} else {
    64
};

/// One stripe's batch, alone on its cache line so that two threads' stripes never share one.
/// A [`TryLock`], not a mutex: a thread that finds its stripe taken uses the next one, so no
/// retirement ever waits, and the release is a plain store.
#[repr(align(64))]
struct Stripe<K, V>(TryLock<Vec<Retired<K, V>>>);

/// The retirement batches of one read/dirty pair.
pub(crate) struct Batches<K, V> {
    stripes: Box<[Stripe<K, V>]>,
}

/// This thread's number, which picks its stripe in every pair: the smallest number no live
/// thread holds, taken when the thread first retires a value and given back when it exits,
/// so that threads running at once hold distinct numbers and, up to the stripe count, distinct
/// stripes. Only speed depends on it: any thread may use any stripe.
///
/// Read from a copy in a `const` thread-local, which needs no check of its initialisation or
/// of its destructor's registration (callgrind, per overwrite: the batch push and the number
/// 24 + 10 -> 15 instructions).
#[inline]
fn thread_number() -> usize {
    thread_local! {
        /// This thread's number once it has one; `usize::MAX` before.
        static CACHED: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    // The copy has no destructor, so it outlives the number: a thread being torn down
    // may use a number it gave back, which only makes it share a stripe.
    let cached = CACHED.get();
    if cached != usize::MAX {
        return cached;
    }
    let number = assigned_thread_number();
    CACHED.set(number);
    number
}

/// This thread's number, taken on first use from the smallest given back by an exited
/// thread, or a new one.
#[cold]
#[inline(never)]
fn assigned_thread_number() -> usize {
    /// Numbers given back by exited threads.
    static FREE: std::sync::Mutex<BinaryHeap<Reverse<usize>>> =
        std::sync::Mutex::new(BinaryHeap::new());
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    fn free() -> std::sync::MutexGuard<'static, BinaryHeap<Reverse<usize>>> {
        FREE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    struct Number(usize);
    impl Drop for Number {
        fn drop(&mut self) {
            free().push(Reverse(self.0));
        }
    }
    thread_local! {
        static NUMBER: Number = Number(match free().pop() {
            Some(Reverse(number)) => number,
            None => NEXT.fetch_add(1, Relaxed),
        });
    }
    // A thread being torn down (a value dropped by another thread-local's destructor) may
    // have given its number back: stripe 0 serves it as well as any.
    NUMBER.try_with(|number| number.0).unwrap_or(0)
}

impl<K, V> Batches<K, V> {
    /// Empty batches, [`stripe_count`] of them.
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..stripe_count())
                .map(|_| Stripe(TryLock::new(Vec::new())))
                .collect(),
        }
    }

    /// Adds a record to this thread's batch, or to the next stripe's that no other thread
    /// holds at this instant. Returns the batch once it is full, for the caller to hand to
    /// the current epoch (the next push allocates the next batch's room in one go); if every
    /// stripe is held, returns the record alone, to be handed over at once.
    #[inline(always)]
    pub(crate) fn add(&self, record: Retired<K, V>) -> Option<Vec<Retired<K, V>>> {
        let count = self.stripes.len();
        let first = thread_number();
        for offset in 0..count {
            if let Some(mut batch) = self.stripes[(first + offset) & (count - 1)].0.try_lock() {
                if batch.capacity() == 0 {
                    batch.reserve_exact(RETIRED_PER_BATCH);
                }
                batch.push(record);
                return (batch.len() >= RETIRED_PER_BATCH).then(|| std::mem::take(&mut *batch));
            }
        }
        Some(vec![record])
    }

    /// Takes every stripe's batch, full or not (for publications, `stats()` and the map's
    /// drop), but for a stripe another thread is pushing onto at this instant: its batch
    /// stays for a later hand-over. With no operation in progress (`stats()` after the
    /// writers stopped, or the drop, which has the map to itself) that is none.
    pub(crate) fn take_all(&self) -> impl Iterator<Item = Vec<Retired<K, V>>> + '_ {
        self.stripes.iter().filter_map(|stripe| {
            let mut batch = stripe.0.try_lock()?;
            Some(std::mem::take(&mut *batch))
        })
    }
}

/// The most stripes a pair gets. Each is a cache line per pair, and a map has four pairs per
/// core: uncapped, a 64-core machine would give every map a megabyte of stripes. Threads that
/// share a stripe contend only when they retire into the same pair at the same moment.
const MAX_STRIPES: usize = 8;

/// How many stripes a pair gets: the machine's parallelism rounded up to a power of two, at
/// most [`MAX_STRIPES`], so that threads running at once rarely share one. Under loom one, so
/// that every model runs the same way whatever its threads' numbers are.
fn stripe_count() -> usize {
    if cfg!(dualmap_loom) {
        1
    } else {
        crate::pairs::cores().next_power_of_two().min(MAX_STRIPES)
    }
}
