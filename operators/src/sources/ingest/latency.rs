//! End-to-end latency of ingested events, as Prometheus histograms.
//!
//! Ingested events carry two times: `sent_ns`, when the client meant to
//! send the event (the load generator's intended send time), and
//! `ingest_ns`, when a weir ingest source accepted it. Each ingest source's
//! `NAME:rows` node (`sources::ingest::rows`), where its events enter the
//! pipeline as rows, records per event:
//!
//! - `weir_ingest_to_processed_seconds{component="NAME"}`: from
//!   acceptance to the event leaving the source for the pipeline's
//!   components (it has been logged, taken off the intake queue and handed
//!   on by the source);
//! - `weir_sent_to_processed_seconds{component="NAME"}`: the same from
//!   the client's intended send time (it includes the network, the client's
//!   queueing and clock skew between the two hosts, none here on loopback);
//!
//! and ingest sources record `weir_ingest_to_committed_seconds{component}`:
//! from acceptance to the commit of the epoch the event was emitted in,
//! after which its effect is in committed output of every sink.
//!
//! The clock is read once per batch, not per event. Events with no times
//! (0) are not recorded.

use std::time::{SystemTime, UNIX_EPOCH};

use weir_runtime::metrics::ShardHistogram;
use weir_runtime::{Batch, ShardContext};

use crate::sources::ingest::event::IngestEvent;

/// Records the processing latency of the ingested events a component
/// handles.
#[derive(Debug, Clone)]
pub struct ProcessedLatency {
    from_ingest: ShardHistogram,
    from_sent: ShardHistogram,
}

impl ProcessedLatency {
    /// The histograms of `context`'s component, for its shard.
    pub fn new(context: &ShardContext) -> ProcessedLatency {
        let labels = [("component", context.component())];
        let from_ingest = context.metrics.histogram(
            "weir_ingest_to_processed_seconds",
            "Time from an ingest source accepting an event to this component handling it.",
            &labels,
        );
        let from_sent = context.metrics.histogram(
            "weir_sent_to_processed_seconds",
            "Time from a client's intended send time of an event to this component handling it.",
            &labels,
        );
        ProcessedLatency {
            from_ingest: from_ingest.for_shard(context.shard),
            from_sent: from_sent.for_shard(context.shard),
        }
    }

    /// Records every ingested event of `batch` as handled now.
    pub fn observe(&self, batch: &Batch<IngestEvent>) {
        let mut now = None;
        for event in batch.iter() {
            let ingest_ns = event.ingest_ns.to_native();
            if ingest_ns == 0 {
                continue;
            }
            let now = *now.get_or_insert_with(unix_ns);
            self.from_ingest.observe_ns(now.saturating_sub(ingest_ns));
            let sent_ns = event.sent_ns.to_native();
            if sent_ns != 0 {
                self.from_sent.observe_ns(now.saturating_sub(sent_ns));
            }
        }
    }
}

/// The wall clock in nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}
