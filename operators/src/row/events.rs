//! [`EventRows`]: generator and ingest events as rows, so the processors of
//! config-driven pipelines can read the `generator`, `tcp` and `http`
//! sources.
//!
//! The schema is [`event_schema`]: `id: int`, `key: string`,
//! `timestamp: timestamp` (the event time, `ts_ms`) and `body: string` (what
//! an ingest client sent; empty for generated events, which becomes null).
//! A `parse` processor with `format = "json"` on `body` turns ingested JSON
//! into typed fields. Watermarks pass through unchanged.

use weir_runtime::{Batch, Emitter, Processor};

use super::{Row, Schema, Type, Value};
use crate::generator::GeneratedEvent;

/// The schema of [`EventRows`]' output.
pub fn event_schema() -> Schema {
    Schema::new([
        ("id", Type::Int),
        ("key", Type::String),
        ("timestamp", Type::Timestamp),
        ("body", Type::String),
    ])
}

/// Turns [`GeneratedEvent`]s into rows of [`event_schema`].
#[derive(Debug, Default)]
pub struct EventRows {
    row: Row,
}

impl Processor for EventRows {
    type Input = GeneratedEvent;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<GeneratedEvent>, out: &mut Emitter<Row>) {
        for event in batch.iter() {
            let values = &mut self.row.values;
            values.clear();
            values.push(Value::Int(event.id.to_native() as i64));
            values.push(Value::String(event.key.as_str().to_owned()));
            values.push(Value::Timestamp(event.ts_ms.to_native() as i64));
            values.push(if event.body.is_empty() {
                Value::Null
            } else {
                Value::String(event.body.as_str().to_owned())
            });
            out.push(&self.row);
        }
    }
}
