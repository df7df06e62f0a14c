//! Goal: a `window` with `quantile` aggregates (issue 22) gives latency
//! percentiles within their stated relative error of the exact ones, per
//! group, through `weir run` with two shards (groups spread over both),
//! and the same again from a run stopped half-way and restarted on its
//! data directory (the sketches restored from the snapshot).
//!
//! Method: the `weir` binary runs a pipeline file (a `file` source tailing
//! NDJSON latencies → window → NDJSON file sink); a run is stopped with
//! SIGTERM once the window has taken every row written so far (read from
//! its metrics), with `--drain` when the windows are to fire; the exact
//! percentiles are computed here from the same values.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{free_port, published_rows, scratch, wait_for, Rng, Weir};

const SERVICES: [&str; 4] = ["api", "auth", "cart", "search"];
const QS: [(f64, &str); 3] = [
    (0.5, "p50_latency_ms"),
    (0.95, "p95_latency_ms"),
    (0.99, "p99_latency_ms"),
];
const ERROR: f64 = 0.01;

fn pipeline(input: &std::path::Path, out: &std::path::Path, admin: u16) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 20
metrics_listen = "127.0.0.1:{admin}"

[sources.requests]
type = "file"
path = "{input}"
format = "ndjson"
schema = {{ ts = "timestamp", service = "string", latency_ms = "float" }}
time_field = "ts"
follow = true

[processors.latency]
type = "window"
inputs = ["requests"]
size = "1h"
time_field = "ts"
group_by = ["service"]
aggregates = ["count", {{ fn = "quantile", field = "latency_ms", q = [0.5, 0.95, 0.99], error = {ERROR} }}]

[sinks.out]
type = "file"
inputs = ["latency"]
path = "{out}"
roll_interval = "0s"
format = "ndjson"
"#,
        input = input.display(),
        out = out.display(),
    )
}

/// Rows the window took in this process, from its metrics.
fn window_rows(admin: u16) -> u64 {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{admin}/metrics"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            line.starts_with("weir_component_events_in_total{")
                && line.contains("component=\"latency\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Runs the pipeline until its window has taken `rows` rows, then stops it
/// (firing the open windows with `drain`).
fn run_until(config: &std::path::Path, data: &std::path::Path, admin: u16, rows: u64, drain: bool) {
    let args: &[&str] = if drain { &["--drain"] } else { &[] };
    let weir = Weir::start(config, data, args, &[]);
    wait_for("the window's rows", Duration::from_secs(60), || {
        window_rows(admin) >= rows
    });
    weir.terminate();
    let (status, log) = weir.exit_within(Duration::from_secs(60));
    assert!(status.success(), "the stop failed: {log}");
}

/// The value at rank `floor(q * (n - 1))` of the sorted values.
fn exact(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(q * (values.len() as f64 - 1.0)) as usize]
}

#[test]
fn percentiles_are_within_their_error_per_group_and_across_a_restart() {
    const N: usize = 200_000;
    let root = scratch();
    let mut rng = Rng(11);
    let mut by_service: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut lines = Vec::with_capacity(N);
    for i in 0..N {
        let service = SERVICES[(rng.next() % 4) as usize];
        // 1 ms to 10 s, skewed: a heavy tail, as latencies have.
        let exponent = (rng.next() % 1_000_000) as f64 / 1_000_000.0 * 4.0;
        let latency = (10f64.powf(exponent) * 1000.0).round() / 1000.0;
        by_service.entry(service).or_default().push(latency);
        lines.push(format!(
            "{{\"ts\":\"2026-12-07T10:{:02}:{:02}.000Z\",\"service\":\"{service}\",\"latency_ms\":{latency}}}\n",
            i * 59 / N,
            i % 60
        ));
    }
    let half = N / 2;

    for restart in [false, true] {
        let out = root.path().join(format!("out-{restart}"));
        let data = root.path().join(format!("data-{restart}"));
        let input = root.path().join(format!("requests-{restart}.ndjson"));
        let config = root.path().join("pipeline.toml");
        let admin = free_port();
        std::fs::write(&config, pipeline(&input, &out, admin)).expect("config");
        if restart {
            // The first half, then a stop (a savepoint: the windows stay
            // open in it); the second half appended, then a restart that
            // restores the sketches and fires the windows at its stop.
            std::fs::write(&input, lines[..half].concat()).expect("input");
            run_until(&config, &data, admin, half as u64, false);
            assert!(published_rows(&out).is_empty(), "no window fired yet");
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&input)
                .expect("input");
            std::io::Write::write_all(&mut file, lines[half..].concat().as_bytes())
                .expect("append");
            run_until(&config, &data, admin, (N - half) as u64, true);
        } else {
            std::fs::write(&input, lines.concat()).expect("input");
            run_until(&config, &data, admin, N as u64, true);
        }

        let rows = published_rows(&out);
        assert_eq!(rows.len(), SERVICES.len(), "{rows:?}");
        for row in rows {
            let service = row["service"].as_str().expect("service");
            let values = by_service.get_mut(service).expect("a known service");
            assert_eq!(row["count"].as_u64(), Some(values.len() as u64));
            for (q, column) in QS {
                let truth = exact(values, q);
                let estimate = row[column].as_f64().expect("a float");
                let relative = (estimate - truth).abs() / truth;
                assert!(
                    relative <= ERROR,
                    "restart {restart}, {service} q {q}: {estimate} vs exact {truth} ({relative})"
                );
            }
        }
    }
}
