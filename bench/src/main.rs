//! `dualmap-bench`: dualmap side by side with dashmap, `parking_lot::RwLock<HashMap>`,
//! `Mutex<HashMap>`, papaya and `scc::HashMap` (and a frozen `HashMap` as the read ceiling), in
//! one run: Go's 24 `sync.Map` workloads (ns/op as Go reports it), mixed workloads (Mops/s),
//! write workloads (Mops/s), per-operation latency (percentiles and the maximum), bytes per
//! entry, a cost model (instructions and cache lines per operation, from callgrind) and a
//! write-scaling benchmark. Prints tables with every map's ratio to dashmap and to the
//! ceiling, writes CSV files and SVG charts, and can rewrite BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p dualmap-bench                          # the default set (< 5 min on 2 cores)
//! cargo run --release -p dualmap-bench -- --quick               # tiny sizes, for CI
//! cargo run --release -p dualmap-bench -- --write-benchmarks-md # default set + BENCHMARKS.md
//! cargo run --release -p dualmap-bench -- --parts mixes --maps dualmap,dashmap --sizes 1000
//! ```

mod cost;
mod latency;
mod memory;
mod report;
mod svg;
mod workloads;

/// Counts live bytes for the `memory` part (and only there: see `memory.rs`).
#[global_allocator]
static ALLOCATOR: memory::CountingAllocator = memory::CountingAllocator;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use workloads::{Dist, GoWorkload, KeyStreams, MapKind, Mix, Phase, Throughput, WriteLoad};

/// Benchmarks dualmap against other concurrent maps: Go's sync.Map workloads, mixed
/// workloads, write workloads, latency, memory, a cost model and write scaling, in one run.
#[derive(Parser, Debug)]
#[command(name = "dualmap-bench", version, about)]
struct Args {
    /// Tiny sizes and very short runs, for CI: checks that everything runs, measures nothing
    /// worth reading. Writes to target/bench-quick unless --out is given.
    #[arg(long)]
    quick: bool,

    /// Parts to run (comma-separated): go, mixes, writes, latency, memory, cost,
    /// write-scaling [default: all].
    #[arg(long, value_delimiter = ',')]
    parts: Vec<String>,

    /// Maps to run: dualmap, dualmap-reader (mixes only), dashmap, rwlock-hashmap,
    /// mutex-hashmap, papaya, scc, frozen-hashmap (default: all). Ratios need dashmap and
    /// frozen-hashmap.
    #[arg(long, value_delimiter = ',')]
    maps: Vec<String>,

    /// Read/dirty pairs of the dualmap maps (1 is Go's sync.Map exactly) [default: the
    /// crate's, four per core].
    #[arg(long)]
    dualmap_pairs: Option<usize>,

    /// Go workloads to run: names or case-insensitive substrings, e.g. LoadMostlyHits,Swap
    /// (default: all 24).
    #[arg(long, value_delimiter = ',')]
    go: Vec<String>,

    /// Mixes to run: read-only, read-99.9, read-99, read-heavy, exchange, rapid-grow.
    #[arg(long, value_delimiter = ',')]
    mixes: Vec<String>,

    /// Write workloads to run: overwrite-disjoint, grow, churn.
    #[arg(long, value_delimiter = ',')]
    writes: Vec<String>,

    /// Key distributions of the mixes: uniform, zipf.
    #[arg(long, value_delimiter = ',')]
    dists: Vec<String>,

    /// Map sizes of the mixes [default: 1000,100000,1000000; --quick: 1000].
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<u64>,

    /// Prefilled keys of the overwrite-disjoint and churn write workloads [default: 100000;
    /// --quick: 1000].
    #[arg(long)]
    write_keys: Option<u64>,

    /// Prefilled keys of the latency part [default: 1000000; --quick: 1000].
    #[arg(long)]
    latency_keys: Option<u64>,

    /// Entries of the maps of the memory part [default: 1000000; --quick: 1000].
    #[arg(long)]
    memory_keys: Option<u64>,

    /// Thread counts for every part [default: $DUALMAP_BENCH_THREADS, else 1 and
    /// available_parallelism for Go's workloads, 1..=available_parallelism for the mixes and
    /// the write workloads; the latency part runs the largest].
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,

    /// Parked threads of the write-scaling benchmark.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    parked: Vec<usize>,

    /// Target time of one Go workload run, in ms: the op count is calibrated as Go's testing
    /// package does, then the workload runs --repeats times in all [default: 15; --quick: 2].
    #[arg(long)]
    go_ms: Option<u64>,

    /// Time of one measured phase of a mix or write-workload configuration, in ms; each
    /// configuration runs a warm-up of half of it, then --repeats phases [default: 30;
    /// --quick: 3].
    #[arg(long)]
    mix_ms: Option<u64>,

    /// Time of one repetition of the latency part, in ms, after a warm-up of half of it
    /// [default: 1000; --quick: 3].
    #[arg(long)]
    latency_ms: Option<u64>,

    /// Time of one measured run of a write-scaling configuration, in ms, after a warm-up of
    /// half of it [default: 20; --quick: 2].
    #[arg(long)]
    write_ms: Option<u64>,

    /// Measurements per configuration; the median is reported (robust to a run that another
    /// process interrupted). The maps compared in a configuration take turns, one measurement
    /// each per round, so that a spell of the machine running slower slows them alike
    /// [default: 3; --quick: 1].
    #[arg(long)]
    repeats: Option<usize>,

    /// Directory for the CSV files, SVG charts and report.md [default: bench/results;
    /// --quick: target/bench-quick].
    #[arg(long)]
    out: Option<PathBuf>,

    /// Also rewrite the generated sections of BENCHMARKS.md of the parts that ran, keeping
    /// the prose between them and the sections of parts that did not run. The run-wide
    /// sections (the run, the summary, the write-path targets) are rewritten only when every
    /// part ran, since they draw on all of them.
    #[arg(long)]
    write_benchmarks_md: bool,

    /// The BENCHMARKS.md that --write-benchmarks-md rewrites [default: BENCHMARKS.md at the
    /// workspace root].
    #[arg(long, requires = "write_benchmarks_md")]
    benchmarks_md: Option<PathBuf>,

    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Everything one run does, resolved from the arguments.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub go: bool,
    pub mixes: bool,
    pub writes: bool,
    pub latency: bool,
    pub memory: bool,
    pub cost: bool,
    pub write_scaling: bool,
    pub maps: Vec<MapKind>,
    pub go_workloads: Vec<GoWorkload>,
    pub go_threads: Vec<usize>,
    pub mix_list: Vec<Mix>,
    pub write_loads: Vec<WriteLoad>,
    pub write_keys: u64,
    pub latency_keys: u64,
    pub memory_keys: u64,
    pub dists: Vec<Dist>,
    pub sizes: Vec<u64>,
    pub mix_threads: Vec<usize>,
    pub parked: Vec<usize>,
    pub go_time: Duration,
    pub mix_time: Duration,
    pub latency_time: Duration,
    pub write_time: Duration,
    pub repeats: usize,
    pub out: PathBuf,
}

/// One Go workload measurement.
#[derive(Clone, Debug)]
pub struct GoRow {
    pub workload: GoWorkload,
    pub map: MapKind,
    pub threads: usize,
    pub ops: u64,
    pub wall: Duration,
}

impl GoRow {
    /// Go's ns/op: wall time over the total operations of all threads.
    pub fn ns_per_op(&self) -> f64 {
        self.wall.as_nanos() as f64 / self.ops as f64
    }
}

/// One mix measurement.
#[derive(Clone, Debug)]
pub struct MixRow {
    pub mix: Mix,
    pub dist: Dist,
    pub size: u64,
    pub map: MapKind,
    pub threads: usize,
    pub throughput: Throughput,
}

/// One write-workload measurement.
#[derive(Clone, Debug)]
pub struct WriteLoadRow {
    pub load: WriteLoad,
    pub map: MapKind,
    pub threads: usize,
    pub throughput: Throughput,
}

/// One map's latency.
#[derive(Clone, Debug)]
pub struct LatencyRow {
    pub map: MapKind,
    pub latency: latency::Latency,
}

/// One map's bytes per entry.
#[derive(Clone, Debug)]
pub struct MemoryRow {
    pub map: MapKind,
    pub memory: memory::Memory,
}

/// One write-scaling measurement.
#[derive(Clone, Debug)]
pub struct WriteRow {
    pub map: MapKind,
    pub parked: usize,
    pub ops: u64,
    pub wall: Duration,
}

impl WriteRow {
    /// Nanoseconds per overwrite.
    pub fn ns_per_op(&self) -> f64 {
        self.wall.as_nanos() as f64 / self.ops as f64
    }
}

/// The results of one run.
#[derive(Debug, Default)]
pub struct Results {
    pub go: Vec<GoRow>,
    pub mixes: Vec<MixRow>,
    pub write_loads: Vec<WriteLoadRow>,
    pub latency: Vec<LatencyRow>,
    pub memory: Vec<MemoryRow>,
    /// The cost model, or why it did not run.
    pub cost: Option<Result<Vec<cost::Cost>, String>>,
    pub writes: Vec<WriteRow>,
    pub elapsed: Duration,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn pick<T: Copy>(
    names: &[String],
    all: &[T],
    name_of: impl Fn(T) -> &'static str,
    what: &str,
) -> Vec<T> {
    if names.is_empty() {
        return all.to_vec();
    }
    names
        .iter()
        .map(|name| {
            all.iter()
                .copied()
                .find(|item| name_of(*item) == name.as_str())
                .unwrap_or_else(|| {
                    let known: Vec<_> = all.iter().map(|item| name_of(*item)).collect();
                    fail(&format!(
                        "unknown {what} {name:?}; one of {}",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

fn fail(message: &str) -> ! {
    eprintln!("dualmap-bench: {message}");
    std::process::exit(2);
}

/// Every part, in the order they run: write-scaling last (see `run_write_part`).
const PARTS: [&str; 7] = [
    "go",
    "mixes",
    "writes",
    "latency",
    "memory",
    "cost",
    "write-scaling",
];

fn plan(args: &Args) -> Plan {
    let parts: Vec<&str> = if args.parts.is_empty() {
        PARTS.to_vec()
    } else {
        args.parts.iter().map(String::as_str).collect()
    };
    for part in &parts {
        if !PARTS.contains(part) {
            fail(&format!(
                "unknown part {part:?}; one of {}",
                PARTS.join(", ")
            ));
        }
    }
    let go_workloads = if args.go.is_empty() {
        GoWorkload::ALL.to_vec()
    } else {
        let wanted: Vec<String> = args.go.iter().map(|name| name.to_lowercase()).collect();
        let picked: Vec<GoWorkload> = GoWorkload::ALL
            .into_iter()
            .filter(|w| {
                let name = w.name().to_lowercase();
                wanted.iter().any(|want| name.contains(want.as_str()))
            })
            .collect();
        if picked.is_empty() {
            fail(&format!("no Go workload matches {:?}", args.go));
        }
        picked
    };
    let all_threads = workloads::available_threads();
    let override_threads = if args.threads.is_empty() {
        workloads::threads_from_env()
    } else {
        Some(args.threads.clone())
    };
    if override_threads.as_ref().is_some_and(|t| t.contains(&0)) {
        fail("thread counts must be positive");
    }
    let go_threads = override_threads
        .clone()
        .unwrap_or_else(workloads::go_thread_counts);
    let mix_threads = override_threads.unwrap_or_else(|| (1..=all_threads).collect());
    let quick = args.quick;
    let ms = |given: Option<u64>, normal: u64, fast: u64| {
        Duration::from_millis(given.unwrap_or(if quick { fast } else { normal }))
    };
    let sizes = if !args.sizes.is_empty() {
        args.sizes.clone()
    } else if quick {
        vec![1_000]
    } else {
        vec![1_000, 100_000, 1_000_000]
    };
    if sizes.contains(&0) {
        fail("map sizes must be positive");
    }
    let keys = |given: Option<u64>, normal: u64, what: &str| {
        let keys = given.unwrap_or(if quick { 1_000 } else { normal });
        if keys == 0 {
            fail(&format!("{what} must be positive"));
        }
        keys
    };
    let write_keys = keys(args.write_keys, 100_000, "--write-keys");
    if write_keys < mix_threads.iter().copied().max().unwrap_or(1) as u64 {
        fail("--write-keys must be at least the largest thread count");
    }
    let out = args.out.clone().unwrap_or_else(|| {
        if quick {
            workspace_root().join("target").join("bench-quick")
        } else {
            workspace_root().join("bench").join("results")
        }
    });
    Plan {
        quick,
        go: parts.contains(&"go"),
        mixes: parts.contains(&"mixes"),
        writes: parts.contains(&"writes"),
        latency: parts.contains(&"latency"),
        memory: parts.contains(&"memory"),
        cost: parts.contains(&"cost"),
        write_scaling: parts.contains(&"write-scaling"),
        maps: pick(&args.maps, &MapKind::ALL, MapKind::name, "map"),
        go_workloads,
        go_threads,
        mix_list: pick(&args.mixes, &Mix::ALL, Mix::name, "mix"),
        write_loads: pick(
            &args.writes,
            &WriteLoad::ALL,
            WriteLoad::name,
            "write workload",
        ),
        write_keys,
        latency_keys: keys(args.latency_keys, 1_000_000, "--latency-keys"),
        memory_keys: keys(args.memory_keys, 1_000_000, "--memory-keys"),
        dists: pick(&args.dists, &Dist::ALL, Dist::name, "distribution"),
        sizes,
        mix_threads,
        parked: args.parked.clone(),
        go_time: ms(args.go_ms, 15, 2),
        mix_time: ms(args.mix_ms, 30, 3),
        latency_time: ms(args.latency_ms, 1_000, 3),
        write_time: ms(args.write_ms, 20, 2),
        repeats: args.repeats.unwrap_or(if quick { 1 } else { 3 }).max(1),
        out,
    }
}

/// Measures one Go workload on each of `kinds`, as Go's testing package does: for each map,
/// runs with a growing op count `N` (a fresh map each time) until one run lasts at least the
/// target time; then runs each map's `N` until every map has `repeats` such runs, the maps
/// [`workloads::in_turn`], and reports each map's median.
fn measure_go(
    kinds: &[MapKind],
    workload: GoWorkload,
    threads: usize,
    target: Duration,
    repeats: usize,
) -> Vec<GoRow> {
    let calibrated: Vec<(u64, Duration)> = kinds
        .iter()
        .map(|&kind| calibrate_go(kind, workload, threads, target))
        .collect();
    let more = workloads::in_turn(kinds.len(), repeats.saturating_sub(1), |contender, _| {
        workloads::run_go(kinds[contender], workload, threads, calibrated[contender].0)
    });
    kinds
        .iter()
        .zip(calibrated)
        .zip(more)
        .map(|((&kind, (ops, first)), mut walls)| {
            walls.push(first);
            walls.sort_unstable();
            GoRow {
                workload,
                map: kind,
                threads,
                ops,
                wall: walls[walls.len() / 2],
            }
        })
        .collect()
}

/// Go's calibration of `N` for one map: the op count of the first run that lasted `target`,
/// and that run's time.
fn calibrate_go(
    kind: MapKind,
    workload: GoWorkload,
    threads: usize,
    target: Duration,
) -> (u64, Duration) {
    let mut ops = threads as u64 * 16;
    loop {
        let wall = workloads::run_go(kind, workload, threads, ops);
        if wall >= target || ops >= 2_000_000_000 {
            return (ops, wall);
        }
        let per_op = wall.as_secs_f64().max(1e-9) / ops as f64;
        let predicted = (target.as_secs_f64() * 1.2 / per_op) as u64;
        ops = predicted.clamp(ops + 1, ops.saturating_mul(100));
    }
}

fn run_go_part(plan: &Plan, bar: &ProgressBar, results: &mut Results) {
    for &threads in &plan.go_threads {
        for &workload in &plan.go_workloads {
            let kinds: Vec<MapKind> = plan
                .maps
                .iter()
                .copied()
                .filter(|&kind| workload.runs_on(kind))
                .collect();
            if kinds.is_empty() {
                continue;
            }
            bar.set_message(format!("go {} {threads}t", workload.name()));
            let rows = measure_go(&kinds, workload, threads, plan.go_time, plan.repeats);
            bar.inc(rows.len() as u64);
            results.go.extend(rows);
        }
    }
}

/// The mixes at one map size: every map prefilled at once, each configuration's phases run
/// map by map in turn ([`workloads::interleaved_medians`]).
fn run_mix_part(plan: &Plan, bar: &ProgressBar, results: &mut Results) {
    let max_threads = plan.max_threads();
    for &size in &plan.sizes {
        bar.set_message(format!("drawing keys for n={size}"));
        let streams: Vec<KeyStreams> = plan
            .dists
            .iter()
            .map(|&dist| KeyStreams::new(size, dist, max_threads))
            .collect();
        let targets: Vec<(MapKind, workloads::MixTarget)> = plan
            .maps
            .iter()
            .map(|&kind| {
                bar.set_message(format!("prefilling {} with {size} keys", kind.name()));
                (kind, workloads::MixTarget::prefilled(kind, size))
            })
            .collect();
        for &mix in &plan.mix_list {
            for keys in &streams {
                for &threads in &plan.mix_threads {
                    bar.set_message(format!(
                        "{} {} n={size} {threads}t",
                        mix.name(),
                        keys.dist.name()
                    ));
                    let runs: Vec<&(MapKind, workloads::MixTarget)> = targets
                        .iter()
                        .filter(|(_, target)| target.writes || mix.read_only())
                        .collect();
                    let mut phases: Vec<Phase<'_>> = runs
                        .iter()
                        .map(|(_, target)| -> Phase<'_> {
                            Box::new(move |duration, number| {
                                target.phase(mix, keys, threads, duration, number)
                            })
                        })
                        .collect();
                    let medians = plan.phase_medians(&mut phases);
                    for ((kind, _), throughput) in runs.iter().copied().zip(medians) {
                        results.mixes.push(MixRow {
                            mix,
                            dist: keys.dist,
                            size,
                            map: *kind,
                            threads,
                            throughput,
                        });
                        bar.inc(1);
                    }
                }
            }
        }
        bar.set_message(format!("dropping the maps with {size} keys"));
        drop(targets);
    }
}

impl Plan {
    /// Whether every part runs: only then do the run-wide sections of BENCHMARKS.md (the run,
    /// the summary, the targets) describe this run.
    pub fn every_part(&self) -> bool {
        self.go
            && self.mixes
            && self.writes
            && self.latency
            && self.memory
            && self.cost
            && self.write_scaling
    }

    /// The maps of Go's workloads and the write-scaling benchmark: the `Reader` path changes
    /// only how gets are done.
    fn go_maps(&self) -> impl Iterator<Item = MapKind> + '_ {
        self.maps.iter().copied().filter(|kind| !kind.mixes_only())
    }

    /// The maps of the write workloads.
    fn writing_maps(&self) -> impl Iterator<Item = MapKind> + '_ {
        self.go_maps().filter(|kind| kind.writes())
    }

    /// The maps of the latency part: every writer, and the `Reader` path (its gets differ).
    fn latency_maps(&self) -> impl Iterator<Item = MapKind> + '_ {
        self.maps.iter().copied().filter(|kind| kind.writes())
    }

    /// The medians of the phases of the maps of one mix or write-workload configuration,
    /// measured side by side: a warm-up of half a phase each, then `repeats` phases of
    /// `mix_time` each, the maps in turn.
    fn phase_medians(&self, phases: &mut [Phase<'_>]) -> Vec<Throughput> {
        workloads::interleaved_medians(phases, self.mix_time / 2, self.mix_time, self.repeats)
    }

    /// The largest thread count of the list: the latency part runs it, and the write-path
    /// targets are judged on it.
    pub fn max_threads(&self) -> usize {
        self.mix_threads.iter().copied().max().unwrap_or(1)
    }
}

/// The write workloads: for each workload and thread count, every writing map's phases in
/// turn ([`workloads::interleaved_medians`]).
fn run_write_loads(plan: &Plan, bar: &ProgressBar, results: &mut Results) {
    let kinds: Vec<MapKind> = plan.writing_maps().collect();
    for &load in &plan.write_loads {
        for &threads in &plan.mix_threads {
            bar.set_message(format!("{} {threads}t", load.name()));
            let mut phases: Vec<Phase<'static>> = kinds
                .iter()
                .map(|&kind| workloads::write_load_phase_kind(kind, load, plan.write_keys, threads))
                .collect();
            let medians = plan.phase_medians(&mut phases);
            for (&kind, throughput) in kinds.iter().zip(medians) {
                results.write_loads.push(WriteLoadRow {
                    load,
                    map: kind,
                    threads,
                    throughput,
                });
                bar.inc(1);
            }
        }
    }
}

fn run_latency_part(plan: &Plan, bar: &ProgressBar, results: &mut Results) {
    let kinds: Vec<MapKind> = plan.latency_maps().collect();
    bar.set_message(format!(
        "latency n={} {}t",
        plan.latency_keys,
        plan.max_threads()
    ));
    let latencies = latency::measure_side_by_side(
        &kinds,
        plan.latency_keys,
        plan.max_threads(),
        plan.latency_time / 2,
        plan.latency_time,
        plan.repeats,
    );
    for (&kind, latency) in kinds.iter().zip(latencies) {
        results.latency.push(LatencyRow { map: kind, latency });
        bar.inc(1);
    }
}

fn run_memory_part(plan: &Plan, bar: &ProgressBar, results: &mut Results) {
    for kind in plan.go_maps() {
        bar.set_message(format!("memory {} n={}", kind.name(), plan.memory_keys));
        let memory = memory::measure_kind(kind, plan.memory_keys);
        results.memory.push(MemoryRow { map: kind, memory });
        bar.inc(1);
    }
}

fn run_cost_part(plan: &Plan, bar: &ProgressBar, results: &mut Results) {
    bar.set_message("cost model: cargo run --release --example instructions (valgrind)");
    results.cost = match cost::run(&workspace_root(), &plan.out, plan.quick) {
        Ok(rows) => Some(Ok(rows)),
        Err(cost::CostError::NoValgrind) => {
            bar.suspend(|| {
                eprintln!("warning: valgrind is not installed; the cost model is skipped")
            });
            Some(Err("skipped: valgrind is not installed".into()))
        }
        Err(cost::CostError::Failed(error)) => fail(&format!("cost model: {error}")),
    };
    bar.inc(1);
}

fn run_write_part(plan: &Plan, bar: &ProgressBar, results: &mut Results) {
    // Ascending, and after everything else: some maps (dualmap through arc-swap, epoch-based
    // ones) keep a per-thread record for the life of the process, so this part must not
    // slow down the others, and a smaller count must not run after a larger one.
    let mut parked = plan.parked.clone();
    parked.sort_unstable();
    for &count in &parked {
        for kind in plan.writing_maps() {
            bar.set_message(format!("write scaling {} {count} parked", kind.name()));
            let outcome = workloads::run_write_scaling_kind(
                kind,
                count,
                plan.write_time / 2,
                plan.write_time,
                plan.repeats,
            );
            results.writes.push(WriteRow {
                map: kind,
                parked: count,
                ops: outcome.ops,
                wall: outcome.wall,
            });
            bar.inc(1);
        }
    }
}

fn steps(plan: &Plan) -> u64 {
    let mut steps = 0;
    if plan.go {
        let per_threads: usize = plan
            .go_workloads
            .iter()
            .map(|w| plan.maps.iter().filter(|&&kind| w.runs_on(kind)).count())
            .sum();
        steps += per_threads * plan.go_threads.len();
    }
    if plan.mixes {
        let per_size: usize = plan
            .maps
            .iter()
            .map(|kind| {
                plan.mix_list
                    .iter()
                    .filter(|mix| kind.writes() || mix.read_only())
                    .count()
            })
            .sum();
        steps += per_size * plan.dists.len() * plan.sizes.len() * plan.mix_threads.len();
    }
    if plan.writes {
        steps += plan.write_loads.len() * plan.writing_maps().count() * plan.mix_threads.len();
    }
    if plan.latency {
        steps += plan.latency_maps().count();
    }
    if plan.memory {
        steps += plan.go_maps().count();
    }
    if plan.cost {
        steps += 1;
    }
    if plan.write_scaling {
        steps += plan.parked.len() * plan.writing_maps().count();
    }
    steps as u64
}

fn main() {
    let args = Args::parse();
    if let Some(pairs) = args.dualmap_pairs {
        workloads::set_dualmap_pairs(pairs);
    }
    let plan = plan(&args);
    let load_before = report::load_average();
    let started = Instant::now();
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps(&plan))
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} (eta {eta}) {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut results = Results::default();
    if plan.go {
        run_go_part(&plan, &bar, &mut results);
    }
    if plan.mixes {
        run_mix_part(&plan, &bar, &mut results);
    }
    if plan.writes {
        run_write_loads(&plan, &bar, &mut results);
    }
    if plan.latency {
        run_latency_part(&plan, &bar, &mut results);
    }
    if plan.memory {
        run_memory_part(&plan, &bar, &mut results);
    }
    if plan.cost {
        run_cost_part(&plan, &bar, &mut results);
    }
    if plan.write_scaling {
        run_write_part(&plan, &bar, &mut results);
    }
    bar.finish_and_clear();
    results.elapsed = started.elapsed();

    let command = report::command_line();
    let info = report::RunInfo::collect(&command, results.elapsed, load_before);
    let generated = report::Generated::new(&plan, &results, &info);
    print!("{}", generated.text_tables());
    if let Err(error) = generated.write_files(&plan.out) {
        fail(&format!("writing {}: {error}", plan.out.display()));
    }
    println!(
        "\nwrote CSV, SVG and report.md to {} in {:.1} s of benchmarking",
        plan.out.display(),
        results.elapsed.as_secs_f64()
    );
    if args.write_benchmarks_md {
        let path = args
            .benchmarks_md
            .clone()
            .unwrap_or_else(|| workspace_root().join("BENCHMARKS.md"));
        match generated.update_benchmarks_md(&path) {
            Ok(()) => println!("updated {}", path.display()),
            Err(error) => fail(&format!("updating {}: {error}", path.display())),
        }
    }
}
