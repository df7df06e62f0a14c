//! Scale-out over Kafka (`[runtime] group`): the process's side of it.
//!
//! Processes running one pipeline with the same `group` share the input
//! partitions through that Kafka consumer group (cooperative-sticky
//! assignment); each publishes every epoch in **one Kafka transaction**
//! holding the output of all its `kafka` sinks and the offsets its
//! `kafka` source consumed, sent with the group's metadata
//! (`send_offsets_to_transaction`, KIP-447), so the group's committed
//! offsets always say exactly which input records' output is visible.
//! The protocol and its crash and rebalance argument are in
//! `docs/scale-out.md`.
//!
//! A [`GroupRun`] is one planned run's meeting point, shared by the
//! source instance (it hands in the offsets it logs at each barrier), its
//! consumer thread (the group's metadata after each rebalance; it waits
//! here for the commit of the epoch that holds a revoked partition's last
//! offset) and the sinks' commit steps (each hands in its epoch; the
//! last one of an epoch runs the transaction). Runs are told apart by a
//! random id made when the pipeline is planned ([`GroupPlan`]): a sink
//! commit recovered from an earlier run's log carries that run's id and
//! publishes nothing, since the group's offsets, not weir's log, say where
//! this run resumes.
//!
//! Milestone-1 limits, checked when the pipeline is loaded: one shard per
//! process (`shards = 1`), one `kafka` source, only `kafka` sinks and
//! stateless processors; see `docs/scale-out.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir_runtime::{CommitControl, OperatorError};

use crate::limits::{KAFKA_SCALE_OUT_TRANSACTION_TIMEOUT_MS, KAFKA_TRANSACTION_STEP_TIMEOUT_MS};
use crate::sinks::kafka::publish::{send_offsets, DeliveryContext};
use crate::sinks::kafka::staged::{self, Staged};

/// Next offsets: (topic, partition, offset of the next record).
pub type Offsets = Vec<(String, i32, i64)>;

/// How many times one epoch's transaction is tried (a rebalance that
/// moved the group's generation under it aborts it; the next try sends
/// the epoch again with the new generation).
const TRANSACTION_TRIES: u32 = 5;

/// The group and run a pipeline was planned for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// The consumer group (`[runtime] group`).
    pub group: String,
    /// This run's id: random, made when the pipeline is planned.
    pub run: u64,
}

impl GroupPlan {
    /// A plan of `group` with a fresh run id.
    pub fn new(group: &str) -> GroupPlan {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u32(std::process::id());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        hasher.write_u128(now.as_nanos());
        GroupPlan {
            group: group.to_owned(),
            run: hasher.finish(),
        }
    }

    /// The run's meeting point in this process.
    pub fn run(&self) -> Arc<GroupRun> {
        GroupRun::of(self)
    }
}

/// Checks `[runtime] group` and the shard count that goes with it.
pub fn check_group(group: &str, shards: Option<usize>) -> Result<(), String> {
    if group.trim().is_empty() {
        return Err("`group` must name a Kafka consumer group".into());
    }
    if let Some(shards) = shards.filter(|&shards| shards != 1) {
        return Err(format!(
            "`shards` must be 1 with `group` (scale-out runs one shard per process for now; \
             run more processes instead), not {shards}"
        ));
    }
    Ok(())
}

/// The error a component that cannot run scaled out gets.
pub fn not_scalable_message() -> &'static str {
    "cannot run with `[runtime] group` (scale-out over Kafka): scaled-out pipelines have one \
     `kafka` source, `kafka` sinks and stateless processors (parse, filter, map, route, \
     enrich) for now; see docs/scale-out.md"
}

/// One epoch being gathered from the sinks.
#[derive(Debug, Default)]
struct Gathering {
    epoch: u64,
    /// Sinks that handed the epoch in.
    sinks: BTreeSet<String>,
    /// Their staged bytes with records, in the order handed in.
    staged: Vec<Vec<u8>>,
}

/// The transaction side, used by one commit step at a time.
#[derive(Default)]
struct Transactions {
    producer: Option<Arc<BaseProducer<DeliveryContext>>>,
    gathering: Option<Gathering>,
    /// The offsets the last committed transaction held.
    last_offsets: Offsets,
}

/// A planned scale-out run's meeting point in this process; see the
/// module docs.
pub struct GroupRun {
    plan: GroupPlan,
    /// The `kafka` sinks of the plan, by name: an epoch is complete when
    /// each handed it in.
    sinks: Mutex<BTreeSet<String>>,
    /// Whether a source instance joined (only one may).
    source: AtomicBool,
    /// Offsets logged at each barrier, by epoch, until their commit.
    offsets: Mutex<BTreeMap<u64, Offsets>>,
    /// The group's metadata, as the consumer last saw it.
    metadata: Mutex<Option<Arc<ConsumerGroupMetadata>>>,
    /// Bumped with every new metadata; waited on by a retry.
    metadata_version: (Mutex<u64>, Condvar),
    transactions: Mutex<Transactions>,
    /// The last epoch whose transaction committed (or that needed none),
    /// and its signal.
    committed: (Mutex<u64>, Condvar),
    /// Why this run can commit no more, once it cannot.
    failed: Mutex<Option<String>>,
}

impl std::fmt::Debug for GroupRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupRun")
            .field("plan", &self.plan)
            .field("committed", &self.committed())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every run planned in this process, by group and run id.
type Runs = Mutex<HashMap<(String, u64), Arc<GroupRun>>>;

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

impl GroupRun {
    /// The meeting point of `plan`'s run, made on first use.
    pub fn of(plan: &GroupPlan) -> Arc<GroupRun> {
        lock(runs())
            .entry((plan.group.clone(), plan.run))
            .or_insert_with(|| {
                Arc::new(GroupRun {
                    plan: plan.clone(),
                    sinks: Mutex::default(),
                    source: AtomicBool::new(false),
                    offsets: Mutex::default(),
                    metadata: Mutex::default(),
                    metadata_version: (Mutex::new(0), Condvar::new()),
                    transactions: Mutex::default(),
                    committed: (Mutex::new(0), Condvar::new()),
                    failed: Mutex::default(),
                })
            })
            .clone()
    }

    /// The meeting point of `group`'s run `run`, if this process planned
    /// it.
    fn find(group: &str, run: u64) -> Option<Arc<GroupRun>> {
        lock(runs()).get(&(group.to_owned(), run)).cloned()
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.plan.group
    }

    /// Counts sink `name` in every epoch's transaction.
    pub fn add_sink(&self, name: &str) {
        lock(&self.sinks).insert(name.to_owned());
    }

    /// The sinks counted.
    pub fn sinks(&self) -> usize {
        lock(&self.sinks).len()
    }

    /// Joins the run's one source instance; an error if one already did.
    pub fn attach_source(&self) -> Result<(), String> {
        if self.source.swap(true, Ordering::AcqRel) {
            return Err(
                "a scaled-out pipeline reads through one `kafka` source (it may read \
                        several topics)"
                    .into(),
            );
        }
        if self.sinks() == 0 {
            return Err(
                "a scaled-out pipeline needs a `kafka` sink: its transactions carry \
                        the consumed offsets"
                    .into(),
            );
        }
        Ok(())
    }

    /// The offsets the source logged at `epoch`'s barrier.
    pub fn set_offsets(&self, epoch: u64, offsets: Offsets) {
        lock(&self.offsets).insert(epoch, offsets);
    }

    /// The group's metadata as the consumer sees it now (after a
    /// rebalance, or as one begins).
    pub fn set_metadata(&self, metadata: ConsumerGroupMetadata) {
        *lock(&self.metadata) = Some(Arc::new(metadata));
        let (version, changed) = &self.metadata_version;
        *lock(version) += 1;
        changed.notify_all();
    }

    /// Marks the run as unable to commit (a partition lost to the group,
    /// a revocation that could not wait for its commit): every later
    /// commit fails, and the process's run with it.
    pub fn fail(&self, why: String) {
        let mut failed = lock(&self.failed);
        if failed.is_none() {
            tracing::error!(group = self.group(), "kafka scale-out: {why}");
            *failed = Some(why);
        }
        drop(failed);
        self.committed.1.notify_all();
    }

    /// [`fail`](GroupRun::fail), once the transaction in flight (if any)
    /// has ended: when this returns, no transaction of this run will
    /// commit any more. For a consumer about to give partitions up
    /// without their last epoch committed.
    pub fn fence(&self, why: String) {
        let transactions = lock(&self.transactions);
        self.fail(why);
        drop(transactions);
    }

    /// Whether offsets logged at a barrier wait for their epoch's
    /// transaction.
    pub fn offsets_pending(&self) -> bool {
        !lock(&self.offsets).is_empty()
    }

    /// Why the run can commit no more, if it cannot.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    /// The last epoch committed to Kafka.
    pub fn committed(&self) -> u64 {
        *lock(&self.committed.0)
    }

    /// Waits until `epoch` is committed to Kafka; an error when the run
    /// failed, `stop` is set, or `timeout` passes first.
    pub fn wait_committed(
        &self,
        epoch: u64,
        stop: &AtomicBool,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let (committed, signal) = &self.committed;
        let mut done = lock(committed);
        loop {
            if *done >= epoch {
                return Ok(());
            }
            if let Some(why) = self.failure() {
                return Err(why);
            }
            if stop.load(Ordering::Acquire) {
                return Err("the source stopped".into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "epoch {epoch} was not committed within {} ms (last committed: {})",
                    timeout.as_millis(),
                    *done
                ));
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            done = signal
                .wait_timeout(done, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until every offset logged at a barrier was committed (the
    /// source ended: its last barrier is logged); an error when the run
    /// failed or `timeout` (or the run's abort, `aborted`) comes first.
    pub fn wait_drained(
        &self,
        timeout: Duration,
        aborted: impl Fn() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let (committed, signal) = &self.committed;
        let mut done = lock(committed);
        loop {
            if !self.offsets_pending() {
                return Ok(());
            }
            if let Some(why) = self.failure() {
                return Err(why);
            }
            if aborted() {
                return Err("the run was aborted".into());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "its last epoch was not committed within {} ms (last committed: {})",
                    timeout.as_millis(),
                    *done
                ));
            }
            done = signal
                .wait_timeout(done, Duration::from_millis(20))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn mark_committed(&self, epoch: u64) {
        let mut done = lock(&self.committed.0);
        *done = (*done).max(epoch);
        drop(done);
        self.committed.1.notify_all();
    }

    /// A sink's commit step for one staged epoch: gathers it, and when
    /// every sink handed the epoch in, publishes it with the offsets in one
    /// transaction.
    fn commit(
        &self,
        staged: &Staged<'_>,
        bytes: &[u8],
        control: &CommitControl,
    ) -> Result<(), String> {
        let epoch = staged.header.epoch;
        let mut transactions = lock(&self.transactions);
        // Checked under the lock: after `fence` no transaction begins.
        if let Some(why) = self.failure() {
            return Err(why);
        }
        let gathering = transactions.gathering.get_or_insert_with(|| Gathering {
            epoch,
            ..Gathering::default()
        });
        if gathering.epoch != epoch {
            let why = format!(
                "sink `{}` handed in epoch {epoch} while epoch {} was still being gathered",
                staged.header.sink, gathering.epoch
            );
            self.fail(why.clone());
            return Err(why);
        }
        gathering.sinks.insert(staged.header.sink.clone());
        if staged.header.records > 0 {
            gathering.staged.push(bytes.to_vec());
        }
        if gathering.sinks.len() < self.sinks() {
            return Ok(());
        }
        let gathering = transactions.gathering.take().unwrap_or_default();
        let offsets = {
            let mut logged = lock(&self.offsets);
            let offsets = logged.remove(&epoch);
            logged.retain(|&logged, _| logged > epoch);
            offsets
        };
        let Some(offsets) = offsets else {
            let why = format!("the source logged no offsets at epoch {epoch}'s barrier");
            self.fail(why.clone());
            return Err(why);
        };
        if gathering.staged.is_empty() && offsets == transactions.last_offsets {
            // Nothing read or written since the last transaction.
            drop(transactions);
            self.mark_committed(epoch);
            return Ok(());
        }
        let started = Instant::now();
        let result = self.publish(&mut transactions, staged, &gathering, &offsets, control);
        match result {
            Ok(tries) => {
                tracing::debug!(
                    group = self.group(),
                    epoch,
                    tries,
                    offsets = ?offsets,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "kafka scale-out: epoch committed"
                );
                transactions.last_offsets = offsets;
                drop(transactions);
                self.mark_committed(epoch);
                Ok(())
            }
            Err(why) => {
                let why = format!("epoch {epoch}: {why}");
                self.fail(why.clone());
                Err(why)
            }
        }
    }

    /// Runs the epoch's transaction, trying again (sending everything
    /// again) when a rebalance aborted it; returns the tries it took.
    fn publish(
        &self,
        transactions: &mut Transactions,
        staged: &Staged<'_>,
        gathering: &Gathering,
        offsets: &Offsets,
        control: &CommitControl,
    ) -> Result<u32, String> {
        let mut tries = 0;
        loop {
            tries += 1;
            let version = *lock(&self.metadata_version.0);
            let producer = match &transactions.producer {
                Some(producer) => producer.clone(),
                None => {
                    let producer = self.producer(staged, control)?;
                    transactions.producer = Some(producer.clone());
                    producer
                }
            };
            match self.attempt(&producer, gathering, offsets, control) {
                Ok(()) => return Ok(tries),
                Err(Attempt::Abort(why)) if tries < TRANSACTION_TRIES => {
                    tracing::info!(
                        group = self.group(),
                        epoch = gathering.epoch,
                        "kafka scale-out: the epoch's transaction was aborted ({why}); \
                         sending it again once the group's generation is known"
                    );
                    if let Err(error) = producer.abort_transaction(step_timeout()) {
                        return Err(format!("abort_transaction after {why}: {error}"));
                    }
                    self.wait_metadata_after(version, control);
                }
                Err(Attempt::Abort(why) | Attempt::Fatal(why)) => return Err(why),
            }
        }
    }

    /// Waits (at most a few seconds) for metadata newer than `version`.
    fn wait_metadata_after(&self, version: u64, control: &CommitControl) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (current, changed) = &self.metadata_version;
        let mut seen = lock(current);
        while *seen == version && Instant::now() < deadline && !control.is_cancelled() {
            seen = changed
                .wait_timeout(seen, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn producer(
        &self,
        staged: &Staged<'_>,
        control: &CommitControl,
    ) -> Result<Arc<BaseProducer<DeliveryContext>>, String> {
        let header = &staged.header;
        let id = format!("weir-{}-{:016x}", self.plan.group, self.plan.run);
        let defaults = [
            ("client.id", id.clone()),
            ("partitioner", "murmur2_random".to_owned()),
            ("linger.ms", "5".to_owned()),
        ];
        let mut config = crate::kafka::client_config(&header.brokers, &defaults, &header.options);
        config
            .set("enable.idempotence", "true")
            .set("transactional.id", &id)
            .set(
                "transaction.timeout.ms",
                KAFKA_SCALE_OUT_TRANSACTION_TIMEOUT_MS.to_string(),
            );
        let producer: BaseProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext::new(&header.sink))
            .map_err(|error| format!("cannot create the producer: {error}"))?;
        let deadline = Instant::now() + step_timeout();
        loop {
            match producer.init_transactions(Duration::from_millis(500)) {
                Ok(()) => break,
                Err(error) if Instant::now() < deadline && !control.is_cancelled() => {
                    tracing::debug!("kafka scale-out: init_transactions: {error}; again");
                }
                Err(error) => return Err(format!("init_transactions: {error}")),
            }
        }
        Ok(Arc::new(producer))
    }

    fn attempt(
        &self,
        producer: &Arc<BaseProducer<DeliveryContext>>,
        gathering: &Gathering,
        offsets: &Offsets,
        control: &CommitControl,
    ) -> Result<(), Attempt> {
        producer
            .begin_transaction()
            .map_err(Attempt::of("begin_transaction"))?;
        for bytes in &gathering.staged {
            let staged =
                staged::decode(bytes).map_err(|error| Attempt::Fatal(error.to_string()))?;
            for record in staged::records(staged.records) {
                let (key, value) = record.map_err(|error| Attempt::Fatal(error.to_string()))?;
                let mut next = BaseRecord::to(&staged.header.topic).payload(value);
                if let Some(key) = key {
                    next = next.key(key);
                }
                let full_since = Instant::now();
                loop {
                    match producer.send(next) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            if control.is_cancelled() || full_since.elapsed() >= step_timeout() {
                                return Err(Attempt::Fatal(
                                    "send: the producer's queue stayed full".into(),
                                ));
                            }
                            next = back;
                            producer.poll(Duration::from_millis(10));
                        }
                        Err((error, _)) => return Err(Attempt::Fatal(format!("send: {error}"))),
                    }
                }
            }
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|error| Attempt::Fatal(format!("offsets: {error}")))?;
        }
        if list.count() > 0 {
            let metadata = lock(&self.metadata)
                .clone()
                .ok_or_else(|| Attempt::Abort("no group metadata yet".into()))?;
            send_offsets(producer, list, metadata, control, step_timeout()).map_err(|why| {
                if why.contains("Transactional error") || why.contains("generation") {
                    Attempt::Abort(why)
                } else {
                    Attempt::Fatal(why)
                }
            })?;
        }
        weir_runtime::epoch::failpoint("kafka-before-commit", gathering.epoch);
        producer
            .commit_transaction(step_timeout())
            .map_err(Attempt::of("commit_transaction"))
    }
}

/// How an attempt failed.
enum Attempt {
    /// The transaction must be aborted; the epoch can be sent again.
    Abort(String),
    /// The run cannot go on.
    Fatal(String),
}

impl Attempt {
    fn of(what: &'static str) -> impl Fn(KafkaError) -> Attempt {
        move |error| {
            let abortable = matches!(&error, KafkaError::Transaction(inner)
                if inner.txn_requires_abort() && !inner.is_fatal());
            let why = format!("{what}: {error}");
            if abortable {
                Attempt::Abort(why)
            } else {
                Attempt::Fatal(why)
            }
        }
    }
}

fn step_timeout() -> Duration {
    Duration::from_millis(KAFKA_TRANSACTION_STEP_TIMEOUT_MS)
}

/// The commit step of a `kafka` sink in a scaled-out pipeline: see the
/// module docs. A staged epoch of another run (recovered from the log of
/// an earlier one) publishes nothing.
pub fn commit(
    staged: &Staged<'_>,
    bytes: &[u8],
    control: &CommitControl,
) -> Result<(), OperatorError> {
    let Some(group) = &staged.header.group else {
        return Err(OperatorError::invalid("not a scaled-out sink's epoch"));
    };
    let Some(run) = GroupRun::find(&group.name, group.run) else {
        tracing::info!(
            sink = staged.header.sink,
            epoch = staged.header.epoch,
            "kafka scale-out: an epoch staged by an earlier run is not published: this run \
             resumes from the group's committed offsets"
        );
        return Ok(());
    };
    run.commit(staged, bytes, control).map_err(|why| {
        OperatorError::external(format!(
            "kafka scale-out (group `{}`): {why}; this process stops, and the group moves its \
             partitions to the others",
            group.name
        ))
    })
}
