//! What each operation costs, and what to expect from the design.
//!
//! | operation | key in the read snapshot | key only in the dirty map | new key |
//! |---|---|---|---|
//! | `get`, `contains_key` | no lock, no shared write | mutex, counts a miss | no lock unless the miss filter has seen the key (then as a dirty key) |
//! | `insert` | one CAS, plus retiring the old value (a push onto the thread's batch; one shared write per [`RETIRED_PER_BATCH`](crate::RETIRED_PER_BATCH) writes) | mutex | mutex; the first new key of a pair after its promotion rebuilds that pair's dirty map (O(n / pairs)) |
//! | `get_or_insert` | one CAS or none | mutex, counts a miss | mutex |
//! | `remove` | one CAS | mutex, counts a miss, takes the key out of the dirty map as Go does (its entry's memory serves the pair's next new key once nothing holds it: see [`reclamation`](crate::docs::reclamation)) | as `get` |
//! | `compare_and_swap` | one CAS | mutex, counts a miss | as `get` |
//! | `update` | one CAS per attempt (the closure runs again if the value changed) | mutex to find the entry, counts a miss; the CAS after unlocking | as `get` |
//! | `update_or_insert_with` | as `update`; a deleted key: mutex | as `update` | as `get`, then as `get_or_insert` |
//! | `for_each`, `iter`, `retain` | no lock; `for_each` writes nothing per key, an `iter` item counts its pin up and down (about 20 against 54 instructions a key) | one lock per amended pair to promote it first | |
//! | `len` | no lock; one counter per pair | | |
//! | `reader()` | loads nothing: a boxed slot per pair, each loaded at the `Reader`'s first lookup of a key of that pair (a `get`'s guard, once); its hits then need no guard | | |
//!
//! "Mutex" is the key's read/dirty pair's: keys of different pairs never wait for each other.
//!
//! A miss promotes the dirty map once misses reach its size (less the tombstones that
//! `compare_and_remove` left of keys only it held) and at least
//! [`MIN_PROMOTION_MISSES`](crate::MIN_PROMOTION_MISSES) (32), after which those keys are
//! lock-free too. While the dirty map holds keys the snapshot lacks, the snapshot carries a
//! small Bloom filter of those keys (the *miss filter*): a lookup of a key that was never
//! added since the last promotion answers "absent" without the lock (in Go it locks, golang/go#21032).
//! Such lookups do not count as misses, so only lookups of keys that really are in the dirty
//! map (and the filter's rare false positives) drive promotion. Known costs inherited from
//! Go's design, per pair: the O(n / pairs) dirty rebuild at the first new key after each
//! promotion, every new key taking its pair's mutex, and `iter` on an amended pair promoting
//! it. Prefer a sharded map when new keys are frequent.
//!
//! Memory: each pair allocates its entries from chunks of its own (256 bytes, growing to 64 KiB),
//! where a lookup's bytes of an entry share one cache line, and reuses the memory of removed
//! keys for its next new keys. So, as with a hash table's capacity, a map keeps the memory of
//! its largest number of entries (and of removed keys not yet reclaimed) until it is dropped;
//! dropping the map returns all of it once the last `Ref`, iterator or `Reader` that pins an
//! entry is gone (until then, such an entry keeps all of its pair's entry memory).
//!
//! ```
//! // One read/dirty pair with Go's promotion rule, so that one miss below promotes.
//! let map = dualmap::DualMap::builder().pairs(1).min_promotion_misses(0).build();
//! map.insert(1, 1); // a new key: it goes to the dirty map
//! assert!(map.get(&2).is_none()); // never added: the miss filter answers, no lock
//! assert_eq!(map.stats().misses, 0);
//! map.get(&1); // in the dirty map only: locks, counts a miss, and (1 >= len 1) promotes
//! assert_eq!(map.stats().promotions, 1); // now key 1 reads without a lock
//! ```
