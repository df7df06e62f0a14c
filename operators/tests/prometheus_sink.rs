//! Goal: the `prometheus` sink exposes each key's latest closed window row as
//! gauges on the runtime's metrics endpoint, in a form `promtool check
//! metrics` accepts, and an invalid gauge name is a config error naming the
//! field.
//!
//! Method: a bounded generator feeds a keyed window, whose rows go both to a
//! file sink and to a prometheus sink, on a 2-shard runtime serving metrics
//! on a loopback port. After the run, the gauges fetched over HTTP must
//! equal, per key, the count, sum and end of that key's last row in the
//! committed files; the body goes through `promtool check metrics`
//! (required: `scripts/install-promtool.sh`).

use std::collections::BTreeMap;
use std::time::Duration;

#[path = "../../runtime/tests/promtool/mod.rs"]
mod promtool;

use promtool::{fetch_metrics, promtool_check};
use weir_operators::config::{build_graph, parse, ConfigErrorKind};
use weir_runtime::Runtime;

fn pipeline(out: &std::path::Path, name: &str) -> String {
    format!(
        r#"
[sources.gen]
type = "generator"
count = 50000
keys = ["alice", "bob", "carol", "dave"]
events_per_second = 10000
seed = 3

[processors.per_second]
type = "window"
inputs = ["gen"]
size_ms = 1000
group_by = "key"
aggregates = ["count", "sum:id"]

[sinks.rows]
type = "file"
inputs = ["per_second"]
path = "{}"
format = "ndjson"

[sinks.dash]
type = "prometheus"
inputs = ["per_second"]
name = "{name}"
"#,
        out.display()
    )
}

#[test]
fn window_rows_become_gauges_of_the_latest_window() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows");
    let config = parse(&pipeline(&out, "logins_per_user"), "dash.toml").expect("valid");
    let graph = build_graph(&config).expect("runnable");
    let runtime = Runtime::builder()
        .shards(2)
        .data_dir(dir.path().join("data"))
        .epoch_interval(Duration::from_millis(20))
        .metrics_listen("127.0.0.1:0".parse().unwrap())
        .build()
        .expect("runtime");
    runtime.run(graph).expect("run");
    let text = fetch_metrics(runtime.metrics_addr().expect("serving metrics"));
    promtool_check(&text);

    // The last row of each key in the committed files.
    let mut last: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        if !entry.file_name().to_string_lossy().ends_with(".ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = row["key"].as_str().unwrap().to_string();
            let end = row["window_end_ms"].as_u64().unwrap();
            let value = (
                end,
                row["count"].as_u64().unwrap(),
                row["sum"].as_u64().unwrap(),
            );
            let slot = last.entry(key).or_insert(value);
            if value.0 > slot.0 {
                *slot = value;
            }
        }
    }
    assert_eq!(last.len(), 4);
    for (key, (end_ms, count, sum)) in &last {
        let find = |series: String| -> String {
            text.lines()
                .find_map(|line| line.strip_prefix(&series))
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
                .trim()
                .to_string()
        };
        let labels = format!("sink=\"dash\",key=\"{key}\"");
        assert_eq!(
            find(format!(
                "weir_logins_per_user{{{labels},aggregate=\"count\"}}"
            )),
            count.to_string()
        );
        assert_eq!(
            find(format!(
                "weir_logins_per_user{{{labels},aggregate=\"sum\"}}"
            )),
            (*sum as i64).to_string()
        );
        assert_eq!(
            find(format!(
                "weir_logins_per_user_window_end_seconds{{{labels}}}"
            )),
            (end_ms / 1000).to_string()
        );
    }
}

#[test]
fn a_bad_gauge_name_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = parse(&pipeline(dir.path(), "Logins-Total"), "dash.toml").unwrap_err();
    assert_eq!(error.kind, ConfigErrorKind::Invalid);
    let shown = error.to_string();
    assert!(
        shown.contains("sinks.dash") && shown.contains("name"),
        "{shown}"
    );
}
