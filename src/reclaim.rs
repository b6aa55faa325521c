//! Reclamation of displaced values: every published snapshot is an epoch.
//!
//! A value taken out of a slot by a store, a remove or a compare-and-swap may still be read by
//! a thread that loaded it a moment earlier. It is therefore *retired* to the epoch of the
//! snapshot that is current after the displacement, and freed when that epoch is dropped.
//! Each epoch keeps its successor alive, so a thread pinning an old snapshot keeps every later
//! epoch, and so every value retired since, alive too. The argument that this is enough is in
//! DESIGN.md ("Reclamation").
//!
//! Retired values are pushed onto a lock-free stack inside the epoch; the value nodes
//! themselves are the stack's links, so retiring allocates nothing. When an epoch has
//! collected [`RETIRED_PER_EPOCH`] values, the map publishes a fresh snapshot around the same table
//! (a *rotation*) so that the full epoch can drain even when no promotion happens.

use crate::entry::{Displaced, ValueNode};
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

/// One reclamation epoch, owned by one published snapshot and by its predecessor epoch.
pub(crate) struct Epoch<V> {
    /// Top of the stack of values retired to this epoch, linked through `retired_next`.
    retired: AtomicPtr<ValueNode<V>>,
    /// The epoch of the next published snapshot, set once, just before that publication.
    successor: Mutex<Option<Arc<Epoch<V>>>>,
    /// Map-wide count of retired values not yet freed, for `stats()`.
    outstanding: Arc<AtomicUsize>,
    _owns: PhantomData<ValueNode<V>>,
}

// SAFETY: the epoch owns retired values and drops them on whichever thread drops the epoch last
// (needs `V: Send`); threads that retire into it only move values in (`Send`). Readers never
// reach values through the epoch. `AtomicPtr` alone would make `Epoch` `Send + Sync` for any
// `V`, hence the explicit bounds.
unsafe impl<V: Send> Send for Epoch<V> {}
// SAFETY: as above: `&Epoch` only allows pushing owned values.
unsafe impl<V: Send> Sync for Epoch<V> {}

impl<V> Epoch<V> {
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
    pub(crate) fn begin_successor(&self) -> Arc<Epoch<V>> {
        let next = Arc::new(Epoch::new(self.outstanding.clone()));
        let previous = self.successor.lock().replace(next.clone());
        debug_assert!(previous.is_none(), "an epoch has one successor");
        next
    }

    /// Retired values of the whole map not yet freed.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Relaxed)
    }

    /// Retires a displaced value to this epoch. Returns true when this epoch has just filled
    /// up and the caller should ask the map to rotate.
    pub(crate) fn retire(&self, value: Displaced<V>) -> bool {
        let node = value.0.as_ptr();
        self.outstanding.fetch_add(1, Relaxed);
        let mut top = self.retired.load(Acquire);
        loop {
            let depth = if top.is_null() {
                1
            } else {
                // SAFETY: nodes on the stack are freed only when the epoch is dropped, and we
                // hold a reference to it. The Acquire load saw the push that wrote the field.
                unsafe { (*top).retired_depth + 1 }
            };
            // SAFETY: this thread displaced the node, so only it writes the link fields;
            // readers touch only `value`, a different field, through raw projections.
            unsafe {
                ptr::addr_of_mut!((*node).retired_next).write(top);
                ptr::addr_of_mut!((*node).retired_depth).write(depth);
            }
            match self
                .retired
                .compare_exchange_weak(top, node, Release, Acquire)
            {
                Ok(_) => return depth % RETIRED_PER_EPOCH == 0,
                Err(actual) => top = actual,
            }
        }
    }
}

/// Frees a retirement stack from `top` down, counting each freed value off `outstanding`. If
/// a value's `Drop` panics, the rest is still freed while unwinding, and the panic continues.
fn free_stack<V>(mut top: *mut ValueNode<V>, outstanding: &AtomicUsize) {
    struct Rest<'a, V>(*mut ValueNode<V>, &'a AtomicUsize);
    impl<V> Drop for Rest<'_, V> {
        fn drop(&mut self) {
            free_stack(self.0, self.1);
        }
    }
    while !top.is_null() {
        // SAFETY: the epoch is being dropped, so no thread can still read a value retired to
        // it (DESIGN.md, "Reclamation"); every node on the stack came from `OwnedValue::new`
        // and was pushed once.
        let next = unsafe { (*top).retired_next };
        outstanding.fetch_sub(1, Relaxed);
        let rest = Rest(next, outstanding);
        // SAFETY: as above.
        unsafe { ValueNode::destroy(NonNull::new_unchecked(top)) };
        std::mem::forget(rest);
        top = next;
    }
}

impl<V> Drop for Epoch<V> {
    fn drop(&mut self) {
        free_stack(exclusive_ptr(&mut self.retired), &self.outstanding);
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
