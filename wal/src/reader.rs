//! Reading records for replay, and retention (deleting whole segments that
//! a checkpoint no longer needs).
//!
//! A reader reads only below the durable LSN it was created with and
//! verifies every record it returns; a record that fails verification below
//! that LSN is corruption and is reported, never skipped.

use crate::error::{io_ctx, ReadError, RetentionError};
use crate::format::{frame_len, parse_record, Lsn, Parsed, RecordType, SegmentHeader};
use crate::limits::SEGMENT_HEADER_REGION;
use crate::scan::{segment_name, Corruption};
use crate::spares::Spares;
use crate::storage::{FileBytes, Storage};
use crate::writer::Rolled;
use std::sync::Arc;

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its epoch.
    pub epoch: u64,
    /// Its type.
    pub kind: RecordType,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Iterates verified records from a position up to a durable bound.
#[derive(Debug)]
pub struct LogReader {
    storage: Arc<dyn Storage>,
    segments: Vec<Rolled>,
    seg_index: usize,
    data: Option<(FileBytes, u32)>,
    offset: u64,
    next: Lsn,
    until: Lsn,
}

impl LogReader {
    /// Reads records with `from <= lsn < until` from `segments`.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        segments: Vec<Rolled>,
        from: Lsn,
        until: Lsn,
    ) -> Result<Self, ReadError> {
        if let Some(first) = segments.first() {
            if from < first.first_lsn && from < until {
                let name = segment_name(first.segment);
                let reason = format!(
                    "{from} was deleted by retention; oldest is {}",
                    first.first_lsn
                );
                return Err(ReadError::Corrupt(Corruption {
                    segment: name,
                    offset: 0,
                    reason,
                }));
            }
        }
        let seg_index = segments
            .iter()
            .rposition(|s| s.first_lsn <= from)
            .unwrap_or(0);
        Ok(Self {
            storage,
            segments,
            seg_index,
            data: None,
            offset: 0,
            next: from,
            until,
        })
    }

    fn corrupt(&self, offset: u64, reason: String) -> ReadError {
        let name = self
            .segments
            .get(self.seg_index)
            .map_or_else(String::new, |s| segment_name(s.segment));
        ReadError::Corrupt(Corruption {
            segment: name,
            offset,
            reason,
        })
    }

    fn load(&mut self) -> Result<(), ReadError> {
        let Some(seg) = self.segments.get(self.seg_index) else {
            return Err(self.corrupt(0, format!("log ends before {}", self.next)));
        };
        let name = segment_name(seg.segment);
        let data = self
            .storage
            .read(&name)
            .map_err(|e| ReadError::Io(io_ctx(format!("read {name}"))(e)))?;
        let h = SegmentHeader::decode(&data).map_err(|p| self.corrupt(0, p.to_string()))?;
        self.data = Some((data, h.salt));
        self.offset = SEGMENT_HEADER_REGION;
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            if self.next >= self.until {
                return Ok(None);
            }
            if self.data.is_none() {
                self.load()?;
            }
            let Some((data, salt)) = self.data.as_ref() else {
                unreachable!("loaded above")
            };
            let off = self.offset;
            match parse_record(data, off as usize, *salt) {
                Parsed::Record(h, p) if h.kind.is_seal() => {
                    let _ = p;
                    self.data = None;
                    self.seg_index += 1;
                }
                Parsed::Record(h, p) => {
                    self.offset += frame_len(p.len());
                    if h.lsn < self.next {
                        continue;
                    }
                    if h.lsn != self.next {
                        return Err(
                            self.corrupt(off, format!("expected {}, found {}", self.next, h.lsn))
                        );
                    }
                    self.next = Lsn(h.lsn.0 + 1);
                    return Ok(Some(Record {
                        lsn: h.lsn,
                        epoch: h.epoch,
                        kind: h.kind,
                        payload: p.to_vec(),
                    }));
                }
                Parsed::Zero | Parsed::Stale => {
                    return Err(self.corrupt(off, format!("log ends before durable {}", self.next)));
                }
                Parsed::Bad(r) => return Err(self.corrupt(off, r.to_string())),
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<Record, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.until = self.next; // stop after reporting
                Some(Err(e))
            }
        }
    }
}

/// Deletes, oldest first, every segment all of whose records are below
/// `lsn` (never the last segment), at most `most` of them, then syncs the
/// directory; with `spares`, hands them over instead (recycled or unlinked
/// in turn, `crate::spares`). Returns how many were deleted. Deleting in order keeps the
/// remaining numbering dense after a crash part-way (directory operations
/// persist in order).
pub(crate) fn delete_below(
    storage: &dyn Storage,
    spares: Option<&Spares>,
    segments: &mut Vec<Rolled>,
    lsn: Lsn,
    most: usize,
) -> Result<usize, RetentionError> {
    let mut n = 0;
    while n < most && segments.len() >= 2 && segments[1].first_lsn <= lsn {
        let number = segments[0].segment;
        match spares {
            // Recycled or unlinked in turn (`crate::spares`).
            Some(spares) => spares.retire(number),
            None => {
                let name = segment_name(number);
                storage
                    .remove(&name)
                    .map_err(|e| RetentionError::Io(io_ctx(format!("remove {name}"))(e)))?;
            }
        }
        segments.remove(0);
        n += 1;
    }
    if n > 0 && spares.is_none() {
        storage
            .sync_dir()
            .map_err(|e| RetentionError::Io(io_ctx("sync log directory")(e)))?;
    }
    Ok(n)
}
