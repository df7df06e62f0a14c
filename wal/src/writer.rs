//! The two halves of appending: the [`Stager`] frames records into memory
//! (the appender's side: LSN, placement, salt, CRC — all layout decisions),
//! and the [`Writer`] makes staged chunks durable (the I/O side: one aligned
//! write + fdatasync per chunk, and segment rolls).
//!
//! Invariants:
//! - The layout of the log depends only on the sequence of appends, never
//!   on how they are grouped into commits.
//! - The writer has at most one un-synced write outstanding; a chunk counts
//!   as durable only after its write_sync returned `Ok`.
//! - A segment ends with a seal that is durable before the next segment file
//!   exists; a new segment is created under a temporary name, its header
//!   written and synced, renamed, and the directory synced before any of its
//!   records is written.
//! - Chunks are staged directly in O_DIRECT-aligned buffers that start at a
//!   4096-byte boundary of the file: a chunk that starts mid-block carries a
//!   copy of that block's existing bytes in front, so the write rewrites them
//!   with identical content and durable bytes never change. No copy is made
//!   on the writer side.
//! - A chunk holds at most about `chunk_cap` bytes (the batch size), so a
//!   large backlog is written as several batch-sized write + fdatasync
//!   pairs rather than one huge buffer.

use crate::align::{AlignedBuf, AlignedVec};
use crate::format::{
    encode_record_into, frame_len, Entry, Lsn, RecordHeader, RecordType, SegmentHeader,
};
use crate::limits::{
    MAX_DIO_ALIGN, MAX_PAYLOAD_BYTES, MAX_SPARE_CHUNKS, MAX_STAGED_BYTES, SEAL_FRAME_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_HEADER_REGION,
};
use crate::scan::{segment_name, TMP_SUFFIX};
use crate::storage::memory::SplitMix;
use crate::storage::{SegmentFile, Storage};
use crate::{AppendError, WalFailure};
use std::io;
use std::sync::Arc;

const BLOCK: u64 = MAX_DIO_ALIGN;

/// Staged bytes for one contiguous, block-aligned range of one segment.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Segment number.
    pub segment: u64,
    /// Salt of that segment.
    pub salt: u32,
    /// First LSN of that segment.
    pub seg_first_lsn: Lsn,
    /// Maximum size of that segment.
    pub segment_bytes: u64,
    /// Whether the writer must create this segment before writing.
    pub new_segment: bool,
    /// File offset of `bytes[0]`, a multiple of [`BLOCK`].
    pub start: u64,
    /// Existing bytes of the first block, then framed records.
    pub bytes: AlignedVec,
    /// Whether `bytes` holds any new record (not just carried bytes).
    pub has_records: bool,
    /// LSN after the last record in this chunk.
    pub end_lsn: Lsn,
}

/// Where the next record goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    pub segment: u64,
    pub salt: u32,
    pub seg_first_lsn: Lsn,
    pub segment_bytes: u64,
    pub offset: u64,
}

/// The appender's half: frames records into chunks.
#[derive(Debug)]
pub(crate) struct Stager {
    chunks: Vec<Chunk>,
    tail: Tail,
    /// Bytes of the segment in `[align_down(tail.offset), tail.offset)`.
    tail_block: Vec<u8>,
    next_lsn: Lsn,
    new_segment_bytes: u64,
    chunk_cap: usize,
    staged_bytes: usize,
    rng: SplitMix,
    spare: Vec<AlignedVec>,
}

/// How a [`Stager`] starts.
#[derive(Debug)]
pub(crate) struct StagerInit {
    pub tail: Tail,
    pub tail_block: Vec<u8>,
    pub next_lsn: Lsn,
    pub new_segment_bytes: u64,
    pub chunk_cap: usize,
    /// Start a new segment with this number first (empty log, or the last
    /// segment is sealed).
    pub roll: Option<u64>,
    pub seed: u64,
}

impl Stager {
    pub fn new(i: StagerInit) -> Self {
        assert_eq!(
            i.tail_block.len() as u64,
            i.tail.offset % BLOCK,
            "tail block must be the partial block"
        );
        let mut s = Self {
            chunks: Vec::new(),
            tail: i.tail,
            tail_block: i.tail_block,
            next_lsn: i.next_lsn,
            new_segment_bytes: i.new_segment_bytes,
            chunk_cap: i.chunk_cap.max(BLOCK as usize),
            staged_bytes: 0,
            rng: SplitMix(i.seed),
            spare: Vec::new(),
        };
        if let Some(n) = i.roll {
            s.start_segment(n);
        }
        s
    }

    /// Largest payload accepted.
    pub fn max_payload(&self) -> usize {
        let room = self.new_segment_bytes - SEGMENT_HEADER_REGION - SEAL_FRAME_LEN;
        let fit = (room - frame_len(0)) as usize;
        fit.min(MAX_PAYLOAD_BYTES)
    }

    /// LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Bytes staged and not yet taken.
    pub fn staged_bytes(&self) -> usize {
        self.staged_bytes
    }

    /// Whether anything (records or a roll) awaits the writer.
    pub fn has_work(&self) -> bool {
        !self.chunks.is_empty()
    }

    fn start_segment(&mut self, number: u64) {
        self.tail = Tail {
            segment: number,
            salt: self.rng.next_u64() as u32,
            seg_first_lsn: self.next_lsn,
            segment_bytes: self.new_segment_bytes,
            offset: SEGMENT_HEADER_REGION,
        };
        self.tail_block.clear();
        self.push_chunk(true);
    }

    /// Remembers the partial block at the tail from the last chunk.
    fn save_tail(&mut self) {
        let Some(c) = self.chunks.last() else { return };
        if c.segment != self.tail.segment {
            return;
        }
        let block = self.tail.offset - self.tail.offset % BLOCK;
        let from = (block - c.start) as usize;
        self.tail_block.clear();
        self.tail_block
            .extend_from_slice(&c.bytes.as_slice()[from..]);
    }

    fn push_chunk(&mut self, new_segment: bool) {
        self.save_tail();
        // Fresh buffers start small and grow by doubling; written ones are
        // recycled, so steady state allocates nothing.
        let first = (self.chunk_cap + 2 * BLOCK as usize).min(1 << 20);
        let mut bytes = self
            .spare
            .pop()
            .unwrap_or_else(|| AlignedVec::with_capacity(first, BLOCK as usize));
        bytes.clear();
        bytes.extend_from_slice(&self.tail_block);
        self.chunks.push(Chunk {
            segment: self.tail.segment,
            salt: self.tail.salt,
            seg_first_lsn: self.tail.seg_first_lsn,
            segment_bytes: self.tail.segment_bytes,
            new_segment,
            start: self.tail.offset - self.tail.offset % BLOCK,
            bytes,
            has_records: false,
            end_lsn: self.next_lsn,
        });
    }

    /// The chunk the next bytes at the tail go into.
    fn current(&mut self) -> &mut Chunk {
        let (seg, off, cap) = (self.tail.segment, self.tail.offset, self.chunk_cap);
        let ok = self.chunks.last().is_some_and(|c| {
            c.segment == seg && c.start + c.bytes.len() as u64 == off && c.bytes.len() < cap
        });
        if !ok {
            self.push_chunk(false);
        }
        let last = self.chunks.len() - 1;
        &mut self.chunks[last]
    }

    fn put(&mut self, kind: RecordType, epoch: u64, lsn: Lsn, durable_below: Lsn, payload: &[u8]) {
        let h = RecordHeader {
            kind,
            epoch,
            lsn,
            durable_below,
            salt: self.tail.salt,
        };
        let len = frame_len(payload.len());
        let c = self.current();
        encode_record_into(c.bytes.grow(len as usize), &h, payload);
        c.has_records = true;
        self.tail.offset += len;
        self.staged_bytes += len as usize;
    }

    /// Frames one record; returns its LSN.
    pub fn append(
        &mut self,
        kind: RecordType,
        epoch: u64,
        payload: &[u8],
        durable_below: Lsn,
    ) -> Result<Lsn, AppendError> {
        let max = self.max_payload();
        assert!(!kind.is_seal(), "seal records are internal");
        if payload.len() > max {
            return Err(AppendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let need = frame_len(payload.len()) + SEAL_FRAME_LEN;
        if self.tail.offset + need > self.tail.segment_bytes {
            let seal_lsn = self.next_lsn;
            self.put(RecordType::SEAL, 0, seal_lsn, durable_below, &[]);
            let next = self.tail.segment + 1;
            self.start_segment(next);
        }
        let lsn = self.next_lsn;
        self.put(kind, epoch, lsn, durable_below, payload);
        self.next_lsn = Lsn(lsn.0 + 1);
        let end = self.next_lsn;
        self.current().end_lsn = end;
        Ok(lsn)
    }

    /// Frames several records (all sizes checked first, so either all are
    /// staged or none); returns the last LSN, `None` for an empty slice.
    pub fn append_many(
        &mut self,
        entries: &[Entry<'_>],
        durable_below: Lsn,
    ) -> Result<Option<Lsn>, AppendError> {
        let max = self.max_payload();
        if let Some(e) = entries.iter().find(|e| e.payload.len() > max) {
            return Err(AppendError::TooLarge {
                len: e.payload.len(),
                max,
            });
        }
        let mut last = None;
        for e in entries {
            last = Some(self.append(e.kind, e.epoch, e.payload, durable_below)?);
        }
        Ok(last)
    }

    /// Takes everything staged.
    pub fn take(&mut self) -> Vec<Chunk> {
        self.save_tail();
        self.staged_bytes = 0;
        std::mem::take(&mut self.chunks)
    }

    /// Returns written chunk buffers for reuse (enough of them to cover the
    /// staging limit; oversized ones are dropped).
    pub fn recycle(&mut self, chunks: Vec<Chunk>) {
        let keep = (MAX_STAGED_BYTES / self.chunk_cap + 2).min(MAX_SPARE_CHUNKS);
        for c in chunks {
            if self.spare.len() < keep && c.bytes.capacity() <= self.chunk_cap * 4 {
                self.spare.push(c.bytes);
            }
        }
    }
}

/// The I/O half: owns the active segment file.
#[derive(Debug)]
pub(crate) struct Writer {
    storage: Arc<dyn Storage>,
    shard: u32,
    file: Option<Box<dyn SegmentFile>>,
    segment: u64,
    /// End of written data in the active segment.
    write_off: u64,
    header: AlignedBuf,
}

/// A segment the writer created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rolled {
    pub segment: u64,
    pub first_lsn: Lsn,
}

impl Writer {
    /// Resumes writing `file` (segment number, file, end of data), if any.
    pub fn new(
        storage: Arc<dyn Storage>,
        shard: u32,
        file: Option<(u64, Box<dyn SegmentFile>, u64)>,
    ) -> Self {
        let header = AlignedBuf::new(SEGMENT_HEADER_REGION as usize, BLOCK as usize);
        let mut w = Self {
            storage,
            shard,
            file: None,
            segment: 0,
            write_off: 0,
            header,
        };
        if let Some((segment, f, off)) = file {
            w.segment = segment;
            w.file = Some(f);
            w.write_off = off;
        }
        w
    }

    /// Writes `chunks` in order; after each durable chunk calls `durable`
    /// with its end LSN, and after each roll `rolled`. Any error is final.
    pub fn write(
        &mut self,
        chunks: &mut [Chunk],
        durable: &mut dyn FnMut(Lsn),
        rolled: &mut dyn FnMut(Rolled),
    ) -> Result<(), WalFailure> {
        for c in chunks.iter_mut() {
            if c.new_segment {
                self.roll(c)?;
                rolled(Rolled {
                    segment: c.segment,
                    first_lsn: c.seg_first_lsn,
                });
            }
            if c.has_records {
                self.write_chunk(c)?;
            }
            durable(c.end_lsn);
        }
        Ok(())
    }

    fn write_chunk(&mut self, c: &mut Chunk) -> Result<(), WalFailure> {
        assert!(
            c.segment == self.segment && c.start == self.write_off - self.write_off % BLOCK,
            "chunk out of order"
        );
        let Some(file) = self.file.as_mut() else {
            panic!("no active segment for a chunk")
        };
        let data = c.bytes.padded(file.align());
        file.write_sync(c.start, data).map_err(|e| {
            WalFailure::from_io(
                &format!("{} write at offset {}", segment_name(self.segment), c.start),
                &e,
            )
        })?;
        self.write_off = c.start + c.bytes.len() as u64;
        Ok(())
    }

    fn roll(&mut self, c: &Chunk) -> Result<(), WalFailure> {
        let name = segment_name(c.segment);
        let tmp = format!("{:020}{TMP_SUFFIX}", c.segment);
        let fail = |what: &str, e: io::Error| WalFailure::from_io(&format!("{what} {tmp}"), &e);
        let mut file = self
            .storage
            .create(&tmp, c.segment_bytes)
            .map_err(|e| fail("create", e))?;
        let header = SegmentHeader {
            shard: self.shard,
            segment: c.segment,
            salt: c.salt,
            first_lsn: c.seg_first_lsn,
            segment_bytes: c.segment_bytes,
        };
        let region = self.header.as_mut_slice();
        region.fill(0);
        region[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        file.write_sync(0, &self.header.as_slice()[..SEGMENT_HEADER_REGION as usize])
            .map_err(|e| fail("write header of", e))?;
        self.storage
            .rename(&tmp, &name)
            .map_err(|e| fail("rename", e))?;
        self.storage
            .sync_dir()
            .map_err(|e| fail("sync directory after creating", e))?;
        self.file = Some(file);
        self.segment = c.segment;
        self.write_off = SEGMENT_HEADER_REGION;
        Ok(())
    }
}
