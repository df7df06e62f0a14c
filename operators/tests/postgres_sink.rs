//! Goal: the `postgres` sink writes every row exactly once: an epoch's rows
//! and its number land in one transaction, so committing an epoch again
//! (as recovery does) adds nothing; every type round-trips; and inside a
//! real runtime, a run that fails part-way and its recovery leave each row
//! in the table once.
//!
//! Method: a real PostgreSQL: `WEIR_TEST_POSTGRES_URL`, or else the cluster
//! `scripts/start-postgres.sh` starts (and installs, if needed). Each test
//! uses its own table and pipeline name. Rows are read back with SQL and
//! compared with what went in.

#[path = "support/replay.rs"]
mod support;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::{push_rows, row, schema, Crashing, Rows};
use weir_operators::row::{Row, Value};
use weir_operators::sinks::postgres::{
    build, Committed, PostgresSink, PostgresSinkConfig, PostgresStaged, PROGRESS_TABLE,
};
use weir_runtime::{GraphBuilder, Runtime, Sink};

/// The test database's connection string.
fn url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("WEIR_TEST_POSTGRES_URL") {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/start-postgres.sh");
        let output = Command::new("bash")
            .arg(script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run scripts/start-postgres.sh");
        assert!(
            output.status.success(),
            "scripts/start-postgres.sh failed; set WEIR_TEST_POSTGRES_URL to use another server"
        );
        String::from_utf8(output.stdout)
            .expect("UTF-8 URL")
            .trim()
            .to_string()
    })
}

fn client() -> postgres::Client {
    postgres::Client::connect(url(), postgres::NoTls).expect("connect to the test database")
}

/// A fresh table name and pipeline name for one test.
fn fresh(test: &str) -> (String, String) {
    let unique = format!(
        "{test}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut client = client();
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS \"{unique}\""))
        .unwrap();
    (unique.clone(), unique)
}

fn config(table: &str) -> PostgresSinkConfig {
    PostgresSinkConfig {
        inputs: vec!["rows".into()],
        url: url().to_string(),
        table: table.to_string(),
        create_table: true,
        tls: None,
    }
}

fn ids(table: &str) -> Vec<i64> {
    client()
        .query(&format!("SELECT id FROM \"{table}\" ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn progress(pipeline: &str, sink: &str) -> Vec<(i32, i64)> {
    client()
        .query(
            &format!(
                "SELECT shard, epoch FROM {PROGRESS_TABLE} \
                 WHERE pipeline = $1 AND sink = $2 ORDER BY shard"
            ),
            &[&pipeline, &sink],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
fn a_committed_epoch_committed_again_adds_nothing() {
    let (table, pipeline) = fresh("replay");
    let spec = build(&config(&table), &schema())
        .unwrap()
        .with_pipeline(&pipeline);
    let mut sink = PostgresSink::new(spec, &support::context("warehouse", 1));
    push_rows((0..500).map(row), |row| sink.push(row));
    let first = sink.precommit(1).unwrap();
    assert!(
        sink.precommit(2).unwrap().is_empty(),
        "an empty epoch stages nothing"
    );
    push_rows((500..800).map(row), |row| sink.push(row));
    let third = sink.precommit(3).unwrap();

    let decode = |bytes: &[u8]| PostgresStaged::from_bytes(bytes).unwrap();
    assert_eq!(decode(&first).commit(), Ok(Committed::Written));
    assert_eq!(ids(&table), (0..500).collect::<Vec<_>>());
    assert_eq!(progress(&pipeline, "warehouse"), [(1, 1)]);
    assert_eq!(decode(&first).commit(), Ok(Committed::AlreadyDone));
    <PostgresSink as Sink>::commit(&third, &weir_runtime::CommitControl::new()).expect("commit 3");
    <PostgresSink as Sink>::commit(&third, &weir_runtime::CommitControl::new())
        .expect("commit 3 again");
    // An older epoch replayed after a newer one is skipped too.
    <PostgresSink as Sink>::commit(&first, &weir_runtime::CommitControl::new())
        .expect("commit 1 again");
    assert_eq!(decode(&third).commit(), Ok(Committed::AlreadyDone));
    assert_eq!(ids(&table), (0..800).collect::<Vec<_>>(), "no duplicates");
    assert_eq!(progress(&pipeline, "warehouse"), [(1, 3)]);

    // Another shard's progress is its own.
    let spec = build(&config(&table), &schema())
        .unwrap()
        .with_pipeline(&pipeline);
    let mut other = PostgresSink::new(spec, &support::context("warehouse", 0));
    push_rows((800..810).map(row), |row| other.push(row));
    let other_first = other.precommit(1).unwrap();
    assert_eq!(decode(&other_first).commit(), Ok(Committed::Written));
    assert_eq!(progress(&pipeline, "warehouse"), [(0, 1), (1, 3)]);
    assert_eq!(ids(&table).len(), 810);
}

#[test]
fn every_type_round_trips() {
    let (table, pipeline) = fresh("types");
    let spec = build(&config(&table), &schema())
        .unwrap()
        .with_pipeline(&pipeline);
    let mut sink = PostgresSink::new(spec, &support::context("warehouse", 0));
    let mut rows: Vec<Row> = (0..40).map(row).collect();
    // Edge values: nulls everywhere but the id, extreme numbers, an old
    // timestamp, text that needs escaping.
    let mut nulls = Row::nulls(8);
    nulls.values[0] = Value::Int(1000);
    rows.push(nulls);
    rows.push(Row {
        values: vec![
            Value::Int(i64::MIN),
            Value::Float(-1.0e-300),
            Value::String("tab\there\\N back\\slash \r\n 漢字 'quote'".into()),
            Value::Bool(false),
            Value::Timestamp(-86_400_001),
            Value::Ip(weir_operators::row::Ip::from(
                "::ffff:1.2.3.4".parse::<std::net::IpAddr>().unwrap(),
            )),
            Value::List(vec![]),
            Value::Map(vec![]),
        ],
    });
    rows.push(Row {
        values: vec![
            Value::Int(i64::MAX),
            Value::Float(f64::MAX),
            Value::String(String::new()),
            Value::Bool(true),
            Value::Timestamp(253_402_300_799_999),
            Value::Ip(weir_operators::row::Ip::from(
                "fe80::1:2".parse::<std::net::IpAddr>().unwrap(),
            )),
            Value::List(vec![Value::Float(0.5), Value::Null, Value::Bool(true)]),
            Value::Map(vec![weir_operators::row::MapEntry {
                key: "a\"b".into(),
                value: Value::List(vec![Value::String("\\".into())]),
            }]),
        ],
    });
    push_rows(rows.clone(), |row| sink.push(row));
    <PostgresSink as Sink>::commit(
        &sink.precommit(1).unwrap(),
        &weir_runtime::CommitControl::new(),
    )
    .expect("commit");

    let back = client()
        .query(
            &format!(
                "SELECT id, ratio, path, ok, (extract(epoch FROM at) * 1000)::bigint, \
                 host(ip), tags::text, attrs::text, \
                 pg_typeof(ratio)::text, pg_typeof(at)::text, pg_typeof(ip)::text, \
                 pg_typeof(tags)::text FROM \"{table}\" ORDER BY id"
            ),
            &[],
        )
        .unwrap();
    let mut expected = rows.clone();
    expected.sort_by_key(|row| match row.values[0] {
        Value::Int(id) => id,
        _ => unreachable!(),
    });
    assert_eq!(back.len(), expected.len());
    for (got, want) in back.iter().zip(&expected) {
        let json = |value: &Value| -> Option<serde_json::Value> {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(value).unwrap();
            let archived =
                rkyv::access::<weir_operators::row::ArchivedValue, rkyv::rancor::Error>(&bytes)
                    .unwrap();
            if archived.is_null() {
                return None;
            }
            let mut text = String::new();
            weir_operators::row::write_json_value(archived, &mut text);
            Some(serde_json::from_str(&text).unwrap())
        };
        let v = &want.values;
        assert_eq!(Value::Int(got.get::<_, i64>(0)), v[0]);
        let ratio: Option<f64> = got.get(1);
        assert_eq!(
            ratio.map(Value::Float).unwrap_or(Value::Null),
            v[1],
            "ratio"
        );
        let path: Option<String> = got.get(2);
        assert_eq!(path.map(Value::String).unwrap_or(Value::Null), v[2], "path");
        let ok: Option<bool> = got.get(3);
        assert_eq!(ok.map(Value::Bool).unwrap_or(Value::Null), v[3], "ok");
        let at: Option<i64> = got.get(4);
        assert_eq!(at.map(Value::Timestamp).unwrap_or(Value::Null), v[4], "at");
        let ip: Option<String> = got.get(5);
        let want_ip = match &v[5] {
            Value::Ip(ip) => Some(ip.to_string()),
            _ => None,
        };
        assert_eq!(ip, want_ip, "ip");
        for (column, index) in [(6, 6), (7, 7)] {
            let text: Option<String> = got.get(column);
            let value = text.map(|text| serde_json::from_str::<serde_json::Value>(&text).unwrap());
            assert_eq!(value, json(&v[index]), "column {column}");
        }
        let types: Vec<String> = (8..12).map(|column| got.get(column)).collect();
        assert_eq!(
            types,
            [
                "double precision",
                "timestamp with time zone",
                "inet",
                "jsonb"
            ]
        );
    }
}

#[test]
fn a_server_that_cannot_be_reached_fails_the_commit_naming_it() {
    let spec = build(
        &PostgresSinkConfig {
            url: "postgresql://weir@127.0.0.1:1/weir?connect_timeout=5".into(),
            ..config("unreachable")
        },
        &schema(),
    )
    .unwrap();
    let mut sink = PostgresSink::new(spec, &support::context("warehouse", 0));
    push_rows([row(1)], |row| sink.push(row));
    let error = <PostgresSink as Sink>::commit(
        &sink.precommit(1).unwrap(),
        &weir_runtime::CommitControl::new(),
    )
    .unwrap_err();
    assert_eq!(
        error.kind(),
        weir_runtime::OperatorErrorKind::External,
        "{error}"
    );
    let message = error.message();
    assert!(
        message.contains("cannot connect") && message.contains("127.0.0.1"),
        "{error}"
    );
}

/// Rows `0..ROWS` into a postgres sink on a 2-shard runtime with a data
/// directory; `fail_at` makes the sink panic on that row.
fn run(
    data: &std::path::Path,
    table: &str,
    pipeline: &str,
    fail_at: Option<i64>,
) -> Result<weir_runtime::RunReport, weir_runtime::Error> {
    const ROWS: i64 = 3000;
    let spec = build(&config(table), &schema())
        .unwrap()
        .with_pipeline(pipeline);
    let mut graph = GraphBuilder::new();
    graph.source("rows", move |context| {
        Rows::new(context, ROWS, fail_at.map(|_| ROWS / 3))
    });
    graph.sink("warehouse", move |context| Crashing {
        inner: PostgresSink::new(spec.clone(), context),
        fail_at,
    });
    // Rows cross shards: a shard that fails is then noticed by the other
    // one (through the closed rings) and the whole run fails.
    graph.connect("rows", "warehouse", support::spread());
    let runtime = Runtime::builder()
        .shards(2)
        .data_dir(data)
        .epoch_interval(Duration::from_millis(10))
        .build()
        .expect("runtime starts");
    runtime.run(graph.build().expect("valid graph"))
}

#[test]
fn every_row_lands_once_across_a_failed_run_and_its_recovery() {
    let (table, pipeline) = fresh("recovery");
    let data = tempfile::tempdir().unwrap();
    let error = run(data.path(), &table, &pipeline, Some(2500)).expect_err("the sink fails");
    assert!(error.to_string().contains("simulated crash"), "{error}");
    let before = ids(&table);
    assert!(!before.is_empty(), "epochs committed before the failure");
    assert!(before.len() < 3000);

    let report = run(data.path(), &table, &pipeline, None).expect("the recovery run succeeds");
    assert!(
        report.resumed_from_epoch > 0,
        "recovered from a committed epoch"
    );
    assert_eq!(ids(&table), (0..3000).collect::<Vec<_>>(), "every row once");
    let shards: Vec<i32> = progress(&pipeline, "warehouse")
        .iter()
        .map(|(shard, _)| *shard)
        .collect();
    assert_eq!(shards, [0, 1]);

    let again = run(data.path(), &table, &pipeline, None).expect("a complete run restarts");
    assert!(again.already_complete);
    assert_eq!(ids(&table).len(), 3000);
}
