//! Opening a log: scan, refuse on corruption, repair a torn tail or a torn
//! roll, and set up the appender and writer halves at the end of the log.
//!
//! A log with a fault (corruption, or missing segments: `crate::analysis`)
//! is refused, and so is a log that ends below the LSN the caller knows
//! was durable (`Config::durable_at_least`). Repair steps, each durable before appends start: remove
//! `*.wal.tmp` files (torn rolls), spares (header region zero,
//! `crate::spares`) and an early successor (an empty segment
//! created ahead of a seal that a crash kept from being written); truncate
//! the last segment after its last valid record (dropping a torn tail or
//! stale bytes) and re-reserve its space, then fsync it (so records that
//! survived a crash un-synced become durable before anything is appended
//! after them); fsync the directory. Each step leaves a state recovery
//! handles again, so a crash during repair is repaired at the next open.

use crate::config::Config;
use crate::error::{io_ctx, RecoveryError};
use crate::format::Lsn;
use crate::limits::MAX_DIO_ALIGN;
use crate::scan::{analyze, RecordPos, SegmentEnd, SegmentSummary, TornTail, Verdict};
use crate::spares::Spares;
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
    /// An empty segment created ahead of its predecessor's seal, which a
    /// crash kept from being written: removed.
    pub removed_early_successor: Option<String>,
    /// Spare segment files (header region all zero) left by a crash while
    /// they waited for a roll or were being recycled: removed.
    pub removed_spares: Vec<String>,
}

/// The two halves of a log positioned at its end.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub stager: Stager,
    pub writer: Writer,
    pub segments: Vec<Rolled>,
    pub report: RecoveryReport,
    /// Where the writer finds segment files ready (`Config::spare_segments`).
    pub spares: Option<Arc<Spares>>,
}

/// Scans and repairs the log in `storage`; `fresh_spares`: whether the
/// log's spares may be fresh files (the threaded log) or only recycled.
pub(crate) fn recover(
    storage: Arc<dyn Storage>,
    cfg: &Config,
    fresh_spares: bool,
) -> Result<Recovered, RecoveryError> {
    let a = analyze(&*storage, Some(cfg.shard))
        .map_err(|e| RecoveryError::Io(io_ctx("scan log directory")(e)))?;
    let torn = match a.verdict.clone() {
        Verdict::Corrupt(c) => return Err(RecoveryError::Corrupt(c)),
        Verdict::Gap(g) => return Err(RecoveryError::Gap(g)),
        Verdict::Torn(t) => Some(t),
        Verdict::Clean => None,
    };
    let ends = a.next_lsn();
    if let Some(durable) = cfg.durable_at_least.filter(|&durable| ends < durable) {
        return Err(RecoveryError::EndsEarly { ends, durable });
    }
    let early = a.early_successor.as_ref().map(|s| s.name.clone());
    for t in a.tmp_files.iter().chain(&early).chain(&a.spares) {
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
    let spares = (cfg.spare_segments > 0).then(|| {
        let next = a.segments.last().map_or(0, |s| s.number + 1);
        Arc::new(Spares::new(
            storage.clone(),
            cfg.segment_bytes,
            cfg.spare_segments,
            fresh_spares,
            next,
        ))
    });
    let init = StagerInit {
        tail: Tail {
            segment: 0,
            salt: 0,
            seg_first_lsn: Lsn(0),
            segment_bytes: 0,
            offset: 0,
        },
        tail_block: Vec::new(),
        next_lsn,
        new_segment_bytes: cfg.segment_bytes,
        chunk_cap: cfg.batch_bytes,
        roll: Some(0),
        seed: storage.entropy(),
    };
    let (stager, writer) = match a.segments.last() {
        None => (
            Stager::new(init),
            Writer::new(
                storage.clone(),
                cfg.shard,
                None,
                cfg.on_sync.clone(),
                spares.clone(),
            ),
        ),
        Some(last) => resume(&storage, cfg, last, init, spares.clone())?,
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
        removed_early_successor: early,
        removed_spares: a.spares.clone(),
    };
    Ok(Recovered {
        stager,
        writer,
        segments,
        report,
        spares,
    })
}

/// Truncates `last`, the newest segment (never sealed: a sealed newest
/// segment is a missing successor, refused above), after its last valid
/// record, and positions both halves there.
fn resume(
    storage: &Arc<dyn Storage>,
    cfg: &Config,
    last: &SegmentSummary,
    init: StagerInit,
    spares: Option<Arc<Spares>>,
) -> Result<(Stager, Writer), RecoveryError> {
    assert!(
        !matches!(last.end, SegmentEnd::Sealed(_)),
        "a sealed newest segment is refused before repair"
    );
    let end = last.end.offset();
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
    let stager = Stager::new(StagerInit {
        tail,
        tail_block,
        roll: None,
        ..init
    });
    let writer = Writer::new(
        storage.clone(),
        cfg.shard,
        Some((last.number, file, end)),
        cfg.on_sync.clone(),
        spares,
    );
    Ok((stager, writer))
}
