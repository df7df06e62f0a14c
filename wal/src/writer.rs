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
//! - A chunk holds at most `chunk_cap` bytes (the batch size; only a single
//!   larger record makes a larger chunk), so a large backlog is written as
//!   several batch-sized write + fdatasync pairs rather than one huge
//!   buffer. Its buffer is allocated at that size and never grows. Only the
//!   last chunk receives records; the others are complete and may be handed
//!   to the writer ([`Stager::take_complete`]).
//! - Batches are framed [`LANES`] records at a time (CRCs computed together)
//!   only where no segment roll falls inside the group, so the layout is
//!   the same as framing them one by one.

use crate::align::{AlignedBuf, AlignedVec};
use crate::crc::{frame_crcs, HEAD_LEN, LANES};
use crate::format::{
    encode_head, encode_record_into, frame_len, write_frame, Entry, Lsn, RecordHeader, RecordType,
    SegmentHeader,
};
use crate::limits::{
    MAX_DIO_ALIGN, MAX_PAYLOAD_BYTES, MAX_SPARE_CHUNKS, MAX_STAGED_BYTES, SEAL_FRAME_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_HEADER_REGION,
};
use crate::scan::{segment_name, TMP_SUFFIX};
use crate::storage::memory::SplitMix;
use crate::storage::{SegmentFile, Storage};
use crate::{AppendError, SyncObserver, WalFailure};
use std::io;
use std::sync::Arc;
use std::time::Instant;

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
        // Every buffer is allocated at full size (a batch, the carried
        // partial block and padding), so it never grows and is never copied
        // while records are framed into it; large ones are lazily zeroed
        // maps, and written ones are recycled, so steady state allocates
        // nothing.
        let cap = self.chunk_cap + 2 * BLOCK as usize;
        let mut bytes = self
            .spare
            .pop()
            .unwrap_or_else(|| AlignedVec::with_capacity(cap, BLOCK as usize));
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

    /// Index of the chunk a frame of `len` bytes at the tail goes into: the
    /// last one if it is contiguous with the tail and the frame fits in
    /// `chunk_cap` (or the chunk has no record yet), else a new one.
    fn current(&mut self, len: usize) -> usize {
        let (seg, off, cap) = (self.tail.segment, self.tail.offset, self.chunk_cap);
        let ok = self.chunks.last().is_some_and(|c| {
            c.segment == seg
                && c.start + c.bytes.len() as u64 == off
                && (!c.has_records || c.bytes.len() + len <= cap)
        });
        if !ok {
            self.push_chunk(false);
        }
        self.chunks.len() - 1
    }

    /// Claims the next `len` bytes at the tail for one record (`end`
    /// becomes the chunk's end LSN); the caller writes every byte.
    fn slot(&mut self, len: usize, end: Lsn) -> &mut [u8] {
        let i = self.current(len);
        self.tail.offset += len as u64;
        self.staged_bytes += len;
        let c = &mut self.chunks[i];
        c.has_records = true;
        c.end_lsn = end;
        c.bytes.grow(len)
    }

    /// Frames one record at the tail; `end` becomes the chunk's end LSN.
    fn put(&mut self, h: &RecordHeader, payload: &[u8], end: Lsn) {
        let len = frame_len(payload.len()) as usize;
        encode_record_into(self.slot(len, end), h, payload);
    }

    /// Frames [`LANES`] records that fit in the segment without a roll,
    /// their CRCs computed together; returns the last LSN.
    fn frame_lanes(&mut self, group: &[Entry<'_>; LANES], durable_below: Lsn) -> Lsn {
        let first = self.next_lsn.0;
        let heads: [[u8; HEAD_LEN]; LANES] = std::array::from_fn(|k| {
            let h = RecordHeader {
                kind: group[k].kind,
                epoch: group[k].epoch,
                lsn: Lsn(first + k as u64),
                durable_below,
                salt: self.tail.salt,
            };
            encode_head(&h, group[k].payload.len())
        });
        let crcs = frame_crcs(&heads, std::array::from_fn(|k| group[k].payload));
        for (k, e) in group.iter().enumerate() {
            let end = Lsn(first + k as u64 + 1);
            let b = self.slot(frame_len(e.payload.len()) as usize, end);
            write_frame(b, crcs[k], &heads[k], e.payload);
        }
        self.next_lsn = Lsn(first + LANES as u64);
        Lsn(first + LANES as u64 - 1)
    }

    fn check_len(&self, len: usize) -> Result<(), AppendError> {
        let max = self.max_payload();
        if len > max {
            return Err(AppendError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Frames one record; returns its LSN.
    pub fn append(
        &mut self,
        kind: RecordType,
        epoch: u64,
        payload: &[u8],
        durable_below: Lsn,
    ) -> Result<Lsn, AppendError> {
        assert!(!kind.is_seal(), "seal records are internal");
        self.check_len(payload.len())?;
        Ok(self.frame(kind, epoch, payload, durable_below))
    }

    /// Frames one record whose size was checked; seals and rolls the
    /// segment first if the record and a seal would not fit.
    fn frame(&mut self, kind: RecordType, epoch: u64, payload: &[u8], durable_below: Lsn) -> Lsn {
        let need = frame_len(payload.len()) + SEAL_FRAME_LEN;
        if self.tail.offset + need > self.tail.segment_bytes {
            let seal = RecordHeader {
                kind: RecordType::SEAL,
                epoch: 0,
                lsn: self.next_lsn,
                durable_below,
                salt: self.tail.salt,
            };
            self.put(&seal, &[], self.next_lsn);
            let next = self.tail.segment + 1;
            self.start_segment(next);
        }
        let lsn = self.next_lsn;
        let h = RecordHeader {
            kind,
            epoch,
            lsn,
            durable_below,
            salt: self.tail.salt,
        };
        self.next_lsn = Lsn(lsn.0 + 1);
        self.put(&h, payload, self.next_lsn);
        lsn
    }

    /// Frames several records (all sizes and types checked first, so
    /// either all are staged or none); returns the last LSN, `None` for an
    /// empty slice.
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
        assert!(
            !entries.iter().any(|e| e.kind.is_seal()),
            "seal records are internal"
        );
        let mut last = None;
        for group in entries.chunks(LANES) {
            // Only when no roll falls inside the group (then every record
            // lands exactly where one-by-one framing would put it).
            let total: u64 = group.iter().map(|e| frame_len(e.payload.len())).sum();
            let fits = self.tail.offset + total + SEAL_FRAME_LEN <= self.tail.segment_bytes;
            match <&[Entry<'_>; LANES]>::try_from(group) {
                Ok(g) if fits => last = Some(self.frame_lanes(g, durable_below)),
                _ => {
                    for e in group {
                        last = Some(self.frame(e.kind, e.epoch, e.payload, durable_below));
                    }
                }
            }
        }
        Ok(last)
    }

    /// Whether a chunk that can receive no more records is staged.
    pub fn has_complete(&self) -> bool {
        self.chunks.len() > 1
    }

    /// Moves every chunk that can receive no more records (all but the
    /// last) to `out`; returns the framed bytes moved (about).
    pub fn take_complete(&mut self, out: &mut Vec<Chunk>) -> usize {
        let n = self.chunks.len().saturating_sub(1);
        if n == 0 {
            return 0;
        }
        let moved: usize = self.chunks[..n].iter().map(|c| c.bytes.len()).sum();
        out.extend(self.chunks.drain(..n));
        self.staged_bytes = self.staged_bytes.saturating_sub(moved);
        moved
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
        self.recycle_bufs(chunks.into_iter().map(|c| c.bytes));
    }

    /// [`Stager::recycle`] for bare buffers.
    pub fn recycle_bufs(&mut self, bufs: impl Iterator<Item = AlignedVec>) {
        let keep = (MAX_STAGED_BYTES / self.chunk_cap + 2).min(MAX_SPARE_CHUNKS);
        for b in bufs {
            if self.spare.len() < keep && b.capacity() <= self.chunk_cap * 4 {
                self.spare.push(b);
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
    /// Told about every write + fdatasync.
    on_sync: Option<SyncObserver>,
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
        on_sync: Option<SyncObserver>,
    ) -> Self {
        let header = AlignedBuf::new(SEGMENT_HEADER_REGION as usize, BLOCK as usize);
        let mut w = Self {
            storage,
            shard,
            file: None,
            segment: 0,
            write_off: 0,
            header,
            on_sync,
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
        let started = self.on_sync.as_ref().map(|_| Instant::now());
        file.write_sync(c.start, data).map_err(|e| {
            WalFailure::from_io(
                &format!("{} write at offset {}", segment_name(self.segment), c.start),
                &e,
            )
        })?;
        if let (Some(on_sync), Some(started)) = (&self.on_sync, started) {
            on_sync.observe(started.elapsed(), data.len() as u64);
        }
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
        let started = self.on_sync.as_ref().map(|_| Instant::now());
        file.write_sync(0, &self.header.as_slice()[..SEGMENT_HEADER_REGION as usize])
            .map_err(|e| fail("write header of", e))?;
        if let (Some(on_sync), Some(started)) = (&self.on_sync, started) {
            on_sync.observe(started.elapsed(), SEGMENT_HEADER_REGION);
        }
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
