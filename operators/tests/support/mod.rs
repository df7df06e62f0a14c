//! Shared by the operator tests: a source of given rows and a sink that
//! collects rows.
#![allow(dead_code)]

pub mod http;
pub mod ingest;

use std::sync::{Arc, Mutex};

use weir_operators::row::{Row, Schema, Value};
use weir_operators::sinks::ForEach;
use weir_runtime::{Emitter, GraphBuilder, Parallelism, Runtime, Source, SourcePoll};

/// Emits `rows` in order from one instance, then a watermark of the largest
/// timestamp in field `time` (if any) and ends.
pub struct RowsSource {
    rows: std::vec::IntoIter<Row>,
}

impl Source for RowsSource {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        for _ in 0..out.batch_records_max() {
            match self.rows.next() {
                Some(row) => out.push(&row),
                None => return SourcePoll::Exhausted,
            }
        }
        SourcePoll::Ready
    }
}

/// Adds source `name` emitting `rows` (one instance).
pub fn rows_source(graph: &mut GraphBuilder, name: &str, rows: Vec<Row>) {
    graph
        .source(name, move |_| RowsSource {
            rows: rows.clone().into_iter(),
        })
        .parallelism(Parallelism::One);
}

/// Adds sink `name` reading port `port` of `from`, collecting its rows.
pub fn collect(
    graph: &mut GraphBuilder,
    name: &str,
    from: &str,
    port: usize,
) -> Arc<Mutex<Vec<Row>>> {
    let rows = Arc::new(Mutex::new(Vec::new()));
    let sink_rows = rows.clone();
    graph.sink(name, move |_| {
        let rows = sink_rows.clone();
        ForEach::<Row, _, _>::new(
            move |row: &weir_operators::row::ArchivedRow| rows.lock().unwrap().push(row.to_row()),
            || {},
        )
    });
    graph.connect_port::<Row>(from, port, name, weir_runtime::Partition::Forward);
    rows
}

/// Runs `graph` on `shards` shards without a data directory.
pub fn run(graph: GraphBuilder, shards: usize) {
    let runtime = Runtime::builder()
        .shards(shards)
        .pin(false)
        .build()
        .expect("runtime starts");
    runtime
        .run(graph.build().expect("valid graph"))
        .expect("run completes");
}

/// A row of `values` checked against `schema`'s width.
pub fn row(schema: &Schema, values: Vec<Value>) -> Row {
    assert_eq!(values.len(), schema.len(), "row width");
    Row { values }
}

/// Takes the collected rows, sorted by their debug form (shards interleave).
pub fn sorted(rows: &Arc<Mutex<Vec<Row>>>) -> Vec<Row> {
    let mut rows = rows.lock().unwrap().clone();
    rows.sort_by_key(|row| format!("{row:?}"));
    rows
}
