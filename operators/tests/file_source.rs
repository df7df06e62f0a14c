//! Goal: the `file` source runs in a real runtime: every line of the file
//! reaches the main output or the dead-letter port exactly once, and a run
//! that fails half-way, restarted on its data directory, publishes every
//! line exactly once.
//!
//! Method:
//! - A file of NDJSON lines, some of them bad; graph: file source
//!   (`Parallelism::One`) → a collecting sink on port 0 and another on
//!   port 1; check rows, dead letters (reason and offset) and the dead
//!   letter counter.
//! - Exactly once: a sink on both shards (round-robin from the single
//!   source instance) that stages each epoch's lines and publishes them by
//!   rename on commit (idempotent). The first run's sink panics on its
//!   first write once some epoch's output was published (or, should the
//!   file be read before that, at the end), so the run fails after some
//!   epochs committed; a second run on the same data directory resumes
//!   from the logged byte offset. The published lines must be every input line once.
//!   No timing is asserted: whatever committed before the failure, the
//!   published output must be exact.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_operators::row::{Row, Value};
use weir_operators::sources::file::{build, FieldTypes, FileSource, FileSourceConfig};
use weir_runtime::{
    Batch, GraphBuilder, OperatorError, Parallelism, Partition, Runtime, ShardContext, Sink,
};

fn config(path: &Path) -> FileSourceConfig {
    FileSourceConfig {
        path: path.display().to_string(),
        format: Default::default(),
        schema: Some(FieldTypes(vec![
            ("ts".into(), "timestamp".into()),
            ("host".into(), "ip".into()),
            ("n".into(), "int".into()),
        ])),
        time_field: Some("ts".into()),
        watermark_delay: Some("1s".into()),
        follow: false,
    }
}

fn good_line(n: u64) -> String {
    format!(
        "{{\"ts\": \"2026-01-01T00:{:02}:{:02}Z\", \"host\": \"10.1.{}.{}\", \"n\": {n}, \"msg\": \"hello\"}}\n",
        n / 60 % 60,
        n % 60,
        n / 256 % 256,
        n % 256
    )
}

/// Lines `0..count`; every 1000th (from 500) has a bad `n`.
fn write_file(path: &Path, count: u64) -> Vec<(u64, String)> {
    let mut file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut bad = Vec::new();
    let mut offset = 0u64;
    for n in 0..count {
        let line = if n % 1000 == 500 {
            let line = format!("{{\"ts\": 0, \"n\": \"{n}\"}}\n");
            bad.push((offset, line.trim_end().to_owned()));
            line
        } else {
            good_line(n)
        };
        offset += line.len() as u64;
        file.write_all(line.as_bytes()).unwrap();
    }
    file.flush().unwrap();
    bad
}

fn n_of(row: &Row) -> u64 {
    match row.values[2] {
        Value::Int(n) => n as u64,
        ref other => panic!("n is {other:?}"),
    }
}

/// Collects rows into a shared vector at the end of the run.
struct Collect {
    local: Vec<Row>,
    seen: Arc<Mutex<Vec<Row>>>,
}

impl Sink for Collect {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        self.local.extend(batch.iter().map(|row| row.to_row()));
    }

    fn finish(&mut self) {
        self.seen.lock().unwrap().append(&mut self.local);
    }
}

fn collect(graph: &mut GraphBuilder, name: &str, seen: &Arc<Mutex<Vec<Row>>>) {
    let seen = seen.clone();
    graph
        .sink(name, move |_| Collect {
            local: Vec::new(),
            seen: seen.clone(),
        })
        .parallelism(Parallelism::One);
}

#[test]
fn every_line_reaches_the_rows_or_the_dead_letters_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.ndjson");
    let count = 20_000;
    let bad = write_file(&path, count);
    let (spec, schema) = build(&config(&path)).expect("valid");
    assert_eq!(schema.len(), 3);

    let (rows, dead) = (Arc::default(), Arc::default());
    let mut graph = GraphBuilder::new();
    graph
        .source("file", move |context| {
            FileSource::new(spec.clone(), context)
        })
        .parallelism(Parallelism::One);
    collect(&mut graph, "rows", &rows);
    collect(&mut graph, "dead", &dead);
    graph.connect("file", "rows", Partition::<Row>::Forward);
    graph.connect_port("file", 1, "dead", Partition::<Row>::Forward);
    let runtime = Runtime::builder().shards(2).build().expect("runtime");
    runtime.run(graph.build().expect("graph")).expect("run");

    let rows = rows.lock().unwrap();
    let numbers: Vec<u64> = rows.iter().map(n_of).collect();
    let expected: Vec<u64> = (0..count).filter(|n| n % 1000 != 500).collect();
    assert_eq!(numbers, expected, "rows in file order, each once");
    assert_eq!(rows[1].values[1].ty(), Some(weir_operators::row::Type::Ip));

    let dead = dead.lock().unwrap();
    let got: Vec<(u64, String)> = dead
        .iter()
        .map(|row| match &row.values[..] {
            [Value::String(line), Value::String(error), Value::Int(offset)] => {
                assert!(error.contains("field `n`"), "{error}");
                (*offset as u64, line.clone())
            }
            other => panic!("dead letter {other:?}"),
        })
        .collect();
    assert_eq!(got, bad);

    let metrics = runtime.metrics().render();
    let counted: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("weir_file_source_dead_letters_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, bad.len() as u64, "{metrics}");
}

/// Stages each epoch's `n` values in `DIR/.staging/shard-S-epoch-E`;
/// commit renames to `DIR/shard-S-epoch-E`.
struct Staged {
    dir: PathBuf,
    shard: usize,
    lines: Vec<u8>,
    fail: bool,
    precommitted: u64,
}

impl Staged {
    fn new(context: &ShardContext, dir: &Path, fail: bool) -> Staged {
        let staging = dir.join(".staging");
        fs::create_dir_all(&staging).unwrap();
        for entry in fs::read_dir(&staging).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let prefix = format!("shard-{}-epoch-", context.shard);
            let Some(epoch) = name.strip_prefix(&prefix) else {
                continue;
            };
            if epoch.parse::<u64>().unwrap() > context.committed_epoch {
                fs::remove_file(entry.path()).unwrap();
            }
        }
        Staged {
            dir: dir.to_path_buf(),
            shard: context.shard,
            lines: Vec::new(),
            fail,
            precommitted: 0,
        }
    }
}

impl Sink for Staged {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        assert!(
            !(self.fail && self.precommitted >= 2 && published_any(&self.dir)),
            "simulated crash after a commit"
        );
        for row in batch.iter() {
            writeln!(self.lines, "{}", row.get(2).as_int().unwrap()).unwrap();
        }
    }

    fn finish(&mut self) {
        assert!(!self.fail, "simulated crash at the end");
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.precommitted = epoch;
        if self.lines.is_empty() {
            return Ok(Vec::new());
        }
        let name = format!("shard-{}-epoch-{epoch}", self.shard);
        let staged = self.dir.join(".staging").join(&name);
        fs::write(&staged, std::mem::take(&mut self.lines))?;
        Ok(format!("{}\n{}", staged.display(), self.dir.join(&name).display()).into_bytes())
    }

    fn commit(staged: &[u8], _control: &weir_runtime::CommitControl) -> Result<(), OperatorError> {
        let text = std::str::from_utf8(staged).map_err(|e| e.to_string())?;
        let (from, to) = text.split_once('\n').ok_or("bad pre-commit")?;
        if Path::new(from).exists() {
            fs::rename(from, to).map_err(|e| format!("{from}: {e}"))?;
        } else if !Path::new(to).exists() {
            return Err(format!("neither {from} nor {to} exists").into());
        }
        Ok(())
    }
}

fn run_staged(
    input: &Path,
    data: &Path,
    out: &Path,
    fail: bool,
) -> Result<weir_runtime::RunReport, weir_runtime::Error> {
    let (spec, _) = build(&config(input)).expect("valid");
    let out: Arc<Path> = out.into();
    let mut graph = GraphBuilder::new();
    graph
        .source("file", move |context| {
            FileSource::new(spec.clone(), context)
        })
        .parallelism(Parallelism::One);
    graph.sink("out", move |context| Staged::new(context, &out, fail));
    graph.connect("file", "out", Partition::<Row>::RoundRobin);
    let runtime = Runtime::builder()
        .shards(2)
        .data_dir(data)
        .epoch_interval(Duration::from_millis(2))
        .build()
        .expect("runtime");
    runtime.run(graph.build().expect("graph"))
}

/// Whether any epoch's output was published (so an epoch committed).
fn published_any(out: &Path) -> bool {
    fs::read_dir(out)
        .unwrap()
        .flatten()
        .any(|entry| !entry.path().is_dir())
}

/// Every published `n`, with how often it was published.
fn published(out: &Path) -> BTreeMap<u64, u32> {
    let mut seen = BTreeMap::new();
    for entry in fs::read_dir(out).unwrap().flatten() {
        if entry.path().is_dir() {
            continue;
        }
        for line in fs::read_to_string(entry.path()).unwrap().lines() {
            *seen.entry(line.parse().unwrap()).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn a_failed_run_resumes_from_the_byte_offset_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, data, out) = (
        dir.path().join("events.ndjson"),
        dir.path().join("data"),
        dir.path().join("out"),
    );
    let count = 200_000;
    write_file(&input, count);

    let error = run_staged(&input, &data, &out, true).expect_err("the first run fails");
    eprintln!("first run: {error}");
    let before = published(&out);
    assert!(before.values().all(|&times| times == 1));
    eprintln!("lines published before the failure: {}", before.len());

    let report = run_staged(&input, &data, &out, false).expect("the second run recovers");
    eprintln!(
        "resumed from epoch {}, last committed {}",
        report.resumed_from_epoch, report.last_committed_epoch
    );
    assert!(
        report.resumed_from_epoch > 0 || before.is_empty(),
        "output was published, so an epoch had committed"
    );
    let after = published(&out);
    let expected: BTreeMap<u64, u32> = (0..count)
        .filter(|n| n % 1000 != 500)
        .map(|n| (n, 1))
        .collect();
    assert_eq!(after.len(), expected.len());
    assert!(after == expected, "a line is missing or published twice");

    let again = run_staged(&input, &data, &out, false).expect("a completed run restarts");
    assert!(again.already_complete);
    assert_eq!(published(&out), after);
}
