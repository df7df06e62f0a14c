//! Verifying scan of log segments, shared by recovery and inspect: the
//! records of one segment, and how the newest one ends.
//!
//! Rules (argued in `docs/wal-format.md`):
//! - Every record is verified (length, CRC, reserved fields, salt, LSN
//!   sequence); the valid records of a segment end at the first position
//!   that is not a valid record, or at a seal.
//! - In the newest segment, if some record after that position carries a
//!   `durable_below` above the expected LSN there, the bad bytes had been
//!   durable: corruption. Otherwise bytes after the end are a torn tail
//!   (or nothing, if they are all zero).
//!
//! The rules across the directory (dense numbers, missing segments, seals,
//! `*.wal.tmp` files) are in `crate::analysis`. The scan never reads
//! outside the mapped bytes and never panics on input.

pub use crate::analysis::{analyze, Analysis};
use crate::format::{parse_record, BadReason, Lsn, Parsed, RecordType, SegmentHeader};
use crate::limits::{RECORD_ALIGN, SEGMENT_HEADER_REGION};
use std::collections::BTreeMap;

/// Suffix of a finished segment file.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of a segment being created.
pub const TMP_SUFFIX: &str = ".wal.tmp";

/// File name of segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("{n:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name: `(number, is_tmp)`.
pub fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (stem, tmp) = if let Some(s) = name.strip_suffix(TMP_SUFFIX) {
        (s, true)
    } else {
        (name.strip_suffix(SEGMENT_SUFFIX)?, false)
    };
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(|n| (n, tmp))
}

/// Where one record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    /// Segment number.
    pub segment: u64,
    /// Byte offset of the record in its segment file.
    pub offset: u64,
    /// Its LSN.
    pub lsn: Lsn,
    /// Its epoch.
    pub epoch: u64,
    /// Its type.
    pub kind: RecordType,
}

/// How the valid records of a segment end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// A seal record at this offset.
    Sealed(u64),
    /// Zero bytes start at this offset.
    Zero(u64),
    /// A record from an earlier use of the file (other salt) at this offset.
    Stale(u64),
    /// Invalid bytes at this offset.
    Bad(u64, BadReason),
}

impl SegmentEnd {
    /// Offset where valid data ends.
    pub fn offset(self) -> u64 {
        match self {
            Self::Sealed(o) | Self::Zero(o) | Self::Stale(o) | Self::Bad(o, _) => o,
        }
    }
}

/// What a scan found in one segment file.
#[derive(Debug, Clone)]
pub struct SegmentSummary {
    /// File name.
    pub name: String,
    /// Segment number from the name.
    pub number: u64,
    /// Decoded header.
    pub header: SegmentHeader,
    /// File length in bytes.
    pub file_len: u64,
    /// Valid records (seal excluded).
    pub records: u64,
    /// Valid records per type byte.
    pub by_type: BTreeMap<u8, u64>,
    /// Lowest and highest epoch among valid records.
    pub epochs: Option<(u64, u64)>,
    /// LSN after the last valid record.
    pub next_lsn: Lsn,
    /// The last valid record.
    pub last: Option<RecordPos>,
    /// How the valid records end.
    pub end: SegmentEnd,
}

/// A corruption that makes the log unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Segment file name.
    pub segment: String,
    /// Byte offset in that file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.segment, self.offset, self.reason
        )
    }
}

/// A torn tail: un-synced bytes at the end of the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Segment file name.
    pub segment: String,
    /// Offset where valid records end (truncation point).
    pub offset: u64,
    /// Bytes between `offset` and the last non-zero byte of the file.
    pub dropped_bytes: u64,
    /// The last valid record in the log, if any.
    pub last_valid: Option<RecordPos>,
}

/// The verdict over the whole directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every byte accounted for.
    Clean,
    /// The last segment ends in a torn write.
    Torn(TornTail),
    /// Corruption: the log must not be opened.
    Corrupt(Corruption),
    /// Segments are missing: the log must not be opened.
    Gap(Gap),
}

/// Missing segments: a hole between two segments, or segments missing
/// after the newest one present (whose seal proves a successor existed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The newest segment present before the gap (file name).
    pub after: String,
    /// The first missing segment number.
    pub first_missing: u64,
    /// The segment present after the gap (file name) and its number;
    /// `None` when the newest segments are missing.
    pub before: Option<(String, u64)>,
    /// The first missing LSN (where `after` ends), if `after` could be
    /// read.
    pub from_lsn: Option<Lsn>,
    /// The first LSN present again (the first of `before`), if known.
    pub to_lsn: Option<Lsn>,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = segment_name(self.first_missing);
        let Some((before, number)) = &self.before else {
            write!(
                f,
                "segment {first} is missing: {} ends with a seal, which is written only \
                 after its successor exists, and no later segment is present",
                self.after
            )?;
            return lost(f, self.from_lsn, None);
        };
        if self.first_missing + 1 == *number {
            write!(f, "segment {first} is missing")?;
        } else {
            let last = segment_name(number - 1);
            write!(f, "segments {first} to {last} are missing")?;
        }
        write!(f, " between {} and {before}", self.after)?;
        lost(f, self.from_lsn, self.to_lsn)
    }
}

/// Says which LSNs a gap lost, as far as they are known.
fn lost(f: &mut std::fmt::Formatter<'_>, from: Option<Lsn>, to: Option<Lsn>) -> std::fmt::Result {
    match (from, to) {
        (Some(from), Some(to)) => write!(f, " (records from {from} up to {to} are lost)"),
        (Some(from), None) => write!(f, " (records from {from} on are lost)"),
        (None, _) => Ok(()),
    }
}

fn corrupt(segment: &str, offset: u64, reason: impl Into<String>) -> Verdict {
    Verdict::Corrupt(Corruption {
        segment: segment.to_string(),
        offset,
        reason: reason.into(),
    })
}

/// Scans the records of one segment whose header is `header`.
pub fn scan_segment(name: &str, number: u64, header: SegmentHeader, data: &[u8]) -> SegmentSummary {
    let mut s = SegmentSummary {
        name: name.to_string(),
        number,
        header,
        file_len: data.len() as u64,
        records: 0,
        by_type: BTreeMap::new(),
        epochs: None,
        next_lsn: header.first_lsn,
        last: None,
        end: SegmentEnd::Zero(SEGMENT_HEADER_REGION),
    };
    let mut off = SEGMENT_HEADER_REGION;
    s.end = loop {
        let Ok(at) = usize::try_from(off) else {
            break SegmentEnd::Bad(off, BadReason::Truncated);
        };
        match parse_record(data, at, header.salt) {
            Parsed::Zero => break SegmentEnd::Zero(off),
            Parsed::Stale => break SegmentEnd::Stale(off),
            Parsed::Bad(r) => break SegmentEnd::Bad(off, r),
            Parsed::Record(h, p) => {
                if h.lsn != s.next_lsn {
                    break SegmentEnd::Bad(off, BadReason::WrongLsn);
                }
                if h.kind.is_seal() {
                    break SegmentEnd::Sealed(off);
                }
                s.records += 1;
                *s.by_type.entry(h.kind.get()).or_insert(0) += 1;
                s.epochs = Some(s.epochs.map_or((h.epoch, h.epoch), |(a, b)| {
                    (a.min(h.epoch), b.max(h.epoch))
                }));
                s.last = Some(RecordPos {
                    segment: number,
                    offset: off,
                    lsn: h.lsn,
                    epoch: h.epoch,
                    kind: h.kind,
                });
                s.next_lsn = Lsn(h.lsn.0 + 1);
                off += crate::format::frame_len(p.len());
            }
        }
    };
    s
}

/// Offset of a record after `from` proving that LSN `expected` had been
/// durable (its `durable_below` exceeds `expected`), if any.
fn durability_proof(data: &[u8], from: u64, salt: u32, expected: Lsn) -> Option<u64> {
    // Nothing can start at or after the last non-zero byte.
    let end = last_nonzero(data, from);
    let mut off = from + RECORD_ALIGN;
    while off < end {
        if let Some(Parsed::Record(h, _)) = salted(data, off, salt) {
            if h.durable_below > expected {
                return Some(off);
            }
        }
        off += RECORD_ALIGN;
    }
    None
}

/// The record at `off` if it carries `salt` (checked before its CRC: in a
/// recycled segment most offsets hold an earlier use's bytes).
fn salted(data: &[u8], off: u64, salt: u32) -> Option<Parsed<'_>> {
    let at = usize::try_from(off).ok()?;
    let field = data.get(at + 32..at + 36)?;
    if field != salt.to_le_bytes() {
        return None;
    }
    Some(parse_record(data, at, salt))
}

/// End of the last record after `from` (on the 8-byte grid) that carries
/// `salt`: in a recycled segment, where this segment's bytes end, the rest
/// being an earlier use's (`docs/wal-format.md` §12).
pub(crate) fn salted_end(data: &[u8], from: u64, salt: u32) -> Option<u64> {
    let end = last_nonzero(data, from);
    let mut off = from;
    let mut last = None;
    while off < end {
        if let Some(Parsed::Record(_, p)) = salted(data, off, salt) {
            last = Some(off + crate::format::frame_len(p.len()));
        }
        off += RECORD_ALIGN;
    }
    last
}

/// Offset just after the last non-zero byte of `data` at or after `from`.
pub(crate) fn last_nonzero(data: &[u8], from: u64) -> u64 {
    let from = (from as usize).min(data.len());
    let tail = &data[from..];
    // Skip whole zero words from the end first (the common case is a mostly
    // zero preallocated tail), then find the exact byte.
    let mut end = tail.len();
    while end >= 8 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&tail[end - 8..end]);
        if u64::from_ne_bytes(w) != 0 {
            break;
        }
        end -= 8;
    }
    tail[..end]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(from, |p| from + p + 1) as u64
}

/// Classifies how the last segment ends.
pub(crate) fn classify_tail(s: &SegmentSummary, data: &[u8], last: Option<RecordPos>) -> Verdict {
    let off = s.end.offset();
    let recycled = s.header.recycled;
    match s.end {
        SegmentEnd::Sealed(_) => return Verdict::Clean,
        SegmentEnd::Stale(_) if !recycled => return Verdict::Clean,
        SegmentEnd::Zero(_) | SegmentEnd::Stale(_) | SegmentEnd::Bad(..) => {}
    }
    if let Some(p) = durability_proof(data, off, s.header.salt, s.next_lsn) {
        let why = match s.end {
            SegmentEnd::Bad(_, r) => {
                format!("{r}, but the record at offset {p} shows it was durable")
            }
            _ => format!("zeroed record, but the record at offset {p} shows it was durable"),
        };
        return corrupt(&s.name, off, why);
    }
    // A recycled segment's bytes after its records are an earlier use's,
    // but for records of its own salt: those of a torn write.
    let end = if recycled {
        salted_end(data, off, s.header.salt).unwrap_or(off)
    } else {
        last_nonzero(data, off)
    }
    .max(off);
    if end == off {
        return Verdict::Clean;
    }
    Verdict::Torn(TornTail {
        segment: s.name.clone(),
        offset: off,
        dropped_bytes: end - off,
        last_valid: last,
    })
}
