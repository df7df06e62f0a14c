//! Results back to the service: a sink node that hands every record it
//! reads to the subscribers of the moment, on the shard that produced it.
//!
//! Two kinds of subscriber:
//! - a callback ([`Handle::on_output`](crate::Handle::on_output)), called
//!   on the shard's thread with the archived record, in place (no copy);
//!   it must be quick and must not block: the shard waits for it;
//! - a channel ([`Handle::subscribe`](crate::Handle::subscribe)): owned
//!   records in a bounded queue read by any thread. A subscriber that
//!   falls behind by more than the queue holds misses records rather than
//!   stalling the pipeline; [`Subscriber::missed`] counts them.
//!
//! Delivery is immediate: a record reaches subscribers as soon as the sink
//! reads it, before its epoch commits. After a crash and recovery, output
//! of an epoch that had not committed is produced (and delivered) again,
//! as with Kafka's `read_uncommitted`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, TrySendError};
use weir_runtime::{ArchivedRecord, Batch, Record, Sink};

/// Turns an archived record into its owned form, for channel subscribers.
pub(crate) type Owned<T> = fn(&ArchivedRecord<T>) -> T;

type Callback<T> = Arc<dyn Fn(&ArchivedRecord<T>) + Send + Sync>;

enum Target<T: Record> {
    Callback(Callback<T>),
    Channel {
        sender: Sender<T>,
        missed: Arc<AtomicU64>,
        owned: Owned<T>,
    },
}

impl<T: Record> Clone for Target<T> {
    fn clone(&self) -> Self {
        match self {
            Target::Callback(callback) => Target::Callback(callback.clone()),
            Target::Channel {
                sender,
                missed,
                owned,
            } => Target::Channel {
                sender: sender.clone(),
                missed: missed.clone(),
                owned: *owned,
            },
        }
    }
}

/// The subscribers of one subscription node.
pub(crate) struct SubscriptionShared<T: Record> {
    pub(crate) name: Arc<str>,
    /// Bumped on every change, so sink instances refresh their copy of the
    /// list only then (no lock on the data path).
    generation: AtomicU64,
    subscribers: Mutex<Vec<(u64, Target<T>)>>,
    next_id: AtomicU64,
}

impl<T: Record> SubscriptionShared<T> {
    pub(crate) fn new(name: &str) -> SubscriptionShared<T> {
        SubscriptionShared {
            name: name.into(),
            generation: AtomicU64::new(0),
            subscribers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }

    fn add(&self, target: Target<T>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((id, target));
        self.generation.fetch_add(1, Ordering::Release);
        id
    }

    fn remove(&self, id: u64) {
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|(known, _)| *known != id);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn callback(&self, callback: Callback<T>) -> u64 {
        self.add(Target::Callback(callback))
    }

    pub(crate) fn channel(self: &Arc<Self>, capacity: usize, owned: Owned<T>) -> Subscriber<T> {
        let (sender, receiver) = crossbeam::channel::bounded(capacity.max(1));
        let missed = Arc::new(AtomicU64::new(0));
        let id = self.add(Target::Channel {
            sender,
            missed: missed.clone(),
            owned,
        });
        Subscriber {
            receiver,
            missed,
            id,
            shared: Arc::downgrade(self),
        }
    }

    /// Removes a callback added by [`callback`](Self::callback).
    pub(crate) fn unsubscribe(&self, id: u64) {
        self.remove(id);
    }

    /// Drops every subscriber: channel subscribers see the end once they
    /// read what was queued. Called once the run ended.
    pub(crate) fn close(&self) {
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A subscription node of a pipeline: subscribe to the records it reads
/// through a [`Handle`](crate::Handle). Made by
/// [`Pipeline::subscription`](crate::Pipeline::subscription); cheap to
/// clone, `Send + Sync`.
///
/// ```
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
/// # let mut pipeline = weir::Pipeline::new(runtime);
/// let input = pipeline.input("numbers", |n: &u64| *n);
/// let echo: weir::Subscription<weir::Event<u64>> =
///     pipeline.subscription("echo", input.name(), weir::runtime::Partition::Forward);
/// assert_eq!(echo.name(), "echo");
/// ```
pub struct Subscription<T: Record> {
    pub(crate) shared: Arc<SubscriptionShared<T>>,
}

impl<T: Record> Clone for Subscription<T> {
    fn clone(&self) -> Self {
        Subscription {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Record> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl<T: Record> Subscription<T> {
    /// The subscription node's name.
    ///
    /// ```
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// let out = pipeline.subscription::<weir::Event<u64>>("out", "numbers", weir::runtime::Partition::Forward);
    /// assert_eq!(out.name(), "out");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

/// A channel subscriber: owned records, read from any thread. Dropping it
/// unsubscribes.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
/// let mut pipeline = weir::Pipeline::new(runtime);
/// let input = pipeline.input("numbers", |n: &u64| *n);
/// let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
/// let service = pipeline.start()?;
/// let handle = service.handle();
/// let subscriber = handle.subscribe(&echo, 1024);
/// handle.push_blocking(&input, 5)?;
/// let event = subscriber.recv_timeout(std::time::Duration::from_secs(10)).expect("delivered");
/// assert_eq!(event.value, 5);
/// service.shutdown()?;
/// # Ok(()) }
/// ```
pub struct Subscriber<T: Record> {
    receiver: Receiver<T>,
    missed: Arc<AtomicU64>,
    id: u64,
    shared: Weak<SubscriptionShared<T>>,
}

impl<T: Record> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("queued", &self.receiver.len())
            .field("missed", &self.missed())
            .finish()
    }
}

impl<T: Record> Subscriber<T> {
    /// The next record, waiting for it; `None` once the run ended and
    /// everything queued was read.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
    /// # let service = pipeline.start()?;
    /// # let handle = service.handle();
    /// let subscriber = handle.subscribe(&echo, 16);
    /// handle.push_blocking(&input, 4)?;
    /// service.shutdown()?;
    /// // Everything queued, then the end.
    /// while let Some(event) = subscriber.recv() {
    ///     assert_eq!(event.value, 4);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn recv(&self) -> Option<T> {
        self.receiver.recv().ok()
    }

    /// The next record if one is queued.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
    /// # let service = pipeline.start()?;
    /// # let handle = service.handle();
    /// let subscriber = handle.subscribe(&echo, 16);
    /// handle.push_blocking(&input, 4)?;
    /// // Poll without waiting until the record is there.
    /// let event = loop {
    ///     if let Some(event) = subscriber.try_recv() {
    ///         break event;
    ///     }
    /// };
    /// assert_eq!(event.value, 4);
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn try_recv(&self) -> Option<T> {
        self.receiver.try_recv().ok()
    }

    /// The next record, waiting at most `timeout`; `None` on timeout or
    /// once the run ended and everything queued was read.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
    /// # let service = pipeline.start()?;
    /// # let handle = service.handle();
    /// let subscriber = handle.subscribe(&echo, 16);
    /// handle.push_blocking(&input, 4)?;
    /// let next = subscriber.recv_timeout(std::time::Duration::from_secs(60));
    /// assert_eq!(next.map(|event| event.value), Some(4));
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// Records this subscriber missed because its queue was full.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
    /// # let service = pipeline.start()?;
    /// # let handle = service.handle();
    /// let subscriber = handle.subscribe(&echo, 16);
    /// handle.push_blocking(&input, 4)?;
    /// assert_eq!(subscriber.recv().map(|event| event.value), Some(4));
    /// assert_eq!(subscriber.missed(), 0);
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl<T: Record> Drop for Subscriber<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.remove(self.id);
        }
    }
}

/// A subscription node's instance on one shard.
pub(crate) struct SubscriptionSink<T: Record> {
    shared: Arc<SubscriptionShared<T>>,
    generation: u64,
    targets: Vec<Target<T>>,
}

impl<T: Record> SubscriptionSink<T> {
    pub(crate) fn new(shared: Arc<SubscriptionShared<T>>) -> SubscriptionSink<T> {
        SubscriptionSink {
            shared,
            generation: u64::MAX,
            targets: Vec::new(),
        }
    }

    fn refresh(&mut self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.targets = self
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(_, target)| target.clone())
            .collect();
    }
}

impl<T: Record> Sink for SubscriptionSink<T> {
    type Input = T;

    fn write(&mut self, _port: usize, batch: &Batch<T>) {
        self.refresh();
        for target in &self.targets {
            match target {
                Target::Callback(callback) => {
                    for record in batch.iter() {
                        callback(record);
                    }
                }
                Target::Channel {
                    sender,
                    missed,
                    owned,
                } => {
                    for record in batch.iter() {
                        match sender.try_send(owned(record)) {
                            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                            Err(TrySendError::Full(_)) => {
                                missed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
    }
}
