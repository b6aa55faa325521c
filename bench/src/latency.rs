//! The `latency` part: what one operation can cost, not what operations cost on average. The
//! 98/1/1 mix (`read-heavy`: gets of prefilled keys, inserts of new keys, removes of this
//! thread's oldest inserted key) runs on a large prefilled map with every operation timed into
//! an HDR histogram; a stall that an average hides (a rebuild under a lock, a resize, a
//! reclamation pass) shows in the top percentiles and the maximum.

use crate::workloads::{self, BenchMap, Dist, KeyStreams, MapKind, Mix, OpClock};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// The percentiles reported, with their column names.
pub const PERCENTILES: [(&str, f64); 4] = [
    ("p50", 50.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// The mix every latency run uses.
pub const MIX: Mix = Mix::ReadHeavy;

/// Times every operation of one worker: the time from the end of one operation to the end of
/// the next, so one clock read per operation. The interval includes the loop's own work
/// (drawing the key and the operation, about 5 ns) and the previous histogram update (a few
/// ns), the same for every map.
pub struct OpTimer {
    histogram: Histogram<u64>,
    last: Instant,
}

impl OpTimer {
    fn new() -> Self {
        OpTimer {
            // 1 ns to 100 s at 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("valid histogram bounds"),
            last: Instant::now(),
        }
    }
}

impl OpClock for OpTimer {
    fn start(&mut self, at: Instant) {
        self.last = at;
    }

    #[inline]
    fn lap(&mut self) {
        let now = Instant::now();
        let nanos = u64::try_from((now - self.last).as_nanos()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(nanos.max(1));
        self.last = now;
    }
}

/// One map's latency: the median over the repetitions of each percentile, and the worst
/// maximum of any repetition, in nanoseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    /// The values of [`PERCENTILES`], in order.
    pub percentiles: [f64; 4],
    /// The slowest operation of all repetitions.
    pub max: f64,
    /// Operations timed, all repetitions together.
    pub ops: u64,
}

impl Latency {
    /// The percentiles, then the maximum: the columns of every table, chart and CSV row.
    pub fn times(&self) -> [f64; 5] {
        let [p50, p99, p999, p9999] = self.percentiles;
        [p50, p99, p999, p9999, self.max]
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One repetition's histogram of every operation of every worker.
type Repetition = Histogram<u64>;

/// Repetitions of the latency mix with `threads` threads on `map`, which the returned
/// function owns: `(duration, number)` runs one.
fn repetitions_on<'a, M: BenchMap + 'a>(
    map: M,
    keys: &'a KeyStreams,
    threads: usize,
) -> Box<dyn FnMut(Duration, u64) -> Repetition + 'a> {
    Box::new(move |duration, number| {
        let (_, timers) =
            workloads::mix_phase(&map, MIX, keys, threads, duration, number, OpTimer::new);
        let mut merged = timers[0].histogram.clone();
        for timer in &timers[1..] {
            merged.add(&timer.histogram).expect("same bounds");
        }
        merged
    })
}

impl Latency {
    /// Each percentile's median over the repetitions, and the slowest operation of any.
    fn of(repetitions: &[Repetition]) -> Self {
        let mut per_percentile: [Vec<f64>; 4] = Default::default();
        for repetition in repetitions {
            for (values, (_, percentile)) in per_percentile.iter_mut().zip(PERCENTILES) {
                values.push(repetition.value_at_percentile(percentile) as f64);
            }
        }
        Latency {
            percentiles: per_percentile.map(|mut values| median(&mut values)),
            max: repetitions.iter().map(Histogram::max).max().unwrap_or(0) as f64,
            ops: repetitions.iter().map(Histogram::len).sum(),
        }
    }
}

/// Measures the latency mix on a fresh map of each of `kinds`, all prefilled with `size`
/// keys (uniform keys) and alive together: an untimed warm-up phase of `warm_up` on each,
/// then `repeats` timed repetitions of `duration` with `threads` threads each, the maps
/// [`in_turn`](workloads::in_turn). Returns each map's latency, in the order of `kinds`.
pub fn measure_side_by_side(
    kinds: &[MapKind],
    size: u64,
    threads: usize,
    warm_up: Duration,
    duration: Duration,
    repeats: usize,
) -> Vec<Latency> {
    let keys = KeyStreams::new(size, Dist::Uniform, threads);
    let mut runners: Vec<_> = kinds
        .iter()
        .map(|&kind| {
            workloads::with_map_type!(kind, M => repetitions_on(workloads::prefilled::<M>(size), &keys, threads))
        })
        .collect();
    if !warm_up.is_zero() {
        for repetition in &mut runners {
            repetition(warm_up, 1);
        }
    }
    workloads::in_turn(runners.len(), repeats.max(1), |contender, round| {
        runners[contender](duration, 2 + round as u64)
    })
    .iter()
    .map(|repetitions| Latency::of(repetitions))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_timed() {
        let kinds = [MapKind::DualMap, MapKind::DualMapReader, MapKind::DashMap];
        let latencies = measure_side_by_side(
            &kinds,
            1_000,
            2,
            Duration::from_millis(1),
            Duration::from_millis(5),
            3,
        );
        assert_eq!(latencies.len(), kinds.len());
        for latency in latencies {
            assert!(latency.ops > 0);
            let [p50, p99, p999, p9999] = latency.percentiles;
            assert!(p50 >= 1.0 && p50 <= p99 && p99 <= p999 && p999 <= p9999);
            assert!(p9999 <= latency.max);
        }
    }
}
