//! A read-optimized concurrent hash map: Go's `sync.Map` read/dirty design in Rust.
//!
//! [`DualMap`] keeps an immutable *read snapshot* of its keys, published through
//! [`arc_swap`], and a *dirty map* of the keys added since, behind a mutex. Both maps share
//! their entries, so a value stored through either is seen through both at once. Reading or
//! overwriting a key of the snapshot takes no lock and writes no shared cache line besides the
//! entry itself; lookups that miss the snapshot lock and are counted, and once they add up to
//! the size of the dirty map it is promoted to be the snapshot in one pointer switch. The keys
//! are split by hash over independent read/dirty pairs (four per core by default; one is Go's
//! `sync.Map` exactly: [`DualMap::builder`]), so new keys of different pairs take different
//! mutexes.
//!
//! ```
//! use dualmap::DualMap;
//!
//! let sessions = DualMap::new();
//! sessions.insert("token-1", "alice");
//! assert_eq!(*sessions.get("token-1").unwrap(), "alice");
//! sessions.insert("token-1", "bob"); // lock-free overwrite of a known key
//! assert_eq!(sessions.remove("token-1").as_deref(), Some(&"bob"));
//! assert!(sessions.is_empty());
//! ```
//!
//! Counters are one call ([`DualMap::update_or_insert_with`], a compare-and-swap loop for keys
//! of the snapshot), and [`DualMap::view`] pins the snapshots for reads and iteration through
//! plain references that may be held across an `.await`:
//!
//! ```
//! let hits = dualmap::DualMap::new();
//! for page in ["/", "/about", "/"] {
//!     hits.update_or_insert_with(page, |n| n + 1, || 1);
//! }
//! let view = hits.view();
//! let mut counts: Vec<(&str, u64)> = view.iter().map(|(page, n)| (*page, *n)).collect();
//! counts.sort();
//! assert_eq!(counts, [("/", 2), ("/about", 1)]);
//! ```
//!
//! # When to use it
//! - Read-mostly maps whose key set is stable or grows slowly: session stores, config and
//!   feature-flag tables, routing and handle maps, caches that mostly grow.
//! - Many threads overwriting or compare-and-swapping *existing* keys.
//! - Threads working on disjoint key sets.
//!
//! # When not to
//! - Workloads that insert new keys all the time (every new key takes its pair's mutex and
//!   allocates), or that churn keys in and out: a sharded map such as `dashmap` does better.
//! - Values you need to mutate in place: values are replaced, not locked.
//!
//! # Guarantees
//! - Every single-key operation is linearizable.
//! - [`Ref`]s, iteration items and [`View`]s hold no lock: holding one cannot deadlock anything.
//! - Iteration visits every key present throughout exactly once, and no key twice.
//! - User code (`Drop`, `PartialEq` of values, closures) never runs under the map's mutex;
//!   only `Eq` of keys does, before anything is changed. A panic in any of it leaves the map
//!   usable and leaks nothing.
//! - `Hash`, `Eq` and `Drop` of keys must not call into the same map.
//! - `DualMap<K, V, S>` is `Send + Sync` exactly when `K`, `V` and `S` are both:
//!
//! ```
//! fn shareable<T: Send + Sync>() {}
//! shareable::<dualmap::DualMap<String, Vec<u8>>>();
//! shareable::<dualmap::Ref<String, Vec<u8>>>();
//! shareable::<dualmap::View<'static, String, Vec<u8>>>();
//! fn sendable<T: Send>() {}
//! sendable::<dualmap::Reader<'static, String, Vec<u8>>>();
//! ```
//! ```compile_fail
//! // A `Reader` is a one-thread handle: `Send`, never `Sync`.
//! fn shareable<T: Sync>() {}
//! shareable::<dualmap::Reader<'static, String, Vec<u8>>>();
//! ```
//! ```compile_fail
//! // `Rc` is neither `Send` nor `Sync`, so a map of them cannot be shared.
//! fn shareable<T: Send + Sync>() {}
//! shareable::<dualmap::DualMap<u32, std::rc::Rc<u32>>>();
//! ```
//! ```compile_fail
//! // `Cell` is `Send` but not `Sync`: readers on several threads would share it.
//! fn shareable<T: Send + Sync>() {}
//! shareable::<dualmap::DualMap<u32, std::cell::Cell<u32>>>();
//! ```
//!
//! For hot read loops, [`DualMap::reader`] returns a per-thread [`Reader`] whose hits need no
//! guard at all.
//!
//! The [`docs`] module has the Go name table, the reclamation scheme and performance notes.
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod arena;
mod batches;
mod block;
mod builder;
mod bulk;
mod dirty;
pub mod docs;
mod entry;
mod filter;
mod iter;
mod live_keys;
mod map;
mod node_pool;
mod pairs;
mod raw;
#[cfg(feature = "rayon")]
mod rayon_impls;
mod reader;
mod reclaim;
#[cfg(feature = "serde")]
mod serde_impls;
mod snapshot;
mod stats;
mod sync;
mod table;
mod value_ref;
mod view;

pub use batches::RETIRED_PER_BATCH;
pub use builder::Builder;
pub use dirty::MIN_PROMOTION_MISSES;
pub use iter::{Iter, Keys, Pinned, Values};
pub use map::{DualMap, GetOrInsert, OccupiedError};
#[cfg(feature = "rayon")]
pub use rayon_impls::ParItem;
pub use reader::Reader;
pub use reclaim::RETIRED_PER_EPOCH;
pub use stats::Stats;
pub use value_ref::Ref;
pub use view::{View, ViewIter};
