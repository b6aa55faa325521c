//! Values that live in memory of their own (a value node from the node pool, an entry from its
//! pair's arena): dropping one and freeing its memory, also when its `Drop` panics.

use std::ptr::{self, NonNull};

/// Drops the `T` at `block` in place, then calls `free` on the block, once. If the `T`'s drop
/// panics, `free` still runs, while unwinding: drop glue drops every field of the `T` even
/// when its `Drop` or one field's panics, and a guard frees the block after that. `free` is
/// a closure, not a function pointer, so that it is inlined (as a pointer it was not: 16 more
/// instructions an overwrite in the cost model, 33 a new key).
///
/// # Safety
/// `block` holds an initialised `T` that nothing reaches any more.
pub(crate) unsafe fn drop_then_free<T, F: FnMut(NonNull<T>)>(block: NonNull<T>, free: F) {
    struct Free<T, F: FnMut(NonNull<T>)> {
        block: NonNull<T>,
        free: F,
    }
    impl<T, F: FnMut(NonNull<T>)> Drop for Free<T, F> {
        fn drop(&mut self) {
            (self.free)(self.block);
        }
    }
    let guard = Free { block, free };
    // SAFETY: the caller's contract: an initialised `T` that nothing reaches.
    unsafe { ptr::drop_in_place(block.as_ptr()) };
    drop(guard);
}
