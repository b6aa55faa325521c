//! The memory that the [node pool](crate::node_pool) hands out when it has no free block of a
//! size: blocks carved one after another from 16 KiB chunks, instead of one `malloc` each.
//!
//! Why: a map that grows allocates an entry per new key, and its pools are empty (nothing was
//! freed yet), so every entry came from glibc's `malloc`, whose path for a size its
//! per-thread cache does not hold was 186 of a new key's 680 instructions (callgrind, 1k
//! keys). Carving is a bump of an offset. And an entry's hot part (its key, slot and first
//! value, which a hit reads) can be kept inside one cache line: `malloc` puts 40-byte entries
//! 48 bytes apart, so that one in four straddles two lines, and a hit on it fetches one line
//! more.
//!
//! Each thread carves from a chunk of its own; the blocks then go wherever the pool sends
//! them, and may come back from any thread. A chunk is aligned to its size, so a block's
//! chunk is its address rounded down, and the chunk's first line is its header: a count of
//! its blocks not yet freed. The count starts at [`CHUNK_BYTES`], more than the chunk can
//! hold blocks; the carving thread counts what it carved, and when it moves on it takes off
//! what it did not carve, so the count reaches 0 only after the carver has moved on and every
//! carved block has been freed, and the thread that takes it to 0 frees the chunk. So nothing
//! is written to the header per carved block, and one atomic decrement per freed block.
//! Blocks are freed here only when the pool lets go of them (its depot is full, or a thread
//! exits); the pool's bounds say how much it keeps, and a chunk lives while any of its blocks
//! is in use or pooled.
//!
//! A thread that exits abandons its chunk. An allocation with no thread-local state left (in
//! another thread-local's destructor) carves from a shared chunk under a lock instead.

use crate::sync::AtomicUsize;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::AcqRel;
use std::sync::Mutex;

/// The size of a chunk, and its alignment.
pub(crate) const CHUNK_BYTES: usize = 16 * 1024;

/// The bytes before a chunk's first block: its header, alone on its cache line, since frees
/// from every thread write its count.
const HEADER_BYTES: usize = 64;

/// A cache line, which [`carve`] keeps a block's hot part within.
const LINE: usize = 64;

/// The longest hot part [`carve`] keeps within one line: moving a block to the next line
/// wastes up to its hot part's length, so a 40-byte entry of `u64`s (24 hot bytes) costs 42.7
/// bytes, three to two lines, where an entry of `String`s (72 bytes, 56 hot) would cost 96:
/// longer hot parts are carved where they fall, as the allocator would.
const MAX_HOT: usize = LINE / 2;

/// The largest block carved: larger ones would waste too much of a chunk's end.
pub(crate) const MAX_BLOCK: usize = 256;

/// A chunk's header.
struct Header {
    /// `CHUNK_BYTES` less the blocks freed, less what its carver did not carve once it moved
    /// on.
    outstanding: AtomicUsize,
}

impl Header {
    fn new() -> Self {
        Self {
            outstanding: AtomicUsize::new(CHUNK_BYTES),
        }
    }

    /// Takes `count` off the outstanding count; true if that was the rest, and the caller
    /// must free the chunk. `AcqRel`: every block's last use happens before its free's
    /// decrement, so the one that reaches 0 comes after all of them (`Arc`'s drop).
    fn take(&self, count: usize) -> bool {
        self.outstanding.fetch_sub(count, AcqRel) == count
    }
}

fn chunk_layout() -> Layout {
    Layout::from_size_align(CHUNK_BYTES, CHUNK_BYTES).expect("a valid layout")
}

/// The chunk a thread carves from, and where its next block may start; null before the first
/// block.
struct Carver {
    chunk: Cell<*mut u8>,
    next: Cell<usize>,
    carved: Cell<usize>,
}

impl Carver {
    const fn new() -> Self {
        Self {
            chunk: Cell::new(ptr::null_mut()),
            next: Cell::new(CHUNK_BYTES),
            carved: Cell::new(0),
        }
    }

    /// A block of `size` bytes aligned to 8, whose first `hot` bytes share a cache line if
    /// there are at most [`MAX_HOT`] of them.
    #[inline]
    fn carve(&self, size: usize, hot: usize) -> NonNull<u8> {
        let mut start = self.next.get();
        if hot <= MAX_HOT && start % LINE + hot > LINE {
            start = start.next_multiple_of(LINE);
        }
        if start + size > CHUNK_BYTES {
            self.start_chunk();
            start = HEADER_BYTES;
        }
        self.next.set(start + size);
        self.carved.set(self.carved.get() + 1);
        // SAFETY: `start + size <= CHUNK_BYTES`: the block lies inside the chunk, after its
        // header.
        let block = unsafe { self.chunk.get().add(start) };
        // SAFETY: inside a live allocation, so not null.
        unsafe { NonNull::new_unchecked(block) }
    }

    /// Moves on from the current chunk (if any) to a fresh one.
    #[cold]
    #[inline(never)]
    fn start_chunk(&self) {
        self.abandon();
        // SAFETY: the layout is not zero-sized.
        let chunk = unsafe { alloc(chunk_layout()) };
        if chunk.is_null() {
            handle_alloc_error(chunk_layout());
        }
        // SAFETY: a fresh allocation of `CHUNK_BYTES`, aligned to them: room for the header.
        unsafe { chunk.cast::<Header>().write(Header::new()) };
        self.chunk.set(chunk);
        self.carved.set(0);
    }

    /// Takes off the current chunk's count what this carver will not carve from it.
    fn abandon(&self) {
        let chunk = self.chunk.replace(ptr::null_mut());
        if !chunk.is_null() {
            let uncarved = CHUNK_BYTES - self.carved.get();
            // SAFETY: the chunk is live: its count includes what this carver did not carve.
            unsafe { release(chunk, uncarved) };
        }
        self.next.set(CHUNK_BYTES);
    }
}

impl Drop for Carver {
    fn drop(&mut self) {
        self.abandon();
    }
}

thread_local! {
    static CARVER: Carver = const { Carver::new() };
}

/// The carver of allocations made where this thread's is gone (at thread exit).
struct SharedCarver(Carver);

// SAFETY: used only under `SHARED`'s lock, so by one thread at a time; its chunk pointer
// refers to memory any thread may use.
unsafe impl Send for SharedCarver {}

static SHARED: Mutex<SharedCarver> = Mutex::new(SharedCarver(Carver::new()));

/// Memory for a block of `size` bytes aligned to 8 (`size` a multiple of 8 from 8 to
/// [`MAX_BLOCK`]), whose first `hot` bytes lie in one cache line if there are at most
/// [`MAX_HOT`] of them; freed with [`free`].
#[inline]
pub(crate) fn carve(size: usize, hot: usize) -> NonNull<u8> {
    debug_assert!(size % 8 == 0 && (8..=MAX_BLOCK).contains(&size));
    CARVER
        .try_with(|carver| carver.carve(size, hot))
        .unwrap_or_else(|_| {
            let shared = SHARED
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shared.0.carve(size, hot)
        })
}

/// Frees a block from [`carve`]; the last block of a chunk its carver has moved on from frees
/// the chunk.
///
/// # Safety
/// `block` came from `carve`, is freed once, and is not used afterwards.
pub(crate) unsafe fn free(block: NonNull<u8>) {
    let chunk = block
        .as_ptr()
        .map_addr(|address| address & !(CHUNK_BYTES - 1));
    // SAFETY: the caller's contract: the block lies in a live chunk, which starts at its
    // address rounded down to `CHUNK_BYTES` (chunks are aligned to their size, and no block
    // starts at a chunk's start), and its count includes this block.
    unsafe { release(chunk, 1) };
}

/// Takes `count` off the chunk's outstanding count, and frees it if that was the rest.
///
/// # Safety
/// `chunk` is a live chunk whose count includes `count`.
unsafe fn release(chunk: *mut u8, count: usize) {
    // SAFETY: the caller's contract: the header is initialised and stays so while its count
    // is above 0.
    let header = unsafe { &*chunk.cast::<Header>() };
    if header.take(count) {
        // SAFETY: the count reached 0: the carver moved on and every carved block was freed,
        // so nothing uses the chunk; allocated with this layout.
        unsafe { dealloc(chunk, chunk_layout()) };
    }
}

#[cfg(all(test, not(dualmap_loom)))]
mod tests {
    use super::*;

    /// Carves blocks on a thread of its own, so that its chunk starts fresh.
    fn on_a_new_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::spawn(f).join().expect("no panic")
    }

    #[test]
    fn blocks_follow_each_other_and_keep_their_hot_part_in_one_line() {
        on_a_new_thread(|| {
            let blocks: Vec<NonNull<u8>> = (0..64).map(|_| carve(40, 24)).collect();
            for pair in blocks.windows(2) {
                let (a, b) = (pair[0].as_ptr() as usize, pair[1].as_ptr() as usize);
                assert!(
                    b == a + 40 || (b % LINE == 0 && b - a < 40 + 24),
                    "{a:x} {b:x}"
                );
            }
            for block in &blocks {
                let address = block.as_ptr() as usize;
                assert_eq!(address % 8, 0);
                assert_eq!(address / LINE, (address + 23) / LINE, "hot part straddles");
                assert_ne!(address % CHUNK_BYTES, 0, "a block at a chunk's header");
            }
            // Three blocks of 40 in every two lines.
            let span = blocks[63].as_ptr() as usize - blocks[0].as_ptr() as usize;
            assert!(span <= 64 * 128 / 3 + 128, "{span}");
            for block in blocks {
                // SAFETY: carved above, freed once.
                unsafe { free(block) };
            }
        });
    }

    /// A hot part longer than `MAX_HOT` is not moved: blocks follow each other at their size.
    #[test]
    fn a_long_hot_part_is_carved_where_it_falls() {
        on_a_new_thread(|| {
            let blocks: Vec<NonNull<u8>> = (0..16).map(|_| carve(72, 56)).collect();
            for pair in blocks.windows(2) {
                assert_eq!(pair[1].as_ptr() as usize - pair[0].as_ptr() as usize, 72);
            }
            for block in blocks {
                // SAFETY: carved above, freed once.
                unsafe { free(block) };
            }
        });
    }

    /// Blocks carved on one thread, to be freed on another.
    struct Blocks(Vec<NonNull<u8>>);

    // SAFETY: carved memory belongs to no thread; the test frees each block once.
    unsafe impl Send for Blocks {}

    /// The blocks of a chunk are usable memory (Miri checks each write), and a chunk is
    /// freed once its carver has moved on (here: its thread exited) and its last block is
    /// freed, on whichever thread (Miri reports a chunk leaked, or freed while in use).
    #[test]
    fn a_chunk_is_freed_after_its_carver_moves_on_and_its_last_block_is_freed() {
        let blocks = on_a_new_thread(|| {
            // More than a chunk holds, so that the carver moves on once.
            let count = CHUNK_BYTES / MAX_BLOCK + 3;
            let blocks: Vec<NonNull<u8>> = (0..count)
                .map(|i| {
                    let block = carve(MAX_BLOCK, 0);
                    // SAFETY: `MAX_BLOCK` fresh bytes aligned to 8.
                    unsafe {
                        block
                            .cast::<[u64; MAX_BLOCK / 8]>()
                            .write([i as u64; MAX_BLOCK / 8])
                    };
                    block
                })
                .collect();
            let chunks: std::collections::HashSet<usize> = blocks
                .iter()
                .map(|block| block.as_ptr() as usize & !(CHUNK_BYTES - 1))
                .collect();
            assert_eq!(chunks.len(), 2);
            Blocks(blocks)
        });
        for (i, block) in blocks.0.into_iter().enumerate() {
            // SAFETY: written above, not freed yet.
            let first = unsafe { block.cast::<u64>().read() };
            assert_eq!(first, i as u64);
            // SAFETY: carved above, freed once.
            unsafe { free(block) };
        }
    }

    /// Another thread frees blocks (reading each first) while their carver carves on past
    /// its chunk and exits: each chunk is freed once, after its last block (Miri checks
    /// the ordering: a chunk freed early is a use after free of the block being read).
    #[test]
    fn frees_on_another_thread_race_the_carver_moving_on() {
        let (send, receive) = std::sync::mpsc::channel::<Blocks>();
        let freer = std::thread::spawn(move || {
            for blocks in receive {
                for block in blocks.0 {
                    // SAFETY: written by the carver before sending, not freed yet.
                    assert_eq!(unsafe { block.cast::<u64>().read() }, 7);
                    // SAFETY: carved by the other thread, freed once, here.
                    unsafe { free(block) };
                }
            }
        });
        on_a_new_thread(move || {
            let per_chunk = CHUNK_BYTES / MAX_BLOCK;
            for _ in 0..3 * per_chunk / 8 {
                let blocks: Vec<NonNull<u8>> = (0..8)
                    .map(|_| {
                        let block = carve(MAX_BLOCK, 0);
                        // SAFETY: fresh memory of `MAX_BLOCK` bytes aligned to 8.
                        unsafe { block.cast::<u64>().write(7) };
                        block
                    })
                    .collect();
                send.send(Blocks(blocks)).expect("the freer runs");
            }
        });
        freer.join().expect("no panic");
    }

    #[test]
    fn the_thread_exit_carver_and_the_shared_one_hand_out_distinct_blocks() {
        let shared = {
            let carver = SHARED.lock().expect("not poisoned");
            carver.0.carve(16, 0)
        };
        let local = carve(16, 0);
        assert_ne!(shared, local);
        // SAFETY: carved above, freed once.
        unsafe {
            free(shared);
            free(local);
        }
    }
}

/// The chunk count's race under loom: a block freed on another thread, the carver's own
/// block freed and the carver moving on, in every order. Exactly one of them frees the chunk,
/// and every block's last use happens before it (loom reports the "free", which writes every
/// block, racing a use otherwise; with `Relaxed` decrements it does).
#[cfg(all(test, dualmap_loom))]
mod loom_models {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    /// A chunk of two carved blocks, modelled as cells, under a header whose count a carver
    /// that carved both would have.
    struct Chunk {
        header: Header,
        blocks: [UnsafeCell<u64>; 2],
    }

    impl Chunk {
        /// Frees the chunk if `count` was the rest: writes every block, as a reuse by the
        /// allocator would. Returns whether it did.
        fn release(&self, count: usize) -> bool {
            let last = self.header.take(count);
            if last {
                for block in &self.blocks {
                    // SAFETY: a model cell; loom checks that no other access races this.
                    block.with_mut(|block| unsafe { *block = 0 });
                }
            }
            last
        }

        /// The last use of block `i` by its holder, then its free.
        fn use_and_free(&self, i: usize) -> bool {
            // SAFETY: a model cell, owned by this holder until freed.
            self.blocks[i].with_mut(|block| unsafe { *block = 7 });
            self.release(1)
        }
    }

    #[test]
    fn the_last_release_of_a_chunk_frees_it_after_every_blocks_last_use() {
        loom::model(|| {
            let chunk = Arc::new(Chunk {
                header: Header::new(),
                blocks: [UnsafeCell::new(0), UnsafeCell::new(0)],
            });
            let other = {
                let chunk = chunk.clone();
                loom::thread::spawn(move || chunk.use_and_free(1))
            };
            let mut freed = usize::from(chunk.use_and_free(0));
            // The carver moves on: it carved two blocks.
            freed += usize::from(chunk.release(CHUNK_BYTES - 2));
            freed += usize::from(other.join().expect("no panic"));
            assert_eq!(freed, 1, "exactly one release frees the chunk");
        });
    }
}
