//! weir: a thread-per-core, exactly-once stream-processing runtime.
//!
//! This facade re-exports the crates a user builds on:
//! - [`runtime`]: shards, rings, batches, the dataflow graph;
//! - [`operators`]: sources, processors, sinks and example pipelines;
//! - [`wal`]: the segmented write-ahead log.
#![warn(missing_docs)]

mod embed;

pub use embed::input::{unix_ns, Event, Input, InputOptions, PushError};
pub use embed::query::{Query, QueryError, Queryable};
pub use embed::rolling::{At, Rolling, RollingUpdate, RollingValue};
pub use embed::subscribe::{Subscriber, Subscription};
pub use embed::{CallbackId, Handle, Pipeline, Service};
pub use weir_operators as operators;
pub use weir_runtime as runtime;
pub use weir_wal as wal;
