//! Per-log configuration, checked against [`crate::limits`] at open.

use crate::format::Lsn;
use crate::limits::{
    DEFAULT_BATCH_BYTES, DEFAULT_SEGMENT_BYTES, DEFAULT_SPARE_SEGMENTS, MAX_DIO_ALIGN,
    MAX_SEGMENT_BYTES, MAX_STAGED_BYTES, MIN_SEGMENT_BYTES,
};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How a log is laid out and committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Shard that owns the log (written into every segment header and
    /// checked at open).
    pub shard: u32,
    /// Maximum size of new segment files in bytes.
    pub segment_bytes: u64,
    /// Staged bytes at which the writer starts a group commit by itself.
    pub batch_bytes: usize,
    /// The writer commits whatever is staged at least this often (the
    /// threaded [`crate::Wal`] only); `None`: only on `flush` or
    /// `batch_bytes`. It is a floor only under load: a writer that went
    /// idle (nothing staged) commits the first append at once. Default
    /// 1 ms; zero commits back to back (one record at a time at low load,
    /// whatever was staged meanwhile under load), which cost 18 % of
    /// saturation throughput on 2 cores (`BENCHMARKS.md`, issue 20).
    pub flush_interval: Option<Duration>,
    /// Segment files kept ready ahead of need (recycled from retired
    /// segments, or written with zeros), so that a roll touches no file
    /// system metadata (`docs/wal-format.md` §12); 0: every roll creates
    /// its file and retention unlinks.
    pub spare_segments: usize,
    /// Called after every write + fdatasync of the log, with how long the
    /// pair took and how many bytes it wrote; see [`SyncObserver`].
    pub on_sync: Option<SyncObserver>,
    /// Every LSN below this is known to have been durable, from a record
    /// kept outside the log (the runtime's commit records). Recovery
    /// refuses a log that ends below it, before repairing anything: its
    /// newest segments, or all of them, are gone, which the log alone
    /// cannot always show. `None`: nothing is known.
    pub durable_at_least: Option<Lsn>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            shard: 0,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            batch_bytes: DEFAULT_BATCH_BYTES,
            flush_interval: Some(Duration::from_millis(1)),
            spare_segments: DEFAULT_SPARE_SEGMENTS,
            on_sync: None,
            durable_at_least: None,
        }
    }
}

impl Config {
    /// Checks the limits; the message names the violated one.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(format!(
                "segment_bytes {} outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        if self.segment_bytes % MAX_DIO_ALIGN != 0 {
            return Err(format!(
                "segment_bytes {} not a multiple of {MAX_DIO_ALIGN}",
                self.segment_bytes
            ));
        }
        if self.batch_bytes == 0 || self.batch_bytes >= MAX_STAGED_BYTES {
            return Err(format!(
                "batch_bytes {} outside 1..{MAX_STAGED_BYTES}",
                self.batch_bytes
            ));
        }
        Ok(())
    }
}

/// A callback for I/O statistics: called after every aligned write +
/// fdatasync pair (a chunk of records, or a new segment's header) with the
/// pair's latency and the bytes written (block padding included).
///
/// It runs on the thread that writes the log: the writer thread of a
/// [`crate::Wal`], the caller of [`crate::SyncLog::commit`]. It runs at
/// most once per fdatasync, never per record, but it delays the next write:
/// keep it to a few counter updates.
///
/// Two observers are equal when they are clones of one another.
#[derive(Clone)]
pub struct SyncObserver(Arc<dyn Fn(Duration, u64) + Send + Sync>);

impl SyncObserver {
    /// Wraps `f`, called as `f(latency, bytes)`.
    pub fn new(f: impl Fn(Duration, u64) + Send + Sync + 'static) -> SyncObserver {
        SyncObserver(Arc::new(f))
    }

    /// Reports one write + fdatasync.
    pub(crate) fn observe(&self, latency: Duration, bytes: u64) {
        (self.0)(latency, bytes);
    }
}

impl fmt::Debug for SyncObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncObserver(..)")
    }
}

impl PartialEq for SyncObserver {
    fn eq(&self, other: &SyncObserver) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SyncObserver {}
