//! [`Wal`]: the threaded log. Appends are framed on the caller's thread into
//! the appender's staging area (`front`, one mutex hold per `append` or per
//! `append_batch`); a per-log writer thread writes staged chunks with one
//! aligned O_DIRECT write + fdatasync each (linked in one io_uring
//! submission), then publishes the new durable LSN and wakes the futures
//! waiting on it, in LSN order.
//!
//! Hand-off: a chunk that can take no more records (it reached
//! `batch_bytes`, or its segment was sealed) is moved by the appender into
//! the control block (`ctl`, a second mutex, never held for longer than a
//! few pointer moves), from which the writer takes it without touching
//! `front`. So under load the writer never waits for an appender framing a
//! large batch (a fair-less mutex would otherwise starve it), and it writes
//! chunk N while the appender fills chunk N+1. Only a flush, the timer or
//! shutdown make the writer take the partly filled chunk from `front`.
//! Lock order: `front` before `ctl`. Written buffers go back through `ctl`.
//!
//! A commit starts when `flush` is called, when a chunk of `batch_bytes` is
//! complete, when `flush_interval` has passed since the last one, or, when
//! the writer had gone idle (nothing staged), at the first append: no
//! timer floor at low load, one write + sync in flight. Under load (work
//! staged while the last commit ran) commits are at least `flush_interval`
//! apart, so groups grow: committing back to back instead cost 18 % of
//! saturation throughput (`BENCHMARKS.md`, issue 20).
//!
//! A second thread per log (`weir-wal-spare-N`) makes segment files ready
//! ahead of rolls and recycles retired ones (`crate::spares`).
//!
//! Failure is sticky (fsyncgate): the first write or fdatasync error stops
//! the writer; every waiting and later future resolves to that error, every
//! later append is refused, and the durable LSN never advances again.

use crate::align::AlignedVec;
use crate::config::Config;
use crate::error::{io_ctx, AppendError, OpenError, ReadError, RetentionError, WalFailure};
use crate::format::{Entry, Lsn, RecordType};
use crate::limits::MAX_SPARE_CHUNKS;
use crate::limits::MAX_STAGED_BYTES;
use crate::reader::{delete_below, LogReader};
use crate::recovery::{recover, RecoveryReport};
use crate::spares::Spares;
use crate::storage::{FsStorage, Storage};
use crate::writer::{Chunk, Rolled, Stager, Writer};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Instant;

/// The appender's side.
#[derive(Debug)]
struct Front {
    stager: Stager,
    shutdown: bool,
}

/// What the appender and the writer exchange (short holds only).
#[derive(Debug, Default)]
struct Ctl {
    /// Complete chunks for the writer, in order; all precede `front`'s.
    ready: Vec<Chunk>,
    /// Written buffers for the appender to reuse.
    returned: Vec<AlignedVec>,
    flush: bool,
    /// The writer is blocked on the condvar and must be notified.
    sleeping: bool,
    shutdown: bool,
}

#[derive(Debug)]
struct Shared {
    front: Mutex<Front>,
    ctl: Mutex<Ctl>,
    /// Paired with `ctl`.
    wake_writer: Condvar,
    /// Bytes in `ctl.ready` (changed under `ctl`, read for back-pressure).
    ready_bytes: AtomicUsize,
    /// Whether `front`'s stager holds anything (changed under `front`).
    front_work: AtomicBool,
    durable: AtomicU64,
    failed: OnceLock<WalFailure>,
    waiters: Mutex<Vec<(u64, Waker)>>,
    segments: Mutex<Vec<Rolled>>,
    /// Held for a whole [`Wal::delete_below`]: one deletion at a time,
    /// without holding `segments` while it unlinks.
    retention: Mutex<()>,
    /// Segment files made ready ahead of rolls, by `spare_thread`.
    spares: Option<Arc<Spares>>,
    storage: Arc<dyn Storage>,
    cfg: Config,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only follows a panic elsewhere, which is already a bug
    // report; the protected data stays consistent (no partial updates).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A durable, group-committed write-ahead log for one shard.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    spare_thread: Option<JoinHandle<()>>,
}

impl Wal {
    /// Opens (recovering) the log in `storage` and starts its writer thread.
    pub fn open(
        storage: Arc<dyn Storage>,
        cfg: &Config,
    ) -> Result<(Self, RecoveryReport), OpenError> {
        cfg.validate().map_err(OpenError::InvalidConfig)?;
        let r = recover(storage.clone(), cfg, true)?;
        let shared = Arc::new(Shared {
            front_work: AtomicBool::new(r.stager.has_work()),
            front: Mutex::new(Front {
                stager: r.stager,
                shutdown: false,
            }),
            ctl: Mutex::new(Ctl::default()),
            wake_writer: Condvar::new(),
            ready_bytes: AtomicUsize::new(0),
            durable: AtomicU64::new(r.report.next_lsn.0),
            failed: OnceLock::new(),
            waiters: Mutex::new(Vec::new()),
            segments: Mutex::new(r.segments),
            retention: Mutex::new(()),
            spares: r.spares,
            storage,
            cfg: cfg.clone(),
        });
        let s2 = shared.clone();
        let mut writer = r.writer;
        let thread = std::thread::Builder::new()
            .name(format!("weir-wal-{}", cfg.shard))
            .spawn(move || writer_loop(&s2, &mut writer))
            .map_err(|e| OpenError::Io(io_ctx("spawn writer thread")(e)))?;
        let spare_thread = match shared.spares.clone() {
            Some(spares) => Some(
                std::thread::Builder::new()
                    .name(format!("weir-wal-spare-{}", cfg.shard))
                    .spawn(move || spares.run())
                    .map_err(|e| OpenError::Io(io_ctx("spawn spare segment thread")(e)))?,
            ),
            None => None,
        };
        Ok((
            Self {
                shared,
                thread: Some(thread),
                spare_thread,
            },
            r.report,
        ))
    }

    /// Opens (recovering) the log in directory `dir`, creating it if needed.
    pub fn open_dir(dir: &Path, cfg: &Config) -> Result<(Self, RecoveryReport), OpenError> {
        let fs = FsStorage::open(dir, true)
            .map_err(|e| OpenError::Io(io_ctx(dir.display().to_string())(e)))?;
        Self::open(Arc::new(fs), cfg)
    }

    /// Stages one record and returns its LSN; await [`Wal::durable`] on it
    /// (or poll [`Wal::is_durable`]) before acknowledging.
    pub fn append(&self, kind: RecordType, epoch: u64, payload: &[u8]) -> Result<Lsn, AppendError> {
        self.stage(|st, below| st.append(kind, epoch, payload, below))
    }

    /// [`Wal::append`] with the payload given in parts, framed one after
    /// the other: a caller with a header and a body never joins them.
    pub fn append_parts(
        &self,
        kind: RecordType,
        epoch: u64,
        parts: &[&[u8]],
    ) -> Result<Lsn, AppendError> {
        self.stage(|st, below| st.append_parts(kind, epoch, parts, below))
    }

    /// Stages several records under one lock (cheaper per record than
    /// [`Wal::append`]); either all are staged or none. Returns the LSN of
    /// the last one (`None` for an empty slice): when it is durable, all are.
    pub fn append_batch(&self, entries: &[Entry<'_>]) -> Result<Option<Lsn>, AppendError> {
        self.stage(|st, below| st.append_many(entries, below))
    }

    /// Runs `frame` on the stager under the front lock, then hands complete
    /// chunks to the writer and wakes it if needed.
    fn stage<T>(
        &self,
        frame: impl FnOnce(&mut Stager, Lsn) -> Result<T, AppendError>,
    ) -> Result<T, AppendError> {
        let sh = &*self.shared;
        if let Some(f) = sh.failed.get() {
            return Err(AppendError::Failed(f.clone()));
        }
        let mut front = lock(&sh.front);
        if front.shutdown {
            return Err(AppendError::Closed);
        }
        if front.stager.staged_bytes() + sh.ready_bytes.load(Ordering::Relaxed) >= MAX_STAGED_BYTES
        {
            return Err(AppendError::Backpressure);
        }
        let had_work = front.stager.has_work();
        if !had_work {
            // Reuse written buffers before framing needs a fresh one.
            let mut ctl = lock(&sh.ctl);
            front.stager.recycle_bufs(ctl.returned.drain(..));
        }
        let below = Lsn(sh.durable.load(Ordering::Acquire));
        let out = frame(&mut front.stager, below)?;
        let handoff = front.stager.has_complete();
        if !handoff && had_work {
            return Ok(out);
        }
        sh.front_work
            .store(front.stager.has_work(), Ordering::Release);
        let mut ctl = lock(&sh.ctl);
        if handoff {
            let Ctl {
                ready, returned, ..
            } = &mut *ctl;
            let n = front.stager.take_complete(ready);
            sh.ready_bytes.fetch_add(n, Ordering::Relaxed);
            front.stager.recycle_bufs(returned.drain(..));
        }
        drop(front);
        // Wake a sleeping writer for a complete chunk, or when work appears
        // and the timer must start running.
        let wake = ctl.sleeping && (handoff || sh.cfg.flush_interval.is_some());
        if wake {
            ctl.sleeping = false;
            drop(ctl);
            sh.wake_writer.notify_one();
        }
        Ok(out)
    }

    /// Bytes staged and not yet taken by the writer. Appends are refused
    /// with [`AppendError::Backpressure`] once this reaches
    /// [`MAX_STAGED_BYTES`]; a caller that appends a lot can look here and
    /// [`drain`](Wal::drain) first.
    pub fn staged_bytes(&self) -> usize {
        let staged = lock(&self.shared.front).stager.staged_bytes();
        staged + self.shared.ready_bytes.load(Ordering::Relaxed)
    }

    /// Asks the writer to commit everything staged now (as
    /// [`flush`](Wal::flush)) and returns a future that completes once all
    /// of it is durable, or with the log's failure; `None` when everything
    /// appended is durable already. The answer to
    /// [`AppendError::Backpressure`]: await it, then append again.
    pub fn drain(&self) -> Option<Durable> {
        let next = lock(&self.shared.front).stager.next_lsn();
        self.flush();
        (next > self.durable_lsn()).then(|| self.durable(Lsn(next.0 - 1)))
    }

    /// Asks the writer to commit everything staged now.
    pub fn flush(&self) {
        lock(&self.shared.ctl).flush = true;
        self.shared.wake_writer.notify_one();
    }

    /// A future that completes when `lsn` is durable, or with the log's
    /// failure. Wakeable from the writer thread (any `Waker` works).
    pub fn durable(&self, lsn: Lsn) -> Durable {
        Durable {
            shared: self.shared.clone(),
            lsn: lsn.0,
        }
    }

    /// Whether `lsn` is durable; the failure if the log failed first.
    pub fn is_durable(&self, lsn: Lsn) -> Result<bool, WalFailure> {
        check(&self.shared, lsn.0).map_or(Ok(false), |r| r.map(|()| true))
    }

    /// Flushes and blocks the calling thread until `lsn` is durable (for
    /// non-async callers; never call it on an executor thread).
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), WalFailure> {
        self.flush();
        block_on(self.durable(lsn))
    }

    /// Every LSN below this is durable.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.durable.load(Ordering::Acquire))
    }

    /// The failure that stopped the log, if any.
    pub fn failure(&self) -> Option<WalFailure> {
        self.shared.failed.get().cloned()
    }

    /// Reads durable records from `from` (up to the durable LSN now).
    pub fn read_from(&self, from: Lsn) -> Result<LogReader, ReadError> {
        let segs = lock(&self.shared.segments).clone();
        LogReader::new(self.shared.storage.clone(), segs, from, self.durable_lsn())
    }

    /// The oldest LSN still stored: where a full replay starts after
    /// retention deleted older segments (`Lsn(0)` for a log never trimmed).
    pub fn first_lsn(&self) -> Lsn {
        lock(&self.shared.segments)
            .first()
            .map_or(Lsn(0), |segment| segment.first_lsn)
    }

    /// Deletes whole segments whose records are all below `lsn`; returns how
    /// many were deleted. The segment being written is never deleted.
    ///
    /// The list of segments is locked only to copy it and, after the
    /// unlinks, to drop the deleted ones from its front: the writer locks
    /// it to add each segment it rolls, and unlinking tens of 64 MiB files
    /// takes about a second on ext4, which the writer (and every commit
    /// waiting on it) spent waiting (`bench/src/bin/epochs.rs` at 10 M keys,
    /// the epoch a swept base completed).
    pub fn delete_below(&self, lsn: Lsn) -> Result<usize, RetentionError> {
        self.delete_some_below(lsn, usize::MAX)
    }

    /// [`Wal::delete_below`], at most `most` segments, oldest first: for a
    /// caller that spreads a large deletion out (unlinking competes with
    /// the log's own writes and syncs for the filesystem's journal).
    pub fn delete_some_below(&self, lsn: Lsn, most: usize) -> Result<usize, RetentionError> {
        let _one = lock(&self.shared.retention);
        let mut segments = lock(&self.shared.segments).clone();
        let before = segments.len();
        let deleted = delete_below(
            &*self.shared.storage,
            self.shared.spares.as_deref(),
            &mut segments,
            lsn.min(self.durable_lsn()),
            most,
        );
        // The writer only appends: the deleted ones are still the front.
        lock(&self.shared.segments).drain(..before - segments.len());
        deleted
    }

    /// Commits everything staged, stops the writer, and reports the log's
    /// failure if there was one.
    pub fn close(mut self) -> Result<(), WalFailure> {
        self.stop();
        self.shared.failed.get().map_or(Ok(()), |f| Err(f.clone()))
    }

    fn stop(&mut self) {
        lock(&self.shared.front).shutdown = true;
        lock(&self.shared.ctl).shutdown = true;
        self.shared.wake_writer.notify_one();
        if let Some(t) = self.thread.take() {
            // A panicking writer already failed every waiter via `fail`.
            let _ = t.join();
        }
        if let Some(spares) = &self.shared.spares {
            spares.shutdown();
        }
        if let Some(t) = self.spare_thread.take() {
            let _ = t.join();
        }
    }

    /// Rolls that found a spare segment ready, and rolls that created
    /// their segment (`docs/wal-format.md` §12).
    pub fn spare_counts(&self) -> (u64, u64) {
        self.shared.spares.as_ref().map_or((0, 0), |s| s.counts())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `Some(Ok)` durable, `Some(Err)` failed, `None` pending.
fn check(shared: &Shared, lsn: u64) -> Option<Result<(), WalFailure>> {
    if shared.durable.load(Ordering::Acquire) > lsn {
        return Some(Ok(()));
    }
    shared.failed.get().map(|f| Err(f.clone()))
}

/// Completes when its record is durable (see [`Wal::durable`]).
#[derive(Debug)]
#[must_use = "a durability future does nothing unless awaited"]
pub struct Durable {
    shared: Arc<Shared>,
    lsn: u64,
}

impl Durable {
    /// The LSN this waits for.
    pub fn lsn(&self) -> Lsn {
        Lsn(self.lsn)
    }
}

impl Future for Durable {
    type Output = Result<(), WalFailure>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = check(&self.shared, self.lsn) {
            return Poll::Ready(r);
        }
        lock(&self.shared.waiters).push((self.lsn, cx.waker().clone()));
        // Re-check after registering: the writer publishes before it drains.
        match check(&self.shared, self.lsn) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn wake_upto(shared: &Shared, durable: u64) {
    let mut w = lock(&shared.waiters);
    let mut i = 0;
    while i < w.len() {
        if w[i].0 < durable {
            w.swap_remove(i).1.wake();
        } else {
            i += 1;
        }
    }
}

fn fail(shared: &Shared, f: WalFailure) {
    let _ = shared.failed.set(f);
    for (_, w) in lock(&shared.waiters).drain(..) {
        w.wake();
    }
}

/// Moves everything staged (complete chunks, then `front`'s) into `out`.
fn take_all(shared: &Shared, out: &mut Vec<Chunk>) {
    let mut front = lock(&shared.front);
    let mut ctl = lock(&shared.ctl);
    out.append(&mut ctl.ready);
    shared.ready_bytes.store(0, Ordering::Relaxed);
    out.extend(front.stager.take());
    shared.front_work.store(false, Ordering::Release);
    ctl.flush = false;
}

/// Waits for work and moves it into `out`; returns `false` on shutdown with
/// nothing staged.
fn next_batch(shared: &Shared, last: &mut Instant, out: &mut Vec<Chunk>) -> bool {
    let mut ctl = lock(&shared.ctl);
    // Whether the writer slept with nothing staged: then the first append
    // is committed at once, however soon after the last commit.
    let mut idle = false;
    loop {
        let due = shared.cfg.flush_interval.map(|i| *last + i);
        let now = Instant::now();
        let timer = due.is_some_and(|d| idle || now >= d);
        let front_work = shared.front_work.load(Ordering::Acquire);
        if (ctl.flush || ctl.shutdown || timer) && front_work {
            drop(ctl); // lock order: front, then ctl
            take_all(shared, out);
            *last = now;
            return true;
        }
        if !ctl.ready.is_empty() {
            out.append(&mut ctl.ready);
            shared.ready_bytes.store(0, Ordering::Relaxed);
            if ctl.flush || timer {
                ctl.flush = false;
                *last = now;
            }
            return true;
        }
        if ctl.shutdown {
            return false;
        }
        if timer {
            *last = now;
        }
        ctl.sleeping = true;
        ctl = match (front_work, due) {
            (true, Some(d)) => {
                let wait = d.saturating_duration_since(now);
                match shared.wake_writer.wait_timeout(ctl, wait) {
                    Ok(g) => g.0,
                    Err(p) => p.into_inner().0,
                }
            }
            _ => {
                idle = !front_work;
                shared
                    .wake_writer
                    .wait(ctl)
                    .unwrap_or_else(|p| p.into_inner())
            }
        };
        ctl.sleeping = false;
    }
}

fn writer_loop(shared: &Shared, writer: &mut Writer) {
    let mut last = Instant::now();
    let mut chunks = Vec::new();
    while next_batch(shared, &mut last, &mut chunks) {
        let res = writer.write(
            &mut chunks,
            &mut |l| {
                shared.durable.store(l.0, Ordering::Release);
                wake_upto(shared, l.0);
            },
            &mut |r| lock(&shared.segments).push(r),
        );
        let mut ctl = lock(&shared.ctl);
        for c in chunks.drain(..) {
            if ctl.returned.len() < MAX_SPARE_CHUNKS {
                ctl.returned.push(c.bytes);
            }
        }
        drop(ctl);
        if let Err(f) = res {
            fail(shared, f);
            return;
        }
    }
}
