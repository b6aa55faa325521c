//! The one module that names concurrency primitives.
//!
//! Everything else imports `Arc`, the atomics, the mutex and the snapshot cell from here, so
//! that under `cfg(dualmap_loom)` the whole algorithm runs on loom's models without mentioning loom.
//! loom cannot look inside `arc_swap` or `parking_lot`; under loom the snapshot cell becomes a
//! loom mutex around an `Arc`, which is stronger than `ArcSwap` (it orders every load and
//! store), and the map mutex becomes loom's mutex. For the same reason a snapshot's
//! "superseded" flag, a `SeqCst` `AtomicBool`, becomes a loom mutex around a `bool`: loom treats
//! `SeqCst` accesses as `AcqRel`, and the arguments that rest on the single total order of
//! `SeqCst` operations (DESIGN.md, "Reclamation") need an order loom can model.

pub(crate) use imp::*;
pub(crate) use mutex::*;

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
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    pub(crate) use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize};
    pub(crate) use std::sync::Arc;

    /// A flag set once, read and set with `SeqCst`.
    pub(crate) struct SeqCstFlag(AtomicBool);

    impl SeqCstFlag {
        pub(crate) fn new() -> Self {
            Self(AtomicBool::new(false))
        }
        #[inline]
        pub(crate) fn is_set(&self) -> bool {
            self.0.load(SeqCst)
        }
        pub(crate) fn set(&self) {
            self.0.store(true, SeqCst);
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

    /// The pointer held by an atomic that this thread owns exclusively.
    pub(crate) fn exclusive_ptr<T>(atomic: &mut AtomicPtr<T>) -> *mut T {
        *atomic.get_mut()
    }
}

#[cfg(dualmap_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize};
    pub(crate) use loom::sync::Arc;

    pub(crate) struct SeqCstFlag(loom::sync::Mutex<bool>);

    impl SeqCstFlag {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Mutex::new(false))
        }
        pub(crate) fn is_set(&self) -> bool {
            *self.0.lock().unwrap()
        }
        pub(crate) fn set(&self) {
            *self.0.lock().unwrap() = true;
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

    pub(crate) fn exclusive_ptr<T>(atomic: &mut AtomicPtr<T>) -> *mut T {
        atomic.with_mut(|ptr| *ptr)
    }
}
