//! Goal: what the metrics endpoint serves is valid Prometheus text format
//! that `promtool check metrics` accepts without a single lint, and its
//! values are the sums of what each shard recorded.
//!
//! Method: a two-shard registry with labelled counters, gauges and
//! histograms is updated from two threads, one per shard; the endpoint is
//! fetched over a real TCP connection and its body piped to `promtool`.
//! promtool is required: run `scripts/install-promtool.sh` to install it.

mod promtool;

use std::collections::BTreeMap;
use std::thread;

use promtool::{fetch, promtool_check};
use weir_runtime::metrics::{serve, Registry};

const EVENTS_PER_SHARD: [u64; 2] = [1_000, 2_500];

/// Every sample line as `series -> value`, `series` being the text before
/// the value (name and labels).
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn promtool_accepts_metrics_and_sums_are_right() {
    let registry = Registry::new(2);
    let events_in = registry.counter(
        "weir_component_events_in",
        "Records a component received.",
        &[("component", "parse")],
    );
    let odd = registry.counter(
        "weir_component_events_in",
        "Records a component received.",
        &[("component", "quote\" backslash\\ newline\n")],
    );
    let wal_bytes = registry.counter(
        "weir_wal_bytes_written_total",
        "Bytes appended to the write-ahead log.",
        &[],
    );
    let depth = registry.gauge(
        "weir_ring_depth_batches",
        "Batches waiting in a ring.",
        &[("edge", "parse->sink")],
    );
    let latency = registry.histogram(
        "weir_component_batch_latency_seconds",
        "Time a component spent on one batch.",
        &[("component", "parse")],
    );

    thread::scope(|scope| {
        for (shard, &events) in EVENTS_PER_SHARD.iter().enumerate() {
            let (events_in, odd, wal_bytes, depth, latency) = (
                events_in.clone(),
                odd.clone(),
                wal_bytes.clone(),
                depth.for_shard(shard),
                latency.for_shard(shard),
            );
            scope.spawn(move || {
                for i in 0..events {
                    events_in.inc(shard);
                    wal_bytes.add(shard, 100);
                    // 1 µs, 2 µs, ... cycling through 10 values.
                    latency.observe_ns((i % 10 + 1) * 1_000);
                }
                odd.add(shard, 7);
                depth.set(shard as i64 * 10 + 3);
            });
        }
    });

    let server = serve("127.0.0.1:0".parse().unwrap(), registry.clone()).unwrap();
    let (head, body) = fetch(server.local_addr(), "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (missing, _) = fetch(server.local_addr(), "/nothing");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    drop(server);

    promtool_check(&body);

    let samples = samples(&body);
    let value = |series: &str| -> &str {
        samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
    };
    let total: u64 = EVENTS_PER_SHARD.iter().sum();
    assert_eq!(
        value("weir_component_events_in_total{component=\"parse\"}"),
        total.to_string()
    );
    assert_eq!(
        value("weir_component_events_in_total{component=\"quote\\\" backslash\\\\ newline\\n\"}"),
        "14"
    );
    assert_eq!(
        value("weir_wal_bytes_written_total"),
        (total * 100).to_string()
    );
    assert_eq!(
        value("weir_ring_depth_batches{edge=\"parse->sink\",shard=\"0\"}"),
        "3"
    );
    assert_eq!(
        value("weir_ring_depth_batches{edge=\"parse->sink\",shard=\"1\"}"),
        "13"
    );

    let hist = "weir_component_batch_latency_seconds";
    assert_eq!(
        value(&format!("{hist}_count{{component=\"parse\"}}")),
        total.to_string()
    );
    assert_eq!(
        value(&format!("{hist}_bucket{{component=\"parse\",le=\"+Inf\"}}")),
        total.to_string()
    );
    // Each shard's count is a multiple of 10, so each of the 10 values was
    // seen total / 10 times: 1 µs once per 10, up to 2 µs twice, up to
    // 4 µs four times, up to 8 µs eight times.
    for (le, per_ten) in [
        ("0.000001", 1),
        ("0.000002", 2),
        ("0.000004", 4),
        ("0.000008", 8),
        ("0.000016", 10),
    ] {
        assert_eq!(
            value(&format!("{hist}_bucket{{component=\"parse\",le=\"{le}\"}}")),
            (total / 10 * per_ten).to_string(),
            "bucket le={le}"
        );
    }
    // Sum: total / 10 * (1 + ... + 10) µs = total * 5.5 µs.
    let sum_ns = total * 5_500;
    let sum: f64 = value(&format!("{hist}_sum{{component=\"parse\"}}"))
        .parse()
        .unwrap();
    assert!((sum - sum_ns as f64 / 1e9).abs() < 1e-12, "sum {sum}");
}
