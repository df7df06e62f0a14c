//! Record types shared by several operators.

use rkyv::{Archive, Serialize};

/// One event of the `generator` (with `keys`), `tcp` and `http` sources.
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct GeneratedEvent {
    /// Unique over all instances; ids are dense from 0.
    pub id: u64,
    /// One of the configured keys.
    pub key: String,
    /// Event time, in milliseconds.
    pub ts_ms: u64,
    /// Ingested events: when the client meant to send it, in nanoseconds
    /// since the Unix epoch (0: unknown, and for generated events).
    pub sent_ns: u64,
    /// Ingested events: when weir accepted it, in nanoseconds since the
    /// Unix epoch (0 for generated events).
    pub ingest_ns: u64,
    /// Ingested events: the event as the client sent it (empty for
    /// generated events).
    pub body: String,
}

/// One row of a closed window, as the `size_ms` form of the `window` processor emits
/// it: `count` and `sum` are its `"count"` and `"sum:FIELD"` aggregates (0
/// when not configured).
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowRow {
    /// First millisecond of the window.
    pub window_start_ms: u64,
    /// First millisecond after the window.
    pub window_end_ms: u64,
    /// The group: the `group_by` field's value, as a string.
    pub key: String,
    /// Records in the window and group.
    pub count: u64,
    /// Sum of the summed field, wrapping.
    pub sum: u64,
}
