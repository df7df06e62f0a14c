//! The queue between a source instance and its connections, and the
//! replies that come back through it.
//!
//! A connection checks a batch completely, then hands it to the instance
//! that owns it ([`enqueue`]): its own instance's [`IngestQueue`], bounded
//! in events, or, for a batch with an id owned by another instance, that
//! instance's bounded channel in the [`Mesh`]. Either way the batch is
//! refused at once when there is no room ([`Refused`]), never queued
//! without bound. The source fills the batch's reply slot when it has
//! logged the batch (or found its id already accepted); the connection
//! awaits the slot and then the log's durability ([`PendingReply::settle`]).
//! A batch carries its share of the read budget until it is dropped.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use weir_runtime::{IntakeLog, IntakeTicket};

use super::body_events::Indexed;
use super::budget::Reservation;
use super::metrics::IngestMetrics;
use super::{unix_ns, Encoding, Mesh, Payload};

/// A batch handed to its owner instance on another shard.
pub(crate) struct Forwarded {
    encoding: Encoding,
    batch_id: Option<u64>,
    events: usize,
    payload: Payload,
    /// The payload's share of the read budget, released with it.
    reservation: Reservation,
    index: Vec<Indexed>,
    queued_ns: u64,
    reply: std::sync::Arc<RemoteSlot>,
}

/// A reply slot another shard fills.
#[derive(Default)]
pub(crate) struct RemoteSlot {
    reply: std::sync::Mutex<Option<Reply>>,
    waker: atomic_waker::AtomicWaker,
}

/// Where the answer to a queued batch goes.
pub(crate) enum ReplyTo {
    /// A connection on this shard.
    Local(Rc<ReplySlot>),
    /// A connection on another shard.
    Remote(std::sync::Arc<RemoteSlot>),
}

impl ReplyTo {
    pub(crate) fn fill(&self, reply: Reply) {
        match self {
            ReplyTo::Local(slot) => slot.fill(reply),
            ReplyTo::Remote(slot) => {
                *slot
                    .reply
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner()) = Some(reply);
                slot.waker.wake();
            }
        }
    }
}

/// Awaits a [`RemoteSlot`].
pub(crate) struct RemoteFuture(std::sync::Arc<RemoteSlot>);

impl Future for RemoteFuture {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        self.0.waker.register(cx.waker());
        let mut reply = self
            .0
            .reply
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match reply.take() {
            Some(reply) => Poll::Ready(reply),
            None => Poll::Pending,
        }
    }
}

/// The source's answer to a queued batch, to await.
pub(crate) enum PendingReply {
    Local(ReplyFuture),
    Remote(RemoteFuture),
}

impl Future for PendingReply {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        match self.get_mut() {
            PendingReply::Local(future) => Pin::new(future).poll(cx),
            PendingReply::Remote(future) => Pin::new(future).poll(cx),
        }
    }
}

/// Queues a checked batch with the instance that owns it; the source's
/// answer (not yet the log's) comes through the returned future. The
/// payload's `reservation` is released when the batch is dropped.
pub(crate) fn enqueue(
    queue: &IngestQueue,
    encoding: Encoding,
    batch_id: Option<u64>,
    events: usize,
    (payload, reservation): (Payload, Reservation),
    index: Vec<Indexed>,
) -> Result<PendingReply, Refused> {
    if !queue.open.get() {
        return Err(Refused::Unavailable);
    }
    if let Some(id) = batch_id {
        let owner = queue.mesh.owner(id);
        if owner != queue.instance {
            let slot = std::sync::Arc::new(RemoteSlot::default());
            let batch = Forwarded {
                encoding,
                batch_id,
                events,
                payload,
                reservation,
                index,
                queued_ns: unix_ns(),
                reply: slot.clone(),
            };
            return match queue.mesh.senders[owner].try_send(batch) {
                Ok(()) => Ok(PendingReply::Remote(RemoteFuture(slot))),
                Err(crossbeam::channel::TrySendError::Full(_)) => Err(Refused::Full),
                Err(crossbeam::channel::TrySendError::Disconnected(_)) => Err(Refused::Unavailable),
            };
        }
    }
    let slot = Rc::new(ReplySlot::default());
    queue.push(Queued {
        encoding,
        batch_id,
        events,
        payload,
        _reservation: reservation,
        index,
        queued_ns: unix_ns(),
        reply: ReplyTo::Local(slot.clone()),
    })?;
    Ok(PendingReply::Local(ReplyFuture(slot)))
}

/// How a queued batch ended, once its log record is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Its events were logged and emitted.
    Accepted(usize),
    /// Its batch id was accepted before: nothing was added.
    Duplicate,
}

impl PendingReply {
    /// Awaits the source's answer and then the log: `Err` says why the
    /// batch was not accepted durably.
    pub(crate) async fn settle(self) -> Result<Settled, String> {
        let (settled, ticket) = match self.await {
            Reply::Accepted { events, ticket } => (Settled::Accepted(events), ticket),
            Reply::Duplicate { ticket } => (Settled::Duplicate, ticket),
            Reply::Failed(error) => return Err(error),
        };
        ticket
            .await
            .map(|()| settled)
            .map_err(|error| format!("the write-ahead log failed: {error}"))
    }
}

/// What the source answers a queued batch.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Logged: acknowledge once the ticket completes.
    Accepted { events: usize, ticket: IntakeTicket },
    /// The id was accepted before: acknowledge once the ticket completes
    /// (everything logged so far is durable, the original included).
    Duplicate { ticket: IntakeTicket },
    /// The batch could not be logged.
    Failed(String),
}

/// A one-shot slot the source fills and a connection awaits.
#[derive(Default)]
pub(crate) struct ReplySlot {
    reply: RefCell<Option<Reply>>,
    waker: RefCell<Option<Waker>>,
}

impl ReplySlot {
    pub(crate) fn fill(&self, reply: Reply) {
        *self.reply.borrow_mut() = Some(reply);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// Awaits a [`ReplySlot`].
pub(crate) struct ReplyFuture(pub(crate) Rc<ReplySlot>);

impl Future for ReplyFuture {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        if let Some(reply) = self.0.reply.borrow_mut().take() {
            return Poll::Ready(reply);
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A batch a connection checked and queued.
pub(crate) struct Queued {
    pub(crate) encoding: Encoding,
    pub(crate) batch_id: Option<u64>,
    pub(crate) events: usize,
    pub(crate) payload: Payload,
    /// The payload's share of the read budget: held, never read; dropping
    /// the batch (once logged, or refused) releases it.
    pub(crate) _reservation: Reservation,
    /// JSON payloads: where each checked event is (empty for `Wire`).
    pub(crate) index: Vec<Indexed>,
    /// When it was queued (ns since the Unix epoch).
    pub(crate) queued_ns: u64,
    pub(crate) reply: ReplyTo,
}

/// Why a batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full: retry later.
    Full,
    /// The source is not taking input (replaying, or shutting down).
    Unavailable,
}

/// Batches waiting for the source instance, shared with its connection
/// tasks (all on one shard).
pub(crate) struct IngestQueue {
    pub(crate) batches: RefCell<VecDeque<Queued>>,
    pub(crate) events: Cell<usize>,
    pub(crate) limit: usize,
    /// Whether the source takes input (it is listening and not stopping).
    pub(crate) open: Cell<bool>,
    /// This instance's index, and how batches with ids reach their owner.
    pub(crate) instance: usize,
    pub(crate) mesh: std::sync::Arc<Mesh>,
    pub(crate) metrics: IngestMetrics,
    /// The source's intake log, to wake the source when a batch arrives.
    pub(crate) intake: RefCell<Option<IntakeLog>>,
}

impl IngestQueue {
    /// Queues `batch`, or drops it (releasing its share of the read
    /// budget) and says why not.
    /// Whether a local batch of `events` would be refused as
    /// [`Refused::Full`] now.
    pub(crate) fn is_full_for(&self, events: usize) -> bool {
        let queued = self.events.get();
        queued > 0 && queued + events > self.limit
    }

    pub(crate) fn push(&self, batch: Queued) -> Result<(), Refused> {
        if !self.open.get() {
            return Err(Refused::Unavailable);
        }
        let events = self.events.get();
        if events > 0 && events + batch.events > self.limit {
            return Err(Refused::Full);
        }
        self.events.set(events + batch.events);
        self.batches.borrow_mut().push_back(batch);
        if let Some(intake) = self.intake.borrow().as_ref() {
            intake.wake_source();
        }
        Ok(())
    }

    pub(crate) fn pop(
        &self,
        inbox: Option<&crossbeam::channel::Receiver<Forwarded>>,
    ) -> Option<Queued> {
        if let Some(batch) = self.batches.borrow_mut().pop_front() {
            self.events.set(self.events.get() - batch.events);
            return Some(batch);
        }
        let batch = inbox?.try_recv().ok()?;
        Some(Queued {
            encoding: batch.encoding,
            batch_id: batch.batch_id,
            events: batch.events,
            payload: batch.payload,
            _reservation: batch.reservation,
            index: batch.index,
            queued_ns: batch.queued_ns,
            reply: ReplyTo::Remote(batch.reply),
        })
    }
}
