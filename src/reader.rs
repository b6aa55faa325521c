//! [`Reader`]: a per-thread read handle that caches the snapshot, so a hit needs no guard.

use crate::entry::value_of;
use crate::pairs;
use crate::snapshot::{Lookup, Snapshot};
use crate::sync::{guard_of, Arc};
use crate::value_ref::Ref;
use crate::DualMap;
use std::borrow::Borrow;
use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

/// A read handle for one thread, from [`DualMap::reader`]: the fastest way to read.
///
/// A `Reader` keeps its own reference to the read snapshot of each of the map's read/dirty
/// pairs it has read (it takes a pair's current one at its first lookup of a key of that
/// pair: creating a `Reader` loads nothing). Each lookup first checks, with one load of the
/// key's pair's snapshot's own "superseded" flag (`SeqCst`, a plain load on x86-64), that
/// the snapshot is still current (and takes the new one if not); a hit then costs one hash
/// probe and one pointer load to the entry, which holds a key's first value (one more for a
/// value written later), with no guard, no lock and no shared write at all. Keys the
/// snapshot lacks while the dirty map holds extra keys take the map's lock, exactly as
/// [`DualMap::get`] does.
///
/// Lookups take `&mut self` and return plain `&V`s that live until the next call: the borrow
/// checker stops the snapshot from changing under them.
///
/// **It pins its snapshots between calls.** Like a held [`Ref`], each snapshot a `Reader`
/// cached (and every value of its pair displaced after it was published) stays in memory
/// until the `Reader` looks up a key of that pair again, calls [`refresh`](Self::refresh),
/// or is dropped. A lookup moves only its own key's pair (see
/// [`Builder::pairs`](crate::Builder::pairs)): a pair the `Reader` has not read since it
/// was created or refreshed pins nothing (it costs a slot of a boxed slice), but a pair it
/// read keeps the snapshot of that read until its next lookup there. A `Reader` that sits
/// idle in a thread-local while other threads overwrite values holds that garbage: call
/// `refresh` when a thread goes idle (or now and then, if it reads few keys), or drop the
/// `Reader`.
///
/// A `Reader` is `Send` (create it on one thread, use it on another) but not `Sync`: it is a
/// one-thread handle; give each thread its own. It borrows the map, and the borrow checker
/// keeps the map alive until the `Reader` is dropped:
///
/// ```compile_fail,E0597
/// let mut reader;
/// let map: dualmap::DualMap<u64, String> = dualmap::DualMap::new();
/// reader = map.reader();
/// reader.get(&1);
/// // `map` is dropped here, before `reader`: an error, not a dangling `Reader`.
/// ```
///
/// ```
/// use dualmap::DualMap;
///
/// let routes = DualMap::new();
/// routes.insert("/health", 200);
/// routes.insert("/login", 302);
/// std::thread::scope(|scope| {
///     for _ in 0..2 {
///         scope.spawn(|| {
///             let mut reader = routes.reader();
///             for _ in 0..1_000 {
///                 assert_eq!(reader.get("/health"), Some(&200));
///                 assert!(!reader.contains_key("/missing"));
///             }
///         });
///     }
/// });
/// ```
pub struct Reader<'a, K, V, S = ahash::RandomState> {
    map: &'a DualMap<K, V, S>,
    /// The snapshot this reader keeps of each read/dirty pair (the map's placeholder until
    /// the pair's first lookup), replaced once it is no longer current.
    snapshots: Box<[Kept<'a, K, V>]>,
    /// The map's pair mask, kept here so that a hit reads only this `Reader`.
    mask: usize,
    /// The last value found under the lock (a key only the dirty map held), kept so that the
    /// returned `&V` stays valid until the next call.
    locked_hit: Option<Ref<K, V>>,
    _one_thread: PhantomData<Cell<()>>,
}

impl<'a, K, V, S> Reader<'a, K, V, S> {
    /// Loads no snapshot: each pair's slot holds the map's placeholder until the first lookup
    /// of a key of that pair takes the pair's current snapshot (the placeholder is superseded
    /// from the start). A `Reader` made for a few lookups thus loads only the pairs it reads,
    /// where loading all of them cost 1,079 instructions for one lookup on 8 pairs and 5,353
    /// on 64 (callgrind, one-shot `map.reader().get(..)`), against 141 for `get`.
    pub(crate) fn new(map: &'a DualMap<K, V, S>) -> Self {
        let placeholder = map.pairs().placeholder();
        Self {
            map,
            snapshots: (0..=map.pairs().mask())
                .map(|_| Kept::placeholder(placeholder))
                .collect(),
            mask: map.pairs().mask(),
            locked_hit: None,
            _one_thread: PhantomData,
        }
    }

    /// Lets go of every snapshot this `Reader` keeps (and of the value kept from the last
    /// locked lookup), so the garbage they pinned can be freed: the `Reader` then pins
    /// nothing, as when it was created, and each pair's next lookup takes that pair's current
    /// snapshot. Lookups move to a newer snapshot by themselves, for their own key's
    /// read/dirty pair only; call this when the thread goes idle.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, String::from("a"));
    /// let mut reader = map.reader();
    /// assert_eq!(reader.get(&1).map(String::as_str), Some("a"));
    /// map.insert(1, String::from("b")); // "a" is retired; the reader still pins it
    /// reader.refresh(); // now it can be freed
    /// assert_eq!(reader.get(&1).map(String::as_str), Some("b"));
    /// ```
    pub fn refresh(&mut self) {
        self.locked_hit = None;
        let placeholder = self.map.pairs().placeholder();
        for kept in self.snapshots.iter_mut() {
            // Replaced before the old one is dropped, which can free values and run their
            // `Drop`: if that panics, the slot is valid and the rest are let go with the
            // `Reader`.
            drop(std::mem::replace(kept, Kept::placeholder(placeholder)));
        }
    }

    /// The current snapshot of the pair of `hash`, with the line where the probe of `hash`
    /// starts already asked for (see [`Snapshot::lookup_prefetched`]).
    #[inline(always)]
    fn current_snapshot(&mut self, hash: u64) -> &Snapshot<K, V> {
        let pair = pairs::index(hash, self.mask);
        // One load and one branch for a hit on a current snapshot of a small table; anything
        // else (a superseded snapshot, a table large enough to prefetch in) takes the general
        // path. A raw pointer for the reason given in `current_snapshot_of`.
        let kept = self.kept(pair).as_ptr();
        // SAFETY: the `Kept` in `self.snapshots[pair]` keeps the snapshot alive, and nothing
        // replaces it while the returned reference borrows `self` (only
        // `move_to_current_snapshot`, through `&mut self`, does).
        unsafe {
            if (*kept).flags().is_plain() {
                return &*kept;
            }
        }
        let snapshot = self.current_snapshot_of(pair);
        snapshot.prefetch(hash);
        snapshot
    }

    /// The current snapshot of `pair` (below the pair count): the kept one while it is
    /// current.
    #[inline(always)]
    fn current_snapshot_of(&mut self, pair: usize) -> &Snapshot<K, V> {
        // Loaded once for the check and the lookup: borrowed from `self.kept(pair)` the
        // compiler loaded it twice, as the early return of a borrow of `self` that the other
        // branch mutates does not pass the borrow checker (cost model: 69 -> 67 per hit).
        let kept = self.kept(pair).as_ptr();
        // SAFETY: the `Kept` in `self.snapshots[pair]` keeps the snapshot alive, and nothing
        // replaces it while the returned reference borrows `self` (only
        // `move_to_current_snapshot`, through `&mut self`, does).
        unsafe {
            if (*kept).is_current() {
                return &*kept;
            }
        }
        self.move_to_current_snapshot(pair);
        self.kept(pair)
    }

    /// The snapshot kept for `pair`, which is below the pair count. Unchecked: the bounds
    /// checks of the two lookups of a hit were a tenth of its instructions (61 -> 75 with
    /// them, in the cost model).
    #[inline(always)]
    fn kept(&self, pair: usize) -> &Kept<'a, K, V> {
        debug_assert!(pair < self.snapshots.len());
        // SAFETY: every caller passes either `x & self.mask` (`pairs::index`), where
        // `self.mask` is the map's pair count minus one, taken in `new` together with one
        // snapshot per pair (neither changes afterwards), or an index of `0..len` (`refresh`);
        // so `pair < self.snapshots.len()`.
        unsafe { self.snapshots.get_unchecked(pair) }
    }

    /// Out of line and cold, so that a hit, inlined into the caller's loop, saves no
    /// registers for it.
    ///
    /// The value kept from the last locked lookup is let go here too: it pins a snapshot of
    /// its pair no older than the kept one, so while the kept ones are current it pins
    /// nothing more, and once one is superseded it goes.
    #[cold]
    #[inline(never)]
    fn move_to_current_snapshot(&mut self, pair: usize) {
        self.locked_hit = None;
        let current = Kept::from(self.map.pairs().at(pair).snapshot());
        // Replaced before the old one is dropped, as in `refresh`.
        drop(std::mem::replace(&mut self.snapshots[pair], current));
    }
}

impl<K, V, S> Reader<'_, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The value of `key`, valid until the next call on this `Reader`.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(String::from("k"), 1);
    /// let mut reader = map.reader();
    /// assert_eq!(reader.get("k"), Some(&1));
    /// assert_eq!(reader.get("missing"), None);
    /// ```
    #[inline(always)]
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hash(key);
        match self.current_snapshot(hash).lookup_prefetched(hash, key) {
            // SAFETY: the node was loaded after the cached snapshot was, and that snapshot
            // stays pinned while the returned reference borrows `self` (DESIGN.md,
            // "Reclamation").
            Lookup::Present(node) => Some(unsafe { value_of(node) }),
            Lookup::Absent => None,
            Lookup::AskDirty => self.get_locked(hash, key),
        }
    }

    /// The rare path of [`get`](Self::get), out of line so that a hit, inlined into the
    /// caller's loop, saves and restores no registers for it.
    #[cold]
    #[inline(never)]
    fn get_locked<Q>(&mut self, hash: u64, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let index = pairs::index(hash, self.mask);
        // The snapshot this lookup searched: if it is no longer current, the lock holder
        // searches the current one's table again.
        let searched = guard_of(self.kept(index).to_arc());
        self.map
            .pairs()
            .at(index)
            .get_locked(searched, hash, key, &mut self.locked_hit);
        self.locked_hit.as_deref()
    }

    /// A clone of the value of `key`.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, vec![1, 2]);
    /// assert_eq!(map.reader().get_cloned(&1), Some(vec![1, 2]));
    /// ```
    pub fn get_cloned<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.get(key).cloned()
    }

    /// True if `key` is present.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, ());
    /// let mut reader = map.reader();
    /// assert!(reader.contains_key(&1));
    /// assert!(!reader.contains_key(&2));
    /// ```
    pub fn contains_key<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<K, V, S> fmt::Debug for Reader<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("holds_locked_hit", &self.locked_hit.is_some())
            .finish_non_exhaustive()
    }
}

/// A snapshot a [`Reader`] keeps: an `Arc` held as the address of the snapshot itself
/// ([`Arc::into_raw`]), not of the `Arc`'s allocation, so that a hit reads the snapshot's
/// fields at that address, where through an `Arc` it first added the offset of the reference
/// counts (cost model: `Reader::get` 68.1 -> 67.1 instructions). Owns one strong count,
/// except when it is the map's placeholder ([`Snapshot::placeholder`], which its flags say:
/// telling the two apart costs a hit nothing, as only a drop asks), which it borrows for
/// `'a`, the `Reader`'s borrow of the map. The `Drop` impl makes the borrow checker hold
/// that borrow until every `Kept` is dropped: without it a `Reader` could be dropped after
/// its map, and the drop read the freed placeholder's flags (a use after free under Miri,
/// found by review; `Reader`'s `compile_fail` doctest).
struct Kept<'a, K, V>(NonNull<Snapshot<K, V>>, PhantomData<&'a Snapshot<K, V>>);

// SAFETY: a `Kept` is an `Arc<Snapshot>` in another form, or a shared reference to the
// placeholder: sending or sharing it sends or shares that `Arc` or that reference, and
// `Arc<Snapshot>: Send` (or `Sync`) requires `Snapshot: Send + Sync`, which is what sending
// or sharing `&Snapshot` requires.
unsafe impl<K, V> Send for Kept<'_, K, V> where Arc<Snapshot<K, V>>: Send {}
// SAFETY: as above.
unsafe impl<K, V> Sync for Kept<'_, K, V> where Arc<Snapshot<K, V>>: Sync {}

impl<K, V> From<Arc<Snapshot<K, V>>> for Kept<'_, K, V> {
    fn from(snapshot: Arc<Snapshot<K, V>>) -> Self {
        let raw = Arc::into_raw(snapshot).cast_mut();
        // SAFETY: `Arc::into_raw` returns the address of the `Arc`'s value, never null.
        Self(unsafe { NonNull::new_unchecked(raw) }, PhantomData)
    }
}

impl<'a, K, V> Kept<'a, K, V> {
    /// The map's placeholder, kept without a count for as long as it is borrowed.
    fn placeholder(placeholder: &'a Snapshot<K, V>) -> Self {
        debug_assert!(placeholder.flags().is_placeholder());
        Self(NonNull::from(placeholder), PhantomData)
    }

    /// The snapshot's address, valid while this `Kept` lives.
    #[inline(always)]
    fn as_ptr(&self) -> *const Snapshot<K, V> {
        self.0.as_ptr()
    }

    /// Another `Arc` of the kept snapshot, which is not the placeholder (a lookup has
    /// replaced that with a current snapshot before it asks).
    fn to_arc(&self) -> Arc<Snapshot<K, V>> {
        assert!(
            !self.flags().is_placeholder(),
            "a Reader's lookup keeps a published snapshot of its pair"
        );
        // SAFETY: not the placeholder (checked above), so the pointer came from
        // `Arc::into_raw` and this `Kept` still owns that strong count, so the count is at
        // least one while it is incremented; the new count is the returned `Arc`'s.
        unsafe {
            Arc::increment_strong_count(self.as_ptr());
            Arc::from_raw(self.as_ptr())
        }
    }
}

impl<K, V> Deref for Kept<'_, K, V> {
    type Target = Snapshot<K, V>;

    fn deref(&self) -> &Snapshot<K, V> {
        // SAFETY: the strong count this `Kept` owns keeps the snapshot alive, or, for the
        // placeholder, the borrow for `'a`, which lasts until this `Kept` is dropped (its
        // `Drop` impl makes the borrow checker hold it).
        unsafe { self.0.as_ref() }
    }
}

impl<K, V> Drop for Kept<'_, K, V> {
    fn drop(&mut self) {
        if self.flags().is_placeholder() {
            return;
        }
        // SAFETY: not the placeholder, so the pointer came from `Arc::into_raw`, and this
        // gives its strong count back once.
        drop(unsafe { Arc::from_raw(self.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use crate::DualMap;
    use crate::RETIRED_PER_EPOCH;

    /// One read/dirty pair with Go's promotion rule, so that misses count as in Go.
    fn map() -> DualMap<u64, String, ahash::RandomState> {
        DualMap::builder()
            .pairs(1)
            .min_promotion_misses(0)
            .hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
            .build()
    }

    #[test]
    fn sees_every_kind_of_key_and_counts_misses_like_get() {
        let map = map();
        map.insert(1, "one".into());
        let mut reader = map.reader();
        // Key 1 is dirty-only: the reader takes the lock, finds it and counts a miss, which
        // (with one dirty entry) promotes it.
        assert_eq!(reader.get(&1).map(String::as_str), Some("one"));
        assert_eq!(map.stats().promotions, 1);
        // Now lock-free, and the reader moved to the new snapshot by itself.
        assert_eq!(reader.get_cloned(&1), Some("one".to_string()));
        assert!(reader.contains_key(&1));
        assert!(!reader.contains_key(&2));
        let before = map.stats();
        assert_eq!(reader.get(&2), None); // not amended: answered without the lock
        assert_eq!(map.stats(), before);
        map.remove(&1);
        assert_eq!(reader.get(&1), None);
    }

    #[test]
    fn a_value_found_under_the_lock_outlives_its_removal_until_the_next_call() {
        let map = map();
        map.insert(0, "zero".into());
        map.get(&0); // promote key 0
        map.insert(1, "dirty".into());
        map.insert(2, "dirty too".into()); // two dirty-only keys: one miss does not promote
        let mut reader = map.reader();
        let value = reader.get(&1).unwrap();
        assert_eq!(map.stats().dirty_len, Some(3));
        drop(map.remove(&1)); // out of the dirty map; the value is retired
        map.insert(1, "replaced".into());
        for i in 0..3 * RETIRED_PER_EPOCH as u64 {
            map.insert(0, format!("churn {i}")); // rotations: the old epochs could drain
        }
        assert_eq!(value, "dirty"); // still readable: the reader holds it
        assert_eq!(reader.get(&1).map(String::as_str), Some("replaced"));
    }

    #[test]
    fn pins_its_snapshot_between_calls_until_refresh() {
        let map = map();
        map.insert(0, "v".into());
        map.get(&0);
        let mut reader = map.reader();
        assert!(reader.contains_key(&0));
        for i in 0..2 * RETIRED_PER_EPOCH {
            map.insert(0, i.to_string());
        }
        assert!(
            map.stats().retired >= RETIRED_PER_EPOCH,
            "{:?}",
            map.stats()
        );
        reader.refresh();
        map.insert(0, "last".into());
        assert!(
            map.stats().retired <= RETIRED_PER_EPOCH,
            "{:?}",
            map.stats()
        );
        assert_eq!(reader.get(&0).map(String::as_str), Some("last"));
    }

    #[test]
    fn pins_nothing_before_it_reads_and_after_refresh() {
        let map = map();
        map.insert(0, "v".into());
        map.get(&0);
        let churn = |round| {
            for i in 0..2 * RETIRED_PER_EPOCH {
                map.insert(0, format!("{round}:{i}"));
            }
        };
        let mut reader = map.reader();
        churn(0);
        assert!(
            map.stats().retired <= RETIRED_PER_EPOCH,
            "a new Reader pins: {:?}",
            map.stats()
        );
        assert!(reader.contains_key(&0));
        churn(1);
        assert!(
            map.stats().retired >= RETIRED_PER_EPOCH,
            "{:?}",
            map.stats()
        );
        reader.refresh();
        churn(2);
        assert!(
            map.stats().retired <= RETIRED_PER_EPOCH,
            "a refreshed Reader pins: {:?}",
            map.stats()
        );
        let last = format!("2:{}", 2 * RETIRED_PER_EPOCH - 1);
        assert_eq!(reader.get(&0), Some(&last));
    }

    /// Many pairs, each read first by a fresh or refreshed `Reader`, through the lock-free
    /// and the locked paths: every lookup of a pair's placeholder moves to the pair's
    /// current snapshot.
    #[test]
    fn reads_every_pair_from_its_first_lookup() {
        let map: DualMap<u64, u64> = DualMap::builder().pairs(64).build();
        let keys = if cfg!(miri) { 0..40 } else { 0..2_000 };
        for key in keys.clone() {
            map.insert(key, key);
        }
        for round in 0..3 {
            // Round 0 finds every key dirty-only (under the lock, promoting pairs as it
            // goes); later rounds find them in the read tables.
            let mut reader = map.reader();
            for key in keys.clone() {
                assert_eq!(map.reader().get(&key), Some(&key), "round {round}");
                assert_eq!(reader.get(&key), Some(&key), "round {round}");
                if key % 7 == 0 {
                    reader.refresh();
                }
            }
            assert_eq!(reader.get(&u64::MAX), None);
        }
    }

    /// `Reader`s made before a `clear` and first used after it answer from the snapshots
    /// current at their first lookups, on this thread or on one they were sent to.
    #[test]
    fn a_first_lookup_sees_the_map_as_it_is_then() {
        let map: DualMap<u64, u64> = DualMap::builder().pairs(2).build();
        for key in 0..8 {
            map.insert(key, key);
            map.get(&key);
        }
        let mut here = map.reader();
        let there = map.reader();
        map.clear();
        map.insert(3, 30);
        let expected = |key| (key == 3).then_some(30);
        for key in 0..8 {
            assert_eq!(here.get(&key).copied(), expected(key));
        }
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut there = there;
                for key in 0..8 {
                    assert_eq!(there.get(&key).copied(), expected(key));
                }
            });
        });
    }

    #[test]
    fn readers_on_several_threads_only_see_stored_values() {
        let map = map();
        for key in 0..16 {
            map.insert(key, format!("{key}:0"));
        }
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    let mut reader = map.reader();
                    for i in 0..if cfg!(miri) { 50 } else { 20_000 } {
                        let key = i % 16;
                        let value = reader.get(&key).expect("never removed");
                        let (k, _round) = value.split_once(':').unwrap();
                        assert_eq!(k.parse::<u64>().unwrap(), key);
                    }
                });
            }
            scope.spawn(|| {
                for round in 1..if cfg!(miri) { 20 } else { 2_000 } {
                    map.insert(round % 16, format!("{}:{round}", round % 16));
                }
            });
        });
    }
}
