//! What exactly-once costs: the keyed tumbling-window count with epochs
//! every 100 ms (positions, window snapshots and barriers logged to each
//! shard's WAL, commits by the coordinator) against the same pipeline with
//! epochs off, side by side in one process, alternating which goes first.
//!
//! ```text
//! cargo run --release -p weir-bench --bin epochs -- --events 100000000 --keys 100000 --runs 5
//! ```
//!
//! The data directory is created under `--dir` (default: the current
//! directory, which must be a real disk, not tmpfs) and removed after each
//! run. The keycount sink folds rows in memory (it stages nothing), so this
//! measures the protocol and the snapshots, not a sink's file I/O.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Result};
use clap::Parser;
use weir_bench::weir_keycount::pipeline::Snapshots;
use weir_bench::workload::{KeyCount, WindowTotals};
use weir_runtime::Runtime;

#[derive(Parser, Debug)]
#[command(about = "weir keycount with and without exactly-once epochs")]
struct Args {
    /// Events over all shards.
    #[arg(long, default_value_t = 100_000_000)]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Window length in event-time ticks.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Shards.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Epoch interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    epoch_ms: u64,
    /// Runs of each mode; medians are over these.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where to put the data directories.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Snapshot the window whole every epoch (as before incremental
    /// snapshots), for comparison.
    #[arg(long)]
    full_snapshots: bool,
    /// Write each base whole at its base epoch instead of sweeping it over
    /// the next epochs, for comparison.
    #[arg(long, conflicts_with = "full_snapshots")]
    whole_bases: bool,
}

impl Args {
    fn snapshots(&self) -> Snapshots {
        match (self.full_snapshots, self.whole_bases) {
            (true, _) => Snapshots::Full,
            (false, true) => Snapshots::WholeBases,
            (false, false) => Snapshots::Swept,
        }
    }
}

/// Slowest epoch commits a run names.
const SLOWEST_SHOWN: usize = 4;

struct Measured {
    rate: f64,
    latencies: Vec<Duration>,
    totals: WindowTotals,
    /// Snapshot bytes logged: (full, changes), and WAL bytes written.
    snapshot_bytes: (f64, f64),
    wal_bytes: f64,
    /// The longest snapshot of one node instance: the longest stall.
    longest_snapshot: Duration,
    /// Seconds spent taking snapshots, over all shards.
    snapshot_seconds: f64,
    /// The run's wall time.
    elapsed: Duration,
    /// CPU time of the whole process over the run's wall time: how many
    /// of the machine's cores the run kept busy.
    cores_busy: f64,
}

/// CPU time (user and system) this process has used so far.
fn process_cpu_time() -> Duration {
    // SAFETY: `getrusage` writes only the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The value of the series `name` (summed over its label sets).
fn metric(rendered: &str, name: &str) -> f64 {
    rendered
        .lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn run(args: &Args, data_dir: Option<&std::path::Path>) -> Result<Measured> {
    let mut builder = Runtime::builder().shards(args.shards);
    if let Some(dir) = data_dir {
        builder = builder
            .data_dir(dir)
            .epoch_interval(Duration::from_millis(args.epoch_ms));
    }
    let runtime = builder.build()?;
    let keycount = KeyCount {
        events: args.events,
        keys: args.keys,
        window_ticks: args.window,
    };
    let results = Arc::new(Mutex::new(WindowTotals::default()));
    let (cpu_before, wall_before) = (process_cpu_time(), std::time::Instant::now());
    let report = runtime.run(keycount.graph_with(results.clone(), args.snapshots())?)?;
    let totals = std::mem::take(
        &mut *results
            .lock()
            .map_err(|_| anyhow::anyhow!("a sink panicked"))?,
    );
    let cores_busy =
        (process_cpu_time() - cpu_before).as_secs_f64() / wall_before.elapsed().as_secs_f64();
    let rendered = runtime.metrics().render();
    Ok(Measured {
        cores_busy,
        rate: args.events as f64 / report.elapsed.as_secs_f64(),
        latencies: report.epoch_commit_latencies,
        longest_snapshot: report.longest_snapshot,
        totals,
        snapshot_bytes: (
            metric(&rendered, "weir_snapshot_bytes_total{kind=\"full\"}"),
            metric(&rendered, "weir_snapshot_bytes_total{kind=\"changes\"}"),
        ),
        wal_bytes: metric(&rendered, "weir_wal_bytes_written_total{log=\"shard\"}"),
        snapshot_seconds: metric(&rendered, "weir_snapshot_duration_seconds_sum"),
        elapsed: report.elapsed,
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "epochs: keycount, {} events, {} keys, {} shards, epochs every {} ms, {} runs, {} snapshots",
        args.events,
        args.keys,
        args.shards,
        args.epoch_ms,
        args.runs,
        match args.snapshots() {
            Snapshots::Swept => "incremental, swept bases",
            Snapshots::WholeBases => "incremental, whole bases",
            Snapshots::Full => "full",
        }
    );
    let (mut with, mut without, mut ratios, mut latencies, mut stalls) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run_index in 0..args.runs.max(1) {
        let data_dir = tempfile::Builder::new()
            .prefix("weir-epochs-")
            .tempdir_in(&args.dir)?;
        let (on, off) = if run_index % 2 == 0 {
            let on = run(&args, Some(data_dir.path()))?;
            (on, run(&args, None)?)
        } else {
            let off = run(&args, None)?;
            (run(&args, Some(data_dir.path()))?, off)
        };
        ensure!(on.totals == off.totals, "epochs changed the output");
        let epochs = on.latencies.len().max(1) as f64;
        println!(
            "run {run_index}: epochs {:.2} M events/s, no epochs {:.2} M events/s, ratio {:.3}, {} epochs committed; per epoch: {:.2} MB of full snapshots, {:.2} MB of changes, {:.2} MB written to the shard WALs; longest snapshot (a stall of its shard) {:.1} ms; snapshots took {:.1} % of the shards' time; cores busy: epochs {:.2}, no epochs {:.2}",
            on.rate / 1e6,
            off.rate / 1e6,
            on.rate / off.rate,
            on.latencies.len(),
            on.snapshot_bytes.0 / epochs / 1e6,
            on.snapshot_bytes.1 / epochs / 1e6,
            on.wal_bytes / epochs / 1e6,
            on.longest_snapshot.as_secs_f64() * 1e3,
            on.snapshot_seconds * 100.0 / (on.elapsed.as_secs_f64() * args.shards as f64),
            on.cores_busy,
            off.cores_busy,
        );
        // Where the commit tail is: early epochs (tables growing while
        // they fill) or base epochs (multiples of 64).
        let mut slowest: Vec<(usize, Duration)> =
            on.latencies.iter().copied().enumerate().collect();
        slowest.sort_by_key(|&(_, latency)| std::cmp::Reverse(latency));
        let slowest: Vec<String> = slowest
            .iter()
            .take(SLOWEST_SHOWN)
            .map(|(index, latency)| {
                format!("epoch {} {:.1} ms", index + 1, latency.as_secs_f64() * 1e3)
            })
            .collect();
        println!("  slowest commits: {}", slowest.join(", "));
        stalls.push(on.longest_snapshot.as_secs_f64() * 1e3);
        with.push(on.rate);
        without.push(off.rate);
        ratios.push(on.rate / off.rate);
        latencies.extend(on.latencies);
    }
    latencies.sort();
    ensure!(!latencies.is_empty(), "no epoch committed");
    println!(
        "median: epochs {:.2} M events/s, no epochs {:.2} M events/s, ratio {:.3}; commit latency (request to durable commit record) p50 {:.1} ms, p99 {:.1} ms over {} epochs; longest snapshot {:.1} ms",
        median(&mut with) / 1e6,
        median(&mut without) / 1e6,
        median(&mut ratios),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len(),
        median(&mut stalls),
    );
    Ok(())
}
