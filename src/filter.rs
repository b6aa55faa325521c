//! The miss filter: a small Bloom filter of the keys only the dirty map holds
//! (golang/go#21032).
//!
//! In Go's design every lookup of a key the snapshot lacks takes the mutex while the map is
//! amended, so a read-mostly workload that sometimes inserts and often misses runs at mutex
//! speed. An amended snapshot therefore carries a filter of the keys added to the dirty map
//! since it was published; a lookup whose key the filter has never seen is certainly not in
//! the dirty map and answers "absent" without the lock.
//!
//! Keys are added under the mutex, before they enter the dirty map, so a lookup either sees a
//! key's bits (and takes the lock, which waits for the insert to finish) or runs before the
//! insert in the word's modification order, where "absent" is the right answer. Bits are
//! never cleared: a filter lives until the next promotion or clear replaces the snapshot.
//!
//! Each key sets two bits in one 64-bit word (a blocked Bloom filter), so a check is one
//! atomic load. With [`BITS_PER_KEY`] bits per key the false-positive rate stays about 2–3%;
//! when more keys than the filter was sized for are added, the map replaces it by one four
//! times larger (see `RawMap::record_new_key_locked`), filled from the hashes of the keys added
//! since the filter's cycle began.

use crate::sync::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;

/// Filter bits per key it is sized for.
pub(crate) const BITS_PER_KEY: usize = 16;
/// The smallest filter, in keys: 16 words, two cache lines.
pub(crate) const MIN_KEYS: usize = 64;

pub(crate) struct MissFilter {
    words: Box<[AtomicU64]>,
    /// How many keys the filter was sized for.
    capacity: usize,
}

impl MissFilter {
    /// An empty filter sized for `keys` keys (at least [`MIN_KEYS`]).
    pub(crate) fn with_capacity(keys: usize) -> Self {
        let capacity = keys.max(MIN_KEYS).next_power_of_two();
        let words = capacity * BITS_PER_KEY / 64;
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            capacity,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The word and the two-bit mask of a key. The table uses the hash's low bits (bucket)
    /// and top 7 bits (tag); the filter takes bits from the middle, so a key whose table
    /// probe collides still lands on unrelated filter bits.
    fn locate(&self, hash: u64) -> (&AtomicU64, u64) {
        let mixed = hash.rotate_right(20);
        let word = (mixed as usize) & (self.words.len() - 1);
        let first = (mixed >> 32) & 63;
        let second = (mixed >> 38) & 63;
        (&self.words[word], (1 << first) | (1 << second))
    }

    /// Records a key; true if its bits were all set already (so `may_contain` said true
    /// before). Only under the map mutex, before the key enters the dirty map.
    pub(crate) fn insert(&self, hash: u64) -> bool {
        let (word, mask) = self.locate(hash);
        word.fetch_or(mask, SeqCst) & mask == mask
    }

    /// Asks for the line of the word `hash`'s bits are in, ahead of an `insert`.
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash: u64) {
        let (word, _) = self.locate(hash);
        crate::table::prefetch_line(std::ptr::from_ref(word).cast());
    }

    /// False if a key with this hash was certainly never recorded.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        let (word, mask) = self.locate(hash);
        word.load(SeqCst) & mask == mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_forgets_a_key_and_rarely_claims_an_unknown_one() {
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let filter = MissFilter::with_capacity(1_000);
        assert_eq!(filter.capacity(), 1_024);
        for key in 0..1_024u64 {
            filter.insert(hasher.hash_one(key));
        }
        assert!((0..1_024u64).all(|key| filter.may_contain(hasher.hash_one(key))));
        let false_positives = (1_024..101_024u64)
            .filter(|key| filter.may_contain(hasher.hash_one(key)))
            .count();
        // 16 bits per key, two bits in one word: about 2-3% when full.
        assert!(false_positives < 4_000, "{false_positives} of 100,000");
    }
}
