//! The entry state machine: one key and an atomic value slot shared by the read snapshot and
//! the dirty map.
//!
//! The slot holds one of three things:
//! - a pointer to a value: the key is present with that value. The entry's first value lives
//!   inside the entry (`first`), so a key written once is one allocation and a read of it one
//!   dependent line fewer; every later value is a [`ValueNode`] of its own. The slot points at
//!   the value itself either way, so a read never asks which;
//! - `NIL` (null): the key is deleted; the dirty map, if it exists, holds this same entry;
//! - `EXPUNGED` (address 1, never a value's): deleted and absent from the dirty map.
//!
//! The first value, once displaced, is dropped in place when its epoch is freed; its memory
//! goes with the entry, which the retirement keeps alive until then (see `reclaim`), unless
//! the value has no drop glue: then it is not retired at all, and whoever can still read it
//! keeps the entry alive by other means (DESIGN.md, "First values"). The slot never points at
//! `first` again.
//!
//! Every lock-free transition is a single atomic operation on the slot. `EXPUNGED` is entered
//! and left only under the map mutex (see the `*_locked` methods); every lock-free method
//! refuses it so that the caller falls back to the locked path.
//!
//! Every access to the slot is `SeqCst`. The reclamation argument (DESIGN.md, "Reclamation")
//! needs a reader's load of the slot and a writer's swap of it to be ordered in one total order
//! with the snapshot loads; on x86-64 a `SeqCst` load is a plain `mov` and an RMW is `lock`ed
//! anyway, so this costs nothing there.

use crate::arena::{Arena, Carved};
use crate::node_pool;
use crate::sync::{exclusive_ptr, AtomicPtr, AtomicUsize};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::{AcqRel, Relaxed, SeqCst};

/// A value written after the first: one heap node each, nothing but the value (a retired
/// node is listed in a batch, not linked through itself, so retiring it never writes its
/// memory; see `batches`). Aligned to at least 8 so that small values share the node pool's
/// classes and no node is at `EXPUNGED`'s address; `repr(C)` keeps the value at the node's
/// address, so a pointer to the node is a pointer to its value.
#[repr(C, align(8))]
pub(crate) struct ValueNode<V> {
    pub(crate) value: V,
}

impl<V> ValueNode<V> {
    /// Drops the node's value and frees its memory (into this thread's node pool). If the
    /// value's `Drop` panics, the memory is still freed while unwinding.
    ///
    /// # Safety
    /// `node` came from `OwnedValue::new`, and no thread can reach it any more.
    pub(crate) unsafe fn destroy(node: NonNull<Self>) {
        // SAFETY: the caller's contract; `OwnedValue::new` allocated the node from the pool
        // and initialised its value.
        unsafe { node_pool::destroy(node) };
    }
}

/// A value node that has not been published in a slot yet. Dropping it frees the node, so a
/// value offered to an operation that fails or panics is never leaked.
pub(crate) struct OwnedValue<V>(NonNull<ValueNode<V>>, PhantomData<ValueNode<V>>);

impl<V> OwnedValue<V> {
    pub(crate) fn new(value: V) -> Self {
        let node = node_pool::allocate::<ValueNode<V>>();
        // SAFETY: fresh memory for one `ValueNode<V>`, owned by this thread.
        unsafe {
            node.as_ptr().write(ValueNode { value });
        }
        Self(node, PhantomData)
    }

    /// The node's value, where a slot holding this node points.
    fn as_ptr(&self) -> *mut V {
        self.0.as_ptr().cast()
    }

    /// Hands the node over to a slot that now holds it.
    fn publish(self) -> NonNull<V> {
        let node = self.0;
        std::mem::forget(self);
        node.cast()
    }

    /// Takes the value back out of a node that was never published.
    pub(crate) fn into_inner(self) -> V {
        let node = self.publish().cast::<ValueNode<V>>();
        // SAFETY: the node was never published, so this is the only pointer to it; the value
        // is moved out exactly once and the memory freed without dropping it.
        unsafe {
            let value = ptr::addr_of!((*node.as_ptr()).value).read();
            node_pool::release(node);
            value
        }
    }
}

impl<V> Drop for OwnedValue<V> {
    fn drop(&mut self) {
        // SAFETY: an unpublished node is owned by `self` alone (see `into_inner`).
        unsafe { ValueNode::destroy(self.0) };
    }
}

/// A value that this thread took out of a slot. Readers may still be reading it, so it must be
/// retired (see `reclaim`), never freed directly.
pub(crate) enum Displaced<V> {
    /// A value node of its own.
    Node(NonNull<ValueNode<V>>),
    /// The entry's first value, inside the entry at this address.
    First(NonNull<V>),
}

/// What [`Entry::update`] did.
pub(crate) enum Updated<V> {
    /// The slot holds the value at `.1` now, in place of `.0`.
    Stored(Displaced<V>, NonNull<V>),
    /// The key is deleted (the slot is empty or expunged).
    Absent,
}

/// The address that marks a slot as expunged. It is never dereferenced and can never equal a
/// heap allocation.
fn expunged<V>() -> *mut V {
    // Address 1: never a value (entries and nodes are aligned at least as a pointer), and next to
    // null, so that "is there a value" is one unsigned compare on the read path.
    ptr::without_provenance_mut(1)
}

/// What a slot holds, decoded.
enum Slot<V> {
    Value(NonNull<V>),
    Nil,
    Expunged,
}

fn decode<V>(raw: *mut V) -> Slot<V> {
    if raw == expunged() {
        Slot::Expunged
    } else {
        NonNull::new(raw).map_or(Slot::Nil, Slot::Value)
    }
}

/// The value a slot pointed to, for a caller that keeps it alive (by pinning a snapshot that
/// can reach it, or by holding its entry).
///
/// # Safety
/// The value must not be dropped while the returned reference is alive.
pub(crate) unsafe fn value_of<'a, V>(value: NonNull<V>) -> &'a V {
    // SAFETY: the caller keeps the value alive; a value is never written after publication.
    unsafe { value.as_ref() }
}

/// An entry of a pinned snapshot as a key and its value, if the key is present.
///
/// # Safety
/// The entry belongs to a snapshot that stays pinned for as long as it is borrowed.
pub(crate) unsafe fn present<K, V>(entry: &ListedEntry<K, V>) -> Option<(&K, &V)> {
    let value = entry.load()?;
    // SAFETY: the value was loaded after its snapshot was pinned, and the caller keeps that
    // snapshot, so the epoch any displacement of the value retires to, pinned for as long
    // as the entry is borrowed, which bounds the returned references.
    Some((&entry.key, unsafe { value_of(value) }))
}

/// The outcome of a load-or-store on an entry that is not expunged.
pub(crate) enum LoadedOrStored<V> {
    /// The key was present; the offered value is handed back.
    Loaded(NonNull<V>, V),
    /// The slot was empty and now holds the offered value.
    Stored(NonNull<V>),
}

/// One key of the map and its value slot. Shared (through [`SharedEntry`]) by the read
/// snapshot, the dirty map and any handle that reached it under the lock. Laid out in order
/// (`repr(C)`) for the cache: `key` and `slot`, which every lookup and write reads, come
/// first; then `first`, which a hit on a key written once reads too: these are the hot part
/// that the pair's arena keeps in one cache line (see its `Carved` impl); then `shares`, which
/// the first overwrite or remove of a key increments, and `hash`, read only when a table
/// grows. (Cost model at 1M keys, with glibc's placement, against the order hash, key, first,
/// slot, count: an overwrite 4.97 -> 4.72 lines, a remove 4.98 -> 4.72, a hit 3.25 either
/// way, an iteration's value read 1.29 -> 1.54.) `first` is not last: a
/// zero-sized first value then lies inside the entry, never at its end, where another
/// allocation (a value node) could start at the same address.
#[repr(C)]
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    slot: AtomicPtr<V>,
    /// The first value. Initialised at creation; dropped by `Entry::drop` while the slot
    /// still points here, or by its epoch (`drop_first`) once displaced (if it has drop glue).
    first: UnsafeCell<MaybeUninit<V>>,
    /// How many [`SharedEntry`]s point here; the last one to go frees the entry.
    shares: AtomicUsize,
    pub(crate) hash: u64,
    /// The entry owns the node its slot points to.
    _owns: PhantomData<ValueNode<V>>,
}

// SAFETY: through `&Entry` a thread can read `&K` and `&V` (needs `Sync`) and can swap a value
// out of the slot and later drop it on this thread (needs `Send`); dropping the entry drops the
// key and the current value on whichever thread drops last (needs `Send`). The `UnsafeCell`
// of `first` would make `Entry` never `Sync`, and the automatic `Send` would not ask for
// `Sync` of what other threads read; these impls grant both under exactly those bounds.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Entry<K, V> {}
// SAFETY: as above; `first` is written only at creation, before the entry is shared, and
// dropped only by the last owner or by the epoch its displacement was retired to.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Entry<K, V> {}

impl<K, V> Entry<K, V> {
    /// The address of the first value.
    fn first_ptr(&self) -> *mut V {
        self.first.get().cast()
    }

    /// What a displacement took out of the slot: the first value or a node.
    fn displaced(&self, value: NonNull<V>) -> Displaced<V> {
        if value.as_ptr() == self.first_ptr() {
            Displaced::First(value)
        } else {
            Displaced::Node(value.cast())
        }
    }

    /// Drops the displaced first value in place.
    ///
    /// # Safety
    /// Only once, by the epoch its displacement was retired to, when it is freed: no thread
    /// can read the value any more, and the slot no longer points at it.
    pub(crate) unsafe fn drop_first(&self) {
        // SAFETY: the caller's contract; `first` was initialised at creation.
        unsafe { ptr::drop_in_place(self.first_ptr()) };
    }

    /// The current value, or `None` if the key is deleted.
    pub(crate) fn load(&self) -> Option<NonNull<V>> {
        match decode(self.slot.load(SeqCst)) {
            Slot::Value(node) => Some(node),
            Slot::Nil | Slot::Expunged => None,
        }
    }

    /// Stores `value` unless the entry is expunged (Go: `trySwap`), returning what the slot
    /// held (`None`: the key was absent). `Err` hands the value back when the entry is
    /// expunged: the caller must take the lock, under which an entry it unexpunged or found in
    /// the dirty map cannot be expunged (only the lock holder expunges), so the store then
    /// succeeds. The value's node is allocated once the slot is seen storable.
    #[inline]
    pub(crate) fn try_swap(&self, value: V) -> Result<Option<Displaced<V>>, V> {
        let mut current = self.slot.load(SeqCst);
        if let Slot::Expunged = decode(current) {
            return Err(value);
        }
        let new = OwnedValue::new(value);
        loop {
            match self
                .slot
                .compare_exchange_weak(current, new.as_ptr(), SeqCst, SeqCst)
            {
                Ok(previous) => {
                    new.publish();
                    return Ok(NonNull::new(previous).map(|previous| self.displaced(previous)));
                }
                Err(actual) => current = actual,
            }
            if let Slot::Expunged = decode(current) {
                return Err(new.into_inner());
            }
        }
    }

    /// Returns the present value, or stores `value` into an empty slot (Go:
    /// `tryLoadOrStore`). `Err` as for [`try_swap`](Self::try_swap). A node is allocated only
    /// once the slot is seen empty, so finding the key allocates nothing.
    pub(crate) fn try_load_or_store(&self, value: V) -> Result<LoadedOrStored<V>, V> {
        let mut current = self.slot.load(SeqCst);
        match decode(current) {
            Slot::Value(present) => return Ok(LoadedOrStored::Loaded(present, value)),
            Slot::Expunged => return Err(value),
            Slot::Nil => {}
        }
        let new = OwnedValue::new(value);
        loop {
            match self
                .slot
                .compare_exchange_weak(current, new.as_ptr(), SeqCst, SeqCst)
            {
                Ok(_) => return Ok(LoadedOrStored::Stored(new.publish())),
                Err(actual) => current = actual,
            }
            match decode(current) {
                Slot::Value(present) => {
                    return Ok(LoadedOrStored::Loaded(present, new.into_inner()))
                }
                Slot::Expunged => return Err(new.into_inner()),
                Slot::Nil => {}
            }
        }
    }

    /// Deletes the value if `reject` says so for the value the slot holds at that moment, and
    /// returns it. `reject` runs again if the value changes between the test and the delete,
    /// so a value is removed only if `reject` was true for that very value.
    pub(crate) fn delete_if(&self, mut reject: impl FnMut(&V) -> bool) -> Option<Displaced<V>> {
        let mut current = self.slot.load(SeqCst);
        loop {
            let Slot::Value(node) = decode(current) else {
                return None;
            };
            // SAFETY: the caller keeps every value this entry can hold alive (module docs of
            // `reclaim`): it pins a snapshot that reaches the entry, or holds the entry.
            if !reject(unsafe { value_of(node) }) {
                return None;
            }
            // Strong, not weak: a spurious failure would ask `reject` again about the same
            // value, and it is user code (`retain`'s `keep`, `PartialEq`).
            match self
                .slot
                .compare_exchange(current, ptr::null_mut(), SeqCst, SeqCst)
            {
                Ok(_) => return Some(self.displaced(node)),
                Err(actual) => current = actual,
            }
        }
    }

    /// Replaces the value with `update(current)`: a compare-and-swap loop, in which `update`
    /// runs again whenever the value changed before the swap. `update` is user code and runs
    /// with no lock held, on a value the caller keeps alive.
    pub(crate) fn update(&self, update: &mut impl FnMut(&V) -> V) -> Updated<V> {
        let mut current = self.slot.load(SeqCst);
        loop {
            let Slot::Value(node) = decode(current) else {
                return Updated::Absent;
            };
            // SAFETY: as in `delete_if`.
            let new = OwnedValue::new(update(unsafe { value_of(node) }));
            // Strong, as in `delete_if`: a spurious failure would run `update` again.
            match self
                .slot
                .compare_exchange(current, new.as_ptr(), SeqCst, SeqCst)
            {
                Ok(_) => return Updated::Stored(self.displaced(node), new.publish()),
                Err(actual) => {
                    // Computed from a value that is gone: dropped, and computed again.
                    drop(new);
                    current = actual;
                }
            }
        }
    }

    /// Replaces the value with `new` if it equals `expected`; hands `new` back otherwise. A
    /// node is allocated only once the slot is seen to hold a value equal to `expected` (and
    /// kept for a retry), so a compare that fails allocates nothing.
    pub(crate) fn compare_and_swap(&self, expected: &V, new: V) -> Result<Displaced<V>, V>
    where
        V: PartialEq,
    {
        fn handed_back<V>(new: Result<OwnedValue<V>, V>) -> V {
            new.map_or_else(|value| value, OwnedValue::into_inner)
        }
        let mut current = self.slot.load(SeqCst);
        let mut new = Err(new);
        loop {
            let Slot::Value(present) = decode(current) else {
                return Err(handed_back(new));
            };
            // SAFETY: as in `delete_if`.
            if unsafe { value_of(present) } != expected {
                return Err(handed_back(new));
            }
            let node = new.unwrap_or_else(OwnedValue::new);
            // Strong, as in `delete_if`: `PartialEq` is asked again only if the value changed.
            match self
                .slot
                .compare_exchange(current, node.as_ptr(), SeqCst, SeqCst)
            {
                Ok(_) => {
                    node.publish();
                    return Ok(self.displaced(present));
                }
                Err(actual) => {
                    current = actual;
                    new = Ok(node);
                }
            }
        }
    }

    /// Turns a tombstone into an expunged entry; true if the entry is expunged afterwards.
    /// Only under the map mutex, during a dirty rebuild (Go: `tryExpungeLocked`).
    pub(crate) fn try_expunge_locked(&self) -> bool {
        let mut current = self.slot.load(SeqCst);
        while current.is_null() {
            match self
                .slot
                .compare_exchange(current, expunged(), SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        current == expunged()
    }

    /// Deletes the value, if any, and expunges the entry, whatever the slot holds: for a clear
    /// in place, which takes the entry out of the dirty map while no snapshot table holds it.
    /// Only under the map mutex. An operation that located the entry before and acts on it
    /// after finds it expunged, as if absent. Returns the deleted value.
    pub(crate) fn expunge_locked(&self) -> Option<Displaced<V>> {
        match decode(self.slot.swap(expunged(), SeqCst)) {
            Slot::Value(value) => Some(self.displaced(value)),
            Slot::Nil | Slot::Expunged => None,
        }
    }

    /// Turns an expunged entry back into a tombstone; true if it was expunged, in which case
    /// the caller must put the entry back into the dirty map before releasing the mutex.
    pub(crate) fn unexpunge_locked(&self) -> bool {
        self.slot
            .compare_exchange(expunged(), ptr::null_mut(), SeqCst, SeqCst)
            .is_ok()
    }
}

impl<K, V> Drop for Entry<K, V> {
    fn drop(&mut self) {
        let first = self.first_ptr();
        if let Slot::Value(value) = decode(exclusive_ptr(&mut self.slot)) {
            // SAFETY: the last `SharedEntry` is gone, so no map, snapshot or handle can
            // reach the entry, and a reader of the current value always holds one of those
            // (DESIGN.md, "Reclamation"). A displaced first value's record holds the entry
            // alive until its epoch dropped it (one without drop glue has no record and
            // nothing to drop), so the first value needs dropping exactly when the slot points
            // at it; any other value is a node from `OwnedValue::new`.
            unsafe {
                if value.as_ptr() == first {
                    ptr::drop_in_place(first);
                } else {
                    ValueNode::<V>::destroy(value.cast());
                }
            }
        }
    }
}

/// An entry as a table lists it: its address alone, copied bit for bit when a table's buckets
/// are copied. Whether a listing holds one of the entry's shares is its table's business
/// (`Table`'s `owns`), not the listing's: that is how a dirty rebuild takes over the shares of
/// the read table it copies without touching a single entry. Reading through a listing is
/// sound while its table can be read: the entry's share is then held by that table, by a
/// table that took the shares over, or by an epoch that a reader of that table pins
/// (DESIGN.md, "Reclamation").
pub(crate) struct ListedEntry<K, V> {
    entry: NonNull<Entry<K, V>>,
    /// Reads the entry (for the drop check and auto traits).
    _entry: PhantomData<Entry<K, V>>,
}

// SAFETY: as `SharedEntry` below, whose share a listing may stand for: another thread reads
// the entry through `&` (needs `Entry: Sync`), and the table owning the share may drop it
// there (needs `Entry: Send`).
unsafe impl<K: Send + Sync, V: Send + Sync> Send for ListedEntry<K, V> {}
// SAFETY: as above: `&ListedEntry` gives `&Entry` and a new share.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for ListedEntry<K, V> {}

impl<K, V> ListedEntry<K, V> {
    /// The address of the entry's count, which dropping a share updates: for a prefetch
    /// ahead of that drop (`Table`'s drop). Only an address: nothing reads through it.
    #[inline(always)]
    pub(crate) fn count_address(&self) -> *const i8 {
        ptr::from_ref(&self.shares).cast()
    }

    /// A new share of the entry, which the listing keeps alive meanwhile. As `Arc`: a
    /// `Relaxed` increment, made from a reference that already keeps the entry alive.
    #[inline]
    pub(crate) fn share(&self) -> SharedEntry<K, V> {
        let before = self.shares.fetch_add(1, Relaxed);
        // As `Arc`: a count near overflow can only come from leaked shares; stop before it
        // wraps and frees a live entry.
        if before > isize::MAX as usize {
            std::process::abort();
        }
        SharedEntry(Self { ..*self })
    }

    /// The share this listing stood for, as a `SharedEntry` that drops it.
    ///
    /// # Safety
    /// The caller owns that share (the listing came from a table that owns its shares, and
    /// leaves it now) and hands it over to nobody else.
    #[inline]
    pub(crate) unsafe fn into_shared(self) -> SharedEntry<K, V> {
        SharedEntry(self)
    }
}

impl<K, V> Clone for ListedEntry<K, V> {
    /// Another listing of the entry, standing for no share of its own: only tables copy
    /// listings (hashbrown clones a table's buckets through this).
    #[inline(always)]
    fn clone(&self) -> Self {
        Self { ..*self }
    }
}

impl<K, V> std::ops::Deref for ListedEntry<K, V> {
    type Target = Entry<K, V>;

    #[inline(always)]
    fn deref(&self) -> &Entry<K, V> {
        // SAFETY: a listing is read only while its table can be read, which keeps the entry
        // alive (see the type's documentation), or as part of a `SharedEntry`, whose share
        // does.
        unsafe { self.entry.as_ref() }
    }
}

/// The memory of a pair's entries (see [`arena`](crate::arena)).
pub(crate) type EntryArena<K, V> = Arena<Entry<K, V>>;

/// An entry's hot part, which the pair's arena keeps in one cache line where it is short:
/// what a hit reads, the key, the slot and the first value.
impl<K, V> Carved for Entry<K, V> {
    const HOT: usize = std::mem::offset_of!(Entry<K, V>, first) + size_of::<V>();
}

/// A counted reference to an [`Entry`]: what `Arc<Entry>` was, with the count inside the entry
/// and the memory from its pair's [arena](crate::arena), so that a new key takes no call
/// into the allocator, and an entry freed on any thread is reused by its pair's next new key
/// (std's `Arc` takes no allocator on stable Rust). The count follows
/// `Arc`'s rules: a clone is a `Relaxed` increment (the clone is made from a reference that
/// already keeps the entry alive), and a drop an `AcqRel` decrement, so that the thread that
/// frees the entry sees every other owner's use of it as done.
pub(crate) struct SharedEntry<K, V>(ListedEntry<K, V>);

impl<K, V> SharedEntry<K, V> {
    /// A new entry holding `value` in place, in memory from its pair's arena. The slot points
    /// into the entry, so it is set once the entry is at its final address, before it is
    /// shared.
    #[inline]
    pub(crate) fn new(key: K, hash: u64, value: V, arena: &mut EntryArena<K, V>) -> Self {
        const {
            assert!(
                std::mem::offset_of!(Entry<K, V>, first) < size_of::<Entry<K, V>>(),
                "the first value's address is inside the entry"
            )
        };
        let entry = arena.allocate();
        // SAFETY: fresh memory for one `Entry`, owned by this thread until it is shared.
        unsafe {
            entry.as_ptr().write(Entry {
                hash,
                key,
                first: UnsafeCell::new(MaybeUninit::new(value)),
                slot: AtomicPtr::new(ptr::null_mut()),
                shares: AtomicUsize::new(1),
                _owns: PhantomData,
            });
        }
        let entry = Self(ListedEntry {
            entry,
            _entry: PhantomData,
        });
        entry.slot.store(entry.first_ptr(), Relaxed);
        entry
    }

    /// This share, as a listing in a table that owns its shares.
    #[inline]
    pub(crate) fn into_listed(self) -> ListedEntry<K, V> {
        let listed = self.0.clone();
        std::mem::forget(self);
        listed
    }
}

impl<K, V> std::ops::Deref for SharedEntry<K, V> {
    type Target = ListedEntry<K, V>;

    #[inline(always)]
    fn deref(&self) -> &ListedEntry<K, V> {
        &self.0
    }
}

impl<K, V> Clone for SharedEntry<K, V> {
    #[inline]
    fn clone(&self) -> Self {
        self.0.share()
    }
}

impl<K, V> Drop for SharedEntry<K, V> {
    #[inline]
    fn drop(&mut self) {
        if self.shares.fetch_sub(1, AcqRel) == 1 {
            // SAFETY: this was the last share, and the decrement acquired every other
            // owner's release of theirs: nothing can reach the entry any more. It came from
            // an arena in `SharedEntry::new`, initialised. Its key and value are dropped, and
            // its memory goes back to its arena also if one of their drops panics.
            unsafe { EntryArena::destroy(self.0.entry) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// Counts its drops in a shared cell, and panics when dropped if asked to.
    struct Counted<'a> {
        drops: &'a Cell<usize>,
        panics: bool,
    }

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
            assert!(!self.panics, "a panicking drop");
        }
    }

    fn counted(drops: &Cell<usize>, panics: bool) -> Counted<'_> {
        Counted { drops, panics }
    }

    #[test]
    fn the_last_share_drops_the_key_and_the_value_once() {
        let drops = Cell::new(0);
        let mut arena = EntryArena::new();
        let entry = SharedEntry::new(
            counted(&drops, false),
            7,
            counted(&drops, false),
            &mut arena,
        );
        let mut shares: Vec<_> = (0..3).map(|_| entry.clone()).collect();
        assert_eq!(entry.shares.load(Relaxed), 4);
        drop(entry);
        shares.truncate(1);
        assert_eq!((shares[0].shares.load(Relaxed), drops.get()), (1, 0));
        assert_eq!(shares[0].hash, 7);
        drop(shares);
        assert_eq!(drops.get(), 2);
    }

    #[test]
    fn a_panicking_key_or_value_drop_still_drops_the_other_and_frees_the_entry() {
        // Miri reports the entry's memory if the unwinding leaks it.
        for (key_panics, value_panics) in [(true, false), (false, true)] {
            let drops = Cell::new(0);
            let mut arena = EntryArena::new();
            let entry = SharedEntry::new(
                counted(&drops, key_panics),
                7,
                counted(&drops, value_panics),
                &mut arena,
            );
            let share = entry.clone();
            drop(entry);
            assert!(catch_unwind(AssertUnwindSafe(|| drop(share))).is_err());
            assert_eq!(drops.get(), 2, "key panics: {key_panics}");
        }
    }
}
