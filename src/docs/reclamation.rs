//! How displaced values are freed, and what a held handle keeps alive.
//!
//! A store, remove or compare-and-swap that displaces a value cannot free it at once: another
//! thread may be reading it. Every published read snapshot is a reclamation *epoch*. A
//! displaced value is *retired*: it waits in the writing thread's batch, which is handed,
//! whole, to the epoch of the snapshot that is current then (once it holds
//! [`RETIRED_PER_BATCH`](crate::RETIRED_PER_BATCH) values, at the next publication of a
//! snapshot, at [`DualMap::stats`](crate::DualMap::stats), or when the map is dropped), and
//! freed when that epoch is dropped. An epoch is dropped when its snapshot is no longer
//! published or pinned **and** every older epoch is dropped, because each epoch keeps its
//! successor alive. A batch saves every write the shared writes of handing its value over
//! alone; the price is that up to `RETIRED_PER_BATCH - 1` values per stripe (one stripe per
//! core) and per read/dirty pair are freed later than they would be.
//!
//! So a handle ([`Ref`](crate::Ref), an iterator or one of its items, a
//! [`View`](crate::View), a [`Reader`](crate::Reader) between calls) pins the snapshot it
//! came from *and every value retired after it*, until it is dropped. Short-lived handles
//! cost nothing; a handle kept for minutes under a heavy overwrite load keeps every value
//! displaced meanwhile in memory. [`Stats::retired`](crate::Stats::retired) shows how many
//! values wait. It also pins the entries and tables that a promotion or `clear` takes out of
//! the read view after it: a table whose entries a dirty rebuild took over owns none of them,
//! so the entries a rebuild expunges, and the tables a `clear` discards, are kept with the
//! epoch of the snapshot they were replaced in, and dropped when it ends.
//!
//! When no promotion happens for a long time (an overwrite-only workload), the map
//! republishes the same snapshot under a fresh epoch every
//! [`RETIRED_PER_EPOCH`](crate::RETIRED_PER_EPOCH) (1,024) retired values (a *rotation*,
//! counted in [`Stats::rotations`](crate::Stats::rotations)), so the garbage stays bounded.
//! Each read/dirty pair has its own epochs: a handle pins its own pair's, and the bound is per
//! pair.
//!
//! ```
//! use dualmap::RETIRED_PER_EPOCH;
//!
//! let map = dualmap::DualMap::new();
//! map.insert(0, 0);
//! for i in 1..10 * RETIRED_PER_EPOCH {
//!     map.insert(0, i); // each overwrite retires the previous value
//! }
//! assert!(map.stats().retired <= RETIRED_PER_EPOCH); // freed as epochs rotate
//! let held = map.get(&0).unwrap();
//! for i in 0..3 * RETIRED_PER_EPOCH {
//!     map.insert(0, i);
//! }
//! assert!(map.stats().retired >= 3 * RETIRED_PER_EPOCH); // `held` pins them
//! drop(held);
//! map.insert(0, 0);
//! ```
//!
//! The values are dropped on whichever thread releases the last pin, with no lock held.
//! An entry holds its key's first value in place, so a key removed (or cleared) while it
//! still holds that value is dropped with the value, when its epoch ends, rather than at once
//! (unless the value type has no drop glue: such a first value is not retired at all, since
//! freeing it would do nothing, and its entry goes as soon as nothing reaches it).
//! A removed key of the read snapshot stays in its read/dirty pair as a tombstone, and is
//! dropped once a rebuild has expunged it and the promotion after that has dropped the old
//! snapshot; a removed key only the dirty map held leaves it at once, and is dropped with its
//! entry once nothing holds that (its removed value's `Ref`, and for a value with drop glue
//! the value's epoch). A rebuild expunges only when more than one entry in 8 of the
//! pair's read table is a tombstone, so a pair carries up to that share of removed keys (their
//! values are retired as usual) from one promotion to the next.
//! A `clear` that empties a pair in place (its keys all only in the dirty map) retires their
//! values like any displaced value: they are freed at the pair's next snapshot publication,
//! not at once.
//!
//! A freed entry's memory goes back to its read/dirty pair's arena, whose next new keys reuse
//! it, whatever thread freed it; a pair keeps its peak of entries' memory until the map and
//! its last entry are gone, then every chunk goes back to the allocator. A freed value's
//! memory goes to the freeing thread's pool (at most 64 KiB per block size, handed back to the
//! allocator when the thread exits) from which the thread's next writes allocate: an epoch frees its values in batches far larger than the system allocator's
//! own per-thread cache, and this keeps an overwrite off the allocator's slow paths. What a
//! thread frees beyond its pool goes, 32 KiB at a time, to a process-wide depot of at most
//! 1 MiB, from which threads that allocate more than they free take it.
