//! Goal: the `prometheus` sink exposes each group's latest closed window row
//! as gauges on the runtime's metrics endpoint, in a form `promtool check
//! metrics` accepts, for windows of every kind: the legacy `size_ms` form
//! (the gauges earlier versions exposed) and a sliding row window grouped
//! by a string and an int field with int and float aggregates. Bad options
//! (an invalid gauge name, a label that is not a field or is reserved, rows
//! that are not a window's) are config errors naming the option.
//!
//! Method: a bounded generator feeds a window, whose rows go both to a file
//! sink and to a prometheus sink, on a 2-shard runtime serving metrics on a
//! loopback port. After the run, the gauges fetched over HTTP must equal,
//! per group, the aggregates and end of that group's last row in the
//! committed files; the body goes through `promtool check metrics`
//! (required: `scripts/install-promtool.sh`).

use std::collections::BTreeMap;
use std::time::Duration;

#[path = "../../runtime/tests/promtool/mod.rs"]
mod promtool;

use promtool::{fetch_metrics, promtool_check};
use weir_operators::config::{build_graph, parse, ConfigErrorKind, PipelineConfig};
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

/// Runs `config` to its end on 2 shards with a data directory under `dir`;
/// returns the metrics text, checked by promtool.
fn run(config: &PipelineConfig, dir: &std::path::Path) -> String {
    let graph = build_graph(config).expect("runnable");
    let runtime = Runtime::builder()
        .shards(2)
        .data_dir(dir.join("data"))
        .epoch_interval(Duration::from_millis(20))
        .metrics_listen("127.0.0.1:0".parse().unwrap())
        .build()
        .expect("runtime");
    runtime.run(graph).expect("run");
    let text = fetch_metrics(runtime.metrics_addr().expect("serving metrics"));
    promtool_check(&text);
    text
}

/// The committed NDJSON rows under `out`.
fn committed_rows(out: &std::path::Path) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(out).unwrap().flatten() {
        if !entry.file_name().to_string_lossy().ends_with(".ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            rows.push(serde_json::from_str(line).unwrap());
        }
    }
    rows
}

/// The value of the series `series` (name and labels) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{series}: not a number in\n{text}"))
}

#[test]
fn window_rows_become_gauges_of_the_latest_window() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows");
    let config = parse(&pipeline(&out, "logins_per_user"), "dash.toml").expect("valid");
    let text = run(&config, dir.path());

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

/// A sliding window grouped by `key` (string) and `bucket` (int), with
/// `count`, `max_id` (int) and `avg_id` (float); `end_ms` is added for the
/// file sink only, so the committed rows say their window's end in ms.
fn sliding_pipeline(out: &std::path::Path, dash: &str) -> String {
    format!(
        r#"
[sources.gen]
type = "generator"
count = 30000
keys = ["alice", "bob", "carol"]
events_per_second = 10000
seed = 5

[processors.bucketed]
type = "map"
inputs = ["gen"]
set = {{ bucket = "id % 2" }}

[processors.recent]
type = "window"
inputs = ["bucketed"]
kind = "sliding"
size = "2s"
slide = "500ms"
group_by = ["key", "bucket"]
aggregates = ["count", "max:id", "avg:id"]

[processors.with_end]
type = "map"
inputs = ["recent"]
set = {{ end_ms = "to_int(window_end)" }}

[sinks.rows]
type = "file"
inputs = ["with_end"]
path = "{}"

[sinks.dash]
type = "prometheus"
inputs = ["recent"]
name = "recent_logins"
{dash}
"#,
        out.display()
    )
}

#[test]
fn sliding_window_rows_grouped_by_two_fields_become_gauges() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows");
    let text = sliding_pipeline(&out, r#"labels = ["key", "bucket"]"#);
    let config = parse(&text, "dash.toml").expect("valid");
    let text = run(&config, dir.path());

    // The last row of each (key, bucket) in the committed files.
    let mut last: BTreeMap<(String, i64), serde_json::Value> = BTreeMap::new();
    for row in committed_rows(&out) {
        let group = (
            row["key"].as_str().unwrap().to_owned(),
            row["bucket"].as_i64().unwrap(),
        );
        let newer = last
            .get(&group)
            .is_none_or(|seen| row["end_ms"].as_i64() > seen["end_ms"].as_i64());
        if newer {
            last.insert(group, row);
        }
    }
    assert_eq!(last.len(), 6, "3 keys × 2 buckets");
    for ((key, bucket), row) in &last {
        let labels = format!("sink=\"dash\",key=\"{key}\",bucket=\"{bucket}\"");
        for field in ["count", "max_id", "avg_id"] {
            let series = format!("weir_recent_logins{{{labels},aggregate=\"{field}\"}}");
            assert_eq!(
                sample(&text, &series),
                row[field].as_f64().unwrap(),
                "{series}"
            );
        }
        let series = format!("weir_recent_logins_window_end_seconds{{{labels}}}");
        let end_ms = row["end_ms"].as_i64().unwrap();
        assert_eq!(sample(&text, &series), end_ms as f64 / 1000.0, "{series}");
    }
    // Only the listed fields label the gauges, and the bounds are no values.
    assert!(!text.contains("aggregate=\"bucket\""), "{text}");
    assert!(!text.contains("aggregate=\"window_start\""), "{text}");
}

#[test]
fn bad_labels_values_and_inputs_are_config_errors_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"labels = ["user"]"#, "labels", "user"),
        (r#"labels = ["sink"]"#, "labels", "sink"),
        (r#"values = ["key"]"#, "values", "key"),
    ];
    for (option, named, field) in cases {
        let error = parse(&sliding_pipeline(dir.path(), option), "dash.toml").unwrap_err();
        let shown = error.to_string();
        assert!(
            shown.contains("sinks.dash") && shown.contains(named) && shown.contains(field),
            "{option}: {shown}"
        );
    }
    // Rows that are not a window's: the generator's own.
    let text = sliding_pipeline(dir.path(), "").replace(
        "[sinks.dash]\ntype = \"prometheus\"\ninputs = [\"recent\"]",
        "[sinks.dash]\ntype = \"prometheus\"\ninputs = [\"gen\"]",
    );
    let shown = parse(&text, "dash.toml").unwrap_err().to_string();
    assert!(
        shown.contains("sinks.dash") && shown.contains("window_end"),
        "{shown}"
    );
}
