//! The read snapshot `{table, amended}` and its publication.
//! "Amended" is not stored apart: a snapshot is amended exactly when it carries a miss filter
//! of the keys only the dirty map holds.
//!
//! A snapshot is immutable once published, but for its `superseded` flag (set, under the map
//! mutex, just before a newer one replaces it); only the mutex holder publishes a new one.
//! Each snapshot also carries its reclamation epoch and the live-key counter of its
//! generation (a generation lasts from one publishing `clear` to the next).

use crate::entry::ListedEntry;
use crate::filter::MissFilter;
use crate::live_keys::LiveKeys;
use crate::reclaim::{Epoch, Orphans};
use crate::sync::{Arc, AtomicUsize, SeqCstFlags, SnapshotCell};
use crate::table::{ProbeStart, Table};
use std::borrow::Borrow;
use std::ptr::NonNull;

/// An immutable read view of the map.
pub(crate) struct Snapshot<K, V> {
    pub(crate) table: Arc<Table<K, V>>,
    /// Present once the dirty map holds a key that `table` lacks (Go's `amended`): the
    /// filter of those keys.
    pub(crate) filter: Option<Arc<MissFilter>>,
    pub(crate) epoch: Arc<Epoch<K, V>>,
    pub(crate) live: Arc<LiveKeys>,
    /// [`SUPERSEDED`] and [`PREFETCHES`], in one byte so that a [`Reader`](crate::Reader)'s hit
    /// on a small table tests both with one load and one branch (cost model, 1k keys:
    /// `Reader::get` 69 -> 68).
    flags: SeqCstFlags,
    /// Where a lookup's probe starts, when [`PREFETCHES`] is set; meaningless otherwise.
    probe_start: ProbeStart,
}

/// Set just before a newer snapshot is published: lets a [`Reader`](crate::Reader) that keeps
/// this snapshot check that it is still current with one load of memory it already holds,
/// without touching the snapshot cell.
const SUPERSEDED: u8 = 1;
/// Set at creation when the table is large enough for a lookup to fetch its bucket's line
/// early (`ProbeStart`); never changes.
const PREFETCHES: u8 = 2;
/// Set, with [`SUPERSEDED`], on the one [`Snapshot::placeholder`] of a map, which a
/// [`Reader`](crate::Reader) keeps for a pair until it first reads a key of that pair.
const PLACEHOLDER: u8 = 4;

/// One load of a snapshot's flags.
#[derive(Clone, Copy)]
pub(crate) struct Flags(u8);

impl Flags {
    /// The snapshot is current and its lookups prefetch nothing: a hit needs nothing more.
    #[inline(always)]
    pub(crate) fn is_plain(self) -> bool {
        self.0 == 0
    }

    /// True means the snapshot was the published one when the flags were loaded: the
    /// flag is set *before* the replacement is swapped in (SeqCst), so an operation that
    /// starts after another one saw the newer snapshot sees the flag.
    #[inline(always)]
    pub(crate) fn is_current(self) -> bool {
        self.0 & SUPERSEDED == 0
    }

    /// Lookups in the snapshot prefetch their probe's first bucket ([`PREFETCHES`]).
    #[inline(always)]
    fn prefetches(self) -> bool {
        self.0 & PREFETCHES != 0
    }

    /// The snapshot is a map's [`placeholder`](Snapshot::placeholder), never published.
    #[inline]
    pub(crate) fn is_placeholder(self) -> bool {
        self.0 & PLACEHOLDER != 0
    }
}

impl<K, V> Snapshot<K, V> {
    /// The first snapshot of a map.
    pub(crate) fn initial(capacity: usize) -> Self {
        Self {
            table: Arc::new(Table::with_capacity(capacity)),
            filter: None,
            epoch: Arc::new(Epoch::new(Arc::new(AtomicUsize::new(0)))),
            live: Arc::new(LiveKeys::default()),
            flags: SeqCstFlags::new(0),
            probe_start: ProbeStart::NONE,
        }
    }

    /// What a [`Reader`](crate::Reader) keeps for a pair it has not read yet, so that
    /// creating one loads no snapshot and pins nothing: an empty snapshot that is superseded
    /// from the start (a lookup through it takes the pair's current snapshot first, on the
    /// path of any superseded one) and marked [`PLACEHOLDER`] (a `Reader` owns no count of
    /// it). One per map, never published, so no operation retires anything to its epoch.
    pub(crate) fn placeholder() -> Self {
        Self {
            flags: SeqCstFlags::new(SUPERSEDED | PLACEHOLDER),
            ..Self::initial(0)
        }
    }

    /// The flags, loaded once.
    #[inline(always)]
    pub(crate) fn flags(&self) -> Flags {
        Flags(self.flags.load())
    }

    /// False once a newer snapshot is being published (see [`Flags::is_current`]).
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        self.flags().is_current()
    }

    /// Asks for the line of the bucket where the probe of `hash` starts, if the table is large.
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash: u64) {
        if self.flags().prefetches() {
            self.probe_start.prefetch(hash);
        }
    }

    /// The probe start lookups use, if they prefetch.
    #[cfg(test)]
    pub(crate) fn probe_start(&self) -> Option<ProbeStart> {
        self.flags().prefetches().then_some(self.probe_start)
    }

    /// Looks `key` up in the snapshot's table.
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<&ListedEntry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.prefetch(hash);
        self.table.entry_of(hash, key)
    }

    /// Go's lock-free part of `Load`. The caller keeps this snapshot pinned for as long as it
    /// uses the value.
    pub(crate) fn lookup<Q>(&self, hash: u64, key: &Q) -> Lookup<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.prefetch(hash);
        self.lookup_prefetched(hash, key)
    }

    /// [`lookup`](Self::lookup) for a caller that has already called
    /// [`prefetch`](Self::prefetch), or knows from [`Flags::is_plain`] that there is nothing to
    /// prefetch.
    #[inline(always)]
    pub(crate) fn lookup_prefetched<Q>(&self, hash: u64, key: &Q) -> Lookup<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match self.table.entry_of(hash, key) {
            Some(entry) => entry.load().map_or(Lookup::Absent, Lookup::Present),
            None if self.may_be_dirty(hash) => Lookup::AskDirty,
            None => Lookup::Absent,
        }
    }

    /// True once the dirty map holds keys this snapshot lacks (Go's `amended`).
    pub(crate) fn amended(&self) -> bool {
        self.filter.is_some()
    }

    /// Whether a key this snapshot lacks may be in the dirty map: false when the map is not
    /// amended, or when the miss filter has never seen the key.
    pub(crate) fn may_be_dirty(&self, hash: u64) -> bool {
        self.filter
            .as_ref()
            .is_some_and(|filter| filter.may_contain(hash))
    }
}

/// What a snapshot alone can say about a key.
pub(crate) enum Lookup<V> {
    Present(NonNull<V>),
    /// Certainly absent: deleted in the snapshot, or missing while nothing was added since.
    Absent,
    /// Missing while the dirty map holds keys the snapshot lacks: only the dirty map knows.
    AskDirty,
}

/// What a new snapshot changes relative to the current one.
pub(crate) struct Publication<K, V> {
    pub(crate) table: Arc<Table<K, V>>,
    pub(crate) filter: Option<Arc<MissFilter>>,
    pub(crate) live: Arc<LiveKeys>,
    /// What the replaced snapshot's epoch adopts: entries leaving the read view.
    pub(crate) orphans: Orphans<K, V>,
}

impl<K, V> Publication<K, V> {
    /// The current snapshot's contents unchanged (used for rotation).
    pub(crate) fn same_as(current: &Snapshot<K, V>) -> Self {
        Self {
            table: current.table.clone(),
            filter: current.filter.clone(),
            live: current.live.clone(),
            orphans: Orphans::default(),
        }
    }
}

/// Publishes a new snapshot with a fresh epoch linked after the current one, after the current
/// epoch adopted the publication's orphans. Only under the map mutex. Returns the replaced snapshot, which the caller must drop after unlocking:
/// dropping it may drop keys and values, which runs user code.
pub(crate) fn publish<K, V>(
    cell: &SnapshotCell<Snapshot<K, V>>,
    next: Publication<K, V>,
) -> Arc<Snapshot<K, V>> {
    let current = cell.load();
    current.epoch.adopt(next.orphans);
    current.flags.set(SUPERSEDED);
    let epoch = current.epoch.begin_successor();
    // A rotation republishes the same table: its probe start is known.
    let (flags, probe_start) = if Arc::ptr_eq(&next.table, &current.table) {
        (current.flags.load() & PREFETCHES, current.probe_start)
    } else {
        ProbeStart::of(&next.table).map_or((0, ProbeStart::NONE), |start| (PREFETCHES, start))
    };
    drop(current);
    cell.swap(Arc::new(Snapshot {
        table: next.table,
        filter: next.filter,
        epoch,
        live: next.live,
        flags: SeqCstFlags::new(flags),
        probe_start,
    }))
}
