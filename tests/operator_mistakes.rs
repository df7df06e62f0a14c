//! Goal: what a careless operator does cannot lose or duplicate data, and a
//! following `file` source publishes as lines arrive.
//!
//! Method: the `weir` binary runs pipeline files as child processes.
//! - Two runs on one data directory: the second must fail at once (exit 1)
//!   naming the first's PID, while the first goes on and publishes every
//!   event once; once the first stopped, the directory can be used again.
//! - A following `file` source on 2 shards (one reader, on shard 0): lines
//!   appended while it runs are published within a few epochs, not only
//!   at the stop.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{published_rows, scratch, Weir};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn generator_pipeline(out: &Path, count: u64) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 20

[sources.gen]
type = "generator"
count = {count}
keys = ["a", "b"]
events_per_second = 1000
rate = 20000
seed = 4

[sinks.raw]
type = "file"
inputs = ["gen"]
path = "{}"
roll_interval = "0s"
format = "ndjson"
"#,
        out.display()
    )
}

#[test]
fn a_second_run_on_the_same_data_directory_is_refused_naming_the_first() {
    const COUNT: u64 = 40_000;
    let root = scratch();
    let (config, data, out) = (
        root.path().join("pipeline.toml"),
        root.path().join("data"),
        root.path().join("out"),
    );
    std::fs::write(&config, generator_pipeline(&out, COUNT)).expect("config");
    let mut first = Weir::start(&config, &data, &[], &[]);
    // The first holds the directory once it publishes.
    let deadline = Instant::now() + RUN_TIMEOUT;
    while published_rows(&out).is_empty() {
        assert!(Instant::now() < deadline, "the first run published nothing");
        assert!(
            first.wait_for(Duration::ZERO).is_none(),
            "the first run ended early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let (status, log) = Weir::start(&config, &data, &[], &[]).exit_within(RUN_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(1),
        "the second run was not refused: {log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refusal took {:?}",
        started.elapsed()
    );
    let pid = first.child.id();
    assert!(
        log.contains("is in use") && log.contains(&format!("process {pid} holds it")),
        "the refusal does not name the holder {pid}: {log}"
    );

    let (status, log) = first.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the first run failed: {log}");
    let ids: Vec<u64> = published_rows(&out)
        .iter()
        .map(|row| row["id"].as_u64().expect("id"))
        .collect();
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "ids published twice");
    assert_eq!(distinct, (0..COUNT).collect(), "ids missing");
    // Free again: a later run finds the run complete.
    let (status, log) = Weir::start(&config, &data, &[], &[]).exit_within(RUN_TIMEOUT);
    assert!(status.success(), "{log}");
}

#[test]
fn a_following_file_source_publishes_appended_lines_while_it_runs() {
    let root = scratch();
    let (config, data, out, input) = (
        root.path().join("pipeline.toml"),
        root.path().join("data"),
        root.path().join("out"),
        root.path().join("in.ndjson"),
    );
    std::fs::write(&input, "").expect("input");
    std::fs::write(
        &config,
        format!(
            r#"
[runtime]
shards = 2
epoch_interval_ms = 100

[sources.lines]
type = "file"
path = "{}"
format = "ndjson"
follow = true
schema = {{ msg = "string" }}

[sinks.out]
type = "file"
inputs = ["lines"]
path = "{}"
roll_interval = "0s"
format = "ndjson"
"#,
            input.display(),
            out.display()
        ),
    )
    .expect("config");
    let weir = Weir::start(&config, &data, &[], &[]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .expect("open input");
    for line in 0..5 {
        writeln!(file, "{{\"msg\":\"line {line}\"}}").expect("append");
        file.flush().expect("flush");
        // Published within a few 100 ms epochs (generous for CI).
        let deadline = Instant::now() + Duration::from_secs(10);
        while published_rows(&out).len() < line + 1 {
            assert!(
                Instant::now() < deadline,
                "line {line} was not published within 10 s of being appended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "{log}");
    let messages: BTreeSet<String> = published_rows(&out)
        .iter()
        .map(|row| row["msg"].as_str().expect("msg").to_owned())
        .collect();
    assert_eq!(
        messages,
        (0..5).map(|line| format!("line {line}")).collect()
    );
}
