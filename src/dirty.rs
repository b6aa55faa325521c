//! The state behind the map mutex: the dirty map, the miss counter, and what a locked section
//! must drop only after unlocking.

use crate::entry::{EntryArena, ListedEntry, SharedEntry};
use crate::reclaim::Orphans;
use crate::snapshot::Snapshot;
use crate::sync::{Arc, SnapshotGuard};
use crate::table::Table;
use std::borrow::Borrow;

/// The fewest misses that promote a read/dirty pair's dirty map by default: a pair promotes
/// once its misses reach the size of its dirty map (Go's rule) *and* this many.
///
/// Why a floor: a promotion, and the dirty rebuild that the next new key then does, cost
/// about as much as 20 locked lookups however small the dirty map (publishing a snapshot,
/// allocating tables, freeing the old snapshot), and Go's rule pays that after as few misses
/// as the dirty map has keys, down to one miss for an empty one. A workload that inserts and
/// removes keys of a small map (Go's `SwapMostlyMisses` and `LoadAndDeleteCollision`)
/// promoted on nearly every operation: 1.2 µs each on one thread. With a floor of 32, 0.39 µs
/// (8: 0.47, 16: 0.41, 64: 0.36, 128: 0.38; 2-core AMD EPYC). A dirty map of 32 keys or more
/// promotes as in Go; a smaller one serves up to 32 locked lookups first.
/// [`Builder::min_promotion_misses`](crate::Builder::min_promotion_misses) sets it per map
/// (0 is Go's rule).
///
/// ```
/// let map = dualmap::DualMap::builder().pairs(1).build();
/// map.insert("new", 1); // only in the dirty map
/// for _ in 0..dualmap::MIN_PROMOTION_MISSES - 1 {
///     assert_eq!(map.get_cloned("new"), Some(1)); // each a locked lookup: a miss
/// }
/// assert_eq!(map.stats().promotions, 0);
/// map.get("new");
/// assert_eq!(map.stats().promotions, 1); // now in the read snapshot
/// ```
pub const MIN_PROMOTION_MISSES: usize = 32;

/// The most new keys' hashes (8 bytes each) whose allocation a pair keeps from one dirty-map
/// cycle to the next. A small map whose keys come and go (Go's `SwapMostlyMisses`) starts a
/// cycle every few dozen keys, and growing the list from nothing again each time took four
/// reallocations a cycle: 53 of the 1,588 instructions of an insert and remove of a new key
/// (callgrind, one thread). Larger lists are freed, so an idle pair holds at most 2 KiB.
pub(crate) const KEPT_HASHES: usize = 256;

/// A dirty rebuild expunges the read table's tombstones only once they are more than one
/// entry in this many (see [`Dirty::rebuild_from`]), so a pair carries at most that share of
/// removed keys' entries (and their keys) from one promotion cycle to the next.
pub(crate) const TOMBSTONE_SHARE: usize = 8;

/// Everything the map mutex guards.
pub(crate) struct Dirty<K, V> {
    /// Every non-expunged entry of the read table plus the keys added since the last
    /// promotion, less the dirty-only keys `remove` took out since (as Go does); `None` right
    /// after a promotion or a publishing clear (empty after a clear in place).
    pub(crate) table: Option<Table<K, V>>,
    /// Locked lookups since the last promotion.
    pub(crate) misses: usize,
    /// At least how many entries of the dirty map are tombstones of dirty-only keys: counted
    /// whenever a compare-and-remove locates a dirty-only key, or a remove does that leaves it
    /// in place because its miss promotes (either deletes after unlocking, so it is counted
    /// whatever the slot holds at the lookup: a store may refill the slot before the delete),
    /// and counted back when a store refills one under the lock. Every such tombstone is made
    /// by a counted delete, and every refill that counts one back makes one live again, so
    /// with keys whose `Eq` is consistent this is never below the real number (it is above it
    /// when a delete finds nothing to delete, or a remove takes a counted tombstone out; a
    /// key whose `Eq` lies can make a store count back a tombstone of the read table, which
    /// only delays a promotion). They are left out of the promotion threshold: each cost a
    /// miss, so with them in, misses could not catch up with a dirty map whose keys are
    /// compare-and-removed and stored again.
    pub(crate) tombstones: usize,
    /// The fewest misses that promote, however small the dirty map
    /// ([`Builder::min_promotion_misses`](crate::Builder::min_promotion_misses)).
    pub(crate) min_promotion_misses: usize,
    /// Hashes of the keys added to the dirty map since the current filter cycle began (the
    /// first new key after a promotion or clear) or the last clear in place: the keys a
    /// larger filter must hold.
    pub(crate) new_key_hashes: NewKeyHashes,
    /// Keys that set a bit of the current miss filter (a key whose bits were all set adds no
    /// false positives), with those a clear in place emptied `new_key_hashes` of (their bits
    /// stay). The filter is full when this reaches its capacity.
    pub(crate) filtered: usize,
    /// The entries the dirty rebuild removed as expunged, with the shares the dirty map took
    /// over from the read table: that table, which still lists them, owns nothing any more,
    /// so they are kept until it is replaced and then handed to the epoch of the last
    /// snapshot that lists them (`Dirty::end_cycle`).
    pub(crate) expunged: Vec<SharedEntry<K, V>>,
    pub(crate) promotions: u64,
    pub(crate) rebuilds: u64,
    pub(crate) rotations: u64,
    /// The memory of the pair's entries: a new key's entry is allocated under the lock.
    pub(crate) arena: EntryArena<K, V>,
}

/// The hashes of the keys added to a dirty map since its filter cycle began or the last clear
/// in place (`Dirty::new_key_hashes`): a larger filter is filled from them, so regrowing it
/// costs O(new keys), not O(map). A key removed since keeps its hash here, as its bits stay
/// in the filter, and a key removed and added again is listed again: each time, its remove
/// counted a miss, so the list holds at most the cycle's new keys plus its promotion
/// threshold (8 bytes each). Its allocation is kept from one cycle to the next up to
/// [`KEPT_HASHES`] hashes and freed above that.
#[derive(Default)]
pub(crate) struct NewKeyHashes {
    hashes: Vec<u64>,
    /// How many of `hashes` set a bit of the filter when listed: the distinct keys among
    /// them, but for the rare key whose bits others had all set. A regrown filter is sized
    /// for these, not for the duplicates (sorting the list to drop them at a regrowth cost a
    /// new key 38 instructions in the cost model, 421.9 -> 460.4).
    distinct: usize,
}

impl NewKeyHashes {
    /// Lists a key's hash; `set_bits`: it set a bit of the current filter.
    #[inline(always)]
    pub(crate) fn push(&mut self, hash: u64, set_bits: bool) {
        self.hashes.push(hash);
        self.distinct += usize::from(set_bits);
    }

    /// Every hash listed, duplicates included.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.hashes.iter().copied()
    }

    /// The keys a filter filled from this list must be sized for.
    pub(crate) fn distinct(&self) -> usize {
        self.distinct
    }

    /// How many hashes are listed, duplicates included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Empties the list, keeping up to [`KEPT_HASHES`] hashes' worth of allocation.
    pub(crate) fn clear(&mut self) {
        if self.hashes.capacity() > KEPT_HASHES {
            self.hashes = Vec::new();
        } else {
            self.hashes.clear();
        }
        self.distinct = 0;
    }

    /// The room allocated, in hashes.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.hashes.capacity()
    }
}

/// Where a locked lookup found a key.
pub(crate) enum Located<K, V> {
    /// In the read table (re-checked under the lock).
    Read(SharedEntry<K, V>),
    /// Only in the dirty map.
    Dirty(SharedEntry<K, V>),
    Absent,
}

impl<K, V> Dirty<K, V> {
    pub(crate) fn new(min_promotion_misses: usize) -> Self {
        Self {
            table: None,
            misses: 0,
            tombstones: 0,
            min_promotion_misses,
            new_key_hashes: NewKeyHashes::default(),
            filtered: 0,
            expunged: Vec::new(),
            promotions: 0,
            rebuilds: 0,
            rotations: 0,
            arena: EntryArena::new(),
        }
    }

    /// How many entries the dirty map's table has room for without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.table.as_ref().map_or(0, |table| table.capacity())
    }

    /// Entries in the dirty map, tombstones included (Go's `len(dirty)`).
    pub(crate) fn len(&self) -> usize {
        self.table.as_ref().map_or(0, |table| table.len())
    }

    /// The misses that promote: the dirty map's entries other than tombstones of dirty-only
    /// keys and the `leaving` entries, and at least the floor.
    pub(crate) fn promotion_threshold(&self, leaving: usize) -> usize {
        self.len()
            .saturating_sub(self.tombstones + leaving)
            .max(self.min_promotion_misses)
    }

    /// Looks a key up in the current snapshot, then in the dirty map. `read_missed`: the
    /// caller already searched this very snapshot's table and did not find the key there
    /// (tables do not change once published), so only the dirty map is searched. `take_out`:
    /// a key only the dirty map holds is taken out of it (Go's `LoadAndDelete`), and its
    /// share is the one the map owned; otherwise a new one. When taking out, a key found in the
    /// dirty map whose entry the read table lists after all (its `Eq` or `Hash` said
    /// otherwise when that table was searched) is located in the read table instead, and
    /// stays.
    pub(crate) fn locate<Q>(
        &mut self,
        snapshot: &Snapshot<K, V>,
        read_missed: bool,
        hash: u64,
        key: &Q,
        take_out: bool,
    ) -> Located<K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if !read_missed {
            if let Some(entry) = snapshot.find(hash, key) {
                return Located::Read(entry.share());
            }
        }
        let Some(table) = self.table.as_mut() else {
            return Located::Absent;
        };
        let found = if take_out {
            table.take_out(hash, key, &snapshot.table)
        } else {
            table.entry_of(hash, key).map(|entry| Ok(entry.share()))
        };
        match found {
            Some(Ok(entry)) => Located::Dirty(entry),
            Some(Err(listed_in_read)) => Located::Read(listed_in_read),
            None => Located::Absent,
        }
    }

    /// Adds an entry that is in neither map yet, or an entry of the read table that was just
    /// unexpunged. The dirty map exists whenever this is called. Returns its table if the
    /// insert grew it (see `Table::insert_absent`).
    pub(crate) fn put(&mut self, entry: SharedEntry<K, V>) -> Option<&Table<K, V>> {
        let table = self
            .table
            .as_mut()
            .expect("dirty map exists while amended or unexpunging");
        let grew = table.insert_absent(entry);
        grew.then_some(table)
    }

    /// Ends the dirty map's cycle (a promotion or a clear, which replaces the read table):
    /// takes the table and the entries the rebuild expunged, as orphans for the epoch of the
    /// current snapshot (see [`Orphans`]; a promotion takes the table back out to publish
    /// it); empties the new keys' hashes, which only an amended snapshot's filter needs.
    pub(crate) fn end_cycle(&mut self) -> Orphans<K, V> {
        self.new_key_hashes.clear();
        self.filtered = 0;
        self.tombstones = 0;
        Orphans {
            read: None,
            dirty: self.table.take(),
            entries: std::mem::take(&mut self.expunged),
        }
    }

    /// Empties the dirty map of an amended pair whose read table is empty, keeping the cycle
    /// (the snapshot stays amended, its filter keeps the cleared keys' bits), after running
    /// `expunge` on each entry. Returns the entries the caller must drop after unlocking: the
    /// old table, or nothing when dropping them runs no user code (keys without `Drop`: an
    /// expunged entry holds no value, and a displaced first value either has a record, which
    /// keeps its entry alive, or has nothing to drop), in which case they are dropped now and
    /// the table keeps its allocation.
    pub(crate) fn empty_in_place(
        &mut self,
        expunge: impl FnMut(&ListedEntry<K, V>),
    ) -> Option<Table<K, V>> {
        let table = self.table.as_mut()?;
        table.iter().for_each(expunge);
        self.new_key_hashes.clear();
        self.tombstones = 0;
        if table.is_empty() {
            None
        } else if std::mem::needs_drop::<K>() {
            Some(std::mem::replace(table, Table::with_capacity(0)))
        } else {
            table.clear();
            None
        }
    }

    /// Builds the dirty map from the read table, expunging its tombstones (Go: `dirtyLocked`).
    /// O(n), once per promotion cycle: the dirty map copies the read table's buckets as they
    /// are (no hashing, no probing) and takes over its shares (no entry's count changes),
    /// then reads each entry's slot to expunge the tombstones. Only when the map is not
    /// amended, which is exactly when there is no dirty map, so the read table holds every
    /// key of the pair and `live` of them are live.
    ///
    /// The expunge pass runs only when `live` says more than one entry in
    /// [`TOMBSTONE_SHARE`] of the read table is a tombstone: it reads every entry, a cache
    /// miss apiece in a large table, and was 40% of a rebuild at 1M keys. Fewer tombstones
    /// are carried into the dirty map as they are (Go's dirty map holds such entries too:
    /// those made after its rebuild), and a later rebuild expunges them once enough have
    /// gathered, so each pass frees at least a share of the entries it reads. A tombstone
    /// that a remove in flight made but has not counted yet is carried the same way.
    /// Returns the dirty map's table.
    pub(crate) fn rebuild_from(&mut self, read: &Table<K, V>, live: usize) -> &Table<K, V> {
        debug_assert!(
            self.table.is_none() && self.expunged.is_empty(),
            "a dirty map exists only while amended"
        );
        let read_tombstones = read.len().saturating_sub(live);
        let expunges = read_tombstones * TOMBSTONE_SHARE > read.len();
        if expunges {
            // Sized once: grown from empty it reallocated five times for 32 tombstones, 1,600
            // instructions a rebuild (Go's `SwapMostlyMisses`, which rebuilds every 32 keys).
            // Before the shares are taken over: if this allocation panicked (out of memory,
            // under `-Zoom=panic`) after that, unwinding would drop the copy, which owns the
            // shares, while the published read table still lists them.
            self.expunged.reserve(read_tombstones);
        }
        let mut table = read.take_over_shares();
        if expunges {
            table.remove_into(|entry| entry.try_expunge_locked(), &mut self.expunged);
        }
        self.rebuilds += 1;
        self.table.insert(table)
    }
}

/// What a locked section displaced: dropped after the mutex is released, because dropping
/// tables and snapshots drops keys and values, which runs user code (`Drop`) that must never
/// run under the lock. Fields in drop order.
pub(crate) struct Garbage<K, V> {
    /// A guard the operation loaded before locking, of a snapshot superseded since: it may
    /// be the last reference to that snapshot.
    pub(crate) superseded: Option<SnapshotGuard<Snapshot<K, V>>>,
    pub(crate) snapshot: Option<Arc<Snapshot<K, V>>>,
    pub(crate) table: Option<Table<K, V>>,
}

impl<K, V> Garbage<K, V> {
    /// Drops what the section displaced, after unlocking. Most sections displace nothing, and
    /// that is decided inline: the drop glue of the three options is out of line and cost a
    /// call of 24 instructions per locked section (callgrind, a new key).
    #[inline(always)]
    pub(crate) fn drop_unlocked(self) {
        if self.superseded.is_none() && self.snapshot.is_none() && self.table.is_none() {
            // Nothing to drop: three `None`s own nothing.
            std::mem::forget(self);
        } else {
            drop(self);
        }
    }
}

impl<K, V> Default for Garbage<K, V> {
    fn default() -> Self {
        Self {
            superseded: None,
            snapshot: None,
            table: None,
        }
    }
}
