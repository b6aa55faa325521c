//! A session-token validator on a `DualMap`: the read-mostly workload dualmap is built for.
//! Runs with no arguments and finishes in about five seconds:
//!
//! ```text
//! cargo run --release --example session_validator
//! cargo run --release --example session_validator -- --map dashmap --threads 4 --duration 10
//! ```
//!
//! Tokens are signed with HMAC-SHA-256 and carry a session id, a user id and an expiry.
//! Validator threads check tokens (99% of operations by default) while a writer thread logs
//! users in (`get_or_insert`), logs them out and revokes sessions (`remove`), and a sweeper
//! drops expired sessions (`retain`). A share of the tokens are forged, tampered with,
//! expired, revoked, unknown or malformed. At the end every token is checked once more; the
//! program exits non-zero if any valid token was rejected or any bad one accepted, or
//! rejected for the wrong reason. `sessions.rs` holds the logic; `tests/session_validator.rs`
//! runs it at small sizes.

mod sessions;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sessions::{LoadConfig, MapKind, Report, OUTCOMES};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// Validates signed session tokens against a concurrent session map under a read-heavy load.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Validator threads [default: available parallelism].
    #[arg(long)]
    threads: Option<usize>,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    duration: f64,
    /// Long-lived sessions logged in before the load starts.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// Validations as a share of all operations (the rest: logins, logouts, revocations).
    #[arg(long, default_value_t = 0.99, value_parser = read_share)]
    read_share: f64,
    /// The share of validations that use a bad token (forged, tampered, expired, revoked,
    /// unknown or malformed, in equal parts).
    #[arg(long, default_value_t = 0.10, value_parser = share)]
    bad_share: f64,
    /// The map that holds the sessions: the same load runs on each.
    #[arg(long, value_enum, default_value_t = MapKind::Dualmap)]
    map: MapKind,
}

fn seconds(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(s) if (0.0..=3_600.0).contains(&s) => Ok(s),
        _ => Err(format!("{arg:?} is not a number of seconds from 0 to 3600")),
    }
}

fn read_share(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("{arg:?} is not a share above 0, up to 1")),
    }
}

fn share(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{arg:?} is not a share from 0 to 1")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let defaults = LoadConfig::default();
    let config = LoadConfig {
        map: args.map,
        threads: args.threads.unwrap_or(defaults.threads).max(1),
        duration: Duration::from_secs_f64(args.duration),
        sessions: args.sessions.max(1),
        read_share: args.read_share,
        bad_share: args.bad_share,
        ..defaults
    };
    println!(
        "session_validator on {}: {} validator threads, 1 writer, 1 sweeper; {} sessions; {:.1}% reads, {:.1}% bad tokens; {:.1} s",
        config.map,
        config.threads,
        thousands(config.sessions as u64),
        config.read_share * 100.0,
        config.bad_share * 100.0,
        config.duration.as_secs_f64(),
    );

    // The bar goes to stderr, and only to a terminal (not in CI or a pipe).
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(config.duration.as_millis() as u64), target);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} [{bar:40}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let report = sessions::run_load(&config, &mut |progress| {
        bar.set_position(progress.elapsed.as_millis() as u64);
        bar.set_message(format!("{} validations", thousands(progress.validations)));
    });
    bar.finish_and_clear();

    print_report(&report);
    if report.ok() {
        println!("ok: every valid token was accepted and every bad token rejected for its reason");
        ExitCode::SUCCESS
    } else {
        for failure in &report.failures {
            eprintln!("  {failure}");
        }
        eprintln!("FAILED: the invariants above broke");
        ExitCode::FAILURE
    }
}

fn print_report(report: &Report) {
    let secs = report.elapsed.as_secs_f64();
    println!(
        "setup:       {} sessions, {} x {} bad tokens in {:.2} s",
        thousands(report.config.sessions as u64),
        report.sent.len() - 1,
        thousands(report.bad_each as u64),
        report.setup.as_secs_f64()
    );
    println!(
        "validations: {} in {secs:.2} s = {:.2} M/s",
        thousands(report.validations),
        report.validations as f64 / secs / 1e6
    );
    println!(
        "writes:      {} logins, {} logouts, {} revocations ({:.2}% reads); swept {}",
        thousands(report.logins),
        thousands(report.logouts),
        thousands(report.revokes),
        report.read_share() * 100.0,
        thousands(report.swept),
    );
    let latency = &report.latency;
    println!(
        "latency:     p50 {}  p99 {}  p99.9 {}  max {}",
        nanos(latency.value_at_quantile(0.50)),
        nanos(latency.value_at_quantile(0.99)),
        nanos(latency.value_at_quantile(0.999)),
        nanos(latency.max()),
    );
    let sent: Vec<String> = report
        .sent
        .iter()
        .map(|(kind, n)| format!("{kind} {}", thousands(*n)))
        .collect();
    println!("sent:        {}", sent.join(", "));
    println!("accepted:    {}", thousands(report.outcomes[0]));
    let rejected: Vec<String> = OUTCOMES
        .iter()
        .zip(report.outcomes)
        .skip(1)
        .map(|(reason, n)| format!("{reason} {}", thousands(n)))
        .collect();
    println!("rejected:    {}", rejected.join(", "));
    println!(
        "checked:     {} writer checks ({} sweeper races), then every token once more",
        thousands(report.writer_checks),
        report.sweeper_races
    );
    println!(
        "sessions:    {} at the end",
        thousands(report.final_len as u64)
    );
    match &report.stats {
        Some(stats) => println!("map stats:   {stats:?}"),
        None => println!("map stats:   ({} keeps none)", report.config.map),
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A latency in nanoseconds, in the unit that suits it.
fn nanos(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.2} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}
