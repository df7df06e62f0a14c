//! Throughput of config-driven pipelines: each named pipeline file in
//! `bench/pipelines/` runs to completion (its generator is bounded) several
//! times, alternating with a baseline pipeline that only generates the same
//! events into a `blackhole`, so the cost of the processors shows as the
//! ratio of the two rates measured side by side.
//!
//! ```text
//! cargo run --release -p weir-bench --bin pipelines -- --shards 2 --runs 5
//! ```
//!
//! Rates are events generated per second of wall time (from start to the
//! end of the bounded run), overall and per shard; the medians over the
//! runs are printed last. Without `--data-dir` the runtime runs without
//! epochs (no write-ahead log, file sinks only stage); with it, every run
//! is exactly-once on a fresh data directory, and each run also prints
//! its longest snapshot: the longest time one node instance spent taking
//! and logging its snapshot at a barrier, its shard processing nothing
//! else meanwhile (`RunReport::longest_snapshot`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use weir_operators::config::{self, PipelineConfig};
use weir_runtime::Runtime;

#[derive(Parser, Debug)]
#[command(about = "events/s of config-driven pipelines, each beside its baseline")]
struct Args {
    /// Shards to run on.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Runs of each pipeline and baseline; medians are over these.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Pipelines to run, as `NAME` of `bench/pipelines/NAME.toml` (each
    /// with `NAME.baseline.toml` beside it); default: all.
    names: Vec<String>,
    /// Where the pipeline files are.
    #[arg(long, default_value = "bench/pipelines")]
    dir: PathBuf,
    /// Do not pin shards to cores.
    #[arg(long)]
    no_pin: bool,
    /// Run every pipeline exactly-once: each run gets a fresh data
    /// directory (write-ahead log, epochs, committed sink output) under
    /// this directory, and `WEIR_BENCH_OUT` (where file sinks write) points
    /// into it; both are deleted after the run.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The events a run generates: the sum of its generators' `count`.
fn events_of(config: &PipelineConfig) -> Result<u64> {
    let text = toml::to_string(config)?;
    let value: toml::Value = toml::from_str(&text)?;
    let mut events = 0;
    for (name, source) in value
        .get("sources")
        .and_then(toml::Value::as_table)
        .into_iter()
        .flatten()
    {
        let count = source
            .get("count")
            .and_then(toml::Value::as_integer)
            .ok_or_else(|| anyhow!("sources.{name} needs a `count`: runs must be bounded"))?;
        events += count as u64;
    }
    Ok(events)
}

/// One run: the events generated, the seconds it took, and its longest
/// snapshot.
fn run_once(
    path: &Path,
    shards: usize,
    pin: bool,
    data_dir: Option<&Path>,
) -> Result<(u64, f64, Duration)> {
    let run_dir = match data_dir {
        Some(dir) => {
            let run_dir = dir.join(format!("run-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&run_dir);
            std::fs::create_dir_all(&run_dir)?;
            // Read by the pipeline files' `${WEIR_BENCH_OUT}` when loaded.
            std::env::set_var("WEIR_BENCH_OUT", run_dir.join("out"));
            Some(run_dir)
        }
        None => None,
    };
    let config = config::load_all(path).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow!(lines.join("\n"))
    })?;
    let events = events_of(&config)?;
    let graph = config::build_graph_named(&config, &path.display().to_string())?;
    let mut builder = Runtime::builder().shards(shards).pin(pin);
    if let Some(run_dir) = &run_dir {
        builder = builder.data_dir(run_dir.join("data"));
    }
    let runtime = builder.build().context("starting the runtime")?;
    let start = Instant::now();
    let report = runtime.run(graph).context("running the pipeline")?;
    let seconds = start.elapsed().as_secs_f64();
    drop(runtime);
    if let Some(run_dir) = run_dir {
        std::fs::remove_dir_all(run_dir)?;
    }
    Ok((events, seconds, report.longest_snapshot))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 || args.shards == 0 {
        bail!("--runs and --shards must be positive");
    }
    let mut names = args.names.clone();
    if names.is_empty() {
        for entry in std::fs::read_dir(&args.dir).with_context(|| args.dir.display().to_string())? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".toml") {
                if !stem.ends_with(".baseline") {
                    names.push(stem.to_owned());
                }
            }
        }
        names.sort();
    }
    let mut summary = Vec::new();
    for name in &names {
        let pipeline = args.dir.join(format!("{name}.toml"));
        let baseline = args.dir.join(format!("{name}.baseline.toml"));
        let (mut rates, mut base_rates) = (Vec::new(), Vec::new());
        for run in 0..args.runs {
            // Alternate which goes first, so drift hits both alike.
            let order = if run % 2 == 0 {
                [(&pipeline, false), (&baseline, true)]
            } else {
                [(&baseline, true), (&pipeline, false)]
            };
            for (path, is_baseline) in order {
                let (events, seconds, longest) =
                    run_once(path, args.shards, !args.no_pin, args.data_dir.as_deref())?;
                let rate = events as f64 / seconds;
                let snapshot = if args.data_dir.is_some() {
                    format!(" longest snapshot {:.1} ms", longest.as_secs_f64() * 1e3)
                } else {
                    String::new()
                };
                println!(
                    "{name:<16} run {run} {:<8} {events:>10} events {seconds:>7.3} s {:>8.3} M ev/s {:>8.3} M ev/s/shard{snapshot}",
                    if is_baseline { "baseline" } else { "pipeline" },
                    rate / 1e6,
                    rate / 1e6 / args.shards as f64
                );
                if is_baseline {
                    base_rates.push(rate);
                } else {
                    rates.push(rate);
                }
            }
        }
        let (rate, base) = (median(&mut rates), median(&mut base_rates));
        summary.push((name.clone(), rate, base));
    }
    println!("\nmedians over {} runs, {} shards:", args.runs, args.shards);
    println!("| pipeline | events/s | per shard | baseline (generator → blackhole) per shard | pipeline / baseline |");
    println!("|---|---|---|---|---|");
    for (name, rate, base) in summary {
        println!(
            "| {name} | {:.3} M | {:.3} M | {:.3} M | {:.2} |",
            rate / 1e6,
            rate / 1e6 / args.shards as f64,
            base / 1e6 / args.shards as f64,
            rate / base
        );
    }
    Ok(())
}
