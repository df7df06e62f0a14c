//! Durable intake: how a source fed by clients that cannot replay (HTTP or
//! TCP ingest) makes what it accepted survive a crash.
//!
//! A generator or a file can be re-read from a position; a client that got
//! an acknowledgement will not send its events again. Such a source logs
//! each accepted batch to its shard's WAL through an [`IntakeLog`] *inside
//! [`Source::poll`](crate::Source::poll)*, emits the batch's records in the
//! same poll, and acknowledges the client once the [`IntakeTicket`] says
//! the record is durable.
//!
//! # Why this is exactly-once
//! An intake record is logged with the epoch its records are emitted in
//! (the source's current epoch), like positions and snapshots. If that
//! epoch commits, the records' effects are in committed state and output;
//! if it does not (a crash), recovery hands the record back and the source
//! emits it again before anything else ([`Source::replay`](crate::Source::replay)),
//! so every durable (and thus every acknowledged) batch takes effect once.
//!
//! A replayed record is logged again, in the new run's first epoch, with
//! the LSN of its first copy as its identity: if the new run crashes too,
//! recovery finds the newest copy and replays it only if that copy's epoch
//! did not commit either. Records are replayed in the order of their first
//! copy, so a source's per-connection order survives.
//!
//! Without a data directory there is no log: [`IntakeLog::append`] returns
//! a ticket that is ready at once, and nothing survives a crash.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use weir_wal::RecordType;

use crate::epoch::shard::ShardEpochs;
use crate::epoch::{intake_origin, INTAKE_ORIGIN_LEN};
use crate::error::{NodeFailure, OperatorError};
use crate::limits::INTAKE_RECORD_MAX_BYTES;

/// A source instance's handle for logging accepted input; see the module
/// documentation. Cheap to clone; lives on the source's shard.
#[derive(Clone)]
pub struct IntakeLog {
    inner: Option<Rc<Inner>>,
    wake: Rc<SourceWake>,
}

/// Lets a source's helpers (its connections) end the source's idle sleep:
/// an idle source is polled again after a millisecond, or at once when
/// woken, from its shard ([`IntakeLog::wake_source`]) or from any thread
/// ([`RemoteWake`]).
#[derive(Default)]
pub(crate) struct SourceWake {
    woken: Cell<bool>,
    waker: std::cell::RefCell<Option<std::task::Waker>>,
    remote: RemoteWake,
}

impl SourceWake {
    fn wake(&self) {
        self.woken.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Completes once woken (at once if woken since the last wait).
    pub(crate) fn woken(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.woken.replace(false) {
                return Poll::Ready(());
            }
            // Register before looking at the flag: a wake between the two
            // then finds the waker.
            self.remote.0.waker.register(cx.waker());
            if self.remote.0.pending.swap(false, Ordering::SeqCst) {
                // Pairs with the fence in `RemoteWake::wake`: a pusher that
                // saw the `true` this swap took wrote its record before
                // this point, and the poll that follows reads the queue
                // after this fence. A swap that finds `false` needs none:
                // no pusher can have seen a `true` newer than the last
                // swap that found one.
                std::sync::atomic::fence(Ordering::SeqCst);
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// Ends a source's idle sleep from any thread: a thread outside the runtime
/// that queued input for the source calls [`wake`](RemoteWake::wake).
/// `Send + Sync`; cheap to clone. Get it from
/// [`IntakeLog::remote_wake`].
#[derive(Clone, Default)]
pub struct RemoteWake(Arc<RemoteWakeInner>);

#[derive(Default)]
struct RemoteWakeInner {
    /// A wake is pending: the source has not gone to sleep since.
    pending: AtomicBool,
    waker: atomic_waker::AtomicWaker,
}

impl std::fmt::Debug for RemoteWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWake")
            .field("pending", &self.0.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl RemoteWake {
    /// Makes the source's next idle sleep (or the current one) end at once.
    /// Only the first call after the source last went to sleep does any
    /// work beyond a fence and a load, so calling it after every push is
    /// cheap.
    pub fn wake(&self) {
        // While the source is busy a wake is already pending: a load, which
        // leaves the line shared between pushers, sees it. The fence
        // orders the caller's queue write before that load; with the swap
        // and fence in `SourceWake::woken` (a store-buffer pattern) either
        // this load sees the swap's `false` and wakes the source, or the
        // source's poll after the swap sees the caller's record.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.0.pending.load(Ordering::Relaxed) {
            return;
        }
        if !self.0.pending.swap(true, Ordering::AcqRel) {
            self.0.waker.wake();
        }
    }
}

/// The run's newest committed epoch and abort flag, from any thread
/// ([`IntakeLog::commit_watch`]). Without a data directory nothing ever
/// commits: the epoch stays 0.
#[derive(Clone)]
pub struct CommitWatch(Option<Arc<crate::epoch::EpochShared>>);

impl std::fmt::Debug for CommitWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitWatch")
            .field("committed_epoch", &self.committed_epoch())
            .finish()
    }
}

impl CommitWatch {
    /// The newest committed epoch (0 without a data directory).
    pub fn committed_epoch(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |shared| shared.committed.load(Ordering::Acquire))
    }

    /// Whether the run was aborted: no epoch commits any more.
    pub fn aborted(&self) -> bool {
        self.0.as_ref().is_some_and(|shared| shared.is_aborted())
    }

    /// Whether the run ends by a stop (a signal, `RunHandle::stop`), not
    /// the end of its input: its operators' final snapshots are taken
    /// after their `on_stop`.
    pub fn stopped(&self) -> bool {
        self.0.as_ref().is_some_and(|shared| shared.is_stop())
    }
}

struct Inner {
    epochs: Rc<ShardEpochs>,
    node: Arc<str>,
    instance: usize,
    /// The epoch the source's records currently belong to: one past the
    /// last barrier it emitted.
    epoch: Rc<Cell<u64>>,
    /// Whether the source logged input in this run (an intake source).
    /// Only then does its poll wait for room in the WAL (`make_room`): a
    /// source that logs nothing in its polls (a Kafka or file source logs
    /// its position at barriers only) need not wait for the snapshots
    /// other nodes of its shard logged, and would idle its shard while the
    /// disk takes them.
    logged: Cell<bool>,
}

impl std::fmt::Debug for IntakeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeLog")
            .field("durable", &self.is_durable())
            .finish()
    }
}

/// The most bytes of data one [`IntakeLog::append`] of node `node` can
/// log: the largest intake record
/// ([`INTAKE_RECORD_MAX_BYTES`], the WAL's largest record payload, 16 MiB)
/// less what every intake record carries before the data: the node's
/// identity (`encode_record`: name length u32, the name, instance u32) and
/// the copy's origin (u64). A source that accepts input from clients
/// checks its request limits against this, so that an accepted request can
/// always be logged. A WAL with segments smaller than 16 MiB (see
/// `RuntimeBuilder::wal_segment_bytes`) holds less.
pub fn data_bytes_max(node: &str) -> usize {
    let overhead = 4 + node.len() + 4 + INTAKE_ORIGIN_LEN;
    INTAKE_RECORD_MAX_BYTES.saturating_sub(overhead)
}

impl IntakeLog {
    /// A log that keeps nothing: the runtime has no data directory.
    pub fn disabled() -> IntakeLog {
        IntakeLog {
            inner: None,
            wake: Rc::default(),
        }
    }

    pub(crate) fn new(
        epochs: Rc<ShardEpochs>,
        node: Arc<str>,
        instance: usize,
        epoch: Rc<Cell<u64>>,
    ) -> IntakeLog {
        IntakeLog {
            inner: Some(Rc::new(Inner {
                epochs,
                node,
                instance,
                epoch,
                logged: Cell::new(false),
            })),
            wake: Rc::default(),
        }
    }

    /// Ends the source's idle sleep: call it when input arrives for the
    /// source (a connection queued a batch), so the source is polled now
    /// rather than after up to a millisecond. Cheap; call it freely.
    pub fn wake_source(&self) {
        self.wake.wake();
    }

    /// A handle that ends the source's idle sleep from any thread: for
    /// sources fed by threads outside the runtime.
    pub fn remote_wake(&self) -> RemoteWake {
        self.wake.remote.clone()
    }

    pub(crate) fn source_wake(&self) -> Rc<SourceWake> {
        self.wake.clone()
    }

    /// Whether appended data survives a crash (the runtime has a data
    /// directory).
    pub fn is_durable(&self) -> bool {
        self.inner.is_some()
    }

    /// Logs `data` as part of the source's current epoch. Call it from
    /// `poll`, in the same poll that emits the records `data` holds; the
    /// ticket completes once the record is durable.
    pub fn append(&self, data: &[u8]) -> Result<IntakeTicket, OperatorError> {
        self.append_parts(None, &[data])
    }

    /// [`append`](Self::append) of the concatenation of `parts`, without
    /// concatenating them first.
    pub fn append_vectored(&self, parts: &[&[u8]]) -> Result<IntakeTicket, OperatorError> {
        self.append_parts(None, parts)
    }

    /// The epoch what is appended now belongs to (0 without a data
    /// directory).
    pub fn current_epoch(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| inner.epoch.get())
    }

    /// The newest committed epoch (0 without a data directory): what was
    /// appended in epochs up to it has taken effect in committed output.
    pub fn committed_epoch(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| {
            inner
                .epochs
                .shared()
                .committed
                .load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// The newest committed epoch and whether the run was aborted, readable
    /// from any thread: for a source's helper thread that acts once an
    /// epoch committed (sends offsets to a Kafka group), even after the
    /// source itself ended.
    pub fn commit_watch(&self) -> CommitWatch {
        CommitWatch(
            self.inner
                .as_ref()
                .map(|inner| inner.epochs.shared_handle()),
        )
    }

    /// Asks the WAL to write what was appended now rather than at its next
    /// group-commit tick: call it once per poll that appended something.
    pub fn flush(&self) {
        if let Some(inner) = &self.inner {
            inner.epochs.flush();
        }
    }

    /// Waits, without blocking the shard, until its WAL has room for what
    /// a poll or a replayed record logs (`ShardEpochs::make_room`); at once
    /// without a data directory, and for a source that has logged no input
    /// in this run (its polls log nothing).
    pub(crate) async fn make_room(&self) -> Result<(), NodeFailure> {
        match &self.inner {
            Some(inner) if inner.logged.get() => inner.epochs.make_room().await,
            _ => Ok(()),
        }
    }

    /// A ticket that completes once everything this shard logged so far is
    /// durable: the answer to a duplicate of a batch logged earlier.
    pub fn durable_so_far(&self) -> IntakeTicket {
        IntakeTicket {
            durable: self
                .inner
                .as_ref()
                .map(|inner| inner.epochs.durable_so_far()),
        }
    }

    /// Logs `data` again, as a copy of the record whose identity is
    /// `identity` (`None`: a first copy).
    pub(crate) fn append_copy(
        &self,
        identity: Option<u64>,
        data: &[u8],
    ) -> Result<IntakeTicket, OperatorError> {
        self.append_parts(identity, &[data])
    }

    fn append_parts(
        &self,
        identity: Option<u64>,
        data: &[&[u8]],
    ) -> Result<IntakeTicket, OperatorError> {
        let Some(inner) = &self.inner else {
            return Ok(IntakeTicket { durable: None });
        };
        inner.logged.set(true);
        let origin = intake_origin(identity);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + data.len());
        parts.push(&origin);
        parts.extend_from_slice(data);
        let durable = inner
            .epochs
            .append_durable(
                RecordType::INPUT,
                inner.epoch.get(),
                &inner.node,
                inner.instance,
                &parts,
            )
            .map_err(|error| OperatorError::io(format!("logging accepted input: {error}")))?;
        Ok(IntakeTicket {
            durable: Some(durable),
        })
    }
}

/// Completes once an appended intake record is durable (at once without a
/// data directory). Await it before acknowledging the client.
#[derive(Debug)]
#[must_use = "await the ticket before acknowledging"]
pub struct IntakeTicket {
    durable: Option<weir_wal::Durable>,
}

impl IntakeTicket {
    /// A ticket that is ready at once.
    pub fn ready() -> IntakeTicket {
        IntakeTicket { durable: None }
    }
}

impl Future for IntakeTicket {
    type Output = Result<(), OperatorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.durable {
            None => Poll::Ready(Ok(())),
            Some(durable) => Pin::new(durable)
                .poll(cx)
                .map_err(|failure| OperatorError::io(failure.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_limit_fills_one_record_exactly() {
        for node in ["in", "events", "a-much-longer-source-name"] {
            let max = data_bytes_max(node);
            let origin = [0u8; INTAKE_ORIGIN_LEN];
            let data = vec![0u8; max];
            let mut record = Vec::new();
            crate::epoch::encode_record_into(&mut record, node, 3, &[&origin, &data]);
            assert_eq!(record.len(), weir_wal::limits::MAX_PAYLOAD_BYTES, "{node}");
        }
    }
}
