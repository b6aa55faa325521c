//! `View` across `.await` points and threads, and the `rayon` feature's parallel iteration.

use dualmap::DualMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

/// The case: a `/stats`-style handler iterates a view in a task spawned on a
/// multi-threaded runtime, yielding at every item, while another task overwrites every value
/// and inserts new keys. The task (and so the view and its iterator) is `Send`; every key of
/// the view is visited once with a value some writer stored; keys inserted while it iterates
/// are not visited: the slow iteration visits exactly the keys a first, quick one did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_is_iterated_across_awaits_in_a_spawned_task() {
    const KEYS: u64 = 200;
    let map = Arc::new(DualMap::new());
    for key in 0..KEYS {
        map.insert(key, format!("{key}:0"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (map, stop) = (map.clone(), stop.clone());
        tokio::spawn(async move {
            let mut round = 1;
            while !stop.load(SeqCst) {
                for key in 0..KEYS {
                    map.insert(key, format!("{key}:{round}"));
                }
                map.insert(KEYS + round, format!("{}:new", KEYS + round));
                round += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    let reader = {
        let map = map.clone();
        tokio::spawn(async move {
            let view = map.view();
            let keys: HashSet<u64> = view.iter().map(|(key, _)| *key).collect();
            let mut seen = HashSet::new();
            for (key, value) in &view {
                tokio::task::yield_now().await;
                let (prefix, _round) = value.split_once(':').expect("a value a writer stored");
                assert_eq!(prefix.parse::<u64>().unwrap(), *key);
                assert!(seen.insert(*key), "key {key} visited twice");
            }
            assert_eq!(seen, keys);
            seen
        })
    };
    let seen = reader.await.unwrap();
    stop.store(true, SeqCst);
    writer.await.unwrap();
    assert!((0..KEYS).all(|key| seen.contains(&key)));
}

#[cfg(feature = "rayon")]
mod rayon {
    use super::*;
    use ::rayon::prelude::*;
    use std::thread;

    #[test]
    fn par_iter_visits_what_iter_visits() {
        let map = DualMap::new();
        for key in 0..10_000u64 {
            map.insert(key, key * 2);
        }
        let mut expected: Vec<(u64, u64)> = map.iter().map(|(k, v)| (*k, *v)).collect();
        expected.sort_unstable();
        let mut items: Vec<(u64, u64)> = map
            .par_iter()
            .map(|item| (*item.key(), *item.value()))
            .collect();
        items.sort_unstable();
        assert_eq!(items, expected);
        let view = map.view();
        let mut viewed: Vec<(u64, u64)> = view.par_iter().map(|(k, v)| (*k, *v)).collect();
        viewed.sort_unstable();
        assert_eq!(viewed, expected);
    }

    /// Items pin their snapshot: collected items keep showing their values while writers
    /// overwrite every key many times over (rotations free what nothing pins), and every key
    /// present throughout is visited exactly once by each parallel iteration.
    #[test]
    fn items_outlive_overwrites_and_keys_are_visited_once() {
        const KEYS: u64 = if cfg!(miri) { 16 } else { 2_000 };
        let map = DualMap::new();
        for key in 0..KEYS {
            map.insert(key, format!("{key}:0"));
        }
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            s.spawn(|| {
                let mut round = 1;
                while !stop.load(SeqCst) {
                    map.insert(round % KEYS, format!("{}:{round}", round % KEYS));
                    round += 1;
                }
            });
            for _ in 0..if cfg!(miri) { 2 } else { 20 } {
                let items: Vec<dualmap::ParItem<u64, String>> = map.par_iter().collect();
                let keys: HashSet<u64> = items.iter().map(|item| *item.key()).collect();
                assert_eq!(keys.len(), items.len(), "a key visited twice");
                assert_eq!(keys.len() as u64, KEYS);
                let view = map.view();
                assert_eq!(view.par_iter().count() as u64, KEYS);
                for item in &items {
                    let (key, value) = item.pair();
                    assert!(value.starts_with(&format!("{key}:")), "{key} -> {value}");
                }
            }
            stop.store(true, SeqCst);
        });
    }
}
