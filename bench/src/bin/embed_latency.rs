//! Latency of weir embedded in a service (issue 7): how long after a
//! service thread pushes an event its effect is visible, and how long a
//! query of the rolling window takes, with and without push load.
//!
//! ```text
//! cargo run --release -p weir-bench --bin embed_latency -- --shards 2 --rate 1000000 --pushers 2
//! ```
//!
//! Each run measures, on fresh pipelines:
//! - **rolling window update visible**: `input` keyed over `--keys` keys →
//!   `rolling` (`--window-s` window) → a `RollingUpdate` subscription whose
//!   `on_output` callback records `unix_ns() - update.pushed_ns`
//!   (`pushed_ns` is stamped inside `try_push`, when the record is taken);
//! - **query under load**: meanwhile a third thread asks
//!   `handle.query(&rolling, At::from(key))` for random keys, paced at
//!   `--query-rate` (0: closed loop), timing each call;
//! - **query idle**: the same queries once the pushers stopped;
//! - **event visible at subscriber**: `input` → a subscription on the
//!   events themselves (`Partition::Forward`), whose callback records the
//!   time since the event's *intended* send time (carried in the value) as
//!   well as since its push stamp. The intended time counts the wait of an
//!   event whose pusher was held up (a refused push, a descheduled
//!   thread): coordinated omission is not hidden.
//!
//! Pushers are `--pushers` std threads (not runtime threads), open loop:
//! each sends its share of `--rate` on a fixed schedule, spinning until an
//! event's intended time, and pushes with `try_push`; a refusal
//! (`PushError::Full`) is counted and the push retried at once. A run
//! warms up for `--warmup` seconds, then measures for `--duration`; the
//! figures printed are medians over `--runs` runs of each run's
//! percentiles. Callbacks run on the shards' threads; each shard records
//! into its own histogram (a mutex per shard that only that shard takes
//! while the run lasts, so it is never contended).
//!
//! `--pin` pins the shards to the first `--shards` usable cores (as
//! `Runtime::builder().pin(true)` does) and the pushers and the query
//! thread to the cores after them, one each.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use weir::runtime::{owner_of, Partition, Runtime};
use weir::{At, InputOptions, PushError, QueryError, Rolling};

#[derive(Parser, Debug, Clone)]
#[command(about = "push→visible and query latency of an embedded weir pipeline")]
struct Args {
    /// Shards (runtime threads).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Events per second over all pushers.
    #[arg(long, default_value_t = 1_000_000.0)]
    rate: f64,
    /// Service threads pushing events.
    #[arg(long, default_value_t = 2)]
    pushers: usize,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Runs; the figures are medians over them.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// How long an idle shard spins before it parks
    /// (`RuntimeBuilder::low_latency`), in microseconds.
    #[arg(long, default_value_t = 200)]
    spin_us: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Rolling window length in seconds.
    #[arg(long, default_value_t = 60)]
    window_s: u64,
    /// Queries per second from the query thread; 0: closed loop.
    #[arg(long, default_value_t = 100_000.0)]
    query_rate: f64,
    /// Seconds of queries on the idle pipeline per run.
    #[arg(long, default_value_t = 2.0)]
    idle_secs: f64,
    /// Each shard's input queue, in records.
    #[arg(long, default_value_t = 16_384)]
    queue: usize,
    /// Pin the shards, and the pushers and query thread to the cores after
    /// the shards'.
    #[arg(long)]
    pin: bool,
    /// Also print one JSON line with every figure.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn check(&self) -> Result<()> {
        ensure!(self.shards >= 1, "--shards must be at least 1");
        ensure!(self.pushers >= 1, "--pushers must be at least 1");
        ensure!(self.runs >= 1, "--runs must be at least 1");
        ensure!(self.keys >= 1, "--keys must be at least 1");
        ensure!(self.window_s >= 1, "--window-s must be at least 1");
        ensure!(self.queue >= 1, "--queue must be at least 1");
        ensure!(
            self.rate.is_finite() && self.rate > 0.0,
            "--rate must be a positive number of events per second"
        );
        ensure!(
            self.query_rate.is_finite() && self.query_rate >= 0.0,
            "--query-rate must be 0 (closed loop) or a positive number of queries per second"
        );
        for (name, secs) in [
            ("--duration", self.duration),
            ("--warmup", self.warmup),
            ("--idle-secs", self.idle_secs),
        ] {
            ensure!(
                secs.is_finite() && (0.0..=3600.0).contains(&secs),
                "{name} must be between 0 and 3600 seconds"
            );
        }
        ensure!(
            self.duration > 0.0,
            "--duration must be more than 0 seconds"
        );
        Ok(())
    }
}

/// The monotonic clock, in nanoseconds since the process's first reading.
fn mono_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn secs_ns(secs: f64) -> u64 {
    (secs * 1e9) as u64
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// When a load phase's events are due, on the [`mono_ns`] clock.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// The first event is due.
    start: u64,
    /// Events due from here on are measured...
    from: u64,
    /// ...until here, when the pushers stop.
    until: u64,
    /// A pusher this far behind stops, counting what it did not send.
    give_up: u64,
}

impl Schedule {
    fn new(warmup: f64, duration: f64) -> Schedule {
        // A little slack to start the threads.
        let start = mono_ns() + 20_000_000;
        let from = start + secs_ns(warmup);
        let until = from + secs_ns(duration);
        Schedule {
            start,
            from,
            until,
            give_up: until + secs_ns(duration.max(1.0)),
        }
    }
}

/// One shard's latency samples, in nanoseconds.
struct ShardSamples {
    /// Since the push stamp (`pushed_ns`).
    from_push: Histogram<u64>,
    /// Since the intended send time (only where the record carries it).
    from_intended: Histogram<u64>,
    /// Records the callback saw, measured or not.
    seen: u64,
}

/// Latency samples of a subscription callback, one slot per shard. A
/// record is handled on the shard that owns its key (every edge is
/// `Forward`), so the callback picks the slot by [`owner_of`] and the slot's
/// mutex is only ever taken by that shard while the load runs.
struct Recorder {
    shards: Box<[Mutex<ShardSamples>]>,
}

impl Recorder {
    fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(ShardSamples {
                        from_push: histogram(),
                        from_intended: histogram(),
                        seen: 0,
                    })
                })
                .collect(),
        }
    }

    #[inline]
    fn record(&self, key: u64, from_push: Option<u64>, from_intended: Option<u64>) {
        let slot = &self.shards[owner_of(key, self.shards.len())];
        let mut samples = slot.lock().unwrap_or_else(|p| p.into_inner());
        samples.seen += 1;
        if let Some(ns) = from_push {
            samples.from_push.saturating_record(ns.max(1));
        }
        if let Some(ns) = from_intended {
            samples.from_intended.saturating_record(ns.max(1));
        }
    }

    fn seen(&self) -> u64 {
        self.shards
            .iter()
            .map(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).seen)
            .sum()
    }

    fn merged(&self) -> (Histogram<u64>, Histogram<u64>) {
        let (mut push, mut intended) = (histogram(), histogram());
        for slot in self.shards.iter() {
            let samples = slot.lock().unwrap_or_else(|p| p.into_inner());
            push.add(&samples.from_push).expect("same bounds");
            intended.add(&samples.from_intended).expect("same bounds");
        }
        (push, intended)
    }

    /// Waits until the callbacks saw `expected` records, at most 30 s;
    /// returns how many they did not see.
    fn wait_for(&self, expected: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.seen();
            if seen >= expected || Instant::now() > deadline {
                return expected.saturating_sub(seen);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What one pusher did.
#[derive(Debug, Default, Clone, Copy)]
struct PushStats {
    /// Events pushed, warm-up included.
    pushed: u64,
    /// Events due in the measured window that were pushed.
    measured: u64,
    /// `PushError::Full` refusals in the measured window (each retried).
    refused: u64,
    /// Events due in the window not sent because the pusher fell more than
    /// a window's length behind.
    unsent: u64,
    /// When it pushed its last event.
    finished: u64,
}

/// xorshift64*: cheap, good enough for picking keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn pin_to(core: Option<usize>) {
    if let Some(id) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            eprintln!("warning: could not pin a thread to core {id}");
        }
    }
}

/// Pushes pusher `index`'s share of `rate` on `schedule`: events are due
/// every `pushers / rate` seconds, staggered between pushers. Each event is
/// `(key, intended send time)`.
fn push_load(
    handle: &weir::Handle,
    input: &weir::Input<(u64, u64)>,
    args: &Args,
    index: usize,
    schedule: Schedule,
) -> Result<PushStats> {
    let interval = args.pushers as f64 * 1e9 / args.rate;
    let offset = index as f64 * 1e9 / args.rate;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((index as u64 + 1) << 32) ^ mono_ns());
    let mut stats = PushStats::default();
    let mut n = 0u64;
    loop {
        let due = schedule.start + (offset + n as f64 * interval) as u64;
        if due >= schedule.until {
            break;
        }
        let mut now = mono_ns();
        while now < due {
            std::hint::spin_loop();
            now = mono_ns();
        }
        if now > schedule.give_up {
            stats.unsent = ((schedule.until - due) as f64 / interval).ceil() as u64;
            break;
        }
        let measured = due >= schedule.from;
        let mut event = (rng.next() % args.keys, due);
        loop {
            match handle.try_push(input, event) {
                Ok(()) => break,
                Err(PushError::Full(back)) => {
                    if measured {
                        stats.refused += 1;
                    }
                    event = back;
                    std::hint::spin_loop();
                }
                Err(PushError::Closed(_)) => bail!("the pipeline closed while pushing"),
            }
        }
        stats.pushed += 1;
        if measured {
            stats.measured += 1;
        }
        n += 1;
    }
    stats.finished = mono_ns();
    Ok(stats)
}

/// Runs the pushers (pinned after the shards with `--pin`) and, if given,
/// `also` on a thread of its own; returns the pushers' stats.
fn run_pushers<R: Send>(
    handle: &weir::Handle,
    input: &weir::Input<(u64, u64)>,
    args: &Args,
    cores: &[usize],
    schedule: Schedule,
    also: Option<Box<dyn FnOnce() -> R + Send + '_>>,
) -> Result<(Vec<PushStats>, Option<R>)> {
    std::thread::scope(|scope| {
        let pushers: Vec<_> = (0..args.pushers)
            .map(|index| {
                let core = cores.get(args.shards + index).copied();
                scope.spawn(move || {
                    pin_to(core);
                    push_load(handle, input, args, index, schedule)
                })
            })
            .collect();
        let other = also.map(|also| scope.spawn(also));
        let mut stats = Vec::new();
        for pusher in pushers {
            stats.push(
                pusher
                    .join()
                    .map_err(|_| anyhow!("a pusher thread panicked"))??,
            );
        }
        let other = match other {
            Some(thread) => Some(
                thread
                    .join()
                    .map_err(|_| anyhow!("the query thread panicked"))?,
            ),
            None => None,
        };
        Ok((stats, other))
    })
}

/// What the query thread measured.
struct QueryStats {
    latency: Histogram<u64>,
    busy: u64,
}

/// Asks the rolling window about random keys from `schedule.start` to
/// `schedule.until` (paced at `--query-rate`, or back to back), timing the
/// calls due in `schedule.from..schedule.until`.
fn query_load(
    handle: &weir::Handle,
    query: &weir::Query<At, weir::RollingValue>,
    args: &Args,
    core: Option<usize>,
    schedule: Schedule,
) -> Result<QueryStats> {
    pin_to(core);
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ mono_ns());
    let mut stats = QueryStats {
        latency: histogram(),
        busy: 0,
    };
    let interval = (args.query_rate > 0.0).then(|| 1e9 / args.query_rate);
    let mut n = 0u64;
    let mut now = mono_ns();
    while now < schedule.start {
        std::hint::spin_loop();
        now = mono_ns();
    }
    loop {
        let due = match interval {
            Some(interval) => schedule.start + (n as f64 * interval) as u64,
            None => now,
        };
        if due >= schedule.until {
            break;
        }
        // Sleep through long gaps (low query rates), so an idle querier does
        // not take a core from the shards and pushers; spin the last 100 µs.
        if due > now + 200_000 {
            std::thread::sleep(Duration::from_nanos(due - now - 100_000));
            now = mono_ns();
        }
        while now < due {
            std::hint::spin_loop();
            now = mono_ns();
        }
        let key = rng.next() % args.keys;
        let started = Instant::now();
        let answer = handle.query(query, At::from(key));
        let took = started.elapsed().as_nanos() as u64;
        match answer {
            Ok(_) => {
                if due >= schedule.from {
                    stats.latency.saturating_record(took.max(1));
                }
            }
            Err(QueryError::Busy { .. }) => stats.busy += 1,
            Err(error) => bail!("query failed: {error}"),
        }
        n += 1;
        now = mono_ns();
    }
    Ok(stats)
}

fn build_runtime(args: &Args) -> Result<Runtime> {
    Runtime::builder()
        .shards(args.shards)
        .pin(args.pin)
        .low_latency(Duration::from_micros(args.spin_us))
        .build()
        .with_context(|| {
            format!(
                "cannot start {} shards (each locks about 1 MiB of io_uring memory: \
                 check `ulimit -l`, or use fewer --shards)",
                args.shards
            )
        })
}

/// Latency percentiles, in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    samples: u64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            samples: histogram.len(),
        }
    }
}

/// Push-side figures of one load phase.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    /// Events due in the window that were pushed, per second from the
    /// window's start to the last push.
    rate: f64,
    refused: u64,
    unsent: u64,
    /// Pushed events no callback saw within 30 s of the end.
    undelivered: u64,
}

impl Load {
    fn of(stats: &[PushStats], schedule: Schedule, undelivered: u64) -> Load {
        let measured: u64 = stats.iter().map(|s| s.measured).sum();
        let last = stats.iter().map(|s| s.finished).max().unwrap_or(0);
        let span = last
            .max(schedule.until)
            .saturating_sub(schedule.from)
            .max(1);
        Load {
            rate: measured as f64 * 1e9 / span as f64,
            refused: stats.iter().map(|s| s.refused).sum(),
            unsent: stats.iter().map(|s| s.unsent).sum(),
            undelivered,
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Copy, Default)]
struct RunFigures {
    rolling_visible: Percentiles,
    rolling_load: Load,
    query_under_load: Percentiles,
    query_under_load_busy: u64,
    query_idle: Percentiles,
    query_idle_busy: u64,
    event_visible_intended: Percentiles,
    event_visible_pushed: Percentiles,
    event_load: Load,
}

/// The rolling window pipeline: update latency, and queries under load
/// and idle.
fn run_rolling(args: &Args, cores: &[usize], figures: &mut RunFigures) -> Result<()> {
    let mut pipeline = weir::Pipeline::new(build_runtime(args)?);
    let input = pipeline.input_with(
        "events",
        InputOptions::default().queue_capacity(args.queue),
        |event: &(u64, u64)| event.0,
    );
    let window = pipeline.rolling(
        "window",
        &input,
        Rolling::count(Duration::from_secs(args.window_s)),
    );
    let updates =
        pipeline.subscription::<weir::RollingUpdate>("updates", window.name(), Partition::Forward);
    let service = pipeline.start().context("starting the rolling pipeline")?;
    let handle = service.handle();

    let schedule = Schedule::new(args.warmup, args.duration);
    // `pushed_ns` is on the wall clock: measure updates of events pushed
    // from the window's start on (the pushers stop at its end).
    let from_unix = weir::unix_ns() + (schedule.from - mono_ns());
    let recorder = Arc::new(Recorder::new(args.shards));
    let samples = recorder.clone();
    handle.on_output(&updates, move |update| {
        let now = weir::unix_ns();
        let pushed = update.pushed_ns.to_native();
        let measured = (pushed >= from_unix).then(|| now.saturating_sub(pushed));
        samples.record(update.key.to_native(), measured, None);
    });

    let query_core = cores.get(args.shards + args.pushers).copied();
    let querier = {
        let (handle, window) = (&handle, &window);
        Box::new(move || query_load(handle, window, args, query_core, schedule))
            as Box<dyn FnOnce() -> Result<QueryStats> + Send + '_>
    };
    let (stats, queries) = run_pushers(&handle, &input, args, cores, schedule, Some(querier))?;
    let queries = queries.expect("the query thread ran")?;
    let pushed: u64 = stats.iter().map(|s| s.pushed).sum();
    let undelivered = recorder.wait_for(pushed);
    figures.rolling_visible = Percentiles::of(&recorder.merged().0);
    figures.rolling_load = Load::of(&stats, schedule, undelivered);
    figures.query_under_load = Percentiles::of(&queries.latency);
    figures.query_under_load_busy = queries.busy;

    // The same queries on the idle pipeline (its state still holds the
    // keys). A short pause first, so the shards are idle.
    std::thread::sleep(Duration::from_millis(50));
    let idle = Schedule::new(0.0, args.idle_secs.max(0.01));
    let idle_stats = std::thread::scope(|scope| {
        scope
            .spawn(|| query_load(&handle, &window, args, query_core, idle))
            .join()
            .map_err(|_| anyhow!("the query thread panicked"))?
    })?;
    figures.query_idle = Percentiles::of(&idle_stats.latency);
    figures.query_idle_busy = idle_stats.busy;
    service
        .shutdown()
        .context("shutting the rolling pipeline down")?;
    Ok(())
}

/// The pass-through pipeline: events at a subscriber, timed from their
/// intended send time and from their push stamp.
fn run_forward(args: &Args, cores: &[usize], figures: &mut RunFigures) -> Result<()> {
    let mut pipeline = weir::Pipeline::new(build_runtime(args)?);
    let input = pipeline.input_with(
        "events",
        InputOptions::default().queue_capacity(args.queue),
        |event: &(u64, u64)| event.0,
    );
    let events =
        pipeline.subscription::<weir::Event<(u64, u64)>>("seen", input.name(), Partition::Forward);
    let service = pipeline
        .start()
        .context("starting the pass-through pipeline")?;
    let handle = service.handle();

    let schedule = Schedule::new(args.warmup, args.duration);
    let recorder = Arc::new(Recorder::new(args.shards));
    let samples = recorder.clone();
    handle.on_output(&events, move |event| {
        let (now, unix_now) = (mono_ns(), weir::unix_ns());
        let due = event.value.1.to_native();
        if (schedule.from..schedule.until).contains(&due) {
            samples.record(
                event.key.to_native(),
                Some(unix_now.saturating_sub(event.pushed_ns.to_native())),
                Some(now.saturating_sub(due)),
            );
        } else {
            samples.record(event.key.to_native(), None, None);
        }
    });
    let (stats, _) = run_pushers::<()>(&handle, &input, args, cores, schedule, None)?;
    let pushed: u64 = stats.iter().map(|s| s.pushed).sum();
    let undelivered = recorder.wait_for(pushed);
    let (from_push, from_intended) = recorder.merged();
    figures.event_visible_pushed = Percentiles::of(&from_push);
    figures.event_visible_intended = Percentiles::of(&from_intended);
    figures.event_load = Load::of(&stats, schedule, undelivered);
    service
        .shutdown()
        .context("shutting the pass-through pipeline down")?;
    Ok(())
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_percentiles(runs: &[Percentiles]) -> Percentiles {
    Percentiles {
        p50: median_u64(runs.iter().map(|p| p.p50).collect()),
        p99: median_u64(runs.iter().map(|p| p.p99).collect()),
        p999: median_u64(runs.iter().map(|p| p.p999).collect()),
        max: median_u64(runs.iter().map(|p| p.max).collect()),
        samples: median_u64(runs.iter().map(|p| p.samples).collect()),
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn row(name: &str, p: &Percentiles, extra: &str) {
    println!(
        "{name:<42} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10}  {extra}",
        us(p.p50),
        us(p.p99),
        us(p.p999),
        us(p.max),
        p.samples
    );
}

fn percentiles_json(p: &Percentiles) -> serde_json::Value {
    serde_json::json!({
        "p50_us": us(p.p50), "p99_us": us(p.p99), "p999_us": us(p.p999),
        "max_us": us(p.max), "samples": p.samples,
    })
}

fn load_json(runs: &[Load]) -> serde_json::Value {
    serde_json::json!({
        "rate_per_s": median_f64(runs.iter().map(|l| l.rate).collect()),
        "refused": median_u64(runs.iter().map(|l| l.refused).collect()),
        "unsent": median_u64(runs.iter().map(|l| l.unsent).collect()),
        "undelivered": median_u64(runs.iter().map(|l| l.undelivered).collect()),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.check()?;
    mono_ns();
    let usable: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    let cores = if args.pin {
        let needed = args.shards + args.pushers + 1;
        if usable.len() < needed {
            bail!(
                "--pin needs a core for each of {} shards, {} pushers and the query thread \
                 ({needed}), but this process may use {} cores",
                args.shards,
                args.pushers,
                usable.len()
            );
        }
        usable.clone()
    } else {
        Vec::new()
    };
    eprintln!(
        "embed_latency: {} shards, {} pushers, {} events/s, {} keys, {} s window, \
         {} s warm-up + {} s measured, {} runs, spin {} µs, queries {}, pin {}, {} usable cores",
        args.shards,
        args.pushers,
        args.rate,
        args.keys,
        args.window_s,
        args.warmup,
        args.duration,
        args.runs,
        args.spin_us,
        if args.query_rate > 0.0 {
            format!("{}/s", args.query_rate)
        } else {
            "closed loop".to_string()
        },
        args.pin,
        usable.len()
    );
    let mut runs = Vec::with_capacity(args.runs);
    for run in 0..args.runs {
        let mut figures = RunFigures::default();
        run_rolling(&args, &cores, &mut figures)?;
        run_forward(&args, &cores, &mut figures)?;
        eprintln!(
            "run {}: rolling p50/p99/p99.9 {:.1}/{:.1}/{:.1} µs at {:.0}/s ({} refused); \
             event (intended) {:.1}/{:.1}/{:.1} µs at {:.0}/s ({} refused); \
             query load {:.1}/{:.1} µs, idle {:.1}/{:.1} µs",
            run + 1,
            us(figures.rolling_visible.p50),
            us(figures.rolling_visible.p99),
            us(figures.rolling_visible.p999),
            figures.rolling_load.rate,
            figures.rolling_load.refused,
            us(figures.event_visible_intended.p50),
            us(figures.event_visible_intended.p99),
            us(figures.event_visible_intended.p999),
            figures.event_load.rate,
            figures.event_load.refused,
            us(figures.query_under_load.p50),
            us(figures.query_under_load.p99),
            us(figures.query_idle.p50),
            us(figures.query_idle.p99),
        );
        runs.push(figures);
    }

    let pick = |f: fn(&RunFigures) -> Percentiles| -> Percentiles {
        median_percentiles(&runs.iter().map(f).collect::<Vec<_>>())
    };
    let rolling = pick(|r| r.rolling_visible);
    let intended = pick(|r| r.event_visible_intended);
    let pushed = pick(|r| r.event_visible_pushed);
    let query_load = pick(|r| r.query_under_load);
    let query_idle = pick(|r| r.query_idle);
    let rolling_loads: Vec<Load> = runs.iter().map(|r| r.rolling_load).collect();
    let event_loads: Vec<Load> = runs.iter().map(|r| r.event_load).collect();
    let rate = |loads: &[Load]| median_f64(loads.iter().map(|l| l.rate).collect());
    let refused = |loads: &[Load]| median_u64(loads.iter().map(|l| l.refused).collect());
    let query_busy = median_u64(runs.iter().map(|r| r.query_under_load_busy).collect());

    println!(
        "medians of {} runs (µs){:>10} {:>10} {:>10} {:>10} {:>10}",
        runs.len(),
        "p50",
        "p99",
        "p99.9",
        "max",
        "samples"
    );
    row(
        "rolling window update visible (push stamp)",
        &rolling,
        &format!(
            "{:.0} ev/s achieved, {} refused",
            rate(&rolling_loads),
            refused(&rolling_loads)
        ),
    );
    row(
        "event visible at subscriber (intended)",
        &intended,
        &format!(
            "{:.0} ev/s achieved, {} refused",
            rate(&event_loads),
            refused(&event_loads)
        ),
    );
    row("event visible at subscriber (push stamp)", &pushed, "");
    row(
        "query under load",
        &query_load,
        &format!("{query_busy} busy"),
    );
    row("query idle", &query_idle, "");
    let problems: u64 = runs
        .iter()
        .flat_map(|r| [r.rolling_load, r.event_load])
        .map(|l| l.unsent + l.undelivered)
        .sum();
    if problems > 0 {
        println!(
            "warning: over all runs {} events were not sent (pushers fell too far behind) \
             or not delivered",
            problems
        );
    }

    if args.json {
        let line = serde_json::json!({
            "bench": "embed_latency",
            "shards": args.shards,
            "pushers": args.pushers,
            "rate": args.rate,
            "keys": args.keys,
            "window_s": args.window_s,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "runs": runs.len(),
            "spin_us": args.spin_us,
            "query_rate": args.query_rate,
            "pin": args.pin,
            "usable_cores": usable.len(),
            "rolling_update_visible": percentiles_json(&rolling),
            "rolling_load": load_json(&rolling_loads),
            "event_visible_intended": percentiles_json(&intended),
            "event_visible_pushed": percentiles_json(&pushed),
            "event_load": load_json(&event_loads),
            "query_under_load": percentiles_json(&query_load),
            "query_under_load_busy": query_busy,
            "query_idle": percentiles_json(&query_idle),
        });
        println!("{line}");
    }
    Ok(())
}
