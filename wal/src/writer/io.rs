//! The I/O half of appending: the [`Writer`] makes staged chunks durable,
//! one aligned write + fdatasync per chunk, and creates segments (steps 2
//! to 5 of the roll in `docs/wal-format.md` §5).
//!
//! A chunk that ends with a seal names its segment's successor; the writer
//! creates the successor before it writes that chunk and moves on to it
//! after, so a durable seal proves that the successor's file was durable.

use super::{Chunk, Successor, BLOCK};
use crate::align::AlignedBuf;
use crate::format::{Lsn, SegmentHeader};
use crate::limits::{SEGMENT_HEADER_LEN, SEGMENT_HEADER_REGION};
use crate::scan::{segment_name, TMP_SUFFIX};
use crate::spares::Spares;
use crate::storage::{SegmentFile, Storage};
use crate::{SyncObserver, WalFailure};
use std::io;
use std::sync::Arc;
use std::time::Instant;

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
    /// Where rolls find their files ready, if anywhere.
    spares: Option<Arc<Spares>>,
    /// Size of the active segment, and whether a fresh spare was asked
    /// for once it was half full.
    segment_bytes: u64,
    asked: bool,
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
        spares: Option<Arc<Spares>>,
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
            segment_bytes: spares.as_ref().map_or(u64::MAX, |p| p.segment_bytes()),
            spares,
            asked: false,
        };
        if let Some((segment, f, off)) = file {
            w.segment = segment;
            w.file = Some(f);
            w.write_off = off;
        }
        w
    }

    /// Writes `chunks` in order; after each durable chunk calls `durable`
    /// with its end LSN, and after each segment it creates `rolled`. A
    /// chunk that ends with a seal has its successor created first, and
    /// the writer moves on to that successor once the chunk is written.
    /// Any error is final.
    pub fn write(
        &mut self,
        chunks: &mut [Chunk],
        durable: &mut dyn FnMut(Lsn),
        rolled: &mut dyn FnMut(Rolled),
    ) -> Result<(), WalFailure> {
        for c in chunks.iter_mut() {
            if c.new_segment {
                let first = Successor {
                    segment: c.segment,
                    salt: c.salt,
                    first_lsn: c.seg_first_lsn,
                    segment_bytes: c.segment_bytes,
                };
                let file = self.create(&first)?;
                rolled(first.rolled());
                self.switch(&first, file);
            }
            let successor = match c.successor {
                Some(s) => {
                    let file = self.create(&s)?;
                    rolled(s.rolled());
                    Some((s, file))
                }
                None => None,
            };
            if c.has_records {
                self.write_chunk(c)?;
            }
            if let Some((s, file)) = successor {
                self.switch(&s, file);
            }
            durable(c.end_lsn);
        }
        Ok(())
    }

    /// Makes `file`, a segment just created, the one chunks go to.
    fn switch(&mut self, s: &Successor, file: Box<dyn SegmentFile>) {
        self.file = Some(file);
        self.segment = s.segment;
        self.segment_bytes = s.segment_bytes;
        self.asked = false;
        self.write_off = SEGMENT_HEADER_REGION;
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
        if !self.asked && self.write_off > self.segment_bytes / 2 {
            self.asked = true;
            if let Some(spares) = &self.spares {
                spares.want_fresh();
            }
        }
        Ok(())
    }

    /// Writes segment `s`'s header region into `file` and syncs it.
    fn write_header(
        &mut self,
        s: &Successor,
        file: &mut dyn SegmentFile,
        recycled: bool,
    ) -> io::Result<()> {
        let header = SegmentHeader {
            shard: self.shard,
            segment: s.segment,
            salt: s.salt,
            first_lsn: s.first_lsn,
            segment_bytes: s.segment_bytes,
            recycled,
        };
        let region = self.header.as_mut_slice();
        region.fill(0);
        region[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        let started = self.on_sync.as_ref().map(|_| Instant::now());
        file.write_sync(0, &self.header.as_slice()[..SEGMENT_HEADER_REGION as usize])?;
        if let (Some(on_sync), Some(started)) = (&self.on_sync, started) {
            on_sync.observe(started.elapsed(), SEGMENT_HEADER_REGION);
        }
        Ok(())
    }

    /// Creates segment `s` (steps 2 to 5 of the roll in
    /// `docs/wal-format.md` §5): on a spare if one is ready (its header
    /// written and synced, nothing else: §12), else under a temporary name,
    /// header written and synced, renamed, directory synced. Returns its
    /// file, positioned for the first record.
    fn create(&mut self, s: &Successor) -> Result<Box<dyn SegmentFile>, WalFailure> {
        let name = segment_name(s.segment);
        if let Some(spare) = self.spares.as_ref().and_then(|p| p.take(s.segment)) {
            let mut file = spare.file;
            self.write_header(s, &mut *file, spare.recycled)
                .map_err(|e| WalFailure::from_io(&format!("write header of {name}"), &e))?;
            return Ok(file);
        }
        let tmp = format!("{:020}{TMP_SUFFIX}", s.segment);
        let fail = |what: &str, e: io::Error| WalFailure::from_io(&format!("{what} {tmp}"), &e);
        let mut file = self
            .storage
            .create(&tmp, s.segment_bytes)
            .map_err(|e| fail("create", e))?;
        self.write_header(s, &mut *file, false)
            .map_err(|e| fail("write header of", e))?;
        self.storage
            .rename(&tmp, &name)
            .map_err(|e| fail("rename", e))?;
        self.storage
            .sync_dir()
            .map_err(|e| fail("sync directory after creating", e))?;
        Ok(file)
    }
}

impl Successor {
    fn rolled(&self) -> Rolled {
        Rolled {
            segment: self.segment,
            first_lsn: self.first_lsn,
        }
    }
}
