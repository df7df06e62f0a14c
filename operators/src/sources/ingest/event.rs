//! [`IngestEvent`]: the record of the `tcp` and `http` sources, what their
//! intake logs and the source emits, before its `NAME:rows` node
//! (`super::rows`) makes it a row.

use rkyv::{Archive, Serialize};

/// One event of the `tcp` and `http` sources.
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct IngestEvent {
    /// Unique over the source's instances: instance `i` of `n` numbers its
    /// emitted events `i, i + n, ...`.
    pub id: u64,
    /// The event's `key`, as the client sent it.
    pub key: String,
    /// Event time, in milliseconds: the event's `ts`, or when it was
    /// accepted.
    pub ts_ms: u64,
    /// When the client meant to send it, in nanoseconds since the Unix
    /// epoch (0: unknown).
    pub sent_ns: u64,
    /// When weir accepted it, in nanoseconds since the Unix epoch.
    pub ingest_ns: u64,
    /// The event as the client sent it.
    pub body: String,
    /// Empty, or why the event could not be read (`format = "json"`): it
    /// goes to the source's dead letters.
    pub error: String,
}
