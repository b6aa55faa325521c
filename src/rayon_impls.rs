//! The `rayon` feature: parallel iteration over a map ([`DualMap::par_iter`]) or a view
//! ([`View::par_iter`]), with Go's `Range` semantics per item.

use crate::entry::ListedEntry;
use crate::raw::RawMap;
use crate::snapshot::Snapshot;
use crate::sync::Arc;
use crate::view::{present_in, View};
use crate::DualMap;
use rayon::prelude::*;
use std::fmt;

impl<K: Send + Sync, V: Send + Sync, S> View<'_, K, V, S> {
    /// A parallel [`iter`](Self::iter): the same items, with the same guarantees, split over
    /// rayon's threads (by pair, and within a pair's table). Items are plain references: no
    /// lock and no shared write per item.
    ///
    /// ```
    /// use rayon::prelude::*;
    /// let hits = dualmap::DualMap::new();
    /// for page in 0..100u64 {
    ///     hits.insert(page, page);
    /// }
    /// let view = hits.view();
    /// assert_eq!(view.par_iter().map(|(_, n)| n).sum::<u64>(), 4_950);
    /// ```
    pub fn par_iter(&self) -> impl ParallelIterator<Item = (&K, &V)> + '_ {
        self.snapshots().par_iter().flat_map(|snapshot| {
            // SAFETY: every entry is one of a snapshot this view pins while it is borrowed.
            snapshot
                .table
                .par_iter()
                .filter_map(|entry| unsafe { present_in(snapshot, entry) })
        })
    }
}

impl<K: Send + Sync, V: Send + Sync, S> DualMap<K, V, S> {
    /// Iterates in parallel, on rayon's threads, with Go's `Range` semantics per item, as
    /// [`iter`](Self::iter): it first promotes every pair whose dirty map holds keys its
    /// snapshot lacks, then pins every pair's snapshot; every key present for the whole
    /// iteration is visited exactly once, with its value as of the visit; no key twice.
    ///
    /// Each [`ParItem`] pins its snapshot by itself, so it may outlive the iteration (be
    /// collected, sent elsewhere): that is one reference-count increment per item, on a count
    /// its pair's items share. Where items need not outlive the iteration,
    /// [`view`](Self::view)`().`[`par_iter`](View::par_iter) yields plain references with no
    /// shared write at all.
    ///
    /// ```
    /// use rayon::prelude::*;
    /// let sizes = dualmap::DualMap::new();
    /// sizes.insert("a.txt", 10u64);
    /// sizes.insert("b.txt", 32);
    /// let total: u64 = sizes.par_iter().map(|item| *item.value()).sum();
    /// assert_eq!(total, 42);
    /// let mut names: Vec<&str> = sizes.par_iter().map(|item| *item.key()).collect();
    /// names.sort();
    /// assert_eq!(names, ["a.txt", "b.txt"]);
    /// ```
    pub fn par_iter(&self) -> impl ParallelIterator<Item = ParItem<K, V>> + '_ {
        let snapshots: Vec<Arc<Snapshot<K, V>>> =
            self.pairs().iter().map(RawMap::pin_for_iteration).collect();
        snapshots.into_par_iter().flat_map(|snapshot| {
            let table: *const _ = &*snapshot.table;
            // SAFETY: the table lives inside `snapshot`, immutable once published, and the
            // closure below owns `snapshot` for as long as the returned iterator, which
            // borrows the table, exists. Items do not borrow the table: each holds its own
            // pin.
            let entries = unsafe { &*table }.par_iter();
            entries.filter_map(move |entry| ParItem::new(entry, &snapshot))
        })
    }
}

/// An item of [`DualMap::par_iter`]: a key and its value as of the visit, with a pin of the
/// snapshot they came from, so that it may outlive the iteration (like a [`Ref`](crate::Ref),
/// it holds no lock, and keeps values displaced since in memory until it is dropped).
///
/// ```
/// use rayon::prelude::*;
/// let map = dualmap::DualMap::new();
/// map.insert(1, "one");
/// let items: Vec<dualmap::ParItem<i32, &str>> = map.par_iter().collect();
/// map.insert(1, "uno");
/// assert_eq!(items[0].pair(), (&1, &"one"));
/// ```
pub struct ParItem<K, V> {
    key: std::ptr::NonNull<K>,
    value: std::ptr::NonNull<V>,
    _pin: Arc<Snapshot<K, V>>,
}

impl<K, V> ParItem<K, V> {
    fn new(entry: &ListedEntry<K, V>, snapshot: &Arc<Snapshot<K, V>>) -> Option<Self> {
        Some(Self {
            key: (&entry.key).into(),
            value: entry.load()?,
            _pin: snapshot.clone(),
        })
    }

    /// The key.
    ///
    /// ```
    /// use rayon::prelude::*;
    /// let map = dualmap::DualMap::new();
    /// map.insert('k', 0);
    /// assert_eq!(map.par_iter().map(|item| *item.key()).collect::<Vec<_>>(), ['k']);
    /// ```
    pub fn key(&self) -> &K {
        // SAFETY: the key lives in an entry of the pinned snapshot's table.
        unsafe { self.key.as_ref() }
    }

    /// The value, as it was when the item was made.
    ///
    /// ```
    /// use rayon::prelude::*;
    /// let map = dualmap::DualMap::new();
    /// map.insert('k', 5);
    /// assert_eq!(map.par_iter().map(|item| *item.value()).sum::<i32>(), 5);
    /// ```
    pub fn value(&self) -> &V {
        // SAFETY: the value was loaded after the snapshot was pinned, and the pin keeps the
        // epoch any displacement of it retires to (DESIGN.md, "Reclamation").
        unsafe { self.value.as_ref() }
    }

    /// The key and the value.
    ///
    /// ```
    /// use rayon::prelude::*;
    /// let map = dualmap::DualMap::new();
    /// map.insert('k', 5);
    /// let items: Vec<_> = map.par_iter().collect();
    /// assert_eq!(items[0].pair(), (&'k', &5));
    /// ```
    pub fn pair(&self) -> (&K, &V) {
        (self.key(), self.value())
    }
}

// SAFETY: a `ParItem` gives out `&K` and `&V` only, and its pin is an `Arc` of a snapshot,
// which is `Send + Sync` exactly when `K` and `V` are both; so under those bounds moving or
// sharing an item moves or shares only shared references and an `Arc`.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for ParItem<K, V> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for ParItem<K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for ParItem<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParItem")
            .field(self.key())
            .field(self.value())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::{DualMap, ParItem, RETIRED_PER_EPOCH};
    use rayon::prelude::*;

    /// Under Miri too: items collected from a parallel iteration, and references from a
    /// view's, stay valid while every value is overwritten and the epochs rotate.
    #[test]
    fn items_and_view_references_outlive_overwrites() {
        let map: DualMap<u64, String> = DualMap::builder().pairs(2).build();
        for key in 0..8 {
            map.insert(key, format!("{key}:0"));
        }
        let items: Vec<ParItem<u64, String>> = map.par_iter().collect();
        let view = map.view();
        let viewed: Vec<(&u64, &String)> = view.par_iter().collect();
        for round in 1..=3 * RETIRED_PER_EPOCH as u64 {
            map.insert(round % 8, format!("{}:{round}", round % 8));
        }
        assert_eq!(items.len(), 8);
        for (key, value) in items.iter().map(ParItem::pair).chain(viewed) {
            assert_eq!(*value, format!("{key}:0"));
        }
        assert!(format!("{:?}", items[0]).starts_with("ParItem("));
        map.clear();
        assert_eq!(view.par_iter().count(), 0, "a view shows no cleared key");
        assert_eq!(items[0].value(), &format!("{}:0", items[0].key()));
    }
}
