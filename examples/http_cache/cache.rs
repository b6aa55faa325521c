//! The core of the HTTP cache: a deliberately slow backend, a response cache on a `DualMap`
//! with single-flight loading and a TTL, the axum service, a small HTTP/1.1 client, and the
//! load that drives them. `main.rs` adds the flags and the printout; the integration test
//! `tests/http_cache.rs` runs this same file at small sizes.
//!
//! The cache maps an item id to a *slot*: a shared once-cell that the first request for the
//! id fills by calling the backend, while every other request for it waits on the same cell.
//! So concurrent misses on one id cost one backend call. A slot older than the TTL is swapped
//! for a fresh one with `compare_and_swap`, so exactly one of the requests that see it expire
//! replaces it (and the next backend call is again single-flight); a sweeper drops expired
//! slots with `compare_and_remove`; the admin endpoint removes one id, or every id.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dualmap::{DualMap, GetOrInsert};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Item ids the backend knows: `0..CATALOGUE`. Any other id is a 404, cached like a 200.
pub const CATALOGUE: u64 = 1_000_000;
/// Longest id the service accepts (longer ones are refused, not cached).
pub const MAX_ID_LEN: usize = 64;

/// A response as the backend made it, and when.
#[derive(Clone, Debug)]
pub struct Cached {
    pub status: StatusCode,
    pub body: Bytes,
    /// How many times the backend has produced this id, this one included.
    pub version: u64,
    pub loaded_at: Instant,
}

/// What the backend returns for an item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    pub name: String,
    pub price_cents: u64,
    pub version: u64,
}

/// The deliberately slow backend: every call sleeps, and counts.
#[derive(Debug)]
pub struct Backend {
    delay: Duration,
    calls: AtomicU64,
    /// Calls per id: a counter map, incremented with one atomic `update_or_insert_with`.
    calls_by_id: DualMap<String, u64>,
}

impl Backend {
    pub fn new(delay: Duration) -> Self {
        Backend {
            delay,
            calls: AtomicU64::new(0),
            calls_by_id: DualMap::new(),
        }
    }

    pub async fn fetch(&self, id: &str) -> Cached {
        tokio::time::sleep(self.delay).await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let version = *self
            .calls_by_id
            .update_or_insert_with(id.to_owned(), |n| n + 1, || 1);
        let (status, body) = match id.parse::<u64>() {
            Ok(n) if n < CATALOGUE => {
                let item = Item {
                    id: n,
                    name: format!("item {n}"),
                    price_cents: 100 + n % 9_900,
                    version,
                };
                (StatusCode::OK, serde_json::to_vec(&item))
            }
            _ => (
                StatusCode::NOT_FOUND,
                serde_json::to_vec(&serde_json::json!({ "error": "no such item", "id": id })),
            ),
        };
        Cached {
            status,
            body: Bytes::from(body.expect("JSON of plain data")),
            version,
            loaded_at: Instant::now(),
        }
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls so far for one id.
    pub fn calls_for(&self, id: &str) -> u64 {
        self.calls_by_id.get_cloned(id).unwrap_or(0)
    }
}

/// A cache slot: filled once, by whichever request gets there first. Two slots are equal only
/// if they are the same slot, which is what `compare_and_swap` needs to replace an expired one.
#[derive(Clone, Debug, Default)]
pub struct Slot(Arc<OnceCell<Cached>>);

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// How a request was answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// From a filled, fresh slot.
    Hit,
    /// This request called the backend.
    Miss,
    /// Waited for another request's backend call.
    Coalesced,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    slots_created: AtomicU64,
    expired_reloads: AtomicU64,
    swept: AtomicU64,
    invalidations: AtomicU64,
}

/// The response cache.
#[derive(Debug)]
pub struct Cache {
    slots: DualMap<String, Slot>,
    ttl: Duration,
    backend: Backend,
    counters: Counters,
}

impl Cache {
    pub fn new(backend: Backend, ttl: Duration) -> Self {
        Cache {
            slots: DualMap::new(),
            ttl,
            backend,
            counters: Counters::default(),
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The response for `id`, from the cache or the backend.
    pub async fn get(&self, id: &str) -> (Cached, Outcome) {
        let counters = &self.counters;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        loop {
            let slot = self.slot(id);
            if let Some(cached) = slot.0.get() {
                if cached.loaded_at.elapsed() < self.ttl {
                    counters.hits.fetch_add(1, Ordering::Relaxed);
                    return (cached.clone(), Outcome::Hit);
                }
                // Expired: of all the requests that see this slot expire, one swaps in a
                // fresh slot; they all go round again and share its single load.
                if self
                    .slots
                    .compare_and_swap(id, &slot, Slot::default())
                    .is_ok()
                {
                    counters.slots_created.fetch_add(1, Ordering::Relaxed);
                    counters.expired_reloads.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let led = AtomicBool::new(false);
            let cached = slot
                .0
                .get_or_init(|| async {
                    led.store(true, Ordering::Relaxed);
                    self.backend.fetch(id).await
                })
                .await
                .clone();
            return if led.into_inner() {
                counters.misses.fetch_add(1, Ordering::Relaxed);
                (cached, Outcome::Miss)
            } else {
                counters.coalesced.fetch_add(1, Ordering::Relaxed);
                (cached, Outcome::Coalesced)
            };
        }
    }

    /// The slot of `id`, created empty if there is none. Clones it out of the map at once:
    /// a `Ref` is not held across an `.await`.
    fn slot(&self, id: &str) -> Slot {
        if let Some(slot) = self.slots.get(id) {
            return Slot::clone(&slot);
        }
        match self.slots.get_or_insert(id.to_owned(), Slot::default()) {
            GetOrInsert::Inserted(slot) => {
                self.counters.slots_created.fetch_add(1, Ordering::Relaxed);
                Slot::clone(&slot)
            }
            GetOrInsert::Loaded(slot) => Slot::clone(&slot),
        }
    }

    /// Drops the cached response of `id`: the next request calls the backend. True if there
    /// was one.
    pub fn invalidate(&self, id: &str) -> bool {
        let removed = self.slots.remove(id).is_some();
        if removed {
            self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Drops every cached response.
    pub fn clear(&self) {
        self.slots.clear();
    }

    /// Drops every slot older than the TTL (slots still loading stay); returns how many.
    /// Each removal is a `compare_and_remove` of the very slot found expired, so a slot that
    /// a request has just replaced is left alone, and no removal is counted twice.
    pub fn sweep(&self) -> usize {
        let mut removed = 0;
        for (id, slot) in self.slots.iter() {
            let expired = slot
                .0
                .get()
                .is_some_and(|cached| cached.loaded_at.elapsed() >= self.ttl);
            if expired && self.slots.compare_and_remove(id.as_str(), &slot) {
                removed += 1;
            }
        }
        self.counters
            .swept
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let requests = load(&c.requests);
        let hits = load(&c.hits);
        let map = self.slots.stats();
        // One pass over a view: plain references, no lock, no shared write per slot.
        let (mut loading, mut cached_bytes) = (0, 0);
        for (_, slot) in &self.slots.view() {
            match slot.0.get() {
                Some(cached) => cached_bytes += cached.body.len(),
                None => loading += 1,
            }
        }
        CacheStats {
            requests,
            hits,
            misses: load(&c.misses),
            coalesced: load(&c.coalesced),
            hit_ratio: if requests == 0 {
                0.0
            } else {
                hits as f64 / requests as f64
            },
            backend_calls: self.backend.calls(),
            slots_created: load(&c.slots_created),
            expired_reloads: load(&c.expired_reloads),
            swept: load(&c.swept),
            invalidations: load(&c.invalidations),
            entries: self.slots.len(),
            loading,
            cached_bytes,
            map: MapStats {
                len: map.len,
                snapshot_len: map.snapshot_len,
                amended: map.amended,
                dirty_len: map.dirty_len,
                misses: map.misses,
                promotions: map.promotions,
                dirty_rebuilds: map.dirty_rebuilds,
                rotations: map.rotations,
                retired: map.retired,
            },
        }
    }
}

/// The body of `GET /stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    pub requests: u64,
    /// Answered from a fresh cached response.
    pub hits: u64,
    /// Answered by calling the backend.
    pub misses: u64,
    /// Answered by waiting for another request's backend call.
    pub coalesced: u64,
    /// `hits / requests`.
    pub hit_ratio: f64,
    pub backend_calls: u64,
    /// Empty slots put in the map (new ids, ids after invalidation, expired responses).
    pub slots_created: u64,
    /// Slots replaced because their response had outlived the TTL.
    pub expired_reloads: u64,
    /// Expired slots the sweeper removed.
    pub swept: u64,
    pub invalidations: u64,
    /// Ids in the cache.
    pub entries: usize,
    /// Slots whose backend call is still in flight.
    pub loading: usize,
    /// Bytes of the cached response bodies.
    pub cached_bytes: usize,
    /// The `DualMap`'s own counters.
    pub map: MapStats,
}

/// `dualmap::Stats`, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStats {
    pub len: usize,
    pub snapshot_len: usize,
    pub amended: bool,
    pub dirty_len: Option<usize>,
    pub misses: usize,
    pub promotions: u64,
    pub dirty_rebuilds: u64,
    pub rotations: u64,
    pub retired: usize,
}

/// How the service is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub ttl: Duration,
    pub backend_delay: Duration,
    /// How often the sweeper drops expired responses.
    pub sweep_every: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 3000,
            ttl: Duration::from_secs(10),
            backend_delay: Duration::from_millis(100),
            sweep_every: Duration::from_secs(10),
        }
    }
}

/// The routes, over one shared cache. The admin routes have no authentication: the service
/// binds 127.0.0.1 only; guard them before serving anything wider.
pub fn router(cache: Arc<Cache>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/items/{id}", get(item))
        .route("/admin/invalidate/{id}", post(invalidate))
        .route("/admin/clear", post(clear))
        .route("/stats", get(stats))
        .with_state(cache)
}

const INDEX: &str = "\
GET  /items/{id}               an item, cached (x-cache: hit | miss | coalesced)
POST /admin/invalidate/{id}    drop one cached item
POST /admin/clear              drop every cached item
GET  /stats                    hit ratio, backend calls, map stats (JSON)
";

async fn index() -> &'static str {
    INDEX
}

async fn item(State(cache): State<Arc<Cache>>, Path(id): Path<String>) -> Response {
    if id.len() > MAX_ID_LEN {
        return (StatusCode::BAD_REQUEST, "id too long\n").into_response();
    }
    let (cached, outcome) = cache.get(&id).await;
    let mut response = (
        cached.status,
        [(CONTENT_TYPE, "application/json")],
        cached.body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-cache", HeaderValue::from_static(outcome.as_str()));
    headers.insert("x-backend-version", HeaderValue::from(cached.version));
    response
}

async fn invalidate(State(cache): State<Arc<Cache>>, Path(id): Path<String>) -> Response {
    let invalidated = cache.invalidate(&id);
    Json(serde_json::json!({ "invalidated": invalidated })).into_response()
}

async fn clear(State(cache): State<Arc<Cache>>) -> Response {
    cache.clear();
    Json(serde_json::json!({ "cleared": true })).into_response()
}

async fn stats(State(cache): State<Arc<Cache>>) -> Json<CacheStats> {
    Json(cache.stats())
}

/// A running service.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub cache: Arc<Cache>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
}

impl Server {
    /// Binds 127.0.0.1 (only) and serves until [`stop`](Self::stop).
    pub async fn start(config: &ServerConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let cache = Arc::new(Cache::new(Backend::new(config.backend_delay), config.ttl));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(Arc::clone(&cache));
        let serving = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        let sweeper = {
            let cache = Arc::clone(&cache);
            let every = config.sweep_every.max(Duration::from_millis(10));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    cache.sweep();
                }
            })
        };
        Ok(Server {
            addr,
            cache,
            shutdown,
            serving,
            sweeper,
        })
    }

    /// Stops accepting, lets open requests finish, and stops the sweeper.
    pub async fn stop(self) -> std::io::Result<()> {
        self.sweeper.abort();
        let _ = self.shutdown.send(());
        self.serving.await.expect("the server task does not panic")
    }
}

/// A response, as the client sees it.
#[derive(Clone, Debug)]
pub struct ClientResponse {
    pub status: StatusCode,
    /// The `x-cache` header, if any.
    pub cache: Option<String>,
    /// The `x-backend-version` header, if any.
    pub version: Option<u64>,
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection (hyper's client), one request at a time.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: HeaderValue,
}

/// How long the client waits for any one response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Client, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Client {
            sender,
            host: HeaderValue::from_str(&addr.to_string())?,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<ClientResponse, Error> {
        self.request(Method::GET, path).await
    }

    pub async fn post(&mut self, path: &str) -> Result<ClientResponse, Error> {
        self.request(Method::POST, path).await
    }

    async fn request(&mut self, method: Method, path: &str) -> Result<ClientResponse, Error> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .body(Empty::new())?;
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            Ok::<_, Error>(ClientResponse {
                status: parts.status,
                cache: header("x-cache"),
                version: header("x-backend-version").and_then(|v| v.parse().ok()),
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no response to {path} in {REQUEST_TIMEOUT:?}"))?
    }
}

/// What `--load` does.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub duration: Duration,
    /// Concurrent client connections.
    pub connections: usize,
    /// Ids requested: `0..keys`, 80% of requests going to the first tenth.
    pub keys: u64,
    /// Stops earlier once this many item requests are sent.
    pub max_requests: u64,
    /// One id invalidated through the admin endpoint this often during the run.
    pub invalidate_every: Duration,
    /// Concurrent requests for one cold id in the single-flight check.
    pub burst: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            duration: Duration::from_secs(3),
            connections: 64,
            keys: 1_000,
            max_requests: 2_000_000,
            invalidate_every: Duration::from_millis(50),
            burst: 64,
        }
    }
}

/// One check of the load run.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The result of a load run.
#[derive(Debug)]
pub struct LoadReport {
    pub elapsed: Duration,
    /// Item requests sent by the load's connections (not the checks).
    pub requests: u64,
    pub errors: u64,
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub invalidations: u64,
    /// Latency of the load's item requests, in microseconds, as the client measured it.
    pub latency: Histogram<u64>,
    /// `GET /stats` at the end.
    pub stats: CacheStats,
    pub checks: Vec<Check>,
}

impl LoadReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|check| check.ok)
    }
}

fn check(name: &'static str, ok: bool, detail: String) -> Check {
    Check { name, ok, detail }
}

/// Sends `n` concurrent requests for `id`, each on its own connection; returns the responses.
pub async fn burst(addr: SocketAddr, id: &str, n: usize) -> Result<Vec<ClientResponse>, Error> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect(addr).await?);
    }
    let path = format!("/items/{id}");
    let requests: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let path = path.clone();
            tokio::spawn(async move { client.get(&path).await })
        })
        .collect();
    let mut responses = Vec::with_capacity(n);
    for request in requests {
        responses.push(request.await??);
    }
    Ok(responses)
}

/// A small generator (SplitMix64) for picking ids.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// What one load connection hands back.
#[derive(Default)]
struct ConnectionResult {
    requests: u64,
    errors: u64,
    by_outcome: [u64; 3],
    first_error: Option<String>,
}

/// Drives `server` over loopback: a single-flight check on a cold id, `config.duration` of
/// read-heavy load with invalidations, then an invalidation check and `GET /stats`.
pub async fn run_load(server: &Server, config: &LoadConfig) -> Result<LoadReport, Error> {
    let addr = server.addr;
    let backend = server.cache.backend();
    let mut checks = Vec::new();

    // 1. Single flight: `burst` concurrent requests for a cold id, one backend call.
    let cold = (config.keys + 1).to_string();
    let responses = burst(addr, &cold, config.burst.max(1)).await?;
    let versions: Vec<Option<u64>> = responses.iter().map(|r| r.version).collect();
    let all_ok = responses.iter().all(|r| r.status == StatusCode::OK);
    checks.push(check(
        "single flight",
        backend.calls_for(&cold) == 1 && all_ok && versions.iter().all(|v| *v == Some(1)),
        format!(
            "{} concurrent requests for cold id {cold}: {} backend call(s), {} miss, {} coalesced, {} hit",
            responses.len(),
            backend.calls_for(&cold),
            count_outcome(&responses, "miss"),
            count_outcome(&responses, "coalesced"),
            count_outcome(&responses, "hit"),
        ),
    ));

    // 2. The load.
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(AtomicU64::new(config.max_requests));
    let started = Instant::now();
    let mut connections = Vec::new();
    for c in 0..config.connections.max(1) {
        let mut client = Client::connect(addr).await?;
        let (stop, budget) = (Arc::clone(&stop), Arc::clone(&budget));
        let keys = config.keys.max(1);
        connections.push(tokio::spawn(async move {
            let mut rng = Rng(0xCAC4E ^ c as u64);
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut result = ConnectionResult::default();
            let hot = (keys / 10).max(1);
            while !stop.load(Ordering::Relaxed)
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                let id = if rng.below(10) < 8 {
                    rng.below(hot)
                } else {
                    rng.below(keys)
                };
                let sent = Instant::now();
                let response = client.get(&format!("/items/{id}")).await;
                latency.saturating_record(sent.elapsed().as_micros() as u64);
                result.requests += 1;
                let problem = match response {
                    Ok(response) if response.status == StatusCode::OK => {
                        match serde_json::from_slice::<Item>(&response.body) {
                            Ok(item) if item.id == id => {
                                let slot = match response.cache.as_deref() {
                                    Some("hit") => 0,
                                    Some("miss") => 1,
                                    _ => 2,
                                };
                                result.by_outcome[slot] += 1;
                                None
                            }
                            other => Some(format!("/items/{id}: wrong body {other:?}")),
                        }
                    }
                    Ok(response) => Some(format!("/items/{id}: status {}", response.status)),
                    Err(error) => Some(format!("/items/{id}: {error}")),
                };
                if let Some(problem) = problem {
                    result.errors += 1;
                    result.first_error.get_or_insert(problem);
                    if result.errors > 100 {
                        break;
                    }
                }
            }
            (result, latency)
        }));
    }
    let invalidator = {
        let stop = Arc::clone(&stop);
        let mut client = Client::connect(addr).await?;
        let (every, hot) = (config.invalidate_every, (config.keys / 10).max(1));
        tokio::spawn(async move {
            let mut rng = Rng(0x1D);
            let mut invalidated = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                let id = rng.below(hot);
                if client
                    .post(&format!("/admin/invalidate/{id}"))
                    .await
                    .is_ok()
                {
                    invalidated += 1;
                }
            }
            invalidated
        })
    };
    while started.elapsed() < config.duration && budget.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut totals = ConnectionResult::default();
    for connection in connections {
        let (result, histogram) = connection.await?;
        latency.add(&histogram).expect("same bounds");
        totals.requests += result.requests;
        totals.errors += result.errors;
        for (total, n) in totals.by_outcome.iter_mut().zip(result.by_outcome) {
            *total += n;
        }
        if totals.first_error.is_none() {
            totals.first_error = result.first_error;
        }
    }
    let elapsed = started.elapsed();
    let invalidations = invalidator.await?;
    checks.push(check(
        "every response right",
        totals.errors == 0 && totals.requests > 0,
        match &totals.first_error {
            Some(error) => format!("{} bad responses; first: {error}", totals.errors),
            None => format!("{} responses, each 200 with its own item", totals.requests),
        },
    ));

    // 3. Invalidation: the next request after it calls the backend again.
    let mut client = Client::connect(addr).await?;
    let id = "0";
    let before = client.get("/items/0").await?;
    let calls_before = backend.calls_for(id);
    let invalidated = client.post("/admin/invalidate/0").await?;
    let after = client.get("/items/0").await?;
    checks.push(check(
        "invalidation",
        invalidated.body.as_ref() == br#"{"invalidated":true}"#
            && after.cache.as_deref() == Some("miss")
            && backend.calls_for(id) == calls_before + 1
            && after.version == Some(calls_before + 1),
        format!(
            "id {id}: version {:?} before, invalidated {}, then x-cache {:?}, version {:?}",
            before.version,
            String::from_utf8_lossy(&invalidated.body),
            after.cache,
            after.version
        ),
    ));

    // 4. The books balance.
    let stats_response = client.get("/stats").await?;
    let stats: CacheStats = serde_json::from_slice(&stats_response.body)?;
    checks.push(check(
        "stats add up",
        stats.requests == stats.hits + stats.misses + stats.coalesced
            && stats.backend_calls == stats.misses
            && stats.backend_calls <= stats.slots_created
            && stats.entries == stats.map.len,
        format!(
            "{} requests = {} hits + {} misses + {} coalesced; {} backend calls, {} slots created",
            stats.requests,
            stats.hits,
            stats.misses,
            stats.coalesced,
            stats.backend_calls,
            stats.slots_created
        ),
    ));

    Ok(LoadReport {
        elapsed,
        requests: totals.requests,
        errors: totals.errors,
        hits: totals.by_outcome[0],
        misses: totals.by_outcome[1],
        coalesced: totals.by_outcome[2],
        invalidations,
        latency,
        stats,
        checks,
    })
}

fn count_outcome(responses: &[ClientResponse], outcome: &str) -> usize {
    responses
        .iter()
        .filter(|r| r.cache.as_deref() == Some(outcome))
        .count()
}
