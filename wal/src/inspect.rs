//! `weir wal inspect DIR`: a read-only report on a log directory — every
//! segment (those after a corrupt or missing one too), record counts per
//! type, epochs, the last durable position, and any torn tail, corruption
//! or missing segment. Opens files read-only and changes nothing (it does
//! not truncate a torn tail; recovery at open does).
//!
//! [`InspectReport::is_refused`] says whether recovery would refuse the
//! log (corruption or missing segments); `weir wal inspect` then exits
//! with status 1.

use crate::error::{io_ctx, InspectError};
use crate::format::Lsn;
use crate::reader::LogReader;
use crate::scan::{analyze, Analysis, RecordPos, SegmentEnd, SegmentSummary, Verdict};
use crate::storage::{FsStorage, Storage};
use crate::writer::Rolled;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The result of [`inspect`]; `Display` prints the human-readable report.
#[derive(Debug, Clone)]
pub struct InspectReport {
    /// The directory inspected.
    pub dir: PathBuf,
    /// Everything the scan found.
    pub analysis: Analysis,
}

impl InspectReport {
    /// LSN after the last valid record.
    pub fn next_lsn(&self) -> Lsn {
        self.analysis.next_lsn()
    }
    /// The last valid record (the last durable position after recovery).
    pub fn last_record(&self) -> Option<RecordPos> {
        self.analysis.last_record()
    }
    /// The verdict: clean, torn tail, corruption, or missing segments.
    pub fn verdict(&self) -> &Verdict {
        &self.analysis.verdict
    }
    /// Whether opening the log would be refused: it is corrupt or segments
    /// are missing. A clean log or a torn tail opens.
    pub fn is_refused(&self) -> bool {
        !self.analysis.faults.is_empty()
    }
}

/// Scans the log in `dir` without modifying it.
pub fn inspect(dir: &Path) -> Result<InspectReport, InspectError> {
    let fs = FsStorage::open(dir, false)
        .map_err(|e| InspectError::Io(io_ctx(dir.display().to_string())(e)))?;
    inspect_storage(&fs, dir)
}

/// Reads the records of the verified log in `dir`, read-only as
/// [`inspect`]: for tools that look inside payloads (the runtime checks
/// its commit records). On a corrupt or torn log, the records before the
/// damage.
pub fn inspect_records(dir: &Path) -> Result<LogReader, InspectError> {
    let fs = FsStorage::open(dir, false)
        .map_err(|e| InspectError::Io(io_ctx(dir.display().to_string())(e)))?;
    let storage: Arc<dyn Storage> = Arc::new(fs);
    let analysis = analyze(&*storage, None)
        .map_err(|e| InspectError::Io(io_ctx(format!("scan {}", dir.display()))(e)))?;
    let segments: Vec<Rolled> = analysis.segments[..analysis.verified]
        .iter()
        .map(|s| Rolled {
            segment: s.number,
            first_lsn: s.header.first_lsn,
        })
        .collect();
    let from = segments.first().map_or(Lsn(0), |s| s.first_lsn);
    LogReader::new(storage, segments, from, analysis.next_lsn()).map_err(InspectError::Read)
}

/// [`inspect`] over any storage (`dir` is only used for the report).
pub fn inspect_storage(storage: &dyn Storage, dir: &Path) -> Result<InspectReport, InspectError> {
    let analysis = analyze(storage, None)
        .map_err(|e| InspectError::Io(io_ctx(format!("scan {}", dir.display()))(e)))?;
    Ok(InspectReport {
        dir: dir.to_path_buf(),
        analysis,
    })
}

fn type_name(t: u8) -> String {
    match t {
        1 => "input".into(),
        2 => "source-positions".into(),
        3 => "operator-state".into(),
        4 => "sink-precommit".into(),
        5 => "epoch-commit".into(),
        6 => "continued".into(),
        7 => "operator-changes".into(),
        8 => "operator-base".into(),
        9 => "operator-sweep".into(),
        16 => "restart".into(),
        17 => "sink-committed".into(),
        n => format!("type-{n}"),
    }
}

fn fmt_pos(p: &RecordPos) -> String {
    format!(
        "{} (segment {}, offset {}, epoch {}, {})",
        p.lsn,
        p.segment,
        p.offset,
        p.epoch,
        type_name(p.kind.get())
    )
}

fn fmt_segment(f: &mut fmt::Formatter<'_>, s: &SegmentSummary) -> fmt::Result {
    let end = match s.end {
        SegmentEnd::Sealed(o) => format!("sealed at {o}"),
        SegmentEnd::Zero(o) => format!("open, data ends at {o}"),
        SegmentEnd::Stale(o) if s.header.recycled => {
            format!("open, data ends at {o} (an earlier segment's bytes after it)")
        }
        SegmentEnd::Stale(o) => format!("open, stale data from {o}"),
        SegmentEnd::Bad(o, r) => format!("invalid bytes at {o}: {r}"),
    };
    write!(
        f,
        "  {}  shard {}  {} .. {}  {} record(s)  {end}",
        s.name, s.header.shard, s.header.first_lsn, s.next_lsn, s.records
    )?;
    if let Some((lo, hi)) = s.epochs {
        write!(f, "  epochs {lo}..={hi}")?;
    }
    if s.header.recycled {
        write!(f, "  recycled")?;
    }
    writeln!(f)?;
    for (t, n) in &s.by_type {
        writeln!(f, "      {:<18} {n}", type_name(*t))?;
    }
    Ok(())
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.analysis;
        writeln!(
            f,
            "log directory {}: {} segment(s)",
            self.dir.display(),
            a.segments.len()
        )?;
        for s in &a.segments {
            fmt_segment(f, s)?;
        }
        if let Some(s) = &a.early_successor {
            writeln!(
                f,
                "  {}: created ahead of its predecessor's seal, which a crash kept from \
                 being written; empty (removed at open)",
                s.name
            )?;
        }
        for t in &a.tmp_files {
            writeln!(f, "  {t}: torn segment roll (removed at open)")?;
        }
        for t in &a.spares {
            writeln!(
                f,
                "  {t}: spare, header region zero (ready for a roll, or a retired segment                  being recycled; removed at open)"
            )?;
        }
        for fault in &a.faults {
            writeln!(f, "  ! {fault}")?;
        }
        match self.last_record() {
            Some(p) => writeln!(f, "last durable record: {}", fmt_pos(&p))?,
            None => writeln!(f, "last durable record: none")?,
        }
        writeln!(f, "next {}", a.next_lsn())?;
        let more = match a.faults.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more fault(s), listed above)", n - 1),
        };
        match &a.verdict {
            Verdict::Clean => writeln!(f, "status: clean"),
            Verdict::Torn(t) => writeln!(
                f,
                "status: torn tail in {} at offset {}: {} byte(s) will be dropped at open",
                t.segment, t.offset, t.dropped_bytes
            ),
            Verdict::Corrupt(c) => writeln!(f, "status: CORRUPT (open refused): {c}{more}"),
            Verdict::Gap(g) => writeln!(f, "status: MISSING SEGMENTS (open refused): {g}{more}"),
        }
    }
}
