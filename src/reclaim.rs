//! Reclamation of displaced values: every published snapshot is an epoch.
//!
//! A value taken out of a slot by a store, a remove or a compare-and-swap may still be read by
//! a thread that loaded it a moment earlier. It is therefore *retired*: put in the writing
//! thread's batch (`batches.rs`), which is later handed, whole, to the epoch of a snapshot
//! that is current at that moment, and freed when that epoch is dropped. Each epoch keeps its
//! successor alive, so a thread pinning an old snapshot keeps every later epoch, and so every
//! value handed over since, alive too. The argument that this is enough is in DESIGN.md
//! ("Reclamation").
//!
//! A retired value is a [`Retired`] record: a value node, or an entry whose first value was
//! displaced (the value lives inside the entry, which the record keeps alive). A first value
//! of a type without drop glue gets no record: freeing it would do nothing, and its memory is
//! the entry's, which every thread that can still read it keeps alive by itself. When an epoch
//! has received [`RETIRED_PER_EPOCH`] values, the map publishes a fresh snapshot around the
//! same table (a *rotation*) so that the full epoch can drain even when no promotion happens.

use crate::entry::{Displaced, ListedEntry, SharedEntry, ValueNode};
use crate::sync::{Arc, AtomicUsize, Mutex};
use crate::table::Table;
use std::mem::{self, ManuallyDrop};
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::Relaxed;

/// How many displaced values one reclamation epoch collects before the map publishes a fresh
/// snapshot (a *rotation*) so that they can be freed. This bounds the garbage of an
/// overwrite-heavy map ([`Stats::retired`](crate::Stats::retired)): with no operation in
/// flight and no handle held, after [`DualMap::stats`](crate::DualMap::stats) (which hands
/// every thread's batch to its epoch), fewer than this many displaced values per read/dirty
/// pair wait to be freed; between calls, each writing thread also holds up to
/// [`RETIRED_PER_BATCH`](crate::RETIRED_PER_BATCH) per pair in its batch. While operations
/// run, each one pins what other threads retire during it (a thread preempted in the middle
/// of an operation pins for as long as it is off the CPU). DESIGN.md, "How much garbage",
/// states the bound.
///
/// Why 1,024: a rotation swaps the snapshot through `arc_swap`, whose cost grows with the
/// number of threads that ever used it; amortised over 1,024 writes it no longer shows in
/// the cost of a write (measured with 64 parked threads: 1.02x the cost with 1; with 64 per
/// epoch it was 1.13-1.18x). Under the loom models it is 4 and under Miri 32, so that their
/// small runs reach rotations.
///
/// ```
/// let map = dualmap::DualMap::new();
/// for i in 0..10 * dualmap::RETIRED_PER_EPOCH {
///     map.insert("hot", i);
/// }
/// assert!(map.stats().retired <= dualmap::RETIRED_PER_EPOCH);
/// ```
pub const RETIRED_PER_EPOCH: usize = if cfg!(dualmap_loom) {
    4
} else if cfg!(miri) {
    32
} else {
    1024
};

/// A retired value, owned by a batch or an epoch until it is freed.
pub(crate) enum Retired<K, V> {
    /// A value node of its own.
    Node(NonNull<ValueNode<V>>),
    /// An entry whose first value was displaced: the record holds a reference to the entry
    /// (so the value, inside it, stays alive) and drops the value in place when freed.
    First(ManuallyDrop<SharedEntry<K, V>>),
}

// SAFETY: a record owns a displaced value (and, for a first value, a reference to its entry)
// and may free it on another thread: it needs what sending a `SharedEntry` needs. Nothing
// reads a value through a record.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Retired<K, V> {}

impl<K, V> Retired<K, V> {
    /// Drops the value and releases its memory (and, for a first value, the record's share
    /// of the entry, even if the value's `Drop` panics).
    ///
    /// # Safety
    /// No thread can read the value any more (DESIGN.md, "Reclamation"), and each record is
    /// freed once.
    unsafe fn free(self) {
        match self {
            // SAFETY: the caller's contract; the node came from `OwnedValue::new`.
            Retired::Node(node) => unsafe { ValueNode::destroy(node) },
            Retired::First(entry) => {
                let entry = ManuallyDrop::into_inner(entry);
                // SAFETY: the caller's contract; the slot no longer points at the first value
                // (it was displaced), and `entry` is dropped after it, even while unwinding.
                unsafe { entry.drop_first() };
            }
        }
    }
}

/// A record being freed: dropping it frees its value. Only [`FreeingBatch`] makes these, so
/// that Rust's drop glue does the freeing: the glue of a slice drops every element even when
/// one element's `Drop` panics, so a panicking value's `Drop` leaves the rest of its batch
/// freed while unwinding (a second panic aborts, as any panic in a `Drop` during unwinding
/// does), with no guard state kept in memory for each value. (With such a guard, an iterator
/// over the epoch's batches that the guard could resume, freeing took 33.5 instructions a
/// value; callgrind, one thread overwriting 1,000 keys.)
#[repr(transparent)]
struct Freeing<K, V>(Retired<K, V>);

impl<K, V> Drop for Freeing<K, V> {
    fn drop(&mut self) {
        // SAFETY: a `Freeing` is made only by `FreeingBatch::new`, whose caller guarantees
        // `Retired::free`'s contract for the record; the record is read out once, here, and
        // `self` is not used again.
        unsafe { ptr::read(&self.0).free() };
    }
}

/// A batch of records being freed, counted off `outstanding` just before its values are freed
/// (its `Drop` runs before its field's), so that `stats()` never counts fewer values than are
/// alive outside the map, but for one batch being freed per freeing thread.
struct FreeingBatch<'a, K, V> {
    outstanding: &'a AtomicUsize,
    records: Vec<Freeing<K, V>>,
}

impl<'a, K, V> FreeingBatch<'a, K, V> {
    /// # Safety
    /// As for [`Retired::free`], for every record: dropping the batch frees them.
    unsafe fn new(records: Vec<Retired<K, V>>, outstanding: &'a AtomicUsize) -> Self {
        let mut records = ManuallyDrop::new(records);
        // SAFETY: `Freeing` is `repr(transparent)` over `Retired`, so the allocation of `len`
        // initialised records out of `capacity` is that of a `Vec<Freeing>` of the same length
        // and capacity, which takes it over (`records` is forgotten).
        let records = unsafe {
            Vec::from_raw_parts(
                records.as_mut_ptr().cast::<Freeing<K, V>>(),
                records.len(),
                records.capacity(),
            )
        };
        Self {
            outstanding,
            records,
        }
    }
}

impl<K, V> Drop for FreeingBatch<'_, K, V> {
    fn drop(&mut self) {
        self.outstanding.fetch_sub(self.records.len(), Relaxed);
    }
}

/// A displaced value with its retirement record, ready for a batch. Made right after the
/// displacement, with no user code between, and retired at once.
pub(crate) struct Retiring<K, V> {
    /// `None` for a first value of a type without drop glue: freeing it would do nothing, and
    /// its memory is its entry's, which every thread that can read the value keeps alive by
    /// itself (DESIGN.md, "First values"), so it needs no epoch.
    pub(crate) record: Option<Retired<K, V>>,
    value: NonNull<V>,
}

impl<K, V> Retiring<K, V> {
    /// The record of a value displaced from `entry`: the node itself, or, for the entry's
    /// first value, a reference to the entry if dropping the value does anything.
    #[inline(always)]
    pub(crate) fn new(displaced: Displaced<V>, entry: &ListedEntry<K, V>) -> Self {
        match displaced {
            Displaced::Node(node) => Self {
                record: Some(Retired::Node(node)),
                value: node.cast(),
            },
            Displaced::First(value) => Self {
                record: mem::needs_drop::<V>()
                    .then(|| Retired::First(ManuallyDrop::new(entry.share()))),
                value,
            },
        }
    }

    /// Where the value is, for a `Ref` to it.
    pub(crate) fn value(&self) -> NonNull<V> {
        self.value
    }
}

/// Entries that a publication takes out of the read view while older snapshots may still
/// read them: the epoch of the snapshot being replaced adopts them ([`Epoch::adopt`]), and
/// they are dropped with it, once no snapshot up to that one is pinned. A snapshot's table
/// may own nothing (a dirty rebuild took its shares over), so its entries are kept alive by
/// the tables and orphans that hold their shares (DESIGN.md, "Reclamation").
pub(crate) struct Orphans<K, V> {
    /// The replaced read table, kept until then because its drop may drop shares that an
    /// older snapshot's table (one that owns nothing) relies on.
    pub(crate) read: Option<Arc<Table<K, V>>>,
    /// A dirty map that a clear (or the map's drop) discards: it owns the shares of the read
    /// table it was rebuilt from.
    pub(crate) dirty: Option<Table<K, V>>,
    /// Entries the dirty rebuild expunged, whose shares it took over from the read table.
    pub(crate) entries: Vec<SharedEntry<K, V>>,
}

impl<K, V> Orphans<K, V> {
    fn is_empty(&self) -> bool {
        self.read.is_none() && self.dirty.is_none() && self.entries.is_empty()
    }
}

impl<K, V> Default for Orphans<K, V> {
    fn default() -> Self {
        Self {
            read: None,
            dirty: None,
            entries: Vec::new(),
        }
    }
}

/// What one epoch has been handed: values, how many, and orphaned entries.
struct Received<K, V> {
    batches: Vec<Vec<Retired<K, V>>>,
    values: usize,
    orphans: Vec<Orphans<K, V>>,
}

/// One reclamation epoch, owned by one published snapshot and by its predecessor epoch.
pub(crate) struct Epoch<K, V> {
    /// The batches handed to this epoch. A mutex, not a lock-free stack: a thread hands over
    /// one batch per [`RETIRED_PER_BATCH`](crate::RETIRED_PER_BATCH) retirements, so it is
    /// rarely contended, and a batch is a vector that nothing else links.
    received: Mutex<Received<K, V>>,
    /// The epoch of the next published snapshot, set once, just before that publication.
    successor: Mutex<Option<Arc<Epoch<K, V>>>>,
    /// Count of this pair's values handed to epochs and not yet freed, for `stats()`.
    outstanding: Arc<AtomicUsize>,
}

impl<K, V> Epoch<K, V> {
    pub(crate) fn new(outstanding: Arc<AtomicUsize>) -> Self {
        Self {
            received: Mutex::new(Received {
                batches: Vec::new(),
                values: 0,
                orphans: Vec::new(),
            }),
            successor: Mutex::new(None),
            outstanding,
        }
    }

    /// A fresh epoch sharing this one's counter, linked as this one's successor. Only under the
    /// map mutex, just before the snapshot owning the new epoch is published: from then on
    /// anyone pinning this epoch also pins the new one.
    pub(crate) fn begin_successor(&self) -> Arc<Epoch<K, V>> {
        let next = Arc::new(Epoch::new(self.outstanding.clone()));
        let previous = self.successor.lock().replace(next.clone());
        debug_assert!(previous.is_none(), "an epoch has one successor");
        next
    }

    /// Retired values of the whole pair handed to epochs and not yet freed.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Relaxed)
    }

    /// Takes over a batch of retired values, to free them when this epoch is dropped. The
    /// caller pins this epoch's snapshot, which was current after every value of the batch
    /// was displaced (DESIGN.md, "Reclamation"). Returns true when this epoch has just
    /// received its [`RETIRED_PER_EPOCH`]th value, and the caller should ask the map to rotate.
    pub(crate) fn receive(&self, batch: Vec<Retired<K, V>>) -> bool {
        let count = batch.len();
        if count == 0 {
            return false;
        }
        self.outstanding.fetch_add(count, Relaxed);
        let mut received = self.received.lock();
        let before = received.values;
        received.values += count;
        received.batches.push(batch);
        before < RETIRED_PER_EPOCH && received.values >= RETIRED_PER_EPOCH
    }
}

impl<K, V> Epoch<K, V> {
    /// Takes over `orphans`, to drop them when this epoch is dropped. Only under the map
    /// mutex, from the publication that takes them out of the read view, while this epoch's
    /// snapshot is the current one: every snapshot that can list them is this one or older.
    pub(crate) fn adopt(&self, orphans: Orphans<K, V>) {
        if !orphans.is_empty() {
            self.received.lock().orphans.push(orphans);
        }
    }
}

impl<K, V> Drop for Epoch<K, V> {
    fn drop(&mut self) {
        // Counted off per batch (`FreeingBatch`): counted off per value, the counter's
        // `lock`ed update was 86% of the time spent freeing (`perf`, one thread swapping one
        // key). The batches are freed by dropping them: if a value's `Drop` panics, the glue
        // of the outer vector goes on with the remaining batches while unwinding.
        let outstanding = &*self.outstanding;
        // Dropped after the values, also while unwinding from one of theirs.
        let orphans = std::mem::take(&mut self.received.get_mut().orphans);
        let batches: Vec<FreeingBatch<'_, K, V>> =
            std::mem::take(&mut self.received.get_mut().batches)
                .into_iter()
                // SAFETY: the epoch is being dropped, so no thread can still read a value handed
                // to it (DESIGN.md, "Reclamation"); each record was handed over once.
                .map(|batch| unsafe { FreeingBatch::new(batch, outstanding) })
                .collect();
        drop(batches);
        drop(orphans);
        // Drop the chain of successors iteratively: a thread that pinned a very old snapshot
        // may release thousands of epochs at once.
        let mut next = self.successor.get_mut().take();
        while let Some(epoch) = next.take() {
            if let Ok(mut epoch) = Arc::try_unwrap(epoch) {
                // Taken into `next` before `epoch` is dropped: if one of its values panics,
                // `next` is dropped while unwinding and frees the rest of the chain. (As the
                // value of a `match` arm it would leak: rust-lang/rust#47949.)
                next = epoch.successor.get_mut().take();
            }
        }
    }
}
