//! The concurrent read/dirty map itself, on precomputed hashes. The public [`DualMap`]
//! (crate::DualMap) only hashes keys and wraps results.
//!
//! Every operation first tries the published snapshot without locking; it takes the mutex only
//! for what Go's `sync.Map` locks for (a key the snapshot lacks while amended, a new key, an
//! expunged entry). Locked sections never run user code other than `Eq` on keys, and they
//! mutate only after the last such call, so a panic there leaves every invariant intact.

use crate::dirty::{Dirty, Garbage, Located};
use crate::entry::{Displaced, Entry, LoadedOrStored, OwnedValue, Stored, ValueNode};
use crate::filter::{MissFilter, MIN_KEYS};
use crate::reclaim::Epoch;
use crate::snapshot::{publish, LiveKeys, Lookup, Publication, Snapshot, Table};
use crate::sync::{Arc, Mutex, SnapshotCell, SnapshotGuard};
use crate::value_ref::Ref;
use crate::Stats;
use std::borrow::Borrow;
use std::ptr::NonNull;

pub(crate) struct RawMap<K, V> {
    read: SnapshotCell<Snapshot<K, V>>,
    dirty: Mutex<Dirty<K, V>>,
}

/// An entry found under the lock, with the snapshot loaded there, which keeps every value the
/// entry can hold alive while the caller works on it.
type LockedLookup<K, V> = (SnapshotGuard<Snapshot<K, V>>, Option<Arc<Entry<K, V>>>);

/// The present value and the offered one, when a load-or-store finds the key.
type Occupied<K, V> = (Ref<K, V>, OwnedValue<V>);

/// Which locked lookups count a miss toward promotion (spec: "Which operations lock").
#[derive(Clone, Copy, PartialEq)]
enum MissRule {
    /// Load, remove and compare-and-remove: every lookup that had to consult the dirty map.
    EveryDirtyLookup,
    /// Load-or-store and compare-and-swap: only when the key was found in the dirty map.
    FoundInDirty,
}

impl<K, V> RawMap<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            read: SnapshotCell::new(Arc::new(Snapshot::initial(capacity))),
            dirty: Mutex::new(Dirty::new()),
        }
    }

    /// Runs a locked section, then drops what it displaced after unlocking.
    fn locked<R>(&self, section: impl FnOnce(&mut Dirty<K, V>, &mut Garbage<K, V>) -> R) -> R {
        let mut garbage = Garbage::default();
        let result = section(&mut self.dirty.lock(), &mut garbage);
        drop(garbage);
        result
    }

    fn ref_to(
        snapshot: SnapshotGuard<Snapshot<K, V>>,
        entry: Option<Arc<Entry<K, V>>>,
        node: NonNull<ValueNode<V>>,
    ) -> Ref<K, V> {
        Ref {
            node,
            _entry: entry,
            _snapshot: snapshot,
        }
    }

    /// Promotes the dirty map to be the read table (Go: `missLocked` reaching its threshold,
    /// and `Range` on an amended map).
    fn promote(&self, dirty: &mut Dirty<K, V>, garbage: &mut Garbage<K, V>) {
        let Some(table) = dirty.take_table() else {
            return;
        };
        let live = self.read.load().live.clone();
        garbage.snapshot = Some(publish(
            &self.read,
            Publication {
                table: Arc::new(table),
                filter: None,
                live,
            },
        ));
        dirty.misses = 0;
        dirty.promotions += 1;
    }

    /// Counts a miss; promotes once misses reach the dirty map's size.
    fn miss(&self, dirty: &mut Dirty<K, V>, garbage: &mut Garbage<K, V>) {
        dirty.misses += 1;
        if dirty.misses >= dirty.len() {
            self.promote(dirty, garbage);
        }
    }

    /// Whether a locked lookup counts a miss under `rule`.
    fn counts_miss(rule: MissRule, located: &Located<K, V>, snapshot: &Snapshot<K, V>) -> bool {
        match located {
            Located::Read(_) => false,
            Located::Dirty(_) => true,
            Located::Absent => rule == MissRule::EveryDirtyLookup && snapshot.amended(),
        }
    }

    /// Publishes a fresh snapshot around the same table if `full` is still the current epoch,
    /// so that the values retired to it can be freed once its readers move on.
    fn rotate(&self, full: &Arc<Epoch<V>>) {
        self.locked(|dirty, garbage| {
            let current = self.read.load();
            if Arc::ptr_eq(&current.epoch, full) {
                garbage.snapshot = Some(publish(&self.read, Publication::same_as(&current)));
                dirty.rotations += 1;
            }
        });
    }

    /// Retires a displaced value to the epoch current *now* (after the displacement) and
    /// returns a `Ref` to it that pins that epoch.
    fn retire(&self, value: Displaced<V>) -> Ref<K, V> {
        let snapshot = self.read.load();
        let node = value.0;
        if snapshot.epoch.retire(value) {
            self.rotate(&snapshot.epoch);
        }
        Self::ref_to(snapshot, None, node)
    }

    /// Finds the entry of a key the snapshot lacks, under the lock (Go's re-check), counting
    /// a miss by `rule`. Returns the snapshot loaded under the lock, which the caller keeps
    /// while it works on the entry so that the values it reads stay alive.
    fn locate_locked<Q>(
        &self,
        hash: u64,
        key: &Q,
        rule: MissRule,
        take_dirty_only: bool,
    ) -> LockedLookup<K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.locked(|dirty, garbage| {
            let snapshot = self.read.load();
            let located = dirty.locate(&snapshot, hash, key);
            let missed = Self::counts_miss(rule, &located, &snapshot);
            let entry = match located {
                Located::Read(entry) => Some(entry),
                Located::Dirty(entry) if take_dirty_only => dirty.take(&entry),
                Located::Dirty(entry) => Some(entry),
                Located::Absent => None,
            };
            // After taking the key out: a promotion here must not carry it into the snapshot.
            if missed {
                self.miss(dirty, garbage);
            }
            (snapshot, entry)
        })
    }

    #[inline(always)]
    pub(crate) fn get<Q>(&self, hash: u64, key: &Q) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let snapshot = self.read.load();
        match snapshot.lookup(hash, key) {
            Lookup::Present(node) => Some(Self::ref_to(snapshot, None, node)),
            Lookup::Absent => None,
            Lookup::AskDirty => {
                drop(snapshot);
                self.get_locked(hash, key)
            }
        }
    }

    /// Go's `Load` after the snapshot could not answer: re-check and look in the dirty map
    /// under the lock, counting a miss. Out of line and cold, so that the lock-free hit,
    /// inlined into callers, saves no registers for it.
    #[cold]
    #[inline(never)]
    pub(crate) fn get_locked<Q>(&self, hash: u64, key: &Q) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let (snapshot, entry) = self.locate_locked(hash, key, MissRule::EveryDirtyLookup, false);
        let entry = entry?;
        let node = entry.load()?;
        Some(Self::ref_to(snapshot, Some(entry), node))
    }

    /// Go's `Swap`: stores the value and returns the previous one.
    pub(crate) fn insert(&self, key: K, hash: u64, value: V) -> Option<Ref<K, V>>
    where
        K: Eq,
    {
        let mut value = OwnedValue::new(value);
        let snapshot = self.read.load();
        if let Some(entry) = snapshot.find(hash, &key) {
            match entry.try_swap(value) {
                Stored::Replaced(previous) => {
                    if previous.is_none() {
                        snapshot.live.added();
                    }
                    // Retired before the guard and the duplicate key are dropped (either can
                    // run user `Drop`s), so that a panic there leaks nothing.
                    let previous = previous.map(|previous| self.retire(previous));
                    drop(snapshot);
                    drop(key);
                    return previous;
                }
                Stored::Expunged(back) => value = back,
            }
        }
        drop(snapshot);
        // Key and value stay out here until the locked lookup (`Eq`) is done, so that if it
        // panics they are dropped after the mutex is released.
        let mut offered = Some((key, value));
        let (previous, duplicate) = self.locked(|dirty, garbage| {
            let snapshot = self.read.load();
            let located = dirty.locate(&snapshot, hash, &offered.as_ref().expect("once").0);
            let (key, value) = offered.take().expect("once");
            // Unlike Go's Store, an overwrite of a dirty-only key counts a miss, as
            // `get_or_insert` does: otherwise a key that is only ever overwritten stays
            // behind the mutex for good (Go's W6). Counted after the store, so a promotion
            // it triggers carries the new value.
            let missed = Self::counts_miss(MissRule::FoundInDirty, &located, &snapshot);
            let previous = match located {
                Located::Read(entry) => {
                    if entry.unexpunge_locked() {
                        dirty.put(entry.clone());
                    }
                    entry.swap_locked(value)
                }
                Located::Dirty(entry) => entry.swap_locked(value),
                Located::Absent => {
                    self.insert_new_locked(dirty, garbage, &snapshot, key, hash, value);
                    return (None, None);
                }
            };
            if previous.is_none() {
                snapshot.live.added();
            }
            if missed {
                self.miss(dirty, garbage);
            }
            (previous, Some(key))
        });
        // The duplicate key is dropped only once the displaced value is retired.
        let previous = previous.map(|previous| self.retire(previous));
        drop(duplicate);
        previous
    }

    /// Adds a key that neither map holds, recording it in the miss filter first. Returns the
    /// entry.
    fn insert_new_locked(
        &self,
        dirty: &mut Dirty<K, V>,
        garbage: &mut Garbage<K, V>,
        snapshot: &Snapshot<K, V>,
        key: K,
        hash: u64,
        value: OwnedValue<V>,
    ) -> Arc<Entry<K, V>> {
        self.record_new_key_locked(dirty, garbage, snapshot, hash);
        let entry = Arc::new(Entry::new(key, hash, value));
        dirty.put(entry.clone());
        snapshot.live.added();
        entry
    }

    /// Records a key about to enter the dirty map in the miss filter. At the first new key
    /// since a promotion or clear, this rebuilds the dirty map and publishes the snapshot as
    /// amended with a fresh filter. When the filter holds as many keys as it was sized for, it
    /// publishes one four times larger, filled from the hashes of the keys added since the
    /// filter's cycle began (`Dirty::new_key_hashes`): O(new keys), where walking the dirty map
    /// for its dirty-only keys was O(map).
    fn record_new_key_locked(
        &self,
        dirty: &mut Dirty<K, V>,
        garbage: &mut Garbage<K, V>,
        snapshot: &Snapshot<K, V>,
        hash: u64,
    ) {
        let filter = match &snapshot.filter {
            None => {
                debug_assert!(
                    dirty.new_key_hashes.is_empty(),
                    "freed when the cycle ended"
                );
                dirty.rebuild_from(&snapshot.table);
                MissFilter::with_capacity(MIN_KEYS)
            }
            Some(filter) if dirty.new_key_hashes.len() < filter.capacity() => {
                filter.insert(hash);
                dirty.new_key_hashes.push(hash);
                return;
            }
            Some(full) => {
                let bigger = MissFilter::with_capacity(full.capacity() * 4);
                for &earlier in &dirty.new_key_hashes {
                    bigger.insert(earlier);
                }
                bigger
            }
        };
        filter.insert(hash);
        dirty.new_key_hashes.push(hash);
        debug_assert!(
            garbage.snapshot.is_none(),
            "one publication per locked section"
        );
        garbage.snapshot = Some(publish(
            &self.read,
            Publication {
                table: snapshot.table.clone(),
                filter: Some(Arc::new(filter)),
                live: snapshot.live.clone(),
            },
        ));
    }

    /// Go's `LoadOrStore`: `Ok` with the stored value, or `Err` with the present value and the
    /// offered one.
    pub(crate) fn get_or_insert(
        &self,
        key: K,
        hash: u64,
        value: OwnedValue<V>,
    ) -> Result<Ref<K, V>, Occupied<K, V>>
    where
        K: Eq,
    {
        let snapshot = self.read.load();
        let value = match snapshot.find(hash, &key) {
            // The duplicate key is dropped once the result is a local: a value being returned
            // is leaked, not dropped, when a later `Drop` panics (rust-lang/rust#47949).
            Some(entry) => match entry.try_load_or_store(value) {
                LoadedOrStored::Loaded(node, value) => {
                    let occupied = (Self::ref_to(snapshot, None, node), value);
                    drop(key);
                    return Err(occupied);
                }
                LoadedOrStored::Stored(node) => {
                    snapshot.live.added();
                    let stored = Self::ref_to(snapshot, None, node);
                    drop(key);
                    return Ok(stored);
                }
                LoadedOrStored::Expunged(value) => value,
            },
            None => value,
        };
        drop(snapshot);
        // As in `insert`: dropped after unlocking if the locked lookup panics.
        let mut offered = Some((key, value));
        self.locked(|dirty, garbage| {
            let snapshot = self.read.load();
            let located = dirty.locate(&snapshot, hash, &offered.as_ref().expect("once").0);
            let (key, value) = offered.take().expect("once");
            if Self::counts_miss(MissRule::FoundInDirty, &located, &snapshot) {
                self.miss(dirty, garbage);
            }
            let entry = match located {
                Located::Read(entry) => {
                    if entry.unexpunge_locked() {
                        dirty.put(entry.clone());
                    }
                    entry
                }
                Located::Dirty(entry) => entry,
                Located::Absent => {
                    let entry = self.insert_new_locked(dirty, garbage, &snapshot, key, hash, value);
                    let node = entry.load().expect("a new entry holds its value");
                    return Ok(Self::ref_to(snapshot, Some(entry), node));
                }
            };
            garbage.key = Some(key);
            match entry.try_load_or_store(value) {
                LoadedOrStored::Loaded(node, value) => {
                    Err((Self::ref_to(snapshot, Some(entry), node), value))
                }
                LoadedOrStored::Stored(node) => {
                    snapshot.live.added();
                    Ok(Self::ref_to(snapshot, Some(entry), node))
                }
                LoadedOrStored::Expunged(_) => unreachable!("unexpunged under the lock"),
            }
        })
    }

    /// Deletes the key's value if `reject` says so for it. Shared by `remove` (always) and
    /// `compare_and_remove` (if equal): lock-free for keys in the snapshot; otherwise the entry
    /// is found under the lock and, for `remove`, taken out of the dirty map.
    fn remove_if<Q>(
        &self,
        hash: u64,
        key: &Q,
        take_dirty_only: bool,
        reject: impl FnMut(&V) -> bool,
    ) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let snapshot = self.read.load();
        let (snapshot, entry) = match snapshot.find(hash, key) {
            Some(entry) => {
                let removed = entry.delete_if(reject)?;
                snapshot.live.removed();
                // Retired before the guard is dropped: dropping it may free retired values
                // (if the snapshot was replaced meanwhile), whose `Drop` may panic.
                let removed = self.retire(removed);
                drop(snapshot);
                return Some(removed);
            }
            None if !snapshot.may_be_dirty(hash) => return None,
            None => {
                drop(snapshot);
                self.locate_locked(hash, key, MissRule::EveryDirtyLookup, take_dirty_only)
            }
        };
        let entry = entry?;
        let removed = entry.delete_if(reject)?;
        snapshot.live.removed();
        // Retired before the guard (the last holder of the snapshot a promotion just
        // replaced) and the entry (the last reference to one taken out of the dirty map: its
        // key is dropped) are dropped, since both run user `Drop`s.
        let removed = self.retire(removed);
        drop(snapshot);
        drop(entry);
        Some(removed)
    }

    /// Go's `LoadAndDelete`.
    pub(crate) fn remove<Q>(&self, hash: u64, key: &Q) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.remove_if(hash, key, true, |_| true)
    }

    /// Go's `CompareAndDelete`: a dirty-only key stays in the dirty map as a tombstone.
    pub(crate) fn compare_and_remove<Q>(&self, hash: u64, key: &Q, expected: &V) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: PartialEq,
    {
        self.remove_if(hash, key, false, |current| current == expected)
            .is_some()
    }

    /// Go's `CompareAndSwap`: never inserts.
    pub(crate) fn compare_and_swap<Q>(
        &self,
        hash: u64,
        key: &Q,
        expected: &V,
        new: OwnedValue<V>,
    ) -> Result<(), OwnedValue<V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: PartialEq,
    {
        let snapshot = self.read.load();
        // The guard is dropped only once the outcome is a local (see `remove_if`, and
        // `get_or_insert` for why not a return value either).
        let (snapshot, entry) = match snapshot.find(hash, key) {
            Some(entry) => {
                let outcome = entry
                    .compare_and_swap(expected, new)
                    .map(|displaced| self.retire(displaced));
                drop(snapshot);
                return outcome.map(drop);
            }
            None if !snapshot.may_be_dirty(hash) => {
                drop(snapshot);
                return Err(new);
            }
            None => {
                drop(snapshot);
                self.locate_locked(hash, key, MissRule::FoundInDirty, false)
            }
        };
        let outcome = match &entry {
            Some(entry) => entry
                .compare_and_swap(expected, new)
                .map(|displaced| self.retire(displaced)),
            None => Err(new),
        };
        drop(snapshot);
        drop(entry);
        outcome.map(drop)
    }

    /// The snapshot to iterate: promotes an amended map first (Go's `Range`), so that the
    /// table holds every key present now. No lock is held afterwards.
    pub(crate) fn pin_for_iteration(&self) -> Arc<Snapshot<K, V>> {
        let snapshot = self.read.load_full();
        if !snapshot.amended() {
            return snapshot;
        }
        drop(snapshot);
        self.locked(|dirty, garbage| {
            if self.read.load().amended() {
                self.promote(dirty, garbage);
            }
            self.read.load_full()
        })
    }

    /// Removes every entry of the pinned snapshot for which `keep` is false; entries whose
    /// value changes meanwhile are judged again on their new value.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let snapshot = self.pin_for_iteration();
        for entry in snapshot.table.iter() {
            if let Some(removed) = entry.delete_if(|value| !keep(&entry.key, value)) {
                snapshot.live.removed();
                self.retire(removed);
            }
        }
    }

    /// Go's `Clear`: the old entries are orphaned, not changed.
    pub(crate) fn clear(&self) {
        let snapshot = self.read.load();
        if snapshot.table.is_empty() && !snapshot.amended() {
            return;
        }
        drop(snapshot);
        self.locked(|dirty, garbage| {
            garbage.table = dirty.take_table();
            garbage.snapshot = Some(publish(
                &self.read,
                Publication {
                    table: Arc::new(Table::with_capacity(0)),
                    filter: None,
                    live: Arc::new(LiveKeys::default()),
                },
            ));
            dirty.misses = 0;
        });
    }

    /// Makes the current miss filter claim `hash`, as a false positive would: lets tests
    /// drive a lookup of an absent key through the locked path deterministically.
    #[cfg(any(test, dualmap_loom))]
    pub(crate) fn record_in_miss_filter(&self, hash: u64) {
        if let Some(filter) = &self.read.load().filter {
            filter.insert(hash);
        }
    }

    /// True if the map holds no entry at all (not even a deleted key) and no dirty map: a
    /// bulk load may then replace the whole read table.
    pub(crate) fn is_vacant(&self) -> bool {
        let snapshot = self.read.load();
        snapshot.table.is_empty() && !snapshot.amended()
    }

    /// Publishes `table` as the whole read table of a vacant map, not amended: every key is
    /// read lock-free from now on. `&mut self` stands in for the mutex: no other thread can
    /// add a key between the caller's `is_vacant` and this publication.
    pub(crate) fn publish_bulk(&mut self, table: Table<K, V>) {
        debug_assert!(self.is_vacant() && self.dirty.get_mut().table.is_none());
        let current = self.read.load();
        current.live.add(table.len());
        let replaced = publish(
            &self.read,
            Publication {
                table: Arc::new(table),
                filter: None,
                live: current.live.clone(),
            },
        );
        drop(current);
        drop(replaced);
    }

    /// The published snapshot, for a `Reader` to keep.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot<K, V>> {
        self.read.load_full()
    }

    pub(crate) fn len(&self) -> usize {
        self.read.load().live.get()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.locked(|dirty, _| {
            let snapshot = self.read.load();
            Stats {
                len: snapshot.live.get(),
                snapshot_len: snapshot.table.len(),
                amended: snapshot.amended(),
                dirty_len: dirty.table.as_ref().map(|table| table.len()),
                misses: dirty.misses,
                promotions: dirty.promotions,
                dirty_rebuilds: dirty.rebuilds,
                rotations: dirty.rotations,
                retired: snapshot.epoch.outstanding(),
            }
        })
    }
}

#[cfg(test)]
mod tests;
