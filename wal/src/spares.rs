//! Segment files made ready ahead of need, so that a roll touches no file
//! system metadata (`docs/wal-format.md` §12).
//!
//! A *spare* is a file already named as the segment it will become
//! (`N.wal`), whose header region is all zero and whose blocks are all
//! written, durable under that name (directory synced). The writer rolls
//! onto it by writing the header region and fdatasyncing: an overwrite of
//! allocated, written blocks, which commits no journal transaction on ext4
//! or XFS, where creating, fallocating, renaming and a directory fsync
//! each do (and share the journal with every other sync on the disk).
//!
//! Spares come from two places:
//! - **Recycled:** a segment retention retired (all its records below the
//!   cut). Its header region is overwritten with zeros and synced, then it
//!   is renamed to the spare's number and the directory synced. Its old
//!   records stay in place; the new segment's salt tells them apart, and
//!   its header says it was recycled so that the scan treats bytes after
//!   its last record by salt, not by zeros (RocksDB's
//!   `recycle_log_file_num`, Cassandra's recycled commit-log segments).
//! - **Fresh:** created under a temporary name, fallocated, written with
//!   zeros from start to end (so no block is an unwritten extent left for
//!   the log's own writes to convert), synced, renamed, directory synced.
//!   Only when the active segment is half full and no retired file waits.
//!
//! Retention hands every retired file to the spares; they are handled one
//! at a time, oldest first, on one thread: recycled while fewer than
//! `depth` spares are ready, unlinked (and the directory synced) while more
//! than `2 × depth` files are kept. So what is left of the log is always a
//! suffix of it: a retired file not yet handled is still a valid old
//! segment. Each step is durable before the next starts; a crash leaves
//! either an old segment (a log that starts earlier), a file with a zero
//! header below the oldest segment or above the newest (a spare, removed
//! at open), or a `*.wal.tmp` (removed at open).
//!
//! The threaded [`crate::Wal`] prepares spares on a thread of its own;
//! [`crate::SyncLog`] recycles inline, in `delete_below`, and never
//! creates fresh ones (its caller's thread would pay for the zeroing).

use crate::align::AlignedBuf;
use crate::limits::{SEGMENT_HEADER_REGION, SPARE_ZERO_WRITE_BYTES};
use crate::scan::{segment_name, TMP_SUFFIX};
use crate::storage::{SegmentFile, Storage};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A file ready to become segment `number`.
#[derive(Debug)]
pub(crate) struct Spare {
    pub file: Box<dyn SegmentFile>,
    /// Holds an earlier segment's records (else zeros).
    pub recycled: bool,
}

#[derive(Debug, Default)]
struct Pool {
    ready: BTreeMap<u64, Spare>,
    /// Retired segment files (numbers), oldest first, to recycle.
    retired: VecDeque<u64>,
    /// The lowest number neither taken by the writer nor handed to the
    /// preparer: spares are prepared under this number and up.
    next: u64,
    /// A step runs now.
    working: bool,
    /// The number of the spare it makes, if it makes one.
    busy: Option<u64>,
    /// The writer's active segment is half full: make a fresh spare if
    /// no retired file can be recycled.
    want_fresh: bool,
    /// Why making spares stopped (an I/O error): retired files are only
    /// unlinked from then on.
    failed: Option<String>,
    /// An unlink failed: nothing more is done (retired files stay, valid
    /// old segments).
    stuck: bool,
    shutdown: bool,
    /// Rolls onto a spare, and rolls that found none (for tests and
    /// `weir_wal_*` statistics).
    used: u64,
    missed: u64,
}

/// The spares of one log (see the module doc).
#[derive(Debug)]
pub(crate) struct Spares {
    pool: Mutex<Pool>,
    changed: Condvar,
    storage: Arc<dyn Storage>,
    segment_bytes: u64,
    /// Spares kept ready.
    depth: usize,
    /// Whether fresh spares are made.
    fresh: bool,
}

fn lock(m: &Mutex<Pool>) -> MutexGuard<'_, Pool> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one preparation step does.
#[derive(Debug)]
enum Step {
    Recycle {
        from: u64,
        to: u64,
    },
    Fresh {
        to: u64,
    },
    /// Retired files beyond those kept, oldest first: unlinked, then one
    /// directory fsync.
    Unlink(Vec<u64>),
}

impl Spares {
    /// `next`: the number of the next segment the writer creates.
    pub fn new(
        storage: Arc<dyn Storage>,
        segment_bytes: u64,
        depth: usize,
        fresh: bool,
        next: u64,
    ) -> Spares {
        Spares {
            pool: Mutex::new(Pool {
                next,
                ..Pool::default()
            }),
            changed: Condvar::new(),
            storage,
            segment_bytes,
            depth,
            fresh,
        }
    }

    /// The spare for segment `number`, if one is ready (or being made: then
    /// this waits for it, which is sooner than making another). `None`:
    /// the caller creates the segment itself, and no spare will take that
    /// number.
    pub fn take(&self, number: u64) -> Option<Spare> {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(spare) = pool.ready.remove(&number) {
                pool.used += 1;
                pool.want_fresh = false;
                drop(pool);
                self.changed.notify_all();
                return Some(spare);
            }
            if pool.busy != Some(number) {
                break;
            }
            pool = self.changed.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
        pool.missed += 1;
        pool.next = pool.next.max(number + 1);
        // Spares below the writer can never be used (none exist: numbers
        // are handed out upwards), spares above it stay valid.
        pool.ready.retain(|&n, _| n > number);
        drop(pool);
        self.changed.notify_all();
        None
    }

    /// The writer's active segment is half full.
    pub fn want_fresh(&self) {
        let mut pool = lock(&self.pool);
        if self.fresh && !pool.want_fresh {
            pool.want_fresh = true;
            drop(pool);
            self.changed.notify_all();
        }
    }

    /// Takes the retired segment `number` (its records are all below the
    /// retention cut, and it is older than every segment of the log): it
    /// is recycled or unlinked in turn, oldest first.
    pub fn retire(&self, number: u64) {
        lock(&self.pool).retired.push_back(number);
        self.changed.notify_all();
    }

    /// Size of the segments it makes.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Rolls onto a spare and rolls that found none.
    pub fn counts(&self) -> (u64, u64) {
        let pool = lock(&self.pool);
        (pool.used, pool.missed)
    }

    /// Stops [`Spares::run`] (after its current step).
    pub fn shutdown(&self) {
        lock(&self.pool).shutdown = true;
        self.changed.notify_all();
    }

    /// The next step due, claimed (its number marked busy).
    fn due(&self, pool: &mut Pool) -> Option<Step> {
        if pool.shutdown || pool.working || pool.stuck {
            return None;
        }
        let making = pool.failed.is_none() && pool.ready.len() < self.depth;
        let keep = if pool.failed.is_some() {
            0
        } else {
            2 * self.depth
        };
        let to = pool.next;
        let surplus = (pool.ready.len() + pool.retired.len()).saturating_sub(keep);
        let step = match pool.retired.front().copied() {
            Some(from) if making => {
                pool.retired.pop_front();
                Step::Recycle { from, to }
            }
            Some(_) if surplus > 0 => {
                let n = surplus.min(pool.retired.len());
                Step::Unlink(pool.retired.drain(..n).collect())
            }
            None if making && self.fresh && pool.want_fresh && pool.ready.is_empty() => {
                Step::Fresh { to }
            }
            _ => return None,
        };
        if !matches!(step, Step::Unlink(_)) {
            pool.next += 1;
            pool.busy = Some(to);
        }
        pool.working = true;
        Some(step)
    }

    /// Does every step due now (for [`crate::SyncLog`], which makes no
    /// fresh spares).
    pub fn prepare_due(&self) {
        loop {
            let step = self.due(&mut lock(&self.pool));
            match step {
                Some(step) => self.finish(step),
                None => return,
            }
        }
    }

    /// Prepares spares until [`Spares::shutdown`] (the threaded log's
    /// preparer thread), then unlinks the retired files still waiting, as
    /// retention did before spares (they would otherwise stay, valid old
    /// segments, until the next run retires them again).
    pub fn run(&self) {
        let mut pool = lock(&self.pool);
        loop {
            if pool.shutdown {
                let rest: Vec<u64> = pool.retired.drain(..).collect();
                let stuck = pool.stuck;
                drop(pool);
                if !rest.is_empty() && !stuck {
                    // Best effort: what is left is a suffix of the log.
                    let _ = self.unlink(&rest);
                }
                return;
            }
            match self.due(&mut pool) {
                Some(step) => {
                    drop(pool);
                    self.finish(step);
                    pool = lock(&self.pool);
                }
                None => pool = self.changed.wait(pool).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// Runs a claimed step and records its result.
    fn finish(&self, step: Step) {
        let made = match &step {
            &Step::Recycle { from, to } => self.recycle(from, to).map(|s| s.map(|s| (to, s))),
            &Step::Fresh { to } => self.make_fresh(to).map(|s| s.map(|s| (to, s))),
            Step::Unlink(numbers) => self.unlink(numbers).map(|()| None),
        };
        let mut pool = lock(&self.pool);
        pool.busy = None;
        pool.working = false;
        match made {
            Ok(Some((to, spare))) => {
                pool.want_fresh = false;
                pool.ready.insert(to, spare);
            }
            // Unlinked, or shut down midway.
            Ok(None) => {}
            // The file is left as the failed step left it: a retired
            // segment, a spare or a `.tmp`, each of which the next open
            // handles.
            Err(e) if matches!(step, Step::Unlink(_)) => {
                pool.stuck = true;
                pool.failed.get_or_insert(e.to_string());
            }
            Err(e) => {
                pool.failed.get_or_insert(e.to_string());
            }
        }
        drop(pool);
        self.changed.notify_all();
    }

    /// Unlinks retired segments, oldest first, and syncs the directory.
    fn unlink(&self, numbers: &[u64]) -> io::Result<()> {
        for &n in numbers {
            self.storage.remove(&segment_name(n))?;
        }
        self.storage.sync_dir()
    }

    /// Zeroes the header region of retired segment `from`, syncs it,
    /// renames it to `to`, syncs the directory.
    fn recycle(&self, from: u64, to: u64) -> io::Result<Option<Spare>> {
        let (old, new) = (segment_name(from), segment_name(to));
        let steps = || -> io::Result<Box<dyn SegmentFile>> {
            let mut file = self.storage.open_write(&old)?;
            let zeros = AlignedBuf::new(SEGMENT_HEADER_REGION as usize, file.align().max(512));
            file.write_sync(0, &zeros.as_slice()[..SEGMENT_HEADER_REGION as usize])?;
            self.storage.rename(&old, &new)?;
            self.storage.sync_dir()?;
            Ok(file)
        };
        match steps() {
            Ok(file) => Ok(Some(Spare {
                file,
                recycled: true,
            })),
            Err(e) => {
                // Best effort, so that the writer can create `to` itself:
                // `from` is the oldest file (removing it keeps the log a
                // suffix), and a spare named `to` holds nothing.
                let _ = self.storage.remove(&old);
                let _ = self.storage.remove(&new);
                Err(e)
            }
        }
    }

    /// Creates spare `to` fresh: every block written with zeros.
    fn make_fresh(&self, to: u64) -> io::Result<Option<Spare>> {
        let tmp = format!("{to:020}{TMP_SUFFIX}");
        let made = self.write_fresh(&tmp, to);
        if made.is_err() {
            // Best effort, so that the writer can create `to` itself.
            let _ = self.storage.remove(&tmp);
        }
        made
    }

    fn write_fresh(&self, tmp: &str, to: u64) -> io::Result<Option<Spare>> {
        let mut file = self.storage.create(tmp, self.segment_bytes)?;
        let piece = SPARE_ZERO_WRITE_BYTES.min(self.segment_bytes as usize);
        let zeros = AlignedBuf::new(piece, file.align().max(512));
        let mut at = 0;
        while at < self.segment_bytes {
            if lock(&self.pool).shutdown {
                // Left as a `.tmp`: removed at the next open.
                return Ok(None);
            }
            let len = piece.min((self.segment_bytes - at) as usize);
            file.write(at, &zeros.as_slice()[..len])?;
            at += len as u64;
        }
        file.sync()?;
        self.storage.rename(tmp, &segment_name(to))?;
        self.storage.sync_dir()?;
        Ok(Some(Spare {
            file,
            recycled: false,
        }))
    }
}
