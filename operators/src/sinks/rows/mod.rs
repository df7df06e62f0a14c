//! Sinks over [`Row`](crate::row::Row)s, for config-driven pipelines.
//!
//! - [`file`]: [`RowFileSink`], exactly-once files (`ndjson` or
//!   `parquet`), one per shard and epoch, staged and published atomically
//!   when the epoch commits. It shares its staging machinery
//!   ([`Staging`](crate::sinks::file::Staging),
//!   [`Staged`](crate::sinks::file::Staged)) with the typed
//!   [`FileSink`](crate::sinks::file::FileSink).
//! - [`stdout`]: [`StdoutSink`], NDJSON lines on standard output, a
//!   debugging aid that is *at-least-once*.
//! - [`blackhole`]: [`BlackholeSink`], counts records and bytes and drops
//!   them, for benchmarks.
//!
//! Each has a config struct (deserialized from a `[sinks.NAME]` table
//! without its `type` key), a pure `build` step that checks it against the
//! input's [`Schema`](crate::row::Schema) and returns a cloneable spec, and
//! a `new(spec, context)` that makes the runtime sink of one shard.

pub mod blackhole;
pub mod file;
mod parquet;
pub mod stdout;

pub use blackhole::{BlackholeSink, BlackholeSinkConfig, BlackholeSpec, BlackholeTotals};
pub use file::{ParquetCompression, RowFileFormat, RowFileSink, RowFileSinkConfig, RowFileSpec};
pub use parquet::parquet_schema;
pub use stdout::{StdoutFormat, StdoutSink, StdoutSinkConfig, StdoutSpec};
