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

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam::queue::ArrayQueue;
use event_listener::Event as Notify;
use rkyv::{Archive, Deserialize, Serialize};
use weir_runtime::{
    owner_of, Emitter, IntakeLog, Record, RemoteWake, ShardContext, Source, SourcePoll,
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

pub(crate) type KeyFn<T> = Box<dyn Fn(&T) -> u64 + Send + Sync>;

/// Bit 63 of an inbox's state: closed. The bits below count pushes in
/// flight (between their check of the bit and the end of their push).
const CLOSED: u64 = 1 << 63;

/// One shard's queue of an input.
struct Inbox<T> {
    queue: ArrayQueue<Event<T>>,
    state: AtomicU64,
    /// Wakes the shard's source instance; set once it is attached.
    wake: OnceLock<RemoteWake>,
}

/// What one push attempt came to.
enum Attempt<T> {
    Done(Result<(), PushError<T>>),
    /// The queue was full twice; wait on the listener, then try again.
    Wait(T, event_listener::EventListener),
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
                    state: AtomicU64::new(0),
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
        let key = (self.key)(&value);
        let inbox = &self.inboxes[owner_of(key, self.inboxes.len())];
        if inbox.state.fetch_add(1, Ordering::Acquire) & CLOSED != 0 {
            inbox.state.fetch_sub(1, Ordering::Release);
            return Err(PushError::Closed(value));
        }
        let pushed_ns = unix_ns();
        let time_ms = match &self.time {
            Some(time) => time(&value),
            None => pushed_ns / 1_000_000,
        };
        let pushed = inbox.queue.push(Event {
            key,
            time_ms,
            pushed_ns,
            value,
        });
        inbox.state.fetch_sub(1, Ordering::Release);
        match pushed {
            Ok(()) => {
                if let Some(wake) = inbox.wake.get() {
                    wake.wake();
                }
                Ok(())
            }
            Err(event) => Err(PushError::Full(event.value)),
        }
    }

    /// Pushes `value`; when its shard's queue is full, hands it back with a
    /// listener for room that was registered before a second try (so room
    /// made in between is not missed).
    fn push_or_listen(&self, value: T) -> Attempt<T> {
        let value = match self.try_push(value) {
            Err(PushError::Full(back)) => back,
            done => return Attempt::Done(done),
        };
        let listener = self.room.listen();
        match self.try_push(value) {
            Err(PushError::Full(back)) => Attempt::Wait(back, listener),
            done => Attempt::Done(done),
        }
    }

    /// Pushes `value`, waiting (asynchronously) while its shard's queue is
    /// full.
    pub(crate) async fn push(&self, mut value: T) -> Result<(), PushError<T>> {
        loop {
            match self.push_or_listen(value) {
                Attempt::Done(done) => return done,
                Attempt::Wait(back, listener) => {
                    value = back;
                    listener.await;
                }
            }
        }
    }

    /// Pushes `value`, blocking the calling thread while its shard's queue
    /// is full.
    pub(crate) fn push_blocking(&self, mut value: T) -> Result<(), PushError<T>> {
        use event_listener::Listener;
        loop {
            match self.push_or_listen(value) {
                Attempt::Done(done) => return done,
                Attempt::Wait(back, listener) => {
                    value = back;
                    listener.wait();
                }
            }
        }
    }

    /// Refuses every later push; queued records are still delivered.
    pub(crate) fn close(&self) {
        for inbox in self.inboxes.iter() {
            inbox.state.fetch_or(CLOSED, Ordering::AcqRel);
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
    _record: PhantomData<fn() -> T>,
}

impl<T> InputSource<T> {
    pub(crate) fn new(shared: Arc<InputShared<T>>, context: &ShardContext) -> InputSource<T> {
        InputSource {
            shared,
            shard: context.shard,
            watermark: 0,
            drained: false,
            _record: PhantomData,
        }
    }
}

impl<T: Send + 'static> Source for InputSource<T>
where
    Event<T>: Record,
{
    type Output = Event<T>;

    fn attach(&mut self, intake: IntakeLog) {
        let _ = self.shared.inboxes[self.shard]
            .wake
            .set(intake.remote_wake());
    }

    fn poll(&mut self, out: &mut Emitter<Event<T>>) -> SourcePoll {
        let inbox = &self.shared.inboxes[self.shard];
        let max = out.batch_records_max();
        let mut taken = 0;
        while taken < max {
            let Some(event) = inbox.queue.pop() else {
                break;
            };
            out.push(&event);
            taken += 1;
        }
        if taken > 0 {
            self.shared.room.notify(usize::MAX);
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
        // Closed, no push in flight, and nothing left: every record pushed
        // before the close was emitted.
        let state = inbox.state.load(Ordering::Acquire);
        if state == CLOSED && inbox.queue.is_empty() {
            if !self.drained {
                self.drained = true;
                self.shared.drained.fetch_add(1, Ordering::AcqRel);
                self.shared.drained_event.notify(usize::MAX);
            }
            return SourcePoll::Exhausted;
        }
        SourcePoll::Idle
    }
}
