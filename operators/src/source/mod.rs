//! Sources that read records from outside weir.
//!
//! - [`file`](mod@file): the `file` source: NDJSON (or plain lines) from one local
//!   file, exactly-once by byte offset, optionally following a growing file.

pub mod file;
