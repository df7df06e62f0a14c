//! The runtime's own metrics: their names, and the handles each updating
//! thread binds once (a node instance at spawn, a WAL when it opens, the
//! coordinator when it starts), so an update is a relaxed load and store.
//!
//! | metric | labels | written by |
//! | --- | --- | --- |
//! | `weir_component_events_in_total` | `component` | consuming shard, per batch read |
//! | `weir_component_bytes_in_total` | `component` | consuming shard, per batch read |
//! | `weir_component_events_out_total` | `component`, `output` | producing shard, per batch sent |
//! | `weir_component_bytes_out_total` | `component`, `output` | producing shard, per batch sent |
//! | `weir_component_failures_total` | `component` | the failed instance's shard |
//! | `weir_ring_occupancy_batches` | `component`, `shard` | consuming shard, per message read |
//! | `weir_ring_full_waits_total` | `component` | producing shard, per full ring met |
//! | `weir_wal_bytes_written_total` | `log` | WAL writer thread / coordinator |
//! | `weir_wal_syncs_total` | `log` | WAL writer thread / coordinator |
//! | `weir_wal_sync_latency_seconds` | `log` | WAL writer thread / coordinator |
//! | `weir_epoch_commit_latency_seconds` | | coordinator |
//! | `weir_sink_commits_total`, `weir_sink_commit_retries_total`, `weir_sink_commit_failures_total` | `component` | shard's epoch task, per commit step |
//! | `weir_sink_delivery_latency_seconds` | `component` | shard's epoch task, per commit step |
//! | `weir_sink_backlog_epochs`, `weir_sink_committed_epoch` | `component`, `shard` | shard's epoch task |
//! | `weir_epoch_committed` | | coordinator |
//!
//! `log` is `shard` for the shards' WALs and `coordinator` for the
//! coordinator's commit log. The runtime's registry has writer slots (see
//! [`super::Registry::with_writers`]) for each shard's WAL writer thread and
//! for the coordinator: [`writers`], [`wal_slot`], [`coordinator_slot`].

use std::time::Duration;

use weir_wal::SyncObserver;

use super::{Registry, ShardCounter, ShardGauge, ShardHistogram};

/// Writer slots the runtime's registry needs for `shards` shards: one per
/// shard's WAL writer thread, then the coordinator.
pub(crate) fn writers(shards: usize) -> usize {
    shards + 1
}

/// The slot that shard `shard`'s WAL writer thread updates.
pub(crate) fn wal_slot(registry: &Registry, shard: usize) -> usize {
    registry.writer_slot(shard)
}

/// The slot that the epoch coordinator thread updates (and the starting
/// thread, while no coordinator runs).
pub(crate) fn coordinator_slot(registry: &Registry) -> usize {
    registry.writer_slot(registry.shards())
}

/// Nanoseconds in `d`, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a node instance counts about the batches it reads.
pub(crate) struct InputMetrics {
    events: ShardCounter,
    bytes: ShardCounter,
    occupancy: ShardGauge,
}

impl InputMetrics {
    /// Binds the series of `component` on `shard`.
    pub(crate) fn new(registry: &Registry, component: &str, shard: usize) -> InputMetrics {
        let labels = [("component", component)];
        InputMetrics {
            events: registry
                .counter(
                    "weir_component_events_in_total",
                    "Records a component read from its input rings.",
                    &labels,
                )
                .for_shard(shard),
            bytes: registry
                .counter(
                    "weir_component_bytes_in_total",
                    "Serialized record bytes a component read from its input rings.",
                    &labels,
                )
                .for_shard(shard),
            occupancy: registry
                .gauge(
                    "weir_ring_occupancy_batches",
                    "Messages (batches, watermarks, barriers) waiting in a component's input rings on a shard, sampled when it reads.",
                    &labels,
                )
                .for_shard(shard),
        }
    }

    /// Counts one batch read.
    #[inline]
    pub(crate) fn batch(&self, records: usize, bytes: usize) {
        self.events.add(records as u64);
        self.bytes.add(bytes as u64);
    }

    /// Sets the occupancy sample.
    #[inline]
    pub(crate) fn occupancy(&self, waiting: usize) {
        self.occupancy.set(waiting as i64);
    }
}

/// What a node instance counts about the batches it sends: events and
/// bytes per output port that leaves its component.
#[derive(Clone)]
pub(crate) struct OutputMetrics {
    /// `(port, events, bytes)` per counted port.
    ports: Vec<(usize, ShardCounter, ShardCounter)>,
    pub(crate) full_waits: ShardCounter,
}

impl OutputMetrics {
    /// Binds the series of `component` on `shard`, for each of `ports`
    /// (port and its `output` label).
    pub(crate) fn new(
        registry: &Registry,
        component: &str,
        shard: usize,
        ports: &[(usize, std::sync::Arc<str>)],
    ) -> OutputMetrics {
        let ports = ports
            .iter()
            .map(|(port, label)| {
                let labels = [("component", component), ("output", label)];
                let events = registry
                    .counter(
                        "weir_component_events_out_total",
                        "Records a component emitted on an output, once however many components read it.",
                        &labels,
                    )
                    .for_shard(shard);
                let bytes = registry
                    .counter(
                        "weir_component_bytes_out_total",
                        "Serialized record bytes a component emitted on an output.",
                        &labels,
                    )
                    .for_shard(shard);
                (*port, events, bytes)
            })
            .collect();
        OutputMetrics {
            ports,
            full_waits: registry
                .counter(
                    "weir_ring_full_waits_total",
                    "Times a component found an output ring full and waited (backpressure).",
                    &[("component", component)],
                )
                .for_shard(shard),
        }
    }

    /// Where output `port`'s counters are, if it is counted.
    pub(crate) fn port_index(&self, port: usize) -> Option<usize> {
        self.ports.iter().position(|(p, _, _)| *p == port)
    }

    /// Counts one batch sent on the port at `index` ([`Self::port_index`]).
    #[inline]
    pub(crate) fn batch(&self, index: usize, records: usize, bytes: usize) {
        let (_, events, bytes_out) = &self.ports[index];
        events.add(records as u64);
        bytes_out.add(bytes as u64);
    }
}

/// The failure counter of `component` on `shard`.
pub(crate) fn failures(registry: &Registry, component: &str, shard: usize) -> ShardCounter {
    registry
        .counter(
            "weir_component_failures_total",
            "Component instances that failed (the run then fails).",
            &[("component", component)],
        )
        .for_shard(shard)
}

/// What the snapshots of one shard's node instances cost, by kind: `full`
/// (every epoch, or every base epoch of an incremental operator),
/// `changes` (the other epochs of an incremental one) and, for durations
/// only, `precommit` (a sink's).
pub(crate) struct SnapshotMetrics {
    pub(crate) full_bytes: ShardCounter,
    pub(crate) changes_bytes: ShardCounter,
    pub(crate) full_seconds: ShardHistogram,
    pub(crate) changes_seconds: ShardHistogram,
    pub(crate) precommit_seconds: ShardHistogram,
}

/// What a shard counts about one sink's commits (its deliveries), updated
/// by the shard's epoch task after each commit step returns.
pub(crate) struct SinkMetrics {
    pub(crate) commits: ShardCounter,
    pub(crate) retries: ShardCounter,
    pub(crate) failures: ShardCounter,
    pub(crate) latency: ShardHistogram,
    pub(crate) backlog: ShardGauge,
    pub(crate) committed: ShardGauge,
}

impl SinkMetrics {
    /// Binds the series of sink `component` on `shard`.
    pub(crate) fn new(registry: &Registry, component: &str, shard: usize) -> SinkMetrics {
        let labels = [("component", component)];
        let counter = |name, help| registry.counter(name, help, &labels).for_shard(shard);
        let gauge = |name, help| registry.gauge(name, help, &labels).for_shard(shard);
        SinkMetrics {
            commits: counter(
                "weir_sink_commits_total",
                "Epochs a sink published (its commit step completed), per shard instance.",
            ),
            retries: counter(
                "weir_sink_commit_retries_total",
                "Times a sink's commit step waited to try again (a receiver down or refusing).",
            ),
            failures: counter(
                "weir_sink_commit_failures_total",
                "Commit steps of a sink that failed (the run stops; the next start retries).",
            ),
            latency: registry
                .histogram(
                    "weir_sink_delivery_latency_seconds",
                    "Time from the shard seeing an epoch committed (durable everywhere) to the \
                     sink's commit of it completing: how late its output becomes visible.",
                    &labels,
                )
                .for_shard(shard),
            backlog: gauge(
                "weir_sink_backlog_epochs",
                "Epochs a sink pre-committed on a shard whose commit has not completed.",
            ),
            committed: gauge(
                "weir_sink_committed_epoch",
                "The newest epoch whose commit a sink completed on a shard.",
            ),
        }
    }
}

/// The snapshot metrics of `shard`.
pub(crate) fn snapshot_metrics(registry: &Registry, shard: usize) -> SnapshotMetrics {
    let help = "Bytes of operator snapshots logged: full (every epoch, or every base epoch of \
                an incremental operator) and changes (the other epochs of an incremental one).";
    let counter = |kind| {
        registry
            .counter("weir_snapshot_bytes_total", help, &[("kind", kind)])
            .for_shard(shard)
    };
    let help = "Time one node instance took to take and log its snapshot (or a sink its \
                pre-commit) at a barrier; its shard processes nothing else meanwhile.";
    let histogram = |kind| {
        registry
            .histogram("weir_snapshot_duration_seconds", help, &[("kind", kind)])
            .for_shard(shard)
    };
    SnapshotMetrics {
        full_bytes: counter("full"),
        changes_bytes: counter("changes"),
        full_seconds: histogram("full"),
        changes_seconds: histogram("changes"),
        precommit_seconds: histogram("precommit"),
    }
}

/// An observer for a log's writes and fdatasyncs that updates `slot`;
/// `log` is `shard` or `coordinator`.
pub(crate) fn wal_observer(registry: &Registry, log: &str, slot: usize) -> SyncObserver {
    let labels = [("log", log)];
    let bytes = registry
        .counter(
            "weir_wal_bytes_written_total",
            "Bytes written to write-ahead logs (block padding included).",
            &labels,
        )
        .for_shard(slot);
    let syncs = registry
        .counter(
            "weir_wal_syncs_total",
            "Write-ahead log writes made durable with fdatasync.",
            &labels,
        )
        .for_shard(slot);
    let latency = registry
        .histogram(
            "weir_wal_sync_latency_seconds",
            "Time of one write-ahead log write + fdatasync.",
            &labels,
        )
        .for_shard(slot);
    SyncObserver::new(move |took, written| {
        bytes.add(written);
        syncs.inc();
        latency.observe_ns(nanos(took));
    })
}

/// What the coordinator reports.
pub(crate) struct EpochMetrics {
    committed: ShardGauge,
    commit_latency: ShardHistogram,
}

impl EpochMetrics {
    /// Binds the epoch series to the coordinator's slot.
    pub(crate) fn new(registry: &Registry) -> EpochMetrics {
        let slot = coordinator_slot(registry);
        EpochMetrics {
            committed: registry
                .summed_gauge("weir_epoch_committed", "The last committed epoch.", &[])
                .for_shard(slot),
            commit_latency: registry
                .histogram(
                    "weir_epoch_commit_latency_seconds",
                    "Time from an epoch's request to its commit record being durable.",
                    &[],
                )
                .for_shard(slot),
        }
    }

    /// Sets the last committed epoch.
    pub(crate) fn committed(&self, epoch: u64) {
        self.committed.set(epoch as i64);
    }

    /// Records one epoch's commit latency.
    pub(crate) fn commit_latency(&self, latency: Duration) {
        self.commit_latency.observe_ns(nanos(latency));
    }
}
