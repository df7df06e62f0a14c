//! Epochs: the exactly-once protocol of `docs/exactly-once.md`.
//!
//! Enabled when the runtime has a data directory. Then:
//! - a coordinator thread ([`coordinator`]) requests epoch `n + 1` every
//!   epoch interval and writes `EPOCH_COMMIT(n)` to its own log once every
//!   shard reports epoch `n` durable;
//! - each source instance, between polls, appends its position to its
//!   shard's WAL and emits the barrier of every newly requested epoch;
//! - each processor instance, on the aligned barrier, appends its snapshot;
//!   each sink instance pre-commits and appends what it staged;
//! - a per-shard task ([`shard`]) waits until the shard's records of each
//!   epoch are durable, publishes that, and runs sink commits for epochs the
//!   coordinator committed;
//! - at start, [`recovery`] reads the logs back: the last committed epoch,
//!   the positions and snapshots taken at it, and the pre-commits to (re)run.
//!
//! Node instances are identified across restarts by node name and instance
//! index, so a restart must use the same graph and shard count.

mod commit_record;
pub(crate) mod coordinator;
mod failpoint;
pub(crate) mod recovery;
pub(crate) mod shard;

pub use failpoint::failpoint;
pub use recovery::committed_shard_lsns;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use weir_wal::RecordType;

use crate::error::OperatorError;

/// Where and how often epochs are taken.
#[derive(Debug, Clone)]
pub struct EpochConfig {
    /// The data directory: one WAL per shard and the coordinator's log.
    pub data_dir: PathBuf,
    /// How often a new epoch starts.
    pub interval: Duration,
    /// Size of WAL segment files; `None`: the WAL's default (64 MiB).
    pub segment_bytes: Option<u64>,
}

/// A sink's commit step, from what its pre-commit returned. Must be
/// idempotent: the next start runs it again for every committed pre-commit
/// whose completion record ([`SINK_COMMITTED`]) is not in the log.
pub type CommitFn = fn(&[u8], &CommitControl) -> Result<(), OperatorError>;

/// Marks a sink commit that completed: epoch = the pre-commit's epoch,
/// payload = node and instance (no data). Recovery re-runs only the
/// committed pre-commits without one, so a delivery that completed is not
/// repeated after a graceful restart, only after a crash that could have
/// lost this record.
pub const SINK_COMMITTED: RecordType = RecordType::SINK_COMMITTED;

/// Lets a running sink commit ([`Sink::commit`](crate::Sink::commit)) know
/// that it should give up: a stop that could not finish within its bound
/// cancels the commits still running, and they run again at the next
/// start. Cheap to clone; every clone sees the same cancellation.
#[derive(Debug, Clone, Default)]
pub struct CommitControl {
    cancelled: Arc<AtomicBool>,
    /// Calls to [`sleep`](CommitControl::sleep): the commit's retries.
    waits: Arc<std::sync::atomic::AtomicU64>,
}

impl CommitControl {
    /// How long [`sleep`](CommitControl::sleep) sleeps between looks at
    /// the cancellation.
    const SLEEP_SLICE: Duration = Duration::from_millis(10);

    /// A control that is not cancelled (until [`cancel`](Self::cancel)).
    pub fn new() -> CommitControl {
        CommitControl::default()
    }

    /// Whether the commit should give up.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Cancels every commit that holds a clone of this control.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// A control for one commit step: cancelled with this one, counting
    /// its own [`sleep`](CommitControl::sleep)s.
    pub(crate) fn for_commit(&self) -> CommitControl {
        CommitControl {
            cancelled: self.cancelled.clone(),
            waits: Arc::default(),
        }
    }

    /// How many times [`sleep`](CommitControl::sleep) was called on this
    /// control (a sink's metrics count them as retries).
    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Sleeps for `duration`, waking early if cancelled; returns `false`
    /// if it was cancelled (before or during the sleep). Counted as one
    /// retry of the commit in `weir_sink_commit_retries_total`: a commit
    /// sleeps before trying again.
    pub fn sleep(&self, duration: Duration) -> bool {
        self.waits.fetch_add(1, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + duration;
        loop {
            if self.is_cancelled() {
                return false;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Self::SLEEP_SLICE));
        }
    }
}

/// A sink's sync step ([`Sink::sync`](crate::Sink::sync)): makes what its
/// pre-commit staged durable. Runs on a blocking thread, not the shard.
pub type SyncFn = fn(&[u8]) -> Result<(), OperatorError>;

/// A sink's steps after its pre-commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SinkSteps {
    pub(crate) sync: SyncFn,
    pub(crate) commit: CommitFn,
}

/// State shared by the coordinator and every shard. Each field is written
/// by one party and read by the others, once per epoch, never per record.
#[derive(Debug)]
pub(crate) struct EpochShared {
    /// The newest epoch the coordinator asked for.
    pub(crate) requested: AtomicU64,
    /// Per shard: the newest epoch all of whose records are durable there.
    pub(crate) shard_done: Vec<CachePadded<AtomicU64>>,
    /// Per shard: an LSN below which every record of its log is durable,
    /// stored before each `shard_done` store (so a reader that saw epoch
    /// `n` done sees an LSN past that epoch's records). Each commit record
    /// names them, so that recovery can tell a log that lost records.
    pub(crate) shard_lsns: Vec<CachePadded<AtomicU64>>,
    /// The newest epoch whose commit record is durable.
    pub(crate) committed: AtomicU64,
    /// Source instances that have nothing more to emit.
    pub(crate) sources_exhausted: AtomicUsize,
    /// Source instances in all.
    pub(crate) sources_total: usize,
    /// The last epoch of the run, once every source is exhausted (0: not yet).
    pub(crate) final_epoch: AtomicU64,
    /// The run's abort flag (see `crate::runtime`), shared with every
    /// shard: set as soon as any node task fails or a shard panics, or by
    /// the coordinator when its own log fails. Once set, the coordinator
    /// commits nothing more and returns, and every shard's waits for
    /// epochs end with [`NodeFailure::Aborted`](crate::NodeFailure::Aborted).
    pub(crate) aborted: Arc<AtomicBool>,
    /// Set when the final epoch was requested because the run was told to
    /// stop (not drain), not because every source was exhausted: its commit
    /// is then not marked final, a restart resumes, and the sources close
    /// the final epoch with [`Message::Stop`](crate::message::Message)
    /// (state kept as it is) instead of end of stream.
    pub(crate) stopped: std::sync::atomic::AtomicBool,
    /// Cancels the sink commits still running when a stop overruns its
    /// bound (see `coordinator`).
    pub(crate) commits: CommitControl,
    /// Recovery restored some state from a base snapshot and changes
    /// after it (incremental snapshots): the shards keep their logs from
    /// that base on until a newer base commits (see `ShardEpochs::retire_cut`).
    pub(crate) keep_bases: std::sync::atomic::AtomicBool,
    /// The longest time, in nanoseconds, one node instance took to take
    /// and log its snapshot at a barrier: its shard processes nothing else
    /// meanwhile (see [`RunReport::longest_snapshot`](crate::RunReport)).
    pub(crate) longest_snapshot_ns: AtomicU64,
    /// The coordinator's thread, woken (`unpark`) when a shard publishes
    /// an epoch done or a source runs dry, so that it sleeps between
    /// events instead of waking every millisecond to look (on a machine
    /// with as many shards as cores, each wake-up takes a core from a
    /// shard).
    pub(crate) coordinator: std::sync::OnceLock<std::thread::Thread>,
    /// Per shard: its sink commits not yet completed (pre-committed, due
    /// or running), stored by its epoch task before it publishes an epoch
    /// done and after commits complete. The coordinator ends a run only
    /// once the final epoch committed and every shard delivered it all, so
    /// a stop's bound covers the deliveries too.
    pub(crate) undelivered: Vec<CachePadded<AtomicU64>>,
    /// How many pre-committed epochs a sink may have waiting for their
    /// commit on a shard before it takes no more input
    /// (`RuntimeBuilder::sink_backlog_epochs`).
    pub(crate) sink_backlog_epochs: usize,
}

impl EpochShared {
    /// State for a run that starts after epoch `committed`, with each
    /// shard's log durable below `durable_lsns[shard]`.
    pub(crate) fn new(
        durable_lsns: &[u64],
        sources_total: usize,
        committed: u64,
        aborted: Arc<AtomicBool>,
    ) -> EpochShared {
        EpochShared {
            requested: AtomicU64::new(committed),
            shard_done: durable_lsns
                .iter()
                .map(|_| CachePadded::new(AtomicU64::new(committed)))
                .collect(),
            shard_lsns: durable_lsns
                .iter()
                .map(|&lsn| CachePadded::new(AtomicU64::new(lsn)))
                .collect(),
            committed: AtomicU64::new(committed),
            sources_exhausted: AtomicUsize::new(0),
            sources_total,
            final_epoch: AtomicU64::new(0),
            aborted,
            stopped: std::sync::atomic::AtomicBool::new(false),
            commits: CommitControl::new(),
            keep_bases: std::sync::atomic::AtomicBool::new(false),
            longest_snapshot_ns: AtomicU64::new(0),
            coordinator: std::sync::OnceLock::new(),
            undelivered: durable_lsns
                .iter()
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            sink_backlog_epochs: crate::limits::SINK_BACKLOG_EPOCHS_DEFAULT,
        }
    }

    /// Wakes the coordinator to look at the shards now (once it runs).
    pub(crate) fn wake_coordinator(&self) {
        if let Some(thread) = self.coordinator.get() {
            thread.unpark();
        }
    }

    /// Whether the run is ending with a stop for a savepoint (see
    /// [`stopped`](EpochShared::stopped)); meaningful once the final epoch
    /// is named.
    pub(crate) fn is_stop(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Whether the run is aborted: something failed.
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// The final epoch, if the run is ending.
    pub(crate) fn final_epoch(&self) -> Option<u64> {
        match self.final_epoch.load(Ordering::Acquire) {
            0 => None,
            epoch => Some(epoch),
        }
    }
}

/// The logs of a data directory (`RuntimeBuilder::data_dir`), for tools
/// that read them (`weir wal inspect`): the coordinator's commit log, then
/// each shard's WAL in shard order, as (name, directory), for those that
/// exist. Empty when `data_dir` holds none (it may be a single log).
pub fn data_dir_logs(data_dir: &std::path::Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut shards: Vec<(usize, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let shard = name.strip_prefix("shard-").and_then(|n| n.parse().ok());
        if let (Some(shard), true) = (shard, entry.path().is_dir()) {
            shards.push((shard, entry.path()));
        }
    }
    shards.sort();
    let coordinator = data_dir.join("coordinator");
    let mut logs = Vec::with_capacity(shards.len() + 1);
    if coordinator.is_dir() {
        logs.push(("coordinator".to_string(), coordinator));
    }
    logs.extend(
        shards
            .into_iter()
            .map(|(shard, dir)| (format!("shard {shard}"), dir)),
    );
    Ok(logs)
}

/// Which instance of which node a WAL record belongs to, followed by the
/// node's bytes. Layout (little-endian): name length u32, name, instance
/// u32, payload.
pub(crate) fn encode_record(node: &str, instance: usize, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_record_into(&mut bytes, node, instance, &[payload]);
    bytes
}

/// Bytes `encode_record_into` puts before the node's name and the parts:
/// the name's length and the instance, 4 bytes each.
pub(crate) const RECORD_HEADER_BYTES: usize = 8;

/// `encode_record` into `bytes` (cleared first), with the payload given
/// in parts, so a caller can reuse one buffer and skip concatenating.
pub(crate) fn encode_record_into(
    bytes: &mut Vec<u8>,
    node: &str,
    instance: usize,
    parts: &[&[u8]],
) {
    bytes.clear();
    bytes.reserve(
        RECORD_HEADER_BYTES + node.len() + parts.iter().map(|part| part.len()).sum::<usize>(),
    );
    bytes.extend_from_slice(&(node.len() as u32).to_le_bytes());
    bytes.extend_from_slice(node.as_bytes());
    bytes.extend_from_slice(&(instance as u32).to_le_bytes());
    for part in parts {
        bytes.extend_from_slice(part);
    }
}

/// The inverse of `encode_record`; `None` if the bytes are not one.
pub(crate) fn decode_record(bytes: &[u8]) -> Option<(String, usize, &[u8])> {
    let name_len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(bytes.get(4..4 + name_len)?).ok()?;
    let at = 4 + name_len;
    let instance = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
    Some((name.to_string(), instance, bytes.get(at + 4..)?))
}

/// Bytes before the source's data in an intake (`INPUT`) record's payload
/// (`crate::intake`): the identity of the record's first copy plus one
/// (the identity is the LSN of the first copy), or 0 in a first copy.
/// Layout: that u64 (little-endian), then the data.
pub(crate) const INTAKE_ORIGIN_LEN: usize = 8;

/// The origin bytes of an intake record: `identity` is that of its first
/// copy, `None` if this is the first copy.
pub(crate) fn intake_origin(identity: Option<u64>) -> [u8; INTAKE_ORIGIN_LEN] {
    identity.map_or(0, |identity| identity + 1).to_le_bytes()
}

/// Splits an intake record's payload into the identity of its first copy
/// (`None`: this is the first copy) and the source's data.
pub(crate) fn decode_intake(payload: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let origin = u64::from_le_bytes(payload.get(..INTAKE_ORIGIN_LEN)?.try_into().ok()?);
    Some((origin.checked_sub(1), &payload[INTAKE_ORIGIN_LEN..]))
}

/// Opens every `OPERATOR_STATE` payload: the node's state fingerprint
/// (`NodeOptions::state_fingerprint`) goes before its snapshot, so a
/// restart can tell whether the snapshot was made under the same options.
/// Layout (little-endian): these 4 bytes, fingerprint length u32, the
/// fingerprint (UTF-8, `option=value` lines), then the snapshot.
const STATE_MAGIC: [u8; 4] = *b"WSF1";

/// The header of `fingerprint`'s snapshots.
pub(crate) fn state_header(fingerprint: &str) -> Vec<u8> {
    let mut header = Vec::with_capacity(8 + fingerprint.len());
    header.extend_from_slice(&STATE_MAGIC);
    header.extend_from_slice(&(fingerprint.len() as u32).to_le_bytes());
    header.extend_from_slice(fingerprint.as_bytes());
    header
}

/// Splits an `OPERATOR_STATE` payload into fingerprint and snapshot; the
/// fingerprint is `None` for a payload without the header (logged by an
/// older build), `Err` for a header that does not parse.
pub(crate) fn split_state(payload: &[u8]) -> Result<(Option<&str>, &[u8]), String> {
    let Some(rest) = payload.strip_prefix(&STATE_MAGIC) else {
        return Ok((None, payload));
    };
    let bad = || "the state record's fingerprint header is damaged".to_string();
    let (length, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let length = u32::from_le_bytes(*length) as usize;
    let fingerprint = rest.get(..length).ok_or_else(bad)?;
    let fingerprint = std::str::from_utf8(fingerprint).map_err(|_| bad())?;
    Ok((Some(fingerprint), &rest[length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_headers_round_trip_and_older_payloads_pass_through() {
        let mut payload = state_header("kind=tumbling\nsize_ms=10000");
        payload.extend_from_slice(b"snapshot");
        assert_eq!(
            split_state(&payload),
            Ok((Some("kind=tumbling\nsize_ms=10000"), &b"snapshot"[..]))
        );
        assert_eq!(split_state(b"rkyv bytes"), Ok((None, &b"rkyv bytes"[..])));
        assert!(split_state(&payload[..9]).is_err());
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let bytes = encode_record("count", 3, b"state");
        assert_eq!(
            decode_record(&bytes),
            Some(("count".to_string(), 3, &b"state"[..]))
        );
        assert_eq!(decode_record(&bytes[..6]), None);
        assert_eq!(decode_record(&[255, 255, 255, 255]), None);
    }
}
