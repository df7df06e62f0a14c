//! Goal: a running runtime feeds its own metrics and serves them: the
//! endpoint started by `RuntimeBuilder::metrics_listen` answers with text
//! that `promtool check metrics` accepts without a lint, whose component
//! counters are exact, and whose WAL and epoch metrics show the run's
//! syncs and commits.
//!
//! Method: a two-shard runtime with a data directory runs items → shift
//! (hash edge) → collect (forward edge) over a known number of records. The
//! endpoint (port 0, then `Runtime::metrics_addr`) is fetched over TCP while
//! the run goes and after it; both bodies go through `promtool`, and the
//! values of the last one are checked against the record count and the
//! run's report. promtool is required: run `scripts/install-promtool.sh`.

mod common;
mod promtool;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{collect_items, Item, Items, Shift};
use promtool::{fetch_metrics, promtool_check};
use weir_runtime::{GraphBuilder, Partition, Runtime};

const RECORDS: u64 = 200_000;
const KEYS: u64 = 100;

/// Every sample line as `series -> value`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn a_run_serves_exact_component_wal_and_epoch_metrics() {
    let data = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut graph = GraphBuilder::new();
    graph.source("items", |context| Items::new(context, RECORDS, KEYS));
    graph.processor("shift", |_| Shift(1));
    // An internal stage of `shift`: its records count as `shift`'s.
    graph.processor("shift:stage", |_| Shift(0));
    graph.sink("collect", {
        let seen = seen.clone();
        move |context| collect_items(context, seen.clone())
    });
    // A second reader of the same output: each record still counts once.
    let also = Arc::new(Mutex::new(Vec::new()));
    graph.sink("also", {
        let also = also.clone();
        move |context| collect_items(context, also.clone())
    });
    graph.connect("items", "shift", Partition::hash(|item: &Item| item.key));
    graph.connect("shift", "shift:stage", Partition::<Item>::Forward);
    graph.connect("shift:stage", "collect", Partition::<Item>::Forward);
    graph.connect("shift:stage", "also", Partition::<Item>::Broadcast);
    let runtime = Runtime::builder()
        .shards(2)
        .pin(false)
        .data_dir(data.path())
        .epoch_interval(Duration::from_millis(5))
        .metrics_listen("127.0.0.1:0".parse().unwrap())
        .build()
        .expect("runtime starts");
    let addr = runtime.metrics_addr().expect("the endpoint listens");
    assert_ne!(addr.port(), 0);

    let running = runtime
        .start(graph.build().expect("valid graph"))
        .expect("starts");
    // Whatever the run has done so far is valid exposition text.
    promtool_check(&fetch_metrics(addr));
    let report = running.wait().expect("run succeeds");
    assert_eq!(seen.lock().unwrap().len() as u64, RECORDS);
    // Broadcast: every record reached `also` on both shards.
    assert_eq!(also.lock().unwrap().len() as u64, 2 * RECORDS);

    // The endpoint outlives the run: it lives as long as the runtime.
    let body = fetch_metrics(addr);
    promtool_check(&body);
    let samples = samples(&body);
    let value = |series: &str| -> f64 {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
    };
    let records = RECORDS as f64;

    // Component counters are exact: every record crossed each edge once.
    assert_eq!(
        value("weir_component_events_out_total{component=\"items\",output=\"_default\"}"),
        records
    );
    assert_eq!(
        value("weir_component_events_in_total{component=\"shift\"}"),
        records
    );
    assert_eq!(
        value("weir_component_events_out_total{component=\"shift\",output=\"_default\"}"),
        records
    );
    assert_eq!(
        value("weir_component_events_in_total{component=\"collect\"}"),
        records
    );
    let item_bytes = records * std::mem::size_of::<Item>() as f64;
    for (series, bytes) in [
        (
            "weir_component_bytes_out_total{component=\"items\",output=\"_default\"}",
            item_bytes,
        ),
        (
            "weir_component_bytes_in_total{component=\"shift\"}",
            item_bytes,
        ),
        (
            "weir_component_bytes_out_total{component=\"shift\",output=\"_default\"}",
            item_bytes,
        ),
        (
            "weir_component_bytes_in_total{component=\"collect\"}",
            item_bytes,
        ),
    ] {
        assert_eq!(value(series), bytes, "{series}");
    }
    // Internal stages are no components of their own.
    assert!(!body.contains("shift:stage"), "{body}");
    // A source reads no ring and a sink writes none.
    assert!(!samples.contains_key("weir_component_events_in_total{component=\"items\"}"));
    assert!(!samples.contains_key("weir_component_events_out_total{component=\"collect\"}"));
    for component in ["items", "shift", "collect"] {
        let failures = format!("weir_component_failures_total{{component=\"{component}\"}}");
        assert_eq!(value(&failures), 0.0, "{failures}");
    }
    for component in ["items", "shift"] {
        let waits = format!("weir_ring_full_waits_total{{component=\"{component}\"}}");
        assert!(value(&waits) >= 0.0, "{waits}");
    }
    // Occupancy is per shard; after the run every ring is drained.
    for component in ["shift", "collect"] {
        for shard in 0..2 {
            let series = format!(
                "weir_ring_occupancy_batches{{component=\"{component}\",shard=\"{shard}\"}}"
            );
            assert_eq!(value(&series), 0.0, "{series}");
        }
    }
    // Writer slots (WAL writers, coordinator) never show up as shards.
    assert!(!body.contains("shard=\"2\""), "{body}");

    // Epochs: the gauge is the last commit; one latency per commit.
    assert!(report.last_committed_epoch >= 1);
    assert_eq!(
        value("weir_epoch_committed"),
        report.last_committed_epoch as f64
    );
    assert_eq!(
        value("weir_epoch_commit_latency_seconds_count"),
        report.epoch_commit_latencies.len() as f64
    );
    assert!(value("weir_epoch_commit_latency_seconds_sum") > 0.0);

    // WAL: the shards' logs and the coordinator's log both synced.
    for log in ["shard", "coordinator"] {
        let syncs = value(&format!("weir_wal_syncs_total{{log=\"{log}\"}}"));
        assert!(syncs > 0.0, "{log}: {syncs} syncs");
        let bytes = value(&format!("weir_wal_bytes_written_total{{log=\"{log}\"}}"));
        assert!(
            bytes >= syncs * 512.0,
            "{log}: {bytes} bytes in {syncs} syncs"
        );
        assert_eq!(
            value(&format!(
                "weir_wal_sync_latency_seconds_count{{log=\"{log}\"}}"
            )),
            syncs,
            "{log}"
        );
    }
    drop(runtime);
    assert!(TcpStream::connect(addr).is_err(), "the endpoint stopped");
}

#[test]
fn a_taken_address_is_a_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = Runtime::builder()
        .shards(1)
        .pin(false)
        .metrics_listen(addr)
        .build()
        .expect_err("the address is taken");
    let message = error.to_string();
    assert!(
        message.contains(&format!("cannot serve metrics on {addr}")),
        "{message}"
    );
}

/// A source that fails on its first poll.
struct Failing;

impl weir_runtime::Source for Failing {
    type Output = Item;

    fn poll(&mut self, out: &mut weir_runtime::Emitter<Item>) -> weir_runtime::SourcePoll {
        out.fail("boom");
        weir_runtime::SourcePoll::Ready
    }
}

#[test]
fn a_failed_node_is_counted() {
    let mut graph = GraphBuilder::new();
    graph.source("failing", |_| Failing);
    graph.sink("collect", |context| {
        collect_items(context, Arc::new(Mutex::new(Vec::new())))
    });
    graph.connect("failing", "collect", Partition::<Item>::Forward);
    let runtime = Runtime::builder()
        .shards(2)
        .pin(false)
        .build()
        .expect("runtime starts");
    let error = runtime
        .run(graph.build().expect("valid graph"))
        .expect_err("the source fails");
    assert!(error.to_string().contains("boom"), "{error}");
    let failures = runtime.metrics().counter(
        "weir_component_failures_total",
        "",
        &[("component", "failing")],
    );
    assert_eq!(failures.value(), 2, "one failure per instance");
}
