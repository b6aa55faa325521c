//! The concurrent read/dirty map itself, on precomputed hashes. The public
//! [`DualMap`](crate::DualMap) only hashes keys and wraps results.
//!
//! Every operation first tries the published snapshot without locking; it takes the mutex only
//! for what Go's `sync.Map` locks for (a key the snapshot lacks while amended, a new key, an
//! expunged entry). Locked sections never run user code other than `Eq` on keys, and they
//! mutate only after the last such call, so a panic there leaves every invariant intact.

use crate::batches::Batches;
use crate::dirty::{Dirty, Garbage, Located};
use crate::entry::{present, Entry, EntryArena, ListedEntry, LoadedOrStored, SharedEntry, Updated};
use crate::filter::{MissFilter, MIN_KEYS};
use crate::live_keys::LiveKeys;
use crate::reclaim::{Epoch, Orphans, Retired, Retiring};
use crate::snapshot::{publish, Lookup, Publication, Snapshot};
use crate::sync::{arc_of, Arc, AtomicBool, Mutex, SnapshotCell, SnapshotGuard};
use crate::table::{ProbeCell, Table};
use crate::value_ref::Ref;
use crate::Stats;
use std::borrow::Borrow;
use std::convert::Infallible;
use std::ops::{ControlFlow, Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// One read/dirty pair. Laid out in two blocks of whole cache-line pairs (128 bytes: x86's
/// spatial prefetcher fetches lines in pairs), so that no line is shared between what
/// lock-free operations read (the snapshot cell, the batches' address, `emptied`, the dirty
/// map's probe start: written only by a clear, a rebuild or a growth) and what every locked
/// section writes (the mutex and the dirty map), nor with the next pair's, which sits right
/// after it in the map's slice of pairs. `repr(C)` keeps the first block's fields together;
/// dropping `dirty` last is fine, as `drop` empties the batches first.
#[repr(C, align(128))]
pub(crate) struct RawMap<K, V> {
    read: SnapshotCell<Snapshot<K, V>>,
    /// Displaced values not yet handed to an epoch; emptied into the last one by `drop`.
    batches: Batches<K, V>,
    /// True from a clear in place until the pair's next new key: the pair holds no key, so
    /// `clear` returns without locking, as it does for a pair that is not amended. Written
    /// only under the mutex (or with `&mut self`).
    emptied: AtomicBool,
    /// Where the dirty map's probes start, for an operation to prefetch by before it locks
    /// (`prefetch_dirty`).
    dirty_probe: ProbeCell,
    dirty: OwnLines<Mutex<Dirty<K, V>>>,
}

/// A value that starts a cache-line pair of its own (see [`RawMap`]).
#[repr(align(128))]
struct OwnLines<T>(T);

impl<T> Deref for OwnLines<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for OwnLines<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// What an operation holds while it works on an entry. It is dropped only once the
/// operation's result is a local (a value being returned is leaked, not dropped, when a later
/// `Drop` panics: rust-lang/rust#47949), and its fields are declared in the order they must be
/// dropped: each can run user `Drop`s.
struct Held<K, V> {
    /// The snapshot the entry was found in or under: keeps every value the entry can hold
    /// alive. Its drop may free values retired meanwhile.
    snapshot: SnapshotGuard<Snapshot<K, V>>,
    /// The entry, when it was found under the lock: no snapshot may reach it, and this may be
    /// the last reference to one that a concurrent `clear` dropped with the dirty map (its
    /// drop drops the key).
    entry: Option<SharedEntry<K, V>>,
    /// The caller's key, when the map already held an equal one.
    duplicate: Option<K>,
}

impl<K, V> Held<K, V> {
    /// Holds only a snapshot, for an entry of its table.
    fn pinned(snapshot: SnapshotGuard<Snapshot<K, V>>) -> Self {
        Self {
            snapshot,
            entry: None,
            duplicate: None,
        }
    }

    /// A `Ref` to `value`, a value of the held entry, pinned by the snapshot and the entry; the
    /// duplicate key is dropped once the `Ref` is a local.
    fn into_ref(self, value: NonNull<V>) -> Ref<K, V> {
        let Held {
            snapshot,
            entry,
            duplicate,
        } = self;
        let found = Ref {
            value,
            _entry: entry,
            _snapshot: snapshot,
        };
        drop(duplicate);
        found
    }
}

/// Where a store put its value: into an entry the map already held (the outcome of the
/// store's attempt on it), or into a new entry.
enum Landed<R, V> {
    Existing(R),
    New(NonNull<V>),
}

/// What an operation displaced, and the value its `Ref` shows (the displaced one, or the one
/// an update stored).
type Stored<K, V> = (Retiring<K, V>, NonNull<V>);

/// The present value and the offered one, when a load-or-store finds the key.
type Occupied<K, V> = (Ref<K, V>, V);

/// Which locked lookups count a miss toward promotion (spec: "Which operations lock").
#[derive(Clone, Copy, PartialEq)]
enum MissRule {
    /// Load, remove and compare-and-remove: every lookup that had to consult the dirty map.
    EveryDirtyLookup,
    /// Load-or-store and compare-and-swap: only when the key was found in the dirty map.
    FoundInDirty,
}

/// What a locked lookup does to a dirty-only key whose value the caller then deletes, after
/// unlocking (DESIGN.md, "Removed dirty-only keys").
#[derive(Clone, Copy, PartialEq)]
enum DirtyOnly {
    /// Nothing: the caller does not delete (a load, a compare-and-swap, an update).
    Keeps,
    /// Leaves the entry in the dirty map, counted in `Dirty::tombstones` (Go's
    /// `CompareAndDelete`, which deletes only if the value is the expected one).
    LeavesTombstone,
    /// Takes the entry out of the dirty map (Go's `LoadAndDelete`), unless the lookup's miss
    /// promotes it into the read table, or the read table lists it already (a key whose `Eq`
    /// or `Hash` misled the search of that table).
    TakesOut,
}

/// The most entries a pair's dirty map may have room for (its table's capacity, which bounds
/// its buckets too) for `clear` to empty it in place, under the lock: the walk of its buckets
/// stays bounded (spec item 4) however large the map, or the capacity it was made with.
const MAX_CLEARED_IN_PLACE: usize = 128;

impl<K, V> RawMap<K, V> {
    pub(crate) fn new(capacity: usize, min_promotion_misses: usize) -> Self {
        Self {
            read: SnapshotCell::new(Arc::new(Snapshot::initial(capacity))),
            batches: Batches::new(),
            emptied: AtomicBool::new(false),
            dirty_probe: ProbeCell::new(),
            dirty: OwnLines(Mutex::new(Dirty::new(min_promotion_misses))),
        }
    }

    /// Runs a locked section, then drops what it displaced after unlocking.
    fn locked<R>(&self, section: impl FnOnce(&mut Dirty<K, V>, &mut Garbage<K, V>) -> R) -> R {
        let mut garbage = Garbage::default();
        let result = section(&mut self.dirty.lock(), &mut garbage);
        garbage.drop_unlocked();
        result
    }

    /// The current snapshot, for a locked section, and whether it is `pinned`, the guard the
    /// operation loaded before locking: that one while it is still current, so that no second
    /// guard is loaded (and what the operation saw in its table still holds); else a fresh
    /// one, and `pinned` goes to `garbage` (it may hold the last reference to its snapshot,
    /// whose drop runs user `Drop`s). Publications happen only under the lock, so the answer
    /// holds until unlocking. Call it first in the section: the current snapshot is also held
    /// by the cell, so dropping its guard while unwinding from a panicking `Eq` frees nothing
    /// under the lock.
    #[inline(always)]
    fn current_locked(
        &self,
        pinned: SnapshotGuard<Snapshot<K, V>>,
        garbage: &mut Garbage<K, V>,
    ) -> (SnapshotGuard<Snapshot<K, V>>, bool) {
        if pinned.is_current() {
            (pinned, true)
        } else {
            garbage.superseded = Some(pinned);
            (self.read.load(), false)
        }
    }

    /// Promotes the dirty map to be the read table (Go: `missLocked` reaching its threshold,
    /// and `Range` on an amended map). The replaced read table owns nothing (the rebuild took its shares over); the entries
    /// the rebuild expunged, which it still lists, go to the current epoch.
    fn promote(&self, dirty: &mut Dirty<K, V>, garbage: &mut Garbage<K, V>) {
        let mut orphans = dirty.end_cycle();
        // Without a dirty map there is nothing to promote, and nothing was expunged.
        let Some(table) = orphans.dirty.take() else {
            return;
        };
        let live = self.read.load().live.clone();
        garbage.snapshot = Some(self.publish(Publication {
            table: Arc::new(table),
            filter: None,
            live,
            orphans,
        }));
        dirty.misses = 0;
        dirty.promotions += 1;
    }

    /// Counts a miss; promotes once misses reach the dirty map's size less its dirty-only
    /// tombstones, and the pair's floor (DESIGN.md, "Promotion timing").
    fn miss(&self, dirty: &mut Dirty<K, V>, garbage: &mut Garbage<K, V>) {
        dirty.misses += 1;
        if dirty.misses >= dirty.promotion_threshold(0) {
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
    fn rotate(&self, full: &Arc<Epoch<K, V>>) {
        self.locked(|dirty, garbage| {
            let current = self.read.load();
            if Arc::ptr_eq(&current.epoch, full) {
                self.rotate_locked(&current, dirty, garbage);
            }
        });
    }

    /// Publishes a fresh snapshot around the table of `current`, the current snapshot.
    fn rotate_locked(
        &self,
        current: &Snapshot<K, V>,
        dirty: &mut Dirty<K, V>,
        garbage: &mut Garbage<K, V>,
    ) {
        garbage.snapshot = Some(self.publish(Publication::same_as(current)));
        dirty.rotations += 1;
    }

    /// Retires a displaced value's record: puts it in this thread's batch and, if that filled
    /// the batch, hands the batch to the epoch of the current snapshot: `pinned` if it still
    /// is (no second guard), else one loaded now, which it returns for the caller to drop once
    /// its result is a local. The check comes *after* the push, so it is also after the
    /// displacement of every value in the batch, which other threads sharing the stripe may
    /// have pushed since this operation pinned (DESIGN.md, "Reclamation"). A batch that is not
    /// full needs no check, so the flag is read once a batch, out of line (`hand_over_full`):
    /// read on every retirement, inline, it cost an overwrite 20 instructions in the cost
    /// model (1k keys: 313.6 against 293.2, with `retire_and_show`'s case of no record apart).
    #[inline(always)]
    fn retire_to_current(
        &self,
        record: Retired<K, V>,
        pinned: &Snapshot<K, V>,
    ) -> Option<SnapshotGuard<Snapshot<K, V>>> {
        let full = self.batches.add(record)?;
        self.hand_over_full(full, pinned)
    }

    /// The part of `retire_to_current` that runs once a batch is full: one retirement in
    /// [`RETIRED_PER_BATCH`](crate::RETIRED_PER_BATCH), kept out of every write's code.
    #[cold]
    #[inline(never)]
    fn hand_over_full(
        &self,
        full: Vec<Retired<K, V>>,
        pinned: &Snapshot<K, V>,
    ) -> Option<SnapshotGuard<Snapshot<K, V>>> {
        let current = if pinned.is_current() {
            None
        } else {
            Some(self.read.load())
        };
        let epoch = match &current {
            Some(current) => &current.epoch,
            None => &pinned.epoch,
        };
        if epoch.receive(full) {
            self.rotate(epoch);
        }
        current
    }

    /// Hands every thread's batch to `epoch`, whose snapshot is the current one until after
    /// the batches are taken (the caller holds the mutex, or `&mut self`); true if that filled
    /// the epoch.
    fn hand_over_all(&self, epoch: &Epoch<K, V>) -> bool {
        self.batches
            .take_all()
            .fold(false, |filled, batch| epoch.receive(batch) | filled)
    }

    /// Publishes a new snapshot (only under the mutex), after handing every thread's batch to
    /// the current epoch, so that what was retired before a publication is freed once the
    /// snapshots before it are released, as if it had been handed over at once. Returns the
    /// replaced snapshot, to drop after unlocking.
    fn publish(&self, next: Publication<K, V>) -> Arc<Snapshot<K, V>> {
        self.hand_over_all(&self.read.load().epoch);
        publish(&self.read, next)
    }

    /// Retires what an operation displaced, on the guard it holds (see `retire_to_current`),
    /// and returns a `Ref` to `shown`, the displaced value or the one stored, pinning the
    /// snapshot the operation loaded before the displacement: whoever hands the value to an
    /// epoch does so after the displacement, to an epoch current then, so at or after that
    /// snapshot's, which the `Ref` keeps alive through the chain of successors (not a snapshot
    /// loaded after it: another thread may already have handed the value over, to an older
    /// epoch than that one). A first value retired without a record lives as long as its entry
    /// instead: the `Ref` keeps the entry if the operation found it under the lock (one that
    /// the snapshot's table lists lives as long as the snapshot). Drops the rest of what the
    /// operation held only once the `Ref` is a local: a value being returned is leaked, not
    /// dropped, when a later `Drop` in the same expression panics (rust-lang/rust#47949), and
    /// dropping a guard, an entry or a key can run user `Drop`s.
    #[inline(always)]
    fn retire_and_show(
        &self,
        displaced: Retiring<K, V>,
        shown: NonNull<V>,
        held: Held<K, V>,
    ) -> Ref<K, V> {
        let Held {
            snapshot,
            entry,
            duplicate,
        } = held;
        let Some(record) = displaced.record else {
            // Nothing to retire: the `Ref` keeps the entry, if the operation holds a share.
            // Apart from the other case, not one `Held` built for both from a `match` on the
            // record: that form cost an overwrite 298.2 and a remove 203.3 instructions in the
            // cost model (1k keys), against 293.2 and 175.3.
            let shown = Held {
                snapshot,
                entry,
                duplicate: None,
            }
            .into_ref(shown);
            drop(duplicate);
            return shown;
        };
        let current = self.retire_to_current(record, &snapshot);
        // Only when needed: a `Ref` holding the entry's share always cost a lock-free
        // overwrite 11 instructions (cost model, 1k keys: 325 against 314).
        let shown = Held {
            snapshot,
            entry: None,
            duplicate: None,
        }
        .into_ref(shown);
        // Only now: dropping a superseded snapshot may free values, which runs user `Drop`s.
        drop(current);
        drop(entry);
        drop(duplicate);
        shown
    }

    /// A `Ref` to the value an operation displaced, retired by `retire_and_show`; if it
    /// displaced nothing, drops what it held (once `outcome` is a local).
    #[inline(always)]
    fn retire_or_unpin<A>(
        &self,
        outcome: Result<Retiring<K, V>, A>,
        held: Held<K, V>,
    ) -> Result<Ref<K, V>, A> {
        match outcome {
            Ok(displaced) => {
                let value = displaced.value();
                Ok(self.retire_and_show(displaced, value, held))
            }
            Err(unchanged) => {
                drop(held);
                Err(unchanged)
            }
        }
    }

    /// Finds, under the lock, the entry of a key the table of the snapshot `pinned` lacks (the
    /// caller searched it); counts a miss by `rule`, and treats a dirty-only key as
    /// `dirty_only` says, whatever its slot holds now (the caller deletes after unlocking; see
    /// `Dirty::tombstones`). Holds the snapshot current under the lock, which the caller keeps
    /// while it works on the entry so that the values it reads stay alive.
    fn locate_locked<Q>(
        &self,
        pinned: SnapshotGuard<Snapshot<K, V>>,
        hash: u64,
        key: &Q,
        rule: MissRule,
        dirty_only: DirtyOnly,
    ) -> Held<K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.prefetch_dirty(hash, None);
        self.locked(|dirty, garbage| {
            let (snapshot, read_missed) = self.current_locked(pinned, garbage);
            // A remove takes a dirty-only key out in the lookup itself, unless the miss the
            // lookup then counts would promote: the key then goes into the new read table,
            // where its deletion leaves a tombstone that a later store refills without locking
            // (otherwise Go's `LoadAndDeleteCollision` loop would lock on every iteration). A
            // dirty-only key deleted in place counts as a tombstone before the miss, so that
            // the promotion threshold leaves it out, as it leaves out one taken out.
            let takes_out = dirty_only == DirtyOnly::TakesOut
                && dirty.misses + 1 < dirty.promotion_threshold(1);
            let located = dirty.locate(&snapshot, read_missed, hash, key, takes_out);
            let deleted_in_place = matches!(located, Located::Dirty(_))
                && dirty_only != DirtyOnly::Keeps
                && !takes_out;
            dirty.tombstones += usize::from(deleted_in_place);
            if Self::counts_miss(rule, &located, &snapshot) {
                self.miss(dirty, garbage);
            }
            let entry = match located {
                Located::Read(entry) | Located::Dirty(entry) => Some(entry),
                Located::Absent => None,
            };
            Held {
                snapshot,
                entry,
                duplicate: None,
            }
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
            Lookup::Present(node) => Some(Held::pinned(snapshot).into_ref(node)),
            Lookup::Absent => None,
            Lookup::AskDirty => {
                let mut found = None;
                self.get_locked(snapshot, hash, key, &mut found);
                found
            }
        }
    }

    /// Go's `Load` after the table of the snapshot `pinned` lacked the key: re-check and look
    /// in the dirty map under the lock, counting a miss; stores the result in `found`. Out of
    /// line and cold, so that the lock-free hit, inlined into callers, saves no registers for
    /// it. Into an
    /// out-parameter rather than returned: a returned four-word `Ref` comes back through a
    /// slot of the caller's frame, which the inlined hit then shared, so every hit stored its
    /// `Ref` there and copied it back out (9 instructions of a `get`'s 142 in a direct loop).
    #[cold]
    #[inline(never)]
    pub(crate) fn get_locked<Q>(
        &self,
        pinned: SnapshotGuard<Snapshot<K, V>>,
        hash: u64,
        key: &Q,
        found: &mut Option<Ref<K, V>>,
    ) where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let rule = MissRule::EveryDirtyLookup;
        let held = self.locate_locked(pinned, hash, key, rule, DirtyOnly::Keeps);
        *found = held
            .entry
            .as_ref()
            .and_then(|entry| entry.load())
            .map(|node| held.into_ref(node));
    }

    /// The locked part of a store, the path Go's `Swap` and `LoadOrStore` share once the
    /// snapshot could not take the value (the key is not in it, or its entry is expunged):
    /// the key is looked up again (in the dirty map only, if `lacks_key` says the caller found
    /// no entry in `pinned`'s table and `pinned` is still current: a table does not change
    /// once published), an expunged entry goes back into the dirty map before `attempt` runs
    /// on it, and a key neither map holds gets a new entry. `filled` says
    /// whether an outcome of `attempt` stored into a deleted slot, which makes the key live
    /// again. The lock-free attempts stay in `insert` and `get_or_insert`: one shared path
    /// returning this tuple cost 16 more instructions per overwrite in the cost model. The
    /// value is moved into a node only for an existing entry; a new entry holds it in place.
    /// `SHOWS_NEW`: the caller shows a new key's value (a `Ref`), so the returned `Held` keeps
    /// a share of its entry; `insert`, which returns nothing for a new key, takes none (a
    /// count up and down, two `lock`ed instructions, saved per new key).
    ///
    /// The section's garbage goes to `garbage`, the caller's, for it to drop last (not to
    /// `locked`, which drops it on unlocking): `insert`'s outcome is the displaced value as a
    /// bare pointer, and dropping the garbage can free values (the guard `pinned`, superseded
    /// meanwhile, may hold the last reference to its snapshot), so a panicking `Drop` there,
    /// before the value was retired, leaked it (found in review: the test
    /// `a_panicking_drop_freed_by_the_superseded_guard_of_a_locked_insert_leaks_nothing`). The
    /// section is a block here, not a closure given to `locked`: with that closure a new key
    /// cost 510 instructions in the cost model, as a block 439.
    #[inline(always)]
    fn store_locked<R, const SHOWS_NEW: bool>(
        &self,
        (pinned, lacks_key): (SnapshotGuard<Snapshot<K, V>>, bool),
        hash: u64,
        offered: (K, V),
        attempt: impl Fn(&Entry<K, V>, V) -> Result<R, V>,
        filled: impl Fn(&R) -> bool,
        garbage: &mut Garbage<K, V>,
    ) -> (Landed<R, V>, Held<K, V>)
    where
        K: Eq,
    {
        if lacks_key {
            self.prefetch_dirty(hash, pinned.filter.as_deref());
        }
        // Key and value stay out here until the locked lookup (`Eq`) is done, so that if it
        // panics they are dropped after the mutex is released (as is `garbage`, the caller's).
        let mut offered = Some(offered);
        let dirty: &mut Dirty<K, V> = &mut self.dirty.lock();
        let (snapshot, still_pinned) = self.current_locked(pinned, garbage);
        let read_missed = lacks_key && still_pinned;
        let key = &offered.as_ref().expect("once").0;
        // A key the read table lacks is in the dirty map only as a new key of this cycle,
        // which `record_new_key_locked` put in the current miss filter first: a key the
        // filter never saw, as every new key is, skips the dirty map's probe. Its bits are
        // set here, by the same atomic that tells whether they were (DESIGN.md, "The miss
        // filter"), so `set_bits` says the key needs no recording in the filter if it is new,
        // and whether it set any bit.
        let set_bits = match &snapshot.filter {
            Some(filter) if read_missed => Some(!filter.insert(hash)),
            _ => None,
        };
        let located = match set_bits {
            Some(true) => Located::Absent,
            // No filter: the snapshot is not amended, so the dirty map holds no key it lacks.
            None if read_missed => Located::Absent,
            _ => dirty.locate(&snapshot, read_missed, hash, key, false),
        };
        let (key, value) = offered.take().expect("once");
        // A store into a dirty-only key counts a miss, for `Swap` as well as Go's
        // `LoadOrStore`: otherwise a key that is only ever overwritten stays behind the
        // mutex for good (Go's W6).
        let missed = Self::counts_miss(MissRule::FoundInDirty, &located, &snapshot);
        let dirty_only = matches!(located, Located::Dirty(_));
        let entry = match located {
            Located::Read(entry) => {
                if entry.unexpunge_locked() {
                    self.put_locked(dirty, entry.clone());
                }
                entry
            }
            Located::Dirty(entry) => entry,
            Located::Absent => {
                self.record_new_key_locked(dirty, garbage, &snapshot, hash, set_bits);
                let entry = SharedEntry::new(key, hash, value, &mut dirty.arena);
                let node = entry.load().expect("a new entry holds its value");
                let shown = SHOWS_NEW.then(|| entry.clone());
                self.put_locked(dirty, entry);
                snapshot.live.added();
                let held = Held {
                    snapshot,
                    entry: shown,
                    duplicate: None,
                };
                return (Landed::New(node), held);
            }
        };
        // Only the lock holder expunges, and this entry is in the dirty map now.
        let Ok(outcome) = attempt(&entry, value) else {
            unreachable!("an entry of the dirty map is never expunged")
        };
        if filled(&outcome) {
            snapshot.live.added();
            if dirty_only {
                dirty.tombstones = dirty.tombstones.saturating_sub(1);
            }
        }
        // The entry is shared by both maps, so a promotion this miss triggers publishes
        // the value just stored.
        if missed {
            self.miss(dirty, garbage);
        }
        let held = Held {
            snapshot,
            entry: Some(entry),
            duplicate: Some(key),
        };
        (Landed::Existing(outcome), held)
    }

    /// Go's `Swap`: stores the value and returns the previous one.
    pub(crate) fn insert(&self, key: K, hash: u64, value: V) -> Option<Ref<K, V>>
    where
        K: Eq,
    {
        // Retired before the snapshot guard and the duplicate key are dropped (either can run
        // user `Drop`s, see `retire_or_unpin`), so that a panic there leaks nothing.
        let snapshot = self.read.load();
        let (value, lacks_key) = match snapshot.find(hash, &key) {
            Some(entry) => match entry.try_swap(value) {
                Ok(previous) => {
                    if previous.is_none() {
                        snapshot.live.added();
                    }
                    let previous = previous.map(|previous| Retiring::new(previous, entry));
                    let held = Held {
                        snapshot,
                        entry: None,
                        duplicate: Some(key),
                    };
                    return self.retire_or_unpin(previous.ok_or(()), held).ok();
                }
                Err(expunged) => (expunged, false),
            },
            None => (value, true),
        };
        let mut garbage = Garbage::default();
        let (landed, held) = self.store_locked::<_, false>(
            (snapshot, lacks_key),
            hash,
            (key, value),
            Entry::try_swap,
            Option::is_none,
            &mut garbage,
        );
        let previous = match (landed, &held.entry) {
            (Landed::Existing(Some(previous)), Some(entry)) => Ok(Retiring::new(previous, entry)),
            _ => Err(()),
        };
        let previous = self.retire_or_unpin(previous, held).ok();
        garbage.drop_unlocked();
        previous
    }

    /// Asks, before the caller locks, for the lines its locked section reads first when the
    /// read table lacks `hash`'s key: the dirty map's control group and bucket where the
    /// probe starts, and `filter`'s word, which a new key sets. Their misses then overlap
    /// with each other and with taking the lock, where under the lock they followed one
    /// another. Only for a large dirty map: a small one, and its filter, stay cached.
    #[inline(always)]
    fn prefetch_dirty(&self, hash: u64, filter: Option<&MissFilter>) {
        if let Some(start) = self.dirty_probe.get() {
            start.prefetch_probe(hash);
            if let Some(filter) = filter {
                filter.prefetch(hash);
            }
        }
    }

    /// Adds an entry to the dirty map (see `Dirty::put`), ending an empty spell begun by a
    /// clear in place before the key can be found. The flag is read `Relaxed`, since only
    /// lock holders write it, and written only when set, so a new key pays a plain load.
    fn put_locked(&self, dirty: &mut Dirty<K, V>, entry: SharedEntry<K, V>) {
        if self.emptied.load(Relaxed) {
            self.emptied.store(false, SeqCst);
        }
        if let Some(grown) = dirty.put(entry) {
            self.dirty_probe.set(grown);
        }
    }

    /// Records a key about to enter the dirty map in the miss filter. At the first new key
    /// since a promotion or clear, this rebuilds the dirty map and publishes the snapshot as
    /// amended with a fresh filter. When the filter holds as many keys as it was sized for, it
    /// publishes one four times larger, filled from the hashes of the keys added since the
    /// filter's cycle began (`Dirty::new_key_hashes`): O(new keys), where walking the dirty map
    /// for its dirty-only keys was O(map). `set_bits`: the caller set the key's bits in the
    /// current filter already (`store_locked`), and whether any was clear before.
    ///
    /// A key counts toward the filter's fill only if it set a bit: a key whose bits were all
    /// set (a key removed and inserted again in the same cycle, or one that collides) adds no
    /// false positives. Its hash is listed all the same (a colliding key must be in the next
    /// filter too), so the list may hold a hash more than once, within the bound
    /// `NewKeyHashes` states; a regrowth sizes the new filter for the keys that set bits.
    fn record_new_key_locked(
        &self,
        dirty: &mut Dirty<K, V>,
        garbage: &mut Garbage<K, V>,
        snapshot: &Snapshot<K, V>,
        hash: u64,
        set_bits: Option<bool>,
    ) {
        let filter = match &snapshot.filter {
            None => {
                debug_assert!(
                    dirty.new_key_hashes.is_empty(),
                    "freed when the cycle ended"
                );
                let rebuilt = dirty.rebuild_from(&snapshot.table, snapshot.live.get());
                self.dirty_probe.set(rebuilt);
                MissFilter::with_capacity(MIN_KEYS)
            }
            Some(filter) if dirty.filtered < filter.capacity() => {
                let set_bits = set_bits.unwrap_or_else(|| !filter.insert(hash));
                dirty.new_key_hashes.push(hash, set_bits);
                dirty.filtered += usize::from(set_bits);
                return;
            }
            Some(_) => {
                // Four times the keys it must hold: the full filter's capacity, unless a clear
                // in place left fewer (then as small as they allow, not ever larger).
                let bigger = MissFilter::with_capacity(dirty.new_key_hashes.distinct() * 4);
                dirty.new_key_hashes.iter().for_each(|earlier| {
                    bigger.insert(earlier);
                });
                bigger
            }
        };
        filter.insert(hash);
        dirty.new_key_hashes.push(hash, true);
        dirty.filtered = dirty.new_key_hashes.distinct();
        debug_assert!(
            garbage.snapshot.is_none(),
            "one publication per locked section"
        );
        garbage.snapshot = Some(self.publish(Publication {
            table: snapshot.table.clone(),
            filter: Some(Arc::new(filter)),
            live: snapshot.live.clone(),
            orphans: Orphans::default(),
        }));
    }

    /// Go's `LoadOrStore`: `Ok` with the stored value, or `Err` with the present value and the
    /// offered one.
    pub(crate) fn get_or_insert(
        &self,
        key: K,
        hash: u64,
        value: V,
    ) -> Result<Ref<K, V>, Occupied<K, V>>
    where
        K: Eq,
    {
        let snapshot = self.read.load();
        let (value, lacks_key) = match snapshot.find(hash, &key) {
            Some(entry) => match entry.try_load_or_store(value) {
                Ok(outcome) => {
                    if let LoadedOrStored::Stored(_) = outcome {
                        snapshot.live.added();
                    }
                    let held = Held {
                        snapshot,
                        entry: None,
                        duplicate: Some(key),
                    };
                    return Self::loaded_or_stored(Landed::Existing(outcome), held);
                }
                Err(expunged) => (expunged, false),
            },
            None => (value, true),
        };
        let stored = |outcome: &LoadedOrStored<V>| matches!(outcome, LoadedOrStored::Stored(_));
        let mut garbage = Garbage::default();
        let (landed, held) = self.store_locked::<_, true>(
            (snapshot, lacks_key),
            hash,
            (key, value),
            Entry::try_load_or_store,
            stored,
            &mut garbage,
        );
        let result = Self::loaded_or_stored(landed, held);
        garbage.drop_unlocked();
        result
    }

    /// `get_or_insert`'s result from where its store landed.
    fn loaded_or_stored(
        landed: Landed<LoadedOrStored<V>, V>,
        held: Held<K, V>,
    ) -> Result<Ref<K, V>, Occupied<K, V>> {
        match landed {
            Landed::Existing(LoadedOrStored::Loaded(node, offered)) => {
                Err((held.into_ref(node), offered))
            }
            Landed::Existing(LoadedOrStored::Stored(node)) | Landed::New(node) => {
                Ok(held.into_ref(node))
            }
        }
    }

    /// Finds the key's entry and runs `act` on it: the path Go's `LoadAndDelete`,
    /// `CompareAndDelete` and `CompareAndSwap` share, with `update`. Lock-free when the snapshot
    /// holds the key; under the lock when only the dirty map may (counting a miss by `rule`,
    /// and treating a dirty-only key as `dirty_only` says), with `act` run
    /// after unlocking. `act` hands `arg` back when it changes nothing, and so does a missing
    /// key. Returns the outcome with what the operation holds, for the caller to retire what
    /// `act` displaced before dropping it (see `retire_or_unpin`). One caller per operation,
    /// so that the retirement is inlined once (passed in as a function, it was not: 20 more
    /// instructions per remove).
    #[inline(always)]
    fn find_and_act<Q, A, R>(
        &self,
        hash: u64,
        key: &Q,
        rule: MissRule,
        dirty_only: DirtyOnly,
        arg: A,
        act: impl FnOnce(&ListedEntry<K, V>, &Snapshot<K, V>, A) -> Result<R, A>,
    ) -> (Result<R, A>, Held<K, V>)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let snapshot = self.read.load();
        match snapshot.find(hash, key) {
            Some(entry) => {
                let outcome = act(entry, &snapshot, arg);
                return (outcome, Held::pinned(snapshot));
            }
            None if !snapshot.may_be_dirty(hash) => return (Err(arg), Held::pinned(snapshot)),
            None => {}
        }
        let held = self.locate_locked(snapshot, hash, key, rule, dirty_only);
        let outcome = match &held.entry {
            Some(entry) => act(entry, &held.snapshot, arg),
            None => Err(arg),
        };
        (outcome, held)
    }

    /// Deletes the entry's value if `reject` says so for it, and counts the key out of the
    /// snapshot's generation; hands `reject` back otherwise.
    #[inline(always)]
    fn delete_if<F: FnMut(&V) -> bool>(
        entry: &ListedEntry<K, V>,
        snapshot: &Snapshot<K, V>,
        mut reject: F,
    ) -> Result<Retiring<K, V>, F> {
        match entry.delete_if(&mut reject) {
            Some(removed) => {
                snapshot.live.removed();
                Ok(Retiring::new(removed, entry))
            }
            None => Err(reject),
        }
    }

    /// Go's `LoadAndDelete`: a dirty-only key leaves the dirty map, unless the miss its lookup
    /// counts promotes it (DESIGN.md, "Removed dirty-only keys").
    pub(crate) fn remove<Q>(&self, hash: u64, key: &Q) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let rule = MissRule::EveryDirtyLookup;
        let always = |_: &V| true;
        let dirty_only = DirtyOnly::TakesOut;
        let (removed, held) =
            self.find_and_act(hash, key, rule, dirty_only, always, Self::delete_if);
        self.retire_or_unpin(removed, held).ok()
    }

    /// Go's `CompareAndDelete`: a dirty-only key stays in the dirty map as a tombstone.
    pub(crate) fn compare_and_remove<Q>(&self, hash: u64, key: &Q, expected: &V) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: PartialEq,
    {
        let rule = MissRule::EveryDirtyLookup;
        let equal = |current: &V| current == expected;
        let dirty_only = DirtyOnly::LeavesTombstone;
        let (removed, held) =
            self.find_and_act(hash, key, rule, dirty_only, equal, Self::delete_if);
        self.retire_or_unpin(removed, held).is_ok()
    }

    /// Go's `CompareAndSwap`: never inserts.
    pub(crate) fn compare_and_swap<Q>(
        &self,
        hash: u64,
        key: &Q,
        expected: &V,
        new: V,
    ) -> Result<(), V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: PartialEq,
    {
        let swap = |entry: &ListedEntry<K, V>, _: &Snapshot<K, V>, new| {
            let swapped = entry.compare_and_swap(expected, new);
            swapped.map(|displaced| Retiring::new(displaced, entry))
        };
        let rule = MissRule::FoundInDirty;
        let (swapped, held) = self.find_and_act(hash, key, rule, DirtyOnly::Keeps, new, swap);
        self.retire_or_unpin(swapped, held).map(drop)
    }

    /// Replaces the key's value with `update(current)` unless the key is absent, which it never
    /// inserts (like Go's `CompareAndSwap`, whose miss rule it follows). `update` runs with no
    /// lock held, again each time another write changed the value first.
    pub(crate) fn update<Q>(
        &self,
        hash: u64,
        key: &Q,
        update: &mut impl FnMut(&V) -> V,
    ) -> Option<Ref<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let rule = MissRule::FoundInDirty;
        let (updated, held) = self.find_and_act(
            hash,
            key,
            rule,
            DirtyOnly::Keeps,
            update,
            Self::update_entry,
        );
        match updated {
            Ok((displaced, stored)) => Some(self.retire_and_show(displaced, stored, held)),
            Err(_) => {
                drop(held);
                None
            }
        }
    }

    /// `update`'s act on an entry: `Err` hands the closure back if the key is deleted.
    fn update_entry<'u, F: FnMut(&V) -> V>(
        entry: &ListedEntry<K, V>,
        _: &Snapshot<K, V>,
        update: &'u mut F,
    ) -> Result<Stored<K, V>, &'u mut F> {
        match entry.update(update) {
            Updated::Stored(displaced, stored) => Ok((Retiring::new(displaced, entry), stored)),
            Updated::Absent => Err(update),
        }
    }

    /// Replaces the key's value with `update(current)`, or inserts `make()` if the key is
    /// absent: `update`, and if that finds no value, a load-or-store of `make()`'s value (Go's
    /// `LoadOrStore`), repeated if another thread stored a value first. `make` runs at most
    /// once, with no lock held, only after the key was seen absent; its value is kept in
    /// `spare` across attempts, and left there if unused.
    pub(crate) fn update_or_insert_with(
        &self,
        mut key: K,
        hash: u64,
        update: &mut impl FnMut(&V) -> V,
        make: &mut Option<impl FnOnce() -> V>,
        spare: &mut Option<V>,
    ) -> Ref<K, V>
    where
        K: Eq,
    {
        loop {
            if let Some(updated) = self.update(hash, &key, update) {
                // Only once the result is a local (see `retire_or_unpin`).
                drop(key);
                return updated;
            }
            let value = match spare.take() {
                Some(value) => value,
                None => make.take().expect("`make` runs at most once")(),
            };
            let stored = |outcome: &LoadedOrStored<V>| matches!(outcome, LoadedOrStored::Stored(_));
            let mut garbage = Garbage::default();
            let (landed, mut held) = self.store_locked::<_, true>(
                (self.pin(), false),
                hash,
                (key, value),
                Entry::try_load_or_store,
                stored,
                &mut garbage,
            );
            match landed {
                Landed::Existing(LoadedOrStored::Stored(node)) | Landed::New(node) => {
                    let stored = held.into_ref(node);
                    garbage.drop_unlocked();
                    return stored;
                }
                Landed::Existing(LoadedOrStored::Loaded(_, offered)) => {
                    *spare = Some(offered);
                    key = held.duplicate.take().expect("the offered key");
                    drop(held);
                    garbage.drop_unlocked();
                }
            }
        }
    }

    /// The snapshot to iterate: promotes an amended map first (Go's `Range`), so that the
    /// table holds every key present now. No lock is held afterwards.
    pub(crate) fn pin_for_iteration(&self) -> Arc<Snapshot<K, V>> {
        arc_of(self.guard_for_iteration())
    }

    /// The snapshot to iterate (see `pin_for_iteration`) under a guard, for a walk within one
    /// call: unlike an `Arc`, a guard writes no reference count that other threads' walks
    /// write too (Go's `Range` on two threads: 1,266-1,294 -> 642-658 ns a walk of 1,024 keys,
    /// where both threads counted the same snapshots up and down).
    fn guard_for_iteration(&self) -> SnapshotGuard<Snapshot<K, V>> {
        let snapshot = self.read.load();
        if !self.holds_dirty_only_keys(&snapshot) {
            return snapshot;
        }
        drop(snapshot);
        self.promote_amended();
        self.read.load()
    }

    /// Promotes the dirty map if the snapshot is amended (one lock, no copy).
    pub(crate) fn promote_if_amended(&self) {
        if self.holds_dirty_only_keys(&self.read.load()) {
            self.promote_amended();
        }
    }

    /// Whether iteration must promote to see every key: `snapshot` is amended, unless its
    /// table is empty and the pair was emptied in place with no new key since (then it holds
    /// no key, and the empty table is its whole content; promoting would publish a snapshot
    /// for nothing, and an iteration of an empty map would allocate: golang/go#62404).
    fn holds_dirty_only_keys(&self, snapshot: &Snapshot<K, V>) -> bool {
        snapshot.amended() && !(snapshot.table.is_empty() && self.emptied.load(SeqCst))
    }

    /// Promotes the dirty map of a snapshot seen amended, unless another thread did since.
    fn promote_amended(&self) {
        self.locked(|dirty, garbage| {
            if self.read.load().amended() {
                self.promote(dirty, garbage);
            }
        });
    }

    /// Visits every entry of the snapshot to iterate (see `pin_for_iteration`), guarded for
    /// the walk, until `visit` breaks: the walk `retain` and `try_for_each` share.
    #[inline(always)]
    fn walk<B>(
        &self,
        mut visit: impl FnMut(&Snapshot<K, V>, &ListedEntry<K, V>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let snapshot = self.guard_for_iteration();
        snapshot
            .table
            .iter()
            .try_for_each(|entry| visit(&snapshot, entry))
    }

    /// Calls `f` on each present key and its value until it breaks (Go's `Range`).
    pub(crate) fn try_for_each<B>(
        &self,
        f: &mut impl FnMut(&K, &V) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        self.walk(|_, entry| {
            // SAFETY: `walk` pins the entry's snapshot until it returns, and `f`, generic over
            // the references' lifetime, cannot keep them past its call.
            match unsafe { present(entry) } {
                Some((key, value)) => f(key, value),
                None => ControlFlow::Continue(()),
            }
        })
    }

    /// Removes every entry of the pinned snapshot for which `keep` is false; entries whose
    /// value changes meanwhile are judged again on their new value.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let _ = self.walk(|snapshot, entry| {
            if let Ok(removed) = Self::delete_if(entry, snapshot, |value| !keep(&entry.key, value))
            {
                // On the walk's guard, loaded before the removal (see `retire_and_show`); no `Ref`.
                if let Some(record) = removed.record {
                    drop(self.retire_to_current(record, snapshot));
                }
            }
            ControlFlow::<Infallible>::Continue(())
        });
    }

    /// Go's `Clear`. A pair whose keys are all dirty-only (its read table is empty, as it is
    /// after a clear) and whose dirty map has room for at most [`MAX_CLEARED_IN_PLACE`]
    /// entries is cleared in place; otherwise the old entries are orphaned, not changed,
    /// behind an empty published table.
    ///
    /// Without locking, it returns at once on a pair that holds no key for certain: one whose
    /// snapshot has an empty table and is not amended, or one cleared in place with no new
    /// key since (`emptied`, reset under the lock before any new key is put in the dirty map,
    /// so a clear that reads it set comes before every such key: DESIGN.md, "Clear in
    /// place").
    pub(crate) fn clear(&self) {
        let Some(snapshot) = self.pin_unless_vacant() else {
            return;
        };
        self.locked(|dirty, garbage| {
            let (current, _) = self.current_locked(snapshot, garbage);
            if current.table.is_empty() && dirty.capacity() <= MAX_CLEARED_IN_PLACE {
                self.clear_in_place(&current, dirty, garbage);
            } else {
                current.live.clear();
                // Older snapshots still read the replaced tables' entries: the read table,
                // which may own them, and the dirty map, which owns the shares of the read
                // table it was rebuilt from, go to the current epoch (DESIGN.md,
                // "Reclamation").
                garbage.snapshot = Some(self.publish(Publication {
                    table: Arc::new(Table::with_capacity(0)),
                    filter: None,
                    live: Arc::new(LiveKeys::default()),
                    orphans: Orphans {
                        read: Some(current.table.clone()),
                        ..dirty.end_cycle()
                    },
                }));
            }
            dirty.misses = 0;
        });
    }

    /// Clears a pair whose read table is empty without a publication: only the lock reaches
    /// a dirty-only entry, so expunging each one under it (its value deleted, counted off the
    /// generation and retired to the current epoch) removes every key at this instant. An
    /// operation that located an entry before and acts on it after unlocking finds it
    /// expunged, that is absent, which is right after the clear. The snapshot stays amended
    /// and its filter keeps the cleared keys' bits (false positives until the next
    /// promotion). Go's `Clear` then stores a new key: published, the clear and the next
    /// amendment cost two snapshots, two epochs, a filter and a dirty table each time.
    fn clear_in_place(
        &self,
        current: &Snapshot<K, V>,
        dirty: &mut Dirty<K, V>,
        garbage: &mut Garbage<K, V>,
    ) {
        let mut filled = false;
        garbage.table = dirty.empty_in_place(|entry| {
            if let Some(value) = entry.expunge_locked() {
                current.live.removed();
                let record = Retiring::new(value, entry).record;
                if let Some(full) = record.and_then(|record| self.batches.add(record)) {
                    filled |= current.epoch.receive(full);
                }
            }
        });
        if filled {
            self.rotate_locked(current, dirty, garbage);
        }
        self.emptied.store(true, SeqCst);
    }

    /// Whether operations prefetch the dirty map by its table's own probe start (none for a
    /// small table); `None` when there is no dirty map (the cell then keeps a stale one).
    #[cfg(test)]
    pub(crate) fn prefetches_the_dirty_table(&self) -> Option<bool> {
        let dirty = self.dirty.lock();
        let table = dirty.table.as_ref()?;
        Some(self.dirty_probe.get() == crate::table::ProbeStart::of(table))
    }

    /// Makes the current miss filter claim `hash`, as a false positive would: lets tests
    /// drive a lookup of an absent key through the locked path deterministically.
    #[cfg(test)]
    pub(crate) fn record_in_miss_filter(&self, hash: u64) {
        if let Some(filter) = &self.read.load().filter {
            filter.insert(hash);
        }
    }

    /// The capacity of the current miss filter, in keys (0 if not amended).
    #[cfg(test)]
    pub(crate) fn filter_capacity(&self) -> usize {
        self.read
            .load()
            .filter
            .as_ref()
            .map_or(0, |filter| filter.capacity())
    }

    /// True if the map holds no entry at all (not even a deleted key) and no dirty map, or
    /// only the empty one a clear in place left: a bulk load may then replace the whole read
    /// table.
    pub(crate) fn is_vacant(&self) -> bool {
        self.pin_unless_vacant().is_none()
    }

    /// A guard of the published snapshot, or `None` if the pair is vacant (see `is_vacant`),
    /// which an emptied pair is known to be without loading one.
    fn pin_unless_vacant(&self) -> Option<SnapshotGuard<Snapshot<K, V>>> {
        if self.emptied.load(SeqCst) {
            return None;
        }
        let snapshot = self.read.load();
        (!snapshot.table.is_empty() || snapshot.amended()).then_some(snapshot)
    }

    /// The pair's entry memory, for a bulk load through `&mut self`.
    pub(crate) fn arena(&mut self) -> &mut EntryArena<K, V> {
        &mut self.dirty.get_mut().arena
    }

    /// Publishes `table` as the whole read table of a vacant map, not amended: every key is
    /// read lock-free from now on. `&mut self` stands in for the mutex: no other thread can
    /// add a key between the caller's `is_vacant` and this publication.
    pub(crate) fn publish_bulk(&mut self, table: Table<K, V>) {
        debug_assert!(self.is_vacant());
        self.emptied.store(false, SeqCst);
        // The empty dirty map of a clear in place, if any: the published snapshot is not
        // amended, and no entry is dropped.
        let dirty = self.dirty.get_mut();
        let orphans = dirty.end_cycle();
        debug_assert!(orphans.dirty.as_ref().is_none_or(|table| table.is_empty()));
        dirty.misses = 0;
        let current = self.read.load();
        current.live.add(table.len());
        let replaced = self.publish(Publication {
            table: Arc::new(table),
            filter: None,
            live: current.live.clone(),
            orphans,
        });
        drop(current);
        drop(replaced);
    }

    /// A guard of the published snapshot, for a locked lookup that did not load one.
    pub(crate) fn pin(&self) -> SnapshotGuard<Snapshot<K, V>> {
        self.read.load()
    }

    /// The published snapshot, for a `Reader` to keep.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot<K, V>> {
        self.read.load_full()
    }

    pub(crate) fn len(&self) -> usize {
        self.read.load().live.get()
    }

    /// The pair's statistics, after handing every thread's batch to the current epoch (and
    /// rotating if that filled it, in a locked section of its own, so that what the rotation
    /// frees is freed before the count is read).
    pub(crate) fn stats(&self) -> Stats {
        self.locked(|dirty, garbage| {
            let current = self.read.load();
            if self.hand_over_all(&current.epoch) {
                self.rotate_locked(&current, dirty, garbage);
            }
        });
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
                pairs: 1,
            }
        })
    }
}

impl<K, V> Drop for RawMap<K, V> {
    /// Hands every batch to the last epoch, which lives on while a `Ref` or an iterator pins
    /// an epoch before it and is freed with the snapshot otherwise; so do the read table and
    /// the dirty map, which an older snapshot's table may rely on for its entries.
    fn drop(&mut self) {
        let current = self.read.load();
        self.hand_over_all(&current.epoch);
        current.epoch.adopt(Orphans {
            read: Some(current.table.clone()),
            ..self.dirty.get_mut().end_cycle()
        });
    }
}

#[cfg(test)]
mod tests;
