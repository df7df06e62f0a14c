//! Goal: the `file` sink rolls (issue 22): a shard's output of many epochs
//! is published as one file by size and age (`roll_size`,
//! `roll_interval`, Parquet included), at most one file per shard per
//! minute at default settings, and still every acknowledged record once
//! across kill -9s and a graceful stop.
//!
//! Method: the `weir` binary runs an `http` source into a Parquet and an
//! NDJSON `file` sink; a client posts batches with batch ids (retried until
//! acknowledged) while weir is killed twice and stopped once; the Parquet
//! files are read with pyarrow (PyPI, `scripts/install-pyarrow.sh`), an
//! external reader, and the NDJSON ones as text.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    assert_each_once, free_port, kill_kill_stop, now_ms, post, post_until_accepted,
    published_files, published_rows, rfc3339, scratch, tool_python, wait_for, wait_listening, Weir,
};

/// `(batch, seq)` of every row of the Parquet files published in `dir`,
/// read with pyarrow.
fn pyarrow_rows(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let python = tool_python("scripts/install-pyarrow.sh");
    let script = r#"
import sys, pathlib, pyarrow.parquet as pq
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.parquet")):
    table = pq.read_table(path)
    for batch, seq in zip(table.column("batch").to_pylist(), table.column("seq").to_pylist()):
        print(batch, seq)
"#;
    let output = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let (batch, seq) = line.split_once(' ').expect("two numbers");
            (batch.parse().expect("batch"), seq.parse().expect("seq"))
        })
        .collect()
}

#[test]
fn rolled_files_hold_every_record_once_after_kills() {
    const BATCHES: u64 = 100;
    const EVENTS: u64 = 20;
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let (parquet, ndjson) = (root.path().join("parquet"), root.path().join("ndjson"));
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 20

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"
timestamp_field = "timestamp"
schema = {{ batch = "int", seq = "int", message = "string" }}

[sinks.archive]
type = "file"
inputs = ["events"]
path = "{}"
format = "parquet"
roll_interval = "1s"
roll_size = "16KiB"

[sinks.lines]
type = "file"
inputs = ["events"]
path = "{}"
format = "ndjson"
roll_interval = "700ms"
"#,
        parquet.display(),
        ndjson.display()
    );
    std::fs::write(&config, pipeline).expect("config");
    let data = root.path().join("data");
    let weir = Weir::start(&config, &data, &[], &[]);
    wait_listening(addr, Duration::from_secs(10));

    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            for batch in 0..BATCHES {
                let body: String = (0..EVENTS)
                    .map(|seq| {
                        format!(
                            "{{\"timestamp\":\"{}\",\"batch\":{batch},\"seq\":{seq},\"message\":\"rolling\"}}\n",
                            rfc3339(now_ms())
                        )
                    })
                    .collect();
                post_until_accepted(addr, body.as_bytes(), &format!("rolling-{batch}"));
                acked.store(batch + 1, std::sync::atomic::Ordering::Release);
                // Spread the batches over several roll intervals.
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    kill_kill_stop(weir, &config, &data, &acked, BATCHES, client);

    let total = (BATCHES * EVENTS) as usize;
    let index = |(batch, seq): (u64, u64)| (batch * EVENTS + seq) as usize;
    assert_each_once(
        pyarrow_rows(&parquet).into_iter().map(index),
        total,
        "Parquet rows",
    );
    let lines = published_rows(&ndjson).into_iter().map(|row| {
        index((
            row["batch"].as_u64().expect("batch"),
            row["seq"].as_u64().expect("seq"),
        ))
    });
    assert_each_once(lines, total, "NDJSON rows");
    // Rolled: far fewer files than shards × epochs, several per shard.
    let files = published_files(&parquet).len();
    assert!((2..=200).contains(&files), "{files} Parquet files");
    // Nothing is left behind in the staging directories after the stop.
    for dir in [&parquet, &ndjson] {
        let staging: Vec<_> = std::fs::read_dir(dir.join(".staging"))
            .expect("staging")
            .flatten()
            .map(|entry| entry.file_name())
            .collect();
        assert!(staging.is_empty(), "{}: {staging:?}", dir.display());
    }
}

/// At default settings nothing is published for a minute, and a stop
/// publishes what a shard wrote as one file: at most one file per shard
/// per minute.
#[test]
fn by_default_a_shard_publishes_one_file_a_minute_at_most() {
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 100

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"

[sinks.rows]
type = "file"
inputs = ["events"]
path = "{}"
"#,
        out.display()
    );
    std::fs::write(&config, pipeline).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(addr, Duration::from_secs(10));
    let started = Instant::now();
    let mut posted = 0;
    // Many epochs with rows, on both shards (connections are spread).
    while started.elapsed() < Duration::from_secs(8) {
        let (status, response) = post(addr, "/events", "{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(status, 200, "{response}");
        posted += 2;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        published_files(&out).is_empty(),
        "published before a minute passed: {:?}",
        published_files(&out)
    );
    weir.terminate();
    let (status, log) = weir.exit_within(Duration::from_secs(60));
    assert!(status.success(), "the stop failed: {log}");
    let files = published_files(&out);
    assert!((1..=2).contains(&files.len()), "{files:?}");
    wait_for("every row", Duration::from_secs(1), || {
        published_rows(&out).len() == posted
    });
}
