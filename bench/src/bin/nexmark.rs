//! Nexmark throughput: each query of `bench/nexmark/` runs over N events on
//! S shards, alternating with the source alone (the same events into a
//! `blackhole`), and prints events per second per shard.
//!
//! ```text
//! cargo run --release -p weir-bench --bin nexmark -- --events 10000000 --shards 2 --runs 5
//! ```
//!
//! Each query's file is read as `weir run` reads it, with `WEIR_SHARDS`,
//! `NEXMARK_EVENTS` and `NEXMARK_EVENTS_PER_SECOND` set from the options,
//! and every sink replaced by a `blackhole` reading the same inputs, so the
//! figure is the query's own cost (generation included, as in Flink's
//! Nexmark), not a file system's. Events per second counts every generated
//! event (people, auctions and bids) over the wall time from the start of
//! the run to its end. The event-time rate defaults to 10 M/s, the rate of
//! Flink's published Nexmark runs. Without `--data-dir` there are no
//! epochs; with it, every run is exactly-once on a fresh data directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use weir_operators::config;
use weir_runtime::Runtime;

#[derive(Parser, Debug)]
#[command(about = "events/s per shard of the Nexmark queries, beside the source alone")]
struct Args {
    /// Queries, as `NAME` of `bench/nexmark/NAME.toml`; default: every
    /// `q*.toml`.
    queries: Vec<String>,
    /// Events per run (people, auctions and bids).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Events per second of event time.
    #[arg(long, default_value_t = 10_000_000)]
    events_per_second: u64,
    /// Shards to run on.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Runs of each query and of the source alone; medians are over these.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where the query files are.
    #[arg(long, default_value = "bench/nexmark")]
    dir: PathBuf,
    /// Do not pin shards to cores.
    #[arg(long)]
    no_pin: bool,
    /// Run exactly-once: each run gets a fresh data directory under this
    /// one, deleted after it.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The source alone: every event into a blackhole.
const SOURCE_ONLY: &str = r#"
[runtime]
shards = ${WEIR_SHARDS}

[sources.nexmark]
type = "nexmark"
count = ${NEXMARK_EVENTS}
events_per_second = ${NEXMARK_EVENTS_PER_SECOND}

[sinks.bids]
type = "blackhole"
inputs = ["nexmark.bid"]

[sinks.auctions]
type = "blackhole"
inputs = ["nexmark.auction"]

[sinks.people]
type = "blackhole"
inputs = ["nexmark.person"]
"#;

/// `text` (a pipeline file, variables substituted) with every sink
/// replaced by a blackhole reading its inputs.
fn with_blackholes(text: &str, file: &str) -> Result<String> {
    let mut value: toml::Table = toml::from_str(text).with_context(|| file.to_owned())?;
    if let Some(toml::Value::Table(sinks)) = value.get_mut("sinks") {
        for (_, sink) in sinks.iter_mut() {
            let inputs = sink
                .get("inputs")
                .cloned()
                .ok_or_else(|| anyhow!("{file}: a sink without `inputs`"))?;
            let mut blackhole = toml::Table::new();
            blackhole.insert("type".into(), "blackhole".into());
            blackhole.insert("inputs".into(), inputs);
            *sink = toml::Value::Table(blackhole);
        }
    }
    Ok(toml::to_string(&value)?)
}

/// One run of `text` (named `file`): its seconds.
fn run_once(text: &str, file: &str, args: &Args) -> Result<f64> {
    let text = config::env::substitute(text, file, |name| std::env::var(name).ok())
        .map_err(|errors| anyhow!("{}", errors[0]))?;
    let text = with_blackholes(&text, file)?;
    let config = config::parse_all(&text, file).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow!(lines.join("\n"))
    })?;
    let graph = config::build_graph_named(&config, file)?;
    let mut builder = Runtime::builder().shards(args.shards).pin(!args.no_pin);
    let run_dir = args
        .data_dir
        .as_ref()
        .map(|dir| dir.join(format!("nexmark-{}", std::process::id())));
    if let Some(run_dir) = &run_dir {
        let _ = std::fs::remove_dir_all(run_dir);
        builder = builder.data_dir(run_dir);
    }
    let runtime = builder.build().context("starting the runtime")?;
    let start = Instant::now();
    runtime.run(graph).context("running the pipeline")?;
    let seconds = start.elapsed().as_secs_f64();
    drop(runtime);
    if let Some(run_dir) = run_dir {
        std::fs::remove_dir_all(run_dir)?;
    }
    Ok(seconds)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn queries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".toml") {
            if stem.starts_with('q') {
                names.push(stem.to_owned());
            }
        }
    }
    // q0, q1, q2, ..., q11 in number order.
    names.sort_by_key(|name| (name.len(), name.clone()));
    Ok(names)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 || args.shards == 0 || args.events == 0 {
        bail!("--runs, --shards and --events must be positive");
    }
    std::env::set_var("WEIR_SHARDS", args.shards.to_string());
    std::env::set_var("NEXMARK_EVENTS", args.events.to_string());
    std::env::set_var(
        "NEXMARK_EVENTS_PER_SECOND",
        args.events_per_second.to_string(),
    );
    let names = if args.queries.is_empty() {
        queries(&args.dir)?
    } else {
        args.queries.clone()
    };
    let per_shard = |seconds: f64| args.events as f64 / seconds / args.shards as f64;
    let mut summary = Vec::new();
    for name in &names {
        let path = args.dir.join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let file = path.display().to_string();
        let (mut rates, mut source_rates) = (Vec::new(), Vec::new());
        for run in 0..args.runs {
            // Alternate which goes first, so drift hits both alike.
            let order = if run % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for source_only in order {
                let seconds = if source_only {
                    run_once(SOURCE_ONLY, "source-only.toml", &args)?
                } else {
                    run_once(&text, &file, &args)?
                };
                let rate = per_shard(seconds);
                println!(
                    "{name:<4} run {run} {:<6} {} events {seconds:>7.3} s {:>8.3} M ev/s/shard",
                    if source_only { "source" } else { "query" },
                    args.events,
                    rate / 1e6
                );
                if source_only {
                    source_rates.push(rate);
                } else {
                    rates.push(rate);
                }
            }
        }
        summary.push((name.clone(), median(&mut rates), median(&mut source_rates)));
    }
    println!(
        "\nmedians of {} runs, {} events, {} shards, {} events/s of event time{}:",
        args.runs,
        args.events,
        args.shards,
        args.events_per_second,
        if args.data_dir.is_some() {
            ", exactly-once"
        } else {
            ""
        }
    );
    println!("| query | events/s per shard | source alone, per shard | query / source |");
    println!("|---|---:|---:|---:|");
    for (name, rate, source) in summary {
        println!(
            "| {name} | {:.0} K | {:.0} K | {:.2} |",
            rate / 1e3,
            source / 1e3,
            rate / source
        );
    }
    Ok(())
}
