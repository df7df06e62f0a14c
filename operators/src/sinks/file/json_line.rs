//! [`ToJsonLine`]: records that write themselves as one JSON object, and
//! the record types the file sink knows.
//!
//! Objects are written by hand, field by field, in declaration order:
//! numbers with `Display`, strings through `serde_json` so every escape is
//! right. No line break is written; the sink adds it.

use std::io::Write;

use crate::records::{ArchivedGeneratedEvent, ArchivedWindowRow, GeneratedEvent, WindowRow};

/// A record that can be written as one JSON object.
pub trait ToJsonLine {
    /// Appends the object, without a line break, to `out`.
    fn write_json(&self, out: &mut Vec<u8>);
}

/// Writes `"name":` and a number.
fn number_field(out: &mut Vec<u8>, name: &str, value: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "\"{name}\":{value}");
}

/// Writes `"name":` and a JSON string.
fn string_field(out: &mut Vec<u8>, name: &str, value: &str) {
    let _ = write!(out, "\"{name}\":");
    // Serializing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn event_json(out: &mut Vec<u8>, id: u64, key: &str, ts_ms: u64) {
    out.push(b'{');
    number_field(out, "id", id);
    out.push(b',');
    string_field(out, "key", key);
    out.push(b',');
    number_field(out, "ts_ms", ts_ms);
    out.push(b'}');
}

/// Adds `"body"` to the object `event_json` just closed, if there is one.
fn body_field(out: &mut Vec<u8>, body: &str) {
    if body.is_empty() {
        return;
    }
    out.pop();
    out.push(b',');
    string_field(out, "body", body);
    out.push(b'}');
}

fn row_json(out: &mut Vec<u8>, bounds: (u64, u64), key: &str, count: u64, sum: u64) {
    out.push(b'{');
    number_field(out, "window_start_ms", bounds.0);
    out.push(b',');
    number_field(out, "window_end_ms", bounds.1);
    out.push(b',');
    string_field(out, "key", key);
    out.push(b',');
    number_field(out, "count", count);
    out.push(b',');
    number_field(out, "sum", sum);
    out.push(b'}');
}

impl ToJsonLine for ArchivedGeneratedEvent {
    fn write_json(&self, out: &mut Vec<u8>) {
        event_json(out, self.id.to_native(), &self.key, self.ts_ms.to_native());
        body_field(out, &self.body);
    }
}

impl ToJsonLine for GeneratedEvent {
    fn write_json(&self, out: &mut Vec<u8>) {
        event_json(out, self.id, &self.key, self.ts_ms);
        body_field(out, &self.body);
    }
}

impl ToJsonLine for ArchivedWindowRow {
    fn write_json(&self, out: &mut Vec<u8>) {
        let bounds = (
            self.window_start_ms.to_native(),
            self.window_end_ms.to_native(),
        );
        let (count, sum) = (self.count.to_native(), self.sum.to_native());
        row_json(out, bounds, &self.key, count, sum);
    }
}

impl ToJsonLine for WindowRow {
    fn write_json(&self, out: &mut Vec<u8>) {
        let bounds = (self.window_start_ms, self.window_end_ms);
        row_json(out, bounds, &self.key, self.count, self.sum);
    }
}
