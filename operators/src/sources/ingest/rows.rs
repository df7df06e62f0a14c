//! [`EventRows`]: an ingest source's events as rows, the node `NAME:rows`
//! every ingest source adds after itself, so every component reads rows.
//!
//! The schema is [`event_schema`]: `id: int`, `key: string`,
//! `timestamp: timestamp` (the event time, `ts_ms`) and `body: string` (what
//! the client sent; empty becomes null). A `parse` processor with
//! `format = "json"` on `body` turns ingested JSON into typed fields.
//! Watermarks pass through unchanged.
//!
//! It records the events' [`ProcessedLatency`]: from the source accepting an
//! event to the event leaving the source's ring as a row.

use weir_runtime::{Batch, Emitter, Processor, ShardContext};

use crate::row::{Row, Value};
#[cfg(doc)]
use crate::sources::events::event_schema;
use crate::sources::ingest::event::IngestEvent;
use crate::sources::ingest::latency::ProcessedLatency;

/// The runtime node turning source `source`'s events into rows.
pub(crate) fn node_name(source: &str) -> String {
    format!("{source}:rows")
}

/// Turns [`IngestEvent`]s into rows of [`event_schema`].
#[derive(Debug)]
pub struct EventRows {
    row: Row,
    latency: ProcessedLatency,
}

impl EventRows {
    /// The adapter of `context`'s shard, recording latency as its node.
    pub fn new(context: &ShardContext) -> EventRows {
        EventRows {
            row: Row::nulls(4),
            latency: ProcessedLatency::new(context),
        }
    }
}

impl Processor for EventRows {
    type Input = IngestEvent;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<IngestEvent>, out: &mut Emitter<Row>) {
        self.latency.observe(batch);
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
