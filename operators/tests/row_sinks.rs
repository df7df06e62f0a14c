//! Goal: the row sinks write what they are given, exactly:
//! - `RowFileSink` Parquet files read back by an independent reader (the
//!   `parquet` crate's own `SerializedFileReader` and record API, not our
//!   writer code) hold every row with exact values of every type, nulls
//!   included, with the documented Parquet types;
//! - NDJSON files hold exactly the expected lines;
//! - the staging protocol holds for row files: invisible until commit,
//!   idempotent commit, no file for an empty epoch, staged files of
//!   uncommitted epochs discarded at start-up;
//! - in a real `Runtime` with a data directory, a run that fails mid-way
//!   and is recovered publishes every row exactly once (Parquet), and a
//!   stale staged file of an uncommitted epoch is removed, never published;
//! - the stdout sink prints the expected lines; the blackhole counts rows
//!   and bytes in its totals and its Prometheus counter.
//!
//! Method: plain method calls on the sinks in temporary directories for
//! the file checks; a generated source whose epochs are paced by its
//! barriers (it emits one chunk per epoch, so no timing is involved) for
//! the runtime checks. If a `duckdb` CLI is installed, the Parquet file is
//! also read with it (the test passes without it).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parquet::basic::{LogicalType, TimeUnit, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use rkyv::rancor;
use weir_operators::row::{ArchivedRow, Ip, MapEntry, Row, Schema, Type, Value};
use weir_operators::sinks::file::STAGING_DIRECTORY;
use weir_operators::sinks::{
    blackhole, file, stdout, BlackholeSink, BlackholeSinkConfig, ParquetCompression, RowFileFormat,
    RowFileSink, RowFileSinkConfig, StdoutSink, StdoutSinkConfig,
};
use weir_runtime::metrics::Registry;
use weir_runtime::{
    Batch, Emitter, GraphBuilder, OperatorError, Partition, Processor, Runtime, ShardContext, Sink,
    Source, SourcePoll,
};

fn all_types() -> Schema {
    Schema::new([
        ("flag", Type::Bool),
        ("count", Type::Int),
        ("ratio", Type::Float),
        ("name", Type::String),
        ("at", Type::Timestamp),
        ("client", Type::Ip),
        ("tags", Type::List),
        ("attrs", Type::Map),
    ])
}

fn ip(text: &str) -> Value {
    Value::Ip(Ip::from(text.parse::<IpAddr>().expect("address")))
}

/// Rows of [`all_types`]: edge values, and a null in every column.
fn typed_rows() -> Vec<Row> {
    vec![
        Row {
            values: vec![
                Value::Bool(true),
                Value::Int(i64::MIN),
                Value::Float(-0.5),
                Value::String("héllo \"wörld\"\n".into()),
                Value::Timestamp(1_764_165_600_250),
                ip("10.0.0.1"),
                Value::List(vec![Value::Int(1), Value::String("a".into()), Value::Null]),
                Value::Map(vec![MapEntry {
                    key: "k".into(),
                    value: Value::Bool(false),
                }]),
            ],
        },
        Row::nulls(8),
        Row {
            values: vec![
                Value::Bool(false),
                Value::Int(i64::MAX),
                Value::Float(1e300),
                Value::String(String::new()),
                Value::Timestamp(-1),
                ip("2001:db8::1"),
                Value::List(Vec::new()),
                Value::Map(Vec::new()),
            ],
        },
        // Nulls in some columns only, and a row narrower than the schema.
        Row {
            values: vec![
                Value::Null,
                Value::Int(7),
                Value::Null,
                Value::String("x".into()),
            ],
        },
    ]
}

/// What the Parquet reader must return for [`typed_rows`].
fn expected_fields() -> Vec<Vec<Field>> {
    let s = |text: &str| Field::Str(text.into());
    vec![
        vec![
            Field::Bool(true),
            Field::Long(i64::MIN),
            Field::Double(-0.5),
            s("héllo \"wörld\"\n"),
            Field::TimestampMillis(1_764_165_600_250),
            s("10.0.0.1"),
            s("[1,\"a\",null]"),
            s("{\"k\":false}"),
        ],
        vec![Field::Null; 8],
        vec![
            Field::Bool(false),
            Field::Long(i64::MAX),
            Field::Double(1e300),
            s(""),
            Field::TimestampMillis(-1),
            s("2001:db8::1"),
            s("[]"),
            s("{}"),
        ],
        vec![
            Field::Null,
            Field::Long(7),
            Field::Null,
            s("x"),
            Field::Null,
            Field::Null,
            Field::Null,
            Field::Null,
        ],
    ]
}

/// Archives rows the way batches hold them.
fn archive(rows: &[Row]) -> Vec<rkyv::util::AlignedVec> {
    rows.iter()
        .map(|row| rkyv::to_bytes::<rancor::Error>(row).expect("archive"))
        .collect()
}

fn archived(bytes: &[rkyv::util::AlignedVec]) -> Vec<&ArchivedRow> {
    bytes
        .iter()
        .map(|bytes| rkyv::access::<ArchivedRow, rancor::Error>(bytes).expect("valid row"))
        .collect()
}

fn config(path: &Path, format: RowFileFormat) -> RowFileSinkConfig {
    RowFileSinkConfig {
        inputs: vec!["in".into()],
        path: path.to_owned(),
        format,
        compression: None,
        row_group_rows: None,
        // A file per shard and epoch, published when the epoch commits.
        roll_interval: Some("0s".into()),
        roll_size: None,
    }
}

/// Visible names in `directory`, sorted (dot files excluded).
fn visible(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(directory)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn staged(directory: &Path) -> Vec<String> {
    visible(&directory.join(STAGING_DIRECTORY))
}

/// Every row of a Parquet file, read with the `parquet` crate's reader.
fn read_parquet(path: &Path) -> Vec<Vec<(String, Field)>> {
    let reader = SerializedFileReader::try_from(path).expect("a readable Parquet file");
    reader
        .get_row_iter(None)
        .expect("row iterator")
        .map(|row| row.expect("row").into_columns())
        .collect()
}

/// Writes `rows` as one epoch of shard 0 and commits it; returns the file.
fn write_epoch(config: &RowFileSinkConfig, schema: &Schema, rows: &[Row]) -> PathBuf {
    let spec = file::build(config, schema).expect("valid config");
    let mut sink = RowFileSink::at_epoch(spec, 0, 1).expect("sink");
    let bytes = archive(rows);
    let rows = archived(&bytes);
    // Two writes, as two batches would arrive.
    let (first, second) = rows.split_at(rows.len() / 2);
    sink.write_rows(first.iter().copied());
    sink.write_rows(second.iter().copied());
    let staged = sink.precommit_durably(1).expect("precommit");
    assert_eq!(staged.lines, rows.len() as u64);
    staged.commit().expect("commit");
    staged.target
}

fn parquet_matches_every_type(compression: Option<ParquetCompression>, row_group_rows: usize) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let schema = all_types();
    let mut config = config(directory.path(), RowFileFormat::Parquet);
    config.compression = compression;
    config.row_group_rows = Some(row_group_rows);
    let path = write_epoch(&config, &schema, &typed_rows());
    assert_eq!(
        path,
        directory.path().join("shard-000-epoch-0000000001.parquet")
    );

    let read = read_parquet(&path);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(read.len(), typed_rows().len());
    for (row, expected) in read.iter().zip(expected_fields()) {
        let row_names: Vec<&str> = row.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(row_names, names);
        let values: Vec<Field> = row.iter().map(|(_, field)| field.clone()).collect();
        assert_eq!(values, expected);
    }

    let reader = SerializedFileReader::try_from(path.as_path()).expect("reader");
    let metadata = reader.metadata();
    assert_eq!(metadata.file_metadata().num_rows(), 4);
    assert_eq!(
        metadata.num_row_groups(),
        4_usize.div_ceil(row_group_rows),
        "row groups of at most {row_group_rows} rows"
    );
    let codec = match compression.unwrap_or_default() {
        ParquetCompression::None => parquet::basic::Compression::UNCOMPRESSED,
        ParquetCompression::Snappy => parquet::basic::Compression::SNAPPY,
        ParquetCompression::Zstd => parquet::basic::Compression::ZSTD(Default::default()),
    };
    for group in metadata.row_groups() {
        for column in group.columns() {
            // The level is not stored; compare the codec only.
            assert_eq!(
                std::mem::discriminant(&column.compression()),
                std::mem::discriminant(&codec)
            );
        }
    }
    let columns = metadata.file_metadata().schema_descr();
    let types: Vec<(PhysicalType, Option<LogicalType>)> = (0..columns.num_columns())
        .map(|i| {
            let column = columns.column(i);
            (column.physical_type(), column.logical_type_ref().cloned())
        })
        .collect();
    assert_eq!(
        types,
        [
            (PhysicalType::BOOLEAN, None),
            (PhysicalType::INT64, None),
            (PhysicalType::DOUBLE, None),
            (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
            (
                PhysicalType::INT64,
                Some(LogicalType::timestamp(true, TimeUnit::MILLIS))
            ),
            (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
            (PhysicalType::BYTE_ARRAY, Some(LogicalType::Json)),
            (PhysicalType::BYTE_ARRAY, Some(LogicalType::Json)),
        ]
    );
    for i in 0..columns.num_columns() {
        assert!(
            columns.column(i).self_type().is_optional(),
            "column {i} is OPTIONAL"
        );
    }
    duckdb_check(&path);
}

#[test]
fn parquet_reads_back_exactly_with_the_parquet_crates_reader() {
    parquet_matches_every_type(None, 65_536);
}

#[test]
fn compressed_parquet_reads_back_the_same() {
    parquet_matches_every_type(Some(ParquetCompression::Snappy), 2);
    parquet_matches_every_type(Some(ParquetCompression::Zstd), 2);
    parquet_matches_every_type(Some(ParquetCompression::None), 2);
}

#[test]
fn parquet_row_groups_split_at_row_group_rows_and_read_back_the_same() {
    parquet_matches_every_type(None, 3);
    parquet_matches_every_type(None, 1);
}

/// If the `duckdb` CLI is installed, it must read the file too (rows,
/// non-null flags, the sum of `count`); without it this checks nothing.
fn duckdb_check(path: &Path) {
    let Ok(output) = std::process::Command::new("duckdb")
        .arg("-noheader")
        .arg("-list")
        .arg("-c")
        .arg(format!(
            "SELECT count(*), count(flag), sum(count::HUGEINT) FROM read_parquet('{}')",
            path.display()
        ))
        .output()
    else {
        return; // no duckdb here
    };
    assert!(output.status.success(), "duckdb failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    // i64::MIN + i64::MAX + 7 = 6.
    assert_eq!(text.trim(), "4|2|6", "duckdb read {text}");
}

#[test]
fn ndjson_files_hold_exactly_the_expected_lines() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = write_epoch(
        &config(directory.path(), RowFileFormat::Ndjson),
        &all_types(),
        &typed_rows(),
    );
    assert_eq!(
        path,
        directory.path().join("shard-000-epoch-0000000001.ndjson")
    );
    let text = fs::read_to_string(&path).expect("read");
    let expected = concat!(
        r#"{"flag":true,"count":-9223372036854775808,"ratio":-0.5,"name":"héllo \"wörld\"\n","at":"2025-11-26T14:00:00.250Z","client":"10.0.0.1","tags":[1,"a",null],"attrs":{"k":false}}"#,
        "\n",
        "{}\n",
        r#"{"flag":false,"count":9223372036854775807,"ratio":1e300,"name":"","at":"1969-12-31T23:59:59.999Z","client":"2001:db8::1","tags":[],"attrs":{}}"#,
        "\n",
        r#"{"count":7,"name":"x"}"#,
        "\n",
    );
    assert_eq!(text, expected);
}

#[test]
fn config_problems_name_their_option() {
    let schema = all_types();
    let path = Path::new("out");
    let mut bad = config(path, RowFileFormat::Ndjson);
    bad.compression = Some(ParquetCompression::Zstd);
    assert_eq!(
        file::build(&bad, &schema).unwrap_err().option,
        "compression"
    );
    let mut bad = config(path, RowFileFormat::Ndjson);
    bad.row_group_rows = Some(10);
    assert_eq!(
        file::build(&bad, &schema).unwrap_err().option,
        "row_group_rows"
    );
    let mut bad = config(path, RowFileFormat::Parquet);
    bad.row_group_rows = Some(0);
    assert_eq!(
        file::build(&bad, &schema).unwrap_err().option,
        "row_group_rows"
    );
    let bad = config(Path::new(""), RowFileFormat::Parquet);
    assert_eq!(file::build(&bad, &schema).unwrap_err().option, "path");
    let empty = Schema::default();
    let bad = config(path, RowFileFormat::Parquet);
    assert_eq!(file::build(&bad, &empty).unwrap_err().option, "format");
    assert!(file::build(&config(path, RowFileFormat::Ndjson), &empty).is_ok());

    // The TOML shape: defaults, and unknown keys rejected.
    let parsed: RowFileSinkConfig = toml::from_str("path = \"out\"").expect("minimal config");
    assert_eq!(parsed.format, RowFileFormat::Ndjson);
    let parsed: RowFileSinkConfig = toml::from_str(
        "inputs = [\"a\"]\npath = \"o\"\nformat = \"parquet\"\ncompression = \"snappy\"",
    )
    .expect("parquet config");
    assert_eq!(parsed.compression, Some(ParquetCompression::Snappy));
    assert!(toml::from_str::<RowFileSinkConfig>("path = \"o\"\nfromat = \"x\"").is_err());
    assert!(toml::from_str::<StdoutSinkConfig>("format = \"ndjson\"").is_ok());
    assert!(toml::from_str::<StdoutSinkConfig>("format = \"csv\"").is_err());
    assert!(toml::from_str::<BlackholeSinkConfig>("inputs = [\"a\"]").is_ok());
}

fn context(shard: usize, committed_epoch: u64, metrics: &Registry) -> ShardContext {
    ShardContext {
        shard,
        shards: metrics.shards(),
        instance: shard,
        instances: metrics.shards(),
        node: Arc::from("out"),
        committed_epoch,
        snapshots: true,
        metrics: metrics.clone(),
    }
}

#[test]
fn row_files_follow_the_staging_protocol() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let schema = all_types();
    let spec = file::build(&config(path, RowFileFormat::Parquet), &schema).expect("spec");
    let metrics = Registry::new(2);
    let bytes = archive(&typed_rows());
    let rows = archived(&bytes);

    let mut sink = RowFileSink::new(spec.clone(), &context(1, 0, &metrics)).expect("sink");
    assert_eq!(sink.epoch(), 1);
    // Epoch 1: no rows, no file, nothing to commit.
    let empty = sink.precommit_durably(1).expect("precommit");
    assert_eq!(empty.lines, 0);
    empty.commit().expect("an empty commit");
    assert!(staged(path).is_empty() && visible(path).is_empty());
    // Epoch 2: staged, invisible until commit, commit twice is fine.
    sink.write_rows(rows.iter().copied());
    let two = sink.precommit_durably(2).expect("precommit");
    assert_eq!(staged(path), ["shard-001-epoch-0000000002.parquet"]);
    assert!(
        visible(path).is_empty(),
        "pre-committed output is invisible"
    );
    two.commit().expect("commit");
    two.commit().expect("commit again");
    assert_eq!(visible(path), ["shard-001-epoch-0000000002.parquet"]);
    assert!(staged(path).is_empty());
    // Epoch 3 is pre-committed, epoch 4 half written, then a crash.
    sink.write_rows(rows.iter().copied());
    let three = sink.precommit_durably(3).expect("precommit");
    sink.write_rows(rows.iter().copied());
    drop(sink);
    assert_eq!(
        staged(path),
        [
            "shard-001-epoch-0000000003.parquet",
            "shard-001-epoch-0000000004.parquet"
        ]
    );
    // Another shard's staged file must survive shard 1's start-up.
    let mut other = RowFileSink::new(spec.clone(), &context(0, 0, &metrics)).expect("sink");
    other.write_rows(rows.iter().copied());
    let other_staged = other.precommit_durably(1).expect("precommit");

    // Restart with epoch 2 committed: 3 and 4 never committed and are
    // produced again, so their staged files go.
    let restarted = RowFileSink::new(spec.clone(), &context(1, 2, &metrics)).expect("sink");
    assert_eq!(restarted.epoch(), 3);
    assert_eq!(staged(path), ["shard-000-epoch-0000000001.parquet"]);
    // Committing a lost, never-published epoch is an error, not a silent
    // success.
    assert!(three.commit().is_err());
    other_staged.commit().expect("commit");
    assert_eq!(
        read_parquet(&path.join("shard-000-epoch-0000000001.parquet")).len(),
        4
    );
    assert_eq!(
        read_parquet(&path.join("shard-001-epoch-0000000002.parquet")).len(),
        4
    );

    // Restart with epoch 3 committed keeps a staged file of epoch 3 for its
    // repeated commit.
    let mut sink = RowFileSink::new(spec.clone(), &context(1, 2, &metrics)).expect("sink");
    sink.write_rows(rows.iter().copied());
    let three = sink.precommit_durably(3).expect("precommit");
    drop(sink);
    let _ = RowFileSink::new(spec, &context(1, 3, &metrics)).expect("sink");
    three.commit().expect("commit after restart");
    assert_eq!(read_parquet(&three.target).len(), 4);
}

// ---------------------------------------------------------------------
// In a runtime.

const CHUNK: u64 = 700;
const CHUNKS: u64 = 12;

/// Rows `{id, at, host, ok}`: instance `i` emits ids `i, i + n, ...`, one
/// chunk of `CHUNK` rows per epoch: after a chunk it idles until its next
/// barrier (`position`), so epochs interleave with the data. (After
/// `IDLE_POLLS_MAX` idle polls it goes on anyway: a failed run injects no
/// more barriers, and the source must reach its closed output to end.)
/// Its position is the next id.
struct Ids {
    next: u64,
    step: u64,
    end: u64,
    /// Rows left in the current chunk.
    budget: Cell<u64>,
    /// Whether a barrier grants a new chunk (else `budget` is all rows).
    paced: bool,
    /// Polls that found the budget spent, since the last chunk began.
    idle_polls: u32,
}

const IDLE_POLLS_MAX: u32 = 500;

fn total_rows(instances: u64) -> u64 {
    CHUNK * CHUNKS * instances
}

fn id_schema() -> Schema {
    Schema::new([
        ("id", Type::Int),
        ("at", Type::Timestamp),
        ("host", Type::String),
        ("ok", Type::Bool),
    ])
}

impl Source for Ids {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        if self.next >= self.end {
            return SourcePoll::Exhausted;
        }
        if self.budget.get() == 0 {
            self.idle_polls += 1;
            if self.idle_polls < IDLE_POLLS_MAX {
                return SourcePoll::Idle;
            }
            self.budget.set(CHUNK);
        }
        self.idle_polls = 0;
        let room = out.batch_records_max() as u64;
        for _ in 0..room.min(self.budget.get()) {
            if self.next >= self.end {
                break;
            }
            let id = self.next as i64;
            out.push(&Row {
                values: vec![
                    Value::Int(id),
                    Value::Timestamp(1_700_000_000_000 + id),
                    Value::String(format!("host-{}", id % 7)),
                    if id % 5 == 0 {
                        Value::Null
                    } else {
                        Value::Bool(id % 2 == 0)
                    },
                ],
            });
            self.next += self.step;
            self.budget.set(self.budget.get() - 1);
        }
        SourcePoll::Ready
    }

    /// Called at every barrier: the next chunk may go.
    fn position(&self) -> Vec<u8> {
        if self.paced {
            self.budget.set(CHUNK);
        }
        self.next.to_le_bytes().to_vec()
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| OperatorError::invalid("bad position"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Passes rows on (through a hash exchange, so rows change shards).
struct Pass;

impl Processor for Pass {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            out.push(&row.to_row());
        }
    }
}

/// The row file sink, crashing (a panic, as a bug would) on the first
/// batch holding an id at or above `fail_at`: earlier epochs have been
/// pre-committed, some committed, by then, and the current one is half
/// written.
struct CrashingSink {
    inner: RowFileSink,
    fail_at: Option<i64>,
}

impl Sink for CrashingSink {
    type Input = Row;

    fn write(&mut self, port: usize, batch: &Batch<Row>) {
        if let Some(fail_at) = self.fail_at {
            let crash = batch
                .iter()
                .any(|row| row.get(0).as_int().is_some_and(|id| id >= fail_at));
            assert!(!crash, "simulated crash");
        }
        self.inner.write(port, batch);
    }

    fn finish(&mut self) {
        self.inner.finish();
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.inner.precommit(epoch)
    }

    fn sync(staged: &[u8]) -> Result<(), OperatorError> {
        RowFileSink::sync(staged)
    }

    fn commit(staged: &[u8], control: &weir_runtime::CommitControl) -> Result<(), OperatorError> {
        RowFileSink::commit(staged, control)
    }
}

fn run_pipeline(
    data: &Path,
    out: &Path,
    fail_at: Option<i64>,
) -> Result<weir_runtime::RunReport, weir_runtime::Error> {
    let schema = id_schema();
    let mut config = config(out, RowFileFormat::Parquet);
    config.row_group_rows = Some(500);
    let spec = file::build(&config, &schema).expect("spec");
    let mut graph = GraphBuilder::new();
    graph.source("ids", |context| {
        let step = context.instances as u64;
        Ids {
            next: context.instance as u64,
            step,
            end: total_rows(step),
            budget: Cell::new(CHUNK),
            paced: true,
            idle_polls: 0,
        }
    });
    graph.processor("pass", |_| Pass);
    graph.sink("out", move |context| CrashingSink {
        inner: RowFileSink::new(spec.clone(), context).expect("row file sink"),
        fail_at,
    });
    graph.connect(
        "ids",
        "pass",
        Partition::hash(|row: &Row| match row.values[0] {
            Value::Int(id) => id as u64,
            _ => 0,
        }),
    );
    graph.connect("pass", "out", Partition::<Row>::Forward);
    let runtime = Runtime::builder()
        .shards(2)
        .data_dir(data)
        .epoch_interval(Duration::from_millis(2))
        .build()
        .expect("runtime starts");
    runtime.run(graph.build().expect("valid graph"))
}

/// Every published row's id, with how often it was published, checking
/// the other values.
fn published_ids(out: &Path) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for name in visible(out) {
        assert!(name.ends_with(".parquet"), "unexpected file {name}");
        for row in read_parquet(&out.join(&name)) {
            let Field::Long(id) = row[0].1 else {
                panic!("no id in {row:?}");
            };
            assert_eq!(row[1].1, Field::TimestampMillis(1_700_000_000_000 + id));
            assert_eq!(row[2].1, Field::Str(format!("host-{}", id % 7)));
            let ok = if id % 5 == 0 {
                Field::Null
            } else {
                Field::Bool(id % 2 == 0)
            };
            assert_eq!(row[3].1, ok);
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

#[test]
fn a_failed_parquet_run_recovers_with_every_row_exactly_once() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let error = run_pipeline(data.path(), out.path(), Some(total_rows(2) as i64 / 2))
        .expect_err("the run fails");
    assert!(error.to_string().contains("simulated crash"), "{error}");
    let partial = published_ids(out.path());
    assert!(
        partial.values().all(|&count| count == 1),
        "a row published twice"
    );
    assert!(
        (partial.len() as u64) < total_rows(2),
        "the failed run cannot have published everything"
    );

    // A stale staged file of an epoch that never committed (as a crash
    // between pre-commit and commit leaves): start-up must discard it.
    let stale = out
        .path()
        .join(STAGING_DIRECTORY)
        .join("shard-000-epoch-0000999999.parquet");
    fs::write(&stale, b"never committed").expect("plant a stale staged file");

    let recovered = run_pipeline(data.path(), out.path(), None).expect("recovery succeeds");
    assert!(!recovered.already_complete);
    assert!(!stale.exists(), "the stale staged file was not discarded");
    let ids = published_ids(out.path());
    let expected: BTreeMap<i64, usize> = (0..total_rows(2) as i64).map(|id| (id, 1)).collect();
    assert_eq!(ids.len(), expected.len(), "rows missing");
    assert_eq!(ids, expected, "every row exactly once");
    assert!(staged(out.path()).is_empty(), "staged files left behind");

    let again = run_pipeline(data.path(), out.path(), None).expect("a completed run restarts");
    assert!(again.already_complete);
    assert_eq!(published_ids(out.path()), expected);
}

#[test]
fn stdout_sink_prints_ndjson_lines_and_blackhole_counts() {
    let schema = Schema::new([("id", Type::Int), ("name", Type::String)]);
    let capture = Arc::new(Mutex::new(Vec::new()));
    let mut spec = stdout::build(&StdoutSinkConfig::default(), &schema).expect("spec");
    spec.capture = Some(capture.clone());
    let hole =
        blackhole::build(&BlackholeSinkConfig { inputs: Vec::new() }, &schema).expect("spec");
    let totals = hole.totals.clone();
    let rows = 10_000_u64;

    let mut graph = GraphBuilder::new();
    graph.source("ids", move |context| {
        let step = context.instances as u64;
        Ids {
            next: context.instance as u64,
            step,
            end: rows,
            budget: Cell::new(u64::MAX),
            paced: false,
            idle_polls: 0,
        }
    });
    graph.processor("narrow", |_| Narrow);
    graph.sink("print", move |context| {
        StdoutSink::new(spec.clone(), context)
    });
    graph.sink("hole", move |context| {
        BlackholeSink::new(hole.clone(), context)
    });
    graph.connect("ids", "narrow", Partition::<Row>::Forward);
    graph.connect("narrow", "print", Partition::<Row>::Forward);
    graph.connect("narrow", "hole", Partition::<Row>::Forward);
    let runtime = Runtime::builder()
        .shards(2)
        .build()
        .expect("runtime starts");
    let metrics = runtime.metrics().clone();
    runtime
        .run(graph.build().expect("valid graph"))
        .expect("run");

    let text = String::from_utf8(capture.lock().unwrap().clone()).expect("utf-8");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_by_key(|line| {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        value["id"].as_i64().expect("id")
    });
    let expected: Vec<String> = (0..rows)
        .map(|id| format!("{{\"id\":{id},\"name\":\"host-{}\"}}", id % 7))
        .collect();
    assert_eq!(lines, expected);
    assert!(text.ends_with('\n'));

    assert_eq!(totals.records(), rows);
    assert!(totals.bytes() > rows * 8, "{} bytes", totals.bytes());
    let rendered = metrics.render();
    assert!(
        rendered.contains(&format!(
            "weir_blackhole_records_total{{sink=\"hole\"}} {rows}\n"
        )),
        "{rendered}"
    );
    assert!(rendered.contains(&format!(
        "weir_blackhole_bytes_total{{sink=\"hole\"}} {}\n",
        totals.bytes()
    )));
}

/// Keeps `id` and `host` (as `name`).
struct Narrow;

impl Processor for Narrow {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            out.push(&Row {
                values: vec![row.get(0).to_value(), row.get(2).to_value()],
            });
        }
    }
}
