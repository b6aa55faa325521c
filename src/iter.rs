//! Iteration over a pinned snapshot (Go's `Range`).
//!
//! The iterator owns one `Arc` of the snapshot it walks and shares it with the items it yields
//! through an `Rc`, so an item costs two non-atomic increments and no shared write.

use crate::entry::{value_of, Entry};
use crate::snapshot::Snapshot;
use crate::sync::Arc;
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::rc::Rc;

/// Anything that keeps a snapshot alive, with its type erased so items are generic only over
/// what they point to.
trait KeepsAlive {}
impl<T> KeepsAlive for T {}

/// A key or value yielded by [`Iter`], [`Keys`] or [`Values`]; dereferences to it. Like
/// [`Ref`](crate::Ref) it holds no lock and pins the snapshot being iterated.
///
/// ```
/// let map = dualmap::DualMap::new();
/// map.insert("k", 1);
/// let (key, value) = map.iter().next().unwrap();
/// assert_eq!((*key, *value), ("k", 1));
/// ```
pub struct Pinned<'a, T> {
    ptr: NonNull<T>,
    _pin: Rc<dyn KeepsAlive + 'a>,
}

impl<T> Deref for Pinned<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `ptr` points at a key or value reachable from the snapshot `_pin` keeps
        // alive, loaded after that snapshot was (DESIGN.md, "Reclamation").
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: fmt::Debug> fmt::Debug for Pinned<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display> fmt::Display for Pinned<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// The iterator of [`DualMap::iter`](crate::DualMap::iter): every key present when it was
/// created, exactly once, with its value as of the visit.
///
/// ```
/// let map = dualmap::DualMap::new();
/// map.insert(1, 1);
/// let mut iter = map.iter();
/// map.insert(2, 2); // added after the start: not visited
/// assert_eq!(iter.by_ref().count(), 1);
/// ```
pub struct Iter<'a, K, V> {
    /// Borrows the table inside the pinned snapshot; declared first so it is dropped first.
    entries: hashbrown::hash_table::Iter<'a, Arc<Entry<K, V>>>,
    /// The snapshot: owned until the first item is yielded, then shared with the items
    /// through an `Rc`. Allocating the `Rc` lazily keeps iteration of an empty map
    /// allocation-free (golang/go#62404).
    pin: Pin<'a, K, V>,
}

enum Pin<'a, K, V> {
    Owned(Arc<Snapshot<K, V>>),
    Shared(Rc<dyn KeepsAlive + 'a>),
}

impl<'a, K: 'a, V: 'a> Pin<'a, K, V> {
    fn share(&mut self) -> Rc<dyn KeepsAlive + 'a> {
        if let Pin::Owned(snapshot) = self {
            *self = Pin::Shared(Rc::new(snapshot.clone()));
        }
        match self {
            Pin::Shared(shared) => shared.clone(),
            Pin::Owned(_) => unreachable!("just shared"),
        }
    }
}

impl<'a, K: 'a, V: 'a> Iter<'a, K, V> {
    pub(crate) fn new(snapshot: Arc<Snapshot<K, V>>) -> Self {
        let table: *const _ = &*snapshot.table;
        // SAFETY: the table lives inside `snapshot`, which is immutable once published and
        // which this iterator keeps alive (and drops after `entries`). `'a` is the borrow of
        // the map, which outlives K and V; no reference with the extended lifetime escapes:
        // items carry their own pin.
        let entries = unsafe { &*table }.iter();
        Self {
            entries,
            pin: Pin::Owned(snapshot),
        }
    }
}

impl<'a, K: 'a, V: 'a> Iterator for Iter<'a, K, V> {
    type Item = (Pinned<'a, K>, Pinned<'a, V>);

    fn next(&mut self) -> Option<Self::Item> {
        let (entry, node) = self
            .entries
            .by_ref()
            .find_map(|entry| Some((entry, entry.load()?)))?;
        let pin = self.pin.share();
        // SAFETY: the node was loaded after the snapshot was pinned; the pin keeps it alive.
        let value = NonNull::from(unsafe { value_of(node) });
        let key = Pinned {
            ptr: NonNull::from(&entry.key),
            _pin: pin.clone(),
        };
        Some((
            key,
            Pinned {
                ptr: value,
                _pin: pin,
            },
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.entries.size_hint().1)
    }
}

impl<K, V> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("remaining_at_most", &self.entries.len())
            .finish()
    }
}

/// The iterator of [`DualMap::keys`](crate::DualMap::keys).
///
/// ```
/// let map = dualmap::DualMap::new();
/// map.insert('x', ());
/// assert_eq!(*map.keys().next().unwrap(), 'x');
/// ```
pub struct Keys<'a, K, V>(pub(crate) Iter<'a, K, V>);

impl<'a, K: 'a, V: 'a> Iterator for Keys<'a, K, V> {
    type Item = Pinned<'a, K>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(key, _)| key)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> fmt::Debug for Keys<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Keys").field(&self.0).finish()
    }
}

/// The iterator of [`DualMap::values`](crate::DualMap::values).
///
/// ```
/// let map = dualmap::DualMap::new();
/// map.insert('x', 9);
/// assert_eq!(*map.values().next().unwrap(), 9);
/// ```
pub struct Values<'a, K, V>(pub(crate) Iter<'a, K, V>);

impl<'a, K: 'a, V: 'a> Iterator for Values<'a, K, V> {
    type Item = Pinned<'a, V>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(_, value)| value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> fmt::Debug for Values<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Values").field(&self.0).finish()
    }
}
