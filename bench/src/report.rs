//! Turning results into tables (terminal and Markdown), CSV files, SVG charts, a summary of
//! where dualmap leads and trails, the table of the write-path targets, and the generated
//! sections of BENCHMARKS.md.

use crate::cost::Cost;
use crate::latency::{Latency, PERCENTILES};
use crate::memory::Memory;
use crate::svg::{self, Bars, Panel, Series};
use crate::workloads::{self, Dist, GoWorkload, MapKind, Mix, WriteLoad};
use crate::{GoRow, MixRow, Plan, Results, WriteRow};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The map every ratio is taken against.
const BASELINE: MapKind = MapKind::DashMap;
/// The read ceiling.
const CEILING: MapKind = MapKind::Frozen;

fn color(kind: MapKind) -> &'static str {
    match kind {
        MapKind::DualMap => "#d62728",
        MapKind::DualMapReader => "#e377c2",
        MapKind::DashMap => "#1f77b4",
        MapKind::RwLock => "#2ca02c",
        MapKind::Mutex => "#9467bd",
        MapKind::Papaya => "#ff7f0e",
        MapKind::Scc => "#8c564b",
        MapKind::Frozen => "#7f7f7f",
    }
}

/// The command that ran this process, as a user would type it.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|arg| {
            if arg.is_empty() || arg.contains([' ', '"', '\'', '$']) {
                format!("'{}'", arg.replace('\'', r"'\''"))
            } else {
                arg
            }
        })
        .collect();
    if args.is_empty() {
        "cargo run --release -p dualmap-bench".into()
    } else {
        format!("cargo run --release -p dualmap-bench -- {}", args.join(" "))
    }
}

/// Where and when a run happened.
#[derive(Debug)]
pub struct RunInfo {
    pub date: String,
    pub cpu: String,
    pub threads: usize,
    pub memory: String,
    pub os: String,
    pub rustc: String,
    pub commit: String,
    pub command: String,
    pub elapsed: Duration,
    /// The 1-minute load average before and after the run: other processes compete for the
    /// cores and the caches.
    pub load: String,
}

/// The 1-minute load average (Linux), if known.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next().map(str::to_string)
}

fn first_line(program: &str, args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time (Howard Hinnant's days-to-civil algorithm).
fn utc_date(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let (hour, minute) = ((seconds % 86_400) / 3600, (seconds % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

impl RunInfo {
    /// Reads the machine's description from /proc, rustc and git.
    pub fn collect(command: &str, elapsed: Duration, load_before: Option<String>) -> RunInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let kib: f64 = text
                    .lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some(format!("{:.0} GiB", kib / 1024.0 / 1024.0))
            })
            .unwrap_or_else(|| "unknown".into());
        let os = format!(
            "{} {}",
            std::env::consts::OS,
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        );
        let root = crate::workspace_root();
        let commit = match first_line("git", &["rev-parse", "--short", "HEAD"], Some(&root)) {
            Some(hash) => {
                // The harness's own outputs, written before this report, are not changes to
                // what was measured.
                let dirty = Command::new("git")
                    .args(["status", "--porcelain", "--untracked-files=no", "--", "."])
                    .args([":!bench/results", ":!BENCHMARKS.md"])
                    .current_dir(&root)
                    .output()
                    .is_ok_and(|output| !output.stdout.is_empty());
                if dirty {
                    format!("{hash} + uncommitted changes")
                } else {
                    hash
                }
            }
            None => "unknown".into(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        RunInfo {
            date: utc_date(now),
            cpu,
            threads: workloads::available_threads(),
            memory,
            os: format!("{os}, {}", std::env::consts::ARCH),
            rustc: first_line("rustc", &["--version"], None)
                .unwrap_or_else(|| "rustc (unknown)".into()),
            commit,
            command: command.to_string(),
            elapsed,
            load: format!(
                "{} before the run, {} after",
                load_before.unwrap_or_else(|| "?".into()),
                load_average().unwrap_or_else(|| "?".into())
            ),
        }
    }
}

/// A table that renders as aligned text or as Markdown.
struct Table {
    title: String,
    note: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn text(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = format!("\n{}\n", self.title);
        if !self.note.is_empty() {
            let _ = writeln!(out, "{}", self.note);
        }
        for (r, row) in std::iter::once(&self.header).chain(&self.rows).enumerate() {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if i == 0 {
                        format!("{cell:<w$}", w = widths[i])
                    } else {
                        format!("{cell:>w$}", w = widths[i])
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            if r == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (columns - 1);
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
        out
    }

    fn markdown(&self, heading: &str) -> String {
        let mut out = format!("{heading} {}\n\n", self.title);
        if !self.note.is_empty() {
            let _ = writeln!(out, "{}\n", self.note);
        }
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        let aligns: Vec<&str> = (0..self.header.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "| {} |", aligns.join(" | "));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

fn geomean(values: &[f64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp())
}

fn fmt_value(value: f64) -> String {
    if value >= 1000.0 {
        format!("{value:.0}")
    } else if value >= 100.0 {
        format!("{value:.1}")
    } else if value >= 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn fmt_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.1}")
    } else {
        format!("{ratio:.2}")
    }
}

/// A cell: the value, then its speed ratio to dashmap and, where there is one, to the
/// ceiling (both > 1 when faster).
fn cell(value: f64, to_baseline: Option<f64>, to_ceiling: Option<f64>) -> String {
    match (to_baseline, to_ceiling) {
        (Some(d), Some(c)) => format!(
            "{} ({}, c {})",
            fmt_value(value),
            fmt_ratio(d),
            fmt_ratio(c)
        ),
        (Some(d), None) => format!("{} ({})", fmt_value(value), fmt_ratio(d)),
        (None, Some(c)) => format!("{} (c {})", fmt_value(value), fmt_ratio(c)),
        (None, None) => fmt_value(value),
    }
}

/// Everything generated from one run.
pub struct Generated<'a> {
    plan: &'a Plan,
    results: &'a Results,
    info: &'a RunInfo,
}

/// The generated sections of BENCHMARKS.md, by marker name.
const BLOCKS: [&str; 10] = [
    "run",
    "summary",
    "targets",
    "go",
    "mixes",
    "writes",
    "latency",
    "memory",
    "cost-model",
    "write-scaling",
];

/// The sections that draw on every part: BENCHMARKS.md keeps its own unless every part ran.
const RUN_WIDE: [&str; 3] = ["run", "summary", "targets"];

/// The cost-model operations, in table order, with their column names.
const COST_OPERATIONS: [(&str, &str); 7] = [
    ("get_hit", "get hit"),
    ("get_miss", "get miss"),
    ("overwrite", "overwrite"),
    ("insert_new", "insert new"),
    ("remove", "remove"),
    ("iterate", "iterate (per key)"),
    ("rebuild", "rebuild (per key)"),
];

/// One target of the write-path issues, checked against this run.
struct Target {
    issue: &'static str,
    what: String,
    /// What this run measured (`None`: the run did not measure it).
    measured: Option<String>,
    met: Option<bool>,
}

impl Target {
    fn new(issue: &'static str, what: impl Into<String>) -> Self {
        Target {
            issue,
            what: what.into(),
            measured: None,
            met: None,
        }
    }

    /// Sets the measured figure and whether it meets the target.
    fn measured(mut self, figure: Option<(String, bool)>) -> Self {
        if let Some((measured, met)) = figure {
            self.measured = Some(measured);
            self.met = Some(met);
        }
        self
    }
}

fn us(nanos: f64) -> String {
    format!("{} µs", fmt_value(nanos / 1000.0))
}

impl<'a> Generated<'a> {
    pub fn new(plan: &'a Plan, results: &'a Results, info: &'a RunInfo) -> Self {
        Generated {
            plan,
            results,
            info,
        }
    }

    fn maps(&self) -> impl Iterator<Item = MapKind> + '_ {
        self.plan.maps.iter().copied()
    }

    /// The maps of Go's workloads and the write-scaling benchmark (not the `Reader` path).
    fn go_maps(&self) -> impl Iterator<Item = MapKind> + '_ {
        self.plan.go_maps()
    }

    fn go_row(&self, workload: GoWorkload, map: MapKind, threads: usize) -> Option<&GoRow> {
        self.results
            .go
            .iter()
            .find(|row| row.workload == workload && row.map == map && row.threads == threads)
    }

    fn go_ns(&self, workload: GoWorkload, map: MapKind, threads: usize) -> Option<f64> {
        self.go_row(workload, map, threads).map(GoRow::ns_per_op)
    }

    /// Speed ratio of `map` to `other` on a Go workload (> 1: `map` is faster).
    fn go_ratio(
        &self,
        workload: GoWorkload,
        map: MapKind,
        other: MapKind,
        threads: usize,
    ) -> Option<f64> {
        Some(self.go_ns(workload, other, threads)? / self.go_ns(workload, map, threads)?)
    }

    fn mix_row(
        &self,
        mix: Mix,
        dist: Dist,
        size: u64,
        map: MapKind,
        threads: usize,
    ) -> Option<&MixRow> {
        self.results.mixes.iter().find(|row| {
            row.mix == mix
                && row.dist == dist
                && row.size == size
                && row.map == map
                && row.threads == threads
        })
    }

    fn mops(&self, mix: Mix, dist: Dist, size: u64, map: MapKind, threads: usize) -> Option<f64> {
        self.mix_row(mix, dist, size, map, threads)
            .map(|row| row.throughput.mops())
    }

    fn mix_ratio(
        &self,
        mix: Mix,
        dist: Dist,
        size: u64,
        map: MapKind,
        other: MapKind,
        threads: usize,
    ) -> Option<f64> {
        Some(
            self.mops(mix, dist, size, map, threads)?
                / self.mops(mix, dist, size, other, threads)?,
        )
    }

    /// Throughput over the ceiling's read-only throughput at the same size, distribution
    /// and thread count.
    fn mix_ceiling(
        &self,
        mix: Mix,
        dist: Dist,
        size: u64,
        map: MapKind,
        threads: usize,
    ) -> Option<f64> {
        Some(
            self.mops(mix, dist, size, map, threads)?
                / self.mops(Mix::ReadOnly, dist, size, CEILING, threads)?,
        )
    }

    fn write_ns(&self, map: MapKind, parked: usize) -> Option<f64> {
        self.results
            .writes
            .iter()
            .find(|row| row.map == map && row.parked == parked)
            .map(WriteRow::ns_per_op)
    }

    fn load_mops(&self, load: WriteLoad, map: MapKind, threads: usize) -> Option<f64> {
        self.results
            .write_loads
            .iter()
            .find(|row| row.load == load && row.map == map && row.threads == threads)
            .map(|row| row.throughput.mops())
    }

    fn load_ratio(&self, load: WriteLoad, map: MapKind, threads: usize) -> Option<f64> {
        Some(self.load_mops(load, map, threads)? / self.load_mops(load, BASELINE, threads)?)
    }

    fn latency(&self, map: MapKind) -> Option<&Latency> {
        self.results
            .latency
            .iter()
            .find(|row| row.map == map)
            .map(|row| &row.latency)
    }

    fn memory(&self, map: MapKind) -> Option<&Memory> {
        self.results
            .memory
            .iter()
            .find(|row| row.map == map)
            .map(|row| &row.memory)
    }

    /// The cost model's rows, if it ran.
    fn costs(&self) -> &[Cost] {
        match &self.results.cost {
            Some(Ok(rows)) => rows,
            _ => &[],
        }
    }

    fn cost(&self, map: &str, operation: &str, keys: u64) -> Option<&Cost> {
        self.costs()
            .iter()
            .find(|c| c.map == map && c.operation == operation && c.keys == keys)
    }

    /// The map sizes of the cost model, ascending.
    fn cost_sizes(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self.costs().iter().map(|c| c.keys).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    fn parked(&self) -> Vec<usize> {
        let mut parked = self.plan.parked.clone();
        parked.sort_unstable();
        parked.dedup();
        parked
    }

    fn go_tables(&self) -> Vec<Table> {
        let mut tables = Vec::new();
        if self.results.go.is_empty() {
            return tables;
        }
        for &threads in &self.plan.go_threads {
            let mut header = vec!["workload".to_string()];
            header.extend(self.go_maps().map(|map| map.name().to_string()));
            let rows = self
                .plan
                .go_workloads
                .iter()
                .map(|&workload| {
                    let mut row = vec![workload.name().to_string()];
                    for map in self.go_maps() {
                        row.push(match self.go_ns(workload, map, threads) {
                            None => "-".into(),
                            Some(ns) => cell(
                                ns,
                                (map != BASELINE)
                                    .then(|| self.go_ratio(workload, map, BASELINE, threads))
                                    .flatten(),
                                (map != CEILING)
                                    .then(|| self.go_ratio(workload, map, CEILING, threads))
                                    .flatten(),
                            ),
                        });
                    }
                    row
                })
                .collect();
            tables.push(Table {
                title: format!("Go's sync.Map workloads, {threads} thread(s): ns/op"),
                note: "Each cell: ns/op as Go reports it (wall time / operations of all threads; lower is \
                       better), then (speed ratio to dashmap, c speed ratio to the frozen-HashMap ceiling \
                       where it can run the workload); ratios > 1 mean faster."
                    .into(),
                header,
                rows,
            });
        }
        tables
    }

    fn mix_tables(&self) -> Vec<Table> {
        let mut tables = Vec::new();
        if self.results.mixes.is_empty() {
            return tables;
        }
        for &mix in &self.plan.mix_list {
            let maps: Vec<MapKind> = self
                .maps()
                .filter(|map| map.writes() || mix.read_only())
                .collect();
            let mut header = vec!["keys, size, threads".to_string()];
            header.extend(maps.iter().map(|map| map.name().to_string()));
            let mut rows = Vec::new();
            for &dist in &self.plan.dists {
                for &size in &self.plan.sizes {
                    for &threads in &self.plan.mix_threads {
                        let mut row =
                            vec![format!("{}, {}, {threads}", dist.name(), size_name(size))];
                        for &map in &maps {
                            row.push(match self.mops(mix, dist, size, map, threads) {
                                None => "-".into(),
                                Some(mops) => cell(
                                    mops,
                                    (map != BASELINE)
                                        .then(|| {
                                            self.mix_ratio(mix, dist, size, map, BASELINE, threads)
                                        })
                                        .flatten(),
                                    (map != CEILING)
                                        .then(|| self.mix_ceiling(mix, dist, size, map, threads))
                                        .flatten(),
                                ),
                            });
                        }
                        rows.push(row);
                    }
                }
            }
            tables.push(Table {
                title: format!("Mix {}: {}", mix.name(), mix.describe()),
                note: "Each cell: Mops/s, all threads together (higher is better), then (ratio to dashmap, c \
                       ratio to the frozen-HashMap ceiling reading the same keys on as many threads)."
                    .into(),
                header,
                rows,
            });
        }
        tables
    }

    fn write_table(&self) -> Option<Table> {
        if self.results.writes.is_empty() {
            return None;
        }
        let parked = self.parked();
        let (lo, hi) = (*parked.first()?, *parked.last()?);
        let mut header = vec!["map".to_string()];
        header.extend(parked.iter().map(|p| format!("{p} parked")));
        header.push(format!("{hi} / {lo} parked"));
        let rows = self
            .go_maps()
            .filter(|map| map.writes())
            .map(|map| {
                let mut row = vec![map.name().to_string()];
                for &p in &parked {
                    row.push(match self.write_ns(map, p) {
                        None => "-".into(),
                        Some(ns) => cell(
                            ns,
                            (map != BASELINE)
                                .then(|| Some(self.write_ns(BASELINE, p)? / ns))
                                .flatten(),
                            None,
                        ),
                    });
                }
                let growth = self
                    .write_ns(map, hi)
                    .zip(self.write_ns(map, lo))
                    .map(|(h, l)| h / l);
                row.push(growth.map_or("-".into(), |g| format!("{g:.2}x")));
                row
            })
            .collect();
        Some(Table {
            title: "Write scaling: ns per overwrite of an existing key".into(),
            note: "One thread overwrites keys of a settled 1,024-key map while N other threads, each of which \
                   did a get, an overwrite, an insert and a remove on that map, sit blocked on a barrier. \
                   Each cell: ns/overwrite (speed ratio to dashmap). Last column: cost with the most parked \
                   threads over cost with the fewest (1.00x = no growth)."
                .into(),
            header,
            rows,
        })
    }

    fn write_load_tables(&self) -> Vec<Table> {
        if self.results.write_loads.is_empty() {
            return Vec::new();
        }
        let maps: Vec<MapKind> = self.plan.writing_maps().collect();
        self.plan
            .write_loads
            .iter()
            .map(|&load| {
                let mut header = vec!["threads".to_string()];
                header.extend(maps.iter().map(|map| map.name().to_string()));
                let rows = self
                    .plan
                    .mix_threads
                    .iter()
                    .map(|&threads| {
                        let mut row = vec![threads.to_string()];
                        row.extend(maps.iter().map(|&map| {
                            self.load_mops(load, map, threads).map_or("-".into(), |mops| {
                                let ratio = (map != BASELINE)
                                    .then(|| self.load_ratio(load, map, threads))
                                    .flatten();
                                cell(mops, ratio, None)
                            })
                        }));
                        row
                    })
                    .collect();
                Table {
                    title: format!("Write workload {}: {}", load.name(), load.describe()),
                    note: format!(
                        "Each cell: Mops/s, all threads together (higher is better), then (ratio to \
                         dashmap). {}",
                        if load == WriteLoad::Grow {
                            "Each phase starts on an empty map.".to_string()
                        } else {
                            format!("The map is prefilled with {} keys.", self.plan.write_keys)
                        }
                    ),
                    header,
                    rows,
                }
            })
            .collect()
    }

    fn latency_table(&self) -> Option<Table> {
        if self.results.latency.is_empty() {
            return None;
        }
        let mut header = vec!["map".to_string()];
        header.extend(PERCENTILES.iter().map(|(name, _)| name.to_string()));
        header.push("max".into());
        header.push("operations timed".into());
        let base = self.latency(BASELINE);
        let rows = self
            .results
            .latency
            .iter()
            .map(|row| {
                let mut cells = vec![row.map.name().to_string()];
                let base = base.filter(|_| row.map != BASELINE).map(Latency::times);
                for (i, value) in row.latency.times().into_iter().enumerate() {
                    cells.push(match base {
                        Some(base) => format!("{} ({})", us(value), fmt_ratio(base[i] / value)),
                        None => us(value),
                    });
                }
                cells.push(row.latency.ops.to_string());
                cells
            })
            .collect();
        Some(Table {
            title: format!(
                "Latency: the {} mix on {} prefilled keys, {} threads, every operation timed",
                crate::latency::MIX.name(),
                self.plan.latency_keys,
                self.plan.max_threads()
            ),
            note: format!(
                "Each cell: the time of one operation (lower is better), then (speed ratio to \
                 dashmap: below 1 means slower). Percentiles are the median over {} repetitions \
                 of {} ms; max is the slowest operation of any repetition.",
                self.plan.repeats,
                self.plan.latency_time.as_millis()
            ),
            header,
            rows,
        })
    }

    fn memory_table(&self) -> Option<Table> {
        if self.results.memory.is_empty() {
            return None;
        }
        let base = self.memory(BASELINE);
        let entries = self.plan.memory_keys;
        let header = vec![
            "map".to_string(),
            "bytes per entry, written once".to_string(),
            format!("bytes per entry, after {entries} overwrites"),
        ];
        let size_cell = |value: Option<f64>, base: Option<f64>, map: MapKind| match value {
            None => "-".to_string(),
            Some(value) => match base {
                Some(base) if map != BASELINE => {
                    format!("{value:.1} ({:.2}x dashmap)", value / base)
                }
                _ => format!("{value:.1}"),
            },
        };
        let rows = self
            .results
            .memory
            .iter()
            .map(|row| {
                vec![
                    row.map.name().to_string(),
                    size_cell(
                        Some(row.memory.written_once),
                        base.map(|b| b.written_once),
                        row.map,
                    ),
                    size_cell(
                        row.memory.after_overwrites,
                        base.and_then(|b| b.after_overwrites),
                        row.map,
                    ),
                ]
            })
            .collect();
        Some(Table {
            title: format!("Memory: {entries} u64 -> u64 entries"),
            note:
                "Live heap bytes over entries, from a counting global allocator (lower is better), \
                   then the size relative to dashmap's. Each map is built from empty by inserting \
                   every key once (no capacity hint), then settled; the second column is taken \
                   right after every key was overwritten once, garbage not yet reclaimed included."
                    .into(),
            header,
            rows,
        })
    }

    fn cost_table(&self) -> Option<Table> {
        let sizes = self.cost_sizes();
        if sizes.is_empty() {
            return None;
        }
        let mut header = vec!["map".to_string(), "keys".to_string()];
        header.extend(COST_OPERATIONS.iter().map(|(_, name)| name.to_string()));
        let mut rows = Vec::new();
        let mut maps: Vec<&str> = Vec::new();
        for cost in self.costs() {
            if cost.map != "loop" && !maps.contains(&cost.map.as_str()) {
                maps.push(&cost.map);
            }
        }
        for map in maps {
            for &keys in &sizes {
                let mut row = vec![map.to_string(), size_name(keys)];
                row.extend(COST_OPERATIONS.iter().map(|(operation, _)| {
                    self.cost(map, operation, keys).map_or("-".into(), |c| {
                        format!("{:.0} / {:.1}", c.instructions, c.lines)
                    })
                }));
                rows.push(row);
            }
        }
        let overhead = self
            .costs()
            .iter()
            .find(|c| c.map == "loop")
            .map_or(String::new(), |c| {
                format!(
                    " The loop around each operation (drawing the key, checking the result) costs \
                     {:.0} instructions and {:.1} lines on its own; it is included in every cell.",
                    c.instructions, c.lines
                )
            });
        Some(Table {
            title: "Cost model: instructions / cache lines per operation (callgrind, one thread)".into(),
            note: format!(
                "From `cargo run --release --example instructions`: instructions, then L1 data read \
                 misses in callgrind's cache model (32 KiB 8-way L1, 64-byte lines), a deterministic \
                 proxy for the cache lines an operation fetches on a map too large for the caches. \
                 Keys are visited in a scattered order; dualmap is settled (every key promoted).{overhead}"
            ),
            header,
            rows,
        })
    }

    /// The targets of the write-path issues (#11 entries and reclamation, #12 no cliffs),
    /// each with this run's figure.
    fn targets(&self) -> Vec<Target> {
        let threads = self.plan.max_threads();
        let dual = MapKind::DualMap;
        let small = self.cost_sizes().first().copied();
        let large = self
            .cost_sizes()
            .last()
            .copied()
            .filter(|&l| Some(l) != small);
        let cost_at = |map: &str, op: &str, keys: Option<u64>, lines: bool, limit: f64| {
            let keys = keys?;
            let c = self.cost(map, op, keys)?;
            let value = if lines { c.lines } else { c.instructions };
            let unit = if lines { "lines" } else { "instructions" };
            Some((
                format!("{value:.1} {unit} at {}", size_name(keys)),
                value <= limit,
            ))
        };
        let at_least = |ratio: Option<f64>, limit: f64| {
            ratio.map(|r| (format!("{}x dashmap", fmt_ratio(r)), r >= limit))
        };
        let rwlock_times = |workloads: &[GoWorkload], threads: usize, limit: f64| {
            let times: Vec<(GoWorkload, f64)> = workloads
                .iter()
                .filter_map(|&w| Some((w, self.go_ratio(w, MapKind::RwLock, dual, threads)?)))
                .collect();
            (!times.is_empty()).then(|| {
                let text = times
                    .iter()
                    .map(|(w, t)| format!("{} {}x", w.name(), fmt_ratio(*t)))
                    .collect::<Vec<_>>()
                    .join(", ");
                (text, times.iter().all(|(_, t)| *t <= limit))
            })
        };
        let latency_vs = |pick: fn(&Latency) -> f64| {
            let (mine, base) = (self.latency(dual)?, self.latency(BASELINE)?);
            let ratio = pick(mine) / pick(base);
            Some((
                format!(
                    "{} vs {} ({}x)",
                    us(pick(mine)),
                    us(pick(base)),
                    fmt_ratio(ratio)
                ),
                ratio <= 2.0,
            ))
        };
        let exchange = {
            let size = self
                .plan
                .sizes
                .iter()
                .copied()
                .min_by_key(|&size| size.abs_diff(100_000));
            size.and_then(|size| {
                let r =
                    self.mix_ratio(Mix::Exchange, Dist::Uniform, size, dual, BASELINE, threads)?;
                Some((
                    format!("{}x dashmap (uniform, {})", fmt_ratio(r), size_name(size)),
                    r >= 0.5,
                ))
            })
        };
        let above = {
            let times: Vec<(GoWorkload, f64)> = GoWorkload::ALL
                .iter()
                .filter_map(|&w| Some((w, self.go_ratio(w, MapKind::RwLock, dual, threads)?)))
                .collect();
            (!times.is_empty()).then(|| {
                let over: Vec<String> = times
                    .iter()
                    .filter(|(_, t)| *t > 1.5)
                    .map(|(w, t)| format!("{} {}x", w.name(), fmt_ratio(*t)))
                    .collect();
                let text = if over.is_empty() {
                    format!("none of {}", times.len())
                } else {
                    format!("{} of {}: {}", over.len(), times.len(), over.join(", "))
                };
                (text, over.is_empty())
            })
        };
        let bytes = self.memory(dual).zip(self.memory(BASELINE)).map(|(m, b)| {
            let ratio = m.written_once / b.written_once;
            (
                format!(
                    "{:.1} vs {:.1} bytes ({}x)",
                    m.written_once,
                    b.written_once,
                    fmt_ratio(ratio)
                ),
                ratio <= 2.0,
            )
        });
        vec![
            Target::new("#11", "overwrite of an existing key: at most 200 instructions")
                .measured(cost_at("dualmap", "overwrite", small, false, 200.0)),
            Target::new("#11", "overwrite of an existing key: at most 3 cache lines at 1M keys")
                .measured(cost_at("dualmap", "overwrite", large, true, 3.0)),
            Target::new("#11", format!("overwrite-disjoint, {threads} threads: at least 1.0x dashmap"))
                .measured(at_least(self.load_ratio(WriteLoad::OverwriteDisjoint, dual, threads), 1.0)),
            Target::new("#11", "overwrite-disjoint, 1 thread: at least 0.5x dashmap")
                .measured(at_least(self.load_ratio(WriteLoad::OverwriteDisjoint, dual, 1), 0.5)),
            Target::new(
                "#11",
                format!(
                    "SwapMostlyHits, SwapCollision, CompareAndSwapMostlyHits, \
                     CompareAndDeleteMostlyHits, {threads} threads: at most 1.5x RwLock<HashMap>'s ns/op"
                ),
            )
            .measured(rwlock_times(
                &[
                    GoWorkload::SwapMostlyHits,
                    GoWorkload::SwapCollision,
                    GoWorkload::CompareAndSwapMostlyHits,
                    GoWorkload::CompareAndDeleteMostlyHits,
                ],
                threads,
                1.5,
            )),
            Target::new("#11", "get hit at 1M keys: at most 3 cache lines (get)")
                .measured(cost_at("dualmap", "get_hit", large, true, 3.0)),
            Target::new("#11", "get hit at 1M keys: at most 3 cache lines (Reader)")
                .measured(cost_at("dualmap-reader", "get_hit", large, true, 3.0)),
            Target::new("#11", "get hit: at most 140 instructions, loop included")
                .measured(cost_at("dualmap", "get_hit", small, false, 140.0)),
            Target::new("#11", "Reader::get hit: no worse than about 68 instructions")
                .measured(cost_at("dualmap-reader", "get_hit", small, false, 68.0)),
            Target::new("#11", "bytes per entry, write-once map: at most 2x dashmap's")
                .measured(bytes),
            Target::new("#12", "latency: slowest operation at most 2x dashmap's")
                .measured(latency_vs(|l| l.max)),
            Target::new("#12", "latency: p99.99 at most 2x dashmap's")
                .measured(latency_vs(|l| l.percentiles[3])),
            Target::new("#12", "insert of a new key: at most 350 instructions")
                .measured(cost_at("dualmap", "insert_new", small, false, 350.0)),
            Target::new("#12", format!("grow, {threads} threads: at least 0.7x dashmap"))
                .measured(at_least(self.load_ratio(WriteLoad::Grow, dual, threads), 0.7)),
            Target::new("#12", format!("churn, {threads} threads: at least 1.0x dashmap"))
                .measured(at_least(self.load_ratio(WriteLoad::Churn, dual, threads), 1.0)),
            Target::new("#12", format!("exchange, {threads} threads: at least 0.5x dashmap"))
                .measured(exchange),
            Target::new(
                "#12",
                format!("Go's workloads, {threads} threads: none above 1.5x RwLock<HashMap>'s ns/op"),
            )
            .measured(above),
            Target::new(
                "#12",
                "SwapMostlyMisses, LoadAndDeleteCollision, 1 thread: at most 3x RwLock<HashMap>'s ns/op",
            )
            .measured(rwlock_times(
                &[GoWorkload::SwapMostlyMisses, GoWorkload::LoadAndDeleteCollision],
                1,
                3.0,
            )),
        ]
    }

    fn target_table(&self) -> Table {
        let targets = self.targets();
        let met = targets.iter().filter(|t| t.met == Some(true)).count();
        let measured = targets.iter().filter(|t| t.met.is_some()).count();
        Table {
            title: format!("Write-path targets: {met} of {measured} measured targets met"),
            note: "The targets of issues #11 (entries and reclamation) and #12 (no cliffs), each with \
                   this run's figure. \"x RwLock<HashMap>'s ns/op\" is dualmap's time over \
                   RwLock<HashMap>'s (lower is better); \"x dashmap\" is a speed ratio (higher is \
                   better) except for bytes and latency, which are dualmap's over dashmap's. The \
                   session-validator target of #12 is measured by its example, not here."
                .into(),
            header: ["issue", "target", "this run", "met"]
                .map(String::from)
                .to_vec(),
            rows: targets
                .into_iter()
                .map(|t| {
                    vec![
                        t.issue.to_string(),
                        t.what,
                        t.measured.unwrap_or_else(|| "not measured in this run".into()),
                        match t.met {
                            Some(true) => "yes".into(),
                            Some(false) => "**no**".into(),
                            None => "-".into(),
                        },
                    ]
                })
                .collect(),
        }
    }

    /// Where dualmap leads and trails, as Markdown bullets.
    fn summary(&self) -> String {
        let mut out = String::new();
        let dual = MapKind::DualMap;
        if !self.plan.maps.contains(&dual) || !self.plan.maps.contains(&BASELINE) {
            return "Summary needs both dualmap and dashmap in the run.\n".into();
        }
        let others: Vec<MapKind> = self
            .go_maps()
            .filter(|m| m.writes() && *m != dual)
            .collect();
        for &threads in &self.plan.go_threads {
            let mut ratios: Vec<(GoWorkload, f64)> = self
                .plan
                .go_workloads
                .iter()
                .filter_map(|&w| Some((w, self.go_ratio(w, dual, BASELINE, threads)?)))
                .collect();
            if ratios.is_empty() {
                continue;
            }
            ratios.sort_by(|a, b| b.1.total_cmp(&a.1));
            let wins = ratios.iter().filter(|(_, r)| *r > 1.0).count();
            let fastest = self
                .plan
                .go_workloads
                .iter()
                .filter(|&&w| {
                    let Some(mine) = self.go_ns(w, dual, threads) else {
                        return false;
                    };
                    others
                        .iter()
                        .all(|&o| self.go_ns(w, o, threads).is_none_or(|ns| mine <= ns))
                })
                .count();
            let list = |items: &[(GoWorkload, f64)]| {
                items
                    .iter()
                    .map(|(w, r)| format!("{} {}x", w.name(), fmt_ratio(*r)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let leads: Vec<_> = ratios.iter().filter(|(_, r)| *r >= 1.05).copied().collect();
            let mut trails: Vec<_> = ratios.iter().filter(|(_, r)| *r <= 0.95).copied().collect();
            trails.reverse();
            let _ = writeln!(
                out,
                "- **Go workloads, {threads} thread(s)**: dualmap is faster than dashmap on {wins} of {} \
                 (geometric mean of the speed ratio {}x) and the fastest of the six concurrent maps on {fastest}.",
                ratios.len(),
                fmt_ratio(geomean(&ratios.iter().map(|r| r.1).collect::<Vec<_>>()).unwrap_or(f64::NAN))
            );
            if !leads.is_empty() {
                let _ = writeln!(out, "  - leads dashmap by 5% or more: {}", list(&leads));
            }
            if !trails.is_empty() {
                let _ = writeln!(
                    out,
                    "  - trails dashmap by 5% or more (worst first): {}",
                    list(&trails)
                );
            }
        }
        let subjects: Vec<MapKind> = [dual, MapKind::DualMapReader]
            .into_iter()
            .filter(|m| self.plan.maps.contains(m))
            .collect();
        for subject in subjects {
            if self.results.mixes.is_empty() {
                break;
            }
            let threads = self.plan.max_threads();
            let _ = writeln!(
                out,
                "- **Mixes, {threads} thread(s)**, {}'s throughput over dashmap's (geometric mean over \
                 key distributions and sizes; min to max in brackets); its share of the ceiling:",
                subject.name()
            );
            for &mix in &self.plan.mix_list {
                let mut ratios = Vec::new();
                let mut ceiling = Vec::new();
                for &dist in &self.plan.dists {
                    for &size in &self.plan.sizes {
                        if let Some(r) = self.mix_ratio(mix, dist, size, subject, BASELINE, threads)
                        {
                            ratios.push((r, dist, size));
                        }
                        if let Some(c) = self.mix_ceiling(mix, dist, size, subject, threads) {
                            ceiling.push(c);
                        }
                    }
                }
                if ratios.is_empty() {
                    continue;
                }
                let values: Vec<f64> = ratios.iter().map(|r| r.0).collect();
                let min = ratios
                    .iter()
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .expect("non-empty");
                let max = ratios
                    .iter()
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .expect("non-empty");
                let best_other = others
                    .iter()
                    .filter_map(|&o| {
                        let mut rs = Vec::new();
                        for &dist in &self.plan.dists {
                            for &size in &self.plan.sizes {
                                rs.push(self.mix_ratio(mix, dist, size, subject, o, threads)?);
                            }
                        }
                        Some((o, geomean(&rs)?))
                    })
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                let _ = writeln!(
                    out,
                    "  - {}: {}x [{}x {} {}, {}x {} {}]{}{}",
                    mix.name(),
                    fmt_ratio(geomean(&values).expect("non-empty")),
                    fmt_ratio(min.0),
                    min.1.name(),
                    size_name(min.2),
                    fmt_ratio(max.0),
                    max.1.name(),
                    size_name(max.2),
                    geomean(&ceiling).map_or(String::new(), |c| format!(
                        "; {:.0}% of the ceiling",
                        c * 100.0
                    )),
                    best_other.map_or(String::new(), |(o, r)| format!(
                        "; vs the strongest other map here ({}): {}x",
                        o.name(),
                        fmt_ratio(r)
                    )),
                );
            }
        }
        if !self.results.write_loads.is_empty() {
            let threads = self.plan.max_threads();
            let loads: Vec<String> = self
                .plan
                .write_loads
                .iter()
                .filter_map(|&load| {
                    let lowest = self.plan.mix_threads.iter().copied().min()?;
                    let mut text = format!(
                        "{} {}x",
                        load.name(),
                        fmt_ratio(self.load_ratio(load, dual, threads)?)
                    );
                    if lowest != threads {
                        let _ = write!(
                            text,
                            " ({lowest} thread(s): {}x)",
                            fmt_ratio(self.load_ratio(load, dual, lowest)?)
                        );
                    }
                    Some(text)
                })
                .collect();
            let _ = writeln!(
                out,
                "- **Write workloads, {threads} thread(s)**, dualmap's throughput over dashmap's: {}.",
                loads.join(", ")
            );
        }
        if let (Some(mine), Some(base)) = (self.latency(dual), self.latency(BASELINE)) {
            let _ = writeln!(
                out,
                "- **Latency** ({} mix, {} keys): dualmap's p99.99 {} and slowest operation {}, \
                 against dashmap's {} and {}.",
                crate::latency::MIX.name(),
                size_name(self.plan.latency_keys),
                us(mine.percentiles[3]),
                us(mine.max),
                us(base.percentiles[3]),
                us(base.max)
            );
        }
        if let (Some(mine), Some(base)) = (self.memory(dual), self.memory(BASELINE)) {
            let _ = writeln!(
                out,
                "- **Memory**: dualmap {:.1} bytes per entry written once ({:.2}x dashmap's {:.1}){}.",
                mine.written_once,
                mine.written_once / base.written_once,
                base.written_once,
                mine.after_overwrites
                    .zip(base.after_overwrites)
                    .map_or(String::new(), |(m, b)| format!(
                        ", {m:.1} after overwriting every key ({:.2}x dashmap's {b:.1})",
                        m / b
                    ))
            );
        }
        let parked = self.parked();
        if let (Some(&lo), Some(&hi)) = (parked.first(), parked.last()) {
            let growth: Vec<String> = self
                .go_maps()
                .filter(|m| m.writes())
                .filter_map(|m| {
                    Some(format!(
                        "{} {}x ({} -> {} ns)",
                        m.name(),
                        fmt_ratio(self.write_ns(m, hi)? / self.write_ns(m, lo)?),
                        fmt_value(self.write_ns(m, lo)?),
                        fmt_value(self.write_ns(m, hi)?)
                    ))
                })
                .collect();
            if !growth.is_empty() {
                let _ = writeln!(
                    out,
                    "- **Write scaling**, cost of an overwrite with {hi} parked threads over the cost with {lo}: {}.",
                    growth.join(", ")
                );
            }
        }
        out
    }

    /// The terminal report.
    pub fn text_tables(&self) -> String {
        let mut out = String::new();
        for table in self.go_tables() {
            out.push_str(&table.text());
        }
        for table in self.mix_tables() {
            out.push_str(&table.text());
        }
        for table in self.write_load_tables() {
            out.push_str(&table.text());
        }
        let optional = [
            self.latency_table(),
            self.memory_table(),
            self.cost_table(),
            self.write_table(),
        ];
        for table in optional.into_iter().flatten() {
            out.push_str(&table.text());
        }
        if let Some(Err(why)) = &self.results.cost {
            let _ = writeln!(out, "\nCost model: {why}");
        }
        out.push_str(&self.target_table().text());
        let _ = write!(
            out,
            "\nSummary (ratios are speed ratios to dashmap; > 1: dualmap is faster)\n{}",
            self.summary()
        );
        out
    }

    fn run_block(&self) -> String {
        let info = self.info;
        let mut out = String::new();
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| date | {} |", info.date);
        let _ = writeln!(
            out,
            "| machine | {}, {} hardware threads (`nproc`), {} memory |",
            info.cpu, info.threads, info.memory
        );
        let _ = writeln!(out, "| system | {} |", info.os);
        let _ = writeln!(out, "| compiler | {} |", info.rustc);
        let _ = writeln!(out, "| source | commit {} |", info.commit);
        let _ = writeln!(out, "| load | 1-minute load average {} |", info.load);
        let _ = writeln!(out, "| command | `{}` |", info.command);
        let _ = writeln!(
            out,
            "| time | {:.0} s of benchmarking; every number is the median of {} measurements, the \
             maps of a comparison measured in turn (but for Go's calibration runs, one of the \
             measurements, and write scaling): Go workloads calibrated to {} ms a run, mixes \
             and write workloads {} ms a phase after a {} ms warm-up, latency {} ms a repetition, \
             write scaling {} ms a run |",
            info.elapsed.as_secs_f64(),
            self.plan.repeats,
            self.plan.go_time.as_millis(),
            self.plan.mix_time.as_millis(),
            (self.plan.mix_time / 2).as_millis(),
            self.plan.latency_time.as_millis(),
            self.plan.write_time.as_millis()
        );
        if self.plan.quick {
            let _ = writeln!(
                out,
                "\n**--quick run: tiny sizes and times, the numbers mean nothing.**"
            );
        }
        out
    }

    fn go_block(&self, charts: &str) -> String {
        let mut out = String::new();
        for &threads in &self.plan.go_threads {
            if !self.results.go.is_empty() {
                let _ = writeln!(
                    out,
                    "![Go workloads, {threads} thread(s)]({charts}go_ns_per_op_{threads}t.svg)\n"
                );
            }
        }
        for table in self.go_tables() {
            out.push_str(&table.markdown("###"));
            out.push('\n');
        }
        out
    }

    fn mixes_block(&self, charts: &str) -> String {
        let mut out = String::new();
        for (mix, table) in self.plan.mix_list.iter().zip(self.mix_tables()) {
            out.push_str(&table.markdown("###"));
            let _ = writeln!(out, "\n![{}]({charts}mix_{}.svg)\n", mix.name(), mix.name());
        }
        out
    }

    fn write_block(&self, charts: &str) -> String {
        match self.write_table() {
            Some(table) => format!(
                "{}\n![write scaling]({charts}write_scaling.svg)\n",
                table.markdown("###")
            ),
            None => String::new(),
        }
    }

    fn write_loads_block(&self, charts: &str) -> String {
        let mut out = String::new();
        for table in self.write_load_tables() {
            out.push_str(&table.markdown("###"));
            out.push('\n');
        }
        if !self.results.write_loads.is_empty() {
            let _ = writeln!(out, "![write workloads]({charts}write_workloads.svg)");
        }
        out
    }

    fn latency_block(&self, charts: &str) -> String {
        self.latency_table().map_or(String::new(), |table| {
            format!(
                "{}\n![latency]({charts}latency.svg)\n",
                table.markdown("###")
            )
        })
    }

    /// A Markdown table, or nothing.
    fn table_block(table: Option<Table>) -> String {
        table.map_or(String::new(), |table| table.markdown("###"))
    }

    fn charts(&self) -> Vec<(String, String)> {
        let mut charts = Vec::new();
        let go_maps: Vec<MapKind> = self.go_maps().collect();
        if !self.results.go.is_empty() {
            for &threads in &self.plan.go_threads {
                let categories: Vec<String> = self
                    .plan
                    .go_workloads
                    .iter()
                    .map(|w| w.name().to_string())
                    .collect();
                let bars: Vec<Bars> = go_maps
                    .iter()
                    .map(|&map| Bars {
                        name: map.name().into(),
                        color: color(map),
                        values: self
                            .plan
                            .go_workloads
                            .iter()
                            .map(|&w| self.go_ns(w, map, threads))
                            .collect(),
                    })
                    .collect();
                charts.push((
                    format!("go_ns_per_op_{threads}t.svg"),
                    svg::hbars_log(
                        &format!(
                            "Go's sync.Map workloads, {threads} thread(s): ns/op (lower is better)"
                        ),
                        &format!("{} · {}", self.info.cpu, self.info.date),
                        &categories,
                        &bars,
                        "ns/op, log scale",
                    ),
                ));
            }
        }
        if !self.results.mixes.is_empty() {
            let x_labels = x_labels(&self.plan.mix_threads);
            for &mix in &self.plan.mix_list {
                let mut panels = Vec::new();
                for &dist in &self.plan.dists {
                    for &size in &self.plan.sizes {
                        let series = self
                            .maps()
                            .filter(|map| map.writes() || mix.read_only())
                            .map(|map| Series {
                                name: map.name().into(),
                                color: color(map),
                                emphasis: matches!(map, MapKind::DualMap | MapKind::DualMapReader),
                                dashed: map == CEILING,
                                points: self
                                    .plan
                                    .mix_threads
                                    .iter()
                                    .enumerate()
                                    .filter_map(|(i, &t)| {
                                        Some((i, self.mops(mix, dist, size, map, t)?))
                                    })
                                    .collect(),
                            })
                            .collect();
                        panels.push(Panel {
                            title: format!("{} keys, {}", size_name(size), dist.name()),
                            series,
                        });
                    }
                }
                charts.push((
                    format!("mix_{}.svg", mix.name()),
                    svg::line_panels(
                        &format!(
                            "{}: throughput vs threads (higher is better)",
                            mix.describe()
                        ),
                        &format!("{} · {}", self.info.cpu, self.info.date),
                        &panels,
                        self.plan.sizes.len(),
                        &x_labels,
                        "threads",
                        "Mops/s",
                    ),
                ));
            }
        }
        if !self.results.write_loads.is_empty() {
            let panels: Vec<Panel> = self
                .plan
                .write_loads
                .iter()
                .map(|&load| Panel {
                    title: load.name().into(),
                    series: self
                        .plan
                        .writing_maps()
                        .map(|map| Series {
                            name: map.name().into(),
                            color: color(map),
                            emphasis: map == MapKind::DualMap,
                            dashed: false,
                            points: self
                                .plan
                                .mix_threads
                                .iter()
                                .enumerate()
                                .filter_map(|(i, &t)| Some((i, self.load_mops(load, map, t)?)))
                                .collect(),
                        })
                        .collect(),
                })
                .collect();
            charts.push((
                "write_workloads.svg".into(),
                svg::line_panels(
                    "Write workloads: throughput vs threads (higher is better)",
                    &format!("{} · {}", self.info.cpu, self.info.date),
                    &panels,
                    panels.len(),
                    &x_labels(&self.plan.mix_threads),
                    "threads",
                    "Mops/s",
                ),
            ));
        }
        if !self.results.latency.is_empty() {
            let mut categories: Vec<String> = PERCENTILES
                .iter()
                .map(|(name, _)| name.to_string())
                .collect();
            categories.push("max".into());
            let bars: Vec<Bars> = self
                .results
                .latency
                .iter()
                .map(|row| Bars {
                    name: row.map.name().into(),
                    color: color(row.map),
                    values: row
                        .latency
                        .times()
                        .iter()
                        .map(|&nanos| Some(nanos / 1000.0))
                        .collect(),
                })
                .collect();
            charts.push((
                "latency.svg".into(),
                svg::hbars_log(
                    &format!(
                        "Latency of one operation, {} mix on {} keys, {} threads (lower is better)",
                        crate::latency::MIX.name(),
                        size_name(self.plan.latency_keys),
                        self.plan.max_threads()
                    ),
                    &format!("{} · {}", self.info.cpu, self.info.date),
                    &categories,
                    &bars,
                    "µs, log scale",
                ),
            ));
        }
        if !self.results.writes.is_empty() {
            let parked = self.parked();
            let series = self
                .go_maps()
                .filter(|map| map.writes())
                .map(|map| Series {
                    name: map.name().into(),
                    color: color(map),
                    emphasis: map == MapKind::DualMap,
                    dashed: false,
                    points: parked
                        .iter()
                        .enumerate()
                        .filter_map(|(i, &p)| Some((i, self.write_ns(map, p)?)))
                        .collect(),
                })
                .collect();
            charts.push((
                "write_scaling.svg".into(),
                svg::line_panels(
                    "Overwrite cost vs parked threads that touched the map (lower is better)",
                    &format!("{} · {}", self.info.cpu, self.info.date),
                    &[Panel {
                        title: "1,024-key map, one writer".into(),
                        series,
                    }],
                    1,
                    &parked.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "parked threads",
                    "ns per overwrite",
                ),
            ));
        }
        charts
    }

    fn csv_files(&self) -> Vec<(&'static str, String)> {
        let mut go = String::from(
            "workload,map,threads,ops,wall_ns,ns_per_op,ratio_to_dashmap,ratio_to_ceiling\n",
        );
        let opt = |value: Option<f64>| value.map_or(String::new(), |v| format!("{v:.4}"));
        for row in &self.results.go {
            let _ = writeln!(
                go,
                "{},{},{},{},{},{:.3},{},{}",
                row.workload.name(),
                row.map.name(),
                row.threads,
                row.ops,
                row.wall.as_nanos(),
                row.ns_per_op(),
                opt(self.go_ratio(row.workload, row.map, BASELINE, row.threads)),
                opt(self.go_ratio(row.workload, row.map, CEILING, row.threads)),
            );
        }
        let mut mixes = String::from(
            "mix,dist,size,map,threads,ops,wall_ns,mops_per_s,ratio_to_dashmap,ratio_to_ceiling\n",
        );
        for row in &self.results.mixes {
            let _ = writeln!(
                mixes,
                "{},{},{},{},{},{},{},{:.3},{},{}",
                row.mix.name(),
                row.dist.name(),
                row.size,
                row.map.name(),
                row.threads,
                row.throughput.ops,
                row.throughput.wall.as_nanos(),
                row.throughput.mops(),
                opt(self.mix_ratio(row.mix, row.dist, row.size, row.map, BASELINE, row.threads)),
                opt(self.mix_ceiling(row.mix, row.dist, row.size, row.map, row.threads)),
            );
        }
        let mut writes =
            String::from("map,parked_threads,ops,wall_ns,ns_per_overwrite,ratio_to_dashmap\n");
        for row in &self.results.writes {
            let _ = writeln!(
                writes,
                "{},{},{},{},{:.3},{}",
                row.map.name(),
                row.parked,
                row.ops,
                row.wall.as_nanos(),
                row.ns_per_op(),
                opt(self
                    .write_ns(BASELINE, row.parked)
                    .map(|base| base / row.ns_per_op())),
            );
        }
        let mut write_loads =
            String::from("workload,map,threads,keys,ops,wall_ns,mops_per_s,ratio_to_dashmap\n");
        for row in &self.results.write_loads {
            let _ = writeln!(
                write_loads,
                "{},{},{},{},{},{},{:.3},{}",
                row.load.name(),
                row.map.name(),
                row.threads,
                self.plan.write_keys,
                row.throughput.ops,
                row.throughput.wall.as_nanos(),
                row.throughput.mops(),
                opt(self.load_ratio(row.load, row.map, row.threads)),
            );
        }
        let mut latency = String::from("map,threads,keys,operations");
        for (name, _) in PERCENTILES {
            let _ = write!(latency, ",{name}_ns");
        }
        latency.push_str(",max_ns\n");
        for row in &self.results.latency {
            let _ = write!(
                latency,
                "{},{},{},{}",
                row.map.name(),
                self.plan.max_threads(),
                self.plan.latency_keys,
                row.latency.ops
            );
            for value in row.latency.times() {
                let _ = write!(latency, ",{value:.0}");
            }
            latency.push('\n');
        }
        let mut memory = String::from(
            "map,entries,bytes_per_entry_written_once,bytes_per_entry_after_overwrites\n",
        );
        for row in &self.results.memory {
            let _ = writeln!(
                memory,
                "{},{},{:.2},{}",
                row.map.name(),
                self.plan.memory_keys,
                row.memory.written_once,
                row.memory
                    .after_overwrites
                    .map_or(String::new(), |b| format!("{b:.2}"))
            );
        }
        let mut files = Vec::new();
        if !self.results.write_loads.is_empty() {
            files.push(("write_workloads.csv", write_loads));
        }
        if !self.results.latency.is_empty() {
            files.push(("latency.csv", latency));
        }
        if !self.results.memory.is_empty() {
            files.push(("memory.csv", memory));
        }
        if !self.results.go.is_empty() {
            files.push(("go_workloads.csv", go));
        }
        if !self.results.mixes.is_empty() {
            files.push(("mixes.csv", mixes));
        }
        if !self.results.writes.is_empty() {
            files.push(("write_scaling.csv", writes));
        }
        files
    }

    /// The generated section `name`, or `None` if its part did not run (BENCHMARKS.md then
    /// keeps the section it has).
    fn block(&self, name: &str, charts: &str) -> Option<String> {
        let plan = self.plan;
        match name {
            "run" => Some(self.run_block()),
            "summary" => Some(self.summary()),
            "targets" => Some(self.target_table().markdown("###")),
            "go" => plan.go.then(|| self.go_block(charts)),
            "mixes" => plan.mixes.then(|| self.mixes_block(charts)),
            "writes" => plan.writes.then(|| self.write_loads_block(charts)),
            "latency" => plan.latency.then(|| self.latency_block(charts)),
            "memory" => plan.memory.then(|| Self::table_block(self.memory_table())),
            "cost-model" => self.cost_table().map(|table| {
                format!(
                    "{}\nCSV: `{}cost_model.csv`.\n",
                    table.markdown("###"),
                    charts
                )
            }),
            "write-scaling" => plan.write_scaling.then(|| self.write_block(charts)),
            _ => None,
        }
    }

    /// Writes the CSV files, the SVG charts and `report.md` (every generated section) into
    /// `out`, replacing older ones of the same names.
    pub fn write_files(&self, out: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(out)?;
        for (name, text) in self.csv_files() {
            std::fs::write(out.join(name), text)?;
        }
        for (name, text) in self.charts() {
            std::fs::write(out.join(name), text)?;
        }
        let mut report = String::from("# dualmap-bench report\n\n");
        for (name, title) in [
            ("run", "The run"),
            ("summary", "Summary"),
            ("targets", "Write-path targets"),
            ("go", "Go's sync.Map workloads"),
            ("mixes", "Mixed workloads"),
            ("writes", "Write workloads"),
            ("latency", "Latency"),
            ("memory", "Memory"),
            ("cost-model", "Cost model"),
            ("write-scaling", "Write scaling"),
        ] {
            if let Some(block) = self.block(name, "") {
                let _ = write!(report, "## {title}\n\n{block}\n");
            }
        }
        std::fs::write(out.join("report.md"), report)
    }

    /// Replaces the generated sections of BENCHMARKS.md at `path` whose parts ran, keeping
    /// everything between them; the run-wide ones (`RUN_WIDE`) only when every part ran, so
    /// that a `--parts` run does not replace the figures of the others with "not measured".
    /// Writes the whole file from the template if it has no generated sections yet.
    pub fn update_benchmarks_md(&self, path: &Path) -> std::io::Result<()> {
        let charts = relative_dir(path, &self.plan.out);
        let existing = std::fs::read_to_string(path).unwrap_or_default();
        let mut text = if existing.contains(&begin_marker("run")) {
            existing
        } else {
            TEMPLATE.to_string()
        };
        for name in BLOCKS {
            if RUN_WIDE.contains(&name) && !self.plan.every_part() {
                continue;
            }
            let Some(content) = self.block(name, &charts) else {
                continue;
            };
            text = replace_block(&text, name, &content).unwrap_or_else(|| {
                eprintln!(
                    "warning: {} has no generated section {name:?}; skipped",
                    path.display()
                );
                text.clone()
            });
        }
        std::fs::write(path, text)
    }
}

fn x_labels(threads: &[usize]) -> Vec<String> {
    threads.iter().map(|t| t.to_string()).collect()
}

fn size_name(size: u64) -> String {
    match size {
        s if s >= 1_000_000 && s % 1_000_000 == 0 => format!("{}M", s / 1_000_000),
        s if s >= 1_000 && s % 1_000 == 0 => format!("{}k", s / 1_000),
        s => s.to_string(),
    }
}

fn begin_marker(name: &str) -> String {
    format!("<!-- BEGIN GENERATED {name}: rewritten by `dualmap-bench --write-benchmarks-md` -->")
}

fn end_marker(name: &str) -> String {
    format!("<!-- END GENERATED {name} -->")
}

fn replace_block(text: &str, name: &str, content: &str) -> Option<String> {
    let (begin, end) = (begin_marker(name), end_marker(name));
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    Some(format!(
        "{}\n{}\n{}",
        &text[..start],
        content.trim_end(),
        &text[stop..]
    ))
}

/// The directory `out` as a link prefix relative to the directory of `md` (with a trailing
/// slash), or absolute if it is not below it.
fn relative_dir(md: &Path, out: &Path) -> String {
    let base = md
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .or_else(|| md.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let out_abs = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
    let relative: PathBuf = out_abs
        .strip_prefix(&base)
        .map_or(out_abs.clone(), Path::to_path_buf);
    let mut text = relative.to_string_lossy().replace('\\', "/");
    if !text.is_empty() && !text.ends_with('/') {
        text.push('/');
    }
    text
}

/// The skeleton of BENCHMARKS.md, used when the file has no generated sections yet.
const TEMPLATE: &str = include_str!("benchmarks_template.md");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400 + 3_600 + 120), "2000-02-29 01:02 UTC");
        assert_eq!(utc_date(1_767_225_600), "2026-01-01 00:00 UTC");
    }

    #[test]
    fn blocks_are_replaced_and_prose_kept() {
        let text = format!(
            "intro\n{}\nold\n{}\nprose\n",
            begin_marker("go"),
            end_marker("go")
        );
        let new = replace_block(&text, "go", "new table\n").expect("has the block");
        assert_eq!(
            new,
            format!(
                "intro\n{}\nnew table\n{}\nprose\n",
                begin_marker("go"),
                end_marker("go")
            )
        );
        assert!(replace_block(&text, "mixes", "x").is_none());
        for name in BLOCKS {
            assert!(
                TEMPLATE.contains(&begin_marker(name)) && TEMPLATE.contains(&end_marker(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn targets_are_checked_against_the_run() {
        use clap::Parser;
        let plan = crate::plan(&crate::Args::parse_from(["dualmap-bench", "--quick"]));
        let cost = |map: &str, operation: &str, keys: u64, instructions: f64, lines: f64| Cost {
            map: map.into(),
            operation: operation.into(),
            keys,
            instructions,
            lines,
        };
        let results = Results {
            cost: Some(Ok(vec![
                cost("dualmap", "overwrite", 1_000, 150.0, 0.5),
                cost("dualmap", "overwrite", 1_000_000, 5.0, 3.5),
                cost("dualmap", "insert_new", 1_000, 351.0, 0.5),
            ])),
            ..Results::default()
        };
        let info = RunInfo::collect("test", Duration::ZERO, None);
        let generated = Generated::new(&plan, &results, &info);
        let verdicts: Vec<(String, Option<bool>)> = generated
            .targets()
            .into_iter()
            .map(|t| (t.what, t.met))
            .collect();
        let verdict = |prefix: &str| {
            verdicts
                .iter()
                .find(|(what, _)| what.starts_with(prefix))
                .unwrap_or_else(|| panic!("no target {prefix:?}"))
                .1
        };
        assert_eq!(
            verdict("overwrite of an existing key: at most 200"),
            Some(true)
        );
        assert_eq!(
            verdict("overwrite of an existing key: at most 3"),
            Some(false)
        );
        assert_eq!(verdict("insert of a new key"), Some(false));
        assert_eq!(verdict("grow"), None, "not measured");
        let table = generated.target_table().markdown("###");
        assert!(table.contains("1 of 3 measured targets met"), "{table}");
    }

    #[test]
    fn axis_and_sizes() {
        assert_eq!(size_name(1_000_000), "1M");
        assert_eq!(size_name(100_000), "100k");
        assert_eq!(size_name(1_500), "1500");
        assert_eq!(geomean(&[1.0, 4.0]), Some(2.0));
    }
}
