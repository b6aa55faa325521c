//! The HTTP cache example's core (`examples/http_cache/cache.rs`), run in process over
//! loopback at small sizes: single flight, invalidation, TTL expiry, `/stats`, and a short
//! `--load` run. Every server binds 127.0.0.1 port 0 (a free port) and is stopped at the end.

#[allow(dead_code)]
#[path = "../examples/http_cache/cache.rs"]
mod cache;

use axum::http::StatusCode;
use cache::{CacheStats, Client, Item, LoadConfig, Server, ServerConfig};
use std::time::Duration;

/// A server on a free loopback port. Its background sweeper runs rarely, so that tests that
/// look at expiry see only the sweeps they ask for.
async fn start(ttl: Duration, backend_delay: Duration) -> Server {
    Server::start(&ServerConfig {
        port: 0,
        ttl,
        backend_delay,
        sweep_every: Duration::from_secs(600),
    })
    .await
    .expect("bind 127.0.0.1:0")
}

async fn stats(client: &mut Client) -> CacheStats {
    let response = client.get("/stats").await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    serde_json::from_slice(&response.body).unwrap()
}

const LONG_TTL: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_one_cold_key_make_one_backend_call() {
    let server = start(LONG_TTL, Duration::from_millis(200)).await;
    assert!(server.addr.ip().is_loopback());
    let responses = cache::burst(server.addr, "17", 32).await.unwrap();
    assert_eq!(responses.len(), 32);
    assert_eq!(server.cache.backend().calls_for("17"), 1);
    assert_eq!(server.cache.backend().calls(), 1);
    for response in &responses {
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.version, Some(1));
        let item: Item = serde_json::from_slice(&response.body).unwrap();
        assert_eq!((item.id, item.version), (17, 1));
    }
    let misses = responses
        .iter()
        .filter(|r| r.cache.as_deref() == Some("miss"))
        .count();
    assert_eq!(misses, 1, "exactly one request called the backend");
    let mut client = Client::connect(server.addr).await.unwrap();
    let stats = stats(&mut client).await;
    assert_eq!(stats.backend_calls, 1);
    assert_eq!((stats.requests, stats.misses), (32, 1));
    assert_eq!(stats.hits + stats.coalesced, 31);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_admin_endpoint_invalidates_the_next_request_calls_the_backend_again() {
    let server = start(LONG_TTL, Duration::from_millis(5)).await;
    let mut client = Client::connect(server.addr).await.unwrap();
    let first = client.get("/items/5").await.unwrap();
    assert_eq!(
        (first.cache.as_deref(), first.version),
        (Some("miss"), Some(1))
    );
    let second = client.get("/items/5").await.unwrap();
    assert_eq!(
        (second.cache.as_deref(), second.version),
        (Some("hit"), Some(1))
    );
    assert_eq!(second.body, first.body);

    let invalidated = client.post("/admin/invalidate/5").await.unwrap();
    assert_eq!(invalidated.status, StatusCode::OK);
    assert_eq!(invalidated.body.as_ref(), br#"{"invalidated":true}"#);
    let again = client.post("/admin/invalidate/5").await.unwrap();
    assert_eq!(again.body.as_ref(), br#"{"invalidated":false}"#);

    let third = client.get("/items/5").await.unwrap();
    assert_eq!(
        (third.cache.as_deref(), third.version),
        (Some("miss"), Some(2))
    );
    assert_eq!(server.cache.backend().calls_for("5"), 2);

    // Clearing drops every id.
    client.get("/items/6").await.unwrap();
    let cleared = client.post("/admin/clear").await.unwrap();
    assert_eq!(cleared.status, StatusCode::OK);
    assert_eq!(stats(&mut client).await.entries, 0);
    let fourth = client.get("/items/5").await.unwrap();
    assert_eq!(
        (fourth.cache.as_deref(), fourth.version),
        (Some("miss"), Some(3))
    );
    assert_eq!(stats(&mut client).await.invalidations, 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_older_than_the_ttl_is_reloaded_once() {
    // Long enough that the reloaded response stays fresh while the burst runs.
    let ttl = Duration::from_secs(1);
    let server = start(ttl, Duration::from_millis(5)).await;
    let mut client = Client::connect(server.addr).await.unwrap();
    let first = client.get("/items/8").await.unwrap();
    assert_eq!(first.version, Some(1));
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    // Several requests see the expired response; one reload serves them all.
    let responses = cache::burst(server.addr, "8", 8).await.unwrap();
    assert!(responses.iter().all(|r| r.version == Some(2)));
    assert_eq!(server.cache.backend().calls_for("8"), 2);
    let stats = stats(&mut client).await;
    assert_eq!(stats.expired_reloads, 1);
    assert_eq!(stats.backend_calls, 2);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_drops_expired_responses() {
    let server = start(Duration::from_millis(100), Duration::from_millis(1)).await;
    let mut client = Client::connect(server.addr).await.unwrap();
    for id in 0..10 {
        client.get(&format!("/items/{id}")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(server.cache.sweep(), 10);
    assert_eq!(server.cache.sweep(), 0);
    let stats = stats(&mut client).await;
    assert_eq!(stats.entries, 0);
    assert_eq!(stats.swept, 10);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_is_json_with_hit_ratio_map_stats_and_backend_calls() {
    let server = start(LONG_TTL, Duration::from_millis(1)).await;
    let mut client = Client::connect(server.addr).await.unwrap();
    for _ in 0..3 {
        client.get("/items/1").await.unwrap();
    }
    let missing = client.get("/items/not-an-item").await.unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let cached_404 = client.get("/items/not-an-item").await.unwrap();
    assert_eq!(
        (cached_404.status, cached_404.cache.as_deref()),
        (StatusCode::NOT_FOUND, Some("hit"))
    );
    let too_long = client.get(&format!("/items/{}", "9".repeat(65))).await;
    assert_eq!(too_long.unwrap().status, StatusCode::BAD_REQUEST);

    let response = client.get("/stats").await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    for field in [
        "requests",
        "hits",
        "misses",
        "coalesced",
        "hit_ratio",
        "backend_calls",
        "slots_created",
        "expired_reloads",
        "swept",
        "invalidations",
        "entries",
        "loading",
        "cached_bytes",
        "map",
    ] {
        assert!(json.get(field).is_some(), "no {field} in {json}");
    }
    for field in [
        "len",
        "snapshot_len",
        "amended",
        "dirty_len",
        "misses",
        "promotions",
        "dirty_rebuilds",
        "rotations",
        "retired",
    ] {
        assert!(json["map"].get(field).is_some(), "no map.{field} in {json}");
    }
    let stats: CacheStats = serde_json::from_value(json).unwrap();
    assert_eq!((stats.requests, stats.hits, stats.misses), (5, 3, 2));
    assert_eq!(stats.hit_ratio, 3.0 / 5.0);
    assert_eq!(stats.backend_calls, 2);
    assert_eq!((stats.entries, stats.map.len), (2, 2));
    // Counted by iterating a view of the cache: both responses are in, none is loading.
    assert_eq!(stats.loading, 0);
    assert!(stats.cached_bytes > 0);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_run_passes_its_own_checks() {
    let server = start(Duration::from_millis(300), Duration::from_millis(5)).await;
    let config = LoadConfig {
        duration: Duration::from_millis(500),
        connections: 4,
        keys: 50,
        max_requests: 2_000,
        invalidate_every: Duration::from_millis(20),
        burst: 16,
    };
    let report = cache::run_load(&server, &config).await.unwrap();
    for check in &report.checks {
        assert!(check.ok, "{}: {}", check.name, check.detail);
    }
    assert!(report.requests > 0 && report.requests <= 2_000);
    assert_eq!(report.errors, 0);
    assert_eq!(report.latency.len(), report.requests);
    server.stop().await.unwrap();
}
