//! [`EventRows`]: an ingest source's events as rows, the node `NAME:rows`
//! every ingest source adds after itself, so every component reads rows.
//!
//! The schema is [`event_schema`]: `id: int`, `key: string`,
//! `timestamp: timestamp` (the event time, `ts_ms`) and `body: string` (what
//! the client sent; empty becomes null). A `parse` processor with
//! `format = "json"` on `body` turns ingested JSON into typed fields.
//! Watermarks pass through unchanged.
//!
//! An `http` source with `format = "json"` has its own layout
//! ([`JsonLayout`]): without a `schema` the same four fields (`key` from
//! `key_field`, null without one; `body` the whole object); with one,
//! `id`, `key`, `timestamp`, then the schema's fields as typed columns (a
//! schema field named like one of the three replaces it), read from the
//! object again by [`JsonFormat::decode`]. Its events that did not decode
//! leave on port 1 (`NAME.dead_letter`) as rows of [`dead_letter_schema`].
//!
//! It records the events' [`ProcessedLatency`]: from the source accepting an
//! event to the event leaving the source's ring as a row.

use weir_runtime::{Batch, Emitter, Processor, ShardContext};

use std::sync::Arc;

use crate::row::{Ip, MapEntry, Row, Schema, Type, Value};
use crate::sources::events::event_schema;
use crate::sources::ingest::event::{ArchivedIngestEvent, IngestEvent};
use crate::sources::ingest::json_events::JsonFormat;
use crate::sources::ingest::latency::ProcessedLatency;

/// The runtime node turning source `source`'s events into rows.
pub(crate) fn node_name(source: &str) -> String {
    format!("{source}:rows")
}

/// The schema of a `format = "json"` source's dead letters: `id: int`,
/// `timestamp: timestamp` (when it was accepted, or its time if that was
/// read), `body: string` (the line or element as sent) and `error: string`
/// (why it did not decode).
pub fn dead_letter_schema() -> Schema {
    Schema::new([
        ("id", Type::Int),
        ("timestamp", Type::Timestamp),
        ("body", Type::String),
        ("error", Type::String),
    ])
}

/// The rows of an `http` source with `format = "json"`.
#[derive(Debug, Clone)]
pub struct JsonLayout {
    /// Their schema.
    pub schema: Schema,
    /// Where each schema field goes, in the format's order.
    targets: Vec<usize>,
    /// Where `id`, `key`, `timestamp` and (without a schema) `body` go.
    id: usize,
    key: usize,
    timestamp: usize,
    body: Option<usize>,
}

impl JsonLayout {
    /// The layout of `format`'s rows.
    pub fn new(format: &JsonFormat) -> JsonLayout {
        if format.fields.is_empty() {
            return JsonLayout {
                schema: event_schema(),
                targets: Vec::new(),
                id: 0,
                key: 1,
                timestamp: 2,
                body: Some(3),
            };
        }
        let mut schema = Schema::new([
            ("id", Type::Int),
            ("key", Type::String),
            ("timestamp", Type::Timestamp),
        ]);
        let targets = format
            .fields
            .iter()
            .map(|(name, ty)| schema.set(name, *ty))
            .collect();
        JsonLayout {
            schema,
            targets,
            id: 0,
            key: 1,
            timestamp: 2,
            body: None,
        }
    }
}

/// The schema of a `syslog` source's rows: `id: int`, `timestamp:
/// timestamp` (the message's, or when it was accepted), `hostname`,
/// `appname`, `procid`, `msgid`, `facility`, `severity` (names such as
/// `auth`, `err`), `message` (strings; null where the message has none),
/// `structured_data: map` (RFC 5424 element id → map of its parameters)
/// and `source_ip: ip` (the sender).
pub fn syslog_schema() -> Schema {
    Schema::new([
        ("id", Type::Int),
        ("timestamp", Type::Timestamp),
        ("hostname", Type::String),
        ("appname", Type::String),
        ("procid", Type::String),
        ("msgid", Type::String),
        ("facility", Type::String),
        ("severity", Type::String),
        ("message", Type::String),
        ("structured_data", Type::Map),
        ("source_ip", Type::Ip),
    ])
}

/// Which rows an ingest source's events become.
#[derive(Debug, Clone)]
pub enum Layout {
    /// [`event_schema`].
    Events,
    /// `http` with `format = "json"`.
    Json(Arc<(Arc<JsonFormat>, JsonLayout)>),
    /// [`syslog_schema`].
    Syslog,
}

/// Turns [`IngestEvent`]s into rows of [`event_schema`], of a
/// [`JsonLayout`] or of [`syslog_schema`].
#[derive(Debug)]
pub struct EventRows {
    row: Row,
    latency: ProcessedLatency,
    json: Option<Arc<(Arc<JsonFormat>, JsonLayout)>>,
    syslog: bool,
    /// The schema fields of one event, decoded (json with a schema).
    fields: Vec<Value>,
    /// The dead letter under construction.
    dead: Row,
}

impl EventRows {
    /// The adapter of `context`'s shard, recording latency as its node;
    /// `json`: the format and layout of a `format = "json"` source.
    pub fn new(context: &ShardContext, layout: Layout) -> EventRows {
        let (width, fields) = match &layout {
            Layout::Json(json) => (json.1.schema.len(), json.0.fields.len()),
            Layout::Syslog => (syslog_schema().len(), 0),
            Layout::Events => (4, 0),
        };
        let syslog = matches!(layout, Layout::Syslog);
        let json = match layout {
            Layout::Json(json) => Some(json),
            _ => None,
        };
        EventRows {
            row: Row::nulls(width),
            latency: ProcessedLatency::new(context),
            json,
            syslog,
            fields: vec![Value::Null; fields],
            dead: Row::nulls(4),
        }
    }

    /// Fills the row with one syslog message's fields.
    fn syslog_event(&mut self, event: &ArchivedIngestEvent) {
        let accepted_ms = event.ingest_ns.to_native() / 1_000_000;
        let parsed = crate::sources::ingest::syslog::parse(&event.body, accepted_ms);
        let message = &parsed.message;
        let values = &mut self.row.values;
        values[0] = Value::Int(event.id.to_native() as i64);
        values[1] = Value::Timestamp(event.ts_ms.to_native() as i64);
        let text = |slot: &mut Value, text: Option<&str>| match text {
            Some(text) => set_string(slot, text),
            None => *slot = Value::Null,
        };
        text(&mut values[2], message.hostname);
        text(&mut values[3], message.appname);
        let procid = message.procid.as_ref().map(ToString::to_string);
        text(&mut values[4], procid.as_deref());
        text(&mut values[5], message.msgid);
        text(
            &mut values[6],
            message.facility.map(|facility| facility.as_str()),
        );
        text(
            &mut values[7],
            message.severity.map(|severity| severity.as_str()),
        );
        set_string(&mut values[8], message.msg);
        values[9] = if message.structured_data.is_empty() {
            Value::Null
        } else {
            Value::Map(
                message
                    .structured_data
                    .iter()
                    .map(|element| MapEntry {
                        key: element.id.to_owned(),
                        value: Value::Map(
                            element
                                .params
                                .iter()
                                .map(|(name, value)| MapEntry {
                                    key: (*name).to_owned(),
                                    value: Value::String((*value).to_owned()),
                                })
                                .collect(),
                        ),
                    })
                    .collect(),
            )
        };
        values[10] = match event.key.parse::<std::net::IpAddr>() {
            Ok(addr) => Value::Ip(Ip::from(addr)),
            Err(_) => Value::Null,
        };
    }

    /// One event of a `format = "json"` source: a row on port 0, or a dead
    /// letter on port 1.
    fn json_event(
        &mut self,
        format: &JsonFormat,
        layout: &JsonLayout,
        event: &ArchivedIngestEvent,
        out: &mut Emitter<Row>,
    ) {
        let mut error = (!event.error.is_empty()).then(|| event.error.as_str().to_owned());
        if error.is_none() && !layout.targets.is_empty() {
            if let Err(reason) = format.decode(&event.body, Some(&mut self.fields)) {
                error = Some(reason);
            }
        }
        if let Some(error) = error {
            if out.has_port(1) {
                let values = &mut self.dead.values;
                values[0] = Value::Int(event.id.to_native() as i64);
                values[1] = Value::Timestamp(event.ts_ms.to_native() as i64);
                set_string(&mut values[2], &event.body);
                set_string(&mut values[3], &error);
                out.push_to(1, &self.dead);
            }
            return;
        }
        let values = &mut self.row.values;
        values[layout.id] = Value::Int(event.id.to_native() as i64);
        if event.key.is_empty() {
            values[layout.key] = Value::Null;
        } else {
            set_string(&mut values[layout.key], &event.key);
        }
        values[layout.timestamp] = Value::Timestamp(event.ts_ms.to_native() as i64);
        if let Some(body) = layout.body {
            set_string(&mut values[body], &event.body);
        }
        for (field, &target) in self.fields.iter_mut().zip(&layout.targets) {
            values[target] = std::mem::replace(field, Value::Null);
        }
        out.push(&self.row);
    }
}

impl Processor for EventRows {
    type Input = IngestEvent;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<IngestEvent>, out: &mut Emitter<Row>) {
        self.latency.observe(batch);
        if self.syslog {
            for event in batch.iter() {
                self.syslog_event(event);
                out.push(&self.row);
            }
            return;
        }
        if let Some(json) = self.json.clone() {
            let (format, layout) = &*json;
            for event in batch.iter() {
                self.json_event(format, layout, event, out);
            }
            return;
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
