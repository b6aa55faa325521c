//! [`View`]: the map's snapshots pinned for a while, to read and iterate through plain
//! references that may cross threads and `.await` points.

use crate::entry::{present, value_of, ListedEntry};
use crate::pairs;
use crate::raw::RawMap;
use crate::snapshot::{Lookup, Snapshot};
use crate::sync::Arc;
use crate::DualMap;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};

/// The read snapshots of every read/dirty pair, pinned as they were when the view was taken
/// (from [`DualMap::view`]); reads through it return plain `&K` and `&V` that live as long as
/// the view.
///
/// **What it shows.** The keys are those of the pinned snapshots: taking a view promotes every
/// pair whose dirty map holds keys its snapshot lacks (as [`iter`](DualMap::iter) does), so
/// every key present when `view` is called is in it; a key inserted afterwards is not, unless
/// it is stored into a tombstone the pinned table holds (a key removed before, see below).
/// Values are read live: [`get`](Self::get) and [`iter`](Self::iter) return a key's value as
/// of that call, and a key removed since the view was taken reads as absent (if it is
/// inserted again, it may or may not show again: it does when the store reuses its entry,
/// which it does until a promotion publishes a table without that entry). After a
/// [`clear`](DualMap::clear) of a key's read/dirty pair, the view shows none of that pair's
/// keys. So a view is a
/// [`Reader`](crate::Reader) that never moves on to a newer snapshot, shared by reference.
///
/// **What it pins, and for how long.** Like a [`Ref`](crate::Ref), it keeps its snapshots
/// and every value displaced since they were published in memory until the view is dropped
/// (see [`docs::reclamation`](crate::docs::reclamation)). Hold it for a request, a
/// `/stats` endpoint or one pass over the map, not for the life of a thread.
///
/// Reads through a view take no lock and make no shared write, not even per item of an
/// iteration. A `View` is `Send` and `Sync` when the map is (`K`, `V` and the hasher `Send +
/// Sync`), so an iteration may be held across an `.await` in a task spawned on a
/// multi-threaded runtime, and the view shared by threads.
///
/// ```
/// let stock = dualmap::DualMap::new();
/// stock.insert("apples", 3);
/// stock.insert("pears", 5);
/// let view = stock.view();
/// assert_eq!(view.get("apples"), Some(&3));
/// stock.insert("plums", 1); // inserted after the view was taken: not in it
/// assert!(!view.contains_key("plums"));
/// stock.insert("pears", 6); // a new value of a key it has: read live
/// let mut total = 0;
/// for (_, count) in &view {
///     total += count;
/// }
/// assert_eq!(total, 9);
/// ```
pub struct View<'a, K, V, S = ahash::RandomState> {
    map: &'a DualMap<K, V, S>,
    /// One pinned snapshot per read/dirty pair, in pair order.
    snapshots: Box<[Arc<Snapshot<K, V>>]>,
}

impl<'a, K, V, S> View<'a, K, V, S> {
    pub(crate) fn new(map: &'a DualMap<K, V, S>) -> Self {
        let snapshots = map.pairs().iter().map(RawMap::pin_for_iteration).collect();
        Self { map, snapshots }
    }

    /// The number of keys in the map now, as [`DualMap::len`]: a view pins snapshots, not a
    /// count, so this includes keys inserted since the view was taken, which it does not show.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, 'a');
    /// let view = map.view();
    /// assert_eq!(view.len(), 1);
    /// assert!(!view.is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if the map holds no key now; see [`len`](Self::len).
    ///
    /// ```
    /// let map: dualmap::DualMap<u8, u8> = dualmap::DualMap::new();
    /// assert!(map.view().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over the keys of the view with their values as of the visit (Go's `Range`
    /// over the pinned snapshots): every key of the view that is present when the iteration
    /// reaches it is visited exactly once; a key removed before that is skipped; no key is
    /// visited twice; keys the view does not have (inserted after it was taken) are not visited. Iterating again
    /// visits the same keys, with their values then. No lock, no shared write per item, and
    /// the items are plain references, `Send` when `K` and `V` are `Sync`.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert("a", 1);
    /// map.insert("b", 2);
    /// let view = map.view();
    /// let mut items: Vec<(&str, i32)> = view.iter().map(|(k, v)| (*k, *v)).collect();
    /// items.sort();
    /// assert_eq!(items, [("a", 1), ("b", 2)]);
    /// ```
    pub fn iter(&self) -> ViewIter<'_, K, V> {
        ViewIter {
            snapshots: self.snapshots.iter(),
            current: None,
        }
    }

    /// The pinned snapshots, for the `rayon` feature's parallel iteration.
    #[cfg(feature = "rayon")]
    pub(crate) fn snapshots(&self) -> &[Arc<Snapshot<K, V>>] {
        &self.snapshots
    }
}

impl<K, V, S> View<'_, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The value of `key` now, if the view has the key and it is present; `None` for a key
    /// inserted after the view was taken. The reference lives as long as the view.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(String::from("k"), 1);
    /// let view = map.view();
    /// let one = view.get("k").unwrap();
    /// map.insert(String::from("k"), 2); // `one` stays valid: the view pins it
    /// assert_eq!((*one, view.get("k")), (1, Some(&2)));
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hash(key);
        let snapshot = &self.snapshots[pairs::index(hash, self.map.pairs().mask())];
        if snapshot.live.is_cleared() {
            return None;
        }
        match snapshot.lookup(hash, key) {
            // SAFETY: the value was loaded after the snapshot was pinned, and the view keeps
            // that snapshot, so its epoch, until it is dropped; the returned reference borrows
            // the view (DESIGN.md, "Reclamation").
            Lookup::Present(value) => Some(unsafe { value_of(value) }),
            // A key only the dirty map holds was inserted after the view was taken.
            Lookup::Absent | Lookup::AskDirty => None,
        }
    }

    /// True if [`get`](Self::get) would return a value.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, ());
    /// let view = map.view();
    /// assert!(view.contains_key(&1));
    /// assert!(!view.contains_key(&2));
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<'v, K, V, S> IntoIterator for &'v View<'_, K, V, S> {
    type Item = (&'v K, &'v V);
    type IntoIter = ViewIter<'v, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V, S> fmt::Debug for View<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("pairs", &self.snapshots.len())
            .finish_non_exhaustive()
    }
}

/// The iterator of [`View::iter`]: `(&K, &V)` for each key of the view present at the visit.
///
/// ```
/// let map = dualmap::DualMap::new();
/// map.insert(7, "seven");
/// let view = map.view();
/// let mut iter = view.iter();
/// assert_eq!(iter.next(), Some((&7, &"seven")));
/// assert_eq!(iter.next(), None);
/// ```
pub struct ViewIter<'v, K, V> {
    /// The snapshots of the pairs still to visit.
    snapshots: std::slice::Iter<'v, Arc<Snapshot<K, V>>>,
    /// The pair being visited, once one is: its snapshot and the walk of its table.
    current: Option<PairWalk<'v, K, V>>,
}

type PairWalk<'v, K, V> = (
    &'v Snapshot<K, V>,
    hashbrown::hash_table::Iter<'v, ListedEntry<K, V>>,
);

impl<'v, K, V> Iterator for ViewIter<'v, K, V> {
    type Item = (&'v K, &'v V);

    // The walk of the current pair is inlined into the caller's loop, and moving on to the
    // next pair is out of line, as in `Iter` (40 -> 35 instructions a key).
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.next_in_pair().or_else(|| self.next_pair())
    }
}

impl<'v, K, V> ViewIter<'v, K, V> {
    /// The next item of the pair being visited.
    #[inline(always)]
    fn next_in_pair(&mut self) -> Option<(&'v K, &'v V)> {
        let (snapshot, entries) = self.current.as_mut()?;
        // SAFETY: the entries are those of a snapshot the view pins for `'v`.
        let item = entries.find_map(|entry| unsafe { present(entry) });
        // A `clear` since the view was taken removed every key of the pair.
        item.filter(|_| !snapshot.live.is_cleared())
    }

    /// The first item of the next pair that has one.
    #[inline(never)]
    fn next_pair(&mut self) -> Option<(&'v K, &'v V)> {
        loop {
            let snapshot = self.snapshots.next()?;
            self.current = Some((snapshot, snapshot.table.iter()));
            if let Some(item) = self.next_in_pair() {
                return Some(item);
            }
        }
    }
}

/// The items of a pinned snapshot's `entries` whose keys are present: none once a `clear`
/// ended the snapshot's generation.
///
/// # Safety
/// As for [`present`]: the snapshot stays pinned for as long as it is borrowed.
#[cfg(feature = "rayon")]
pub(crate) unsafe fn present_in<'s, K, V>(
    snapshot: &'s Snapshot<K, V>,
    entry: &'s ListedEntry<K, V>,
) -> Option<(&'s K, &'s V)> {
    if snapshot.live.is_cleared() {
        return None;
    }
    // SAFETY: the caller's contract.
    unsafe { present(entry) }
}

impl<K, V> fmt::Debug for ViewIter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_pair = self
            .current
            .as_ref()
            .map_or(0, |(_, entries)| entries.len());
        f.debug_struct("ViewIter")
            .field("left_in_pair", &in_pair)
            .field("pairs_left", &self.snapshots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::{DualMap, RETIRED_PER_EPOCH};

    /// One read/dirty pair, so that promotions happen where Go's would.
    fn map() -> DualMap<u64, String> {
        DualMap::builder().pairs(1).build()
    }

    #[test]
    fn shows_the_keys_present_when_taken_with_their_values_now() {
        let map = map();
        map.insert(0, "zero".into());
        map.get(&0); // promoted
        map.insert(1, "one".into()); // only in the dirty map: the view promotes it
        let view = map.view();
        assert_eq!(map.stats().dirty_len, None);
        map.insert(2, "two".into()); // after the view: not in it
        map.insert(0, "zero again".into()); // a key it has: read live
        map.remove(&1); // removed: absent from the view now
        assert_eq!(view.get(&0).map(String::as_str), Some("zero again"));
        assert_eq!(view.get(&1), None);
        assert_eq!(view.get(&2), None);
        assert!(map.contains_key(&2));
        let items: Vec<(u64, &str)> = view.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(items, [(0, "zero again")]);
        assert_eq!(view.len(), map.len()); // the map's count, now
                                           // Stored again into the same entry (a tombstone of the snapshot): the view sees it.
        map.insert(1, "one again".into());
        assert_eq!(view.get(&1).map(String::as_str), Some("one again"));
        assert_eq!(format!("{view:?}"), "View { pairs: 1, .. }");
    }

    #[test]
    fn shows_no_key_of_a_pair_cleared_since_it_was_taken() {
        let map: DualMap<u64, String> = DualMap::builder().pairs(2).build();
        for key in 0..16 {
            map.insert(key, key.to_string());
        }
        let view = map.view();
        let mut iter = view.iter();
        let first = iter.next().unwrap(); // still valid after the clear: the view pins it
        map.clear();
        map.insert(3, "new".into()); // a new entry, in the new generation: not in the view
        assert_eq!(iter.next(), None, "the rest of the walk is cleared");
        assert_eq!(first.1, &first.0.to_string());
        assert!((0..16).all(|key| view.get(&key).is_none()));
        assert_eq!(view.iter().count(), 0);
        assert_eq!(map.view().iter().count(), 1);
    }

    #[test]
    fn its_references_stay_valid_while_values_are_overwritten_and_epochs_rotate() {
        let map = map();
        for key in 0..8 {
            map.insert(key, format!("{key}:0"));
        }
        let view = map.view();
        let before: Vec<&String> = (0..8).map(|key| view.get(&key).unwrap()).collect();
        let mut iter = view.iter();
        let first = iter.next().unwrap();
        for round in 1..=3 * RETIRED_PER_EPOCH as u64 {
            map.insert(round % 8, format!("{}:{round}", round % 8));
        }
        assert!(
            map.stats().retired >= 3 * RETIRED_PER_EPOCH,
            "the view pins them"
        );
        for (key, value) in before.iter().enumerate() {
            assert_eq!(**value, format!("{key}:0"));
        }
        assert!(first.1.ends_with(":0"));
        assert_eq!(iter.count(), 7);
        drop(view);
        map.insert(0, "last".into());
        assert!(
            map.stats().retired <= RETIRED_PER_EPOCH,
            "freed once the view is gone"
        );
    }

    #[test]
    fn is_send_and_sync_and_iterates_from_several_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        let map: DualMap<u64, u64> = DualMap::new();
        for key in 0..64 {
            map.insert(key, key);
        }
        let view = map.view();
        send_sync(&view);
        send_sync(&view.iter());
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| assert_eq!(view.iter().map(|(_, v)| v).sum::<u64>(), 2_016));
            }
            scope.spawn(|| {
                for key in 64..128 {
                    map.insert(key, key);
                }
            });
        });
        assert_eq!(view.iter().count(), 64);
        assert_eq!(map.view().iter().count(), 128);
    }
}
