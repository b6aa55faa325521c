//! The README's "Drop-in" section: the same small type on `RwLock<HashMap>`, dashmap and
//! dualmap. Each version lives in `tests/drop_in/`, is checked to appear verbatim in the
//! README, and passes the same tests, single-threaded and with threads.

#[path = "drop_in/dashmap.rs"]
mod on_dashmap;
#[path = "drop_in/dualmap.rs"]
mod on_dualmap;
#[path = "drop_in/rwlock.rs"]
mod on_rwlock;

use std::sync::atomic::{AtomicUsize, Ordering};

const README: &str = include_str!("../README.md");

macro_rules! same_behaviour {
    ($name:ident, $version:ident, $file:literal) => {
        mod $name {
            use super::$version::Profiles;
            use super::*;

            #[test]
            fn the_readme_shows_this_code() {
                let code = include_str!($file);
                assert!(
                    README.contains(&format!("```rust\n{code}```")),
                    "README.md does not show {} verbatim",
                    $file
                );
            }

            #[test]
            fn get_set_remove() {
                let profiles = Profiles::default();
                assert_eq!(profiles.get(1), None);
                assert_eq!(profiles.set(1, "ada".into()), None);
                assert_eq!(profiles.get(1).as_deref(), Some("ada"));
                assert_eq!(profiles.set(1, "grace".into()).as_deref(), Some("ada"));
                assert_eq!(profiles.remove(1).as_deref(), Some("grace"));
                assert_eq!(profiles.remove(1), None);
                assert_eq!(profiles.get(1), None);
            }

            #[test]
            fn get_or_load_loads_an_absent_user_only() {
                let profiles = Profiles::default();
                let loads = AtomicUsize::new(0);
                let load = || {
                    loads.fetch_add(1, Ordering::Relaxed);
                    String::from("ada")
                };
                assert_eq!(profiles.get_or_load(7, load), "ada");
                assert_eq!(profiles.get_or_load(7, || unreachable!()), "ada");
                assert_eq!(loads.load(Ordering::Relaxed), 1);
                profiles.set(8, "grace".into());
                assert_eq!(profiles.get_or_load(8, || unreachable!()), "grace");
            }

            #[test]
            fn update_changes_present_users_only_and_names_lists_them() {
                let profiles = Profiles::default();
                assert_eq!(profiles.update(1, str::to_uppercase), None);
                assert_eq!(profiles.get(1), None);
                profiles.set(1, "ada".into());
                profiles.set(2, "grace".into());
                assert_eq!(
                    profiles.update(1, str::to_uppercase).as_deref(),
                    Some("ADA")
                );
                assert_eq!(profiles.names(), ["ADA", "grace"]);
            }

            #[test]
            fn concurrent_updates_are_never_lost() {
                let profiles = Profiles::default();
                profiles.set(1, String::new());
                std::thread::scope(|scope| {
                    for _ in 0..4 {
                        scope.spawn(|| {
                            for _ in 0..500 {
                                profiles.update(1, |name| format!("{name}!"));
                            }
                        });
                    }
                });
                assert_eq!(profiles.get(1).map(|name| name.len()), Some(2_000));
            }

            #[test]
            fn threads_agree_on_the_first_value_stored() {
                let profiles = Profiles::default();
                let winners: Vec<Vec<String>> = std::thread::scope(|scope| {
                    let threads: Vec<_> = (0..4)
                        .map(|t| {
                            let profiles = &profiles;
                            scope.spawn(move || {
                                (0..200)
                                    .map(|user| {
                                        profiles.get_or_load(user, || format!("{user}/{t}"))
                                    })
                                    .collect()
                            })
                        })
                        .collect();
                    threads.into_iter().map(|t| t.join().unwrap()).collect()
                });
                for user in 0..200 {
                    let stored = profiles.get(user as u64).unwrap();
                    assert!(stored.starts_with(&format!("{user}/")));
                    assert!(winners.iter().all(|seen| seen[user] == stored));
                }
            }
        }
    };
}

same_behaviour!(rwlock, on_rwlock, "drop_in/rwlock.rs");
same_behaviour!(dashmap_version, on_dashmap, "drop_in/dashmap.rs");
same_behaviour!(dualmap_version, on_dualmap, "drop_in/dualmap.rs");
