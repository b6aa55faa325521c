//! The table both the read snapshot and the dirty map are made of: entries, found by their
//! stored hash and key.

use crate::entry::{Entry, ListedEntry, SharedEntry};
use crate::sync::{AtomicBool, HintUsize};
use hashbrown::hash_table::Drain;
use hashbrown::HashTable;
use std::borrow::Borrow;
use std::mem::size_of;
use std::ops::Deref;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

/// The table type of both the read snapshot and the dirty map: entries, listed with their
/// hash.
///
/// A table made by [`with_capacity`](Self::with_capacity) owns one share of each entry it
/// lists, and drops them when it is dropped. A dirty rebuild copies the read table's
/// listings and takes those shares over ([`take_over_shares`](Self::take_over_shares)): the
/// read table then owns nothing, and its drop frees only its buckets. So a promotion cycle
/// neither counts every entry up when the dirty map is built nor counts it down when the
/// replaced read table goes (DESIGN.md, "Reclamation", says who keeps an entry alive for a
/// reader of a table that owns nothing).
pub(crate) struct Table<K, V> {
    listed: HashTable<ListedEntry<K, V>>,
    /// Whether this table owns its entries' shares; cleared once, under the map mutex, when a
    /// dirty rebuild takes them over. The table's last owner reads it when dropping the
    /// table, after the `Arc` count's acquire: `Relaxed` would do, `Acquire` says so.
    owns: AtomicBool,
}

impl<K, V> Table<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            listed: HashTable::with_capacity(capacity),
            owns: AtomicBool::new(true),
        }
    }

    /// The entry of `key`.
    pub(crate) fn entry_of<Q>(&self, hash: u64, key: &Q) -> Option<&ListedEntry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, |entry| entry.key.borrow() == key)
    }

    /// Inserts an entry known to be absent, rehashing with the stored hashes; the table owns
    /// the share from now on. True if the table was full, so that the insert moved it into a
    /// larger allocation (or rehashed it in place).
    pub(crate) fn insert_absent(&mut self, entry: SharedEntry<K, V>) -> bool {
        debug_assert!(self.owns.load(Relaxed), "only tables that own gain entries");
        let full = self.listed.len() == self.listed.capacity();
        self.listed
            .insert_unique(entry.hash, entry.into_listed(), |entry| entry.hash);
        full
    }

    /// A copy of this table, bucket for bucket (no hashing, no probing, no entry read), which
    /// takes over this table's shares: this table owns nothing from now on. For the dirty
    /// rebuild, under the map mutex, from the current read table, which owns its shares until
    /// then (a table that owns nothing is never rebuilt from: a dirty map exists until the
    /// read table is replaced).
    pub(crate) fn take_over_shares(&self) -> Self {
        debug_assert!(self.owns.load(Relaxed), "shares are taken over once");
        let copy = Self {
            listed: self.listed.clone(),
            owns: AtomicBool::new(true),
        };
        self.owns.store(false, Relaxed);
        copy
    }

    /// Removes the entries for which `remove` is true, and hands their shares to `removed`.
    /// Only on a table that owns them (a dirty map).
    pub(crate) fn remove_into(
        &mut self,
        mut remove: impl FnMut(&ListedEntry<K, V>) -> bool,
        removed: &mut Vec<SharedEntry<K, V>>,
    ) {
        debug_assert!(self.owns.load(Relaxed));
        self.listed.retain(|entry| {
            if !remove(entry) {
                return true;
            }
            // Room first: if growing `removed` panicked (out of memory, under `-Zoom=panic`)
            // after the share was made, unwinding would drop it while this table still lists
            // and owns it, which drops it again.
            removed.reserve(1);
            // SAFETY: this table owns the listing's share, and the listing leaves it now: the
            // share goes to `removed` alone.
            removed.push(unsafe { entry.clone().into_shared() });
            false
        });
    }

    /// Removes the entry of `key` (`Ok`, with the share this table owned), unless `read`, the
    /// current read table, lists that entry too (`Err`, with a new share): only a key whose
    /// `Eq` or `Hash` answered differently when `read` was searched can be in both, and such
    /// an entry's share is the one `read`'s readers rely on (the dirty map took it over), so
    /// it must stay. `read` is searched with the entry's own stored hash, by address. `None` if the key is absent. Only on a table that owns its shares (a dirty
    /// map).
    #[inline(always)]
    pub(crate) fn take_out<Q>(
        &mut self,
        hash: u64,
        key: &Q,
        read: &Table<K, V>,
    ) -> Option<Result<SharedEntry<K, V>, SharedEntry<K, V>>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        debug_assert!(self.owns.load(Relaxed));
        let found = self
            .listed
            .find_entry(hash, |entry| entry.key.borrow() == key)
            .ok()?;
        if read.lists(found.get()) {
            return Some(Err(found.get().share()));
        }
        let (listed, _) = found.remove();
        // SAFETY: this table owns the listing's share, and the listing has left it: the share
        // goes to the caller alone.
        Some(Ok(unsafe { listed.into_shared() }))
    }

    /// Whether this table lists `entry` (found by its stored hash and its address: no user
    /// code runs).
    #[inline(always)]
    fn lists(&self, entry: &ListedEntry<K, V>) -> bool {
        let target: *const Entry<K, V> = &**entry;
        self.listed
            .find(entry.hash, |listed| ptr::eq(&**listed, target))
            .is_some()
    }

    /// Removes every entry, dropping the shares this table owns, and keeps the allocation.
    pub(crate) fn clear(&mut self) {
        self.drain_shares().for_each(drop);
    }

    /// Removes every entry, each as the share this table owned.
    fn drain_shares(&mut self) -> DrainedShares<'_, K, V> {
        debug_assert!(self.owns.load(Relaxed));
        DrainedShares(self.listed.drain())
    }
}

/// The listings of a table that owns its shares, being removed: each comes out as the
/// share it stood for. If dropping one panics, the rest are dropped while unwinding (a
/// drain's own drop would forget them: a listing owns nothing by itself).
struct DrainedShares<'a, K, V>(Drain<'a, ListedEntry<K, V>>);

impl<K, V> Iterator for DrainedShares<'_, K, V> {
    type Item = SharedEntry<K, V>;

    #[inline]
    fn next(&mut self) -> Option<SharedEntry<K, V>> {
        // SAFETY: made only by `Table::drain_shares`, from a table that owns its shares; each
        // listing leaves the table here, once, and its share goes to the caller alone.
        self.0.next().map(|entry| unsafe { entry.into_shared() })
    }
}

impl<K, V> Drop for DrainedShares<'_, K, V> {
    fn drop(&mut self) {
        self.for_each(drop);
    }
}

/// Tables of fewer buckets get no [`ProbeStart`]: their bucket array (8 bytes a bucket) is
/// small enough to stay cached while it is in use, so a prefetch would only add instructions.
const PREFETCH_MIN_BUCKETS: usize = 1 << 13;

/// A bucket holds one [`ListedEntry`], a pointer.
const BUCKET_BYTES: usize = size_of::<usize>();

/// How many buckets [`ProbeStart::of`] looks at for an occupied one to find the bucket array.
const BUCKETS_SEARCHED: usize = 256;

/// Where a lookup's probe starts in a large table's bucket array, so that the lookup can
/// fetch that line from memory while it reads the control bytes, instead of after them.
///
/// Why: a hit in a table far larger than the cache waits for three lines one after another
/// (control bytes, bucket, entry); the bucket's index depends on the control bytes, but the
/// key is nearly always within a few buckets of where its probe starts, so that line can be
/// requested at once (DESIGN.md, "State", has the measurement: 570 -> 435 ns a lookup on a
/// 1,000,000-key map when each lookup waits for the one before).
///
/// This relies on hashbrown's layout (bucket `i` at `(mask - i) * size_of::<T>()` bytes past
/// the bucket of index `mask`), which hashbrown does not promise; if it changes, the prefetch
/// fetches a useless line and nothing else goes wrong, and
/// `tests::probe_start_is_where_hashbrown_keeps_buckets` fails. Only an address is kept, never
/// a pointer: a prefetch is a hint that cannot fault, and nothing reads through it.
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct ProbeStart {
    /// The address of the bucket of index `mask`, the lowest of the array.
    lowest: usize,
    mask: usize,
}

impl ProbeStart {
    /// A placeholder for a table that has none; never used to prefetch.
    pub(crate) const NONE: Self = Self { lowest: 0, mask: 0 };

    /// For a table that will not change any more (a published snapshot's): `None` when the
    /// table is small, or when none of the first buckets is occupied to locate the array by
    /// (the search is bounded, as this runs under the map mutex).
    pub(crate) fn of<K, V>(table: &Table<K, V>) -> Option<Self> {
        let buckets = table.num_buckets();
        const { assert!(size_of::<ListedEntry<K, V>>() == BUCKET_BYTES) };
        if buckets < PREFETCH_MIN_BUCKETS {
            return None;
        }
        let (index, bucket) =
            (0..BUCKETS_SEARCHED).find_map(|index| Some((index, table.get_bucket(index)?)))?;
        let mask = buckets - 1;
        let address = ptr::from_ref(bucket) as usize;
        Some(Self {
            lowest: address - (mask - index) * BUCKET_BYTES,
            mask,
        })
    }

    /// The address of the bucket where hashbrown starts the probe of `hash`: `hash & mask`
    /// (its `h1`), which lies `mask - (hash & mask)` buckets above the lowest, and that is
    /// `!hash & mask`.
    #[inline(always)]
    fn first_bucket(&self, hash: u64) -> usize {
        self.lowest
            .wrapping_add((!hash as usize & self.mask) * BUCKET_BYTES)
    }

    /// Asks the processor for the line of the bucket where the probe of `hash` starts.
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash: u64) {
        prefetch_line(ptr::without_provenance::<i8>(self.first_bucket(hash)));
    }

    /// Asks for the lines a probe for `hash` reads first, and an insert writes: the control
    /// group where it starts (hashbrown's control bytes follow the bucket array) and that
    /// bucket.
    #[inline(always)]
    pub(crate) fn prefetch_probe(&self, hash: u64) {
        let control = self.lowest.wrapping_add((self.mask + 1) * BUCKET_BYTES);
        prefetch_line(ptr::without_provenance::<i8>(
            control.wrapping_add(hash as usize & self.mask),
        ));
        self.prefetch(hash);
    }
}

/// The [`ProbeStart`] of the dirty map's table, which changes under the map mutex, for an
/// operation to prefetch by before it takes the mutex (`RawMap::prefetch_dirty`): written
/// under the mutex when the table is rebuilt or grows, read without it. A hint only: the two
/// words may come from different tables, or from a table since freed (the dirty map a
/// promotion handed over), and the address is then wrong; its prefetch fetches a useless line
/// and nothing else, as nothing ever reads through it.
pub(crate) struct ProbeCell {
    lowest: HintUsize,
    /// Zero when the table is small (no prefetch).
    mask: HintUsize,
}

impl ProbeCell {
    pub(crate) fn new() -> Self {
        Self {
            lowest: HintUsize::new(0),
            mask: HintUsize::new(0),
        }
    }

    /// Sets the probe start of `table` (none if it is small); under the mutex. Out of line:
    /// it runs once per rebuild or growth of the dirty map (its search is bounded).
    #[cold]
    #[inline(never)]
    pub(crate) fn set<K, V>(&self, table: &Table<K, V>) {
        let start = ProbeStart::of(table).unwrap_or(ProbeStart::NONE);
        self.lowest.store(start.lowest, Relaxed);
        self.mask.store(start.mask, Relaxed);
    }

    /// The probe start last set, if that table was large.
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<ProbeStart> {
        let mask = self.mask.load(Relaxed);
        (mask != 0).then(|| ProbeStart {
            lowest: self.lowest.load(Relaxed),
            mask,
        })
    }
}

/// Asks the processor for the cache line at `address`, a hint: elsewhere (and under Miri)
/// nothing.
#[inline(always)]
pub(crate) fn prefetch_line(address: *const i8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch reads nothing the program sees and never faults, whatever the
    // address; SSE, which it needs, is part of every x86-64 processor.
    unsafe {
        std::arch::x86_64::_mm_prefetch(address, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = address;
}

/// How many entries a table's drop keeps between asking for an entry's count and dropping
/// that share: the misses of that many entries overlap instead of following one another.
const DROP_LOOKAHEAD: usize = 8;

/// Reading only: every change goes through the methods above, which keep the shares counted.
impl<K, V> Deref for Table<K, V> {
    type Target = HashTable<ListedEntry<K, V>>;
    fn deref(&self) -> &Self::Target {
        &self.listed
    }
}

impl<K, V> Drop for Table<K, V> {
    /// A table that owns nothing frees its buckets. One that owns its shares drops them
    /// through a drain, whose drop carries on with the remaining entries while a panicking
    /// key's or value's `Drop` unwinds, so every share is dropped once.
    ///
    /// Each share dropped updates its entry's count, a cache miss apiece in a large table
    /// (the replaced table of every promotion is dropped so), so the drain of a large table
    /// asks for an entry's count [`DROP_LOOKAHEAD`] entries before it drops that share,
    /// holding the shares in between in a ring, which unwinding drops too. A table too small
    /// for a [`ProbeStart`] stays cached and skips the ring (9 instructions an entry).
    fn drop(&mut self) {
        if !self.owns.load(Acquire) {
            return;
        }
        if self.listed.num_buckets() < PREFETCH_MIN_BUCKETS {
            self.clear();
            return;
        }
        let mut ring: [Option<SharedEntry<K, V>>; DROP_LOOKAHEAD] =
            [const { None }; DROP_LOOKAHEAD];
        for (index, entry) in self.drain_shares().enumerate() {
            prefetch_line(entry.count_address());
            drop(ring[index % DROP_LOOKAHEAD].replace(entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `keys` keys in a table with room for `capacity`.
    fn table_of(keys: u64, capacity: usize) -> Table<u64, u64> {
        let mut table = Table::with_capacity(capacity);
        let mut arena = crate::entry::EntryArena::new();
        for key in 0..keys {
            let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            table.insert_absent(SharedEntry::new(key, hash, key, &mut arena));
        }
        table
    }

    #[test]
    fn probe_start_is_where_hashbrown_keeps_buckets() {
        // Large enough for a probe start, sparse enough to stay quick under Miri.
        let table = table_of(2_000, PREFETCH_MIN_BUCKETS / 2);
        assert!(table.num_buckets() >= PREFETCH_MIN_BUCKETS);
        let start = ProbeStart::of(&table).expect("a large table has a probe start");
        assert_eq!(start.mask, table.num_buckets() - 1);
        let address = |index| {
            table
                .get_bucket(index)
                .map(|bucket| ptr::from_ref(bucket) as usize)
        };
        let (mut checked, mut at_home) = (0, 0);
        for index in 0..table.num_buckets() {
            let Some(found) = address(index) else {
                continue;
            };
            assert_eq!(
                found,
                start.lowest + (start.mask - index) * BUCKET_BYTES,
                "bucket {index}"
            );
            checked += 1;
            // The prefetched line is that of the bucket the probe of this entry's hash starts at.
            let hash = table.get_bucket(index).expect("occupied").hash;
            if let Some(home) = address(hash as usize & start.mask) {
                assert_eq!(start.first_bucket(hash), home, "hash {hash:#x}");
                at_home += 1;
            }
        }
        assert_eq!(checked, 2_000);
        assert!(
            at_home >= 1_000,
            "{at_home} entries' first buckets occupied"
        );
    }

    /// A large table's drop keeps a ring of shares between prefetching an entry and dropping
    /// it: a panicking key `Drop` in the middle leaves shares in the ring and in the drain,
    /// and each is dropped once (a sparse table, so that Miri runs it quickly).
    #[test]
    fn a_large_table_drops_every_entry_once_when_one_drop_panics() {
        use std::cell::Cell;
        use std::panic::{catch_unwind, AssertUnwindSafe};
        thread_local!(static DROPPED: Cell<usize> = const { Cell::new(0) });
        struct Key(u64);
        impl Drop for Key {
            fn drop(&mut self) {
                DROPPED.set(DROPPED.get() + 1);
                assert_ne!(self.0, 20, "the trapped key");
            }
        }
        let mut table = Table::with_capacity(PREFETCH_MIN_BUCKETS / 2);
        assert!(
            table.num_buckets() >= PREFETCH_MIN_BUCKETS,
            "takes the ring"
        );
        let mut arena = crate::entry::EntryArena::new();
        for key in 0..40u64 {
            let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            table.insert_absent(SharedEntry::new(Key(key), hash, key, &mut arena));
        }
        assert!(catch_unwind(AssertUnwindSafe(|| drop(table))).is_err());
        assert_eq!(DROPPED.get(), 40);
    }

    /// `take_out` removes the key's entry, leaves the others, and hands over the table's
    /// share: the entry lives on while the caller's share does, and is freed once that goes.
    /// An entry the read table lists too (by address, whatever the keys say) stays, and the
    /// caller gets a new share of it.
    #[test]
    fn take_out_hands_over_the_share_of_the_key_only_and_never_one_the_read_table_lists() {
        let mut arena = crate::entry::EntryArena::new();
        let mut dirty = Table::with_capacity(4);
        let hash = 7; // every key: the probe compares keys
        dirty.insert_absent(SharedEntry::new(1u64, hash, 10u64, &mut arena));
        dirty.insert_absent(SharedEntry::new(2u64, hash, 20u64, &mut arena));
        let in_both = SharedEntry::new(3u64, hash, 30u64, &mut arena);
        let mut read = Table::with_capacity(4);
        read.insert_absent(in_both.clone());
        dirty.insert_absent(in_both);
        // SAFETY: called with entries that a live table lists or a share holds, whose values
        // nothing displaces meanwhile.
        let value_of = |entry: &ListedEntry<u64, u64>| entry.load().map(|v| unsafe { *v.as_ref() });
        let Some(Ok(taken)) = dirty.take_out(hash, &1, &read) else {
            panic!("key 1 is only in the dirty table");
        };
        assert_eq!((taken.key, value_of(&taken)), (1, Some(10)));
        assert!(dirty.take_out(hash, &1, &read).is_none(), "taken out once");
        let Some(Err(shared)) = dirty.take_out(hash, &3, &read) else {
            panic!("key 3 is listed by the read table too");
        };
        assert_eq!(value_of(&shared), Some(30));
        assert_eq!(dirty.len(), 2, "keys 2 and 3 stay");
        let left = dirty.entry_of(hash, &2).expect("the other key stays");
        assert_eq!(value_of(left), Some(20));
        drop((dirty, read));
        assert_eq!(
            value_of(&taken),
            Some(10),
            "the caller's share keeps the entry"
        );
        assert_eq!(value_of(&shared), Some(30));
        drop((taken, shared));
        drop(arena);
    }

    #[test]
    fn small_or_empty_tables_have_no_probe_start() {
        assert!(ProbeStart::of(&table_of(1_000, 1_000)).is_none());
        let empty = Table::<u64, u64>::with_capacity(100_000);
        assert!(empty.num_buckets() >= PREFETCH_MIN_BUCKETS);
        assert!(ProbeStart::of(&empty).is_none());
    }
}
