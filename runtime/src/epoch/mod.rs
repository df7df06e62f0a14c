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

pub(crate) mod coordinator;
mod failpoint;
pub(crate) mod recovery;
pub(crate) mod shard;

pub use failpoint::failpoint;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

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
/// idempotent: recovery runs it again for every committed pre-commit it
/// finds, including ones that completed before a crash.
pub type CommitFn = fn(&[u8]) -> Result<(), String>;

/// A sink's sync step ([`Sink::sync`](crate::Sink::sync)): makes what its
/// pre-commit staged durable. Runs on a blocking thread, not the shard.
pub type SyncFn = fn(&[u8]) -> Result<(), String>;

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
    /// stop, not because every source was exhausted: its commit is then not
    /// marked final, and a restart resumes.
    pub(crate) stopped: std::sync::atomic::AtomicBool,
}

impl EpochShared {
    pub(crate) fn new(
        shards: usize,
        sources_total: usize,
        committed: u64,
        aborted: Arc<AtomicBool>,
    ) -> EpochShared {
        EpochShared {
            requested: AtomicU64::new(committed),
            shard_done: (0..shards)
                .map(|_| CachePadded::new(AtomicU64::new(committed)))
                .collect(),
            committed: AtomicU64::new(committed),
            sources_exhausted: AtomicUsize::new(0),
            sources_total,
            final_epoch: AtomicU64::new(0),
            aborted,
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
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

/// Which instance of which node a WAL record belongs to, followed by the
/// node's bytes. Layout (little-endian): name length u32, name, instance
/// u32, payload.
#[cfg(test)]
pub(crate) fn encode_record(node: &str, instance: usize, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_record_into(&mut bytes, node, instance, &[payload]);
    bytes
}

/// `encode_record` into `bytes` (cleared first), with the payload given
/// in parts, so a caller can reuse one buffer and skip concatenating.
pub(crate) fn encode_record_into(
    bytes: &mut Vec<u8>,
    node: &str,
    instance: usize,
    parts: &[&[u8]],
) {
    bytes.clear();
    bytes.reserve(8 + node.len() + parts.iter().map(|part| part.len()).sum::<usize>());
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

#[cfg(test)]
mod tests {
    use super::*;

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
