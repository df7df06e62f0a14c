//! [`Handle`]: pushing records, asking queries and subscribing to output of
//! a running pipeline, from any thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use event_listener::Listener;
use rkyv::rancor::{Infallible, ResultExt};
use weir_runtime::{ArchivedRecord, Record};

use super::control::Control;
use super::input::{Input, PushError, Receipt};
use super::query::{Query, QueryError};
use super::subscribe::{Subscriber, Subscription};
#[cfg(doc)]
use super::Service;

/// Pushes records, asks queries and subscribes to output of a running
/// pipeline, from any thread: `Send + Sync`, cheap to clone. Threads of a
/// tokio or std service use it directly; they need not be part of the
/// runtime.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = weir::runtime::Runtime::builder().shards(2).pin(false).build()?;
/// let mut pipeline = weir::Pipeline::new(runtime);
/// let input = pipeline.input("numbers", |n: &u64| *n);
/// let counts = pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(60)));
/// let service = pipeline.start()?;
/// let threads: Vec<_> = (0..4)
///     .map(|_| {
///         let (handle, input) = (service.handle(), input.clone());
///         std::thread::spawn(move || handle.push_blocking(&input, 9))
///     })
///     .collect();
/// for thread in threads {
///     thread.join().unwrap()?;
/// }
/// let handle = service.handle();
/// while handle.query(&counts, 9)?.count < 4 {}
/// service.shutdown()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(super) control: Arc<Control>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field(
                "shutting_down",
                &self.control.shutting_down.load(Ordering::Relaxed),
            )
            .field("finished", &self.control.finished.load(Ordering::Relaxed))
            .finish()
    }
}

impl Handle {
    /// Queues `record` at the shard owning its key, without waiting.
    ///
    /// # Errors
    /// [`PushError::Full`] with the record when that shard's queue is full
    /// (backpressure), [`PushError::Closed`] with it after shutdown.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// match handle.try_push(&input, 7) {
    ///     Ok(()) => {}
    ///     Err(weir::PushError::Full(record)) => { /* shed load, or retry `record` later */ let _ = record; }
    ///     Err(weir::PushError::Closed(_)) => return Ok(()),
    /// }
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn try_push<T>(&self, input: &Input<T>, record: T) -> Result<(), PushError<T>> {
        input.shared.try_push(record)
    }

    /// Queues `record`, waiting (asynchronously) while the owning shard's
    /// queue is full. For async services; a std thread uses
    /// [`push_blocking`](Handle::push_blocking).
    ///
    /// # Errors
    /// [`PushError::Closed`] with the record after shutdown.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// futures_lite::future::block_on(handle.push(&input, 7))?;
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub async fn push<T>(&self, input: &Input<T>, record: T) -> Result<(), PushError<T>> {
        input.shared.push(record).await
    }

    /// Queues `record`, blocking the calling thread while the owning
    /// shard's queue is full.
    ///
    /// # Errors
    /// [`PushError::Closed`] with the record after shutdown.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// handle.push_blocking(&input, 7)?;
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn push_blocking<T>(&self, input: &Input<T>, record: T) -> Result<(), PushError<T>> {
        input.shared.push_blocking(record)
    }

    /// [`try_push`](Handle::try_push), and a [`Receipt`] that completes
    /// once the record is durable in its shard's WAL (at once, when the
    /// shard takes it, without a data directory). Use it where a caller
    /// must not be told "done" before the record would survive a crash: an
    /// audit trail, a payment.
    ///
    /// Every pushed record is logged when the runtime has a data
    /// directory; the receipt only lets the caller wait for it. Waiting
    /// asks the WAL to write at once rather than at its next group commit.
    ///
    /// # Errors
    /// Like [`try_push`](Handle::try_push): [`PushError::Full`] or
    /// [`PushError::Closed`] with the record, which was not queued.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).data_dir(dir.path()).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// match handle.try_push_durable(&input, 7) {
    ///     Ok(receipt) => receipt.wait()?, // durable now
    ///     Err(weir::PushError::Full(record)) => { /* not taken: retry later */ let _ = record; }
    ///     Err(weir::PushError::Closed(_)) => return Ok(()),
    /// }
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn try_push_durable<T>(
        &self,
        input: &Input<T>,
        record: T,
    ) -> Result<Receipt, PushError<T>> {
        input.shared.try_push_durable(record)
    }

    /// [`push`](Handle::push), and a [`Receipt`] that completes once the
    /// record is durable; see [`try_push_durable`](Handle::try_push_durable).
    ///
    /// # Errors
    /// [`PushError::Closed`] with the record after shutdown.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).data_dir(dir.path()).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// futures_lite::future::block_on(async {
    ///     let receipt = handle.push_durable(&input, 7).await?;
    ///     receipt.await?;
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// })?;
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub async fn push_durable<T>(
        &self,
        input: &Input<T>,
        record: T,
    ) -> Result<Receipt, PushError<T>> {
        input.shared.push_durable(record).await
    }

    /// [`push_blocking`](Handle::push_blocking), and a [`Receipt`] that
    /// completes once the record is durable; see
    /// [`try_push_durable`](Handle::try_push_durable).
    ///
    /// # Errors
    /// [`PushError::Closed`] with the record after shutdown.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).data_dir(dir.path()).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// // Push several, then wait for all: their syncs overlap.
    /// let receipts: Vec<weir::Receipt> = (0..10)
    ///     .map(|n| handle.push_durable_blocking(&input, n))
    ///     .collect::<Result<_, _>>()?;
    /// for receipt in receipts {
    ///     receipt.wait()?;
    /// }
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn push_durable_blocking<T>(
        &self,
        input: &Input<T>,
        record: T,
    ) -> Result<Receipt, PushError<T>> {
        input.shared.push_durable_blocking(record)
    }

    /// Queues every record of `records` in order, waiting (asynchronously)
    /// for room as needed.
    ///
    /// # Errors
    /// [`PushError::Closed`] with the records not yet queued, after
    /// shutdown.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// futures_lite::future::block_on(handle.push_batch(&input, vec![1, 2, 3]))?;
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub async fn push_batch<T>(
        &self,
        input: &Input<T>,
        records: Vec<T>,
    ) -> Result<(), PushError<Vec<T>>> {
        let mut records = records.into_iter();
        while let Some(record) = records.next() {
            if let Err(error) = input.shared.push(record).await {
                return Err(with_rest(error, records));
            }
        }
        Ok(())
    }

    /// Queues records of `records` in order until one does not fit.
    ///
    /// # Errors
    /// [`PushError::Full`] (or [`PushError::Closed`]) with the records not
    /// queued, in order, starting with the one refused.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// if let Err(weir::PushError::Full(rest)) = handle.try_push_batch(&input, vec![1, 2, 3]) {
    ///     println!("{} records to push again", rest.len());
    /// }
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn try_push_batch<T>(
        &self,
        input: &Input<T>,
        records: Vec<T>,
    ) -> Result<(), PushError<Vec<T>>> {
        let mut records = records.into_iter();
        while let Some(record) = records.next() {
            if let Err(error) = input.shared.try_push(record) {
                return Err(with_rest(error, records));
            }
        }
        Ok(())
    }

    /// Asks `query` about `key`, blocking the calling thread until the
    /// owning shard answers (it spins for up to 50 µs, then parks).
    ///
    /// # Errors
    /// [`QueryError::Busy`] when the shard has too many queries queued,
    /// [`QueryError::Closed`] once the run ended.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// let input = pipeline.input("numbers", |n: &u64| *n);
    /// let counts = pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// assert_eq!(handle.query(&counts, 5)?.count, 0);
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn query<K, A>(&self, query: &Query<K, A>, key: impl Into<K>) -> Result<A, QueryError>
    where
        K: Send + 'static,
        A: Send + 'static,
    {
        query.shared.query(key.into())
    }

    /// [`query`](Handle::query) without blocking the thread: for async
    /// services.
    ///
    /// # Errors
    /// As [`query`](Handle::query).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// let input = pipeline.input("numbers", |n: &u64| *n);
    /// let counts = pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// let value = futures_lite::future::block_on(handle.query_async(&counts, 5))?;
    /// assert_eq!(value.count, 0);
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub async fn query_async<K, A>(
        &self,
        query: &Query<K, A>,
        key: impl Into<K>,
    ) -> Result<A, QueryError>
    where
        K: Send + 'static,
        A: Send + 'static,
    {
        query.shared.query_async(key.into()).await
    }

    /// Subscribes a channel to `subscription`: owned records, at most
    /// `capacity` queued (beyond that the subscriber misses records rather
    /// than stalling the pipeline; see [`Subscriber::missed`]).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// let input = pipeline.input("numbers", |n: &u64| *n);
    /// let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// let subscriber = handle.subscribe(&echo, 64);
    /// handle.push_blocking(&input, 3)?;
    /// assert_eq!(subscriber.recv().map(|event| event.value), Some(3));
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe<T>(&self, subscription: &Subscription<T>, capacity: usize) -> Subscriber<T>
    where
        T: Record,
        ArchivedRecord<T>: rkyv::Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, Infallible>>,
    {
        let subscriber = subscription.shared.channel(capacity, owned::<T>);
        if self.control.finished.load(Ordering::Acquire) {
            subscription.shared.close();
        }
        subscriber
    }

    /// Calls `callback` with every record `subscription` reads, on the
    /// shard that read it, archived (no copy). It must be quick and must
    /// not block. Returns an id for [`remove_callback`](Handle::remove_callback).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// let input = pipeline.input("numbers", |n: &u64| *n);
    /// let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// let total = Arc::new(AtomicU64::new(0));
    /// let seen = total.clone();
    /// handle.on_output(&echo, move |event| {
    ///     seen.fetch_add(event.value.to_native(), Ordering::Relaxed);
    /// });
    /// handle.push_blocking(&input, 3)?;
    /// service.shutdown()?;
    /// assert_eq!(total.load(Ordering::Relaxed), 3);
    /// # Ok(()) }
    /// ```
    pub fn on_output<T>(
        &self,
        subscription: &Subscription<T>,
        callback: impl Fn(&ArchivedRecord<T>) + Send + Sync + 'static,
    ) -> CallbackId
    where
        T: Record,
    {
        CallbackId(subscription.shared.callback(Arc::new(callback)))
    }

    /// Stops calling a callback added by [`on_output`](Handle::on_output)
    /// (a shard already inside it finishes the current batch).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// let id = handle.on_output(&echo, |_| {});
    /// handle.remove_callback(&echo, id);
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn remove_callback<T: Record>(&self, subscription: &Subscription<T>, id: CallbackId) {
        subscription.shared.unsubscribe(id.0);
    }

    /// Starts a graceful shutdown and returns at once: inputs refuse new
    /// records ([`PushError::Closed`]), what they queued goes through, and
    /// the run ends as [`Service::shutdown`] describes. Idempotent.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// # let service = pipeline.start()?;
    /// let handle = service.handle();
    /// handle.shutdown();
    /// assert!(handle.try_push(&input, 1).is_err());
    /// service.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown(&self) {
        self.control.shutdown(false);
    }

    /// Whether the run ended (shut down, or failed).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// assert!(!handle.is_finished());
    /// service.shutdown()?;
    /// assert!(handle.is_finished());
    /// # Ok(()) }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.control.finished.load(Ordering::Acquire)
    }

    /// Blocks until the run ended, at most `timeout`; returns whether it
    /// ended, and why if it failed.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// handle.shutdown();
    /// let ended = handle.wait_finished(std::time::Duration::from_secs(30));
    /// assert_eq!(ended, Some(None));
    /// # Ok(()) }
    /// ```
    pub fn wait_finished(&self, timeout: Duration) -> Option<Option<String>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.is_finished() {
                return Some(
                    self.control
                        .failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                );
            }
            let listener = self.control.finished_event.listen();
            if self.is_finished() {
                continue;
            }
            listener.wait_deadline(deadline)?;
        }
    }
}

/// `error` of one record of a batch, carrying that record and the ones
/// after it, in order.
fn with_rest<T>(error: PushError<T>, rest: std::vec::IntoIter<T>) -> PushError<Vec<T>> {
    let full = matches!(error, PushError::Full(_));
    let mut records = vec![error.into_inner()];
    records.extend(rest);
    if full {
        PushError::Full(records)
    } else {
        PushError::Closed(records)
    }
}

/// Names a callback added by [`Handle::on_output`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
/// # let mut pipeline = weir::Pipeline::new(runtime);
/// # pipeline.input("numbers", |n: &u64| *n);
/// let echo = pipeline.subscription::<weir::Event<u64>>("echo", "numbers", weir::runtime::Partition::Forward);
/// let service = pipeline.start()?;
/// let handle = service.handle();
/// let first: weir::CallbackId = handle.on_output(&echo, |_| {});
/// let second = handle.on_output(&echo, |_| {});
/// assert_ne!(first, second);
/// # service.shutdown()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackId(u64);

/// An archived record's owned copy. `Infallible`: nothing in deserializing a
/// record this process archived can fail.
fn owned<T>(archived: &ArchivedRecord<T>) -> T
where
    T: Record,
    ArchivedRecord<T>: rkyv::Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, Infallible>>,
{
    rkyv::deserialize::<T, Infallible>(archived).always_ok()
}
