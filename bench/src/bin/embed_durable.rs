//! What durability costs an embedded pipeline (issue 7): pushes logged to
//! the WAL against pushes kept in memory, and a durable push's receipt
//! against a raw write + fdatasync on the same disk, side by side in each
//! run.
//!
//! ```text
//! cargo run --release -p weir-bench --bin embed_durable -- --dir /var/tmp --runs 5
//! ```
//!
//! Each run measures, on fresh pipelines (`--shards` shards, unpinned,
//! `input` keyed by the pushed number → a subscription counting every
//! event in an `on_output` callback):
//! - **throughput, in memory** and **throughput, logged**: `--pushers`
//!   std threads push `--records` numbers in all with `push_blocking`, as
//!   fast as the pipeline takes them; the time is from the first push to
//!   the last event counted. "Logged" runs on a data directory under
//!   `--dir`, so every poll's records are written to the WAL first;
//! - **durable push latency**: one thread, closed loop: `push_durable_blocking`
//!   then `Receipt::wait`, `--samples` times after `--warmup-samples`;
//! - **raw write + fdatasync**: the floor under it: one thread writes 4 KiB
//!   with O_DIRECT at the next offset of a file in the same directory and
//!   calls fdatasync, `--samples` times (the WAL's own discipline: aligned
//!   O_DIRECT writes, then a sync);
//! - **durable pushes with receipts in flight**: `--pushers` threads each
//!   keep `--in-flight` receipts outstanding; receipts per second.
//!
//! Figures are medians over `--runs` runs of each run's figure; the two
//! throughput measurements alternate which goes first.

use std::io::Write as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use weir::runtime::{Partition, Runtime};
use weir::Event;

#[derive(Parser, Debug, Clone)]
#[command(about = "cost of logging pushes, and durable-push latency against raw fdatasync")]
struct Args {
    /// A directory on the disk to measure (not tmpfs).
    #[arg(long)]
    dir: PathBuf,
    /// Shards.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Threads pushing in the throughput and in-flight measurements.
    #[arg(long, default_value_t = 2)]
    pushers: usize,
    /// Records pushed per throughput measurement, over all pushers.
    #[arg(long, default_value_t = 4_000_000)]
    records: u64,
    /// Timed durable pushes (and raw syncs) per run.
    #[arg(long, default_value_t = 5_000)]
    samples: usize,
    /// Untimed durable pushes before them.
    #[arg(long, default_value_t = 500)]
    warmup_samples: usize,
    /// Receipts each pusher keeps outstanding in the in-flight measurement.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Seconds of the in-flight measurement.
    #[arg(long, default_value_t = 3.0)]
    in_flight_secs: f64,
    /// Runs; the figures are medians over them.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Let idle shards spin this many microseconds before they park
    /// (`RuntimeBuilder::low_latency`); 0: the default runtime.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Measure only the throughput with pushes in memory (for profiling
    /// one side: `strace -c`, `perf`).
    #[arg(long, conflicts_with = "only_logged")]
    only_memory: bool,
    /// Measure only the throughput with pushes logged.
    #[arg(long)]
    only_logged: bool,
}

fn runtime(args: &Args, data: Option<&Path>) -> Result<Runtime> {
    let mut builder = Runtime::builder().shards(args.shards).pin(false);
    if args.spin_us > 0 {
        builder = builder.low_latency(Duration::from_micros(args.spin_us));
    }
    if let Some(data) = data {
        builder = builder.data_dir(data);
    }
    builder.build().with_context(|| {
        format!(
            "cannot start {} shards: check `ulimit -l` (about 1.5 MiB per shard)",
            args.shards
        )
    })
}

/// Pushes `args.records` numbers from `args.pushers` threads; returns
/// events per second, first push to last event counted.
fn throughput(args: &Args, data: Option<&Path>) -> Result<f64> {
    let mut pipeline = weir::Pipeline::new(runtime(args, data)?);
    let input = pipeline.input("numbers", |n: &u64| *n);
    let events = pipeline.subscription::<Event<u64>>("events", "numbers", Partition::Forward);
    let service = pipeline.start()?;
    let handle = service.handle();
    let counted = Arc::new(AtomicU64::new(0));
    let count = counted.clone();
    handle.on_output(&events, move |_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    let per_pusher = args.records / args.pushers as u64;
    let total = per_pusher * args.pushers as u64;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for pusher in 0..args.pushers as u64 {
            let (handle, input) = (&handle, &input);
            scope.spawn(move || {
                for i in 0..per_pusher {
                    handle
                        .push_blocking(input, pusher * per_pusher + i)
                        .expect("the pipeline runs");
                }
            });
        }
    });
    while counted.load(Ordering::Relaxed) < total {
        std::thread::yield_now();
    }
    let seconds = start.elapsed().as_secs_f64();
    service.shutdown()?;
    Ok(total as f64 / seconds)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds")
}

/// Closed-loop durable pushes from one thread: push→receipt latency.
fn durable_latency(args: &Args, data: &Path) -> Result<Histogram<u64>> {
    let mut pipeline = weir::Pipeline::new(runtime(args, Some(data))?);
    let input = pipeline.input("numbers", |n: &u64| *n);
    pipeline.subscription::<Event<u64>>("events", "numbers", Partition::Forward);
    let service = pipeline.start()?;
    let handle = service.handle();
    let mut latencies = histogram();
    for n in 0..(args.warmup_samples + args.samples) as u64 {
        let start = Instant::now();
        handle.push_durable_blocking(&input, n)?.wait()?;
        if n >= args.warmup_samples as u64 {
            latencies.record(start.elapsed().as_nanos() as u64)?;
        }
    }
    service.shutdown()?;
    Ok(latencies)
}

/// 4 KiB O_DIRECT writes at successive offsets, each followed by an
/// fdatasync: the latency of one durable write on this disk.
fn raw_sync_latency(args: &Args, dir: &Path) -> Result<Histogram<u64>> {
    const BLOCK: usize = 4096;
    let path = dir.join("raw-sync");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
    let mut block = rkyv::util::AlignedVec::<BLOCK>::with_capacity(BLOCK);
    block.resize(BLOCK, 0);
    let mut latencies = histogram();
    for n in 0..args.warmup_samples + args.samples {
        let start = Instant::now();
        file.write_all_at(&block, (n * BLOCK) as u64)
            .and_then(|()| file.sync_data())
            .context("raw write + fdatasync")?;
        if n >= args.warmup_samples {
            latencies.record(start.elapsed().as_nanos() as u64)?;
        }
    }
    std::fs::remove_file(&path)?;
    Ok(latencies)
}

/// Durable pushes with `args.in_flight` receipts outstanding per pusher:
/// receipts per second.
fn durable_in_flight(args: &Args, data: &Path) -> Result<f64> {
    let mut pipeline = weir::Pipeline::new(runtime(args, Some(data))?);
    let input = pipeline.input("numbers", |n: &u64| *n);
    pipeline.subscription::<Event<u64>>("events", "numbers", Partition::Forward);
    let service = pipeline.start()?;
    let handle = service.handle();
    let deadline = Instant::now() + Duration::from_secs_f64(args.in_flight_secs);
    let start = Instant::now();
    let acknowledged: u64 = std::thread::scope(|scope| {
        let pushers: Vec<_> = (0..args.pushers as u64)
            .map(|pusher| {
                let (handle, input) = (&handle, &input);
                scope.spawn(move || {
                    let mut receipts = std::collections::VecDeque::new();
                    let mut acknowledged = 0u64;
                    let mut n = pusher << 40;
                    while Instant::now() < deadline {
                        receipts.push_back(handle.push_durable_blocking(input, n).expect("runs"));
                        n += 1;
                        if receipts.len() >= args.in_flight {
                            receipts.pop_front().unwrap().wait().expect("durable");
                            acknowledged += 1;
                        }
                    }
                    for receipt in receipts {
                        receipt.wait().expect("durable");
                        acknowledged += 1;
                    }
                    acknowledged
                })
            })
            .collect();
        pushers
            .into_iter()
            .map(|pusher| pusher.join().unwrap())
            .sum()
    });
    let seconds = start.elapsed().as_secs_f64();
    service.shutdown()?;
    Ok(acknowledged as f64 / seconds)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.runs > 0 && args.pushers > 0 && args.samples > 0);
    let scratch = tempfile::tempdir_in(&args.dir)
        .with_context(|| format!("making a scratch directory in {}", args.dir.display()))?;
    let mut plain = Vec::new();
    let mut logged = Vec::new();
    let mut durable = [Vec::new(), Vec::new(), Vec::new()];
    let mut raw = [Vec::new(), Vec::new(), Vec::new()];
    let mut in_flight = Vec::new();
    if args.only_memory || args.only_logged {
        let data = scratch.path().join("throughput");
        let figures: Vec<f64> = (0..args.runs)
            .map(|_| throughput(&args, args.only_logged.then_some(data.as_path())))
            .collect::<Result<_>>()?;
        println!(
            "throughput, {}: {:.0} ev/s (median of {})",
            if args.only_logged {
                "logged"
            } else {
                "in memory"
            },
            median(figures),
            args.runs
        );
        return Ok(());
    }
    for run in 0..args.runs {
        let data = scratch.path().join(format!("run-{run}"));
        // Alternate which goes first, so warm-up favours neither.
        if run % 2 == 0 {
            plain.push(throughput(&args, None)?);
            logged.push(throughput(&args, Some(&data.join("throughput")))?);
        } else {
            logged.push(throughput(&args, Some(&data.join("throughput")))?);
            plain.push(throughput(&args, None)?);
        }
        let latencies = durable_latency(&args, &data.join("latency"))?;
        let floor = raw_sync_latency(&args, scratch.path())?;
        for (i, quantile) in [0.5, 0.99, 0.999].into_iter().enumerate() {
            durable[i].push(us(latencies.value_at_quantile(quantile)));
            raw[i].push(us(floor.value_at_quantile(quantile)));
        }
        in_flight.push(durable_in_flight(&args, &data.join("in-flight"))?);
        std::fs::remove_dir_all(&data)?;
        let mut stderr = std::io::stderr().lock();
        writeln!(
            stderr,
            "run {run}: in memory {:.0} ev/s, logged {:.0} ev/s; durable push p50 {:.1} µs \
             p99 {:.1} µs, raw write+fdatasync p50 {:.1} µs p99 {:.1} µs; {:.0} receipts/s \
             with {} in flight per pusher",
            plain[run],
            logged[run],
            durable[0][run],
            durable[1][run],
            raw[0][run],
            raw[1][run],
            in_flight[run],
            args.in_flight
        )?;
    }
    let (plain, logged) = (median(plain), median(logged));
    println!(
        "shards {}, pushers {}, {} records per throughput run, spin {} µs, median of {} runs",
        args.shards, args.pushers, args.records, args.spin_us, args.runs
    );
    println!(
        "throughput: in memory {plain:.0} ev/s, logged to the WAL {logged:.0} ev/s \
         (logged/in memory {:.2})",
        logged / plain
    );
    let durable = durable.map(median);
    let raw = raw.map(median);
    println!(
        "durable push → receipt: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
        durable[0], durable[1], durable[2]
    );
    println!(
        "raw 4 KiB O_DIRECT write + fdatasync: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs \
         (durable push / raw at p50 {:.2}, p99 {:.2})",
        raw[0],
        raw[1],
        raw[2],
        durable[0] / raw[0],
        durable[1] / raw[1]
    );
    println!(
        "durable pushes, {} receipts in flight per pusher: {:.0} receipts/s",
        args.in_flight,
        median(in_flight)
    );
    Ok(())
}
