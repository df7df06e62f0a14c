//! [`Pipeline`]: declaring inputs, queryable state, rolling windows and
//! subscriptions in code, and starting them into a [`Service`].

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use event_listener::Event as Notify;
use weir_runtime::{ArchivedRecord, Error, GraphBuilder, Partition, Record, Runtime, ShardContext};

use super::control::{Close, Control, Drain};
use super::handle::Handle;
use super::input::{Event, Input, InputOptions, InputRecord, InputShared, InputSource, KeyFn};
use super::query::{Query, QueryShared, Queryable, Served};
use super::rolling::{self, At, Rolling, RollingValue, RollingWindow};
use super::service::Service;
use super::subscribe::{Subscription, SubscriptionShared, SubscriptionSink};

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
