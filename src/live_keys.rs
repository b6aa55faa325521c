//! The live-key counter behind `len`.

use crate::sync::AtomicIsize;
use std::sync::atomic::Ordering::Relaxed;

/// Live keys of one generation. Updated after each successful transition between absent and
/// present, so it is exact whenever no operation is in flight. Operations that raced with a
/// `clear` update the old generation's counter, which nobody reads any more: their effect was
/// cleared with it.
#[derive(Default)]
pub(crate) struct LiveKeys(AtomicIsize);

impl LiveKeys {
    pub(crate) fn added(&self) {
        self.add(1);
    }
    pub(crate) fn add(&self, keys: usize) {
        self.0.fetch_add(keys as isize, Relaxed);
    }
    pub(crate) fn removed(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    /// Clamped at zero: a remove may be counted before the insert it follows.
    pub(crate) fn get(&self) -> usize {
        usize::try_from(self.0.load(Relaxed)).unwrap_or(0)
    }
}
