//! The schema of events as rows: what the `generator` with `keys` emits,
//! and what the `tcp` and `http` sources' events become (`ingest::rows`).

use crate::row::{Schema, Type};

/// `id: int`, `key: string`, `timestamp: timestamp` (the event time) and
/// `body: string` (what an ingest client sent; null for generated events).
pub fn event_schema() -> Schema {
    Schema::new([
        ("id", Type::Int),
        ("key", Type::String),
        ("timestamp", Type::Timestamp),
        ("body", Type::String),
    ])
}

/// The index of `key` in [`event_schema`].
pub const KEY: usize = 1;
