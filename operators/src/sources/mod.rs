//! Sources: the components of a pipeline's `[sources]` section, one file
//! or folder each.
//!
//! - [`file`](mod@file): the `file` source: NDJSON (or plain lines) from one local
//!   file, exactly-once by byte offset, optionally following a growing file.
//! - [`generator`]: the `generator` source: keyed events, or realistic rows
//!   with injected attacks (`profile`).
//! - [`ingest`]: the `tcp`, `http` and `syslog` sources: durable network
//!   ingest.
//! - [`kafka`]: the `kafka` source: Kafka topics, exactly once by offset.
//! - [`nexmark`]: the `nexmark` source: the Nexmark benchmark's people,
//!   auctions and bids.
//!
//! [`events`] is the schema of the rows of `generator` (with `keys`),
//! `tcp` and `http`; [`numbered`] what the sources that number their
//! records share (positions, the split over shards, watermarks, pace).

pub mod events;
pub mod file;
pub mod generator;
pub mod ingest;
pub mod kafka;
pub mod nexmark;
pub mod numbered;
