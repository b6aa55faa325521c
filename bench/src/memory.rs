//! The `memory` part: bytes per entry, from a counting global allocator. A map of `u64 ->
//! u64` is built from empty (as a service fills it, without a capacity hint) and settled,
//! and its live heap bytes are divided by its entries; then every key is overwritten once and
//! the live bytes are taken again, so a design that allocates per write or holds retired
//! values shows it.
//!
//! The allocator counts only the allocations and frees of the thread inside [`measure`], in
//! thread-local cells: the timed parts pay one thread-local flag check per allocation and
//! share nothing, and other threads (other tests) cannot disturb the count. Every map here
//! frees on the thread that drops or overwrites, so one thread sees all of a map's memory.

use crate::workloads::{self, BenchMap, MapKind, Put};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the live bytes of a thread while its `COUNTING` is set.
pub struct CountingAllocator;

thread_local! {
    // `const` cells without destructors: reading them never allocates, so the allocator
    // may use them.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(bytes: isize) {
    if COUNTING.get() {
        LIVE.set(LIVE.get() + bytes);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; the counting only reads the layout.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            count(layout.size() as isize);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            count(layout.size() as isize);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `block` came from this allocator, which is `System`.
        unsafe { System.dealloc(block, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; `block` came from this allocator, which is `System`.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

/// Bytes per entry of one map.
#[derive(Clone, Debug)]
pub struct Memory {
    /// Written once (every key inserted once) and settled.
    pub written_once: f64,
    /// After every key was then overwritten once; `None` for the read-only map.
    pub after_overwrites: Option<f64>,
}

/// Live bytes allocated while `COUNTING` was set, over `entries`.
fn per_entry(entries: u64) -> f64 {
    LIVE.get() as f64 / entries as f64
}

/// Measures a map of type `M` with `entries` keys, built and written on this thread.
pub fn measure<M: BenchMap>(entries: u64) -> Memory {
    LIVE.set(0);
    COUNTING.set(true);
    let mut map = M::with_capacity(0);
    for key in 0..entries {
        map.setup_put(key, key, Put::Store);
    }
    map.settle();
    let written_once = per_entry(entries);
    let after_overwrites = M::WRITES.then(|| {
        for key in 0..entries {
            map.store(key, key + 1);
        }
        per_entry(entries)
    });
    COUNTING.set(false);
    drop(map);
    Memory {
        written_once,
        after_overwrites,
    }
}

/// [`measure`] for the map `kind`.
pub fn measure_kind(kind: MapKind, entries: u64) -> Memory {
    workloads::with_map_type!(kind, M => measure::<M>(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_bytes_a_map_holds() {
        // A `HashMap<u64, u64>` holds at least its 16-byte pairs.
        let memory = measure_kind(MapKind::RwLock, 10_000);
        assert!(memory.written_once >= 16.0, "{memory:?}");
        assert!(memory.written_once < 100.0, "{memory:?}");
        let overwritten = memory.after_overwrites.expect("writable");
        assert!(
            (overwritten - memory.written_once).abs() < 1.0,
            "{memory:?}"
        );
    }
}
