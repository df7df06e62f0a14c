//! weir's load generator: sends synthetic events to a weir ingest source
//! over the native `tcp` protocol or HTTP and measures how long each event
//! takes to be acknowledged as durable.
//!
//! # Open-loop schedule
//! By default the generator runs *open loop*, like wrk2: the send schedule
//! is fixed before the run starts and does not depend on how fast the
//! server answers. With `--rate R` events/s over `C` connections in batches
//! of `B` events, batch `i` of connection `c` is due at
//!
//! ```text
//! start + (i * C + c) * B / R
//! ```
//!
//! that is every `B * C / R` seconds per connection, the connections
//! staggered evenly within that period. The writer readies the batch ahead
//! of time (every connection encodes a pool of batches before the run
//! starts and only patches each one's send time, batch id and checksum
//! when it is due: see `pool.rs`), sleeps until shortly before it is due,
//! spins the last ~50 µs,
//! and sends it whether or not earlier batches were acknowledged (over TCP
//! frames are pipelined; a separate reader thread takes the acks).
//!
//! # Coordinated omission
//! A closed-loop client that waits for each answer before sending the next
//! request stops sending exactly when the server stalls, so the requests
//! that *would* have waited through the stall are never sent, and the
//! latency histogram looks far better than what users of the system would
//! see: the client has "coordinated" with the server to omit the bad
//! samples. To avoid that, every event carries `sent_ns`, its batch's
//! *intended* send time from the schedule, and its latency is measured as
//! ack receipt time − intended send time, never from when the write
//! actually happened. A batch that is sent late because the client fell
//! behind (an HTTP connection still waiting for its previous response, say)
//! is charged for the time it spent waiting. Each batch's latency is
//! recorded once per event it holds. Latencies are recorded in
//! microseconds in an [`hdrhistogram::Histogram`] with 3 significant
//! digits.
//!
//! # Closed loop
//! `--max` runs closed loop instead, to find the saturation throughput:
//! each connection keeps `--inflight` batches outstanding and sends the
//! next one as soon as one is acknowledged; latency runs from the actual
//! send. Overloaded answers are retried after the server's retry delay.
//!
//! # Outputs
//! A progress line per second on stderr, a summary ([`Summary`], printed as
//! a table), and optionally the percentile distribution in HdrHistogram's
//! `.hgrm` format ([`write_hgrm`]), an HdrHistogram V2 interval log with one
//! histogram per second, and an SVG latency-by-percentile plot
//! ([`plot_svg`]); `weir loadgen plot` overlays several `.hgrm` files.

mod event;
mod hgrm;
mod http;
mod plot;
mod pool;
mod stats;
mod tcp;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use weir_protocol::FLAG_DEDUP;

pub use event::Profile;
pub use hdrhistogram;
pub use hgrm::{read_hgrm, write_hgrm, TICKS_PER_HALF_DISTANCE};
pub use plot::plot_svg;

/// Options of a load generator run.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen")]
pub struct Args {
    /// Where to send: `tcp://HOST:PORT` (native protocol) or
    /// `http://HOST:PORT/PATH` (HTTP ingest; PATH defaults to `/events`).
    #[arg(long, required = true)]
    pub target: Option<String>,
    /// The kind of events.
    #[arg(long, value_enum, default_value_t = Profile::Access)]
    pub profile: Profile,
    /// Bytes per event on the wire (key + body; over HTTP the whole JSON
    /// line), reached by padding or truncating the body.
    #[arg(long, default_value_t = 100)]
    pub record_bytes: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Seed of the event generator: the same seed sends the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Events per second over all connections (open-loop mode); accepts
    /// `k` and `M` suffixes (`50k`, `1.5M`).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Connections.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub connections: u64,
    /// Events per frame (tcp) or request (http).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Closed-loop mode: send as fast as acks allow, keeping `--inflight`
    /// batches outstanding per connection, to find saturation throughput.
    #[arg(long)]
    pub max: bool,
    /// Batches outstanding per connection in `--max` mode (default 4 for
    /// tcp, 1 for http; http supports only 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub inflight: Option<u64>,
    /// How long to measure (`10s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run before measuring; excluded from histograms and
    /// totals.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How long to wait for outstanding acks after the last send.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Ask the server to deduplicate batches (tcp `FLAG_DEDUP`, http
    /// `Weir-Batch-Id`).
    #[arg(long)]
    pub dedup: bool,
    /// Bearer token for HTTP ingest.
    #[arg(long)]
    pub token: Option<String>,
    /// Most unacked frames per tcp connection; a batch due while this many
    /// are outstanding is skipped and counted as `backlogged`.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_backlog: u64,
    /// Write the latency percentile distribution (`.hgrm`, milliseconds)
    /// here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram interval log (one histogram per second,
    /// microseconds) here.
    #[arg(long)]
    pub interval_log: Option<PathBuf>,
    /// Write an SVG latency-by-percentile plot here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress lines or diagnostics on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The `weir loadgen` command line: a run, or `plot`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    /// A subcommand instead of a run.
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// The run's options.
    #[command(flatten)]
    pub args: Args,
}

/// `weir loadgen` subcommands.
#[derive(Subcommand, Debug)]
pub enum CliCommand {
    /// Overlay the latency distributions of several runs (`.hgrm` files)
    /// in one SVG plot.
    Plot {
        /// `.hgrm` files, one line each (named after the file).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The SVG file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Runs the `weir loadgen` command line: a run (printing its summary table
/// on stdout) or a subcommand.
pub fn cli_main(cli: Cli) -> Result<()> {
    match cli.command {
        Some(CliCommand::Plot { files, output }) => plot_files(&files, &output),
        None => {
            let summary = run(cli.args)?;
            print!("{summary}");
            Ok(())
        }
    }
}

/// Reads `.hgrm` files and writes their overlaid plot to `output`.
pub fn plot_files(files: &[PathBuf], output: &Path) -> Result<()> {
    let mut runs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let rows = read_hgrm(&text);
        if rows.is_empty() {
            bail!("{} holds no percentile distribution", file.display());
        }
        let name = file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.display().to_string());
        runs.push((name, rows.iter().map(|&(v, p, _)| (p, v)).collect()));
    }
    std::fs::write(output, plot_svg(&runs))
        .with_context(|| format!("cannot write {}", output.display()))
}

/// The outcome of a run. Everything counts measured batches only (those
/// due after the warmup).
#[derive(Debug, Clone)]
pub struct Summary {
    /// The target.
    pub target: String,
    /// Latencies of accepted events, in microseconds, one count per event.
    pub histogram: Histogram<u64>,
    /// Events sent.
    pub sent_events: u64,
    /// Batches (frames or requests) sent.
    pub sent_batches: u64,
    /// Events acknowledged as accepted.
    pub acked_events: u64,
    /// Batches acknowledged as accepted.
    pub acked_batches: u64,
    /// Failed batches by kind: `overloaded`, `rejected`, `duplicate`,
    /// `unavailable`, `backlogged`, `unsent` (due, but the run's time was
    /// over before it could be sent), `timeout`, `io`, `protocol`,
    /// `http_NNN`, ...
    pub errors: BTreeMap<String, u64>,
    /// The measured time: `--duration`, or longer if acks for measured
    /// batches came later.
    pub elapsed: Duration,
    /// Accepted events per second over `elapsed`.
    pub throughput: f64,
    /// Bytes per event asked for.
    pub record_bytes: usize,
}

impl Summary {
    /// The latency at `quantile` (0.99 for p99), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Failed batches, all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "target      {}", self.target)?;
        writeln!(f, "latency (ms, from intended send time)")?;
        let ms = |us: u64| us as f64 / 1000.0;
        for (label, quantile) in [
            ("p50", 0.5),
            ("p90", 0.9),
            ("p99", 0.99),
            ("p99.9", 0.999),
            ("p99.99", 0.9999),
        ] {
            writeln!(
                f,
                "  {label:<8} {:>12.3}",
                ms(self.histogram.value_at_quantile(quantile))
            )?;
        }
        writeln!(f, "  {:<8} {:>12.3}", "max", ms(self.histogram.max()))?;
        writeln!(
            f,
            "throughput  {:.1} events/s ({:.2} MB/s) over {:.3} s",
            self.throughput,
            self.throughput * self.record_bytes as f64 / 1e6,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "events      {} acked of {} sent ({} of {} batches)",
            self.acked_events, self.sent_events, self.acked_batches, self.sent_batches
        )?;
        if self.errors.is_empty() {
            writeln!(f, "errors      none")?;
        } else {
            writeln!(f, "errors      {} batches", self.error_count())?;
            for (kind, count) in &self.errors {
                writeln!(f, "  {kind:<14} {count:>10}")?;
            }
        }
        Ok(())
    }
}

/// How a connection sends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// On the fixed schedule, at this many events per second in all.
    Open { rate: f64 },
    /// Closed loop, this many batches outstanding.
    Max { inflight: usize },
}

/// Which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Http,
}

/// What every connection needs to know.
#[derive(Debug)]
pub(crate) struct ConnConfig {
    /// `HOST:PORT`.
    pub addr: String,
    /// The HTTP request path.
    pub path: String,
    pub mode: Mode,
    pub batch: usize,
    pub connections: u64,
    pub profile: Profile,
    pub seed: u64,
    pub keys: u64,
    pub record_bytes: usize,
    pub dedup: bool,
    pub token: Option<String>,
    pub max_backlog: usize,
    /// High bits of every batch id, different for every run.
    pub nonce: u64,
    /// The end of the schedule, from the start.
    pub end: Duration,
    pub verbose: bool,
}

/// Bits of a batch id holding its sequence number on its connection.
pub(crate) const SEQ_BITS: u32 = 36;
/// Bits of a batch id holding its connection.
const CONN_BITS: u32 = 12;

impl ConnConfig {
    /// When batch `seq` of connection `conn` is due, from the start; `None`
    /// past the end of the run (and always `None` in closed-loop mode).
    pub(crate) fn due(&self, conn: usize, seq: u64) -> Option<Duration> {
        let Mode::Open { rate } = self.mode else {
            return None;
        };
        let slot = seq as f64 * self.connections as f64 + conn as f64;
        let ns = slot * self.batch as f64 * 1e9 / rate;
        let due = Duration::from_nanos(ns as u64);
        (due < self.end).then_some(due)
    }

    /// Counts every batch of connection `conn` from `seq` on that was due
    /// but is not sent, because the run's time is over (an open-loop run
    /// behind its schedule stops at the end, never later): `unsent`.
    pub(crate) fn skip_rest(&self, shared: &stats::Shared, conn: usize, mut seq: u64) {
        while let Some(offset) = self.due(conn, seq) {
            shared.error(shared.start + offset, "unsent");
            seq += 1;
        }
    }

    /// Batch ids: a per-run nonce, the connection and the sequence number,
    /// so that ids differ across connections and runs (they are dedup keys).
    pub(crate) fn batch_id(&self, conn: usize, seq: u64) -> u64 {
        let conn = conn as u64 & ((1 << CONN_BITS) - 1);
        (self.nonce << (SEQ_BITS + CONN_BITS)) | (conn << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))
    }

    /// The event generator seed of a connection.
    pub(crate) fn conn_seed(&self, conn: usize) -> u64 {
        self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (conn as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03)
    }
}

/// Parses `tcp://HOST:PORT` or `http://HOST:PORT[/PATH]`.
fn parse_target(target: &str) -> Result<(Transport, String, String)> {
    if let Some(rest) = target.strip_prefix("tcp://") {
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            bail!("bad target {target:?}: expected tcp://HOST:PORT");
        }
        Ok((Transport::Tcp, addr.to_string(), String::new()))
    } else if let Some(rest) = target.strip_prefix("http://") {
        let (addr, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/events"),
        };
        if addr.is_empty() {
            bail!("bad target {target:?}: expected http://HOST:PORT/PATH");
        }
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:80")
        };
        Ok((Transport::Http, addr, path.to_string()))
    } else {
        bail!("bad target {target:?}: expected tcp://HOST:PORT or http://HOST:PORT/PATH")
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `250us` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (try 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "ns" => number / 1e9,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?} (try s, ms, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("bad duration {text:?}: {error}"))
}

/// Parses an events/s rate: `5000`, `50k`, `1.5M`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, factor) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1e3),
        Some((i, 'm' | 'M')) => (&text[..i], 1e6),
        _ => (text, 1.0),
    };
    let rate = number
        .parse::<f64>()
        .map_err(|_| format!("bad rate {text:?} (try 5000, 50k, 1.5M)"))?
        * factor;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(format!("the rate must be positive, not {text:?}"))
    }
}

/// Runs the load generator and returns what it measured. Prints a progress
/// line per second on stderr (unless `quiet`) and writes the `--hgrm`,
/// `--interval-log` and `--plot` files it was asked for.
pub fn run(args: Args) -> Result<Summary> {
    let target = args.target.clone().context("--target is required")?;
    let (transport, addr, path) = parse_target(&target)?;
    let mode = if args.max {
        let inflight = args
            .inflight
            .unwrap_or(if transport == Transport::Tcp { 4 } else { 1 });
        if transport == Transport::Http && inflight != 1 {
            bail!("http sends one request at a time per connection: use --connections, not --inflight");
        }
        Mode::Max {
            inflight: inflight as usize,
        }
    } else {
        let Some(rate) = args.rate else {
            bail!("give --rate EVENTS_PER_SECOND, or --max for a closed-loop run");
        };
        if args.inflight.is_some() {
            bail!("--inflight applies to --max runs only");
        }
        Mode::Open { rate }
    };
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let verbose = !args.quiet;

    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let end = args.warmup + args.duration;
    let config = Arc::new(ConnConfig {
        addr,
        path,
        mode,
        batch: args.batch as usize,
        connections: args.connections,
        profile: args.profile,
        seed: args.seed,
        keys: args.keys,
        record_bytes: args.record_bytes,
        dedup: args.dedup,
        token: args.token.clone(),
        max_backlog: args.max_backlog as usize,
        nonce: event::Rng::new(unix_now ^ (u64::from(std::process::id()) << 40)).next_u64()
            & 0xffff,
        end,
        verbose,
    });
    // Every batch is encoded now, before the clock starts; sending only
    // patches times, batch ids and checksums.
    let flags = if args.dedup { FLAG_DEDUP } else { 0 };
    let (pools, took) = pool::build_pools(&config, transport == Transport::Http, flags);
    if verbose {
        let bytes: usize = pools.iter().map(pool::Pool::bytes).sum();
        eprintln!(
            "loadgen: pre-encoded {} batches per connection ({:.1} MiB in all) in {:.2} s",
            pool::pool_batches(&config),
            bytes as f64 / (1 << 20) as f64,
            took.as_secs_f64()
        );
    }

    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    // Give the connections a moment to connect before batch 0 is due.
    let lead = Duration::from_millis(50);
    let start = Instant::now() + lead;
    let start_unix_ns = unix_now + lead.as_nanos() as u64;
    let shared = Arc::new(stats::Shared::new(
        start,
        start_unix_ns,
        args.warmup,
        end,
        args.drain_timeout,
    ));

    let mut interval_log = match &args.interval_log {
        Some(path) => {
            Some(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create {}", path.display())
            })?))
        }
        None => None,
    };
    let mut serializer = V2DeflateSerializer::new();
    let start_time = UNIX_EPOCH + Duration::from_nanos(start_unix_ns);
    let mut log_writer = match interval_log.as_mut() {
        Some(out) => Some(begin_interval_log(
            out,
            &mut serializer,
            start_time,
            &format!("weir loadgen {target}"),
        )?),
        None => None,
    };

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

    // Progress: one line and one interval histogram per second.
    let mut second = 1u32;
    let mut tick_start = start;
    loop {
        let next = start + Duration::from_secs(u64::from(second));
        let finished = handles.iter().all(|handle| handle.is_finished());
        let now = Instant::now();
        if !finished && now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(20)));
            continue;
        }
        let now = Instant::now().max(tick_start);
        let (tick, tick_measured, events, errors) = {
            let mut stats = shared.stats();
            let tick = stats.tick.clone();
            let measured = stats.tick_measured.clone();
            stats.tick.reset();
            stats.tick_measured.reset();
            let counts = (stats.tick_events, stats.tick_errors);
            stats.tick_events = 0;
            stats.tick_errors = 0;
            (tick, measured, counts.0, counts.1)
        };
        let length = now - tick_start;
        if verbose && !(finished && events == 0 && errors == 0) {
            let secs = length.as_secs_f64().max(1e-3);
            let phase = if now <= start + args.warmup {
                " (warmup)"
            } else {
                ""
            };
            eprintln!(
                "[{:>4.0}s] {:>10.0} events/s  errors {:>6}  p99 {:>9.3} ms{phase}",
                (now.saturating_duration_since(start)).as_secs_f64(),
                events as f64 / secs,
                errors,
                tick.value_at_quantile(0.99) as f64 / 1000.0,
            );
        }
        if let Some(writer) = log_writer.as_mut() {
            // Intervals mostly in the warmup hold no measured latencies.
            let after_warmup = tick_start + length / 2 >= start + args.warmup;
            if !tick_measured.is_empty() || (after_warmup && !finished) {
                writer
                    .write_histogram(
                        &tick_measured,
                        tick_start.saturating_duration_since(start),
                        length,
                        None,
                    )
                    .map_err(|error| anyhow::anyhow!("cannot write the interval log: {error}"))?;
            }
        }
        tick_start = now;
        second += 1;
        if finished {
            break;
        }
    }
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

    let stats = shared.stats();
    let measure_start = start + args.warmup;
    let elapsed = stats
        .last_ack
        .map(|last| last.saturating_duration_since(measure_start))
        .unwrap_or_default()
        .max(args.duration);
    let summary = Summary {
        target: target.clone(),
        histogram: stats.total.clone(),
        sent_events: stats.sent_events,
        sent_batches: stats.sent_batches,
        acked_events: stats.acked_events,
        acked_batches: stats.acked_batches,
        errors: stats.errors.clone(),
        elapsed,
        throughput: stats.acked_events as f64 / elapsed.as_secs_f64(),
        record_bytes: args.record_bytes,
    };
    drop(stats);

    if let Some(path) = &args.hgrm {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        write_hgrm(&summary.histogram, 1000.0, BufWriter::new(file))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let points = quantile_points(&summary.histogram);
        std::fs::write(path, plot_svg(&[(target, points)]))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(summary)
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

/// `(percentile, milliseconds)` points of a microsecond histogram, at the
/// same steps as its `.hgrm` output.
pub fn quantile_points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    histogram
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|step| {
            (
                step.quantile_iterated_to(),
                step.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_rate("50k"), Ok(50_000.0));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert!(parse_rate("0").is_err());
        let (transport, addr, path) = parse_target("http://localhost:8080/events").unwrap();
        assert_eq!(
            (transport, addr.as_str(), path.as_str()),
            (Transport::Http, "localhost:8080", "/events")
        );
        let (transport, addr, _) = parse_target("tcp://127.0.0.1:7000").unwrap();
        assert_eq!(
            (transport, addr.as_str()),
            (Transport::Tcp, "127.0.0.1:7000")
        );
        assert!(parse_target("udp://x:1").is_err());
    }

    #[test]
    fn the_schedule_is_fixed_and_staggered() {
        let config = ConnConfig {
            addr: String::new(),
            path: String::new(),
            mode: Mode::Open { rate: 1000.0 },
            batch: 10,
            connections: 2,
            profile: Profile::Access,
            seed: 1,
            keys: 1,
            record_bytes: 100,
            dedup: false,
            token: None,
            max_backlog: 1,
            nonce: 0xabc,
            end: Duration::from_secs(1),
            verbose: false,
        };
        // 2 connections x 10 events per batch at 1000/s: each connection
        // every 20 ms, connection 1 offset by 10 ms.
        assert_eq!(config.due(0, 0), Some(Duration::ZERO));
        assert_eq!(config.due(1, 0), Some(Duration::from_millis(10)));
        assert_eq!(config.due(0, 3), Some(Duration::from_millis(60)));
        assert_eq!(config.due(1, 49), Some(Duration::from_millis(990)));
        assert_eq!(config.due(0, 50), None);
        assert_ne!(config.batch_id(0, 1), config.batch_id(1, 1));
        assert_eq!(config.batch_id(1, 1) >> (SEQ_BITS + CONN_BITS), 0xabc);
    }

    #[test]
    fn the_command_line_parses() {
        let args = Args::try_parse_from([
            "loadgen",
            "--target",
            "tcp://127.0.0.1:1",
            "--rate",
            "10k",
            "--duration",
            "3s",
            "--profile",
            "flow",
        ])
        .unwrap();
        assert_eq!(args.rate, Some(10_000.0));
        assert_eq!(args.duration, Duration::from_secs(3));
        assert_eq!(args.profile, Profile::Flow);
        assert!(Args::try_parse_from(["loadgen", "--rate", "1"]).is_err());
    }
}
