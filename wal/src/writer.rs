//! The two halves of appending: the [`Stager`] frames records into memory
//! (the appender's side: LSN, placement, salt, CRC — all layout decisions),
//! and the [`Writer`] (`io.rs`) makes staged chunks durable (the I/O side:
//! one aligned write + fdatasync per chunk, and segment rolls).
//!
//! Invariants:
//! - The layout of the log depends only on the sequence of appends, never
//!   on how they are grouped into commits.
//! - The writer has at most one un-synced write outstanding; a chunk counts
//!   as durable only after its write_sync returned `Ok`.
//! - A segment's successor exists before its seal is written: the chunk
//!   that holds a seal names the successor, and the writer creates it (under
//!   a temporary name, header written and synced, renamed, directory synced)
//!   before it writes that chunk. So a durable seal proves that its
//!   successor's file was durable, and a log whose newest segment is sealed
//!   has lost a segment (`docs/wal-format.md` §5). A successor holds no
//!   record until the chunk with its predecessor's seal is durable.
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

use crate::align::AlignedVec;
use crate::crc::{frame_crcs, HEAD_LEN, LANES};
use crate::format::{
    encode_head, encode_record_parts_into, frame_len, write_frame, Entry, Lsn, RecordHeader,
    RecordType,
};
use crate::limits::{
    LARGE_ROUND, MAX_DIO_ALIGN, MAX_PAYLOAD_BYTES, MAX_SPARE_CHUNKS, MAX_SPARE_LARGE_BYTES,
    MAX_STAGED_BYTES, SEAL_FRAME_LEN, SEGMENT_HEADER_REGION,
};
use crate::storage::memory::SplitMix;
use crate::AppendError;

mod io;

pub(crate) use io::{Rolled, Writer};

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
    /// Whether the writer must create this segment before writing (the
    /// first segment of an empty log).
    pub new_segment: bool,
    /// The segment after this one, when this chunk ends with a seal: the
    /// writer creates it before it writes this chunk.
    pub successor: Option<Successor>,
    /// File offset of `bytes[0]`, a multiple of [`BLOCK`].
    pub start: u64,
    /// Existing bytes of the first block, then framed records.
    pub bytes: AlignedVec,
    /// Whether `bytes` holds any new record (not just carried bytes).
    pub has_records: bool,
    /// LSN after the last record in this chunk.
    pub end_lsn: Lsn,
}

/// A segment to create: what its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Successor {
    pub segment: u64,
    pub salt: u32,
    pub first_lsn: Lsn,
    pub segment_bytes: u64,
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
    /// Written buffers larger than a chunk (a record over `chunk_cap` gets
    /// a buffer of its own size), kept for the next such record while
    /// their capacities add up to at most [`MAX_SPARE_LARGE_BYTES`]: a
    /// stream of large records (a snapshot's parts every epoch) would
    /// otherwise map, fault in and unmap tens of MB per record.
    spare_large: Vec<AlignedVec>,
}

/// How a [`Stager`] starts.
#[derive(Debug)]
pub(crate) struct StagerInit {
    pub tail: Tail,
    pub tail_block: Vec<u8>,
    pub next_lsn: Lsn,
    pub new_segment_bytes: u64,
    pub chunk_cap: usize,
    /// Start a new segment with this number first (an empty log; a log
    /// whose newest segment is sealed is refused, see `crate::analysis`).
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
            spare_large: Vec::new(),
        };
        if let Some(n) = i.roll {
            s.start_segment(n);
            if let Some(c) = s.chunks.last_mut() {
                c.new_segment = true;
            }
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

    /// Moves the tail to the start of a new segment `number`, in a new
    /// chunk. Whoever calls it says which chunk creates the segment.
    fn start_segment(&mut self, number: u64) {
        self.tail = Tail {
            segment: number,
            salt: self.rng.next_u64() as u32,
            seg_first_lsn: self.next_lsn,
            segment_bytes: self.new_segment_bytes,
            offset: SEGMENT_HEADER_REGION,
        };
        self.tail_block.clear();
        self.push_chunk();
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

    fn push_chunk(&mut self) {
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
            new_segment: false,
            successor: None,
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
            self.push_chunk();
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
        if c.bytes.len() + len > c.bytes.capacity() {
            // A record larger than a chunk, in a chunk of its own
            // (`current`): a kept large buffer if one is big enough.
            let need = c.bytes.len() + len + BLOCK as usize;
            let fit = self
                .spare_large
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= need)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(at, _)| at);
            let mut large = match fit {
                Some(at) => self.spare_large.swap_remove(at),
                // Rounded up, so records of about one size share buffers.
                None => {
                    AlignedVec::with_capacity(need.next_multiple_of(LARGE_ROUND), BLOCK as usize)
                }
            };
            large.clear();
            large.extend_from_slice(c.bytes.as_slice());
            let small = std::mem::replace(&mut c.bytes, large);
            self.recycle_bufs(std::iter::once(small));
        }
        let c = &mut self.chunks[i];
        c.has_records = true;
        c.end_lsn = end;
        c.bytes.grow(len)
    }

    /// Frames one record at the tail; `end` becomes the chunk's end LSN.
    fn put(&mut self, h: &RecordHeader, parts: &[&[u8]], end: Lsn) {
        let len = frame_len(parts.iter().map(|part| part.len()).sum()) as usize;
        encode_record_parts_into(self.slot(len, end), h, parts);
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
        self.append_parts(kind, epoch, &[payload], durable_below)
    }

    /// Frames one record whose payload is `parts`, one after the other;
    /// returns its LSN.
    pub fn append_parts(
        &mut self,
        kind: RecordType,
        epoch: u64,
        parts: &[&[u8]],
        durable_below: Lsn,
    ) -> Result<Lsn, AppendError> {
        assert!(!kind.is_seal(), "seal records are internal");
        self.check_len(parts.iter().map(|part| part.len()).sum())?;
        Ok(self.frame(kind, epoch, parts, durable_below))
    }

    /// Frames one record whose size was checked; seals and rolls the
    /// segment first if the record and a seal would not fit.
    fn frame(&mut self, kind: RecordType, epoch: u64, parts: &[&[u8]], durable_below: Lsn) -> Lsn {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let need = frame_len(len) + SEAL_FRAME_LEN;
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
            self.name_successor();
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
        self.put(&h, parts, self.next_lsn);
        lsn
    }

    /// Hands the segment just started to the chunk before it, which holds
    /// the seal: the writer creates the successor before writing the seal.
    fn name_successor(&mut self) {
        let t = self.tail;
        let [.., sealed, _] = &mut self.chunks[..] else {
            unreachable!("a seal is staged in the chunk before the new segment's")
        };
        assert!(
            sealed.segment + 1 == t.segment,
            "successor of another segment"
        );
        sealed.successor = Some(Successor {
            segment: t.segment,
            salt: t.salt,
            first_lsn: t.seg_first_lsn,
            segment_bytes: t.segment_bytes,
        });
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
                        last = Some(self.frame(e.kind, e.epoch, &[e.payload], durable_below));
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
            if b.capacity() <= self.chunk_cap * 4 {
                if self.spare.len() < keep {
                    self.spare.push(b);
                }
                continue;
            }
            let kept: usize = self.spare_large.iter().map(AlignedVec::capacity).sum();
            if kept + b.capacity() <= MAX_SPARE_LARGE_BYTES {
                self.spare_large.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stager for an empty log whose first segment is `1`.
    fn empty_log(chunk_cap: usize) -> Stager {
        Stager::new(StagerInit {
            tail: Tail {
                segment: 0,
                salt: 0,
                seg_first_lsn: Lsn(1),
                segment_bytes: 64 << 20,
                offset: 0,
            },
            tail_block: Vec::new(),
            next_lsn: Lsn(1),
            new_segment_bytes: 64 << 20,
            chunk_cap,
            roll: Some(1),
            seed: 7,
        })
    }

    /// The buffers of the staged chunks: (address, capacity) each.
    fn buffers(chunks: &[Chunk]) -> Vec<(usize, usize)> {
        chunks
            .iter()
            .map(|c| (c.bytes.as_slice().as_ptr() as usize, c.bytes.capacity()))
            .collect()
    }

    #[test]
    fn buffers_of_records_larger_than_a_chunk_are_reused() {
        let cap = 64 << 10;
        let mut stager = empty_log(cap);
        let large = vec![7u8; 3 << 20];
        let lsn = |stager: &Stager| stager.next_lsn();
        stager
            .append(RecordType::INPUT, 1, b"small", lsn(&stager))
            .expect("append");
        stager
            .append(RecordType::INPUT, 1, &large, lsn(&stager))
            .expect("append");
        let first = stager.take();
        let big: Vec<_> = buffers(&first)
            .into_iter()
            .filter(|&(_, capacity)| capacity > cap * 4)
            .collect();
        assert_eq!(big.len(), 1, "one chunk holds the large record");
        assert!(big[0].1 >= large.len(), "and all of it");
        stager.recycle(first);

        // The next large record of about the same size goes into the same
        // buffer, whatever precedes it.
        stager
            .append(RecordType::INPUT, 2, b"small again", lsn(&stager))
            .expect("append");
        stager
            .append(
                RecordType::INPUT,
                2,
                &large[..large.len() - 100],
                lsn(&stager),
            )
            .expect("append");
        let second = stager.take();
        assert!(
            buffers(&second).contains(&big[0]),
            "the large buffer was reused: {:?} among {:?}",
            big[0],
            buffers(&second)
        );
        // And a written record reads back whole: the frame is the same as
        // in a fresh buffer.
        let framed: usize = second.iter().map(|c| c.bytes.len()).sum();
        assert!(framed >= large.len() - 100);
    }

    #[test]
    fn kept_large_buffers_are_bounded() {
        let cap = 64 << 10;
        let mut stager = empty_log(cap);
        let large = vec![1u8; 15 << 20];
        // More large records in flight at once than may be kept.
        let mut chunks = Vec::new();
        for epoch in 0..8 {
            let below = stager.next_lsn();
            stager
                .append(RecordType::INPUT, epoch, &large, below)
                .expect("append");
            chunks.extend(stager.take());
        }
        stager.recycle(chunks);
        let kept: usize = stager.spare_large.iter().map(AlignedVec::capacity).sum();
        assert!(kept <= MAX_SPARE_LARGE_BYTES, "{kept} bytes kept");
        assert!(!stager.spare_large.is_empty());
    }
}
