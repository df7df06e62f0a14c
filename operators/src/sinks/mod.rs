//! Sinks.
//!
//! [`ForEach`] hands every archived record to a closure and calls a second
//! closure when its inputs end: the building block for collecting results
//! in tests, examples and benchmarks.
//!
//! [`file::FileSink`] writes NDJSON files, staged per epoch and published
//! atomically when the epoch commits.
//!
//! [`webhook::WebhookSink`] POSTs rows as JSON batches with idempotency
//! keys once their epoch commits; [`postgres::PostgresSink`] writes each
//! epoch's rows and the epoch number to PostgreSQL in one transaction.
//! [`rows`] holds the sinks of config-driven pipelines, over
//! [`Row`](crate::row::Row)s: exactly-once NDJSON and Parquet files,
//! standard output, and a counting blackhole.

pub mod file;
pub mod postgres;
pub mod prometheus;
pub mod rows;
pub mod webhook;

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
