//! Goal: weir's answers to the Nexmark queries (issue 23) are the ones the
//! queries' SQL gives, checked by an external engine, and stay exact
//! across a crash.
//!
//! Method: the `weir` binary runs `bench/nexmark/events.toml` (the
//! `nexmark` source's people, auctions and bids into Parquet) and each
//! query's pipeline file of `bench/nexmark/`, 1 M events on 2 shards, each
//! exactly-once with a data directory. `bench/nexmark/oracle.py` then runs
//! each query's SQL in DuckDB (PyPI, `scripts/install-duckdb.sh`) on the
//! events' Parquet files and compares its answer with the Parquet files
//! weir published, as multisets of rows. The events run 1 000 a second of
//! event time, so 1 M events span 1 000 s: a hundred 10 s windows, and
//! bidders whose sessions end and start again. The pipelines with state
//! (every join kind: q3's regular join, q7's interval join, a window join
//! and a temporal join; q11's sessions) are also killed mid-run and
//! restarted, and must still give DuckDB's answer.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{scratch, tool_python, Weir};

const EVENTS: &str = "1000000";

/// Runs `bench/nexmark/NAME.toml` to its end, writing under `out`, with
/// `env` added; returns its exit status and log.
fn run(name: &str, out: &Path, data: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = out.to_str().expect("utf-8 path");
    let mut vars = vec![
        ("WEIR_OUT", out),
        ("WEIR_SHARDS", "2"),
        ("NEXMARK_EVENTS", EVENTS),
        ("NEXMARK_EVENTS_PER_SECOND", "1000"),
    ];
    vars.extend_from_slice(env);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("bench/nexmark/{name}.toml"));
    let weir = Weir::start(&config, data, &[], &vars);
    let (status, log) = weir.exit_within(Duration::from_secs(180));
    (status.success(), log)
}

/// Runs the oracle on `queries`; panics with its report unless every one
/// equals DuckDB's answer.
fn check(out: &Path, queries: &[&str]) {
    let python = tool_python("scripts/install-duckdb.sh");
    let nexmark = out.join("nexmark");
    let output = Command::new(python)
        .arg("bench/nexmark/oracle.py")
        .arg(nexmark.join("events"))
        .arg(&nexmark)
        .args(queries)
        .output()
        .expect("python");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "weir differs from DuckDB:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for query in queries {
        assert!(
            report.contains(&format!("{query}: ")) && report.contains("equal to DuckDB's"),
            "{report}"
        );
    }
    eprintln!("{report}");
}

#[test]
fn every_query_equals_duckdb_on_a_million_events() {
    let root = scratch();
    let queries = ["q0", "q1", "q2", "q3", "q5", "q7", "q8", "q11"];
    for name in std::iter::once("events").chain(queries) {
        let data = root.path().join(format!("data-{name}"));
        let (ok, log) = run(name, root.path(), &data, &[]);
        assert!(ok, "{name}: {log}");
        // The run ended and published everything; its write-ahead log
        // (preallocated segments) is not needed any more.
        std::fs::remove_dir_all(&data).expect("remove the data directory");
    }
    check(root.path(), &queries);
}

#[test]
fn stateful_queries_killed_and_restarted_equal_duckdb() {
    let root = scratch();
    let (ok, log) = run("events", root.path(), &root.path().join("data-events"), &[]);
    assert!(ok, "events: {log}");
    // Each join kind holds state: q3's regular join, q7's interval join
    // (and its window), and a window and a temporal join on the same
    // events (bench/nexmark/join_*.toml); so do q11's session windows.
    // Each run aborts (as kill -9 would) after an epoch's commit record,
    // then runs again from it.
    let queries = ["q3", "q7", "q11", "join_window", "join_temporal"];
    for query in queries {
        let data = root.path().join(format!("data-{query}"));
        let crash = [("WEIR_CRASH_AT", "after-commit-record:4")];
        let (ok, log) = run(query, root.path(), &data, &crash);
        assert!(
            !ok && log.contains("WEIR_CRASH_AT"),
            "{query}: no crash: {log}"
        );
        let (ok, log) = run(query, root.path(), &data, &[]);
        assert!(ok, "{query} after the crash: {log}");
        // It went on from the crashed run's last commit, not from the
        // start, and restored the operators' state.
        assert!(
            log.contains("recovered the data directory committed_epoch=")
                && !log.contains("recovered the data directory committed_epoch=0 ")
                && !log.contains("restored_instances=0 "),
            "{query}: {log}"
        );
        std::fs::remove_dir_all(&data).expect("remove the data directory");
    }
    check(root.path(), &queries);
}
