//! The table both the read snapshot and the dirty map are made of: entries, found by their
//! stored hash and key.

use crate::entry::Entry;
use crate::sync::Arc;
use hashbrown::HashTable;
use std::borrow::Borrow;
use std::ops::{Deref, DerefMut};

/// The table type of both the read snapshot and the dirty map: entries with their hash.
pub(crate) struct Table<K, V>(HashTable<Arc<Entry<K, V>>>);

impl<K, V> Table<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(HashTable::with_capacity(capacity))
    }

    /// The entry of `key`.
    pub(crate) fn entry_of<Q>(&self, hash: u64, key: &Q) -> Option<&Arc<Entry<K, V>>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, |entry| entry.key.borrow() == key)
    }

    /// Inserts an entry known to be absent, rehashing with the stored hashes.
    pub(crate) fn insert_absent(&mut self, entry: Arc<Entry<K, V>>) {
        self.insert_unique(entry.hash, entry, |entry| entry.hash);
    }
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K, V> Deref for Table<K, V> {
    type Target = HashTable<Arc<Entry<K, V>>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<K, V> DerefMut for Table<K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<K, V> Drop for Table<K, V> {
    /// `HashTable`'s own drop stops at the first entry whose drop panics (a key's or value's
    /// `Drop`) and leaks the rest with the allocation; a drain's drop carries on with the
    /// remaining entries while that panic unwinds, so every entry is dropped once.
    fn drop(&mut self) {
        self.0.drain().for_each(drop);
    }
}
