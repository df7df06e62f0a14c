//! Every capacity, bound and default interval of the runtime, in one place,
//! with its reason. Each name ends in its unit: `_RECORDS`, `_BYTES`,
//! `_BATCHES`, `_BUFFERS`, `_MESSAGES`, `_EPOCHS`, `_MS`, `_US` (the one
//! exception is [`SHARDS_MAX`], whose unit is its name).
//!
//! Relations between limits are checked at compile time below, so a change
//! that breaks one fails the build instead of a run.

/// Records in one batch before it is handed to a ring. Large enough that the
/// per-batch costs (a ring slot, a wake-up check, an `Envelope` move) vanish
/// per record; small enough that a batch stays in L1/L2 (1024 records of 16
/// bytes are 16 KiB).
pub const BATCH_MAX_RECORDS: usize = 1024;

/// Bytes of serialized records in one batch before it is handed on. Bounds the
/// memory of a batch whose records are large.
pub const BATCH_MAX_BYTES: usize = 256 * 1024;

/// Bytes reserved up front for a new batch buffer, so the common small-record
/// batch never grows (and never reallocates) while it is filled.
pub const BATCH_INITIAL_BYTES: usize = 32 * 1024;

/// Bytes of fixed scratch space for serializing one record (rkyv uses it for
/// e.g. the resolvers of a vector's elements). Records needing more fall back
/// to a growable arena.
pub const SCRATCH_BYTES: usize = 4096;

/// Slots in each ring (one ring per edge and ordered pair of shards). A slot
/// holds one batch, so a ring holds at most this many batches: this is what
/// bounds memory when a consumer is slower than its producer.
pub const RING_CAPACITY_BATCHES: usize = 16;

/// Recycled batch buffers a shard keeps for reuse. Buffers beyond this are
/// freed. Two rings' worth covers the imbalance of hash-partitioned traffic
/// between two shards, so steady state allocates (almost) nothing, while
/// keeping idle memory per shard at 32 buffers of ~32 KiB.
pub const POOL_MAX_BUFFERS: usize = 2 * RING_CAPACITY_BATCHES;

/// Messages (batches or control messages) a node handles before it yields
/// the shard to other tasks: the cooperative work budget per turn.
pub const TURN_MAX_MESSAGES: usize = 32;

/// Batches a source fills before it yields to other tasks on its shard.
pub const TURN_SOURCE_MAX_BATCHES: usize = 8;

/// Bytes of io_uring buffer memory glommio registers per shard. It is locked
/// memory, so it counts against `RLIMIT_MEMLOCK`.
pub const SHARD_IO_MEMORY_BYTES: usize = 1 << 20;

/// Locked memory glommio itself needs per executor beyond its buffers
/// (rings and their bookkeeping); glommio refuses to start below this.
pub const SHARD_LOCKED_OVERHEAD_BYTES: usize = 512 * 1024;

/// Most shards one runtime runs. The configuration of `weir-operators`
/// checks its `shards` against this same constant.
pub const SHARDS_MAX: usize = 256;

/// Epochs requested but not yet committed, at most. Bounds how much a slow
/// shard can fall behind before sources stop being asked for barriers.
pub const IN_FLIGHT_MAX_EPOCHS: u64 = 4;

/// Bytes staged in a shard's WAL (appended, not yet written) above which a
/// source that logs its input waits, without blocking the shard, for them
/// to be durable before its next poll, and replay before its next record
/// (a source that logs nothing in its polls does not wait for what other
/// nodes logged, snapshots of tens of MB): half the WAL's staging
/// limit (`weir_wal::limits::MAX_STAGED_BYTES`, 64 MiB, where appends are
/// refused), leaving room for the largest record. So a backlog replayed at
/// start, or input faster than the disk, slows down to the disk instead of
/// failing the run. An append that still meets the limit (one step that
/// logs more than the room left) waits too, blocking the shard.
pub const WAL_STAGED_WAIT_BYTES: usize = weir_wal::limits::MAX_STAGED_BYTES / 2;

/// The largest payload of one intake record (`crate::intake`): the WAL's
/// largest record payload
/// ([`MAX_PAYLOAD_BYTES`](weir_wal::limits::MAX_PAYLOAD_BYTES), 16 MiB),
/// the record's identity, origin and data together. See
/// [`intake::data_bytes_max`](crate::intake::data_bytes_max) for the data
/// alone.
pub const INTAKE_RECORD_MAX_BYTES: usize = weir_wal::limits::MAX_PAYLOAD_BYTES;

/// Bytes of a request head the metrics endpoint reads before it answers
/// anyway.
pub const METRICS_REQUEST_HEAD_MAX_BYTES: usize = 8 * 1024;

const _: () = assert!(
    WAL_STAGED_WAIT_BYTES + weir_wal::limits::MAX_PAYLOAD_BYTES
        < weir_wal::limits::MAX_STAGED_BYTES
);
const _: () = assert!(BATCH_MAX_RECORDS > 0 && BATCH_MAX_RECORDS <= u32::MAX as usize);
const _: () = assert!(BATCH_INITIAL_BYTES <= BATCH_MAX_BYTES);
// Record positions inside a batch are stored as u32.
const _: () = assert!(BATCH_MAX_BYTES <= u32::MAX as usize);
const _: () = assert!(RING_CAPACITY_BATCHES >= 2);
const _: () = assert!(POOL_MAX_BUFFERS >= RING_CAPACITY_BATCHES);
const _: () = assert!(TURN_MAX_MESSAGES > 0 && TURN_SOURCE_MAX_BATCHES > 0);
const _: () = assert!(IN_FLIGHT_MAX_EPOCHS >= 1);

/// How long a source that reported `Idle` sleeps before it is polled again.
pub const SOURCE_IDLE_SLEEP_MS: u64 = 1;

/// How often an epoch starts when the runtime has a data directory: the
/// latency of committed output and the work redone after a crash, against
/// the cost of a snapshot and a commit per epoch.
pub const EPOCH_INTERVAL_DEFAULT_MS: u64 = 100;

/// An operator with incremental snapshots (`Processor::incremental`) logs
/// its whole state at every epoch that is a multiple of this (a *base*
/// epoch), or begins sweeping it there (`Processor::swept_bases`), and
/// only what changed at the others: recovery reads one base and at most
/// this many minus one sets of changes (plus [`SNAPSHOT_SWEEP_EPOCHS`]
/// minus one with swept bases), and the WAL keeps the records from
/// [`snapshot_kept_from`] on. At the default 100 ms epochs, a base every
/// 6.4 s.
pub const SNAPSHOT_BASE_EVERY_EPOCHS: u64 = 64;

/// The base epoch of `epoch`: the newest multiple of
/// [`SNAPSHOT_BASE_EVERY_EPOCHS`] at or below it (0: none, the empty
/// state before epoch 1).
pub const fn snapshot_base_epoch(epoch: u64) -> u64 {
    epoch - epoch % SNAPSHOT_BASE_EVERY_EPOCHS
}

/// An operator with swept bases (`Processor::swept_bases`) writes the base
/// that begins at a base epoch a slice per epoch, over at most this many
/// epochs (the base epoch included): by the epoch `base + SWEEP_EPOCHS - 1`
/// it is complete. A quarter of the base interval: a slice is at least a
/// sixteenth of the state (the stall it causes), and recovery, which may
/// need the base before the one being swept, reads at most 64 + 15 epochs
/// of changes. At the default 100 ms epochs, 1.6 s.
pub const SNAPSHOT_SWEEP_EPOCHS: u64 = SNAPSHOT_BASE_EVERY_EPOCHS / 4;

/// The oldest epoch whose incremental snapshot records recovery may need
/// once `committed` is committed, so the log keeps them: the base epoch of
/// `committed` if a base begun there is complete by `committed` (one
/// written whole at the base epoch, or a sweep's last slice at most
/// [`SNAPSHOT_SWEEP_EPOCHS`] − 1 epochs later), else the base epoch before
/// it (whose sweep completed before this one began). A run's first epoch
/// writes its base whole, at or after this epoch, so a run that started
/// since is covered too.
pub const fn snapshot_kept_from(committed: u64) -> u64 {
    let base = snapshot_base_epoch(committed);
    if committed - base >= SNAPSHOT_SWEEP_EPOCHS - 1 {
        base
    } else {
        base.saturating_sub(SNAPSHOT_BASE_EVERY_EPOCHS)
    }
}

/// How long a graceful stop may take by default before it gives up with
/// the sink commits still pending (they run again at the next start): long
/// enough for a final epoch and its commits on a healthy machine (a few
/// epoch intervals), short enough for a deploy or an orchestrator's grace
/// period (Kubernetes waits 30 s before SIGKILL).
pub const STOP_TIMEOUT_DEFAULT_MS: u64 = 10_000;

const _: () = assert!(STOP_TIMEOUT_DEFAULT_MS > 10 * EPOCH_INTERVAL_DEFAULT_MS);

/// How long a shard runs runnable tasks before it polls its reactor (I/O
/// completions, timers, wake-ups from other threads). glommio's default is
/// 100 ms, which delays every timer-driven step (epoch commits, idle
/// sources) by that much while data flows.
pub const SHARD_PREEMPT_INTERVAL_MS: u64 = 2;

/// [`SHARD_PREEMPT_INTERVAL_MS`] of a runtime built with
/// `RuntimeBuilder::low_latency`: how long a busy shard may go without
/// noticing a wake-up from another thread (a query, a pushed record).
pub const SHARD_PREEMPT_INTERVAL_LOW_LATENCY_US: u64 = 100;

const _: () = assert!(SHARD_PREEMPT_INTERVAL_LOW_LATENCY_US < SHARD_PREEMPT_INTERVAL_MS * 1000);

/// How long a client of the metrics endpoint may take to send its request
/// or read the answer.
pub const METRICS_IO_TIMEOUT_MS: u64 = 5_000;

/// How many pre-committed epochs one sink may have waiting for their
/// commit (a receiver down, retried) on a shard before the sink takes no
/// more input and backpressure reaches the sources: a minute of 100 ms
/// epochs. Their pre-commits stay in the write-ahead log meanwhile.
pub const SINK_BACKLOG_EPOCHS_DEFAULT: usize = 600;
