//! Pushing records into a running pipeline from threads outside it.
//!
//! An [`Input`] is a source node with one bounded queue per shard. A push
//! computes the record's key, picks the shard that owns the key
//! ([`owner_of`]), and puts the record into that shard's queue; the
//! shard's instance of the source takes what is queued in its next poll,
//! serializes it once into a batch and sends it down the graph. A full
//! queue is backpressure: [`Handle::try_push`](crate::Handle::try_push)
//! hands the record back, [`Handle::push`](crate::Handle::push) waits for
//! room.
//!
//! Order: records of one key pushed by one thread reach the pipeline in
//! the order they were pushed (one key has one queue, and the queue is
//! FIFO).
//!
//! Durability: when the runtime has a data directory, each poll's records
//! are logged to the shard's WAL as one intake record (the runtime's
//! [`IntakeLog`]) before they go down the graph, in the epoch they go out
//! in. A crash before that epoch commits hands the logged records back to
//! the next run on the same directory ([`Source::replay`]), which emits
//! them again before anything else. A push made with
//! [`Handle::push_durable`](crate::Handle::push_durable) gets a
//! [`Receipt`] that completes once its record's intake record is durable:
//! from then on the record takes effect exactly once, whatever crashes.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::admission::Admission;
use crossbeam::queue::ArrayQueue;
use event_listener::Event as Notify;
use rkyv::api::high::{HighDeserializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;
use rkyv::{Archive, Deserialize, Serialize};
use weir_runtime::{
    owner_of, Emitter, IntakeLog, IntakeTicket, OperatorError, Record, RemoteWake, ShardContext,
    Source, SourcePoll,
};

/// A record as it travels from an [`Input`]: the pushed value with the key
/// it was routed by and its times.
///
/// Processors downstream of an input read `ArchivedEvent<T>`: `key` and
/// `time_ms` are plain fields, `value` is the archived `T`.
///
/// ```
/// let event = weir::Event { key: 7, time_ms: 1_000, pushed_ns: 0, value: 42u32 };
/// assert_eq!(event.key, 7);
/// ```
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Event<T> {
    /// The key the record was routed by ([`Input`]'s key function).
    pub key: u64,
    /// Event time in milliseconds since the Unix epoch: the input's time
    /// function, or the wall clock at the push.
    pub time_ms: u64,
    /// The wall clock at the push, in nanoseconds since the Unix epoch
    /// (for measuring latency).
    pub pushed_ns: u64,
    /// The pushed record.
    pub value: T,
}

/// The wall clock in nanoseconds since the Unix epoch.
///
/// ```
/// assert!(weir::unix_ns() > 1_600_000_000_000_000_000);
/// ```
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// A type an [`Input`] takes: any `Send + 'static` type deriving rkyv's
/// `Archive`, `Serialize` and `Deserialize` (rkyv 0.8 derives the
/// validation `Deserialize` needs along with `Archive`). Implemented for
/// every such type; there is nothing to implement by hand.
///
/// Records travel down the pipeline archived, as any record does. Pushed
/// records are also logged when the runtime has a data directory, and a
/// run that restarts after a crash validates and deserializes the ones
/// whose epoch never committed to push them again: hence `Deserialize`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
/// struct Login {
///     ip: u32,
///     user: String,
///     ok: bool,
/// }
///
/// fn takes<T: weir::InputRecord>() {}
/// takes::<Login>();
///
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
/// let mut pipeline = weir::Pipeline::new(runtime);
/// let logins = pipeline.input("logins", |login: &Login| u64::from(login.ip));
/// # let _ = logins;
/// # Ok(()) }
/// ```
pub trait InputRecord: Send + Sized + 'static {
    /// Serializes one poll's records for the WAL into `bytes`, reusing
    /// `bytes` and `arena`.
    #[doc(hidden)]
    // A `Vec`, not a slice: rkyv archives a `Vec` as a root; a slice is
    // unsized and has no root form.
    #[allow(clippy::ptr_arg)]
    fn encode_log(
        events: &Vec<Event<Self>>,
        bytes: &mut AlignedVec,
        arena: &mut Arena,
    ) -> Result<(), String>;

    /// Validates and deserializes what [`encode_log`](Self::encode_log)
    /// wrote, appending the records to `into`.
    #[doc(hidden)]
    fn decode_log(bytes: &[u8], into: &mut Vec<Event<Self>>) -> Result<(), String>;
}

impl<T> InputRecord for T
where
    T: Archive + Send + 'static,
    Event<T>: Record + Send + Sync,
    ArchivedEvent<T>: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<Event<T>, HighDeserializer<rancor::Error>>,
{
    fn encode_log(
        events: &Vec<Event<T>>,
        bytes: &mut AlignedVec,
        arena: &mut Arena,
    ) -> Result<(), String> {
        weir_runtime::record::serialize_into(events, bytes, arena).map_err(|error| error.message)
    }

    fn decode_log(bytes: &[u8], into: &mut Vec<Event<T>>) -> Result<(), String> {
        // The WAL hands back bytes without rkyv's alignment.
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        let events = rkyv::access::<ArchivedVec<ArchivedEvent<T>>, rancor::Error>(&aligned)
            .map_err(|error| format!("the logged records do not validate: {error}"))?;
        into.reserve(events.len());
        for event in events.iter() {
            let event = rkyv::deserialize::<Event<T>, rancor::Error>(event)
                .map_err(|error| format!("a logged record does not deserialize: {error}"))?;
            into.push(event);
        }
        Ok(())
    }
}

/// Settings of an [`Input`]; see [`Pipeline::input_with`](crate::Pipeline::input_with).
///
/// ```
/// use std::time::Duration;
/// let options = weir::InputOptions::default()
///     .queue_capacity(4096)
///     .watermark_delay(Duration::from_millis(500));
/// assert_eq!(options.capacity(), 4096);
/// ```
#[derive(Debug, Clone)]
pub struct InputOptions {
    capacity: usize,
    watermark_delay: Duration,
}

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            capacity: 16_384,
            watermark_delay: Duration::from_secs(1),
        }
    }
}

impl InputOptions {
    /// Records each shard's queue holds before pushes are refused
    /// ([`PushError::Full`]) or wait (default 16 384).
    ///
    /// ```
    /// let options = weir::InputOptions::default().queue_capacity(8);
    /// assert_eq!(options.capacity(), 8);
    /// ```
    pub fn queue_capacity(mut self, records: usize) -> Self {
        self.capacity = records.max(1);
        self
    }

    /// The queue capacity set.
    ///
    /// ```
    /// assert_eq!(weir::InputOptions::default().capacity(), 16_384);
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How far the input's watermark trails the wall clock (default 1 s):
    /// an event whose time is older than that when it arrives is late for
    /// event-time windows downstream.
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = weir::InputOptions::default().watermark_delay(Duration::ZERO);
    /// # let _ = options;
    /// ```
    pub fn watermark_delay(mut self, delay: Duration) -> Self {
        self.watermark_delay = delay;
        self
    }
}

/// Why a push did not take the record; the record comes back inside.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
/// let mut pipeline = weir::Pipeline::new(runtime);
/// let input = pipeline.input("numbers", |n: &u64| *n);
/// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
/// let service = pipeline.start()?;
/// let handle = service.handle();
/// service.shutdown()?;
/// match handle.try_push(&input, 5) {
///     Err(weir::PushError::Closed(record)) => assert_eq!(record, 5),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError<T> {
    /// The owning shard's queue is full (backpressure): try again later,
    /// or use [`Handle::push`](crate::Handle::push), which waits.
    Full(T),
    /// The pipeline was shut down, or its run ended; nothing more is
    /// taken.
    Closed(T),
}

impl<T> PushError<T> {
    /// The record that was not taken.
    ///
    /// ```
    /// let error = weir::PushError::Full(5);
    /// assert_eq!(error.into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(record) | PushError::Closed(record) => record,
        }
    }
}

impl<T> std::fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("the shard's input queue is full; push again later"),
            PushError::Closed(_) => f.write_str(
                "the pipeline is shut down (or its run ended) and takes no more records",
            ),
        }
    }
}

impl<T: std::fmt::Debug> std::error::Error for PushError<T> {}

/// Completes once a record pushed with
/// [`Handle::push_durable`](crate::Handle::push_durable) (or its `try_` and
/// `_blocking` forms) is durable: logged to its shard's WAL and synced.
/// From then on the record takes effect exactly once, across crashes: if
/// the epoch it went out in does not commit, the next run on the same data
/// directory pushes it again before anything else.
///
/// Without a data directory nothing is durable: the receipt completes once
/// the shard took the record into the pipeline.
///
/// Await it in async code, or [`wait`](Receipt::wait) for it on a thread.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let runtime = weir::runtime::Runtime::builder()
///     .shards(1)
///     .pin(false)
///     .data_dir(dir.path())
///     .build()?;
/// let mut pipeline = weir::Pipeline::new(runtime);
/// let input = pipeline.input("numbers", |n: &u64| *n);
/// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
/// let service = pipeline.start()?;
/// let handle = service.handle();
/// let receipt = handle.push_durable_blocking(&input, 7)?;
/// receipt.wait()?; // 7 is in the WAL now
/// # service.shutdown()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a receipt says nothing until it is awaited or waited for"]
pub struct Receipt {
    answer: oneshot::Receiver<Result<(), String>>,
}

impl Receipt {
    /// Blocks the calling thread until the record is durable.
    ///
    /// # Errors
    /// [`NotDurable`] when the WAL failed, or the run ended (failed, or
    /// its threads were torn down) before the record was known to be
    /// durable: it may or may not take effect.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// # let handle = service.handle();
    /// handle.push_durable_blocking(&input, 7)?.wait()?;
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn wait(self) -> Result<(), NotDurable> {
        answered(self.answer.recv())
    }
}

fn answered<E>(answer: Result<Result<(), String>, E>) -> Result<(), NotDurable> {
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(NotDurable(message)),
        Err(_) => Err(NotDurable(
            "the run ended before the record was known to be durable".into(),
        )),
    }
}

impl Future for Receipt {
    type Output = Result<(), NotDurable>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer).poll(cx).map(answered)
    }
}

/// Why a [`Receipt`] cannot say its record is durable; the message says
/// which.
///
/// ```
/// let error = weir::NotDurable::from("the WAL failed".to_string());
/// assert_eq!(error.to_string(), "the pushed record is not known to be durable: the WAL failed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDurable(String);

impl From<String> for NotDurable {
    fn from(message: String) -> NotDurable {
        NotDurable(message)
    }
}

impl std::fmt::Display for NotDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the pushed record is not known to be durable: {}",
            self.0
        )
    }
}

impl std::error::Error for NotDurable {}

pub(crate) type KeyFn<T> = Box<dyn Fn(&T) -> u64 + Send + Sync>;

/// Completes a [`Receipt`].
type Ack = oneshot::Sender<Result<(), String>>;

/// A record in an inbox, with the receipt to complete if it was pushed
/// durably.
struct Queued<T> {
    event: Event<T>,
    ack: Option<Ack>,
}

/// One shard's queue of an input.
struct Inbox<T> {
    queue: ArrayQueue<Queued<T>>,
    /// Pushes in flight, and whether the input is closed.
    admission: Admission,
    /// Wakes the shard's source instance; set once it is attached.
    wake: OnceLock<RemoteWake>,
}

/// A push that did not queue its record: why, and the ack it carried.
struct Refused<T> {
    error: PushError<T>,
    ack: Option<Ack>,
}

/// What one push attempt came to.
enum Attempt<T> {
    Done(Result<(), Refused<T>>),
    /// The queue was full twice; wait on the listener, then try again.
    Wait(T, Option<Ack>, event_listener::EventListener),
}

/// What an [`Input`]'s handles and its source instances share.
pub(crate) struct InputShared<T> {
    pub(crate) name: Arc<str>,
    inboxes: Box<[Inbox<T>]>,
    key: KeyFn<T>,
    time: Option<KeyFn<T>>,
    watermark_delay_ms: u64,
    /// Notified when a source instance made room in its queue.
    room: Notify,
    /// Source instances that saw their queue closed and empty.
    drained: AtomicUsize,
    /// Notified when a source instance drained.
    drained_event: Notify,
}

impl<T> InputShared<T> {
    pub(crate) fn new(
        name: &str,
        shards: usize,
        options: &InputOptions,
        key: KeyFn<T>,
        time: Option<KeyFn<T>>,
    ) -> InputShared<T> {
        InputShared {
            name: name.into(),
            inboxes: (0..shards)
                .map(|_| Inbox {
                    queue: ArrayQueue::new(options.capacity),
                    admission: Admission::default(),
                    wake: OnceLock::new(),
                })
                .collect(),
            key,
            time,
            watermark_delay_ms: options.watermark_delay.as_millis() as u64,
            room: Notify::new(),
            drained: AtomicUsize::new(0),
            drained_event: Notify::new(),
        }
    }

    /// Routes `value` to its shard and queues it.
    #[inline]
    pub(crate) fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        self.try_queue(value, None).map_err(|refused| refused.error)
    }

    /// Routes `value` to its shard and queues it, with `ack` to complete
    /// once it is durable.
    #[inline]
    fn try_queue(&self, value: T, ack: Option<Ack>) -> Result<(), Refused<T>> {
        let key = (self.key)(&value);
        let inbox = &self.inboxes[owner_of(key, self.inboxes.len())];
        if !inbox.admission.enter() {
            return Err(Refused {
                error: PushError::Closed(value),
                ack,
            });
        }
        let pushed_ns = unix_ns();
        let time_ms = match &self.time {
            Some(time) => time(&value),
            None => pushed_ns / 1_000_000,
        };
        let pushed = inbox.queue.push(Queued {
            event: Event {
                key,
                time_ms,
                pushed_ns,
                value,
            },
            ack,
        });
        inbox.admission.leave();
        match pushed {
            Ok(()) => {
                if let Some(wake) = inbox.wake.get() {
                    wake.wake();
                }
                Ok(())
            }
            Err(queued) => Err(Refused {
                error: PushError::Full(queued.event.value),
                ack: queued.ack,
            }),
        }
    }

    /// Pushes `value`; when its shard's queue is full, hands it back with a
    /// listener for room that was registered before a second try (so room
    /// made in between is not missed).
    fn push_or_listen(&self, value: T, ack: Option<Ack>) -> Attempt<T> {
        let (value, ack) = match self.try_queue(value, ack) {
            Err(Refused {
                error: PushError::Full(back),
                ack,
            }) => (back, ack),
            done => return Attempt::Done(done),
        };
        let listener = self.room.listen();
        match self.try_queue(value, ack) {
            Err(Refused {
                error: PushError::Full(back),
                ack,
            }) => Attempt::Wait(back, ack, listener),
            done => Attempt::Done(done),
        }
    }

    /// Pushes `value`, waiting (asynchronously) while its shard's queue is
    /// full.
    pub(crate) async fn push(&self, value: T) -> Result<(), PushError<T>> {
        self.queue(value, None).await
    }

    async fn queue(&self, mut value: T, mut ack: Option<Ack>) -> Result<(), PushError<T>> {
        loop {
            match self.push_or_listen(value, ack) {
                Attempt::Done(done) => return done.map_err(|refused| refused.error),
                Attempt::Wait(back, back_ack, listener) => {
                    (value, ack) = (back, back_ack);
                    listener.await;
                }
            }
        }
    }

    /// Pushes `value`, blocking the calling thread while its shard's queue
    /// is full.
    pub(crate) fn push_blocking(&self, value: T) -> Result<(), PushError<T>> {
        self.queue_blocking(value, None)
    }

    fn queue_blocking(&self, mut value: T, mut ack: Option<Ack>) -> Result<(), PushError<T>> {
        use event_listener::Listener;
        loop {
            match self.push_or_listen(value, ack) {
                Attempt::Done(done) => return done.map_err(|refused| refused.error),
                Attempt::Wait(back, back_ack, listener) => {
                    (value, ack) = (back, back_ack);
                    listener.wait();
                }
            }
        }
    }

    /// [`try_push`](Self::try_push), with a receipt for durability.
    pub(crate) fn try_push_durable(&self, value: T) -> Result<Receipt, PushError<T>> {
        let (ack, answer) = oneshot::channel();
        self.try_queue(value, Some(ack))
            .map(|()| Receipt { answer })
            .map_err(|refused| refused.error)
    }

    /// [`push`](Self::push), with a receipt for durability.
    pub(crate) async fn push_durable(&self, value: T) -> Result<Receipt, PushError<T>> {
        let (ack, answer) = oneshot::channel();
        self.queue(value, Some(ack)).await?;
        Ok(Receipt { answer })
    }

    /// [`push_blocking`](Self::push_blocking), with a receipt for
    /// durability.
    pub(crate) fn push_durable_blocking(&self, value: T) -> Result<Receipt, PushError<T>> {
        let (ack, answer) = oneshot::channel();
        self.queue_blocking(value, Some(ack))?;
        Ok(Receipt { answer })
    }

    /// Refuses every later push; queued records are still delivered.
    pub(crate) fn close(&self) {
        for inbox in self.inboxes.iter() {
            inbox.admission.close();
            if let Some(wake) = inbox.wake.get() {
                wake.wake();
            }
        }
        // Pushers waiting for room now see the input closed.
        self.room.notify(usize::MAX);
    }

    /// Waits until every source instance emitted all it had queued after
    /// [`close`](Self::close), or `timeout` passed; returns whether they
    /// all did.
    pub(crate) fn wait_drained(&self, timeout: Duration) -> bool {
        use event_listener::Listener;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.drained.load(Ordering::Acquire) >= self.inboxes.len() {
                return true;
            }
            let listener = self.drained_event.listen();
            if self.drained.load(Ordering::Acquire) >= self.inboxes.len() {
                return true;
            }
            if listener.wait_deadline(deadline).is_none() {
                return self.drained.load(Ordering::Acquire) >= self.inboxes.len();
            }
        }
    }

    /// The run ended: nothing will drain any more; wake whoever waits for
    /// it.
    pub(crate) fn release(&self) {
        // What is still queued (a failed run stopped taking records) will
        // never be taken: drop it now, so the receipts of durable pushes
        // among it fail now, not when the last `Input` handle goes.
        self.close();
        for inbox in self.inboxes.iter() {
            inbox.admission.close_and_wait();
            while inbox.queue.pop().is_some() {}
        }
        self.drained.fetch_add(self.inboxes.len(), Ordering::AcqRel);
        self.drained_event.notify(usize::MAX);
    }

    /// Records queued now, over all shards.
    pub(crate) fn queued(&self) -> usize {
        self.inboxes.iter().map(|inbox| inbox.queue.len()).sum()
    }
}

/// An input of a pipeline: the name of a source node that threads outside
/// the runtime push records of type `T` into, through a
/// [`Handle`](crate::Handle). Made by [`Pipeline::input`](crate::Pipeline::input);
/// cheap to clone, `Send + Sync`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
/// let mut pipeline = weir::Pipeline::new(runtime);
/// let numbers: weir::Input<u64> = pipeline.input("numbers", |n: &u64| *n);
/// assert_eq!(numbers.name(), "numbers");
/// # Ok(()) }
/// ```
pub struct Input<T> {
    pub(crate) shared: Arc<InputShared<T>>,
}

impl<T> Clone for Input<T> {
    fn clone(&self) -> Self {
        Input {
            shared: self.shared.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Input<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.shared.name)
            .field("queued", &self.shared.queued())
            .finish()
    }
}

impl<T> Input<T> {
    /// The input's node name: connect processors to it by this name.
    ///
    /// ```
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// let input = pipeline.input("clicks", |id: &u32| u64::from(*id));
    /// assert_eq!(input.name(), "clicks");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

/// An input's source instance on one shard.
pub(crate) struct InputSource<T> {
    shared: Arc<InputShared<T>>,
    shard: usize,
    watermark: u64,
    drained: bool,
    /// Where taken records are logged (disabled until attached, and
    /// without a data directory).
    intake: IntakeLog,
    /// One poll's records, while they are logged (reused).
    taken: Vec<Event<T>>,
    /// Their serialized form, and the serializer's scratch (reused).
    log_bytes: AlignedVec,
    arena: Arena,
    /// Receipts to complete once one poll's records are durable.
    acks: Vec<Ack>,
    /// Tasks waiting for a poll's records to be durable to complete its
    /// receipts. The source does not end before they do.
    acks_pending: Rc<Cell<usize>>,
    _record: PhantomData<fn() -> T>,
}

impl<T> InputSource<T> {
    pub(crate) fn new(shared: Arc<InputShared<T>>, context: &ShardContext) -> InputSource<T> {
        InputSource {
            shared,
            shard: context.shard,
            watermark: 0,
            drained: false,
            intake: IntakeLog::disabled(),
            taken: Vec::new(),
            log_bytes: AlignedVec::new(),
            arena: Arena::new(),
            acks: Vec::new(),
            acks_pending: Rc::default(),
            _record: PhantomData,
        }
    }
}

impl<T: InputRecord> InputSource<T>
where
    Event<T>: Record,
{
    /// Logs the records taken in this poll (with a data directory), emits
    /// them, and completes their receipts once they are durable (without a
    /// data directory: now).
    fn log_and_ack(&mut self, out: &mut Emitter<Event<T>>) {
        let logged = if self.intake.is_durable() {
            let logged = log_records(
                &self.intake,
                &mut self.taken,
                &mut self.log_bytes,
                &mut self.arena,
            );
            match logged {
                Ok(ticket) => Some(ticket),
                Err(error) => {
                    let message = format!(
                        "input `{}`: logging pushed records: {error}",
                        self.shared.name
                    );
                    for ack in self.acks.drain(..) {
                        let _ = ack.send(Err(message.clone()));
                    }
                    self.taken.clear();
                    out.fail(message);
                    return;
                }
            }
        } else {
            None
        };
        // One `push_all` routes the whole poll's records in a tight loop.
        out.push_all(&self.taken);
        self.taken.clear();
        if self.acks.is_empty() {
            return;
        }
        let Some(ticket) = logged else {
            for ack in self.acks.drain(..) {
                let _ = ack.send(Ok(()));
            }
            return;
        };
        // A receipt is waited for: write now, not at the next group commit.
        self.intake.flush();
        self.acks_pending.set(self.acks_pending.get() + 1);
        let acks = std::mem::take(&mut self.acks);
        let pending = self.acks_pending.clone();
        let intake = self.intake.clone();
        glommio::spawn_local(async move {
            let durable = ticket.await.map_err(|error| error.to_string());
            for ack in acks {
                let _ = ack.send(durable.clone());
            }
            pending.set(pending.get() - 1);
            // The source may be waiting for this to end.
            intake.wake_source();
        })
        .detach();
    }
}

/// Intake records above this many bytes are split in two: the WAL takes
/// payloads of up to [`MAX_PAYLOAD_BYTES`](weir_wal::limits::MAX_PAYLOAD_BYTES)
/// (16 MiB), and one poll takes up to a batch of records of any size.
const INTAKE_RECORD_BYTES_SPLIT: usize = weir_wal::limits::MAX_PAYLOAD_BYTES / 4;

/// Logs `records` as one intake record, or as several in order when they
/// serialize to more than [`INTAKE_RECORD_BYTES_SPLIT`] bytes; returns the
/// last one's ticket (the WAL syncs in order, so it completes after the
/// others). `records` holds the same records, in order, afterwards;
/// `bytes` and `arena` are scratch.
fn log_records<T: InputRecord>(
    intake: &IntakeLog,
    records: &mut Vec<Event<T>>,
    bytes: &mut AlignedVec,
    arena: &mut Arena,
) -> Result<IntakeTicket, String> {
    T::encode_log(records, bytes, arena)?;
    if bytes.len() <= INTAKE_RECORD_BYTES_SPLIT || records.len() == 1 {
        return intake.append(bytes).map_err(|error| error.to_string());
    }
    let mut second = records.split_off(records.len() / 2);
    let logged = log_records(intake, records, bytes, arena).map(drop);
    let ticket = logged.and_then(|()| log_records(intake, &mut second, bytes, arena));
    records.append(&mut second);
    ticket
}

impl<T: InputRecord> Source for InputSource<T>
where
    Event<T>: Record,
{
    type Output = Event<T>;

    fn attach(&mut self, intake: IntakeLog) {
        let _ = self.shared.inboxes[self.shard]
            .wake
            .set(intake.remote_wake());
        self.intake = intake;
    }

    fn poll(&mut self, out: &mut Emitter<Event<T>>) -> SourcePoll {
        let inbox = &self.shared.inboxes[self.shard];
        let max = out.batch_records_max();
        let mut taken = 0;
        while taken < max {
            let Some(queued) = inbox.queue.pop() else {
                break;
            };
            taken += 1;
            if let Some(ack) = queued.ack {
                self.acks.push(ack);
            }
            self.taken.push(queued.event);
        }
        if taken > 0 {
            self.shared.room.notify(usize::MAX);
            self.log_and_ack(out);
        }
        let now_ms = unix_ns() / 1_000_000;
        let watermark = now_ms.saturating_sub(self.shared.watermark_delay_ms);
        // Watermarks advance in steps of 10 ms: finer ones cost a control
        // message each and gain nothing at window sizes of seconds.
        if watermark >= self.watermark + 10 {
            self.watermark = watermark;
            out.watermark(watermark);
        }
        if taken == max {
            return SourcePoll::Ready;
        }
        // Closed, no push in flight, nothing left, and every receipt
        // answered: every record pushed before the close was emitted.
        let inbox = &self.shared.inboxes[self.shard];
        if inbox.admission.is_closed_and_idle()
            && inbox.queue.is_empty()
            && self.acks_pending.get() == 0
        {
            if !self.drained {
                self.drained = true;
                self.shared.drained.fetch_add(1, Ordering::AcqRel);
                self.shared.drained_event.notify(usize::MAX);
            }
            return SourcePoll::Exhausted;
        }
        SourcePoll::Idle
    }

    /// Emits again the records of one poll that a crashed run logged in an
    /// epoch that never committed.
    fn replay(&mut self, data: &[u8], out: &mut Emitter<Event<T>>) -> Result<(), OperatorError> {
        T::decode_log(data, &mut self.taken).map_err(|error| {
            OperatorError::invalid(format!(
                "input `{}`: replaying pushed records logged by an earlier run: {error}",
                self.shared.name
            ))
        })?;
        out.push_all(&self.taken);
        self.taken.clear();
        Ok(())
    }
}
