//! The one module that names concurrency primitives.
//!
//! Everything else imports `Arc`, the atomics, the mutex and the snapshot cell from here, so
//! that under `cfg(dualmap_loom)` the whole algorithm runs on loom's models without mentioning loom.
//! loom cannot look inside `arc_swap` or `parking_lot`; under loom the snapshot cell becomes a
//! loom mutex around an `Arc`, which is stronger than `ArcSwap` (it orders every load and
//! store), and the map mutex becomes loom's mutex. For the same reason a snapshot's flags
//! byte (its "superseded" flag among them), a `SeqCst` `AtomicU8`, becomes a loom mutex around
//! a `u8`: loom treats `SeqCst` accesses as `AcqRel`, and the arguments that rest on the
//! single total order of `SeqCst` operations (DESIGN.md, "Reclamation") need an order loom
//! can model.

pub(crate) use imp::*;
pub(crate) use mutex::*;
pub(crate) use try_lock::*;

/// An atomic that loom does not model, for a value that orders nothing and guards no memory:
/// the dirty map's [`ProbeCell`](crate::table::ProbeCell), which only steers prefetches (a
/// stale or torn value fetches a useless line). Modelled, each of its loads would multiply
/// the interleavings loom explores for every new key, with no race to find.
pub(crate) type HintUsize = std::sync::atomic::AtomicUsize;

/// The map mutex: `parking_lot`'s, which does not poison.
#[cfg(not(any(dualmap_loom, miri)))]
mod mutex {
    /// A mutex without poisoning: a panic in user code under the lock leaves the map usable,
    /// because every locked section mutates only after the last call that can panic.
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(parking_lot::Mutex::new(value))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0.get_mut()
        }
    }
}

/// Under loom, loom's mutex. Under Miri, std's: `parking_lot_core` 0.9.12 passes a reference
/// where the `futex` syscall takes a pointer, which current Miri rejects as undefined
/// behaviour as soon as a thread parks; std's futex use is modelled by Miri. Both ignore
/// poisoning, as `parking_lot` does.
#[cfg(any(dualmap_loom, miri))]
mod mutex {
    #[cfg(dualmap_loom)]
    use loom::sync as std_like;
    #[cfg(not(dualmap_loom))]
    use std::sync as std_like;

    pub(crate) struct Mutex<T>(std_like::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = std_like::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(std_like::Mutex::new(value))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }
}

#[cfg(not(dualmap_loom))]
mod imp {
    use std::sync::atomic::Ordering::SeqCst;
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize,
    };
    pub(crate) use std::sync::Arc;

    /// `std`'s cell with loom's interface: access through a [`MutPtr`], which loom tracks.
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);
    /// A pointer into an [`UnsafeCell`] for as long as it lives.
    pub(crate) struct MutPtr<T>(*mut T);

    impl<T> UnsafeCell<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }
        #[inline]
        pub(crate) fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }
    }

    impl<T> MutPtr<T> {
        /// # Safety
        /// No other reference to the value exists while the returned one lives.
        #[inline]
        #[allow(clippy::mut_from_ref)] // loom's `MutPtr::deref`, which this mirrors
        pub(crate) unsafe fn deref(&self) -> &mut T {
            // SAFETY: the caller's contract.
            unsafe { &mut *self.0 }
        }
    }

    /// A few flags in one byte, read with one `SeqCst` load; a flag is only ever set, never
    /// cleared.
    pub(crate) struct SeqCstFlags(std::sync::atomic::AtomicU8);

    impl SeqCstFlags {
        pub(crate) fn new(flags: u8) -> Self {
            Self(std::sync::atomic::AtomicU8::new(flags))
        }
        #[inline]
        pub(crate) fn load(&self) -> u8 {
            self.0.load(SeqCst)
        }
        pub(crate) fn set(&self, flags: u8) {
            self.0.fetch_or(flags, SeqCst);
        }
    }

    /// The published read snapshot.
    pub(crate) struct SnapshotCell<T>(arc_swap::ArcSwap<T>);
    /// A cheap, short-lived protection of a snapshot: no shared reference count is written.
    pub(crate) type SnapshotGuard<T> = arc_swap::Guard<Arc<T>>;

    impl<T> SnapshotCell<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            Self(arc_swap::ArcSwap::new(value))
        }
        pub(crate) fn load(&self) -> SnapshotGuard<T> {
            self.0.load()
        }
        pub(crate) fn load_full(&self) -> Arc<T> {
            self.0.load_full()
        }
        pub(crate) fn swap(&self, value: Arc<T>) -> Arc<T> {
            self.0.swap(value)
        }
    }

    /// A guard of a snapshot already held by reference count.
    pub(crate) fn guard_of<T>(snapshot: Arc<T>) -> SnapshotGuard<T> {
        arc_swap::Guard::from_inner(snapshot)
    }

    /// The snapshot a guard protects, held by reference count from now on.
    pub(crate) fn arc_of<T>(guard: SnapshotGuard<T>) -> Arc<T> {
        arc_swap::Guard::into_inner(guard)
    }

    /// The pointer held by an atomic that this thread owns exclusively.
    pub(crate) fn exclusive_ptr<T>(atomic: &mut AtomicPtr<T>) -> *mut T {
        *atomic.get_mut()
    }

    /// Nothing at run time. Under loom, a cell that records uses of state whose end a count
    /// decides (the entry arena's shared part): `used` where a thread is done with it and
    /// `ended` where it is freed, so that loom reports an end not ordered after every use.
    pub(crate) struct UseCheck;

    impl UseCheck {
        pub(crate) fn new() -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn used(&self) {}
        #[inline(always)]
        pub(crate) fn ended(&self) {}
    }
}

#[cfg(dualmap_loom)]
mod imp {
    pub(crate) use loom::cell::{MutPtr, UnsafeCell};
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize,
    };
    pub(crate) use loom::sync::Arc;

    pub(crate) struct SeqCstFlags(loom::sync::Mutex<u8>);

    impl SeqCstFlags {
        pub(crate) fn new(flags: u8) -> Self {
            Self(loom::sync::Mutex::new(flags))
        }
        pub(crate) fn load(&self) -> u8 {
            *self.0.lock().unwrap()
        }
        pub(crate) fn set(&self, flags: u8) {
            *self.0.lock().unwrap() |= flags;
        }
    }

    pub(crate) struct SnapshotCell<T>(loom::sync::Mutex<Arc<T>>);
    pub(crate) type SnapshotGuard<T> = Arc<T>;

    impl<T> SnapshotCell<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            Self(loom::sync::Mutex::new(value))
        }
        pub(crate) fn load(&self) -> SnapshotGuard<T> {
            self.0.lock().unwrap().clone()
        }
        pub(crate) fn load_full(&self) -> Arc<T> {
            self.load()
        }
        pub(crate) fn swap(&self, value: Arc<T>) -> Arc<T> {
            std::mem::replace(&mut *self.0.lock().unwrap(), value)
        }
    }

    pub(crate) fn guard_of<T>(snapshot: Arc<T>) -> SnapshotGuard<T> {
        snapshot
    }

    pub(crate) fn arc_of<T>(guard: SnapshotGuard<T>) -> Arc<T> {
        guard
    }

    pub(crate) fn exclusive_ptr<T>(atomic: &mut AtomicPtr<T>) -> *mut T {
        atomic.with_mut(|ptr| *ptr)
    }

    /// A cell read by every use and written by the end (see the `std` version).
    pub(crate) struct UseCheck(UnsafeCell<()>);

    impl UseCheck {
        pub(crate) fn new() -> Self {
            Self(UnsafeCell::new(()))
        }
        pub(crate) fn used(&self) {
            self.0.with(|_| ());
        }
        pub(crate) fn ended(&self) {
            self.0.with_mut(|_| ());
        }
    }
}

/// A lock that is only ever tried, never waited for (the retirement batches' stripes: a
/// thread that finds one taken uses another). Taking it is one compare-and-swap; releasing it
/// a plain `Release` store, where a mutex's unlock is a second `lock`ed instruction on x86 (it
/// must check for parked waiters, and a `TryLock` has none). Written once over the facade's
/// atomic and cell, so loom checks it as it runs.
mod try_lock {
    use super::imp::{AtomicBool, MutPtr, UnsafeCell};
    use std::mem::ManuallyDrop;
    use std::ops::{Deref, DerefMut};
    use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

    pub(crate) struct TryLock<T> {
        locked: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: the value is reached only through a guard, and at most one guard exists at a
    // time: a guard is made only by the compare-and-swap that sets the flag, and the flag is
    // cleared only when that guard is dropped, after its last access (`Release`, which the
    // next guard's compare-and-swap acquires). So sharing a `TryLock` moves the value's use
    // from thread to thread, as a mutex does: it needs `T: Send`, not `T: Sync`.
    unsafe impl<T: Send> Sync for TryLock<T> {}

    /// Access to a [`TryLock`]'s value; dropping it releases the lock.
    pub(crate) struct TryLockGuard<'a, T> {
        lock: &'a TryLock<T>,
        /// Dropped before the flag is cleared, so loom sees the access end first.
        value: ManuallyDrop<MutPtr<T>>,
    }

    impl<T> TryLock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self {
                locked: AtomicBool::new(false),
                value: UnsafeCell::new(value),
            }
        }

        /// The value, unless another guard holds it right now. A compare-and-swap, not a
        /// `swap`: a failed attempt writes nothing (loom, which does not order a failed
        /// `swap`'s write before the holder's release, otherwise sees the lock stay taken).
        #[inline]
        pub(crate) fn try_lock(&self) -> Option<TryLockGuard<'_, T>> {
            if self
                .locked
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_err()
            {
                return None;
            }
            Some(TryLockGuard {
                lock: self,
                value: ManuallyDrop::new(self.value.get_mut()),
            })
        }
    }

    impl<T> Deref for TryLockGuard<'_, T> {
        type Target = T;
        #[inline]
        fn deref(&self) -> &T {
            // SAFETY: this guard is the only one (see `Sync` above), and the reference
            // borrows it.
            unsafe { MutPtr::deref(&self.value) }
        }
    }

    impl<T> DerefMut for TryLockGuard<'_, T> {
        #[inline]
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as for `deref`; the reference borrows the guard mutably.
            unsafe { MutPtr::deref(&self.value) }
        }
    }

    impl<T> Drop for TryLockGuard<'_, T> {
        #[inline]
        fn drop(&mut self) {
            // SAFETY: dropped once, here; `value` is not used after.
            unsafe { ManuallyDrop::drop(&mut self.value) };
            self.lock.locked.store(false, Release);
        }
    }
}
