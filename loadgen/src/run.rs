//! A run, from the command line's options to its [`Summary`]:
//!
//! 1. Check the options and derive what the connections share
//!    ([`ConnConfig::from_args`]).
//! 2. Encode every connection's pool of batches before the clock starts
//!    (`pool.rs`), so sending only patches times, batch ids and checksums.
//! 3. Start the clock [`START_LEAD_MS`] ahead, so that the connections can
//!    connect before batch 0 is due, and start one thread per connection.
//! 4. Once a second until every connection is done, print a progress line
//!    (unless `--quiet`) and write that second's histogram to the interval
//!    log (`--interval-log`).
//! 5. Join the connections, tell their readers to stop, and collect the
//!    summary, writing the `--hgrm` and `--plot` files asked for.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use weir_protocol::FLAG_DEDUP;

use crate::cli::Args;
use crate::config::{ConnConfig, Transport};
use crate::limits::{PROGRESS_POLL_MS, START_LEAD_MS};
use crate::stats::Shared;
use crate::summary::Summary;
use crate::{http, pool, tcp};

/// The interval log's writer, over the file it writes.
type LogWriter<'a> = IntervalLogWriter<'a, 'a, BufWriter<File>, V2DeflateSerializer>;

/// Runs the load generator and returns what it measured. Prints a progress
/// line per second on stderr (unless `quiet`) and writes the `--hgrm`,
/// `--interval-log` and `--plot` files it was asked for.
pub fn run(args: Args) -> Result<Summary> {
    let target = args.target.clone().context("--target is required")?;
    let (transport, config) = ConnConfig::from_args(&args, &target)?;
    let config = Arc::new(config);
    let pools = encode_pools(&config, transport, args.dedup);
    let shared = Arc::new(start_clock(&args)?);

    let mut interval_log = create_file(args.interval_log.as_deref())?;
    let mut serializer = V2DeflateSerializer::new();
    let start_time = UNIX_EPOCH + Duration::from_nanos(shared.start_unix_ns);
    let mut log_writer = match interval_log.as_mut() {
        Some(out) => Some(begin_interval_log(
            out,
            &mut serializer,
            start_time,
            &format!("weir loadgen {target}"),
        )?),
        None => None,
    };

    let handles = start_connections(&config, &shared, pools)?;
    watch(&handles, &shared, config.verbose, log_writer.as_mut())?;
    for handle in handles {
        if handle.join().is_err() {
            bail!("a connection thread panicked");
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    drop(log_writer);
    if let Some(mut out) = interval_log {
        out.flush()?;
    }

    let summary = Summary::collect(&shared, target, args.duration, args.record_bytes);
    summary.write_files(args.hgrm.as_deref(), args.plot.as_deref())?;
    Ok(summary)
}

/// Encodes every connection's pool of batches, saying how long it took
/// unless the run is quiet.
fn encode_pools(config: &ConnConfig, transport: Transport, dedup: bool) -> Vec<pool::Pool> {
    let flags = if dedup { FLAG_DEDUP } else { 0 };
    let (pools, took) = pool::build_pools(config, transport == Transport::Http, flags);
    if config.verbose {
        let bytes: usize = pools.iter().map(pool::Pool::bytes).sum();
        eprintln!(
            "loadgen: pre-encoded {} batches per connection ({:.1} MiB in all) in {:.2} s",
            pool::pool_batches(config),
            bytes as f64 / (1 << 20) as f64,
            took.as_secs_f64()
        );
    }
    pools
}

/// The run's clock and counters: batch 0 is due [`START_LEAD_MS`] from now.
fn start_clock(args: &Args) -> Result<Shared> {
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let lead = Duration::from_millis(START_LEAD_MS);
    let start = Instant::now() + lead;
    Ok(Shared::new(
        start,
        unix_now + lead.as_nanos() as u64,
        args.warmup,
        args.warmup + args.duration,
        args.drain_timeout,
    ))
}

/// Creates `path`, buffered, if one is given.
fn create_file(path: Option<&Path>) -> Result<Option<BufWriter<File>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Some(BufWriter::new(file)))
}

/// Starts one thread per connection, each sending its pool's batches.
fn start_connections(
    config: &Arc<ConnConfig>,
    shared: &Arc<Shared>,
    pools: Vec<pool::Pool>,
) -> Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (conn, pool) in pools.into_iter().enumerate() {
        let (config, shared) = (config.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-conn-{conn}"))
            .spawn(move || match pool {
                pool::Pool::Tcp(pool) => tcp::run_connection(config, shared, conn, pool),
                pool::Pool::Http(pool) => http::run_connection(config, shared, conn, pool),
            })
            .context("cannot start a connection thread")?;
        handles.push(handle);
    }
    Ok(handles)
}

/// What the connections measured in one progress interval.
struct Tick {
    /// Latencies, warmup included.
    all: Histogram<u64>,
    /// Latencies of measured batches.
    measured: Histogram<u64>,
    /// Events acknowledged.
    events: u64,
    /// Failed batches.
    errors: u64,
}

impl Tick {
    /// Takes the interval's measurements, leaving the counters at zero for
    /// the next.
    fn take(shared: &Shared) -> Tick {
        let mut stats = shared.stats();
        let tick = Tick {
            all: stats.tick.clone(),
            measured: stats.tick_measured.clone(),
            events: stats.tick_events,
            errors: stats.tick_errors,
        };
        stats.tick.reset();
        stats.tick_measured.reset();
        stats.tick_events = 0;
        stats.tick_errors = 0;
        tick
    }
}

/// Reports progress once a second until every connection is done: a line
/// on stderr if `verbose`, and a histogram in the interval log if there is
/// one. The last interval is usually shorter than a second.
fn watch(
    handles: &[JoinHandle<()>],
    shared: &Shared,
    verbose: bool,
    mut log: Option<&mut LogWriter<'_>>,
) -> Result<()> {
    let start = shared.start;
    let mut second = 1u32;
    let mut tick_start = start;
    loop {
        let next = start + Duration::from_secs(u64::from(second));
        let finished = handles.iter().all(|handle| handle.is_finished());
        let now = Instant::now();
        if !finished && now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(PROGRESS_POLL_MS)));
            continue;
        }
        let now = Instant::now().max(tick_start);
        let tick = Tick::take(shared);
        let length = now - tick_start;
        if verbose && !(finished && tick.events == 0 && tick.errors == 0) {
            print_progress(&tick, shared, now, length);
        }
        if let Some(writer) = log.as_deref_mut() {
            // Intervals mostly in the warmup hold no measured latencies.
            let after_warmup = tick_start + length / 2 >= start + shared.warmup;
            if !tick.measured.is_empty() || (after_warmup && !finished) {
                let offset = tick_start.saturating_duration_since(start);
                writer
                    .write_histogram(&tick.measured, offset, length, None)
                    .map_err(|error| anyhow::anyhow!("cannot write the interval log: {error}"))?;
            }
        }
        tick_start = now;
        second += 1;
        if finished {
            return Ok(());
        }
    }
}

/// One progress line: the interval's throughput, errors and p99, ending
/// at `now` and `length` long.
fn print_progress(tick: &Tick, shared: &Shared, now: Instant, length: Duration) {
    let secs = length.as_secs_f64().max(1e-3);
    let phase = if now <= shared.start + shared.warmup {
        " (warmup)"
    } else {
        ""
    };
    eprintln!(
        "[{:>4.0}s] {:>10.0} events/s  errors {:>6}  p99 {:>9.3} ms{phase}",
        (now.saturating_duration_since(shared.start)).as_secs_f64(),
        tick.events as f64 / secs,
        tick.errors,
        tick.all.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

/// Starts an HdrHistogram V2 interval log (compressed histograms) on
/// `out`: a comment, `StartTime` and `BaseTime` (both `start_time`, so
/// interval timestamps are offsets from it) and a max value divisor of 1000
/// (histograms hold microseconds; the max column shows milliseconds).
/// `weir loadgen --interval-log` writes one histogram per second with the
/// returned writer.
pub fn begin_interval_log<'a, W: Write>(
    out: &'a mut W,
    serializer: &'a mut V2DeflateSerializer,
    start_time: SystemTime,
    comment: &str,
) -> std::io::Result<IntervalLogWriter<'a, 'a, W, V2DeflateSerializer>> {
    IntervalLogWriterBuilder::new()
        .add_comment(&format!("{comment}; latencies in microseconds"))
        .with_start_time(start_time)
        .with_base_time(start_time)
        .with_max_value_divisor(1000.0)
        .begin_log_with(out, serializer)
}
