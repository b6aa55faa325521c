//! The live-key counter behind `len`.

use crate::sync::{AtomicIsize, SeqCstFlags};
use std::sync::atomic::Ordering::Relaxed;

/// The one flag of [`LiveKeys::cleared`].
const CLEARED: u8 = 1;

/// Live keys of one generation (the keys since the last `clear` that published an empty
/// snapshot), and whether such a `clear` has ended it. A clear in place keeps the generation
/// and counts off each value it deletes. The count is updated after each successful transition between absent and
/// present, so it is exact whenever no operation is in flight. Operations that raced with a
/// `clear` update the old generation's counter, which nobody reads any more: their effect was
/// cleared with it.
pub(crate) struct LiveKeys {
    count: AtomicIsize,
    /// Set (`SeqCst`, under the map mutex) just before `clear` publishes the next generation:
    /// a [`View`](crate::View) that pinned this generation's snapshot checks it before it shows
    /// a key, since `clear` leaves the old entries and their values as they were.
    cleared: SeqCstFlags,
}

impl Default for LiveKeys {
    fn default() -> Self {
        Self {
            count: AtomicIsize::new(0),
            cleared: SeqCstFlags::new(0),
        }
    }
}

impl LiveKeys {
    /// Marks the generation as ended by a `clear`. Only under the map mutex, before the next
    /// generation is published.
    #[inline]
    pub(crate) fn clear(&self) {
        self.cleared.set(CLEARED);
    }

    /// True once a `clear` ended this generation: its keys are absent, whatever their entries
    /// still hold.
    #[inline]
    pub(crate) fn is_cleared(&self) -> bool {
        self.cleared.load() != 0
    }

    #[inline]
    pub(crate) fn added(&self) {
        self.add(1);
    }
    #[inline]
    pub(crate) fn add(&self, keys: usize) {
        self.count.fetch_add(keys as isize, Relaxed);
    }
    #[inline]
    pub(crate) fn removed(&self) {
        self.count.fetch_sub(1, Relaxed);
    }
    /// Clamped at zero: a remove may be counted before the insert it follows.
    #[inline]
    pub(crate) fn get(&self) -> usize {
        usize::try_from(self.count.load(Relaxed)).unwrap_or(0)
    }
}
