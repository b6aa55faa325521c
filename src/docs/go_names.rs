//! Go's `sync.Map` names and their `DualMap` counterparts.
//!
//! | Go (`sync.Map`) | dualmap | notes |
//! |---|---|---|
//! | `Load(k)` | [`get`](crate::DualMap::get), [`get_cloned`](crate::DualMap::get_cloned), [`contains_key`](crate::DualMap::contains_key) | `get` returns a [`Ref`](crate::Ref) that holds no lock; [`reader`](crate::DualMap::reader) for hot loops |
//! | `Store(k, v)` | [`insert`](crate::DualMap::insert) (drop the result) | |
//! | `Swap(k, v)` | [`insert`](crate::DualMap::insert) | returns the previous value |
//! | `LoadOrStore(k, v)` | [`get_or_insert`](crate::DualMap::get_or_insert), [`try_insert`](crate::DualMap::try_insert) | `loaded` is [`GetOrInsert::Loaded`](crate::GetOrInsert::Loaded); `try_insert` gives the value back |
//! | (none, golang/go#44159) | [`get_or_insert_with`](crate::DualMap::get_or_insert_with) | the closure runs only for an absent key, with no lock held |
//! | `LoadAndDelete(k)`, `Delete(k)` | [`remove`](crate::DualMap::remove) | a key only the dirty map holds is taken out of it, as in Go, unless the miss its lookup counts promotes it first |
//! | `CompareAndSwap(k, old, new)` | [`compare_and_swap`](crate::DualMap::compare_and_swap) | never inserts; gives `new` back on failure |
//! | a `Load` and `CompareAndSwap` loop | [`update`](crate::DualMap::update), [`update_or_insert_with`](crate::DualMap::update_or_insert_with), [`update_or_insert`](crate::DualMap::update_or_insert) | `update` never inserts; the closure runs with no lock held, again if another write changed the value first |
//! | `CompareAndDelete(k, old)` | [`compare_and_remove`](crate::DualMap::compare_and_remove) | |
//! | `Range(f)` | [`for_each`](crate::DualMap::for_each), [`try_for_each`](crate::DualMap::try_for_each); [`iter`](crate::DualMap::iter), [`keys`](crate::DualMap::keys), [`values`](crate::DualMap::values), [`retain`](crate::DualMap::retain); [`view`](crate::DualMap::view)`().iter()` | `try_for_each`'s closure returns [`ControlFlow::Break`](std::ops::ControlFlow::Break) where Go's returns `false`: the fastest walk, with no pin per item; `iter` is a `for` loop, `break` stops it; a [`View`](crate::View)'s items are plain references, `Send`, and may be held across an `.await`; `par_iter` with the `rayon` feature |
//! | `Clear()` | [`clear`](crate::DualMap::clear) | pair by pair |
//! | (none, golang/go#20680) | [`len`](crate::DualMap::len), [`is_empty`](crate::DualMap::is_empty) | one counter per pair, no lock |
//! | one `sync.Map` | [`DualMap::builder`](crate::DualMap::builder)`().`[`pairs(1)`](crate::Builder::pairs)`.`[`min_promotion_misses(0)`](crate::Builder::min_promotion_misses) | the default splits keys over independent read/dirty pairs and promotes after at least [`MIN_PROMOTION_MISSES`](crate::MIN_PROMOTION_MISSES) misses |
//!
//! ```
//! // Go:  v, loaded := m.LoadOrStore("k", 1)
//! let m = dualmap::DualMap::new();
//! let loaded = !m.get_or_insert("k", 1).is_inserted();
//! assert!(!loaded);
//! // Go:  m.Range(func(k, v any) bool { ...; return true })
//! m.for_each(|k, v| assert_eq!((*k, *v), ("k", 1)));
//! for (k, v) in &m {
//!     assert_eq!((*k, *v), ("k", 1));
//! }
//! // Go:  for { old, _ := m.Load("k"); if m.CompareAndSwap("k", old, old.(int)+1) { break } }
//! assert_eq!(*m.update("k", |n| n + 1).unwrap(), 2);
//! ```
