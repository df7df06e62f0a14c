//! The rules across a log directory, shared by recovery and inspect: which
//! segments form the log, which are missing, and how the log ends.
//!
//! Rules (argued in `docs/wal-format.md` §7 and §8):
//! - Segment numbers are dense from the oldest segment present to the
//!   newest: retention deletes from the front only, so a hole is a missing
//!   segment. Each segment's header names its number, the shard, and a
//!   first LSN equal to where its predecessor ends.
//! - Every segment but the newest ends with a seal. The writer creates a
//!   segment's successor before it writes the seal, so a newest segment
//!   that ends with a seal proves that a later segment existed: it is
//!   missing.
//! - The one exception is a crash between creating the successor and
//!   writing the seal: then the newest segment holds nothing after its
//!   header and its predecessor ends without a seal. That segment is an
//!   *early successor*: it held no record, recovery removes it, and its
//!   predecessor is the newest segment.
//! - `*.wal.tmp` files are torn segment rolls; other names are ignored.
//! - Files whose header region is all zero, below the oldest segment or
//!   above the newest, are spares (`crate::spares`), not part of the log.
//!   A recycled segment's bytes after its records are an earlier use's:
//!   only records of its own salt count there.
//!
//! Nothing stops at the first fault: every segment file is scanned and
//! every fault listed, so that `weir wal inspect` shows the segments after
//! a corrupt or missing one too. Recovery refuses a log with any fault.
//!
//! Limits: a log whose every segment is gone reads as an empty log, and a
//! log cut at a segment boundary from the front reads as one that retention
//! trimmed. Only a record of what was durable outside the log can tell
//! (the runtime's commit records do, for shard logs).

use crate::format::{HeaderProblem, Lsn, SegmentHeader};
use crate::limits::SEGMENT_HEADER_REGION;
use crate::scan::{
    classify_tail, last_nonzero, parse_name, salted_end, scan_segment, Corruption, Gap, RecordPos,
    SegmentEnd, SegmentSummary, Verdict,
};
use crate::storage::{FileBytes, Storage};
use std::io;

/// Something that makes the log unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Bytes that should be a header or a durable record are not.
    Corrupt(Corruption),
    /// Segments are missing.
    Gap(Gap),
}

impl From<Fault> for Verdict {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Corrupt(c) => Verdict::Corrupt(c),
            Fault::Gap(g) => Verdict::Gap(g),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt(c) => write!(f, "corrupt: {c}"),
            Self::Gap(g) => write!(f, "missing: {g}"),
        }
    }
}

/// The result of scanning a log directory.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Every segment whose header decodes, in number order, those after a
    /// fault included; the early successor, if any, is not among them.
    pub segments: Vec<SegmentSummary>,
    /// How many of `segments`, from the first, form the verified log: all
    /// of them without a fault; with one, those before it (and the segment
    /// it is in, when it lies among that segment's records).
    pub verified: usize,
    /// An empty segment created ahead of its predecessor's seal, which a
    /// crash kept from being written; removed at open.
    pub early_successor: Option<SegmentSummary>,
    /// Torn segment rolls (`*.wal.tmp`).
    pub tmp_files: Vec<String>,
    /// Spare segment files (a header region of zeros) below the oldest
    /// segment or above the newest: prepared ahead of a roll, or retired
    /// and being recycled (`docs/wal-format.md` §12); removed at open.
    pub spares: Vec<String>,
    /// Every fault, in segment order.
    pub faults: Vec<Fault>,
    /// Overall verdict: the first fault if there is one, else how the
    /// newest segment ends.
    pub verdict: Verdict,
}

impl Analysis {
    /// LSN after the last valid record of the verified log (0 for an empty
    /// log).
    pub fn next_lsn(&self) -> Lsn {
        self.log().last().map_or(Lsn(0), |s| s.next_lsn)
    }

    /// The last valid record of the verified log.
    pub fn last_record(&self) -> Option<RecordPos> {
        self.log().iter().rev().find_map(|s| s.last)
    }

    fn log(&self) -> &[SegmentSummary] {
        &self.segments[..self.verified]
    }

    fn fault(&mut self, f: Fault) {
        if self.faults.is_empty() {
            self.verified = self.segments.len();
        }
        self.faults.push(f);
    }
}

/// One `*.wal` file: its number and name, its bytes, its header (or why
/// it does not decode) and what its records hold.
struct File {
    number: u64,
    name: String,
    data: FileBytes,
    header: Result<SegmentHeader, HeaderProblem>,
    summary: Option<SegmentSummary>,
}

/// Scans every segment in `storage`. I/O errors are returned; everything
/// found in the bytes goes into the analysis.
pub fn analyze(storage: &dyn Storage, shard: Option<u32>) -> io::Result<Analysis> {
    let (mut files, tmp_files) = read_files(storage)?;
    let mut spares = Vec::new();
    while files.last().is_some_and(File::blank) {
        spares.extend(files.pop().map(|f| f.name));
    }
    let front = files.iter().take_while(|f| f.blank()).count();
    spares.extend(files.drain(..front).map(|f| f.name));
    spares.sort();
    let mut a = Analysis {
        segments: Vec::new(),
        verified: 0,
        early_successor: None,
        tmp_files,
        spares,
        faults: Vec::new(),
        verdict: Verdict::Clean,
    };
    let early = match files.as_slice() {
        [.., file, next] => is_early_successor(file, next),
        _ => false,
    };
    if early {
        a.early_successor = files.pop().and_then(|f| f.summary);
    }
    let count = files.len();
    for i in 0..count {
        let prev = i.checked_sub(1).map(|p| &files[p]);
        check_file(&mut a, prev, &files[i], shard);
        check_end(&mut a, &mut files[i], i + 1 == count);
    }
    if a.faults.is_empty() {
        a.verified = a.segments.len();
    } else {
        a.verdict = a.faults[0].clone().into();
    }
    Ok(a)
}

impl File {
    /// Whether the whole header region is zero: a spare (a blank in the
    /// middle of the log is a bad header).
    fn blank(&self) -> bool {
        let region = SEGMENT_HEADER_REGION as usize;
        self.data.len() >= region && self.data[..region].iter().all(|&b| b == 0)
    }
}

/// Lists the directory and scans every `*.wal` file, in number order.
fn read_files(storage: &dyn Storage) -> io::Result<(Vec<File>, Vec<String>)> {
    let mut numbered = Vec::new();
    let mut tmp_files = Vec::new();
    for name in storage.list()? {
        match parse_name(&name) {
            Some((_, true)) => tmp_files.push(name),
            Some((n, false)) => numbered.push((n, name)),
            None => {}
        }
    }
    numbered.sort();
    tmp_files.sort();
    let mut files = Vec::with_capacity(numbered.len());
    for (number, name) in numbered {
        let data = storage.read(&name)?;
        let header = SegmentHeader::decode(&data);
        let summary = header
            .as_ref()
            .ok()
            .map(|h| scan_segment(&name, number, *h, &data));
        files.push(File {
            number,
            name,
            data,
            header,
            summary,
        });
    }
    Ok((files, tmp_files))
}

/// Whether `next`, the newest file, is an early successor of `file`: `file`
/// ends without a seal, and `next` directly follows it, starts where
/// `file`'s records could have gone on, and holds nothing after its header.
fn is_early_successor(file: &File, next: &File) -> bool {
    let (Some(s), Some(n)) = (&file.summary, &next.summary) else {
        return false;
    };
    !matches!(s.end, SegmentEnd::Sealed(_))
        && next.number == file.number + 1
        && n.header.segment == next.number
        && n.header.first_lsn >= s.next_lsn
        && n.records == 0
        && if n.header.recycled {
            salted_end(&next.data, SEGMENT_HEADER_REGION, n.header.salt).is_none()
        } else {
            last_nonzero(&next.data, SEGMENT_HEADER_REGION) == SEGMENT_HEADER_REGION
        }
}

/// Checks `file` against the one before it (`prev`): no gap, a header that
/// decodes and fits.
fn check_file(a: &mut Analysis, prev: Option<&File>, file: &File, shard: Option<u32>) {
    let follows = prev.is_some_and(|p| p.number + 1 == file.number);
    // `prev` was listed already (if its header decoded): it ends there.
    let prev_end = prev.and_then(|p| {
        let listed = a.segments.last().filter(|s| s.number == p.number);
        listed.map(|s| s.next_lsn)
    });
    if let Some(p) = prev.filter(|_| !follows) {
        a.fault(Fault::Gap(Gap {
            after: p.name.clone(),
            first_missing: p.number + 1,
            before: Some((file.name.clone(), file.number)),
            from_lsn: prev_end,
            to_lsn: file.header.as_ref().ok().map(|h| h.first_lsn),
        }));
    }
    let header = match &file.header {
        Ok(h) => h,
        Err(p) => return a.fault(corrupt_at(&file.name, 0, p.to_string())),
    };
    let expect_lsn = prev_end.filter(|_| follows);
    if let Some(reason) = check_header(file.number, header, shard, expect_lsn) {
        a.fault(corrupt_at(&file.name, 0, reason));
    }
}

/// Checks how `file`'s records end, and lists it: every segment but the
/// newest ends with a seal; the newest does not, and its tail is
/// classified.
fn check_end(a: &mut Analysis, file: &mut File, newest: bool) {
    let Some(s) = file.summary.take() else {
        return;
    };
    let sealed = matches!(s.end, SegmentEnd::Sealed(_));
    let fault = if !newest {
        let offset = s.end.offset();
        let why = match s.end {
            SegmentEnd::Sealed(_) => None,
            SegmentEnd::Bad(_, r) => Some(format!("{r} in a sealed-over segment")),
            _ => Some("segment ends without a seal but a later segment exists".to_string()),
        };
        why.map(|why| corrupt_at(&file.name, offset, why))
    } else if sealed {
        Some(Fault::Gap(Gap {
            after: file.name.clone(),
            first_missing: file.number + 1,
            before: None,
            from_lsn: Some(s.next_lsn),
            to_lsn: None,
        }))
    } else {
        let last = s
            .last
            .or_else(|| a.segments.iter().rev().find_map(|p| p.last));
        match classify_tail(&s, &file.data, last) {
            Verdict::Corrupt(c) => Some(Fault::Corrupt(c)),
            v => {
                a.verdict = v;
                None
            }
        }
    };
    a.segments.push(s);
    if let Some(f) = fault {
        a.fault(f);
    }
}

fn corrupt_at(segment: &str, offset: u64, reason: String) -> Fault {
    Fault::Corrupt(Corruption {
        segment: segment.to_string(),
        offset,
        reason,
    })
}

/// What is wrong with segment `n`'s header `h`, if anything.
fn check_header(
    n: u64,
    h: &SegmentHeader,
    shard: Option<u32>,
    expect_lsn: Option<Lsn>,
) -> Option<String> {
    if h.segment != n {
        return Some(format!("header names segment {}", h.segment));
    }
    if let Some(sh) = shard.filter(|&sh| sh != h.shard) {
        return Some(format!("segment of shard {}, expected shard {sh}", h.shard));
    }
    if expect_lsn.is_some_and(|e| e != h.first_lsn) {
        return Some(format!(
            "first {} does not follow the previous segment",
            h.first_lsn
        ));
    }
    if h.segment_bytes < SEGMENT_HEADER_REGION {
        return Some("segment size in header too small".to_string());
    }
    None
}
