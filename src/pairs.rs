//! Independent read/dirty pairs: the map's keys split by hash bits over several [`RawMap`]s,
//! each a whole `sync.Map` (its own snapshot, mutex, dirty map, miss counter and epochs).
//!
//! New keys in different pairs take different mutexes, and a dirty rebuild copies one pair's
//! snapshot, not the map's. One pair is Go exactly. Operations on one key touch one pair, so
//! every per-key guarantee is Go's; what spans pairs (`len`, `clear`, iteration, `stats`) is
//! the composition of per-pair operations, done one pair after another (DESIGN.md, "Pairs").

use crate::bulk::BulkLoad;
use crate::raw::RawMap;
use crate::snapshot::Snapshot;
use crate::Stats;
use std::sync::OnceLock;

/// The largest number of pairs: the pair index takes at most 8 hash bits.
pub(crate) const MAX_PAIRS: usize = 256;

/// The hash bits that pick a pair start here. Bits 44..52 are used by nothing else: the hash
/// tables take low bits for the bucket and the top 7 for the tag, and the miss filter takes
/// bits 20 and up for the word (up to bit 42 for a filter of 16M keys) and 52..64 for the
/// bits within it.
const PAIR_SHIFT: u32 = 44;

/// The pairs of one map.
pub(crate) struct Pairs<K, V> {
    pairs: Box<[RawMap<K, V>]>,
    /// `pairs.len() - 1`: the count is a power of two.
    mask: usize,
    settings: Settings,
    /// The [`Snapshot::placeholder`] that `Reader`s keep for pairs they have not read yet,
    /// made at the first `Reader`. Boxed because a `OnceLock` is an `UnsafeCell`: held inline,
    /// it made the map's own fields mutable behind `&self`, so the compiler reloaded them
    /// after every atomic operation (cost model: `get` 132.1 -> 139.1 instructions). Std's
    /// `OnceLock` under loom too: making the placeholder runs only constructors, at which
    /// loom never switches threads, so a model's first `Reader` makes it in one step
    /// (`first_readers_vs_publication` races two).
    placeholder: Box<OnceLock<Snapshot<K, V>>>,
}

/// How a map's pairs are made: the builder's choices, kept so that a clone is made alike.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// A power of two, at most [`MAX_PAIRS`].
    pub(crate) pairs: usize,
    /// See [`Builder::min_promotion_misses`](crate::Builder::min_promotion_misses).
    pub(crate) min_promotion_misses: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pairs: default_count(),
            min_promotion_misses: crate::dirty::MIN_PROMOTION_MISSES,
        }
    }
}

/// The default number of pairs: four per available core, rounded up to a power of two, as
/// dashmap sizes its shards (8 on 2 cores, 64 on 16). Computed once per process:
/// `available_parallelism` makes system calls and reads cgroup files on Linux, which every
/// map construction would otherwise repeat.
pub(crate) fn default_count() -> usize {
    (cores() * 4).next_power_of_two().min(MAX_PAIRS)
}

/// The available parallelism, computed once per process (see [`default_count`]).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |cores| cores.get()))
}

/// The index of the pair that holds `hash`'s keys, for a map of `mask + 1` pairs.
#[inline]
pub(crate) fn index(hash: u64, mask: usize) -> usize {
    (hash >> PAIR_SHIFT) as usize & mask
}

impl<K, V> Pairs<K, V> {
    /// `count` pairs (a power of two, at most [`MAX_PAIRS`]) sharing `capacity`.
    pub(crate) fn new(settings: Settings, capacity: usize) -> Self {
        let count = settings.pairs;
        debug_assert!(count.is_power_of_two() && count <= MAX_PAIRS);
        let each = capacity.div_ceil(count);
        Self {
            pairs: (0..count)
                .map(|_| RawMap::new(each, settings.min_promotion_misses))
                .collect(),
            mask: count - 1,
            settings,
            placeholder: Box::new(OnceLock::new()),
        }
    }

    /// What the map was built with, for a copy of it.
    pub(crate) fn settings(&self) -> Settings {
        self.settings
    }

    pub(crate) fn mask(&self) -> usize {
        self.mask
    }

    /// The pair that holds `hash`'s keys. Unchecked: every operation indexes here, and the
    /// bounds check cost as much as the index itself.
    #[inline(always)]
    pub(crate) fn of(&self, hash: u64) -> &RawMap<K, V> {
        let pair = index(hash, self.mask);
        debug_assert!(pair < self.pairs.len());
        // SAFETY: `pair <= self.mask == self.pairs.len() - 1` (`new` makes both from one
        // count, and neither changes afterwards).
        unsafe { self.pairs.get_unchecked(pair) }
    }

    /// The pair of index `index` (from [`index`]).
    pub(crate) fn at(&self, index: usize) -> &RawMap<K, V> {
        &self.pairs[index]
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, RawMap<K, V>> {
        self.pairs.iter()
    }

    /// The map's [`Snapshot::placeholder`], made on the first call.
    pub(crate) fn placeholder(&self) -> &Snapshot<K, V> {
        self.placeholder.get_or_init(Snapshot::placeholder)
    }

    /// The sum of the pairs' live keys, each read once.
    pub(crate) fn len(&self) -> usize {
        self.pairs.iter().map(RawMap::len).sum()
    }

    /// True if every pair's live-key count reads zero, read one after another until one does
    /// not (`len() == 0` read every pair: 3,926 instructions on 64 pairs and 510 on 8,
    /// against 69 when the first pair holds a key).
    pub(crate) fn is_empty(&self) -> bool {
        self.pairs.iter().all(|pair| pair.len() == 0)
    }

    /// Clears the pairs one after another.
    pub(crate) fn clear(&self) {
        self.pairs.iter().for_each(RawMap::clear);
    }

    /// True if no pair holds an entry or a dirty map.
    pub(crate) fn is_vacant(&self) -> bool {
        self.pairs.iter().all(RawMap::is_vacant)
    }

    /// Publishes the staged pairs of a bulk load, each pair's share as its whole read table.
    /// Only on a vacant map; `&mut self` stands in for the mutexes.
    pub(crate) fn publish_bulk(&mut self, bulk: BulkLoad<K, V>)
    where
        K: Eq,
    {
        let mask = self.mask;
        let mut arenas: Vec<_> = self.pairs.iter_mut().map(RawMap::arena).collect();
        let tables = bulk.into_tables(&mut arenas, |hash| index(hash, mask));
        for (pair, table) in self.pairs.iter_mut().zip(tables) {
            pair.publish_bulk(table);
        }
    }

    /// The pairs' counters, summed (`amended`: any pair is; `dirty_len`: `None` only if no
    /// pair has a dirty map). Each pair's are read under its own lock, one after another.
    pub(crate) fn stats(&self) -> Stats {
        let mut total = Stats {
            pairs: self.pairs.len(),
            ..Stats::default()
        };
        for pair in self.pairs.iter() {
            let one = pair.stats();
            total.len += one.len;
            total.snapshot_len += one.snapshot_len;
            total.amended |= one.amended;
            total.dirty_len = match (total.dirty_len, one.dirty_len) {
                (Some(sum), Some(more)) => Some(sum + more),
                (sum, more) => sum.or(more),
            };
            total.misses += one.misses;
            total.promotions += one.promotions;
            total.dirty_rebuilds += one.dirty_rebuilds;
            total.rotations += one.rotations;
            total.retired += one.retired;
        }
        total
    }
}
