//! `weir demo`: the runtime and the load generator in one process.
//!
//! Starts a built-in pipeline — durable `tcp` ingest → per-key counts per
//! second (a keyed tumbling window) → NDJSON files, exactly-once under a
//! data directory — then drives `weir loadgen` against it open-loop for the
//! given duration, stops the pipeline gracefully and reports:
//! - the load generator's table: acknowledgement latency from each batch's
//!   intended send time (coordinated-omission free), throughput, errors;
//! - the runtime's own latency histograms: ingest→processed (the window
//!   counted the event) and ingest→committed (its epoch committed), read
//!   from the metrics registry;
//! - where the `.hgrm`, interval log, SVG plot and window counts were
//!   written.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use weir::operators::config::{build_graph_named, parse};
use weir::runtime::Runtime;

/// Options of `weir demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Events per second the load generator offers (open loop).
    #[arg(long, default_value = "1M", value_parser = weir_loadgen::parse_rate)]
    rate: f64,
    /// How long load is measured, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = weir_loadgen::parse_duration)]
    duration: Duration,
    /// Load before measuring starts.
    #[arg(long, default_value = "2s", value_parser = weir_loadgen::parse_duration)]
    warmup: Duration,
    /// Shards; by default one per usable core.
    #[arg(long)]
    shards: Option<usize>,
    /// Where the data directory, the output and the latency files go
    /// (cleared first).
    #[arg(long, default_value = "weir-demo")]
    dir: PathBuf,
    /// Serve the pipeline's metrics (and `/tap`) here while it runs, e.g.
    /// `127.0.0.1:9898`, for `weir top --url http://127.0.0.1:9898`.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// The load generator's options, parsed from the arguments the demo makes.
#[derive(clap::Parser, Debug)]
struct LoadgenArgv {
    #[command(flatten)]
    args: weir_loadgen::Args,
}

fn pipeline(port: u16, out: &std::path::Path) -> String {
    format!(
        r#"
[runtime]
epoch_interval_ms = 100

[sources.events]
type = "tcp"
listen = "127.0.0.1:{port}"

[processors.per_second]
type = "window"
inputs = ["events"]
size_ms = 1000
group_by = "key"
aggregates = ["count"]

[sinks.counts]
type = "file"
inputs = ["per_second"]
path = "{}"
format = "ndjson"
"#,
        out.display()
    )
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    let dir = &args.dir;
    for sub in ["data", "out"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot clear {}", path.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("cannot find a free port")?
        .port();
    let out = dir.join("out");
    let config = parse(&pipeline(port, &out), "demo.toml").context("the demo pipeline")?;
    let graph = build_graph_named(&config, "demo.toml").context("the demo pipeline")?;
    let mut builder = Runtime::builder()
        .data_dir(dir.join("data"))
        .epoch_interval(Duration::from_millis(100));
    if let Some(shards) = args.shards {
        builder = builder.shards(shards);
    }
    if let Some(addr) = args.metrics_listen {
        builder = builder.metrics_listen(addr).tap(false);
    }
    let runtime = builder.build()?;
    println!(
        "weir demo: {} shards; tcp ingest on 127.0.0.1:{port} -> per-key counts per second -> {}",
        runtime.shards(),
        out.display()
    );
    let running = runtime.start(graph)?;

    let files = ["latency.hgrm", "latency.hlog", "latency.svg"].map(|name| dir.join(name));
    let rate = format!("{}", args.rate);
    let target = format!("tcp://127.0.0.1:{port}");
    let duration = format!("{}ms", args.duration.as_millis());
    let warmup = format!("{}ms", args.warmup.as_millis());
    let mut argv: Vec<String> = [
        "loadgen",
        "--target",
        &target,
        "--rate",
        &rate,
        "--duration",
        &duration,
        "--warmup",
        &warmup,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    for (flag, path) in ["--hgrm", "--interval-log", "--plot"].iter().zip(&files) {
        argv.push(flag.to_string());
        argv.push(path.display().to_string());
    }
    let loadgen = <LoadgenArgv as clap::Parser>::try_parse_from(&argv)
        .context("the demo's load generator options")?;
    let summary = weir_loadgen::run(loadgen.args);
    running.handle().shutdown();
    let report = running.wait()?;
    let summary = summary?;

    println!();
    print!("{summary}");
    println!();
    let metrics = runtime.metrics().render();
    println!("runtime latency (ms, from acceptance by the ingest source)");
    let mut table = String::new();
    for (label, name) in [
        ("ingest -> processed", "weir_ingest_to_processed_seconds"),
        ("ingest -> committed", "weir_ingest_to_committed_seconds"),
    ] {
        let buckets = buckets(&metrics, name);
        let count = buckets.last().map_or(0.0, |&(_, count)| count);
        if count == 0.0 {
            bail!("the runtime recorded no `{name}`: no event reached it");
        }
        let _ = write!(table, "  {label:<20}");
        for q in [0.5, 0.99, 0.999] {
            let value = quantile(&buckets, q) * 1000.0;
            let _ = write!(table, "  p{:<5} {value:>9.3}", q * 100.0);
        }
        let _ = writeln!(table, "  ({count} events)");
    }
    print!("{table}");
    println!(
        "  (estimated from the Prometheus histogram buckets: each value is within its bucket)"
    );
    println!();
    println!(
        "committed epochs: {} (last {}), run time {:.1} s",
        report.epoch_commit_latencies.len(),
        report.last_committed_epoch,
        report.elapsed.as_secs_f64()
    );
    println!("percentile distribution: {}", files[0].display());
    println!("interval log (1 s):      {}", files[1].display());
    println!("latency plot:            {}", files[2].display());
    println!("window counts:           {}/*.ndjson", out.display());
    Ok(())
}

/// The cumulative buckets `(upper bound, count)` of histogram `name` in a
/// Prometheus text rendering, summed over its label sets, in order.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut sums: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|line| line.starts_with(&prefix)) {
        let Some(le_at) = line.find("le=\"") else {
            continue;
        };
        let rest = &line[le_at + 4..];
        let Some(end) = rest.find('"') else { continue };
        let bound = match &rest[..end] {
            "+Inf" => f64::INFINITY,
            other => other.parse().unwrap_or(f64::NAN),
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0);
        match sums.iter_mut().find(|(b, _)| *b == bound) {
            Some(entry) => entry.1 += count,
            None => sums.push((bound, count)),
        }
    }
    sums.sort_by(|a, b| a.0.total_cmp(&b.0));
    sums
}

/// Prometheus' `histogram_quantile`: linear interpolation inside the bucket
/// that holds quantile `q`.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |&(_, count)| count);
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return lower.0;
            }
            let within = count - lower.1;
            let fraction = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return lower.0 + (bound - lower.0) * fraction;
        }
        lower = (bound, count);
    }
    lower.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let text = "\
x_bucket{component=\"a\",le=\"0.001\"} 50
x_bucket{component=\"a\",le=\"0.002\"} 100
x_bucket{component=\"a\",le=\"+Inf\"} 100
x_bucket{component=\"b\",le=\"0.001\"} 0
x_bucket{component=\"b\",le=\"0.002\"} 100
x_bucket{component=\"b\",le=\"+Inf\"} 100
";
        let buckets = buckets(text, "x");
        assert_eq!(
            buckets,
            vec![(0.001, 50.0), (0.002, 200.0), (f64::INFINITY, 200.0)]
        );
        assert!((quantile(&buckets, 0.25) - 0.001).abs() < 1e-12);
        assert!((quantile(&buckets, 0.5) - (0.001 + 0.001 * 50.0 / 150.0)).abs() < 1e-12);
        assert!((quantile(&buckets, 1.0) - 0.002).abs() < 1e-12);
    }
}
