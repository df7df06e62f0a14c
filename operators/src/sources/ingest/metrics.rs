//! The metrics of an ingest source instance, each labelled with the
//! source's name (`component`) and reported per shard.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `weir_ingest_events_total` | counter | events accepted (logged and emitted) |
//! | `weir_ingest_payload_bytes_total` | counter | payload bytes of accepted batches |
//! | `weir_ingest_responses_total{status}` | counter | answers, by HTTP status or TCP ack status |
//! | `weir_ingest_connections` | gauge | connections the instance serves now |
//! | `weir_ingest_connections_refused_total` | counter | connections closed at once: every instance was at `connections_max` |
//! | `weir_ingest_accept_errors_total` | counter | failed accepts (out of descriptors, say) |
//! | `weir_ingest_timeouts_total{timeout}` | counter | connections closed by the `header`, `read` or `idle` timeout |
//! | `weir_ingest_to_committed_seconds` | histogram | from acceptance to the commit of the event's epoch |
//! | `weir_ingest_queue_wait_seconds` | histogram | a checked batch's wait in the queue |
//! | `weir_ingest_receive_delay_seconds` | histogram | from a client's intended send time to its frame read whole (TCP) |

use std::cell::RefCell;
use std::collections::HashMap;

use weir_runtime::metrics::{Registry, ShardCounter, ShardGauge, ShardHistogram};
use weir_runtime::ShardContext;

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// A request head or frame header took too long.
    Header,
    /// A body or payload in progress stalled.
    Read,
    /// Nothing was in flight for too long.
    Idle,
}

/// The metrics of one source instance.
pub(crate) struct IngestMetrics {
    registry: Registry,
    pub(crate) component: std::sync::Arc<str>,
    pub(crate) shard: usize,
    pub(crate) events: ShardCounter,
    pub(crate) bytes: ShardCounter,
    pub(crate) to_committed: ShardHistogram,
    /// From a batch being queued to the source taking it.
    pub(crate) queue_wait: ShardHistogram,
    /// From the client's intended send time of a frame's first event to
    /// the frame being read whole (TCP, when the client sets `sent_ns`).
    pub(crate) receive_delay: ShardHistogram,
    /// Connections this instance serves (set by the source from its slots).
    pub(crate) connections_open: ShardGauge,
    /// Connections this instance accepted and closed at once.
    pub(crate) connections_refused: ShardCounter,
    pub(crate) accept_errors: ShardCounter,
    timeouts: [ShardCounter; 3],
    responses: RefCell<HashMap<String, ShardCounter>>,
}

impl IngestMetrics {
    pub(crate) fn new(context: &ShardContext) -> IngestMetrics {
        let registry = context.metrics.clone();
        let labels = [("component", &*context.node)];
        let counter = |name: &str, help: &str| registry.counter(name, help, &labels);
        let histogram = |name: &str, help: &str| registry.histogram(name, help, &labels);
        let shard = context.shard;
        IngestMetrics {
            events: counter(
                "weir_ingest_events",
                "Events an ingest source accepted (logged and emitted).",
            )
            .for_shard(shard),
            bytes: counter(
                "weir_ingest_payload_bytes",
                "Payload bytes of the batches an ingest source accepted.",
            )
            .for_shard(shard),
            to_committed: histogram(
                "weir_ingest_to_committed_seconds",
                "Time from an ingest source accepting an event to the commit of its epoch.",
            )
            .for_shard(shard),
            queue_wait: histogram(
                "weir_ingest_queue_wait_seconds",
                "Time a checked batch waited in an ingest source's queue.",
            )
            .for_shard(shard),
            receive_delay: histogram(
                "weir_ingest_receive_delay_seconds",
                "Time from a client's intended send time to its frame being read whole.",
            )
            .for_shard(shard),
            connections_open: registry
                .gauge(
                    "weir_ingest_connections",
                    "Connections an ingest source instance serves now.",
                    &labels,
                )
                .for_shard(shard),
            connections_refused: counter(
                "weir_ingest_connections_refused",
                "Connections an ingest source closed at once: every instance was at its cap.",
            )
            .for_shard(shard),
            accept_errors: counter(
                "weir_ingest_accept_errors",
                "Accepts that failed (out of file descriptors, say).",
            )
            .for_shard(shard),
            timeouts: Self::timeouts(&registry, &context.node, shard),
            responses: RefCell::default(),
            component: context.node.clone(),
            registry,
            shard,
        }
    }

    fn timeouts(registry: &Registry, component: &str, shard: usize) -> [ShardCounter; 3] {
        ["header", "read", "idle"].map(|timeout| {
            registry
                .counter(
                    "weir_ingest_timeouts",
                    "Connections an ingest source closed because a client was too slow or idle.",
                    &[("component", component), ("timeout", timeout)],
                )
                .for_shard(shard)
        })
    }

    /// Counts a connection closed by `timeout`.
    pub(crate) fn timed_out(&self, timeout: Timeout) {
        self.timeouts[timeout as usize].inc();
    }

    /// Counts one answer (an HTTP status or a TCP ack status).
    pub(crate) fn response(&self, status: &str) {
        let mut responses = self.responses.borrow_mut();
        if let Some(counter) = responses.get(status) {
            counter.inc();
            return;
        }
        let counter = self
            .registry
            .counter(
                "weir_ingest_responses",
                "Requests (HTTP) or frames (TCP) an ingest source answered, by status.",
                &[("component", &self.component), ("status", status)],
            )
            .for_shard(self.shard);
        counter.inc();
        responses.insert(status.to_string(), counter);
    }
}
