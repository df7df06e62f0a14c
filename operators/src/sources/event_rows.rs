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

use crate::records::GeneratedEvent;
use crate::row::{Row, Schema, Type, Value};

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
        if self.row.values.len() != 4 {
            self.row = Row::nulls(4);
        }
        for event in batch.iter() {
            // Strings are copied into the reused row's buffers: no
            // allocation per event once they have grown.
            let values = &mut self.row.values;
            values[0] = Value::Int(event.id.to_native() as i64);
            set_string(&mut values[1], &event.key);
            values[2] = Value::Timestamp(event.ts_ms.to_native() as i64);
            if event.body.is_empty() {
                values[3] = Value::Null;
            } else {
                set_string(&mut values[3], &event.body);
            }
            out.push(&self.row);
        }
    }
}

/// Stores `text` in `slot`, reusing its buffer when it holds a string.
fn set_string(slot: &mut Value, text: &str) {
    match slot {
        Value::String(buffer) => {
            buffer.clear();
            buffer.push_str(text);
        }
        other => *other = Value::String(text.to_owned()),
    }
}
