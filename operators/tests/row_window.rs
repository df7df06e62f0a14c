//! Goal: the row `window` processor works inside the real runtime: rows
//! partitioned by group over two shards produce exactly the expected window
//! rows on port 0, and late rows (and rows without a time) reach the late
//! side output on port 1 unchanged.
//!
//! Method: a scripted source (one instance) emits rows and watermarks in a
//! fixed order; the window runs on every shard behind a hash edge keyed by
//! `group_hash_row`; two collecting sinks read ports 0 and 1. Output from the
//! two window instances interleaves, so rows are compared sorted by
//! (window, group); each instance's own output order is checked too.
//! - Recovery: a replayable source, a data directory and 5 ms epochs; the
//!   staged sink panics on the first row of the last window, after some
//!   epochs committed; a second run resumes from the last committed epoch
//!   (restoring the window's snapshots) and the published rows must equal
//!   a direct computation, each exactly once.

use std::sync::{Arc, Mutex};

use weir_operators::processors::window::rows::{
    build, group_hash_row, late_schema, RowWindow, RowWindowConfig,
};
use weir_operators::row::{Row, Schema, Type, Value};
use weir_runtime::{
    Batch, Emitter, GraphBuilder, Parallelism, Partition, Runtime, Sink, Source, SourcePoll,
};

/// What the scripted source emits, in order.
#[derive(Debug, Clone)]
enum Item {
    Row(Row),
    Watermark(u64),
}

/// Emits its script in one poll, then is exhausted.
struct Script(Vec<Item>);

impl Source for Script {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        for item in self.0.drain(..) {
            match item {
                Item::Row(row) => out.push(&row),
                Item::Watermark(watermark) => out.watermark(watermark),
            }
        }
        SourcePoll::Exhausted
    }
}

/// A row and the shard whose sink saw it.
type ShardRow = (usize, Row);

/// Rows a sink saw, with the shard it ran on.
type Seen = Arc<Mutex<Vec<ShardRow>>>;

struct Collect {
    shard: usize,
    seen: Seen,
}

impl Sink for Collect {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(batch.iter().map(|row| (self.shard, row.to_row())));
    }
}

fn input() -> Schema {
    Schema::new([
        ("timestamp", Type::Timestamp),
        ("user", Type::String),
        ("bytes", Type::Int),
    ])
}

fn row(ts: Option<i64>, user: &str, bytes: i64) -> Row {
    Row {
        values: vec![
            ts.map_or(Value::Null, Value::Timestamp),
            Value::String(user.into()),
            Value::Int(bytes),
        ],
    }
}

/// Runs `script` through a window of `config` on two shards; returns what
/// ports 0 and 1 carried.
fn run(config: &str, script: Vec<Item>) -> (Vec<(usize, Row)>, Vec<ShardRow>) {
    let config: RowWindowConfig = toml::from_str(config).expect("config");
    let (spec, output) = build(&config, &input()).expect("builds");
    assert_eq!(output.fields()[0].name, "window_start");
    assert_eq!(late_schema(&input()), input());
    let (rows, late): (Seen, Seen) = Default::default();

    let mut graph = GraphBuilder::new();
    graph
        .source("script", move |_| Script(script.clone()))
        .parallelism(Parallelism::One);
    let window_spec = spec.clone();
    graph.processor("window", move |context| {
        RowWindow::new(window_spec.clone(), context)
    });
    let sink = |seen: &Seen| {
        let seen = seen.clone();
        move |context: &weir_runtime::ShardContext| Collect {
            shard: context.shard,
            seen: seen.clone(),
        }
    };
    graph.sink("rows", sink(&rows));
    graph.sink("late", sink(&late));
    graph.connect::<Row>(
        "script",
        "window",
        Partition::hash(move |row: &Row| group_hash_row(&spec, row)),
    );
    graph.connect::<Row>("window", "rows", Partition::Forward);
    graph.connect_port::<Row>("window", 1, "late", Partition::Forward);
    let runtime = Runtime::builder().shards(2).build().expect("runtime");
    runtime.run(graph.build().expect("graph")).expect("run");
    let rows = std::mem::take(&mut *rows.lock().unwrap());
    let late = std::mem::take(&mut *late.lock().unwrap());
    (rows, late)
}

fn sorted(rows: &[(usize, Row)]) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(|(_, row)| format!("{row:?}")).collect();
    rows.sort();
    rows
}

fn window_row(start: i64, end: i64, user: &str, count: i64, sum: i64) -> Row {
    Row {
        values: vec![
            Value::Timestamp(start),
            Value::Timestamp(end),
            Value::String(user.into()),
            Value::Int(count),
            Value::Int(sum),
        ],
    }
}

#[test]
fn tumbling_windows_by_group_on_two_shards_and_late_rows_on_port_1() {
    let script = vec![
        Item::Row(row(Some(1), "a", 1)),
        Item::Row(row(Some(2), "b", 2)),
        Item::Row(row(Some(5), "a", 3)),
        Item::Row(row(Some(12), "c", 4)),
        Item::Row(row(Some(9), "b", 5)),
        Item::Watermark(10),               // fires [0, 10)
        Item::Row(row(Some(3), "a", 100)), // late
        Item::Row(row(Some(15), "a", 6)),
        Item::Row(row(None, "a", 7)), // no time: to the late port
        Item::Row(row(Some(25), "b", 8)),
        Item::Watermark(30),               // fires [10, 20) and [20, 30)
        Item::Row(row(Some(29), "c", 9)),  // late
        Item::Row(row(Some(31), "a", 10)), // fired by the final watermark
    ];
    let (rows, late) = run(
        "size = \"10ms\"\ngroup_by = \"user\"\naggregates = [\"count\", \"sum:bytes\"]",
        script,
    );
    let expected = [
        window_row(0, 10, "a", 2, 4),
        window_row(0, 10, "b", 2, 7),
        window_row(10, 20, "a", 1, 6),
        window_row(10, 20, "c", 1, 4),
        window_row(20, 30, "b", 1, 8),
        window_row(30, 40, "a", 1, 10),
    ];
    let expected_rows: Vec<(usize, Row)> = expected.iter().map(|row| (0, row.clone())).collect();
    assert_eq!(sorted(&rows), sorted(&expected_rows));
    // Each instance emits its rows by window, then group.
    for shard in 0..2 {
        let keys: Vec<(Value, Value)> = rows
            .iter()
            .filter(|(at, _)| *at == shard)
            .map(|(_, row)| (row.values[0].clone(), row.values[2].clone()))
            .collect();
        let mut ordered = keys.clone();
        ordered.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(keys, ordered, "shard {shard}");
    }
    let expected_late: Vec<(usize, Row)> = [
        row(Some(3), "a", 100),
        row(None, "a", 7),
        row(Some(29), "c", 9),
    ]
    .into_iter()
    .map(|row| (0, row))
    .collect();
    assert_eq!(sorted(&late), sorted(&expected_late));
}

#[test]
fn global_session_windows_with_lateness_run_on_one_shard() {
    let script = vec![
        Item::Row(row(Some(100), "a", 1)),
        Item::Row(row(Some(104), "b", 2)),
        Item::Row(row(Some(130), "a", 3)), // new session: gap 10
        Item::Watermark(118),              // [100, 114) fires at 119
        Item::Row(row(Some(96), "c", 4)),  // joins [100, 114): within lateness
        Item::Watermark(120),              // fires [96, 114)
        Item::Row(row(Some(99), "d", 5)),  // late: [99, 109) fired
        Item::Row(row(Some(135), "e", 6)), // joins [130, 140)
    ];
    let (rows, late) = run(
        "kind = \"session\"\ngap = \"10ms\"\nallowed_lateness = \"5ms\"\n\
         aggregates = [\"count\", \"max:bytes\", { fn = \"top_k\", field = \"user\", k = 1 }]",
        script,
    );
    let shards: Vec<usize> = rows.iter().map(|(shard, _)| *shard).collect();
    assert!(shards.windows(2).all(|pair| pair[0] == pair[1]), "{rows:?}");
    let top = |user: &str, count: i64| {
        Value::List(vec![Value::Map(vec![
            weir_operators::row::MapEntry {
                key: "value".into(),
                value: Value::String(user.into()),
            },
            weir_operators::row::MapEntry {
                key: "count".into(),
                value: Value::Int(count),
            },
        ])])
    };
    let rows: Vec<Row> = rows.into_iter().map(|(_, row)| row).collect();
    assert_eq!(
        rows,
        vec![
            Row {
                values: vec![
                    Value::Timestamp(96),
                    Value::Timestamp(114),
                    Value::Int(3),
                    Value::Int(4),
                    top("a", 1),
                ],
            },
            Row {
                values: vec![
                    Value::Timestamp(130),
                    Value::Timestamp(145),
                    Value::Int(2),
                    Value::Int(6),
                    top("a", 1),
                ],
            },
        ]
    );
    let late: Vec<Row> = late.into_iter().map(|(_, row)| row).collect();
    assert_eq!(late, vec![row(Some(99), "d", 5)]);
}

// ---- recovery under the epoch protocol.

/// Rows of the recovery run.
const TOTAL: u64 = 20_000;

fn recovery_row(i: u64) -> Row {
    let users = ["ann", "bob", "cy", "dee", "eve"];
    Row {
        values: vec![
            Value::Timestamp(i as i64),
            Value::String(users[(i * 7 % 5) as usize].into()),
            Value::Int((i % 13) as i64),
        ],
    }
}

/// Row `i` at event time `i` ms, 100 per poll with a watermark after each
/// poll; replayable from its position (the next index).
struct Replayable {
    next: u64,
}

impl Source for Replayable {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        let end = (self.next + 100).min(TOTAL);
        for i in self.next..end {
            out.push(&recovery_row(i));
        }
        self.next = end;
        out.watermark(end);
        // Pacing only (no assertion depends on it): epochs every 5 ms
        // interleave with the data, so windows fire in many epochs.
        std::thread::sleep(std::time::Duration::from_micros(300));
        if end == TOTAL {
            SourcePoll::Exhausted
        } else {
            SourcePoll::Ready
        }
    }

    fn position(&self) -> Vec<u8> {
        self.next.to_le_bytes().to_vec()
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), weir_runtime::OperatorError> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| weir_runtime::OperatorError::invalid("bad position"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Stages `{row:?}` lines per epoch in `DIR/.staging/S-E`; commit renames
/// them to `DIR/S-E`. With `fail`, it panics on the first row of the last
/// window (a crash after some epochs committed and before the last did).
struct Staged {
    dir: std::path::PathBuf,
    shard: usize,
    lines: String,
    fail: bool,
}

impl Staged {
    fn new(context: &weir_runtime::ShardContext, dir: &std::path::Path, fail: bool) -> Staged {
        let staging = dir.join(".staging");
        std::fs::create_dir_all(&staging).expect("staging dir");
        // Staged output of epochs after the committed one never committed.
        for entry in std::fs::read_dir(&staging).expect("list").flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(epoch) = name
                .strip_prefix(&format!("{}-", context.shard))
                .and_then(|epoch| epoch.parse::<u64>().ok())
            {
                if epoch > context.committed_epoch {
                    std::fs::remove_file(entry.path()).expect("discard");
                }
            }
        }
        Staged {
            dir: dir.to_path_buf(),
            shard: context.shard,
            lines: String::new(),
            fail,
        }
    }
}

impl Sink for Staged {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        for row in batch.iter() {
            // The last window fires with the source's last watermark, when
            // the source has ended.
            let last = row.values[0].as_timestamp() == Some(TOTAL as i64 - 50);
            assert!(!(self.fail && last), "simulated crash");
            self.lines.push_str(&format!("{:?}\n", row.to_row()));
        }
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, weir_runtime::OperatorError> {
        if self.lines.is_empty() {
            return Ok(Vec::new());
        }
        let name = format!("{}-{epoch}", self.shard);
        let staged = self.dir.join(".staging").join(&name);
        std::fs::write(&staged, std::mem::take(&mut self.lines))?;
        Ok(format!("{}\n{}", staged.display(), self.dir.join(&name).display()).into_bytes())
    }

    fn commit(
        staged: &[u8],
        _control: &weir_runtime::CommitControl,
    ) -> Result<(), weir_runtime::OperatorError> {
        let text = std::str::from_utf8(staged).map_err(|error| error.to_string())?;
        let (from, to) = text.split_once('\n').ok_or("bad pre-commit")?;
        if std::path::Path::new(from).exists() {
            std::fs::rename(from, to).map_err(|error| format!("{from}: {error}"))?;
        } else if !std::path::Path::new(to).exists() {
            return Err(format!("neither {from} nor {to} exists").into());
        }
        Ok(())
    }
}

const RECOVERY_CONFIG: &str = "size = \"50ms\"\ngroup_by = [\"user\"]\n\
    aggregates = [\"count\", \"sum:bytes\", \"count_distinct:bytes\", \"max:timestamp\"]";

fn run_recoverable(
    data: &std::path::Path,
    out: &std::path::Path,
    fail: bool,
) -> Result<weir_runtime::RunReport, weir_runtime::Error> {
    let config: RowWindowConfig = toml::from_str(RECOVERY_CONFIG).expect("config");
    let (spec, _) = build(&config, &input()).expect("builds");
    let out: Arc<std::path::Path> = out.into();
    let mut graph = GraphBuilder::new();
    graph
        .source("rows", |_| Replayable { next: 0 })
        .parallelism(Parallelism::One);
    let window_spec = spec.clone();
    graph.processor("window", move |context| {
        RowWindow::new(window_spec.clone(), context)
    });
    graph.sink("out", move |context| Staged::new(context, &out, fail));
    graph.connect::<Row>(
        "rows",
        "window",
        Partition::hash(move |row: &Row| group_hash_row(&spec, row)),
    );
    graph.connect::<Row>("window", "out", Partition::Forward);
    let runtime = Runtime::builder()
        .shards(2)
        .data_dir(data)
        .epoch_interval(std::time::Duration::from_millis(5))
        // Small WAL segments: the test's data directory stays small.
        .wal_segment_bytes(1 << 20)
        .build()
        .expect("runtime");
    runtime.run(graph.build().expect("graph"))
}

/// Every published line, sorted.
fn published(out: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(out).expect("list").flatten() {
        if entry.path().is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines.sort();
    lines
}

#[test]
fn a_crashed_run_recovers_window_state_exactly_once() {
    // The expected rows, computed directly: window w of 50 ms holds rows
    // 50w..50w+50; per user count, sum, distinct `i % 13`, latest time.
    let mut expected = Vec::new();
    for window in 0..TOTAL / 50 {
        let mut groups: std::collections::BTreeMap<
            String,
            (i64, i64, std::collections::BTreeSet<i64>, i64),
        > = Default::default();
        for i in window * 50..window * 50 + 50 {
            let row = recovery_row(i);
            let Value::String(user) = &row.values[1] else {
                unreachable!()
            };
            let entry = groups.entry(user.clone()).or_default();
            entry.0 += 1;
            entry.1 += (i % 13) as i64;
            entry.2.insert((i % 13) as i64);
            entry.3 = i as i64;
        }
        let start = (window * 50) as i64;
        for (user, (count, sum, distinct, latest)) in groups {
            let row = Row {
                values: vec![
                    Value::Timestamp(start),
                    Value::Timestamp(start + 50),
                    Value::String(user),
                    Value::Int(count),
                    Value::Int(sum),
                    Value::Int(distinct.len() as i64),
                    Value::Timestamp(latest),
                ],
            };
            expected.push(format!("{row:?}"));
        }
    }
    expected.sort();

    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let error = run_recoverable(data.path(), out.path(), true).expect_err("the sink fails");
    assert!(error.to_string().contains("simulated crash"), "{error}");
    let before = published(out.path()).len();
    assert!(before < expected.len());

    let recovered = run_recoverable(data.path(), out.path(), false).expect("recovery succeeds");
    assert!(!recovered.already_complete);
    // It resumed from a committed epoch: window state came from snapshots.
    assert!(
        recovered.resumed_from_epoch > 0,
        "nothing had committed before the crash"
    );
    let got = published(out.path());
    assert_eq!(
        got.len(),
        expected.len(),
        "rows published (resumed from epoch {})",
        recovered.resumed_from_epoch
    );
    assert_eq!(got, expected);
    eprintln!(
        "recovery resumed from epoch {} ({before} rows were published before the crash)",
        recovered.resumed_from_epoch
    );
}
