//! `serde` support (feature `serde`): a `DualMap` serializes as a map.

use crate::DualMap;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

impl<K: Serialize, V: Serialize, S> Serialize for DualMap<K, V, S> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self {
            map.serialize_entry(&*key, &*value)?;
        }
        map.end()
    }
}

impl<'de, K, V, S> Deserialize<'de> for DualMap<K, V, S>
where
    K: Deserialize<'de> + Hash + Eq,
    V: Deserialize<'de>,
    S: BuildHasher + Default,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V, S>(PhantomData<DualMap<K, V, S>>);

        impl<'de, K, V, S> Visitor<'de> for MapVisitor<K, V, S>
        where
            K: Deserialize<'de> + Hash + Eq,
            V: Deserialize<'de>,
            S: BuildHasher + Default,
        {
            type Value = DualMap<K, V, S>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            /// Loads the entries in bulk, as `collect` does: a later duplicate key's value
            /// wins, and every key is in the read snapshot at once.
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = DualMap::with_hasher(S::default());
                // Capped: the input decides the hint.
                let capacity = access.size_hint().unwrap_or(0).min(4096);
                let entries = std::iter::from_fn(|| access.next_entry().transpose());
                map.load_bulk(capacity, entries)?;
                Ok(map)
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}
