//! A feature-flag table read by many threads while an admin thread flips flags and adds new
//! ones: the workload dualmap is built for. Runs with no arguments:
//!
//! ```text
//! cargo run --release --example feature_flags
//! ```
//!
//! It checks its own result (every reader saw only values that were stored, the final table is
//! what the admin thread wrote) and exits non-zero if not.

use dualmap::DualMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const FLAGS: u64 = 1_000;
const NEW_FLAGS: u64 = 100;
const RUN_FOR: Duration = Duration::from_millis(500);

/// A flag's state: which admin round wrote it, and whether it is on.
#[derive(Clone, Debug, PartialEq)]
struct Flag {
    round: u64,
    enabled: bool,
}

fn main() {
    let flags: DualMap<String, Flag> = (0..FLAGS)
        .map(|i| {
            (
                format!("flag-{i}"),
                Flag {
                    round: 0,
                    enabled: i % 2 == 0,
                },
            )
        })
        .collect();
    let keys: Vec<String> = (0..FLAGS).map(|i| format!("flag-{i}")).collect();
    let stop = AtomicBool::new(false);
    let lookups = AtomicU64::new(0);
    let rounds = AtomicU64::new(0);
    let readers = std::thread::available_parallelism().map_or(2, |n| n.get());

    let started = Instant::now();
    std::thread::scope(|scope| {
        for reader in 0..readers {
            let (flags, keys, stop, lookups, rounds) = (&flags, &keys, &stop, &lookups, &rounds);
            scope.spawn(move || {
                let mut done = 0u64;
                let mut i = reader;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1_000 {
                        let key = &keys[i % keys.len()];
                        let flag = flags.get(key.as_str()).expect("flags are never removed");
                        // Whatever the admin does, a reader sees a round that was written.
                        assert!(flag.round <= rounds.load(Ordering::Acquire) + 1);
                        i = i.wrapping_add(7);
                        done += 1;
                    }
                }
                lookups.fetch_add(done, Ordering::Relaxed);
            });
        }
        // The admin: flips every flag once per round (lock-free overwrites of existing keys)
        // and adds a few new flags (new keys take the mutex).
        scope.spawn(|| {
            let mut round = 0;
            while started.elapsed() < RUN_FOR {
                round += 1;
                for key in &keys {
                    let previous = flags.get_cloned(key.as_str()).expect("present");
                    let next = Flag {
                        round,
                        enabled: !previous.enabled,
                    };
                    flags
                        .compare_and_swap(key.as_str(), &previous, next)
                        .expect("only the admin writes existing flags");
                }
                if round <= NEW_FLAGS {
                    flags.insert(
                        format!("new-flag-{round}"),
                        Flag {
                            round,
                            enabled: true,
                        },
                    );
                }
                rounds.store(round, Ordering::Release);
            }
            stop.store(true, Ordering::Relaxed);
        });
    });

    let elapsed = started.elapsed();
    let rounds = rounds.into_inner();
    let lookups = lookups.into_inner();
    let expected_len = FLAGS + rounds.min(NEW_FLAGS);
    let stats = flags.stats();
    println!("readers: {readers}, admin rounds: {rounds}, run: {elapsed:.2?}");
    println!(
        "lookups: {lookups} ({:.1} M/s across readers)",
        lookups as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!("flags: {} (expected {expected_len})", flags.len());
    println!("{stats:#?}");
    if flags.len() as u64 != expected_len || flags.iter().count() as u64 != expected_len {
        eprintln!("FAILED: the table does not hold what the admin wrote");
        std::process::exit(1);
    }
    for key in &keys {
        let flag = flags.get(key.as_str()).expect("present");
        if flag.round != rounds {
            eprintln!(
                "FAILED: {key} is at round {} instead of {rounds}",
                flag.round
            );
            std::process::exit(1);
        }
    }
    println!("ok: every flag holds the admin's last round");
}
