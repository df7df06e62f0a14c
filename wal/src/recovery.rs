//! Opening a log: scan, refuse on corruption, repair a torn tail or a torn
//! roll, and set up the appender and writer halves at the end of the log.
//!
//! Repair steps, each durable before appends start: remove `*.wal.tmp`
//! files (torn rolls); truncate the last segment after its last valid record
//! (dropping a torn tail or stale bytes) and re-reserve its space, then
//! fsync it (so records that survived a crash un-synced become durable before
//! anything is appended after them); fsync the directory.

use crate::config::Config;
use crate::error::{io_ctx, RecoveryError};
use crate::format::Lsn;
use crate::limits::{MAX_DIO_ALIGN, SEAL_FRAME_LEN};
use crate::scan::{analyze, RecordPos, SegmentEnd, TornTail, Verdict};
use crate::storage::Storage;
use crate::writer::{Rolled, Stager, StagerInit, Tail, Writer};
use std::sync::Arc;

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the log after recovery.
    pub segments: usize,
    /// LSN the next append gets.
    pub next_lsn: Lsn,
    /// The last valid record, if any.
    pub last_record: Option<RecordPos>,
    /// The torn tail that was truncated, if any.
    pub torn: Option<TornTail>,
    /// Temporary files of a torn segment roll that were removed.
    pub removed_tmp: Vec<String>,
}

/// The two halves of a log positioned at its end.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub stager: Stager,
    pub writer: Writer,
    pub segments: Vec<Rolled>,
    pub report: RecoveryReport,
}

/// Scans and repairs the log in `storage`.
pub(crate) fn recover(storage: Arc<dyn Storage>, cfg: &Config) -> Result<Recovered, RecoveryError> {
    let a = analyze(&*storage, Some(cfg.shard))
        .map_err(|e| RecoveryError::Io(io_ctx("scan log directory")(e)))?;
    let torn = match a.verdict.clone() {
        Verdict::Corrupt(c) => return Err(RecoveryError::Corrupt(c)),
        Verdict::Torn(t) => Some(t),
        Verdict::Clean => None,
    };
    for t in &a.tmp_files {
        storage
            .remove(t)
            .map_err(|e| RecoveryError::Io(io_ctx(format!("remove {t}"))(e)))?;
    }
    let segments: Vec<Rolled> = a
        .segments
        .iter()
        .map(|s| Rolled {
            segment: s.number,
            first_lsn: s.header.first_lsn,
        })
        .collect();
    let next_lsn = a.next_lsn();
    let seed = storage.entropy();
    let init = |tail, tail_block, roll| StagerInit {
        tail,
        tail_block,
        next_lsn,
        new_segment_bytes: cfg.segment_bytes,
        chunk_cap: cfg.batch_bytes,
        roll,
        seed,
    };
    let (stager, writer) = match a.segments.last() {
        None => {
            let tail = Tail {
                segment: 0,
                salt: 0,
                seg_first_lsn: Lsn(0),
                segment_bytes: 0,
                offset: 0,
            };
            let st = Stager::new(init(tail, Vec::new(), Some(0)));
            (
                st,
                Writer::new(storage.clone(), cfg.shard, None, cfg.on_sync.clone()),
            )
        }
        Some(last) => {
            let (end, sealed) = match last.end {
                SegmentEnd::Sealed(o) => (o + SEAL_FRAME_LEN, true),
                e => (e.offset(), false),
            };
            let ctx = |what: &str| io_ctx(format!("{what} {}", last.name));
            let mut file = storage
                .open_write(&last.name)
                .map_err(|e| RecoveryError::Io(ctx("open")(e)))?;
            file.truncate_sync(end, last.header.segment_bytes)
                .map_err(|e| RecoveryError::Io(ctx(&format!("truncate at {end}"))(e)))?;
            let data = storage
                .read(&last.name)
                .map_err(|e| RecoveryError::Io(ctx("read")(e)))?;
            let block = end - end % MAX_DIO_ALIGN;
            let tail_block = data
                .get(block as usize..end as usize)
                .unwrap_or(&[])
                .to_vec();
            let tail = Tail {
                segment: last.number,
                salt: last.header.salt,
                seg_first_lsn: last.header.first_lsn,
                segment_bytes: last.header.segment_bytes,
                offset: end,
            };
            if sealed {
                let st = Stager::new(init(tail, tail_block, Some(last.number + 1)));
                (
                    st,
                    Writer::new(storage.clone(), cfg.shard, None, cfg.on_sync.clone()),
                )
            } else {
                let st = Stager::new(init(tail, tail_block, None));
                (
                    st,
                    Writer::new(
                        storage.clone(),
                        cfg.shard,
                        Some((last.number, file, end)),
                        cfg.on_sync.clone(),
                    ),
                )
            }
        }
    };
    storage
        .sync_dir()
        .map_err(|e| RecoveryError::Io(io_ctx("sync log directory")(e)))?;
    let report = RecoveryReport {
        segments: a.segments.len(),
        next_lsn,
        last_record: a.last_record(),
        torn,
        removed_tmp: a.tmp_files.clone(),
    };
    Ok(Recovered {
        stager,
        writer,
        segments,
        report,
    })
}
