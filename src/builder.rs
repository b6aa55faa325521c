//! [`Builder`]: a map with non-default settings.

use crate::pairs::{Settings, MAX_PAIRS};
use crate::DualMap;
use std::fmt;

/// Builds a [`DualMap`] with a chosen number of independent read/dirty pairs, capacity and
/// hasher. From [`DualMap::builder`].
///
/// **Pairs.** The map's keys are split by hash bits over `pairs` independent `sync.Map`s,
/// each with its own read snapshot, mutex, dirty map and miss counter. One pair is Go's
/// `sync.Map` (with Go's promotion rule: [`min_promotion_misses`](Self::min_promotion_misses)); more pairs let new keys in different pairs be added in parallel, and
/// divide the work of each dirty rebuild (which copies one pair's snapshot) by their number.
/// Every per-key operation is Go's, on the key's pair; what spans pairs (`len`, `clear`,
/// iteration, `stats`) visits them one after another (see [`DualMap::clear`] and
/// [`DualMap::iter`]). The default is four pairs per available core, rounded up to a power of
/// two, as dashmap sizes its shards.
///
/// Each pair costs about 800 bytes up front (an empty map holds 6.5 KB with 8 pairs and 51 KB
/// with 64, on 2 cores; each further core adds 64 bytes a pair, up to 8 cores), and each pair
/// that holds a key allocates its entries from
/// chunks of its own, 256 bytes at first (a map of 64 keys spread over 64 pairs holds about
/// 14 KB more than an empty one): for many small maps, or maps that rarely get new keys, use
/// one pair. Making and dropping a map costs about 3,300 instructions and seven allocations
/// a pair (its snapshot, epoch, counters and retirement stripes; callgrind: 3,856 with one
/// pair, 26,067 with 8 and 239,747 with 64, against 1,542 and 5,933 for a dashmap of 8 and
/// 64 shards; timed on 2 cores, 4.2 µs with 8 pairs and 37 with 64), so a map made per
/// request or per connection wants one pair too. Each pair also adds a few instructions to
/// every operation (one
/// shift, one mask and one load), and iteration visits every pair.
///
/// ```
/// use dualmap::DualMap;
///
/// // Go's sync.Map: one read snapshot, one mutex, Go's promotion rule.
/// let go: DualMap<String, u64> = DualMap::builder().pairs(1).min_promotion_misses(0).build();
/// assert_eq!(go.stats().pairs, 1);
///
/// let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
/// let map: DualMap<u64, u64, _> = DualMap::builder().pairs(16).capacity(1_000).hasher(hasher).build();
/// map.insert(1, 2);
/// assert_eq!(map.stats().pairs, 16);
/// ```
#[derive(Clone)]
pub struct Builder<S = ahash::RandomState> {
    settings: Settings,
    capacity: usize,
    hasher: S,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Self {
            settings: Settings::default(),
            capacity: 0,
            hasher: ahash::RandomState::new(),
        }
    }
}

impl<S> Builder<S> {
    /// The number of independent read/dirty pairs, rounded up to a power of two.
    ///
    /// # Panics
    /// If `pairs` is 0 or more than 256.
    ///
    /// ```
    /// let map: dualmap::DualMap<u8, u8> = dualmap::DualMap::builder().pairs(3).build();
    /// assert_eq!(map.stats().pairs, 4);
    /// ```
    pub fn pairs(self, pairs: usize) -> Self {
        assert!(
            (1..=MAX_PAIRS).contains(&pairs),
            "a DualMap has 1 to {MAX_PAIRS} read/dirty pairs, not {pairs}"
        );
        Self {
            settings: Settings {
                pairs: pairs.next_power_of_two(),
                ..self.settings
            },
            ..self
        }
    }

    /// The fewest misses that promote a pair's dirty map: a pair promotes once its misses
    /// reach both its dirty map's size (less the tombstones of dirty-only keys, counting a key
    /// being removed) and `misses` (default [`MIN_PROMOTION_MISSES`], which says why). 0 is
    /// Go's rule, so `pairs(1).min_promotion_misses(0)` promotes about where Go's `sync.Map`
    /// would (DESIGN.md, "Promotion timing differs from Go"). Promotion timing changes how soon new
    /// keys are read without the lock, never what any operation returns.
    ///
    /// [`MIN_PROMOTION_MISSES`]: crate::MIN_PROMOTION_MISSES
    ///
    /// ```
    /// let go = dualmap::DualMap::builder().pairs(1).min_promotion_misses(0).build();
    /// go.insert("new", 1); // only in the dirty map, of one key
    /// assert_eq!(go.get_cloned("new"), Some(1)); // one miss promotes it, as in Go
    /// assert_eq!(go.stats().promotions, 1);
    /// ```
    pub fn min_promotion_misses(self, misses: usize) -> Self {
        Self {
            settings: Settings {
                min_promotion_misses: misses,
                ..self.settings
            },
            ..self
        }
    }

    /// Room for `capacity` keys in the first read tables, shared among the pairs.
    ///
    /// ```
    /// let map: dualmap::DualMap<u8, u8> = dualmap::DualMap::builder().capacity(100).build();
    /// assert!(map.is_empty());
    /// ```
    pub fn capacity(self, capacity: usize) -> Self {
        Self { capacity, ..self }
    }

    /// The hasher of the map's keys.
    ///
    /// ```
    /// use std::collections::hash_map::RandomState;
    /// let map = dualmap::DualMap::builder().hasher(RandomState::new()).build();
    /// map.insert("k", 1);
    /// assert_eq!(map.get_cloned("k"), Some(1));
    /// ```
    pub fn hasher<T>(self, hasher: T) -> Builder<T> {
        Builder {
            settings: self.settings,
            capacity: self.capacity,
            hasher,
        }
    }

    /// The map.
    ///
    /// ```
    /// let map = dualmap::DualMap::builder().pairs(2).build();
    /// map.insert(1, "one");
    /// assert_eq!(map.get_cloned(&1), Some("one"));
    /// ```
    pub fn build<K, V>(self) -> DualMap<K, V, S> {
        DualMap::with_settings(self.settings, self.capacity, self.hasher)
    }
}

impl<S> fmt::Debug for Builder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("pairs", &self.settings.pairs)
            .field("min_promotion_misses", &self.settings.min_promotion_misses)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}
