//! Sources: the components of a pipeline's `[sources]` section, one file
//! or folder each.
//!
//! - [`file`](mod@file): the `file` source: NDJSON (or plain lines) from one local
//!   file, exactly-once by byte offset, optionally following a growing file.
//! - [`generator`]: the `generator` source: keyed events, or realistic rows
//!   with injected attacks (`profile`).
//! - [`ingest`]: the `tcp` and `http` sources: durable network ingest.
//!
//! [`event_rows`] turns the events of `generator` (with `keys`), `tcp` and
//! `http` into rows for the processors that read rows.

pub mod event_rows;
pub mod file;
pub mod generator;
pub mod ingest;
