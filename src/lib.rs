//! weir: a thread-per-core, exactly-once stream-processing runtime.
//!
//! This facade re-exports the crates a user builds on:
//! - [`runtime`]: shards, rings, batches, the dataflow graph;
//! - [`operators`]: sources, processors, sinks and example pipelines;
//! - [`wal`]: the segmented write-ahead log.
#![warn(missing_docs)]

pub use weir_operators as operators;
pub use weir_runtime as runtime;
pub use weir_wal as wal;
