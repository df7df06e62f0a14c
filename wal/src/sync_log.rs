//! [`SyncLog`]: the log driven entirely by the caller's thread — appends are
//! staged in memory and [`SyncLog::commit`] writes and fdatasyncs them
//! inline. Deterministic (the crash tests use it); also usable where the
//! caller wants to own the I/O schedule. Same format and I/O path as
//! [`crate::Wal`].

use crate::config::Config;
use crate::error::{io_ctx, AppendError, OpenError, ReadError, RetentionError, WalFailure};
use crate::format::{Entry, Lsn, RecordType};
use crate::reader::{delete_below, LogReader};
use crate::recovery::{recover, RecoveryReport};
use crate::spares::Spares;
use crate::storage::{FsStorage, Storage};
use crate::writer::{Rolled, Stager, Writer};
use std::path::Path;
use std::sync::Arc;

/// A single-threaded log with explicit commits.
#[derive(Debug)]
pub struct SyncLog {
    storage: Arc<dyn Storage>,
    stager: Stager,
    writer: Writer,
    durable: Lsn,
    failed: Option<WalFailure>,
    segments: Vec<Rolled>,
    spares: Option<Arc<Spares>>,
}

impl SyncLog {
    /// Opens (recovering) the log in `storage`.
    pub fn open(
        storage: Arc<dyn Storage>,
        cfg: &Config,
    ) -> Result<(Self, RecoveryReport), OpenError> {
        cfg.validate().map_err(OpenError::InvalidConfig)?;
        let r = recover(storage.clone(), cfg, false)?;
        let log = Self {
            storage,
            stager: r.stager,
            writer: r.writer,
            durable: r.report.next_lsn,
            failed: None,
            segments: r.segments,
            spares: r.spares,
        };
        Ok((log, r.report))
    }

    /// Opens (recovering) the log in directory `dir`, creating it if needed.
    pub fn open_dir(dir: &Path, cfg: &Config) -> Result<(Self, RecoveryReport), OpenError> {
        let fs = FsStorage::open(dir, true)
            .map_err(|e| OpenError::Io(io_ctx(dir.display().to_string())(e)))?;
        Self::open(Arc::new(fs), cfg)
    }

    /// Stages one record; durable after the next successful `commit`.
    pub fn append(
        &mut self,
        kind: RecordType,
        epoch: u64,
        payload: &[u8],
    ) -> Result<Lsn, AppendError> {
        if let Some(f) = &self.failed {
            return Err(AppendError::Failed(f.clone()));
        }
        self.stager.append(kind, epoch, payload, self.durable)
    }

    /// Stages several records; all or none (see [`crate::Wal::append_batch`]).
    pub fn append_batch(&mut self, entries: &[Entry<'_>]) -> Result<Option<Lsn>, AppendError> {
        if let Some(f) = &self.failed {
            return Err(AppendError::Failed(f.clone()));
        }
        self.stager.append_many(entries, self.durable)
    }

    /// Writes and fdatasyncs everything staged. Returns the durable bound:
    /// every LSN below it is durable. An error is final.
    pub fn commit(&mut self) -> Result<Lsn, WalFailure> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let mut chunks = self.stager.take();
        let mut durable = self.durable;
        let segments = &mut self.segments;
        let res = self
            .writer
            .write(&mut chunks, &mut |l| durable = l, &mut |r| segments.push(r));
        self.durable = durable;
        self.stager.recycle(chunks);
        match res {
            Ok(()) => Ok(self.durable),
            Err(f) => {
                self.failed = Some(f.clone());
                Err(f)
            }
        }
    }

    /// Every LSN below this is durable.
    pub fn durable(&self) -> Lsn {
        self.durable
    }

    /// LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        self.stager.next_lsn()
    }

    /// The oldest LSN still stored (see [`crate::Wal::first_lsn`]).
    pub fn first_lsn(&self) -> Lsn {
        self.segments
            .first()
            .map_or(Lsn(0), |segment| segment.first_lsn)
    }

    /// Reads durable records from `from` on.
    pub fn read_from(&self, from: Lsn) -> Result<LogReader, ReadError> {
        LogReader::new(
            self.storage.clone(),
            self.segments.clone(),
            from,
            self.durable,
        )
    }

    /// Retires whole segments whose records are all below `lsn`: with
    /// `Config::spare_segments`, recycles them into spares for the next
    /// rolls (inline) and unlinks the rest, else unlinks them. Returns how
    /// many were retired.
    pub fn delete_below(&mut self, lsn: Lsn) -> Result<usize, RetentionError> {
        let spares = self.spares.as_deref();
        let n = delete_below(&*self.storage, spares, &mut self.segments, lsn, usize::MAX)?;
        if let Some(spares) = spares {
            spares.prepare_due();
        }
        Ok(n)
    }

    /// Rolls that found a spare segment ready, and rolls that created
    /// their segment (`docs/wal-format.md` §12).
    pub fn spare_counts(&self) -> (u64, u64) {
        self.spares.as_ref().map_or((0, 0), |s| s.counts())
    }
}
