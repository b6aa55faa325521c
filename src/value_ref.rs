//! [`Ref`]: a handle to one value that pins its snapshot instead of holding a lock.

use crate::entry::{value_of, SharedEntry};
use crate::snapshot::Snapshot;
use crate::sync::SnapshotGuard;
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;

/// A reference to a value of a [`DualMap`](crate::DualMap), returned by
/// [`get`](crate::DualMap::get), [`insert`](crate::DualMap::insert),
/// [`remove`](crate::DualMap::remove) and friends. Dereferences to the value.
///
/// A `Ref` holds **no lock**: holding it cannot block or deadlock any other operation, and the
/// thread holding it may call any method of any map. It shows the value as it was when the
/// operation ran; a later store to the same key does not change what this `Ref` shows.
///
/// It *pins* the read snapshot it came from: values displaced while it lives are freed only
/// after it is dropped (see [`docs::reclamation`](crate::docs::reclamation)). Keep it briefly,
/// like a `MutexGuard`; clone the value out ([`get_cloned`](crate::DualMap::get_cloned)) to keep
/// it longer.
///
/// ```
/// use dualmap::DualMap;
///
/// let map = DualMap::new();
/// map.insert("config", vec![1, 2, 3]);
/// let value = map.get("config").unwrap();
/// map.insert("config", vec![4]); // does not wait for `value`
/// assert_eq!(*value, [1, 2, 3]); // still the value it was read as
/// assert_eq!(*map.get("config").unwrap(), [4]);
/// ```
pub struct Ref<K, V> {
    pub(crate) value: NonNull<V>,
    /// Keeps alive an entry that was found in the dirty map, which no snapshot reaches.
    pub(crate) _entry: Option<SharedEntry<K, V>>,
    /// Keeps the value alive: either it is reachable from this snapshot, or it was displaced
    /// after this snapshot was loaded, and so goes to this snapshot's epoch or a later one.
    pub(crate) _snapshot: SnapshotGuard<Snapshot<K, V>>,
}

// SAFETY: a `Ref` gives out `&V` only, so sending it to another thread shares `V` (needs
// `V: Sync`); its other fields move with it and are `Send` under their own bounds.
unsafe impl<K, V: Sync> Send for Ref<K, V>
where
    Option<SharedEntry<K, V>>: Send,
    SnapshotGuard<Snapshot<K, V>>: Send,
{
}
// SAFETY: `&Ref` gives out `&V` only (needs `V: Sync`).
unsafe impl<K, V: Sync> Sync for Ref<K, V>
where
    Option<SharedEntry<K, V>>: Sync,
    SnapshotGuard<Snapshot<K, V>>: Sync,
{
}

impl<K, V> Deref for Ref<K, V> {
    type Target = V;

    fn deref(&self) -> &V {
        // SAFETY: `_snapshot` (and `_entry`, for a dirty-only entry) keep the value alive for
        // as long as `self` lives (DESIGN.md, "Reclamation").
        unsafe { value_of(self.value) }
    }
}

impl<K, V: fmt::Debug> fmt::Debug for Ref<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ref").field(&**self).finish()
    }
}
