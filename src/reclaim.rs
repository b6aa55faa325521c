//! Reclamation of displaced values: every published snapshot is an epoch.
//!
//! A value taken out of a slot by a store, a remove or a compare-and-swap may still be read by
//! a thread that loaded it a moment earlier. It is therefore *retired* to the epoch of the
//! snapshot that is current after the displacement, and freed when that epoch is dropped.
//! Each epoch keeps its successor alive, so a thread pinning an old snapshot keeps every later
//! epoch, and so every value retired since, alive too. The argument that this is enough is in
//! DESIGN.md ("Reclamation").
//!
//! Retired values are pushed onto a lock-free stack inside the epoch, linked through a
//! [`Link`] in each record: a value node's own link, so that retiring a node allocates
//! nothing; an entry's first value, which lives inside its entry, is retired through a small
//! record (`FirstRetired`) that holds the entry alive until the value is dropped, allocated
//! once per entry, at the first value's displacement. When an epoch has collected
//! [`RETIRED_PER_EPOCH`] values, the map publishes a fresh snapshot around the same table (a
//! *rotation*) so that the full epoch can drain even when no promotion happens.

use crate::entry::{Displaced, Entry, ValueNode};
use crate::node_pool;
use crate::sync::{exclusive_ptr, Arc, AtomicPtr, AtomicUsize, Mutex};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// How many displaced values one reclamation epoch collects before the map publishes a fresh
/// snapshot (a *rotation*) so that they can be freed. This bounds the garbage of an
/// overwrite-heavy map ([`Stats::retired`](crate::Stats::retired)): with no operation in
/// flight and no handle held, fewer than this many displaced values per read/dirty pair wait
/// to be freed; while
/// operations run, each one pins what other threads retire during it (a thread preempted in
/// the middle of an operation pins for as long as it is off the CPU). DESIGN.md, "How much
/// garbage", states the bound.
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

/// A record's place on an epoch's retirement stack. Stack pointers to links carry the
/// record's kind in their lowest bit (links are aligned as pointers): 0 for a [`ValueNode`], 1 for a
/// [`FirstRetired`].
pub(crate) struct Link {
    next: *mut Link,
    /// How many records the stack holds up to and including this one.
    depth: usize,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            next: ptr::null_mut(),
            depth: 0,
        }
    }
}

const FIRST_TAG: usize = 1;

/// The retirement of an entry's first value: keeps the entry (and so the value, inside it)
/// alive until the epoch drops the value in place.
#[repr(C)]
struct FirstRetired<K, V> {
    link: Link,
    entry: Arc<Entry<K, V>>,
}

/// A displaced value with its retirement record, ready for [`Epoch::retire`]. Made right
/// after the displacement, with no user code between, and retired at once.
pub(crate) struct Retiring<K, V> {
    tagged: *mut Link,
    value: NonNull<V>,
    _entry: PhantomData<Arc<Entry<K, V>>>,
}

impl<K, V> Retiring<K, V> {
    /// The record of a value displaced from `entry`: a node's own link, or, for the entry's
    /// first value, a fresh record holding the entry (once per entry, so out of line).
    #[inline(always)]
    pub(crate) fn new(displaced: Displaced<V>, entry: &Arc<Entry<K, V>>) -> Self {
        match displaced {
            Displaced::Node(node) => Self {
                // SAFETY: the node is this thread's to retire; the projection keeps its
                // provenance.
                tagged: unsafe { ptr::addr_of_mut!((*node.as_ptr()).link) },
                value: node.cast(),
                _entry: PhantomData,
            },
            Displaced::First(value) => Self::first(value, entry),
        }
    }

    #[cold]
    #[inline(never)]
    fn first(value: NonNull<V>, entry: &Arc<Entry<K, V>>) -> Self {
        let record = node_pool::allocate::<FirstRetired<K, V>>().as_ptr();
        // SAFETY: fresh memory for one record, owned by this thread.
        let tagged = unsafe {
            record.write(FirstRetired {
                link: Link::default(),
                entry: entry.clone(),
            });
            ptr::addr_of_mut!((*record).link).map_addr(|address| address | FIRST_TAG)
        };
        Self {
            tagged,
            value,
            _entry: PhantomData,
        }
    }

    /// Where the value is, for a `Ref` to it.
    pub(crate) fn value(&self) -> NonNull<V> {
        self.value
    }
}

/// What an epoch owns: value nodes, and entries whose first value it holds.
type Owned<K, V> = (ValueNode<V>, Arc<Entry<K, V>>);

/// One reclamation epoch, owned by one published snapshot and by its predecessor epoch.
pub(crate) struct Epoch<K, V> {
    /// Top of the stack of values retired to this epoch (a tagged link, see [`Link`]).
    retired: AtomicPtr<Link>,
    /// The epoch of the next published snapshot, set once, just before that publication.
    successor: Mutex<Option<Arc<Epoch<K, V>>>>,
    /// Count of this pair's retired values not yet freed, for `stats()`.
    outstanding: Arc<AtomicUsize>,
    _owns: PhantomData<Owned<K, V>>,
}

// SAFETY: the epoch owns retired values (and entries, for first values) and drops them on
// whichever thread drops the epoch last (needs `Send` of what an `Arc<Entry>` needs); threads
// that retire into it only move values in. Readers never reach values through the epoch.
// The ownership marker (raw pointers inside) would make `Epoch` neither `Send` nor `Sync`;
// these impls grant both under exactly those bounds.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Epoch<K, V> {}
// SAFETY: as above: `&Epoch` only allows pushing owned values.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Epoch<K, V> {}

impl<K, V> Epoch<K, V> {
    pub(crate) fn new(outstanding: Arc<AtomicUsize>) -> Self {
        Self {
            retired: AtomicPtr::new(ptr::null_mut()),
            successor: Mutex::new(None),
            outstanding,
            _owns: PhantomData,
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

    /// Retired values of the whole pair not yet freed.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Relaxed)
    }

    /// Retires a value to this epoch. Returns true when this epoch has just filled up (its
    /// depth reached a multiple of [`RETIRED_PER_EPOCH`]) and the caller should ask the map to
    /// rotate.
    pub(crate) fn retire(&self, value: Retiring<K, V>) -> bool {
        let tagged = value.tagged;
        let link = untagged(tagged);
        self.outstanding.fetch_add(1, Relaxed);
        let mut top = self.retired.load(Acquire);
        loop {
            let depth = if top.is_null() {
                1
            } else {
                // SAFETY: records on the stack are freed only when the epoch is dropped, and we
                // hold a reference to it. The Acquire load saw the push that wrote the field.
                unsafe { (*untagged(top)).depth + 1 }
            };
            // SAFETY: this thread owns the record being retired, so only it writes its link;
            // readers touch only values, never links, through raw projections.
            unsafe { link.write(Link { next: top, depth }) };
            match self
                .retired
                .compare_exchange_weak(top, tagged, Release, Acquire)
            {
                Ok(_) => return depth % RETIRED_PER_EPOCH == 0,
                Err(actual) => top = actual,
            }
        }
    }
}

/// The link a tagged stack pointer points to.
fn untagged(tagged: *mut Link) -> *mut Link {
    tagged.map_addr(|address| address & !FIRST_TAG)
}

/// Frees one retired record: drops its value and releases its memory (and, for a first
/// value, the entry's `Arc`).
///
/// # Safety
/// `tagged` was pushed by `Epoch::retire` onto an epoch that is being dropped, so no thread
/// can read its value any more (DESIGN.md, "Reclamation"); each record is freed once.
unsafe fn free_record<K, V>(tagged: *mut Link) {
    let link = untagged(tagged);
    if tagged.addr() & FIRST_TAG == 0 {
        let node = link
            .wrapping_byte_sub(std::mem::offset_of!(ValueNode<V>, link))
            .cast::<ValueNode<V>>();
        // SAFETY: the caller's contract; the link is the `link` field of a node from
        // `OwnedValue::new`, and the offset above leads back to the node.
        unsafe { ValueNode::destroy(NonNull::new_unchecked(node)) };
    } else {
        // `link` is the first field of a `repr(C)` record.
        let record = link.cast::<FirstRetired<K, V>>();
        // SAFETY: the caller's contract; the record was written by `Epoch::retire`. The record
        // is read out (its memory released) before the value is dropped, and the entry `Arc`
        // is dropped after it, even if the value's `Drop` panics.
        unsafe {
            let FirstRetired { entry, .. } = record.read();
            node_pool::release(NonNull::new_unchecked(record));
            entry.drop_first();
        }
    }
}

/// Frees a retirement stack from `top` down, counting each freed value off `outstanding`. If
/// a value's `Drop` panics, the rest is still freed while unwinding, and the panic continues.
fn free_stack<K, V>(mut top: *mut Link, outstanding: &AtomicUsize) {
    struct Rest<'a, K, V>(*mut Link, &'a AtomicUsize, PhantomData<(K, V)>);
    impl<K, V> Drop for Rest<'_, K, V> {
        fn drop(&mut self) {
            free_stack::<K, V>(self.0, self.1);
        }
    }
    while !top.is_null() {
        // SAFETY: the epoch is being dropped, so no thread can still read a value retired to
        // it (DESIGN.md, "Reclamation"); every record on the stack was pushed once.
        let next = unsafe { (*untagged(top)).next };
        outstanding.fetch_sub(1, Relaxed);
        let rest = Rest::<K, V>(next, outstanding, PhantomData);
        // SAFETY: as above.
        unsafe { free_record::<K, V>(top) };
        std::mem::forget(rest);
        top = next;
    }
}

impl<K, V> Drop for Epoch<K, V> {
    fn drop(&mut self) {
        free_stack::<K, V>(exclusive_ptr(&mut self.retired), &self.outstanding);
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
