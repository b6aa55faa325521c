//! What the entry arenas keep (DESIGN.md, "Entries' memory"): a read/dirty pair reuses the
//! memory of the entries it frees for its next new keys, so a map whose keys are replaced
//! does not grow past its peak, and a dropped map leaves nothing behind, whichever thread
//! built it and whichever dropped it. (A per-thread slab, reverted in 7817717, failed both:
//! its pools' blocks pinned whole chunks.)
//!
//! Live bytes are counted by this binary's global allocator, which is why these checks have a
//! binary of their own; every map is built and dropped on threads that exit before the count
//! is read, so that thread-local state (retirement batches, value-node pools) is gone too.

use dualmap::DualMap;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::SeqCst};
use std::thread;

/// The system allocator, counting the bytes it holds for the program.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the caller's arguments; the
// count is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, SeqCst);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, SeqCst);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(block, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(SeqCst)
}

/// What may be live beyond the baseline after a map is gone: `join` returns before the
/// joined thread's thread-local destructors have run, so its retirement batch may not be
/// freed yet, and `arc_swap` may give the next thread a new debt node (about 900 bytes, kept
/// for reuse) when the last one's is not released yet. Arenas left behind would hold the
/// map's entries: about 860 KB here (4.3 MB in a release build).
const SLACK: isize = 16 * 1024;

fn assert_left_nothing(baseline: isize, context: &str) {
    let left = live() - baseline;
    assert!(left <= SLACK, "{context}: {left} bytes left");
}

const KEYS: u64 = if cfg!(debug_assertions) {
    20_000
} else {
    100_000
};

/// Runs `f` on a thread of its own, which exits before this returns.
fn on_a_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    thread::spawn(f).join().expect("no panic")
}

/// One test, so that no other test allocates while the counts are read.
#[test]
#[cfg_attr(
    miri,
    ignore = "counts a whole map's memory; Miri runs the arena's own tests"
)]
fn arenas_reuse_what_they_free_and_leave_nothing_behind() {
    // What the first use of a map allocates for good (`arc_swap`'s list of per-thread debt
    // nodes, reused by later threads; lazily initialised statics), before the baseline.
    on_a_thread(|| {
        let map: DualMap<u64, u64> = (0..100).map(|key| (key, key)).collect();
        map.insert(100, 100);
        assert_eq!(map.remove(&7).as_deref(), Some(&7));
        map.clear();
    });
    let baseline = live();

    // Keys replaced over and over: the memory after 30 rounds is about that after 3.
    let (after_3, after_30) = on_a_thread(|| {
        let map: DualMap<u64, u64> = DualMap::new();
        let mut next = 0;
        let mut after = Vec::new();
        for round in 1..=30 {
            map.clear();
            for _ in 0..KEYS {
                map.insert(next, next);
                next += 1;
            }
            // Promote every pair, so that each round ends in the same state.
            map.for_each(|_, _| {});
            if round == 3 || round == 30 {
                after.push(live());
            }
        }
        (after[0], after[1])
    });
    assert!(
        after_30 - baseline <= (after_3 - baseline) * 5 / 4,
        "30 rounds of {KEYS} new keys grew the map from {} to {} bytes",
        after_3 - baseline,
        after_30 - baseline
    );
    assert_left_nothing(baseline, "a map dropped on the thread that built it");

    // Built on one thread, read and partly removed on another, dropped on a third:
    // everything goes back once the last thread is gone. (No overwrites: their value nodes'
    // memory may stay in the node pool's process-wide depot, by design.)
    let map = on_a_thread(|| {
        let map: DualMap<u64, u64> = DualMap::new();
        for key in 0..KEYS {
            map.insert(key, key);
        }
        map
    });
    assert!(
        live() - baseline > (KEYS * 40) as isize,
        "the map holds its entries"
    );
    let map = on_a_thread(move || {
        for key in (0..KEYS).step_by(3) {
            assert_eq!(map.remove(&key).as_deref(), Some(&key));
        }
        let held = map.get(&1).expect("present");
        assert_eq!(*held, 1);
        drop(held);
        map
    });
    on_a_thread(move || drop(map));
    assert_left_nothing(baseline, "a map dropped on another thread than built it");
}
