//! Embedding weir in a service: see `docs/embedding.md`.

mod admission;
pub(crate) mod input;
pub(crate) mod query;
pub(crate) mod rolling;
pub(crate) mod subscribe;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use event_listener::{Event as Notify, Listener};
use rkyv::rancor::{Infallible, ResultExt};
use weir_runtime::{
    ArchivedRecord, Error, GraphBuilder, Partition, Record, RunReport, Runtime, ShardContext,
};

use input::{
    Event, Input, InputOptions, InputRecord, InputShared, InputSource, KeyFn, PushError, Receipt,
};
use query::{Query, QueryError, QueryShared, Queryable, Served};
use rolling::{At, Rolling, RollingValue, RollingWindow};
use subscribe::{Subscriber, Subscription, SubscriptionShared, SubscriptionSink};

/// Something to close when the run ends.
trait Close: Send + Sync {
    fn close(&self);
}

impl<K: Send + 'static, A: Send + 'static> Close for QueryShared<K, A> {
    fn close(&self) {
        QueryShared::close(self);
    }
}

impl<T: Record + Send> Close for SubscriptionShared<T> {
    fn close(&self) {
        SubscriptionShared::close(self);
    }
}

/// An input, as shutdown sees it.
trait Drain: Send + Sync {
    fn close(&self);
    fn wait_drained(&self, timeout: Duration) -> bool;
    fn release(&self);
    fn name(&self) -> &str;
}

impl<T: Send> Drain for InputShared<T> {
    fn close(&self) {
        InputShared::close(self);
    }

    fn wait_drained(&self, timeout: Duration) -> bool {
        InputShared::wait_drained(self, timeout)
    }

    fn release(&self) {
        InputShared::release(self);
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// How long shutdown waits for inputs to hand on what was queued before it
/// stops the other sources anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A pipeline declared in code, to run inside the calling process.
///
/// Declare inputs, processors (through [`graph`](Pipeline::graph) or the
/// built-in [`rolling`](Pipeline::rolling) window), queryable state and
/// subscriptions, then [`start`](Pipeline::start) it: it runs on the
/// runtime's shards in the background, and the [`Handle`] of the returned
/// [`Service`] pushes records, asks queries and subscribes to output from
/// any thread.
///
/// Nothing global is installed: no tracing subscriber, metrics recorder or
/// signal handler. The host decides (weir logs through `tracing`, so the
/// host's subscriber, if any, sees it).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
///
/// let runtime = weir::runtime::Runtime::builder().shards(2).pin(false).build()?;
/// let mut pipeline = weir::Pipeline::new(runtime);
/// // Records are client ids, routed by themselves.
/// let requests = pipeline.input("requests", |client: &u64| *client);
/// let per_client = pipeline.rolling("per_client", &requests, weir::Rolling::count(Duration::from_secs(60)));
/// let service = pipeline.start()?;
/// let handle = service.handle();
/// for _ in 0..3 {
///     handle.push_blocking(&requests, 42)?;
/// }
/// // Ask until the three pushes are in (they are a few microseconds away).
/// while handle.query(&per_client, 42)?.count < 3 {}
/// let report = service.shutdown()?;
/// assert!(report.elapsed > Duration::ZERO);
/// # Ok(()) }
/// ```
pub struct Pipeline {
    runtime: Runtime,
    graph: GraphBuilder,
    closers: Vec<Arc<dyn Close>>,
    inputs: Vec<Arc<dyn Drain>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("shards", &self.runtime.shards())
            .field("graph", &self.graph)
            .finish()
    }
}

impl Pipeline {
    /// A pipeline that will run on `runtime`'s shards. For a
    /// latency-critical service build the runtime with
    /// [`RuntimeBuilder::low_latency`](weir_runtime::RuntimeBuilder::low_latency).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let runtime = weir::runtime::Runtime::builder()
    ///     .shards(1)
    ///     .pin(false)
    ///     .low_latency(std::time::Duration::from_micros(100))
    ///     .build()?;
    /// let pipeline = weir::Pipeline::new(runtime);
    /// # drop(pipeline);
    /// # Ok(()) }
    /// ```
    pub fn new(runtime: Runtime) -> Pipeline {
        Pipeline {
            runtime,
            graph: GraphBuilder::new(),
            closers: Vec::new(),
            inputs: Vec::new(),
        }
    }

    /// Shards the pipeline runs on.
    ///
    /// ```
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
    /// let pipeline = weir::Pipeline::new(runtime);
    /// assert_eq!(pipeline.shards(), 1);
    /// ```
    pub fn shards(&self) -> usize {
        self.runtime.shards()
    }

    /// The underlying graph, to add processors and sinks of your own
    /// between inputs, queryable nodes and subscriptions (connect them by
    /// node name).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use weir::runtime::{Batch, Emitter, Partition, Processor};
    ///
    /// /// Keeps even values.
    /// struct Even;
    /// impl Processor for Even {
    ///     type Input = weir::Event<u64>;
    ///     type Output = weir::Event<u64>;
    ///     fn process(&mut self, _: usize, batch: &Batch<Self::Input>, out: &mut Emitter<Self::Output>) {
    ///         for event in batch.iter() {
    ///             let value = event.value.to_native();
    ///             if value % 2 == 0 {
    ///                 out.push(&weir::Event {
    ///                     key: event.key.to_native(),
    ///                     time_ms: event.time_ms.to_native(),
    ///                     pushed_ns: event.pushed_ns.to_native(),
    ///                     value,
    ///                 });
    ///             }
    ///         }
    ///     }
    /// }
    ///
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// let mut pipeline = weir::Pipeline::new(runtime);
    /// let numbers = pipeline.input("numbers", |n: &u64| *n);
    /// pipeline.graph().processor("even", |_| Even);
    /// pipeline.graph().connect::<weir::Event<u64>>("numbers", "even", Partition::Forward);
    /// let evens = pipeline.subscription::<weir::Event<u64>>("evens", "even", Partition::Forward);
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// let subscriber = handle.subscribe(&evens, 16);
    /// handle.push_blocking(&numbers, 3)?;
    /// handle.push_blocking(&numbers, 4)?;
    /// let first = subscriber.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    /// assert_eq!(first.value, 4);
    /// service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn graph(&mut self) -> &mut GraphBuilder {
        &mut self.graph
    }

    /// Adds an input named `name` taking records of type `T`, each routed to
    /// the shard owning `key(&record)`; event time is the wall clock at the
    /// push. See [`input_with`](Pipeline::input_with) for options.
    ///
    /// ```
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// let logins = pipeline.input("logins", |ip: &u32| u64::from(*ip));
    /// # let _ = logins;
    /// ```
    pub fn input<T>(
        &mut self,
        name: &str,
        key: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Input<T>
    where
        T: InputRecord,
        Event<T>: Record + Send + Sync,
    {
        self.add_input(name, InputOptions::default(), Box::new(key), None)
    }

    /// [`input`](Pipeline::input) with options.
    ///
    /// ```
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// let options = weir::InputOptions::default().queue_capacity(1024);
    /// let logins = pipeline.input_with("logins", options, |ip: &u32| u64::from(*ip));
    /// # let _ = logins;
    /// ```
    pub fn input_with<T>(
        &mut self,
        name: &str,
        options: InputOptions,
        key: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Input<T>
    where
        T: InputRecord,
        Event<T>: Record + Send + Sync,
    {
        self.add_input(name, options, Box::new(key), None)
    }

    /// [`input_with`](Pipeline::input_with) whose event time comes from the
    /// record: `time(&record)` in milliseconds since the Unix epoch.
    ///
    /// ```
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// // (ip, time in ms)
    /// let logins = pipeline.input_timed(
    ///     "logins",
    ///     weir::InputOptions::default(),
    ///     |login: &(u32, u64)| u64::from(login.0),
    ///     |login: &(u32, u64)| login.1,
    /// );
    /// # let _ = logins;
    /// ```
    pub fn input_timed<T>(
        &mut self,
        name: &str,
        options: InputOptions,
        key: impl Fn(&T) -> u64 + Send + Sync + 'static,
        time: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Input<T>
    where
        T: InputRecord,
        Event<T>: Record + Send + Sync,
    {
        self.add_input(name, options, Box::new(key), Some(Box::new(time)))
    }

    fn add_input<T>(
        &mut self,
        name: &str,
        options: InputOptions,
        key: KeyFn<T>,
        time: Option<KeyFn<T>>,
    ) -> Input<T>
    where
        T: InputRecord,
        Event<T>: Record + Send + Sync,
    {
        let shared = Arc::new(InputShared::new(
            name,
            self.runtime.shards(),
            &options,
            key,
            time,
        ));
        let source = shared.clone();
        self.graph.source(name, move |context: &ShardContext| {
            InputSource::new(source.clone(), context)
        });
        self.inputs.push(shared.clone());
        Input { shared }
    }

    /// Adds a queryable processor named `name` reading node `from`.
    /// Records reach the instance owning `record_key(&record)`, and a query
    /// for `key` goes to the instance owning `query_key(&key)`: the two
    /// must agree for a query to see its key's records. `factory` makes the
    /// processor on each shard. The processor may have no output edge.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use weir::runtime::{Batch, Emitter, Processor};
    ///
    /// /// Remembers the largest value per key.
    /// #[derive(Default)]
    /// struct Max(std::collections::HashMap<u64, u64>);
    /// impl Processor for Max {
    ///     type Input = weir::Event<u64>;
    ///     type Output = ();
    ///     fn process(&mut self, _: usize, batch: &Batch<Self::Input>, _: &mut Emitter<()>) {
    ///         for event in batch.iter() {
    ///             let max = self.0.entry(event.key.to_native()).or_default();
    ///             *max = (*max).max(event.value.to_native());
    ///         }
    ///     }
    /// }
    /// impl weir::Queryable for Max {
    ///     type Key = u64;
    ///     type Answer = Option<u64>;
    ///     fn query(&self, key: &u64) -> Option<u64> {
    ///         self.0.get(key).copied()
    ///     }
    /// }
    ///
    /// # let runtime = weir::runtime::Runtime::builder().shards(2).pin(false).build()?;
    /// let mut pipeline = weir::Pipeline::new(runtime);
    /// // (sensor, reading): routed by sensor.
    /// let readings = pipeline.input("readings", |r: &(u64, u64)| r.0);
    /// let max = pipeline.queryable(
    ///     "max",
    ///     readings.name(),
    ///     |event: &weir::Event<(u64, u64)>| event.key,
    ///     |sensor: &u64| *sensor,
    ///     |_| MaxOfPairs::default(),
    /// );
    /// # #[derive(Default)] struct MaxOfPairs(Max);
    /// # impl Processor for MaxOfPairs {
    /// #     type Input = weir::Event<(u64, u64)>;
    /// #     type Output = ();
    /// #     fn process(&mut self, _: usize, batch: &Batch<Self::Input>, _: &mut Emitter<()>) {
    /// #         for event in batch.iter() {
    /// #             let max = self.0 .0.entry(event.key.to_native()).or_default();
    /// #             *max = (*max).max(event.value.1.to_native());
    /// #         }
    /// #     }
    /// # }
    /// # impl weir::Queryable for MaxOfPairs {
    /// #     type Key = u64;
    /// #     type Answer = Option<u64>;
    /// #     fn query(&self, key: &u64) -> Option<u64> { self.0.query(key) }
    /// # }
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// handle.push_blocking(&readings, (7, 30))?;
    /// handle.push_blocking(&readings, (7, 12))?;
    /// while handle.query(&max, 7u64)? != Some(30) {}
    /// service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn queryable<P, F>(
        &mut self,
        name: &str,
        from: &str,
        record_key: impl Fn(&P::Input) -> u64 + Send + Sync + 'static,
        query_key: impl Fn(&P::Key) -> u64 + Send + Sync + 'static,
        factory: F,
    ) -> Query<P::Key, P::Answer>
    where
        P: Queryable,
        P::Input: Send + Sync,
        F: Fn(&ShardContext) -> P + Send + Sync + 'static,
    {
        let shared = self.add_queryable(name, Box::new(query_key), factory);
        self.graph
            .connect::<P::Input>(from, name, Partition::hash(record_key));
        shared
    }

    fn add_queryable<P, F>(
        &mut self,
        name: &str,
        route: KeyFn<P::Key>,
        factory: F,
    ) -> Query<P::Key, P::Answer>
    where
        P: Queryable,
        F: Fn(&ShardContext) -> P + Send + Sync + 'static,
    {
        let shared = Arc::new(QueryShared::new(name, self.runtime.shards(), route));
        let served = shared.clone();
        self.graph
            .processor(name, move |context: &ShardContext| {
                Served::start(factory(context), served.clone(), context.shard)
            })
            .output_optional();
        self.closers.push(shared.clone());
        Query { shared }
    }

    /// Adds a rolling window named `name` over `input`: per key, the count
    /// of events in the last `spec.size()` of event time, answered by
    /// queries ([`At`]) and emitted as a [`RollingUpdate`](crate::RollingUpdate)
    /// per event (subscribe to node `name` to read them; nothing is emitted
    /// when nothing reads it). The window runs on the input's shards with
    /// no exchange in between: a record is counted on the shard its push
    /// went to.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// let mut pipeline = weir::Pipeline::new(runtime);
    /// // (ip, failed?) with the time of the push.
    /// let logins = pipeline.input("logins", |login: &(u32, bool)| u64::from(login.0));
    /// let failures = pipeline.rolling("failures", &logins, weir::Rolling::count(Duration::from_secs(60)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// handle.push_blocking(&logins, (0x0a00_0001, true))?;
    /// while handle.query(&failures, 0x0a00_0001)?.count == 0 {}
    /// service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn rolling<T>(
        &mut self,
        name: &str,
        input: &Input<T>,
        spec: Rolling,
    ) -> Query<At, RollingValue>
    where
        T: Record + Send,
        Event<T>: Record + Send + Sync,
    {
        self.add_rolling(name, input, spec, None)
    }

    /// [`rolling`](Pipeline::rolling) that also sums `value(&record)` per
    /// key ([`RollingValue::sum`]).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// let mut pipeline = weir::Pipeline::new(runtime);
    /// // (account, amount in cents)
    /// let payments = pipeline.input("payments", |p: &(u64, i64)| p.0);
    /// let spent = pipeline.rolling_sum(
    ///     "spent",
    ///     &payments,
    ///     weir::Rolling::count(Duration::from_secs(3600)),
    ///     |p: &weir::runtime::ArchivedRecord<(u64, i64)>| p.1.to_native(),
    /// );
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// handle.push_blocking(&payments, (1, 250))?;
    /// handle.push_blocking(&payments, (1, 100))?;
    /// while handle.query(&spent, 1)?.sum != 350 {}
    /// service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn rolling_sum<T>(
        &mut self,
        name: &str,
        input: &Input<T>,
        spec: Rolling,
        value: impl Fn(&ArchivedRecord<T>) -> i64 + Send + Sync + 'static,
    ) -> Query<At, RollingValue>
    where
        T: Record + Send,
        Event<T>: Record + Send + Sync,
    {
        self.add_rolling(name, input, spec, Some(Arc::new(value)))
    }

    fn add_rolling<T>(
        &mut self,
        name: &str,
        input: &Input<T>,
        spec: Rolling,
        value: Option<rolling::ValueFn<T>>,
    ) -> Query<At, RollingValue>
    where
        T: Record + Send,
        Event<T>: Record + Send + Sync,
    {
        let query =
            self.add_queryable(name, Box::new(|at: &At| at.key), move |_: &ShardContext| {
                RollingWindow::<T>::new(spec, value.clone())
            });
        self.graph
            .connect::<Event<T>>(input.name(), name, Partition::Forward);
        query
    }

    /// Adds a subscription named `name` reading node `from` (records of
    /// type `T`, partitioned by `partition`: `Partition::Forward` keeps each
    /// record on the shard that made it). Subscribe to it through the
    /// [`Handle`].
    ///
    /// ```
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build().unwrap();
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// let requests = pipeline.input("requests", |client: &u64| *client);
    /// let counts = pipeline.rolling("counts", &requests, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let updates = pipeline.subscription::<weir::RollingUpdate>("updates", counts.name(), weir::runtime::Partition::Forward);
    /// # let _ = updates;
    /// ```
    pub fn subscription<T>(
        &mut self,
        name: &str,
        from: &str,
        partition: Partition<T>,
    ) -> Subscription<T>
    where
        T: Record + Send + Sync,
    {
        let shared = Arc::new(SubscriptionShared::new(name));
        let sink = shared.clone();
        self.graph.sink(name, move |_: &ShardContext| {
            SubscriptionSink::new(sink.clone())
        });
        self.graph.connect::<T>(from, name, partition);
        self.closers.push(shared.clone());
        Subscription { shared }
    }

    /// Checks the graph and starts it in the background.
    ///
    /// # Errors
    /// A graph error (naming the node), or what the runtime could not
    /// start (io_uring missing, the locked-memory limit too low, ...).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// let mut pipeline = weir::Pipeline::new(runtime);
    /// pipeline.input("numbers", |n: &u64| *n);
    /// // An input nothing reads is a mistake the graph check reports.
    /// let error = pipeline.start().unwrap_err();
    /// assert!(error.to_string().contains("numbers"), "{error}");
    /// # Ok(()) }
    /// ```
    pub fn start(self) -> Result<Service, Error> {
        let graph = self.graph.build().map_err(Error::Graph)?;
        let running = self.runtime.start(graph).map_err(Error::Start)?;
        if running.already_complete() {
            return Err(Error::Start(weir_runtime::StartError::Recovery(
                "the data directory holds a run that was shut down and completed; an embedded \
                 pipeline resumes a run that crashed, not one that completed: start it on a \
                 fresh data directory"
                    .into(),
            )));
        }
        let control = Arc::new(Control {
            stop: running.handle(),
            inputs: self.inputs,
            closers: self.closers,
            shutting_down: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            finished_event: Notify::new(),
            failure: Mutex::new(None),
        });
        let waiter_control = control.clone();
        let runtime = self.runtime;
        let waiter = std::thread::Builder::new()
            .name("weir-embedded-wait".into())
            .spawn(move || {
                let result = running.wait();
                waiter_control.finish(result.as_ref().err().map(ToString::to_string));
                // The runtime (and its metrics endpoint) lives as long as
                // the run.
                drop(runtime);
                result
            })
            .map_err(|error| {
                Error::Start(weir_runtime::StartError::Recovery(format!(
                    "cannot start the thread that waits for the run: {error}"
                )))
            })?;
        Ok(Service {
            handle: Handle { control },
            waiter: Some(waiter),
        })
    }
}

/// What every [`Handle`] of a run shares.
struct Control {
    stop: weir_runtime::Handle,
    inputs: Vec<Arc<dyn Drain>>,
    closers: Vec<Arc<dyn Close>>,
    shutting_down: AtomicBool,
    finished: AtomicBool,
    finished_event: Notify,
    failure: Mutex<Option<String>>,
}

impl Control {
    /// The run ended: nothing more is taken or answered.
    fn finish(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
        for closer in &self.closers {
            closer.close();
        }
        // Closes each input (if shutdown did not) and drops what it queued.
        for input in &self.inputs {
            input.release();
        }
        self.finished.store(true, Ordering::Release);
        self.finished_event.notify(usize::MAX);
    }

    /// Starts the shutdown: a stop with a savepoint, or with `drain` the
    /// end of input (see [`Service::shutdown_and_drain`]).
    fn shutdown(self: &Arc<Self>, drain: bool) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        if !drain {
            // Whatever ends the run now, a data directory's next run
            // resumes it, with every operator's state as it is.
            self.stop.keep_resumable();
        }
        for input in &self.inputs {
            input.close();
        }
        // Inputs hand on what they hold, then the other sources stop. Off
        // the caller's thread: shutdown may be asked from anywhere.
        let control = self.clone();
        let stopper = move || {
            for input in &control.inputs {
                if !input.wait_drained(DRAIN_TIMEOUT) {
                    tracing::warn!(
                        input = input.name(),
                        "input still had records queued after the drain timeout"
                    );
                }
            }
            if drain {
                control.stop.shutdown_and_drain();
            } else {
                control.stop.shutdown();
            }
        };
        if std::thread::Builder::new()
            .name("weir-embedded-stop".into())
            .spawn(stopper)
            .is_err()
        {
            if drain {
                self.stop.shutdown_and_drain();
            } else {
                self.stop.shutdown();
            }
        }
    }
}

/// A pipeline running in the background, from [`Pipeline::start`]. Dropping
/// it shuts the pipeline down gracefully and waits for it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
/// # let mut pipeline = weir::Pipeline::new(runtime);
/// # let input = pipeline.input("numbers", |n: &u64| *n);
/// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
/// let service: weir::Service = pipeline.start()?;
/// let handle = service.handle();
/// handle.push_blocking(&input, 1)?;
/// let report = service.shutdown()?;
/// # let _ = report;
/// # Ok(()) }
/// ```
pub struct Service {
    handle: Handle,
    waiter: Option<JoinHandle<Result<RunReport, weir_runtime::RunError>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("handle", &self.handle)
            .finish()
    }
}

impl Service {
    /// A handle for pushing, querying and subscribing from any thread.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// std::thread::spawn(move || handle.push_blocking(&input, 1)).join().unwrap()?;
    /// # service.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Shuts down gracefully and waits: inputs take no more records, what
    /// they queued goes through the pipeline, sinks flush and, with a data
    /// directory, a final epoch commits that keeps every operator's state
    /// as it is (open windows stay open), so the next start goes on as if
    /// never stopped. Without a data directory every node finishes
    /// instead (windows fire), as [`shutdown_and_drain`](Service::shutdown_and_drain)
    /// does. Returns the run's report, or its failure.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// service.shutdown()?;
    /// let refused = handle.try_push(&input, 1).unwrap_err();
    /// assert!(matches!(refused, weir::PushError::Closed(1)));
    /// # Ok(()) }
    /// ```
    pub fn shutdown(mut self) -> Result<RunReport, Error> {
        self.handle.shutdown();
        self.join()
    }

    /// Shuts down as the end of input and waits, like Flink's
    /// `stop --drain`: inputs take no more records, what they queued goes
    /// through, then every operator finishes (every open window fires and
    /// its rows reach the subscribers and sinks). With a data directory the
    /// run is then complete: a later start on it runs nothing. Use
    /// [`shutdown`](Service::shutdown) to stop a service that starts again.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// service.handle().push_blocking(&input, 1)?;
    /// let report = service.shutdown_and_drain()?;
    /// assert!(!report.stopped);
    /// # Ok(()) }
    /// ```
    pub fn shutdown_and_drain(mut self) -> Result<RunReport, Error> {
        self.handle.control.shutdown(true);
        self.join()
    }

    /// Waits for the run to end by itself (every input shut down through a
    /// [`Handle`], or a failure).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = weir::runtime::Runtime::builder().shards(1).pin(false).build()?;
    /// # let mut pipeline = weir::Pipeline::new(runtime);
    /// # let input = pipeline.input("numbers", |n: &u64| *n);
    /// # pipeline.rolling("counts", &input, weir::Rolling::count(std::time::Duration::from_secs(1)));
    /// let service = pipeline.start()?;
    /// let handle = service.handle();
    /// std::thread::spawn(move || handle.shutdown());
    /// service.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn wait(mut self) -> Result<RunReport, Error> {
        self.join()
    }

    fn join(&mut self) -> Result<RunReport, Error> {
        let Some(waiter) = self.waiter.take() else {
            return Err(Error::Run(weir_runtime::RunError::Coordinator(
                "the run was already waited for".into(),
            )));
        };
        match waiter.join() {
            Ok(result) => result.map_err(Error::Run),
            Err(_) => Err(Error::Run(weir_runtime::RunError::Coordinator(
                "the thread waiting for the run panicked".into(),
            ))),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.waiter.is_some() {
            self.handle.shutdown();
            if let Err(error) = self.join() {
                tracing::error!(%error, "the embedded pipeline failed");
            }
        }
    }
}

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
    control: Arc<Control>,
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
