//! A per-thread pool of freed value-node memory, so that an overwrite's allocation is usually
//! a pop from the writing thread's own list instead of a call into the global allocator.
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
//! Each thread keeps at most [`POOL_BYTES`] of pooled memory, handed back to the allocator when
//! the thread exits (a thread that used a map keeps its pool after the map is gone). Memory is
//! pooled by exact layout, so it is handed back with the layout it was allocated with.
//!
//! Under Miri nothing is pooled: a pooled block stays allocated, so a use after free through
//! it would be invisible to Miri; every release goes to the allocator there instead.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::Cell;
use std::ptr::{self, NonNull};

/// The most memory one thread keeps pooled. 64 KiB served only 60% of an overwrite loop's
/// allocations on eight pairs, whose epochs fill in step and free together; 128 KiB served most
/// of them (callgrind, 1k keys: 397 instructions per overwrite at 64 KiB, 369 at 128, 366 at 256).
const POOL_BYTES: usize = if cfg!(miri) { 0 } else { 128 * 1024 };

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

/// One thread's pool: for each class the top of a stack of free blocks, linked through each
/// block's first word.
struct Pool {
    tops: [Cell<*mut u8>; CLASSES],
    bytes: Cell<usize>,
}

impl Pool {
    fn take(&self, class: usize, size: usize) -> Option<NonNull<u8>> {
        let top = NonNull::new(self.tops[class].get())?;
        // SAFETY: every block on the stack is an allocation of at least 8 bytes, aligned to 8,
        // owned by this pool, whose first word `give` wrote.
        let next = unsafe { top.as_ptr().cast::<*mut u8>().read() };
        self.tops[class].set(next);
        self.bytes.set(self.bytes.get() - size);
        Some(top)
    }

    /// Keeps `block` for reuse; false, leaving it to the caller, when the pool is full.
    fn give(&self, class: usize, size: usize, block: NonNull<u8>) -> bool {
        if self.bytes.get() + size > POOL_BYTES {
            return false;
        }
        // SAFETY: the caller hands over an unused allocation of `size` (at least 8) bytes
        // aligned to 8.
        unsafe {
            block
                .as_ptr()
                .cast::<*mut u8>()
                .write(self.tops[class].get())
        };
        self.tops[class].set(block.as_ptr());
        self.bytes.set(self.bytes.get() + size);
        true
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for class in 0..CLASSES {
            let layout = Layout::from_size_align((class + 1) * ALIGN, ALIGN).expect("valid");
            while let Some(block) = self.take(class, layout.size()) {
                // SAFETY: pooled blocks were allocated with exactly this layout (`class_of`).
                unsafe { dealloc(block.as_ptr(), layout) };
            }
        }
    }
}

thread_local! {
    static POOL: Pool = const {
        Pool {
            tops: [const { Cell::new(ptr::null_mut()) }; CLASSES],
            bytes: Cell::new(0),
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
pub(crate) fn allocate<T>() -> NonNull<T> {
    let layout = const { layout_of::<T>() };
    let pooled = class_of(layout).and_then(|class| {
        POOL.try_with(|pool| pool.take(class, layout.size()))
            .ok()
            .flatten()
    });
    let block = pooled.or_else(|| {
        // SAFETY: `layout_of` is never zero-sized.
        NonNull::new(unsafe { alloc(layout) })
    });
    match block {
        Some(block) => block.cast(),
        None => handle_alloc_error(layout),
    }
}

/// Frees memory from [`allocate`] whose `T` was dropped or moved out: into this thread's pool,
/// or to the allocator when the pool is full or (at thread exit) gone.
///
/// # Safety
/// `block` came from `allocate::<T>()`, is not used afterwards, and holds no live `T`.
pub(crate) unsafe fn release<T>(block: NonNull<T>) {
    let layout = const { layout_of::<T>() };
    let pooled = class_of(layout).is_some_and(|class| {
        POOL.try_with(|pool| pool.give(class, layout.size(), block.cast()))
            .unwrap_or(false)
    });
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
    struct Release<T>(NonNull<T>);
    impl<T> Drop for Release<T> {
        fn drop(&mut self) {
            // SAFETY: the `T` is dropped (or being unwound from) and the block unreachable
            // (the caller's contract).
            unsafe { release(self.0) };
        }
    }
    let release = Release(block);
    // SAFETY: the caller's contract. Drop glue drops every field of the `T` even when its
    // `Drop` or one field's panics.
    unsafe { ptr::drop_in_place(block.as_ptr()) };
    drop(release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(miri))]
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

    #[test]
    #[cfg(not(miri))]
    fn the_pool_keeps_at_most_its_budget_and_frees_the_rest() {
        let blocks: Vec<_> = (0..2 * POOL_BYTES / 32)
            .map(|_| allocate::<[u64; 4]>())
            .collect();
        for &block in &blocks {
            // SAFETY: allocated above, holds no value, released once.
            unsafe { release(block) };
        }
        let pooled = POOL.with(|pool| pool.bytes.get());
        assert!(pooled <= POOL_BYTES, "{pooled} bytes pooled");
        assert!(pooled >= POOL_BYTES - 32, "{pooled} bytes pooled");
    }

    /// Under Miri every released block goes back to the allocator, where Miri tracks it.
    #[test]
    #[cfg(miri)]
    fn under_miri_nothing_is_pooled() {
        let block = allocate::<[u64; 3]>();
        // SAFETY: allocated above, holds no value, released once.
        unsafe { release(block) };
        assert_eq!(POOL.with(|pool| pool.bytes.get()), 0);
        assert!(POOL.with(|pool| pool.tops.iter().all(|top| top.get().is_null())));
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
