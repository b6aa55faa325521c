//! What each operation costs, and what to expect from the design.
//!
//! | operation | key in the read snapshot | key only in the dirty map | new key |
//! |---|---|---|---|
//! | `get`, `contains_key` | no lock, no shared write | mutex, counts a miss | mutex if amended, counts a miss |
//! | `insert` | one CAS, plus retiring the old value | mutex | mutex; the first new key after a promotion rebuilds the dirty map (O(n)) |
//! | `get_or_insert` | one CAS or none | mutex, counts a miss | mutex |
//! | `remove` | one CAS | mutex, counts a miss | mutex if amended, counts a miss |
//! | `compare_and_swap` | one CAS | mutex, counts a miss | mutex if amended |
//! | `iter`, `retain` | no lock | one lock to promote first | |
//! | `len` | no lock | | |
//!
//! A miss promotes the dirty map once misses reach its size, after which those keys are
//! lock-free too. Known costs inherited from Go's design: the O(n) dirty rebuild at the first
//! new key after each promotion, every new key taking one mutex, and `iter` on an amended map
//! promoting it. Prefer a sharded map when new keys are frequent.
//!
//! ```
//! let map = dualmap::DualMap::new();
//! map.insert(1, 1);
//! for _ in 0..2 {
//!     map.get(&2); // misses while the key set is amended
//! }
//! assert!(map.stats().promotions >= 1); // now key 1 reads without a lock
//! ```
