//! The `serde` feature: a `DualMap` round-trips through JSON as a plain map.
#![cfg(feature = "serde")]

use dualmap::DualMap;
use std::collections::HashMap;

#[test]
fn round_trips_through_json_as_a_map() {
    let map: DualMap<String, Vec<u32>> = DualMap::new();
    map.insert("a".into(), vec![1, 2]);
    map.insert("b".into(), vec![]);
    map.insert("gone".into(), vec![9]);
    map.remove("gone");

    let json = serde_json::to_string(&map).unwrap();
    let as_std: HashMap<String, Vec<u32>> = serde_json::from_str(&json).unwrap();
    assert_eq!(
        as_std,
        HashMap::from([("a".into(), vec![1, 2]), ("b".into(), vec![])])
    );

    let back: DualMap<String, Vec<u32>> = serde_json::from_str(&json).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back.get_cloned("a"), Some(vec![1, 2]));
    assert_eq!(back.get_cloned("b"), Some(vec![]));
    assert!(back.get("gone").is_none());
}

#[test]
fn a_deserialized_map_serves_every_key_without_the_lock() {
    let json = serde_json::to_string(
        &(0..500)
            .map(|k| (k.to_string(), k))
            .collect::<HashMap<_, _>>(),
    )
    .unwrap();
    let map: DualMap<String, u32> = serde_json::from_str(&json).unwrap();
    let before = map.stats();
    assert_eq!(
        before.dirty_len, None,
        "loaded in bulk, not amended: {before:?}"
    );
    for k in 0..500 {
        assert_eq!(map.get_cloned(k.to_string().as_str()), Some(k));
    }
    assert_eq!(map.stats(), before, "no read took the lock");
    // A bad entry midway: an error, and the pairs staged so far are dropped with the map.
    let bad = serde_json::from_str::<DualMap<String, u8>>(r#"{"a": 1, "b": 300, "c": 3}"#);
    assert!(bad.unwrap_err().is_data());
}

#[test]
fn later_duplicate_keys_win_and_bad_input_is_an_error() {
    let map: DualMap<String, u8> = serde_json::from_str(r#"{"k": 1, "k": 2}"#).unwrap();
    assert_eq!(map.get_cloned("k"), Some(2));
    assert_eq!(map.len(), 1);

    let not_a_map = serde_json::from_str::<DualMap<String, u8>>("[1, 2]").unwrap_err();
    assert!(
        not_a_map.to_string().contains("expected a map"),
        "{not_a_map}"
    );
    let bad_value = serde_json::from_str::<DualMap<String, u8>>(r#"{"k": 300}"#).unwrap_err();
    assert!(bad_value.is_data(), "{bad_value}");
}
