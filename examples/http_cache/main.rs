//! A read-heavy HTTP service (axum on tokio) that caches the responses of a deliberately slow
//! backend in a `DualMap`, with single-flight loading, a TTL and an admin endpoint.
//!
//! ```text
//! cargo run --release --example http_cache             # serves on http://127.0.0.1:3000
//! cargo run --release --example http_cache -- --load   # a bounded self-test over loopback
//! ```
//!
//! Serving, it listens on 127.0.0.1 only and runs until Ctrl-C (or `kill -INT`):
//!
//! ```text
//! curl -i http://127.0.0.1:3000/items/42                   # x-cache: miss, then hit
//! curl -X POST http://127.0.0.1:3000/admin/invalidate/42   # the next request reloads
//! curl http://127.0.0.1:3000/stats                          # hit ratio, backend calls, map stats
//! ```
//!
//! `--load` starts the server on a free loopback port, checks single flight with a burst of
//! concurrent requests for one cold id, drives it from a built-in client for a few seconds
//! (with invalidations), checks invalidation and that the counters add up, prints throughput,
//! hit ratio and latency percentiles, and exits non-zero if a check failed. `cache.rs` holds
//! the logic; `tests/http_cache.rs` runs it at small sizes.

mod cache;

use cache::{LoadConfig, LoadReport, Server, ServerConfig};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

/// A response cache on a DualMap in front of a slow backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port) [default: 3000, or any free port with --load].
    #[arg(long)]
    port: Option<u16>,
    /// Seconds a cached response stays fresh [default: 10, or 2 with --load].
    #[arg(long, value_parser = seconds)]
    ttl: Option<f64>,
    /// Milliseconds each backend call takes [default: 100, or 20 with --load].
    #[arg(long)]
    backend_delay_ms: Option<u64>,
    /// Start the server, drive it over loopback, print the results and exit.
    #[arg(long)]
    load: bool,
    /// With --load: seconds of load.
    #[arg(long, default_value_t = 3.0, value_parser = seconds)]
    duration: f64,
    /// With --load: concurrent client connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// With --load: distinct item ids requested (80% of requests go to the first tenth).
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// With --load: stop after this many requests even if time is left.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
}

fn seconds(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(s) if (0.0..=3_600.0).contains(&s) => Ok(s),
        _ => Err(format!("{arg:?} is not a number of seconds from 0 to 3600")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // --load defaults: a TTL that expires within the run, and a backend slow enough to matter
    // but not so slow that the connections spend the run waiting on misses.
    let ttl = Duration::from_secs_f64(args.ttl.unwrap_or(if args.load { 2.0 } else { 10.0 }));
    let delay = args
        .backend_delay_ms
        .unwrap_or(if args.load { 20 } else { 100 });
    let config = ServerConfig {
        port: args.port.unwrap_or(if args.load { 0 } else { 3000 }),
        ttl,
        backend_delay: Duration::from_millis(delay),
        sweep_every: ttl.max(Duration::from_millis(100)),
    };
    let server = match Server::start(&config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot listen on 127.0.0.1:{}: {error}", config.port);
            return ExitCode::FAILURE;
        }
    };
    if args.load {
        load(server, &args, &config).await
    } else {
        serve(server, &config).await
    }
}

async fn serve(server: Server, config: &ServerConfig) -> ExitCode {
    let url = format!("http://{}", server.addr);
    println!(
        "http_cache listening on {url} (ttl {:?}, backend delay {:?}); stop with Ctrl-C",
        config.ttl, config.backend_delay
    );
    println!("  curl -i {url}/items/42");
    println!("  curl -X POST {url}/admin/invalidate/42");
    println!("  curl {url}/stats");
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("cannot wait for Ctrl-C: {error}");
    }
    println!("stopping");
    match server.stop().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn load(server: Server, args: &Args, config: &ServerConfig) -> ExitCode {
    let load = LoadConfig {
        duration: Duration::from_secs_f64(args.duration),
        connections: args.connections.max(1),
        keys: args.keys.max(1),
        max_requests: args.max_requests,
        ..LoadConfig::default()
    };
    println!(
        "http_cache --load: server on http://{}, {} connections, {} ids, {:.1} s (at most {} requests), ttl {:?}, backend delay {:?}",
        server.addr,
        load.connections,
        load.keys,
        load.duration.as_secs_f64(),
        load.max_requests,
        config.ttl,
        config.backend_delay,
    );
    // A hard bound on the whole run, whatever happens to the server.
    let limit = load.duration + Duration::from_secs(60);
    let outcome = tokio::time::timeout(limit, cache::run_load(&server, &load)).await;
    let stopped = server.stop().await;
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => {
            eprintln!("FAILED: the load stopped: {error}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("FAILED: the load did not finish in {limit:?}");
            return ExitCode::FAILURE;
        }
    };
    print_report(&report);
    if let Err(error) = stopped {
        eprintln!("FAILED: server error: {error}");
        return ExitCode::FAILURE;
    }
    if report.ok() {
        println!("ok: every check passed");
        ExitCode::SUCCESS
    } else {
        eprintln!("FAILED: a check did not pass");
        ExitCode::FAILURE
    }
}

fn print_report(report: &LoadReport) {
    let secs = report.elapsed.as_secs_f64();
    let latency = &report.latency;
    let stats = &report.stats;
    println!(
        "requests:  {} in {secs:.2} s = {:.0} req/s, {} errors",
        report.requests,
        report.requests as f64 / secs,
        report.errors
    );
    println!(
        "answers:   {} hit, {} miss, {} coalesced; {} invalidations sent",
        report.hits, report.misses, report.coalesced, report.invalidations
    );
    println!(
        "latency:   p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs",
        latency.value_at_quantile(0.50),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max()
    );
    println!(
        "server:    hit ratio {:.4}, {} backend calls for {} requests, {} expired reloads, {} swept, {} entries",
        stats.hit_ratio,
        stats.backend_calls,
        stats.requests,
        stats.expired_reloads,
        stats.swept,
        stats.entries
    );
    println!("map stats: {:?}", stats.map);
    for check in &report.checks {
        let mark = if check.ok { "ok    " } else { "FAILED" };
        println!("{mark} {}: {}", check.name, check.detail);
    }
}
