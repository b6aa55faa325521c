//! Entry memory of a read/dirty pair's own: blocks carved from chunks the pair allocates,
//! handed out under the pair's mutex and freed from any thread.
//!
//! Why: a map that grows allocates an entry per new key, and nothing has been freed yet for
//! a pool to reuse, so every entry came from glibc's `malloc`: 176 of a new key's 660
//! instructions (callgrind, cost model, 1k keys). And `malloc` puts a 40-byte entry of `u64`s
//! 48 bytes after the last, at 16-byte boundaries, so one in four has its hot part (key, slot
//! and first value: the 24 bytes a hit reads) across two cache lines, and a hit on it fetches
//! a line more: 3.25 lines a hit at 1M keys. Here a block whose hot part is at most
//! [`MAX_HOT`] bytes is carved where that part lies in one line.
//!
//! Why per pair, not per thread: a per-thread slab with the node pool's magazines (built and
//! reverted, 7817717) let freed blocks scattered over every chunk pin them all, each thread's
//! and each map's: up to 3x the live memory of `malloc` on maps that replace their keys, and
//! chunks left behind by maps long dropped. A pair's arena belongs to that pair: its freed
//! blocks are reused by its own next new keys, whatever thread freed them, and every chunk
//! goes back to the allocator when the pair and the last of its entries are gone. What it
//! keeps meanwhile is the pair's peak of entries, as its hash tables keep their peak capacity.
//!
//! How:
//! - The owner (the pair, under its mutex) allocates: it pops a block from its own free list;
//!   when that is empty it takes every block freed since, at once, from the shared stack;
//!   when that is empty too it carves the next block from its chunk, and when the chunk is
//!   full it allocates the next. Chunks grow from [`MIN_CHUNK`] bytes (a few entries) by
//!   half of the arena's size each time, to [`MAX_CHUNK`], so a small map's pairs take
//!   little and the unfilled end of the last chunk is at most a third of an arena.
//! - Any thread frees: it pushes the block onto the shared stack (a Treiber stack that is
//!   only pushed and taken whole, so no ABA: a push whose top was taken and pushed again
//!   meanwhile still links a valid list), then drops the block's count.
//! - A block finds its arena through its page: chunks are aligned to [`PAGE`], and each page
//!   (or each chunk smaller than a page) starts with the address of its arena's shared part.
//! - The shared part counts the owner (1) and every block handed out and not yet freed,
//!   `Arc`'s protocol: whoever takes the count to 0 frees every chunk and the shared part.
//!   So the arena outlives its pair while a snapshot or a `Ref` still holds an entry.

use crate::block::drop_then_free;
use crate::sync::{AtomicPtr, AtomicUsize, UseCheck};
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// The alignment of chunks, and the unit larger ones are made of: each page starts with a
/// header, so that a block's arena is one load from its address rounded down.
pub(crate) const PAGE: usize = 1024;

/// The smallest first chunk: room for about five entries of `u64`s, so that a pair holding a
/// key or two (a small map with many pairs) takes 256 bytes, not a page.
pub(crate) const MIN_CHUNK: usize = 256;

/// The largest chunk (64 KiB, about 1,500 entries of `u64`s): larger chunks save little, and
/// leave more of a pair's last chunk unused.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;

/// A cache line, which a block's hot part is kept within.
const LINE: usize = 64;

/// The longest hot part kept within one line: moving a block to the next line wastes up to
/// its hot part's length, so a 40-byte entry of `u64`s (24 hot bytes) costs about 43 bytes
/// where `malloc` takes 48, but an entry of `String`s (72 bytes, 56 hot) would cost 96:
/// longer hot parts are carved where they fall, as the allocator would.
pub(crate) const MAX_HOT: usize = LINE / 2;

/// The largest block carved, and the strictest alignment: larger or more strictly aligned
/// types go to the global allocator (see [`Arena`]).
const MAX_BLOCK: usize = 256;
const MAX_ALIGN: usize = 16;

/// Every page starts with the address of its arena's [`Shared`].
const PAGE_HEADER: usize = size_of::<usize>();

/// A chunk's first page also holds the previous chunk's address and the chunk's size,
/// so that the chunks form a list for the arena's end.
const CHUNK_HEADER: usize = 3 * size_of::<usize>();

/// The part of an arena that frees from any thread reach.
struct Shared {
    /// 1 while the owner lives, plus every block handed out and not freed yet.
    count: AtomicUsize,
    /// Blocks freed since the owner last took them, linked through their first word.
    freed: AtomicPtr<u8>,
    /// The newest chunk (each links the previous one); written by the owner only, read by
    /// whoever ends the arena.
    chunks: AtomicPtr<u8>,
    /// Lets loom check that the end comes after every free's last use of this part.
    uses: UseCheck,
}

impl Shared {
    /// Drops one count; true if it was the last, and the caller must end the arena.
    /// `AcqRel`, as `Arc`'s drop: every block's last use comes before its count is dropped,
    /// so the last drop comes after all of them.
    fn release(&self) -> bool {
        self.count.fetch_sub(1, AcqRel) == 1
    }
}

/// Frees every chunk of an arena whose count reached 0, and its shared part.
///
/// # Safety
/// `shared` came from [`RawArena`]'s `Box`, and the caller's [`Shared::release`] returned
/// true: no block of it is in use, and its owner is gone.
unsafe fn end(shared: NonNull<Shared>) {
    // SAFETY: the caller's contract: the last count is gone, so nothing else reaches it.
    let shared = unsafe { Box::from_raw(shared.as_ptr()) };
    shared.uses.ended();
    let mut chunk = shared.chunks.load(Relaxed);
    while !chunk.is_null() {
        // SAFETY: every chunk of the list is live until freed here, and its first page's
        // header holds its predecessor and its size (`RawArena::start_chunk`).
        unsafe {
            let header = chunk.cast::<usize>();
            let previous = header.add(1).cast::<*mut u8>().read();
            let bytes = header.add(2).read();
            dealloc(chunk, chunk_layout(bytes));
            chunk = previous;
        }
    }
}

fn chunk_layout(bytes: usize) -> Layout {
    Layout::from_size_align(bytes, PAGE).expect("a chunk's layout")
}

/// What an arena carves: blocks of one layout (at least a pointer's size, at most
/// [`MAX_BLOCK`] bytes aligned to at most [`MAX_ALIGN`]), whose first `hot` bytes lie in one
/// line if there are at most [`MAX_HOT`] of them. Passed to each call rather than kept in the
/// arena: for an [`Arena`] it is a constant of its type, which the carving folds into its
/// arithmetic.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    block: Layout,
    hot: usize,
}

impl Shape {
    pub(crate) const fn new(block: Layout, hot: usize) -> Self {
        assert!(carvable(block) && hot <= block.size());
        Self { block, hot }
    }
}

/// An arena's owner part, for blocks of one [`Shape`]: only the pair holding it (under its
/// mutex, or through `&mut`) allocates, always with the same shape.
pub(crate) struct RawArena {
    /// Allocated with the first chunk.
    shared: Option<NonNull<Shared>>,
    /// Blocks the owner took back from the shared stack, linked through their first word.
    free: *mut u8,
    /// The chunk blocks are carved from (null before the first), its size, and the offset in
    /// it where the next block may start.
    chunk: *mut u8,
    chunk_bytes: usize,
    next: usize,
    /// The bytes of all its chunks, which sets the next one's size.
    total_bytes: usize,
}

// SAFETY: the arena's memory belongs to no thread: blocks are plain memory; the shared part is
// reached through atomics, and through page and chunk headers that are written before any
// block of their chunk is handed out and never change until the arena ends. The owner part
// moves with its pair.
unsafe impl Send for RawArena {}

impl RawArena {
    /// An empty arena; allocates nothing yet.
    pub(crate) const fn new() -> Self {
        Self {
            shared: None,
            free: ptr::null_mut(),
            chunk: ptr::null_mut(),
            chunk_bytes: 0,
            next: 0,
            total_bytes: 0,
        }
    }

    /// A block of `shape`, uninitialised: one freed before if there is one, else a new one.
    /// Every call on an arena passes the same shape.
    #[inline]
    pub(crate) fn allocate(&mut self, shape: Shape) -> NonNull<u8> {
        let block = match NonNull::new(self.free) {
            Some(block) => {
                // SAFETY: a free block holds the next one's address in its first word
                // (`free`); the owner's list is the owner's alone.
                self.free = unsafe { block.cast::<*mut u8>().read() };
                block
            }
            None => self.take_freed().unwrap_or_else(|| self.carve(shape)),
        };
        let shared = self.shared.expect("allocated with the first chunk");
        // SAFETY: the owner's count keeps the shared part alive. `Relaxed`, as `Arc`'s clone:
        // the owner's own count already keeps the arena.
        unsafe { shared.as_ref() }.count.fetch_add(1, Relaxed);
        block
    }

    /// The first of the blocks freed since the owner last took them, keeping the rest; `None`
    /// if there are none. A load first, so that a growing map's allocations do not write the
    /// stack's line (each still increments the count, on the line that frees write too).
    #[inline]
    fn take_freed(&mut self) -> Option<NonNull<u8>> {
        // SAFETY: the owner's count keeps the shared part alive.
        let shared = unsafe { self.shared?.as_ref() };
        if shared.freed.load(Relaxed).is_null() {
            return None;
        }
        // `Acquire`: pairs with each free's `Release` push, after which the freeing thread
        // used the block no more.
        let block = NonNull::new(shared.freed.swap(ptr::null_mut(), Acquire))?;
        // SAFETY: as in `allocate`: the list is the owner's now.
        self.free = unsafe { block.cast::<*mut u8>().read() };
        Some(block)
    }

    /// A new block: the next place in the chunk where it fits within a page, its hot part
    /// within a line, or the start of a new chunk.
    #[inline]
    fn carve(&mut self, shape: Shape) -> NonNull<u8> {
        let (size, align, hot) = (shape.block.size(), shape.block.align(), shape.hot);
        let mut start = self.next;
        // Masks, not `next_multiple_of`: alignments are powers of two, and a division would
        // be the slowest instruction of an allocation.
        let round_up = |offset: usize, to: usize| (offset + to - 1) & !(to - 1);
        loop {
            // `start` is past its page's header, or at the end of a page (which may be the
            // chunk's end): a page of its own. A chunk smaller than a page is one page, and
            // before the first chunk `chunk_bytes` is 0, so that nothing fits.
            let page_end = round_up(start, PAGE).min(self.chunk_bytes);
            let mut at = round_up(start, align);
            if hot <= MAX_HOT && at % LINE + hot > LINE {
                at = round_up(at, LINE);
            }
            if at + size <= page_end {
                start = at;
                break;
            }
            start = if page_end < self.chunk_bytes {
                page_end + PAGE_HEADER
            } else {
                self.start_chunk(shape);
                CHUNK_HEADER
            };
        }
        self.next = start + size;
        // SAFETY: `start + size` lies inside a page of the chunk, past its header.
        unsafe { NonNull::new_unchecked(self.chunk.add(start)) }
    }

    /// Allocates the next chunk (half of all the arena's chunks, up to [`MAX_CHUNK`]; the
    /// first holds at least one block wherever its line puts it) and writes its pages'
    /// headers; the first also allocates the shared part.
    #[cold]
    #[inline(never)]
    fn start_chunk(&mut self, shape: Shape) {
        let shared = *self.shared.get_or_insert_with(|| {
            NonNull::from(Box::leak(Box::new(Shared {
                count: AtomicUsize::new(1),
                freed: AtomicPtr::new(ptr::null_mut()),
                chunks: AtomicPtr::new(ptr::null_mut()),
                uses: UseCheck::new(),
            })))
        });
        let first = (CHUNK_HEADER + LINE + shape.block.size())
            .next_power_of_two()
            .max(MIN_CHUNK);
        // Half of what the arena has, so that its chunks grow by half each time, and the
        // last, partly carved, holds at most a third of the arena.
        let bytes = (self.total_bytes / 2)
            .next_multiple_of(LINE)
            .clamp(first, MAX_CHUNK);
        let layout = chunk_layout(bytes);
        // SAFETY: the layout is not zero-sized.
        let chunk = unsafe { alloc(layout) };
        if chunk.is_null() {
            handle_alloc_error(layout);
        }
        for page in 0..bytes.div_ceil(PAGE) {
            // SAFETY: every page starts inside the chunk, aligned to a pointer.
            unsafe {
                chunk
                    .add(page * PAGE)
                    .cast::<NonNull<Shared>>()
                    .write(shared)
            };
        }
        // SAFETY: the shared part lives while the owner does.
        let chunks = &unsafe { shared.as_ref() }.chunks;
        // SAFETY: the chunk's first page has room for its header after the arena's address.
        unsafe {
            let header = chunk.cast::<usize>();
            header.add(1).cast::<*mut u8>().write(chunks.load(Relaxed));
            header.add(2).write(bytes);
        }
        // `Relaxed`: read only by the arena's end, after the last count's `AcqRel`.
        chunks.store(chunk, Relaxed);
        self.chunk = chunk;
        self.chunk_bytes = bytes;
        self.total_bytes += bytes;
    }

    /// Frees a block, on any thread. True if that ended the arena (its owner was gone and this
    /// was its last block): for the loom model, which checks that it comes last.
    ///
    /// # Safety
    /// `block` came from some arena's [`allocate`](Self::allocate), is freed once and not
    /// used afterwards.
    pub(crate) unsafe fn free(block: NonNull<u8>) -> bool {
        let block = block.as_ptr();
        let page = block.map_addr(|address| address & !(PAGE - 1));
        // SAFETY: the caller's contract: the block lies in a live chunk (its count keeps the
        // arena), whose pages are aligned to `PAGE` and start with their arena's address.
        let shared = unsafe { page.cast::<NonNull<Shared>>().read() };
        // SAFETY: as above.
        let counted = unsafe { shared.as_ref() };
        let mut top = counted.freed.load(Relaxed);
        loop {
            // SAFETY: the block is the caller's, unused now, at least a pointer long and
            // aligned to one.
            unsafe { block.cast::<*mut u8>().write(top) };
            // `Release`: the owner that takes the block sees it unused (`take_freed`).
            match counted
                .freed
                .compare_exchange_weak(top, block, Release, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => top = actual,
            }
        }
        // The push was the last use of the shared part but the count's: only then may the
        // count let the arena end.
        counted.uses.used();
        if counted.release() {
            // SAFETY: the last count: the owner is gone and every block freed.
            unsafe { end(shared) };
            return true;
        }
        false
    }

    /// Drops the owner's count (once; the owner allocates nothing after); true if that ended
    /// the arena. The owner's drop, which the tests call directly to see which drop ended it.
    fn release_owner(&mut self) -> bool {
        let Some(shared) = self.shared.take() else {
            return false;
        };
        // SAFETY: the owner's count kept the shared part alive until now.
        if unsafe { shared.as_ref() }.release() {
            // SAFETY: that was the last count.
            unsafe { end(shared) };
            return true;
        }
        false
    }
}

impl Drop for RawArena {
    fn drop(&mut self) {
        self.release_owner();
    }
}

/// Whether blocks of `layout` can be carved: room for the free list's link, and not so large
/// or strictly aligned that a page wastes much.
const fn carvable(layout: Layout) -> bool {
    layout.size() >= size_of::<usize>()
        && layout.align() >= align_of::<usize>()
        && layout.size() <= MAX_BLOCK
        && layout.align() <= MAX_ALIGN
}

/// An arena of `T`s: a [`RawArena`] where `T` can be carved, else the global allocator. Under
/// Miri nothing is carved, so that Miri sees every `T`'s memory freed and reports any use
/// after it (the arena's own tests run under Miri on a `RawArena`, and CI runs the entry,
/// bulk and table tests under Miri with `--cfg dualmap_miri_pools`, which carves there too,
/// and pools value nodes); under loom nothing either, so that the map's models do not carry
/// the arena's atomics (its own model checks its race).
pub(crate) struct Arena<T: Carved> {
    /// Unused (it allocates nothing) where `T`s are not carved.
    raw: RawArena,
    _blocks: PhantomData<fn() -> T>,
}

/// A type an [`Arena`] holds: how many of its first bytes a lookup reads (at most its size),
/// which the arena keeps in one cache line where they are at most [`MAX_HOT`]. Only placement
/// depends on it.
pub(crate) trait Carved {
    const HOT: usize;
}

impl<T: Carved> Arena<T> {
    /// Whether `T`s are carved here.
    const CARVES: bool = !cfg!(dualmap_loom)
        && (!cfg!(miri) || cfg!(dualmap_miri_pools))
        && carvable(Layout::new::<T>());

    /// What the arena carves, checked at compile time; used only where the arena
    /// [`CARVES`](Self::CARVES), and a placeholder for a type that cannot be carved (which
    /// [`Shape::new`] rejects).
    const SHAPE: Shape = if carvable(Layout::new::<T>()) {
        Shape::new(Layout::new::<T>(), T::HOT)
    } else {
        Shape::new(Layout::new::<usize>(), 0)
    };

    /// An empty arena of `T`s.
    pub(crate) const fn new() -> Self {
        Self {
            raw: RawArena::new(),
            _blocks: PhantomData,
        }
    }

    /// Memory for one `T`, uninitialised; freed by [`destroy`](Self::destroy).
    #[inline]
    pub(crate) fn allocate(&mut self) -> NonNull<T> {
        const { assert!(size_of::<T>() > 0) };
        if Self::CARVES {
            return self.raw.allocate(Self::SHAPE).cast();
        }
        let layout = Layout::new::<T>();
        // SAFETY: `T` is not zero-sized.
        match NonNull::new(unsafe { alloc(layout) }) {
            Some(block) => block.cast(),
            None => handle_alloc_error(layout),
        }
    }

    /// Drops the `T` in place and frees its memory, on any thread, also when the `T`'s drop
    /// panics: the memory is then freed while unwinding.
    ///
    /// # Safety
    /// `block` came from an `Arena<T>`'s [`allocate`](Self::allocate), holds an initialised
    /// `T`, and nothing reaches it any more.
    pub(crate) unsafe fn destroy(block: NonNull<T>) {
        // SAFETY: the caller's contract.
        unsafe {
            drop_then_free(block, |block| {
                // `drop_then_free` calls this once, after the `T`'s drop (or while unwinding
                // from it), on a block that nothing reaches (`destroy`'s contract).
                if Self::CARVES {
                    // SAFETY: carved (`CARVES` decides for every `Arena<T>` alike), free now.
                    RawArena::free(block.cast());
                } else {
                    // SAFETY: from the global allocator with `T`'s layout, free now.
                    dealloc(block.as_ptr().cast(), Layout::new::<T>());
                }
            })
        };
    }
}

#[cfg(all(test, not(dualmap_loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// An entry of `u64`s: 40 bytes, 24 of them hot.
    const ENTRY: Shape = match Layout::from_size_align(40, 8) {
        Ok(layout) => Shape::new(layout, 24),
        Err(_) => panic!(),
    };

    /// Blocks handed out to a test, to be freed on any thread.
    struct Blocks(Vec<NonNull<u8>>);

    // SAFETY: arena memory belongs to no thread; the tests free each block once.
    unsafe impl Send for Blocks {}

    fn free_all(blocks: Blocks) -> usize {
        blocks
            .0
            .into_iter()
            // SAFETY: allocated by the test, freed once.
            .map(|block| usize::from(unsafe { RawArena::free(block) }))
            .sum()
    }

    #[test]
    fn blocks_are_distinct_aligned_usable_and_keep_their_hot_part_in_one_line() {
        let mut arena = RawArena::new();
        // More than the first three chunks hold.
        let blocks: Vec<NonNull<u8>> = (0..200).map(|_| arena.allocate(ENTRY)).collect();
        for (i, block) in blocks.iter().enumerate() {
            // SAFETY: 40 fresh bytes aligned to 8 (Miri checks each write).
            unsafe { block.cast::<[u64; 5]>().write([i as u64; 5]) };
        }
        let mut addresses = HashSet::new();
        for (i, block) in blocks.iter().enumerate() {
            let address = block.as_ptr() as usize;
            assert!(addresses.insert(address), "block {i} handed out twice");
            assert_eq!(address % 8, 0);
            assert_eq!(address / LINE, (address + 23) / LINE, "hot part straddles");
            assert_eq!(
                address / PAGE,
                (address + 39) / PAGE,
                "block straddles a page"
            );
            assert!(
                address % PAGE >= PAGE_HEADER,
                "a block over its page's header"
            );
            // SAFETY: written above, not freed.
            assert_eq!(unsafe { block.cast::<[u64; 5]>().read() }, [i as u64; 5]);
        }
        // Three blocks of 40 in about two lines: a full page holds 23 (at most 44 bytes a
        // block, the page's header and end included).
        let mut per_page = std::collections::HashMap::new();
        for address in &addresses {
            *per_page.entry(address / PAGE).or_insert(0) += 1;
        }
        let fullest = per_page.values().copied().max();
        assert!(
            fullest >= Some(23),
            "{fullest:?} blocks in the fullest page"
        );
        // The first chunk is small: a pair with a key or two takes `MIN_CHUNK` bytes.
        let first_chunk = blocks[0].as_ptr().addr() & !(PAGE - 1);
        assert!(blocks[..4]
            .iter()
            .all(|block| block.as_ptr().addr() - first_chunk < MIN_CHUNK));
        drop(arena);
        assert_eq!(free_all(Blocks(blocks)), 1, "the last free ends the arena");
    }

    /// Every block size and hot part the arena takes, over several chunks: blocks never
    /// overlap each other or a page's header, stay inside their page (whose header names
    /// their arena) and keep a short hot part in one line. Miri checks each write in bounds.
    #[test]
    fn every_layout_is_carved_inside_pages_without_overlaps() {
        let sizes = if cfg!(miri) {
            vec![8, 40, 48, 256]
        } else {
            (8..=MAX_BLOCK).step_by(8).collect()
        };
        for size in sizes {
            for hot in [0, 8, 24, 32, size].into_iter().filter(|&hot| hot <= size) {
                let align = if size % 16 == 0 { 16 } else { 8 };
                let shape = Shape::new(Layout::from_size_align(size, align).expect("valid"), hot);
                let mut arena = RawArena::new();
                let count = 7 * PAGE / size;
                let blocks: Vec<NonNull<u8>> = (0..count).map(|_| arena.allocate(shape)).collect();
                let shared = arena.shared.expect("allocated");
                let mut addresses: Vec<usize> = blocks.iter().map(|b| b.as_ptr().addr()).collect();
                for block in &blocks {
                    // SAFETY: `size` fresh bytes (Miri checks the bounds).
                    unsafe { block.as_ptr().write_bytes(0xA5, size) };
                    let page = block.as_ptr().map_addr(|address| address & !(PAGE - 1));
                    // SAFETY: the block's page, whose header the arena wrote.
                    assert_eq!(unsafe { page.cast::<NonNull<Shared>>().read() }, shared);
                }
                // The chunks, from their list: (start, bytes).
                let mut chunks = Vec::new();
                // SAFETY: the owner's count keeps the shared part and its chunks alive.
                let mut chunk = unsafe { shared.as_ref() }.chunks.load(Relaxed);
                while !chunk.is_null() {
                    // SAFETY: a live chunk's header: its predecessor and its size.
                    unsafe {
                        let header = chunk.cast::<usize>();
                        chunks.push((chunk.addr(), header.add(2).read()));
                        chunk = header.add(1).cast::<*mut u8>().read();
                    }
                }
                addresses.sort_unstable();
                for (i, &address) in addresses.iter().enumerate() {
                    let context = format!("size {size}, hot {hot}, block at {address:#x}");
                    let &(start, bytes) = chunks
                        .iter()
                        .find(|&&(start, bytes)| (start..start + bytes).contains(&address))
                        .unwrap_or_else(|| panic!("{context}: in no chunk"));
                    let header = if address - start < PAGE {
                        CHUNK_HEADER
                    } else {
                        PAGE_HEADER
                    };
                    assert!(address + size <= start + bytes, "{context}: past its chunk");
                    assert!(address % PAGE >= header, "{context}: over a header");
                    assert_eq!(address % align, 0, "{context}");
                    assert_eq!(address / PAGE, (address + size - 1) / PAGE, "{context}");
                    if hot <= MAX_HOT && hot > 0 {
                        assert_eq!(address / LINE, (address + hot - 1) / LINE, "{context}");
                    }
                    if let Some(&next) = addresses.get(i + 1) {
                        assert!(next >= address + size, "{context}: overlaps the next");
                    }
                }
                drop(arena);
                assert_eq!(free_all(Blocks(blocks)), 1);
            }
        }
    }

    #[test]
    fn a_long_hot_part_is_carved_where_it_falls() {
        let shape = Shape::new(Layout::from_size_align(72, 8).expect("valid"), 56);
        let mut arena = RawArena::new();
        let blocks: Vec<NonNull<u8>> = (0..40).map(|_| arena.allocate(shape)).collect();
        let mut neighbours = 0;
        for pair in blocks.windows(2) {
            let (a, b) = (pair[0].as_ptr().addr(), pair[1].as_ptr().addr());
            if a / PAGE == b / PAGE {
                assert_eq!(b - a, 72);
                neighbours += 1;
            }
        }
        assert!(
            neighbours >= 30,
            "{neighbours} blocks after another in a page"
        );
        assert_eq!(
            free_all(Blocks(blocks)),
            0,
            "the owner still holds the arena"
        );
    }

    #[test]
    fn freed_blocks_are_reused_before_new_ones_are_carved() {
        let mut arena = RawArena::new();
        let first: Vec<NonNull<u8>> = (0..10).map(|_| arena.allocate(ENTRY)).collect();
        let before: HashSet<usize> = first.iter().map(|block| block.as_ptr().addr()).collect();
        let next = arena.next;
        assert_eq!(free_all(Blocks(first)), 0);
        let again: Vec<NonNull<u8>> = (0..10).map(|_| arena.allocate(ENTRY)).collect();
        let reused: HashSet<usize> = again.iter().map(|block| block.as_ptr().addr()).collect();
        assert_eq!(reused, before, "the ten freed blocks");
        assert_eq!(
            (arena.next, arena.free),
            (next, ptr::null_mut()),
            "none carved"
        );
        let carved = arena.allocate(ENTRY);
        assert!(!before.contains(&carved.as_ptr().addr()));
        drop(arena);
        assert_eq!(free_all(Blocks(again)), 0);
        // SAFETY: allocated above, freed once.
        assert!(
            unsafe { RawArena::free(carved) },
            "the last block ends the arena"
        );
    }

    #[test]
    fn an_arena_without_blocks_ends_with_its_owner() {
        let mut arena = RawArena::new();
        let block = arena.allocate(ENTRY);
        // SAFETY: allocated above, freed once.
        assert!(!unsafe { RawArena::free(block) });
        drop(arena); // Miri reports the chunks or the shared part if this leaked them.
        drop(RawArena::new()); // never allocated: nothing to free
    }

    /// Other threads free blocks (reading each first) while the owner allocates on and then
    /// goes away: every chunk is freed once, after its last block (Miri reports a chunk freed
    /// early as a use after free of the block being read, and one never freed as a leak).
    #[test]
    fn frees_on_other_threads_race_the_owner() {
        let mut arena = RawArena::new();
        let (send, receive) = std::sync::mpsc::channel::<Blocks>();
        let receive = std::sync::Arc::new(std::sync::Mutex::new(receive));
        let freers: Vec<_> = (0..2)
            .map(|_| {
                let receive = receive.clone();
                std::thread::spawn(move || {
                    let mut ended = 0;
                    while let Ok(blocks) = receive.lock().expect("no panic").recv() {
                        for block in &blocks.0 {
                            // SAFETY: written by the owner before sending, not freed yet.
                            assert_eq!(unsafe { block.cast::<u64>().read() }, 7);
                        }
                        ended += free_all(blocks);
                    }
                    ended
                })
            })
            .collect();
        let rounds = if cfg!(miri) { 8 } else { 500 };
        for _ in 0..rounds {
            let blocks: Vec<NonNull<u8>> = (0..8)
                .map(|_| {
                    let block = arena.allocate(ENTRY);
                    // SAFETY: a fresh or reused block of 40 bytes, the owner's until sent.
                    unsafe { block.cast::<u64>().write(7) };
                    block
                })
                .collect();
            send.send(Blocks(blocks)).expect("the freers run");
        }
        drop(send);
        let ended = usize::from(arena.release_owner())
            + freers
                .into_iter()
                .map(|f| f.join().expect("no panic"))
                .sum::<usize>();
        assert_eq!(ended, 1, "the arena ended {ended} times");
    }

    impl<const N: usize> Carved for [u64; N] {
        const HOT: usize = 0;
    }
    impl Carved for u32 {
        const HOT: usize = 0;
    }

    #[test]
    fn types_too_large_or_too_aligned_for_a_page_use_the_allocator() {
        #[repr(align(64))]
        struct Aligned(#[allow(dead_code)] u8);
        // An entry of `u64`s; too large; too strictly aligned; too small for the list's link.
        let carves = [
            Arena::<[u64; 5]>::CARVES,
            Arena::<[u64; 64]>::CARVES,
            Arena::<Aligned>::CARVES,
            Arena::<u32>::CARVES,
        ];
        let carves_entries = !cfg!(miri) || cfg!(dualmap_miri_pools);
        assert_eq!(carves, [carves_entries, false, false, false]);
        impl Carved for Aligned {
            const HOT: usize = 0;
        }
        let mut arena = Arena::<Aligned>::new();
        let block = arena.allocate();
        // SAFETY: fresh memory for one `Aligned`.
        unsafe { block.as_ptr().write(Aligned(1)) };
        assert_eq!(block.as_ptr() as usize % 64, 0);
        // SAFETY: allocated above, initialised, unreachable after this.
        unsafe { Arena::destroy(block) };
    }
}

/// The arena's race under loom: blocks freed on other threads while the owner takes them back
/// and goes away, in every order. A block's reuse comes after its last use by the thread that
/// freed it (loom reports the owner's write racing that use otherwise), exactly one of the
/// owner's drop and the frees ends the arena, and it comes after every use of every block
/// (loom reports the end's writes racing a use otherwise, or, for the shared part, its
/// `UseCheck`). With a `Relaxed` push, take or decrement, or a decrement moved before the
/// push, loom reports a race.
#[cfg(all(test, dualmap_loom))]
mod loom_models {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    /// A block's contents, as loom sees them: a cell per block address, written by each use.
    struct Uses(Vec<(usize, UnsafeCell<u64>)>);

    impl Uses {
        fn of(&self, block: NonNull<u8>) -> &UnsafeCell<u64> {
            let address = block.as_ptr() as usize;
            &self
                .0
                .iter()
                .find(|(at, _)| *at == address)
                .expect("a known block")
                .1
        }
        fn write(&self, block: NonNull<u8>) {
            // SAFETY: a model cell; loom checks that no other access races this one.
            self.of(block).with_mut(|value| unsafe { *value = 7 });
        }
        /// What the end of the arena does to every block.
        fn end(&self) {
            for (_, cell) in &self.0 {
                // SAFETY: as above.
                cell.with_mut(|value| unsafe { *value = 0 });
            }
        }
    }

    /// Blocks handed to another thread in the model.
    struct Sent(NonNull<u8>);
    // SAFETY: arena memory belongs to no thread; the model frees each block once.
    unsafe impl Send for Sent {}

    #[test]
    fn a_freed_block_is_reused_and_the_arena_ends_after_every_use() {
        // Three threads of atomics: unbounded, loom does not finish in 15 minutes; bounded
        // as tests/loom.rs bounds its models, unless LOOM_MAX_PREEMPTIONS says otherwise.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = builder.preemption_bound.or(Some(4));
        builder.check(|| {
            // Blocks of `MAX_BLOCK` bytes, so that three span chunks and a fourth is a block
            // freed meanwhile or a newly carved one.
            let shape = Shape::new(Layout::from_size_align(MAX_BLOCK, 8).expect("valid"), 0);
            let mut arena = RawArena::new();
            let blocks: Vec<NonNull<u8>> = (0..3).map(|_| arena.allocate(shape)).collect();
            let uses = Arc::new(Uses(
                blocks
                    .iter()
                    .map(|block| (block.as_ptr().addr(), UnsafeCell::new(0)))
                    .collect(),
            ));
            let freers: Vec<_> = blocks[..2]
                .iter()
                .map(|&block| {
                    let (uses, block) = (uses.clone(), Sent(block));
                    loom::thread::spawn(move || {
                        let Sent(block) = block;
                        uses.write(block);
                        // SAFETY: allocated by the owner, freed once, here.
                        let ended = unsafe { RawArena::free(block) };
                        if ended {
                            uses.end();
                        }
                        ended
                    })
                })
                .collect();
            // The owner allocates twice more: the blocks the others freed if they were pushed
            // already (the second through the first's link), else new ones. It uses and
            // frees them and its third block, then goes away.
            // Without a yield loom never runs the new threads before these allocations.
            loom::thread::yield_now();
            let again = [arena.allocate(shape), arena.allocate(shape)];
            for &block in &again {
                if blocks.contains(&block) {
                    uses.write(block);
                }
            }
            for block in [again[0], again[1], blocks[2]] {
                // SAFETY: allocated above, freed once.
                assert!(!unsafe { RawArena::free(block) }, "the owner holds a count");
            }
            let mut ends = 0;
            if arena.release_owner() {
                uses.end();
                ends += 1;
            }
            for freer in freers {
                ends += usize::from(freer.join().expect("no panic"));
            }
            assert_eq!(ends, 1, "exactly one ends the arena");
        });
    }
}
