//! Goal: `dedup` keeps the same records in every run of the same bounded
//! input, however the shards interleave: the record kept per identity is
//! the earliest by event time (ties broken by the row's values), never the
//! first to arrive.
//!
//! Method: a 2-shard runtime runs source → dedup (hash-partitioned by
//! `dedup::partition_hash`) → collecting sink. The source has one instance
//! per shard, and both emit the same identities at the same event times,
//! with a different `source` and `note`: every identity reaches dedup from
//! both shards, ties between them included. Each instance emits its event
//! time in chunks of 100 ms, newest first within a chunk, then a watermark
//! at the chunk's end; so an identity's earliest record of a chunk arrives
//! after a later one from the same shard, and first-arrival would keep the
//! later one. The pipeline runs five times; every run's output (sorted)
//! must be the same and equal a direct computation: per identity, the
//! records sorted by (time, source, note), the first kept and each later
//! one kept when at least `window` after the last kept.

mod support;

use std::collections::BTreeMap;

use weir_operators::processors::dedup::{self, Dedup, DedupConfig};
use weir_operators::row::{Row, Schema, Type, Value};
use weir_runtime::{Emitter, GraphBuilder, Partition, ShardContext, Source, SourcePoll};

/// Chunks of event time each instance emits.
const CHUNKS: i64 = 20;
/// Event time per chunk, in milliseconds (one record per millisecond).
const CHUNK_MS: i64 = 100;
/// Identities: the record at time `t` is user `u{t % USERS}`, so each
/// user appears twice per chunk and instance.
const USERS: i64 = 50;
const WINDOW_MS: i64 = 700;
const RUNS: usize = 5;

/// (user, time, source, note): one record as the test compares it.
type Record = (String, i64, i64, String);

/// Instance `source`'s record at time `time`.
fn record(source: i64, time: i64) -> Record {
    let user = format!("u{}", time % USERS);
    (user, time, source, format!("s{source}-t{time}"))
}

fn schema() -> Schema {
    Schema::new([
        ("user", Type::String),
        ("timestamp", Type::Timestamp),
        ("source", Type::Int),
        ("note", Type::String),
    ])
}

/// Emits chunk after chunk, newest time first within each, then a
/// watermark at the chunk's end.
struct Chunks {
    source: i64,
    chunk: i64,
}

impl Source for Chunks {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        if self.chunk == CHUNKS {
            return SourcePoll::Exhausted;
        }
        let start = self.chunk * CHUNK_MS;
        for time in (start..start + CHUNK_MS).rev() {
            let (user, time, source, note) = record(self.source, time);
            out.push(&Row {
                values: vec![
                    Value::String(user),
                    Value::Timestamp(time),
                    Value::Int(source),
                    Value::String(note),
                ],
            });
        }
        self.chunk += 1;
        out.watermark((start + CHUNK_MS) as u64);
        SourcePoll::Ready
    }
}

fn to_record(row: &Row) -> Record {
    match &row.values[..] {
        [Value::String(user), Value::Timestamp(time), Value::Int(source), Value::String(note)] => {
            (user.clone(), *time, *source, note.clone())
        }
        other => panic!("unexpected row {other:?}"),
    }
}

/// One run of the pipeline; its output, sorted.
fn run_once() -> Vec<Record> {
    let config = DedupConfig {
        inputs: vec!["chunks".into()],
        fields: vec!["user".into()],
        window: format!("{WINDOW_MS}ms"),
        time_field: "timestamp".into(),
    };
    let (spec, output) = dedup::build(&config, &schema()).unwrap();
    assert_eq!(output, schema());
    let partition_spec = spec.clone();
    let mut graph = GraphBuilder::new();
    graph.source("chunks", |context: &ShardContext| Chunks {
        source: context.instance as i64,
        chunk: 0,
    });
    graph.processor("dedup", move |context| Dedup::new(spec.clone(), context));
    graph.connect(
        "chunks",
        "dedup",
        Partition::hash(move |row: &Row| dedup::partition_hash(&partition_spec, row)),
    );
    let rows = support::collect(&mut graph, "out", "dedup", 0);
    support::run(graph, 2);
    let mut records: Vec<Record> = rows.lock().unwrap().iter().map(to_record).collect();
    records.sort_unstable();
    records
}

/// The rule applied directly: per user, records by (time, source, note)
/// (the order of the row's remaining values), the first kept, then each
/// one at least `WINDOW_MS` after the last kept.
fn expected() -> Vec<Record> {
    let mut by_user: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for source in 0..2 {
        for time in 0..CHUNKS * CHUNK_MS {
            let record = record(source, time);
            by_user.entry(record.0.clone()).or_default().push(record);
        }
    }
    let mut kept = Vec::new();
    for mut records in by_user.into_values() {
        records.sort_unstable_by(|a, b| (a.1, a.2, &a.3).cmp(&(b.1, b.2, &b.3)));
        let mut last: Option<i64> = None;
        for record in records {
            if last.is_none_or(|first| record.1 >= first + WINDOW_MS) {
                last = Some(record.1);
                kept.push(record);
            }
        }
    }
    kept.sort_unstable();
    kept
}

#[test]
fn every_run_keeps_the_earliest_record_per_identity() {
    let expected = expected();
    // User `u` appears every 50 ms from `u` on, in both sources, until
    // 2 s; a window of 700 ms keeps it at `u`, `u + 700` and `u + 1400`,
    // each time the tie going to source 0.
    assert_eq!(expected.len(), USERS as usize * 3);
    assert!(expected.iter().all(|record| record.2 == 0));
    let outputs: Vec<Vec<Record>> = (0..RUNS).map(|_| run_once()).collect();
    for (run, output) in outputs.iter().enumerate() {
        assert_eq!(output, &outputs[0], "run {run} differs from run 0");
    }
    assert_eq!(outputs[0], expected);
}
