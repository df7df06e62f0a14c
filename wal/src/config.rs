//! Per-log configuration, checked against [`crate::limits`] at open.

use crate::limits::{
    DEFAULT_BATCH_BYTES, DEFAULT_SEGMENT_BYTES, MAX_DIO_ALIGN, MAX_SEGMENT_BYTES, MAX_STAGED_BYTES,
    MIN_SEGMENT_BYTES,
};
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
    /// `batch_bytes`.
    pub flush_interval: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            shard: 0,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            batch_bytes: DEFAULT_BATCH_BYTES,
            flush_interval: Some(Duration::from_millis(1)),
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
