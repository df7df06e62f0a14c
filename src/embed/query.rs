//! Queryable state: reading an operator's current state from threads
//! outside the runtime, answered by the shard that owns the key.
//!
//! A [`Queryable`] processor runs like any other; the pipeline also starts,
//! on each shard, a small task that owns that shard's query queue. A query
//! from a service thread is routed by its key to the owning shard
//! ([`owner_of`]), queued there, and the task answers it from the
//! processor's state between two of the processor's batches (the task and
//! the processor share the shard's thread, so no lock guards the state).
//! The asking thread spins briefly, then parks, until the answer comes.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use crossbeam::queue::ArrayQueue;
use weir_runtime::{owner_of, Batch, Emitter, OperatorError, Processor};

use super::admission::Admission;

/// A processor whose state can be read while it runs.
///
/// `query` runs on the processor's shard, between two calls of its
/// `process`, so it sees the state after a whole batch. It should be quick
/// (a map lookup): the shard runs nothing else meanwhile.
///
/// ```
/// use weir::runtime::{Batch, Emitter, Processor};
///
/// /// Counts records per key.
/// #[derive(Default)]
/// struct Counts(std::collections::HashMap<u64, u64>);
///
/// impl Processor for Counts {
///     type Input = weir::Event<u32>;
///     type Output = ();
///     fn process(&mut self, _: usize, batch: &Batch<Self::Input>, _: &mut Emitter<()>) {
///         for event in batch.iter() {
///             *self.0.entry(event.key.to_native()).or_default() += 1;
///         }
///     }
/// }
///
/// impl weir::Queryable for Counts {
///     type Key = u64;
///     type Answer = u64;
///     fn query(&self, key: &u64) -> u64 {
///         self.0.get(key).copied().unwrap_or(0)
///     }
/// }
/// assert_eq!(weir::Queryable::query(&Counts::default(), &3), 0);
/// ```
pub trait Queryable: Processor {
    /// What a query names: a key, perhaps with parameters.
    type Key: Send + 'static;
    /// What a query returns.
    type Answer: Send + 'static;

    /// Answers `key` from the current state.
    fn query(&self, key: &Self::Key) -> Self::Answer;
}

/// Why a query got no answer.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
/// let mut pipeline = weir::Pipeline::new(runtime);
/// let input = pipeline.input("numbers", |n: &u64| *n);
/// let counts = pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
/// let service = pipeline.start()?;
/// let handle = service.handle();
/// service.shutdown()?;
/// let error = handle.query(&counts, 5).unwrap_err();
/// assert_eq!(error, weir::QueryError::Closed { node: "counts".into() });
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The owning shard's query queue is full: too many queries at once.
    Busy {
        /// The queryable node.
        node: String,
    },
    /// The pipeline was shut down, or its run ended, before answering.
    Closed {
        /// The queryable node.
        node: String,
    },
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Busy { node } => write!(
                f,
                "`{node}`: the owning shard's query queue is full; ask again later"
            ),
            QueryError::Closed { node } => write!(
                f,
                "`{node}`: the pipeline is shut down (or its run ended); no query is answered"
            ),
        }
    }
}

impl std::error::Error for QueryError {}

/// Queries waiting for one shard, at most.
pub(crate) const QUERY_QUEUE: usize = 4096;

/// How long an asking thread spins for its answer before it parks.
const SPIN: Duration = Duration::from_micros(50);

struct Request<K, A> {
    key: K,
    reply: oneshot::Sender<A>,
}

struct QueryInbox<K, A> {
    queue: ArrayQueue<Request<K, A>>,
    admission: Admission,
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl<K, A> QueryInbox<K, A> {
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

/// What a [`Query`]'s handles and the shards' query tasks share.
pub(crate) struct QueryShared<K, A> {
    pub(crate) name: Arc<str>,
    inboxes: Box<[QueryInbox<K, A>]>,
    route: Box<dyn Fn(&K) -> u64 + Send + Sync>,
}

impl<K: Send + 'static, A: Send + 'static> QueryShared<K, A> {
    pub(crate) fn new(
        name: &str,
        shards: usize,
        route: Box<dyn Fn(&K) -> u64 + Send + Sync>,
    ) -> QueryShared<K, A> {
        QueryShared {
            name: name.into(),
            inboxes: (0..shards)
                .map(|_| QueryInbox {
                    queue: ArrayQueue::new(QUERY_QUEUE),
                    admission: Admission::default(),
                    pending: AtomicBool::new(false),
                    waker: AtomicWaker::new(),
                })
                .collect(),
            route,
        }
    }

    /// Queues `key` at its owning shard; the answer comes on the returned
    /// receiver.
    fn send(&self, key: K) -> Result<oneshot::Receiver<A>, QueryError> {
        let inbox = &self.inboxes[owner_of((self.route)(&key), self.inboxes.len())];
        if !inbox.admission.enter() {
            return Err(self.closed());
        }
        let (reply, answer) = oneshot::channel();
        let queued = inbox.queue.push(Request { key, reply });
        inbox.admission.leave();
        if queued.is_err() {
            return Err(QueryError::Busy {
                node: self.name.to_string(),
            });
        }
        inbox.wake();
        Ok(answer)
    }

    fn closed(&self) -> QueryError {
        QueryError::Closed {
            node: self.name.to_string(),
        }
    }

    /// Asks, blocking the calling thread until the answer.
    pub(crate) fn query(&self, key: K) -> Result<A, QueryError> {
        let answer = self.send(key)?;
        let start = Instant::now();
        loop {
            match answer.try_recv() {
                Ok(answer) => return Ok(answer),
                Err(oneshot::TryRecvError::Disconnected) => return Err(self.closed()),
                Err(oneshot::TryRecvError::Empty) if start.elapsed() < SPIN => {
                    std::hint::spin_loop()
                }
                Err(oneshot::TryRecvError::Empty) => break,
            }
        }
        answer.recv().map_err(|_| self.closed())
    }

    /// Asks without blocking the thread: for async services.
    pub(crate) async fn query_async(&self, key: K) -> Result<A, QueryError> {
        let answer = self.send(key)?;
        answer.await.map_err(|_| self.closed())
    }

    /// Refuses every later query and drops those still queued (their askers
    /// get [`QueryError::Closed`]). Called once the run ended.
    pub(crate) fn close(&self) {
        for inbox in self.inboxes.iter() {
            inbox.admission.close_and_wait();
            while inbox.queue.pop().is_some() {}
            inbox.wake();
        }
    }

    /// Answers `shard`'s queries from `state` until `stopped` is set.
    /// Queries wait until `ready`: the processor's state was restored.
    pub(crate) async fn serve<P>(
        self: Arc<Self>,
        shard: usize,
        state: Rc<RefCell<P>>,
        ready: Rc<Cell<bool>>,
        stopped: Rc<Cell<bool>>,
    ) where
        P: Queryable<Key = K, Answer = A>,
    {
        let inbox = &self.inboxes[shard];
        loop {
            poll_fn(|cx| {
                inbox.waker.register(cx.waker());
                if stopped.get() {
                    return Poll::Ready(());
                }
                if ready.get() && inbox.pending.swap(false, Ordering::AcqRel) {
                    return Poll::Ready(());
                }
                Poll::Pending
            })
            .await;
            if stopped.get() {
                return;
            }
            while let Some(request) = inbox.queue.pop() {
                let answer = state.borrow().query(&request.key);
                // The asker may have given up; nothing to do then.
                let _ = request.reply.send(answer);
            }
        }
    }

    /// Wakes `shard`'s task (to see `stopped`).
    pub(crate) fn wake(&self, shard: usize) {
        self.inboxes[shard].waker.wake();
    }
}

/// A queryable node of a pipeline: ask it through a
/// [`Handle`](crate::Handle) with keys of type `K`, for answers of type
/// `A`. Made by [`Pipeline::queryable`](crate::Pipeline::queryable) or
/// [`Pipeline::rolling`](crate::Pipeline::rolling); cheap to clone,
/// `Send + Sync`.
///
/// ```
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
/// # let mut pipeline = weir::Pipeline::new(runtime);
/// let requests = pipeline.input("requests", |client: &u64| *client);
/// let per_client: weir::Query<weir::At, weir::RollingValue> =
///     pipeline.rolling("per_client", &requests, weir::Rolling::count(std::time::Duration::from_secs(10)));
/// assert_eq!(per_client.name(), "per_client");
/// ```
pub struct Query<K, A> {
    pub(crate) shared: Arc<QueryShared<K, A>>,
}

impl<K, A> Clone for Query<K, A> {
    fn clone(&self) -> Self {
        Query {
            shared: self.shared.clone(),
        }
    }
}

impl<K, A> std::fmt::Debug for Query<K, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl<K, A> Query<K, A> {
    /// The queryable node's name.
    ///
    /// ```
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("in", |k: &u64| *k);
    /// let query = pipeline.rolling("last_minute", &input, weir::Rolling::count(std::time::Duration::from_secs(60)));
    /// assert_eq!(query.name(), "last_minute");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

/// Runs a [`Queryable`] processor on its shard, sharing its state with the
/// shard's query task; stops that task when dropped.
pub(crate) struct Served<P: Queryable> {
    state: Rc<RefCell<P>>,
    ready: Rc<Cell<bool>>,
    stopped: Rc<Cell<bool>>,
    shared: Arc<QueryShared<P::Key, P::Answer>>,
    shard: usize,
    _marker: PhantomData<P>,
}

impl<P: Queryable> Served<P> {
    /// Wraps `processor` and starts the shard's query task (this runs on
    /// the shard, inside its executor).
    pub(crate) fn start(
        processor: P,
        shared: Arc<QueryShared<P::Key, P::Answer>>,
        shard: usize,
    ) -> Served<P> {
        let state = Rc::new(RefCell::new(processor));
        let ready = Rc::new(Cell::new(false));
        let stopped = Rc::new(Cell::new(false));
        glommio::spawn_local(shared.clone().serve(
            shard,
            state.clone(),
            ready.clone(),
            stopped.clone(),
        ))
        .detach();
        Served {
            state,
            ready,
            stopped,
            shared,
            shard,
            _marker: PhantomData,
        }
    }
}

impl<P: Queryable> Drop for Served<P> {
    fn drop(&mut self) {
        self.stopped.set(true);
        self.shared.wake(self.shard);
    }
}

impl<P: Queryable> Processor for Served<P> {
    type Input = P::Input;
    type Output = P::Output;

    fn process(&mut self, port: usize, batch: &Batch<P::Input>, out: &mut Emitter<P::Output>) {
        self.state.borrow_mut().process(port, batch, out);
    }

    fn on_watermark(&mut self, watermark: u64, out: &mut Emitter<P::Output>) {
        self.state.borrow_mut().on_watermark(watermark, out);
    }

    fn drain(&mut self, out: &mut Emitter<P::Output>) -> bool {
        self.state.borrow_mut().drain(out)
    }

    fn finish(&mut self, out: &mut Emitter<P::Output>) {
        self.state.borrow_mut().finish(out);
    }

    fn snapshot(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.state.borrow_mut().snapshot(epoch)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        self.state.borrow_mut().restore(state)
    }

    fn on_start(&mut self) {
        self.state.borrow_mut().on_start();
        // Queries queued meanwhile are answered from the restored state.
        self.ready.set(true);
        self.shared.wake(self.shard);
    }
}
