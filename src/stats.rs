//! [`Stats`]: what the map is doing.

/// The map's internal counters, from [`DualMap::stats`](crate::DualMap::stats): summed over
/// its read/dirty pairs, each pair's read consistently under its lock.
///
/// ```
/// // One read/dirty pair with Go's promotion rule, as Go's sync.Map: with more pairs, each
/// // counts its own misses.
/// let map = dualmap::DualMap::builder().pairs(1).min_promotion_misses(0).build();
/// for i in 0..3 {
///     map.insert(i, i);
/// }
/// for i in 0..3 {
///     map.get(&i); // keys only the dirty map holds: each lookup locks and counts a miss...
/// }
/// let stats = map.stats();
/// assert_eq!(stats.promotions, 1); // ...and len(dirty) misses promote the dirty map
/// assert_eq!(stats.snapshot_len, 3);
/// assert_eq!(stats.dirty_len, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Keys present (as [`DualMap::len`](crate::DualMap::len)).
    pub len: usize,
    /// Entries in the read snapshot, tombstones included.
    pub snapshot_len: usize,
    /// True if the dirty map holds keys the snapshot lacks, or held them until a `clear`
    /// emptied it in place (then `dirty_len` is `Some(0)`).
    pub amended: bool,
    /// Entries in the dirty map, tombstones included; `None` when there is no dirty map.
    pub dirty_len: Option<usize>,
    /// Operations that missed the snapshot and took the lock since the last promotion, by
    /// Go's rules plus two: an `insert` that stores into a key only the dirty map holds counts
    /// too, so that such a key is not stranded behind the lock; and a store, a
    /// compare-and-swap or an update of a key that `compare_and_remove` deleted while only the
    /// dirty map held it counts, as it finds the key's tombstone there. Lookups the miss filter
    /// answered are not counted.
    pub misses: usize,
    /// Times the dirty map became the read snapshot.
    pub promotions: u64,
    /// Times the dirty map was rebuilt from the snapshot (O(n) each).
    pub dirty_rebuilds: u64,
    /// Snapshots republished only to let retired values drain.
    pub rotations: u64,
    /// Values displaced by stores, removes and clears in place that wait for readers to move
    /// on (freed at the pair's next snapshot publication once no reader pins an older one). `stats`
    /// first hands every thread's retirement batch to its epoch
    /// ([`RETIRED_PER_BATCH`](crate::RETIRED_PER_BATCH)), so these are counted too. A key's
    /// first value, which lives inside its entry, is counted only if the value type has drop
    /// glue ([`std::mem::needs_drop`]): otherwise there is nothing to free, and it is not retired.
    pub retired: usize,
    /// Independent read/dirty pairs the map's keys are split over (see
    /// [`Builder::pairs`](crate::Builder::pairs)); every other field is the sum over them
    /// (`amended`: whether any pair is; `dirty_len`: `None` only if no pair has a dirty map).
    pub pairs: usize,
}
