//! A per-thread pool of freed value-node memory, so that an overwrite's allocation is
//! usually a pop from the writing thread's own list instead of a call into the global allocator.
//!
//! Why: every overwrite allocates one value node and, an epoch later, frees one. Epochs free
//! their values in batches of up to [`RETIRED_PER_EPOCH`](crate::RETIRED_PER_EPOCH), far more
//! than the system allocator's own per-thread cache holds (glibc's tcache keeps 7 blocks per
//! size), so nearly every free and every allocation took the allocator's slow path: about 200
//! of an overwrite's 493 instructions (callgrind, 1k keys). A batch freed into this pool is
//! reused by the next writes on the same thread.
//!
//! Only memory is pooled, never values: a node's value is dropped before its memory comes here,
//! exactly when it would have been freed before, so nothing about reclamation changes.
//! Memory is pooled by exact layout, so it is handed back with the layout it was allocated with.
//!
//! The pool is Bonwick's magazine layer (USENIX 2001): for each layout a thread holds a loaded
//! magazine (a stack of up to [`MAGAZINE_BYTES`] of free blocks) and a previous one, full or
//! empty. A release pushes on the loaded magazine; when that is full, the previous one (if
//! full) goes to a process-wide [`DEPOT`] and the loaded one becomes the previous. An
//! allocation pops from the loaded magazine; when that is empty it swaps in the previous one
//! if full, else takes a full magazine from the depot, else calls the allocator. So a thread
//! that frees more than it allocates (the one that drops an epoch's last snapshot frees all of
//! its values) feeds the threads that allocate more than they free, one lock per magazine, and
//! between two depot visits of a thread lie at least a magazine's worth of its operations on
//! that layout, however they alternate. Why: with a per-thread pool alone, two threads
//! swapping one key took 12.7% of their value nodes (764,139 of 6,000,000) from glibc and
//! freed as many into it; a first depot without the second magazine made a thread at its
//! budget deposit and withdraw its list on alternate operations (an overwrite 313 -> 364
//! instructions in the cost model).
//!
//! Bounds: a thread holds at most two magazines per layout it has freed, handed back to the
//! allocator when the thread exits (a thread that used a map keeps them after the map is
//! gone); the depot holds at most [`DEPOT_BYTES`], and a magazine beyond that goes back to the
//! allocator.
//!
//! Under Miri nothing is pooled: a pooled block stays allocated, so a use after free through
//! it would be invisible to Miri; every release goes to the allocator there instead. With
//! `--cfg dualmap_miri_pools` Miri runs the pool too, with magazines of [`MAGAZINE_BYTES`]
//! = 256 and a depot of 16 KiB, so that its own lists, magazines and depot are checked (CI
//! runs both ways).

use crate::block::drop_then_free;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

/// The memory of one magazine: a thread keeps at most two per layout. The pool before
/// magazines kept 128 KiB per thread in all, because 64 KiB served only 60% of an overwrite
/// loop's allocations on eight pairs, whose epochs fill in step and free together (callgrind,
/// 1k keys: 397 instructions per overwrite at 64 KiB, 369 at 128, 366 at 256); with the
/// depot, what two magazines cannot hold waits there instead of going back to the allocator.
const MAGAZINE_BYTES: usize = if cfg!(all(miri, dualmap_miri_pools)) {
    // A magazine still holds one block of the largest class.
    CLASSES * ALIGN
} else if cfg!(miri) {
    0
} else {
    32 * 1024
};

/// The most memory the [`DEPOT`] holds, in full magazines.
const DEPOT_BYTES: usize = if cfg!(all(miri, dualmap_miri_pools)) {
    // Room for what the other tests of a run leave (the depot outlives them), so that the
    // depot's own test still finds room for its class.
    64 * MAGAZINE_BYTES
} else if cfg!(miri) {
    0
} else {
    1024 * 1024
};

/// Layouts of 8, 16, ... `8 * CLASSES` bytes aligned to 8 are pooled, one list each. A value
/// node is its value aligned to 8, so this covers values up to 256 bytes; larger or more
/// strictly aligned nodes go straight to the allocator.
const CLASSES: usize = 32;
const ALIGN: usize = 8;

/// The list a layout is pooled on, if any.
const fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if layout.align() == ALIGN && size >= ALIGN && size <= CLASSES * ALIGN {
        Some(size / ALIGN - 1)
    } else {
        None
    }
}

/// The class a layout is pooled on, if it is pooled: not when its class has none, or nothing
/// is pooled (under Miri).
const fn pooled_as(layout: Layout) -> Option<usize> {
    match class_of(layout) {
        Some(class) if magazine_blocks(class) > 0 => Some(class),
        _ => None,
    }
}

/// The size of the blocks of `class`.
const fn class_size(class: usize) -> usize {
    (class + 1) * ALIGN
}

/// The layout of the blocks of `class`.
fn class_layout(class: usize) -> Layout {
    Layout::from_size_align(class_size(class), ALIGN).expect("a pooled layout")
}

/// How many blocks of `class` a full magazine holds (0 under Miri: nothing is pooled).
const fn magazine_blocks(class: usize) -> usize {
    MAGAZINE_BYTES / class_size(class)
}

/// The bytes of a full magazine of `class`.
const fn magazine_bytes(class: usize) -> usize {
    magazine_blocks(class) * class_size(class)
}

/// Frees `blocks` blocks of `class` linked from `top` (through each block's first word) to the
/// allocator.
///
/// # Safety
/// The list holds at least `blocks` unused blocks allocated with `class`'s layout, owned by
/// the caller and reached by nothing else.
unsafe fn free_list(class: usize, mut top: *mut u8, blocks: usize) {
    for _ in 0..blocks {
        // SAFETY: the caller's contract: `top` is the next of the list's blocks.
        unsafe {
            let next = top.cast::<*mut u8>().read();
            dealloc(top, class_layout(class));
            top = next;
        }
    }
}

/// The top of a full magazine, owned by the depot.
struct Magazine(NonNull<u8>);

// SAFETY: a magazine owns its blocks (unused allocations of the global allocator, which any
// thread may use or free); nothing else points at them.
unsafe impl Send for Magazine {}

/// Full magazines handed over by threads, for threads whose own magazines of that layout are
/// empty; and the bytes they hold in all.
struct Depot {
    magazines: [Vec<Magazine>; CLASSES],
    bytes: usize,
}

static DEPOT: Mutex<Depot> = Mutex::new(Depot {
    magazines: [const { Vec::new() }; CLASSES],
    bytes: 0,
});

/// How many magazines of each class the depot holds, written under its lock and read without
/// it, so that an allocation the depot cannot serve (a growing map's, nearly always) does not
/// lock it. A stale count only sends a thread to the lock, or to the allocator, once.
static DEPOSITED: [AtomicUsize; CLASSES] = [const { AtomicUsize::new(0) }; CLASSES];

/// The depot, locked.
fn lock_depot() -> std::sync::MutexGuard<'static, Depot> {
    // Nothing panics while the lock is held but an allocation failure, which aborts.
    DEPOT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands a full magazine of `class` to the depot, or frees its blocks when the depot is full.
fn deposit(class: usize, magazine: Magazine) {
    let bytes = magazine_bytes(class);
    let rejected = {
        let mut depot = lock_depot();
        if depot.bytes + bytes <= DEPOT_BYTES {
            depot.magazines[class].push(magazine);
            depot.bytes += bytes;
            DEPOSITED[class].fetch_add(1, Relaxed);
            None
        } else {
            Some(magazine)
        }
    };
    if let Some(Magazine(top)) = rejected {
        // SAFETY: a full magazine: `magazine_blocks(class)` unused blocks of `class`, owned
        // here.
        unsafe { free_list(class, top.as_ptr(), magazine_blocks(class)) };
    }
}

/// A full magazine of `class` from the depot, if it holds one.
fn withdraw(class: usize) -> Option<Magazine> {
    let mut depot = lock_depot();
    let magazine = depot.magazines[class].pop()?;
    depot.bytes -= magazine_bytes(class);
    DEPOSITED[class].fetch_sub(1, Relaxed);
    Some(magazine)
}

/// One thread's magazines of one class. Both are stacks of free blocks linked through each
/// block's first word; `previous` is either empty (null) or full.
struct Magazines {
    loaded: Cell<*mut u8>,
    loaded_blocks: Cell<usize>,
    previous: Cell<*mut u8>,
}

impl Magazines {
    /// Refills the empty loaded magazine of `class` with the previous one if it is full, else
    /// with a full one from the depot; false if neither has one.
    #[cold]
    #[inline(never)]
    fn reload(&self, class: usize) -> bool {
        let full = match NonNull::new(self.previous.replace(ptr::null_mut())) {
            Some(previous) => previous,
            None => match withdraw(class) {
                Some(magazine) => magazine.0,
                None => return false,
            },
        };
        self.loaded.set(full.as_ptr());
        self.loaded_blocks.set(magazine_blocks(class));
        true
    }

    /// Makes room in the full loaded magazine of `class`: it becomes the previous one, and the
    /// previous one, if full, goes to the depot.
    #[cold]
    #[inline(never)]
    fn unload(&self, class: usize) {
        if let Some(previous) = NonNull::new(self.previous.get()) {
            deposit(class, Magazine(previous));
        }
        self.previous.set(self.loaded.replace(ptr::null_mut()));
        self.loaded_blocks.set(0);
    }
}

/// One thread's pool: its magazines of each class.
struct Pool {
    classes: [Magazines; CLASSES],
}

impl Pool {
    /// A free block of `class`: from the loaded magazine, else the previous one, else the
    /// depot.
    #[inline]
    fn take(&self, class: usize) -> Option<NonNull<u8>> {
        let magazines = &self.classes[class];
        if magazines.loaded_blocks.get() == 0 {
            // The common empty case, a growing map's, decided without a call.
            if magazines.previous.get().is_null() && DEPOSITED[class].load(Relaxed) == 0 {
                return None;
            }
            if !magazines.reload(class) {
                return None;
            }
        }
        let top = magazines.loaded.get();
        // SAFETY: the loaded magazine holds `loaded_blocks` (at least 1) blocks, each an
        // allocation of at least 8 bytes aligned to 8 owned by this pool, whose first word
        // links the next.
        magazines
            .loaded
            .set(unsafe { top.cast::<*mut u8>().read() });
        magazines
            .loaded_blocks
            .set(magazines.loaded_blocks.get() - 1);
        NonNull::new(top)
    }

    /// Keeps `block` of `class`, a pooled class, for reuse.
    #[inline]
    fn give(&self, class: usize, block: NonNull<u8>) {
        let magazines = &self.classes[class];
        if magazines.loaded_blocks.get() == magazine_blocks(class) {
            magazines.unload(class);
        }
        // SAFETY: the caller hands over an unused allocation of at least 8 bytes aligned to 8.
        unsafe {
            block
                .as_ptr()
                .cast::<*mut u8>()
                .write(magazines.loaded.get())
        };
        magazines.loaded.set(block.as_ptr());
        magazines
            .loaded_blocks
            .set(magazines.loaded_blocks.get() + 1);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (class, magazines) in self.classes.iter().enumerate() {
            let previous = magazines.previous.get();
            let previous_blocks = if previous.is_null() {
                0
            } else {
                magazine_blocks(class)
            };
            // SAFETY: this pool owns both magazines, of `loaded_blocks` and of a full
            // magazine's (or no) blocks of this class; nothing reaches them once it is gone.
            unsafe {
                free_list(class, magazines.loaded.get(), magazines.loaded_blocks.get());
                free_list(class, previous, previous_blocks);
            }
        }
    }
}

thread_local! {
    static POOL: Pool = const {
        Pool {
            classes: [const {
                Magazines {
                    loaded: Cell::new(ptr::null_mut()),
                    loaded_blocks: Cell::new(0),
                    previous: Cell::new(ptr::null_mut()),
                }
            }; CLASSES],
        }
    };
}

/// The layout a `T` is allocated with: its own, or, for a zero-sized `T` (a node of a
/// zero-sized value), one alignment's worth of bytes, so that every node has an address of
/// its own.
const fn layout_of<T>() -> Layout {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        match Layout::from_size_align(layout.align(), layout.align()) {
            Ok(padded) => padded,
            Err(_) => panic!("an alignment is a valid size"),
        }
    } else {
        layout
    }
}

/// Uninitialised memory for one `T`: pooled memory of this thread if it has some.
#[inline]
pub(crate) fn allocate<T>() -> NonNull<T> {
    if let Some(class) = const { pooled_as(layout_of::<T>()) } {
        if let Ok(Some(block)) = POOL.try_with(|pool| pool.take(class)) {
            return block.cast();
        }
    }
    allocate_unpooled()
}

/// Memory for one `T` from the allocator.
#[inline]
fn allocate_unpooled<T>() -> NonNull<T> {
    let layout = const { layout_of::<T>() };
    // SAFETY: `layout_of` is never zero-sized.
    match NonNull::new(unsafe { alloc(layout) }) {
        Some(block) => block.cast(),
        None => handle_alloc_error(layout),
    }
}

/// Frees memory from [`allocate`] whose `T` was dropped or moved out: into this thread's pool
/// (whose surplus goes to the depot, and the depot's to the allocator), or to the allocator
/// when the pool is gone (at thread exit) or nothing is pooled (under Miri, or a layout that
/// no class holds).
///
/// # Safety
/// `block` came from `allocate::<T>()`, is not used afterwards, and holds no live `T`.
pub(crate) unsafe fn release<T>(block: NonNull<T>) {
    let layout = const { layout_of::<T>() };
    let pooled = const { pooled_as(layout_of::<T>()) }
        .is_some_and(|class| POOL.try_with(|pool| pool.give(class, block.cast())).is_ok());
    if !pooled {
        // SAFETY: the caller's contract: `block` came from `allocate::<T>()`, which allocates
        // with this layout (or took a block pooled under it), and is unused now.
        unsafe { dealloc(block.as_ptr().cast(), layout) };
    }
}

/// Drops the `T` in a block from [`allocate`] and frees the block with [`release`], also
/// when the `T`'s drop panics: the block is then released while unwinding.
///
/// # Safety
/// `block` came from `allocate::<T>()`, holds an initialised `T`, and nothing reaches it any
/// more.
pub(crate) unsafe fn destroy<T>(block: NonNull<T>) {
    // SAFETY: the caller's contract.
    unsafe {
        drop_then_free(block, |block| {
            // SAFETY: from `allocate::<T>()` (the caller's contract), its `T` gone:
            // `drop_then_free` frees it after the drop, once.
            release(block)
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(not(miri), dualmap_miri_pools))]
    fn a_released_block_is_reused_by_the_next_allocation_of_its_size() {
        let first = allocate::<[u64; 3]>();
        // SAFETY: allocated above, holds no value.
        unsafe { release(first) };
        let second = allocate::<[u64; 3]>();
        assert_eq!(first, second);
        let other_size = allocate::<[u64; 2]>();
        assert_ne!(other_size.cast::<u8>(), first.cast::<u8>());
        // SAFETY: allocated above, hold no values.
        unsafe {
            release(second);
            release(other_size);
        }
    }

    /// Releases `count` blocks of `T` fresh from the allocator (not from a pool) on this
    /// thread.
    #[cfg(any(not(miri), dualmap_miri_pools))]
    fn release_fresh<T>(count: usize) {
        let layout = const { layout_of::<T>() };
        let blocks: Vec<_> = (0..count)
            // SAFETY: `layout_of` is never zero-sized.
            .map(|_| {
                NonNull::new(unsafe { alloc(layout) })
                    .expect("allocated")
                    .cast::<T>()
            })
            .collect();
        for block in blocks {
            // SAFETY: allocated with the layout `allocate::<T>` uses, holds no value,
            // released once.
            unsafe { release(block) };
        }
    }

    /// This thread's loaded blocks of `class` and whether its previous magazine is full.
    fn held(class: usize) -> (usize, bool) {
        POOL.with(|pool| {
            let magazines = &pool.classes[class];
            (
                magazines.loaded_blocks.get(),
                !magazines.previous.get().is_null(),
            )
        })
    }

    /// Runs `f` on a thread of its own, whose pool starts empty, and returns its result.
    #[cfg(any(not(miri), dualmap_miri_pools))]
    fn on_a_new_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::spawn(f).join().expect("no panic")
    }

    // Each test below uses a layout no other test of the crate allocates: the depot is
    // shared by every thread of the test binary.

    #[test]
    #[cfg(any(not(miri), dualmap_miri_pools))]
    fn a_thread_keeps_two_magazines_and_its_surplus_feeds_another_thread() {
        type Block = [u64; 29];
        let class = class_of(Layout::new::<Block>()).expect("pooled");
        let capacity = magazine_blocks(class);
        on_a_new_thread(move || {
            release_fresh::<Block>(3 * capacity + 1);
            assert_eq!(held(class), (1, true));
            assert!(DEPOSITED[class].load(Relaxed) >= 1, "no magazine deposited");
        });
        let (loaded, previous) = on_a_new_thread(move || {
            let block = allocate::<Block>();
            // A new thread holds nothing but what it took from the depot.
            let held = held(class);
            // SAFETY: allocated above, holds no value, released once.
            unsafe { release(block) };
            held
        });
        assert_eq!((loaded, previous), (capacity - 1, false));
    }

    /// A thread with two full magazines whose releases and allocations alternate (one in,
    /// two out, one in) visits the depot once, for its first release, and never again.
    #[test]
    #[cfg(any(not(miri), dualmap_miri_pools))]
    fn alternating_at_the_boundary_stays_off_the_depot() {
        type Block = [u64; 27];
        let class = class_of(Layout::new::<Block>()).expect("pooled");
        let capacity = magazine_blocks(class);
        on_a_new_thread(move || {
            release_fresh::<Block>(2 * capacity);
            assert_eq!(held(class), (capacity, true));
            let in_depot = || lock_depot().magazines[class].len();
            assert_eq!(in_depot(), 0);
            let mut kept = Vec::new();
            for round in 0..3 * capacity {
                release_fresh::<Block>(1);
                assert_eq!(in_depot(), 1, "round {round}");
                let first = allocate::<Block>();
                kept.push(allocate::<Block>());
                assert_eq!(in_depot(), 1, "round {round}");
                // SAFETY: allocated above, holds no value, released once.
                unsafe { release(first) };
            }
            for block in kept {
                // SAFETY: allocated above, holds no value, released once.
                unsafe { release(block) };
            }
        });
    }

    #[test]
    #[cfg(any(not(miri), dualmap_miri_pools))]
    fn the_depot_keeps_at_most_its_budget_and_frees_the_rest() {
        type Block = [u64; 31];
        let class = class_of(Layout::new::<Block>()).expect("pooled");
        on_a_new_thread(move || {
            release_fresh::<Block>(
                (DEPOT_BYTES / magazine_bytes(class) + 4) * magazine_blocks(class),
            );
            let depot = lock_depot();
            assert!(
                depot.bytes <= DEPOT_BYTES,
                "{} bytes in the depot",
                depot.bytes
            );
            assert!(depot.magazines[class].len() * magazine_bytes(class) <= DEPOT_BYTES);
            assert!(!depot.magazines[class].is_empty());
        });
    }

    /// Under Miri every released block goes back to the allocator, where Miri tracks it.
    #[test]
    #[cfg(all(miri, not(dualmap_miri_pools)))]
    fn under_miri_nothing_is_pooled() {
        let block = allocate::<[u64; 3]>();
        // SAFETY: allocated above, holds no value, released once.
        unsafe { release(block) };
        assert_eq!(held(2), (0, false));
        assert_eq!(lock_depot().bytes, 0);
    }

    #[test]
    fn unpooled_layouts_go_to_the_allocator() {
        assert_eq!(class_of(Layout::new::<[u64; 100]>()), None);
        assert_eq!(class_of(Layout::new::<u128>()), None);
        assert_eq!(class_of(Layout::new::<[u64; 3]>()), Some(2));
        let big = allocate::<[u64; 100]>();
        // SAFETY: allocated above, holds no value.
        unsafe { release(big) };
    }
}
