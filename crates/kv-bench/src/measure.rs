//! Timing loops and their summaries: median, 99th percentile, time per operation, rate.
//!
//! Not a statistics package: every figure is a few runs of a fixed duration, summarized the
//! way the Go peers summarize theirs, so the two sides compare like for like.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The bytes of every value the benchmarks write, the same size as the Go peer's (`-value`).
pub const VALUE: [u8; 100] = [0x5a; 100];

/// Thread numbers at or above this mark warm-up operations, so their keys differ from the
/// measured ones.
const WARMUP_THREAD: u32 = 1 << 31;

/// How one measured run went.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Operations finished.
    pub count: u64,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// Median latency of one operation, when the run reports latencies.
    pub p50: Option<Duration>,
    /// 99th percentile latency of one operation, when the run reports latencies.
    pub p99: Option<Duration>,
}

impl Summary {
    /// Summarizes per-operation `latencies` from a run that took `elapsed`.
    pub fn from_latencies(mut latencies: Vec<Duration>, elapsed: Duration) -> Summary {
        latencies.sort_unstable();
        let at = |q: usize| latencies.get(latencies.len() * q / 100).copied();
        Summary { count: latencies.len() as u64, elapsed, p50: at(50), p99: at(99) }
    }

    /// Several runs of the same thing taken as one: operations and time add up, so the rate
    /// and time per operation are over all runs; the percentiles are the runs' medians.
    pub fn pooled(runs: &[Summary]) -> Summary {
        let median = |pick: fn(&Summary) -> Option<Duration>| {
            let mut values: Vec<Duration> = runs.iter().filter_map(pick).collect();
            values.sort_unstable();
            values.get(values.len() / 2).copied()
        };
        Summary {
            count: runs.iter().map(|r| r.count).sum(),
            elapsed: runs.iter().map(|r| r.elapsed).sum(),
            p50: median(|r| r.p50),
            p99: median(|r| r.p99),
        }
    }

    /// Operations per second over the whole run.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// Wall-clock time per operation, which is Go's `ns/op`; on one thread, the mean latency.
    pub fn time_per_op(&self) -> Duration {
        self.elapsed.div_f64(self.count.max(1) as f64)
    }
}

/// The 12-byte key operation `n` of `thread` writes, laid out as the Go peer lays out its
/// keys: the thread number and the operation number, both big-endian.
pub fn key(thread: u32, n: u64) -> [u8; 12] {
    let mut key = [0; 12];
    key[..4].copy_from_slice(&thread.to_be_bytes());
    key[4..].copy_from_slice(&n.to_be_bytes());
    key
}

/// [`warm_up`], then [`run_threads`].
pub fn warm_then_run<F>(threads: u32, duration: Duration, op: F) -> anyhow::Result<Summary>
where
    F: Fn(u32, u64) -> anyhow::Result<()> + Sync,
{
    warm_up(threads, duration, &op)?;
    run_threads(threads, duration, op)
}

/// Runs what [`run_threads`] would, unmeasured, for a tenth of `duration` (300 ms at most),
/// on keys of their own.
pub fn warm_up<F>(threads: u32, duration: Duration, op: &F) -> anyhow::Result<()>
where
    F: Fn(u32, u64) -> anyhow::Result<()> + Sync,
{
    let warmup = (duration / 10).min(Duration::from_millis(300));
    timed_loops(threads, warmup, WARMUP_THREAD, &|t, n| op(t, n).map(|()| Flow::Done)).map(drop)
}

/// Runs `op(thread, n)` in a loop on each of `threads` threads for `duration`, and
/// summarizes the latencies. The first error of any thread ends the run and is returned.
pub fn run_threads<F>(threads: u32, duration: Duration, op: F) -> anyhow::Result<Summary>
where
    F: Fn(u32, u64) -> anyhow::Result<()> + Sync,
{
    run_threads_until(threads, duration, |thread, n| op(thread, n).map(|()| Flow::Done))
}

/// What one call of an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// It ran; its latency counts.
    Done,
    /// It had nothing left to work on (say, the snapshots an earlier run created are used
    /// up): it is not counted, and every thread stops after its current operation, so the
    /// run ends with all threads still busy.
    Exhausted,
}

/// [`run_threads`] for operations that may run out of work: the run ends at `duration` or
/// as soon as one thread's `op` returns [`Flow::Exhausted`], whichever comes first.
pub fn run_threads_until<F>(threads: u32, duration: Duration, op: F) -> anyhow::Result<Summary>
where
    F: Fn(u32, u64) -> anyhow::Result<Flow> + Sync,
{
    let started = Instant::now();
    let latencies = timed_loops(threads, duration, 0, &op)?;
    Ok(Summary::from_latencies(latencies, started.elapsed()))
}

fn timed_loops<F>(
    threads: u32,
    duration: Duration,
    first_thread: u32,
    op: &F,
) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(u32, u64) -> anyhow::Result<Flow> + Sync,
{
    let until = Until { deadline: Instant::now() + duration, stop: AtomicBool::new(false) };
    let per_thread = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let until = &until;
                scope.spawn(move || timed_loop(first_thread + t, until, op))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a benchmark thread panicked")))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    Ok(per_thread.into_iter().flatten().collect())
}

/// When the threads of one run stop.
struct Until {
    deadline: Instant,
    /// Set by the first thread whose operation ran out of work.
    stop: AtomicBool,
}

fn timed_loop<F>(thread: u32, until: &Until, op: &F) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(u32, u64) -> anyhow::Result<Flow>,
{
    let mut latencies = Vec::new();
    let mut n = 0;
    while Instant::now() < until.deadline && !until.stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        match op(thread, n)? {
            Flow::Done => latencies.push(began.elapsed()),
            Flow::Exhausted => until.stop.store(true, Ordering::Relaxed),
        }
        n += 1;
    }
    Ok(latencies)
}
