//! Sinks.
//!
//! [`ForEach`] hands every archived record to a closure and calls a second
//! closure when its inputs end: the building block for collecting results
//! in tests, examples and benchmarks.
//!
//! The sinks of pipeline files, one file or folder each, over
//! [`Row`](crate::row::Row)s:
//! - [`file`](mod@file): [`RowFileSink`], exactly-once NDJSON or Parquet
//!   files, a shard's epochs staged and rolled into one file by age and
//!   size, published atomically once their epochs commit;
//! - [`webhook`]: [`WebhookSink`](webhook::WebhookSink) POSTs rows as JSON
//!   batches with idempotency keys once their epoch commits;
//! - [`postgres`]: [`PostgresSink`](postgres::PostgresSink) writes each
//!   epoch's rows and the epoch number to PostgreSQL in one transaction;
//! - [`kafka`](mod@kafka): [`KafkaSink`](kafka::KafkaSink) publishes each epoch's rows in one
//!   Kafka transaction per shard once the epoch commits;
//! - [`prometheus`]: window rows as gauges on the metrics endpoint;
//! - [`stdout`]: [`StdoutSink`], NDJSON lines on standard output, a
//!   debugging aid that is *at-least-once*;
//! - [`blackhole`]: [`BlackholeSink`], counts records and bytes and drops
//!   them, for benchmarks.

pub mod blackhole;
pub mod client_tls;
pub mod file;
pub mod kafka;
pub mod postgres;
pub mod prometheus;
pub mod stdout;
pub mod webhook;

pub use blackhole::{BlackholeSink, BlackholeSinkConfig, BlackholeSpec, BlackholeTotals};
pub use file::{
    parquet_schema, ParquetCompression, RowFileFormat, RowFileSink, RowFileSinkConfig, RowFileSpec,
};
pub use stdout::{StdoutFormat, StdoutSink, StdoutSinkConfig, StdoutSpec};

use std::marker::PhantomData;

use weir_runtime::{ArchivedRecord, Batch, Record, Sink};

/// Calls `each` for every record and `finish` once at end of stream.
pub struct ForEach<T, E, F> {
    each: E,
    finish: Option<F>,
    _record: PhantomData<fn() -> T>,
}

impl<T, E, F> std::fmt::Debug for ForEach<T, E, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForEach").finish_non_exhaustive()
    }
}

impl<T, E, F> ForEach<T, E, F>
where
    T: Record,
    E: FnMut(&ArchivedRecord<T>) + 'static,
    F: FnOnce() + 'static,
{
    /// A sink calling `each` per record and `finish` at the end.
    pub fn new(each: E, finish: F) -> Self {
        ForEach {
            each,
            finish: Some(finish),
            _record: PhantomData,
        }
    }
}

impl<T, E, F> Sink for ForEach<T, E, F>
where
    T: Record,
    E: FnMut(&ArchivedRecord<T>) + 'static,
    F: FnOnce() + 'static,
{
    type Input = T;

    fn write(&mut self, _port: usize, batch: &Batch<T>) {
        for record in batch.iter() {
            (self.each)(record);
        }
    }

    fn finish(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish();
        }
    }
}
