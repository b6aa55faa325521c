//! Building a map's whole read table in one step, for maps built in bulk: `collect`,
//! `extend` into an empty map, `clone` and deserialization.
//!
//! Inserting such pairs one by one would put every key in the dirty map, behind the mutex,
//! until as many locked reads as there are keys had promoted it. Instead the pairs are staged
//! privately (deduplicated, a later pair's value winning as with `insert`), turned into
//! entries, and published as the read snapshot at once: not amended, so every key is read
//! lock-free from the start and no read counts a miss.

use crate::entry::{EntryArena, SharedEntry};
use crate::table::Table;
use hashbrown::HashTable;

/// Pairs staged for a bulk load. A `Vec` holds them (its drop carries on past a panicking
/// `Drop`, so nothing leaks), and a table of indices into it finds duplicates.
pub(crate) struct BulkLoad<K, V> {
    pairs: Vec<(u64, K, V)>,
    index: HashTable<usize>,
}

impl<K: Eq, V> BulkLoad<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            pairs: Vec::with_capacity(capacity),
            index: HashTable::with_capacity(capacity),
        }
    }

    /// Stages a pair. For a key staged before, the value is replaced (the old value is
    /// dropped, then the duplicate key) and the first key is kept, as `insert` does.
    pub(crate) fn push(&mut self, hash: u64, key: K, value: V) {
        let pairs = &mut self.pairs;
        match self.index.find(hash, |&i| pairs[i].1 == key) {
            Some(&i) => {
                pairs[i].2 = value;
                drop(key);
            }
            None => {
                self.index.insert_unique(hash, pairs.len(), |&i| pairs[i].0);
                pairs.push((hash, key, value));
            }
        }
    }

    /// The staged pairs as read tables of fresh entries, one for each of `arenas`, each pair
    /// going to the table `table_of` its hash, its entry into that table's arena. Runs no user
    /// code.
    pub(crate) fn into_tables(
        self,
        arenas: &mut [&mut EntryArena<K, V>],
        table_of: impl Fn(u64) -> usize,
    ) -> Vec<Table<K, V>> {
        let each = self.pairs.len().div_ceil(arenas.len());
        let mut tables: Vec<Table<K, V>> =
            arenas.iter().map(|_| Table::with_capacity(each)).collect();
        for (hash, key, value) in self.pairs {
            let table = table_of(hash);
            let entry = SharedEntry::new(key, hash, value, arenas[table]);
            tables[table].insert_absent(entry);
        }
        tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_values_win_and_first_keys_stay() {
        // Keys that are equal but tell apart which one was kept.
        #[derive(Debug)]
        struct Key(u8, &'static str);
        impl PartialEq for Key {
            fn eq(&self, other: &Self) -> bool {
                self.0 == other.0
            }
        }
        impl Eq for Key {}
        let mut bulk = BulkLoad::with_capacity(0);
        bulk.push(7, Key(1, "first"), 'a');
        bulk.push(9, Key(2, "other"), 'b');
        bulk.push(7, Key(1, "second"), 'c');
        let (mut first, mut second) = (
            crate::entry::EntryArena::new(),
            crate::entry::EntryArena::new(),
        );
        let mut tables =
            bulk.into_tables(&mut [&mut first, &mut second], |hash| (hash == 9) as usize);
        assert_eq!(tables[1].len(), 1);
        let table = tables.swap_remove(0);
        assert_eq!(table.len(), 1);
        let entry = table.entry_of(7, &Key(1, "probe")).expect("staged");
        assert_eq!(entry.key.1, "first");
        let node = entry.load().expect("present");
        // SAFETY: the table, which owns the entry and so its value, outlives this borrow.
        assert_eq!(unsafe { *crate::entry::value_of(node) }, 'c');
    }
}
