//! weir: a thread-per-core, exactly-once stream-processing runtime.
//!
//! # Embedding
//! [`Pipeline`] declares a pipeline in code and starts it inside your
//! process; its [`Handle`] pushes records from any thread ([`Input`]), asks
//! queryable state ([`Query`], [`Queryable`], the built-in [`Rolling`]
//! window) and subscribes to results ([`Subscription`]). The guide is
//! `docs/embedding.md`; `examples/embedded_rate_limiter.rs` is a complete
//! HTTP service.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = weir::runtime::Runtime::builder().shards(2).pin(false).build()?;
//! let mut pipeline = weir::Pipeline::new(runtime);
//! let requests = pipeline.input("requests", |client: &u64| *client);
//! let per_client = pipeline.rolling("per_client", &requests, weir::Rolling::count(std::time::Duration::from_secs(10)));
//! let service = pipeline.start()?;
//! let handle = service.handle();
//! handle.push_blocking(&requests, 42)?;
//! while handle.query(&per_client, 42)?.count == 0 {}
//! service.shutdown()?;
//! # Ok(()) }
//! ```
//!
//! # The crates underneath
//! This facade also re-exports the crates a user builds on:
//! - [`runtime`]: shards, rings, batches, the dataflow graph;
//! - [`operators`]: sources, processors, sinks and example pipelines;
//! - [`wal`]: the segmented write-ahead log;
//! - [`protocol`]: the native TCP ingest protocol, for clients that send
//!   to a `tcp` source.
#![warn(missing_docs)]

mod embed;

pub use embed::input::{
    unix_ns, Event, Input, InputOptions, InputRecord, NotDurable, PushError, Receipt,
};
pub use embed::query::{Query, QueryError, Queryable};
pub use embed::rolling::{At, Rolling, RollingUpdate, RollingValue};
pub use embed::subscribe::{Subscriber, Subscription};
pub use embed::{CallbackId, Handle, Pipeline, Service};
pub use weir_operators as operators;
pub use weir_protocol as protocol;
pub use weir_runtime as runtime;
pub use weir_wal as wal;
