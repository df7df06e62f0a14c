//! The record of the `tcp` and `http` sources: what their intake logs and
//! emits, before `ingest::rows` makes it a row.

use rkyv::{Archive, Serialize};

/// One event of the `tcp` and `http` sources.
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
