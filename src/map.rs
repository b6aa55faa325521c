//! The public map: hashes keys with the map's `BuildHasher` and delegates to the raw map.

use crate::builder::Builder;
use crate::bulk::BulkLoad;
use crate::iter::{Iter, Keys, Values};
use crate::pairs::{Pairs, Settings};
use crate::raw::RawMap;
use crate::reader::Reader;
use crate::value_ref::Ref;
use crate::view::View;
use crate::Stats;
use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::ControlFlow;

/// A concurrent hash map for read-mostly workloads: Go's `sync.Map` read/dirty design.
///
/// The keys are split by hash over independent read/dirty pairs, each a whole `sync.Map`
/// (four per core by default; one is Go exactly: see [`Builder::pairs`]). Every operation on
/// one key is Go's, on its pair.
///
/// Reads of keys in the published read snapshot take no lock and write no shared memory;
/// overwrites of existing keys are a single compare-and-swap. New keys go to a dirty map
/// behind a mutex, which is promoted to be the read snapshot once lookups that missed the
/// snapshot add up to its size. See the [crate docs](crate) for when to use it, and
/// [`docs::go_names`](crate::docs::go_names) for the `sync.Map` → `DualMap` table.
///
/// All methods take `&self`: share the map through an `Arc` or a `static`.
///
/// ```
/// use dualmap::DualMap;
/// use std::sync::Arc;
///
/// let flags = Arc::new(DualMap::new());
/// flags.insert("dark-mode", true);
/// let reader = {
///     let flags = Arc::clone(&flags);
///     std::thread::spawn(move || flags.get_cloned("dark-mode"))
/// };
/// assert_eq!(reader.join().unwrap(), Some(true));
/// ```
pub struct DualMap<K, V, S = ahash::RandomState> {
    pairs: Pairs<K, V>,
    hasher: S,
}

/// The result of [`DualMap::get_or_insert`] and [`DualMap::get_or_insert_with`]: whether the
/// key was already present (Go's `loaded`), and a reference to the value now in the map.
///
/// ```
/// use dualmap::{DualMap, GetOrInsert};
///
/// let map = DualMap::new();
/// assert!(matches!(map.get_or_insert(1, "a"), GetOrInsert::Inserted(_)));
/// match map.get_or_insert(1, "b") {
///     GetOrInsert::Loaded(current) => assert_eq!(*current, "a"),
///     GetOrInsert::Inserted(_) => unreachable!(),
/// }
/// ```
#[must_use = "tells whether the value was inserted"]
pub enum GetOrInsert<K, V> {
    /// The key was present; the offered value was dropped. Holds the present value.
    Loaded(Ref<K, V>),
    /// The key was absent; holds the value just inserted.
    Inserted(Ref<K, V>),
}

impl<K, V> GetOrInsert<K, V> {
    /// True if the offered value was inserted.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// assert!(map.get_or_insert("k", 1).is_inserted());
    /// assert!(!map.get_or_insert("k", 2).is_inserted());
    /// ```
    pub fn is_inserted(&self) -> bool {
        matches!(self, GetOrInsert::Inserted(_))
    }

    /// The value in the map, whichever way it got there.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert("k", 1);
    /// assert_eq!(*map.get_or_insert("k", 2).into_ref(), 1);
    /// ```
    pub fn into_ref(self) -> Ref<K, V> {
        match self {
            GetOrInsert::Loaded(value) | GetOrInsert::Inserted(value) => value,
        }
    }
}

impl<K, V: fmt::Debug> fmt::Debug for GetOrInsert<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetOrInsert::Loaded(value) => f.debug_tuple("Loaded").field(&**value).finish(),
            GetOrInsert::Inserted(value) => f.debug_tuple("Inserted").field(&**value).finish(),
        }
    }
}

/// The error of [`DualMap::try_insert`]: the key was present. Holds the present value and
/// gives the offered one back.
///
/// ```
/// let map = dualmap::DualMap::new();
/// map.insert("k", String::from("old"));
/// let err = map.try_insert("k", String::from("new")).unwrap_err();
/// assert_eq!(*err.current, "old");
/// assert_eq!(err.not_inserted, "new");
/// ```
pub struct OccupiedError<K, V> {
    /// The value in the map.
    pub current: Ref<K, V>,
    /// The value that was offered and not inserted.
    pub not_inserted: V,
}

impl<K, V: fmt::Debug> fmt::Debug for OccupiedError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OccupiedError")
            .field("current", &*self.current)
            .field("not_inserted", &self.not_inserted)
            .finish()
    }
}

impl<K, V: fmt::Debug> fmt::Display for OccupiedError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key already present with value {:?}; {:?} was not inserted",
            &*self.current, self.not_inserted
        )
    }
}

impl<K, V: fmt::Debug> std::error::Error for OccupiedError<K, V> {}

impl<K, V> DualMap<K, V, ahash::RandomState> {
    /// An empty map with the default hasher. Allocates nothing for entries until the first
    /// insert.
    ///
    /// ```
    /// let map: dualmap::DualMap<u64, String> = dualmap::DualMap::new();
    /// assert!(map.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_hasher(ahash::RandomState::new())
    }

    /// An empty map whose first read tables have room for `capacity` keys (an even share per
    /// read/dirty pair).
    ///
    /// ```
    /// let map: dualmap::DualMap<u64, u64> = dualmap::DualMap::with_capacity(1_000);
    /// assert_eq!(map.len(), 0);
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, ahash::RandomState::new())
    }
}

impl DualMap<(), ()> {
    /// A [`Builder`], to choose the number of independent read/dirty pairs (one is Go's
    /// `sync.Map` exactly), the capacity and the hasher. (Defined on `DualMap<(), ()>` so
    /// that `DualMap::builder()` needs no type annotations, as papaya's `HashMap::builder`.)
    ///
    /// ```
    /// let map: dualmap::DualMap<&str, u32> = dualmap::DualMap::builder().pairs(1).build();
    /// assert_eq!(map.stats().pairs, 1);
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl<K, V, S> DualMap<K, V, S> {
    /// An empty map that hashes keys with `hasher`.
    ///
    /// ```
    /// use std::collections::hash_map::RandomState;
    /// let map = dualmap::DualMap::with_hasher(RandomState::new());
    /// map.insert(1, 2);
    /// assert_eq!(map.get_cloned(&1), Some(2));
    /// ```
    pub fn with_hasher(hasher: S) -> Self {
        Self::with_capacity_and_hasher(0, hasher)
    }

    /// An empty map with room for `capacity` keys that hashes keys with `hasher`.
    ///
    /// ```
    /// let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
    /// let map: dualmap::DualMap<u8, u8, _> = dualmap::DualMap::with_capacity_and_hasher(16, hasher);
    /// assert!(map.is_empty());
    /// ```
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        Self::with_settings(Settings::default(), capacity, hasher)
    }

    /// A map built as `settings` say (the builder checks them).
    pub(crate) fn with_settings(settings: Settings, capacity: usize, hasher: S) -> Self {
        Self {
            pairs: Pairs::new(settings, capacity),
            hasher,
        }
    }

    pub(crate) fn pairs(&self) -> &Pairs<K, V> {
        &self.pairs
    }

    /// A [`Reader`]: a read handle for one thread whose hits need no guard at all (see its
    /// docs for what it pins between calls). Making one loads nothing: its first lookup of
    /// each read/dirty pair takes that pair's current snapshot (the cost of a
    /// [`get`](Self::get)'s guard, once). For a lookup or two, `get` is cheaper still: a
    /// `Reader` is a boxed slot per pair, allocated and freed.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert("k", 1);
    /// let mut reader = map.reader();
    /// assert_eq!(reader.get("k"), Some(&1));
    /// ```
    pub fn reader(&self) -> Reader<'_, K, V, S> {
        Reader::new(self)
    }

    /// The map's hasher.
    ///
    /// ```
    /// use std::hash::BuildHasher;
    /// let map: dualmap::DualMap<u8, u8> = dualmap::DualMap::new();
    /// let _same_hash = map.hasher().hash_one(7u8);
    /// ```
    pub fn hasher(&self) -> &S {
        &self.hasher
    }

    /// The number of keys present, without locking (Go's `sync.Map` has no length): one
    /// counter per read/dirty pair, summed. Exact whenever no insert or remove is in flight.
    /// While some are, it can be off by at most the number in flight, in either direction:
    /// each operation updates its pair's count just after its own atomic step, and the pairs
    /// are read one after another, so a concurrent `len` may count one key's insert before
    /// another key's earlier remove (a value the map never had). `tests/linearizability.rs`
    /// checks exactly this bound.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert("a", 1);
    /// map.insert("b", 2);
    /// map.remove("a");
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True if no key is present; as exact as [`len`](Self::len), whose per-pair counts it
    /// reads until it finds one that is not zero (so on a map that holds keys it usually
    /// reads one).
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// assert!(map.is_empty());
    /// map.insert(1, 1);
    /// assert!(!map.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Removes every key (Go's `Clear`), one read/dirty pair after another: each pair is
    /// cleared at one instant, as Go's `Clear` clears its map, but with more than one pair the
    /// map as a whole is not. A key inserted while `clear` runs may survive it even if
    /// another key inserted before that one does not. A `Ref` taken before the call keeps its
    /// value. A pair whose keys are all only in its dirty map (none read since the last
    /// clear promoted them to the snapshot), and few, is emptied in place under its lock,
    /// without publishing a snapshot; its values are then retired, freed at the pair's next
    /// publication as displaced values are ([`Stats::retired`](crate::Stats::retired)). A pair
    /// known to be empty (so emptied, or not written since its last clear) is skipped without
    /// locking or allocating (DESIGN.md, "Clear in place").
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, "a");
    /// map.clear();
    /// assert!(map.is_empty());
    /// assert!(map.get(&1).is_none());
    /// ```
    pub fn clear(&self) {
        self.pairs.clear();
    }

    /// Iterates over the map (Go's `Range`): every key present for the whole iteration
    /// exactly once, each value read when its key is visited; keys inserted or removed
    /// meanwhile may or may not be visited, and none twice. The read/dirty pairs are walked
    /// one after another, each pinned when reached, and promoted first if it holds keys only
    /// its dirty map has (one lock, no copy). No lock is held while iterating: the loop body
    /// may call any method, including a nested `iter`.
    ///
    /// The items pin the snapshot of their pair (see [`Ref`]); they are not `Send`.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// for i in 0..4 {
    ///     map.insert(i, i * 10);
    /// }
    /// let mut seen: Vec<(i32, i32)> = map.iter().map(|(k, v)| (*k, *v)).collect();
    /// seen.sort();
    /// assert_eq!(seen, [(0, 0), (1, 10), (2, 20), (3, 30)]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter::new(&self.pairs)
    }

    /// Calls `f` on every key and its value: Go's `Range`, and the fastest way to visit the
    /// map. It visits what [`iter`](Self::iter) visits (every key present for the whole call
    /// exactly once, with its value as of the visit; a key inserted or removed meanwhile may
    /// or may not be visited, none twice), walking the read/dirty pairs one after another,
    /// each pinned when reached and promoted first if it holds keys only its dirty map has
    /// (one lock, no copy). No lock is held while `f` runs: it may call any method of the
    /// map, including a nested `for_each`.
    ///
    /// The references live for one call of `f` (clone what you keep), so a visit costs no
    /// reference count: about a third of an `iter` item's instructions (20 against 54 a key
    /// over 1,024 `u64` keys, callgrind). To stop early, use
    /// [`try_for_each`](Self::try_for_each). Like an iterator, the walk pins the snapshot of
    /// the pair it is in, and the values displaced meanwhile, until it moves on (see
    /// [`docs::reclamation`](crate::docs::reclamation)).
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// for i in 1..=4 {
    ///     map.insert(i, i * 10);
    /// }
    /// let mut total = 0;
    /// map.for_each(|_, value| total += value);
    /// assert_eq!(total, 100);
    /// ```
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        let _ = self.try_for_each(|key, value| {
            f(key, value);
            ControlFlow::<Infallible>::Continue(())
        });
    }

    /// Calls `f` on every key and its value, as [`for_each`](Self::for_each) does, until it
    /// returns [`ControlFlow::Break`], and returns that (Go's `Range` with a callback that
    /// returns `false`); [`ControlFlow::Continue`] if `f` never broke.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    ///
    /// let map = dualmap::DualMap::new();
    /// map.insert("alice", 31);
    /// map.insert("bob", 17);
    /// let minor = map.try_for_each(|name, age| {
    ///     if *age < 18 {
    ///         ControlFlow::Break(*name)
    ///     } else {
    ///         ControlFlow::Continue(())
    ///     }
    /// });
    /// assert_eq!(minor, ControlFlow::Break("bob"));
    /// ```
    pub fn try_for_each<B>(&self, mut f: impl FnMut(&K, &V) -> ControlFlow<B>) -> ControlFlow<B> {
        self.pairs
            .iter()
            .try_for_each(|pair| pair.try_for_each(&mut f))
    }

    /// Iterates over the keys, as [`iter`](Self::iter) does.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert("only", ());
    /// assert_eq!(map.keys().map(|k| *k).collect::<Vec<_>>(), ["only"]);
    /// ```
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys(self.iter())
    }

    /// Iterates over the values, as [`iter`](Self::iter) does.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, 5);
    /// map.insert(2, 7);
    /// assert_eq!(map.values().map(|v| *v).sum::<i32>(), 12);
    /// ```
    pub fn values(&self) -> Values<'_, K, V> {
        Values(self.iter())
    }

    /// Removes every key for which `keep` returns false. Visits the keys present when the
    /// call starts, like [`iter`](Self::iter), and holds no lock while `keep` runs. A value
    /// is removed only if `keep` returned false for that very value: if another thread
    /// replaces it meanwhile, `keep` is asked again about the new one.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// for i in 0..10 {
    ///     map.insert(i, i);
    /// }
    /// map.retain(|_, v| v % 2 == 0);
    /// assert_eq!(map.len(), 5);
    /// assert!(map.get(&3).is_none());
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.pairs.iter().for_each(|pair| pair.retain(&mut keep));
    }

    /// Pins the current read snapshot of every read/dirty pair, promoting any pair whose
    /// dirty map holds keys its snapshot lacks first (Go's `Range` does the same), and returns
    /// a [`View`] of them: `get` and `iter` through plain references, with no lock and no
    /// shared write, `Send` and `Sync`, so an iteration may be held across an `.await`. See
    /// [`View`] for what it shows and pins.
    ///
    /// ```
    /// let sessions = dualmap::DualMap::new();
    /// sessions.insert(1, "alice");
    /// let view = sessions.view();
    /// let names: Vec<&&str> = view.iter().map(|(_, name)| name).collect();
    /// assert_eq!(names, [&"alice"]);
    /// ```
    pub fn view(&self) -> View<'_, K, V, S> {
        View::new(self)
    }

    /// Counters that show what the map is doing: sizes, misses, promotions, rebuilds and
    /// retired values, summed over the read/dirty pairs. Takes each pair's mutex briefly in
    /// turn: each pair's counters are mutually consistent, their sums not one instant's.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, 1); // a new key goes to the dirty map
    /// let stats = map.stats();
    /// assert_eq!(stats.len, 1);
    /// assert_eq!(stats.dirty_len, Some(1));
    /// assert!(stats.amended);
    /// ```
    pub fn stats(&self) -> Stats {
        self.pairs.stats()
    }
}

impl<K, V, S> DualMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Inserts every pair, for maps built in bulk. Into a vacant map (no key, not even a
    /// deleted one) the pairs are staged and published as the read snapshot in one step
    /// (`bulk`): no key goes through the dirty map, and reads promote nothing. Stops at the
    /// first `Err`, which it returns; the pairs staged until then are dropped, and a vacant
    /// map stays vacant. Into any other map the pairs are inserted one by one. `capacity`:
    /// how many pairs to make room for up front.
    pub(crate) fn load_bulk<E>(
        &mut self,
        capacity: usize,
        pairs: impl IntoIterator<Item = Result<(K, V), E>>,
    ) -> Result<(), E> {
        if !self.pairs.is_vacant() {
            for pair in pairs {
                let (key, value) = pair?;
                self.insert(key, value);
            }
            return Ok(());
        }
        let mut bulk = BulkLoad::with_capacity(capacity);
        for pair in pairs {
            let (key, value) = pair?;
            bulk.push(self.hash(&key), key, value);
        }
        self.pairs.publish_bulk(bulk);
        Ok(())
    }

    /// Hashes through `Hash::hash` and a fresh `Hasher`, never through an overridden
    /// `BuildHasher::hash_one`: ahash on a nightly compiler specializes `hash_one` for
    /// primitive types, so a `u64` and a key type whose `Hash` writes that `u64` would hash
    /// differently, and `Borrow`-based lookups would miss.
    #[allow(clippy::manual_hash_one)] // deliberately not `hash_one`: see above
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        key.hash(&mut hasher);
        hasher.finish()
    }

    /// The read/dirty pair that holds the keys of `hash`.
    #[inline(always)]
    fn pair(&self, hash: u64) -> &RawMap<K, V> {
        self.pairs.of(hash)
    }

    /// The value of `key` (Go's `Load`), as a [`Ref`] that holds no lock. A key in the read
    /// snapshot costs no lock and no shared write; a key only the dirty map holds takes the
    /// mutex and counts a miss.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(String::from("k"), 1);
    /// assert_eq!(*map.get("k").unwrap(), 1); // look up a String key by &str
    /// assert!(map.get("missing").is_none());
    /// ```
    #[inline(always)]
    pub fn get<Q>(&self, key: &Q) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.pair(hash).get(hash, key)
    }

    /// A clone of the value of `key`.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, vec![1]);
    /// assert_eq!(map.get_cloned(&1), Some(vec![1]));
    /// ```
    pub fn get_cloned<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let value = self.get(key)?;
        let cloned = V::clone(&value);
        // Dropping the `Ref` may free retired values: only once the clone is a local, which a
        // panic there drops (a value being returned would be leaked, rust-lang/rust#47949).
        drop(value);
        Some(cloned)
    }

    /// True if `key` is present.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, ());
    /// assert!(map.contains_key(&1));
    /// assert!(!map.contains_key(&2));
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Stores `value` under `key` and returns the previous value (Go's `Swap`; `Store` is
    /// this with the result dropped). Overwriting a key of the read snapshot is one
    /// compare-and-swap; a new key takes the mutex.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// assert!(map.insert("k", 1).is_none());
    /// assert_eq!(*map.insert("k", 2).unwrap(), 1);
    /// assert_eq!(map.get_cloned("k"), Some(2));
    /// ```
    pub fn insert(&self, key: K, value: V) -> Option<Ref<K, V>> {
        let hash = self.hash(&key);
        self.pair(hash).insert(key, hash, value)
    }

    /// Returns the value of `key` if present, else inserts `value` (Go's `LoadOrStore`). The
    /// result says which happened; when the key was present, `value` is dropped (use
    /// [`try_insert`](Self::try_insert) to get it back).
    ///
    /// ```
    /// use dualmap::GetOrInsert;
    /// let map = dualmap::DualMap::new();
    /// let first = map.get_or_insert("session", 7);
    /// assert!(first.is_inserted());
    /// assert_eq!(*map.get_or_insert("session", 8).into_ref(), 7);
    /// ```
    pub fn get_or_insert(&self, key: K, value: V) -> GetOrInsert<K, V> {
        match self.try_insert(key, value) {
            Ok(inserted) => GetOrInsert::Inserted(inserted),
            Err(OccupiedError {
                current,
                not_inserted,
            }) => {
                // Before the result is built, so that a panicking `Drop` drops `current` too.
                drop(not_inserted);
                GetOrInsert::Loaded(current)
            }
        }
    }

    /// Inserts `value` only if `key` is absent; otherwise returns the present value and gives
    /// `value` back.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// assert_eq!(*map.try_insert(1, 'a').unwrap(), 'a');
    /// assert_eq!(map.try_insert(1, 'b').unwrap_err().not_inserted, 'b');
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<Ref<K, V>, OccupiedError<K, V>> {
        let hash = self.hash(&key);
        self.pair(hash)
            .get_or_insert(key, hash, value)
            .map_err(|(current, not_inserted)| OccupiedError {
                current,
                not_inserted,
            })
    }

    /// Returns the value of `key` if present, else inserts the result of `make`. `make` runs
    /// only if the key is absent when checked, at most once per call, and with no lock held
    /// (so it may use the map). If another thread inserts the key while `make` runs, that
    /// value wins, the result of `make` is dropped and `Loaded` is returned.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// let mut calls = 0;
    /// map.get_or_insert_with("k", || { calls += 1; 1 });
    /// map.get_or_insert_with("k", || { calls += 1; 2 });
    /// assert_eq!(calls, 1);
    /// assert_eq!(map.get_cloned("k"), Some(1));
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> GetOrInsert<K, V> {
        if let Some(present) = self.get(&key) {
            // Before the result is built (see `get_or_insert`).
            drop(key);
            drop(make);
            return GetOrInsert::Loaded(present);
        }
        self.get_or_insert(key, make())
    }

    /// Removes `key` and returns its value (Go's `LoadAndDelete`; `Delete` is this with the
    /// result dropped). A key of the read snapshot becomes a tombstone without locking; a key
    /// only the dirty map holds is found under its pair's mutex and taken out of the dirty map,
    /// as in Go, unless the miss this counts promotes the dirty map first (then the key is a
    /// snapshot key: DESIGN.md, "Removed dirty-only keys"). A tombstone keeps its key, not its
    /// value, until a dirty-map rebuild expunges it, which a rebuild does once more than one
    /// entry in 8 of its pair's snapshot is a tombstone.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert("k", 1);
    /// assert_eq!(*map.remove("k").unwrap(), 1);
    /// assert!(map.remove("k").is_none());
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.pair(hash).remove(hash, key)
    }

    /// Replaces the value of `key` with `new` if it equals `expected` (Go's
    /// `CompareAndSwap`). Never inserts: an absent key fails. On failure `new` is given back.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert("k", 1);
    /// assert_eq!(map.compare_and_swap("k", &1, 2), Ok(()));
    /// assert_eq!(map.compare_and_swap("k", &1, 3), Err(3));
    /// assert_eq!(map.compare_and_swap("absent", &0, 0), Err(0));
    /// ```
    pub fn compare_and_swap<Q>(&self, key: &Q, expected: &V, new: V) -> Result<(), V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: PartialEq,
    {
        let hash = self.hash(key);
        self.pair(hash).compare_and_swap(hash, key, expected, new)
    }

    /// Removes `key` if its value equals `expected` (Go's `CompareAndDelete`); true if it did.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert("k", 1);
    /// assert!(!map.compare_and_remove("k", &2));
    /// assert!(map.compare_and_remove("k", &1));
    /// assert!(map.get("k").is_none());
    /// ```
    pub fn compare_and_remove<Q>(&self, key: &Q, expected: &V) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: PartialEq,
    {
        let hash = self.hash(key);
        self.pair(hash).compare_and_remove(hash, key, expected)
    }

    /// Replaces the value of `key` with `update(&current)` and returns the new value, or
    /// `None` if the key is absent: an atomic read-modify-write, which Go code writes as a
    /// `Load` and `CompareAndSwap` loop. Like `CompareAndSwap` it never inserts (see
    /// [`update_or_insert_with`](Self::update_or_insert_with)).
    ///
    /// For a key of the read snapshot this is a lock-free compare-and-swap loop; a key only the
    /// dirty map holds is looked up under the mutex, and updated after it is released. No lock
    /// is held while `update` runs, so it may read the map. It runs once per attempt: if
    /// another thread changes the value between the read and the swap, the result is dropped
    /// and `update` runs again on the newer value, so it should be a pure function of its
    /// argument, and it must not write this key itself (each such write would make the swap
    /// fail again). The update is linearizable: the value it replaces is the one `update` saw.
    ///
    /// ```
    /// let hits = dualmap::DualMap::new();
    /// hits.insert("/", 0u64);
    /// assert_eq!(*hits.update("/", |n| n + 1).unwrap(), 1);
    /// assert!(hits.update("/missing", |n| n + 1).is_none());
    /// assert!(!hits.contains_key("/missing"));
    /// ```
    pub fn update<Q>(&self, key: &Q, mut update: impl FnMut(&V) -> V) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let updated = self.pair(hash).update(hash, key, &mut update);
        // Only once the result is a local: the closure's `Drop` is user code, and a panic in
        // it must not leak the `Ref` being returned (see `get_or_insert`).
        drop(update);
        updated
    }

    /// Replaces the value of `key` with `update(&current)`, or inserts `make()` if the key is
    /// absent, and returns the value now stored: a counter's increment in one call.
    ///
    /// `update` runs as in [`update`](Self::update): with no lock held, and again whenever
    /// another thread changed the value first. `make` runs at most once, with no lock held,
    /// when the key was found absent; if another thread inserts the key before `make`'s value
    /// is stored, that value is updated instead and `make`'s is dropped. The insert, like the
    /// update, is linearizable. Inserting takes the key's pair's mutex, for a new key as
    /// [`insert`](Self::insert) does, and also for a deleted key of the read snapshot (which
    /// `insert` would fill without it).
    ///
    /// ```
    /// use std::thread;
    /// let requests = dualmap::DualMap::new();
    /// thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| {
    ///             for _ in 0..1_000 {
    ///                 requests.update_or_insert_with("GET /", |n| n + 1, || 1u64);
    ///             }
    ///         });
    ///     }
    /// });
    /// assert_eq!(requests.get_cloned("GET /"), Some(4_000));
    /// ```
    pub fn update_or_insert_with(
        &self,
        key: K,
        mut update: impl FnMut(&V) -> V,
        make: impl FnOnce() -> V,
    ) -> Ref<K, V> {
        let hash = self.hash(&key);
        let (mut make, mut spare) = (Some(make), None);
        let updated =
            self.pair(hash)
                .update_or_insert_with(key, hash, &mut update, &mut make, &mut spare);
        // Only once the result is a local, as in `update`: each of these can run user `Drop`s.
        drop(spare);
        drop(make);
        drop(update);
        updated
    }

    /// Replaces the value of `key` with `update(&current)`, or inserts `value` if the key is
    /// absent; [`update_or_insert_with`](Self::update_or_insert_with) with a value made
    /// beforehand (dropped if the key is present).
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// assert_eq!(*map.update_or_insert("k", |v| v * 10, 1), 1);
    /// assert_eq!(*map.update_or_insert("k", |v| v * 10, 1), 10);
    /// ```
    pub fn update_or_insert(&self, key: K, update: impl FnMut(&V) -> V, value: V) -> Ref<K, V> {
        self.update_or_insert_with(key, update, || value)
    }
}

impl<K, V> Default for DualMap<K, V, ahash::RandomState> {
    /// An empty map, as [`DualMap::new`].
    ///
    /// ```
    /// let map: dualmap::DualMap<u8, u8> = Default::default();
    /// assert!(map.is_empty());
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for DualMap<K, V, S> {
    /// Formats the keys and values present, like a `HashMap` (iterates, see
    /// [`DualMap::iter`]).
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, "one");
    /// assert_eq!(format!("{map:?}"), r#"{1: "one"}"#);
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V, S> Clone for DualMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// An independent copy of the keys and values present (as iterated by
    /// [`DualMap::iter`]). The copy is built in bulk: all its keys are in its read snapshot,
    /// read without the lock from the start.
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, 1);
    /// let copy = map.clone();
    /// map.insert(1, 2);
    /// assert_eq!(copy.get_cloned(&1), Some(1));
    /// assert_eq!(copy.stats().dirty_len, None); // nothing behind the mutex
    /// ```
    fn clone(&self) -> Self {
        let mut copy = Self::with_settings(self.pairs.settings(), 0, self.hasher.clone());
        let pairs = self
            .iter()
            .map(|(key, value)| Ok::<_, Infallible>((K::clone(&key), V::clone(&value))));
        let Ok(()) = copy.load_bulk(self.len(), pairs);
        copy
    }
}

impl<K, V, S> FromIterator<(K, V)> for DualMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Default,
{
    /// Builds a map from pairs; a later pair wins over an earlier one with the same key (whose
    /// first key is kept, as with [`insert`](DualMap::insert)). Built in bulk: every key is in
    /// the read snapshot at once, so reads take no lock and promote nothing. If the iterator
    /// or a key's `Hash` or `Eq` panics, the pairs taken so far are dropped.
    ///
    /// ```
    /// let map: dualmap::DualMap<_, _> = [(1, 'a'), (2, 'b'), (1, 'c')].into_iter().collect();
    /// assert_eq!(map.get_cloned(&1), Some('c'));
    /// assert_eq!(map.stats().dirty_len, None); // nothing behind the mutex
    /// ```
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut map = Self::with_hasher(S::default());
        map.extend(pairs);
        map
    }
}

impl<K, V, S> Extend<(K, V)> for DualMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Inserts every pair. Into a map that holds no key, not even a removed one, the pairs
    /// are loaded in bulk, as by [`collect`](Iterator::collect): published together as the
    /// read snapshot, so reads take no lock and promote nothing; if the iterator or a key's
    /// `Hash` or `Eq` panics, none of them is inserted. Into any other map they are inserted
    /// one by one, as through `&DualMap`.
    ///
    /// ```
    /// let mut map = dualmap::DualMap::new();
    /// map.extend([(1, 1), (2, 2)]);
    /// assert_eq!(map.len(), 2);
    /// assert_eq!(map.stats().dirty_len, None); // loaded in bulk
    /// map.extend([(3, 3)]);
    /// assert!(map.stats().amended); // a new key, through its pair's dirty map
    /// ```
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, pairs: I) {
        let pairs = pairs.into_iter();
        let Ok(()) = self.load_bulk(pairs.size_hint().0, pairs.map(Ok::<_, Infallible>));
    }
}

impl<K, V, S> Extend<(K, V)> for &DualMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Inserts every pair through a shared reference, one by one (other threads may be
    /// using the map, so there is no bulk load).
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// (&map).extend([("a", 1)]);
    /// assert_eq!(map.len(), 1);
    /// ```
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, pairs: I) {
        for (key, value) in pairs {
            self.insert(key, value);
        }
    }
}

impl<'a, K, V, S> IntoIterator for &'a DualMap<K, V, S> {
    type Item = <Iter<'a, K, V> as Iterator>::Item;
    type IntoIter = Iter<'a, K, V>;

    /// As [`DualMap::iter`].
    ///
    /// ```
    /// let map = dualmap::DualMap::new();
    /// map.insert(1, 2);
    /// for (k, v) in &map {
    ///     assert_eq!((*k, *v), (1, 2));
    /// }
    /// ```
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
