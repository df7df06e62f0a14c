//! The consumer thread of a scaled-out `kafka` source (`[runtime] group`):
//! a member of the consumer group, which Kafka gives partitions to and
//! takes them from (cooperative-sticky assignment).
//!
//! It hands records to the shard as the static reader does ([`reader`]'s
//! [`Chunk`]s, the same backpressure), and tells it of every partition
//! added ([`Event::Added`]) before any of its records. A partition is
//! given up in three steps, inside librdkafka's rebalance callback (on
//! this thread, which holds the group's rebalance until it returns):
//! 1. the shard is asked to stop emitting it ([`Revocation`]): it drops
//!    its records from then on and answers with its current epoch `e`, at
//!    whose barrier it logs the partition's offset one last time;
//! 2. the thread waits until epoch `e`'s transaction committed
//!    ([`GroupRun::wait_committed`]): the group's offset for the partition
//!    is then after every record emitted from it, and the records' output
//!    is visible;
//! 3. the callback returns, and librdkafka gives the partition up.
//!
//! The new owner reads the group's offset with `isolation.level =
//! read_committed`, which waits for pending transactional offsets, and
//! goes on exactly where this process stopped. In a run with stateful
//! operators it first restores the partition's task from their changelog
//! topics ([`restore`]), inside the same callback; a revocation tells
//! them at which epoch their task was given up. Partitions lost without a
//! revocation (this member was thrown out of the group) and a revocation
//! that cannot wait for its commit fence the run ([`GroupRun::fence`]):
//! nothing more commits, and the run fails. See `docs/scale-out.md`.
//!
//! A process with several shards is still one member: its source's
//! instances share this thread ([`join`]), which hands partition `p` of
//! every topic to instance [`task_instance`]`(p)` over that instance's own
//! channel (with partition numbers of its own) and asks each instance
//! holding a revoked partition to stop emitting it; the latest of their
//! answers is the epoch to wait for.
//!
//! [`reader`]: super::reader

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam::channel::{Sender, TrySendError};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use weir_runtime::metrics::{Registry, ShardGauge};
use weir_runtime::CommitWatch;

use super::reader::{chunk_wait, Chunk, Event, LogContext, Reader, StopOnDrop};
use super::restore;
use crate::limits::{
    KAFKA_CHANNEL_CHUNKS, KAFKA_FINAL_COMMIT_WAIT_MS, KAFKA_GROUP_OFFSETS_WAIT_MS,
    KAFKA_GROUP_STATISTICS_MS, KAFKA_REVOKE_COMMIT_WAIT_MS,
};
use crate::scale_out::{task_instance, GroupRun};

/// A request to stop emitting partitions, and the shard's answer.
#[derive(Debug, Default)]
pub struct Revocation {
    /// Whether a request waits for the shard (checked on every poll).
    pending: AtomicBool,
    state: Mutex<RevocationState>,
    answered: Condvar,
}

#[derive(Debug, Default)]
struct RevocationState {
    /// The partitions, by their numbers
    /// ([`Entry::partition`](super::reader::Entry::partition)).
    request: Option<Vec<u32>>,
    /// The epoch the shard was in when it stopped emitting them.
    answer: Option<u64>,
}

impl Revocation {
    /// Whether the shard has a request to answer.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The shard's side: takes the request (partition numbers, some
    /// perhaps not yet added on the shard's side), if one waits.
    pub fn take(&self) -> Option<Vec<u32>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.request.take()
    }

    /// The shard's side: it emits none of the request's partitions any
    /// more; `epoch` is the one its records so far belong to.
    pub fn answer(&self, epoch: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.answer = Some(epoch);
        self.pending.store(false, Ordering::Release);
        self.answered.notify_all();
    }

    /// The thread's side: asks the shard to stop emitting `partitions`
    /// and waits for its answer; `None` at a stop.
    fn ask(&self, partitions: Vec<u32>, stop: &AtomicBool) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.request = Some(partitions);
        state.answer = None;
        self.pending.store(true, Ordering::Release);
        loop {
            if let Some(epoch) = state.answer.take() {
                return Some(epoch);
            }
            if stop.load(Ordering::Acquire) {
                self.pending.store(false, Ordering::Release);
                state.request = None;
                return None;
            }
            state = self
                .answered
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// What the thread needs.
#[derive(Debug)]
pub struct GroupSetup {
    /// The librdkafka configuration (brokers, group, options).
    pub config: rdkafka::ClientConfig,
    /// Topic names; a name starting with `^` is a regular expression.
    pub topics: Vec<String>,
    /// Whether to copy record headers.
    pub headers: bool,
    /// The component's name, for log lines.
    pub component: Arc<str>,
    /// The scale-out run.
    pub run: Arc<GroupRun>,
    /// Requests to each shard instance to stop emitting partitions.
    pub revocations: Vec<Arc<Revocation>>,
    /// The run's committed epoch, to know when the run is over.
    pub watch: CommitWatch,
    /// Where a partition the group has no offset for starts
    /// (`Offset::Beginning` or `Offset::End`).
    pub start: Offset,
    /// Where the per-partition gauges go.
    pub metrics: TaskMetrics,
}

/// The gauges of each partition (task) of a scaled-out source, set by the
/// consumer thread on its shard's cells (the shard never sets them):
/// - `weir_kafka_source_partition_assigned`: 1 while this process holds
///   the partition, 0 after it gave it up;
/// - `weir_kafka_source_partition_lag`: records in the partition after
///   this member's read position, up to its last stable offset (what a
///   `read_committed` reader can read), from librdkafka's statistics
///   (every [`KAFKA_GROUP_STATISTICS_MS`] unless the source's `options`
///   set `statistics.interval.ms`); 0 after the partition was given up.
///
/// Labelled `component`, `topic` and `partition`, on the cells of the
/// shard that reads the partition (a per-shard gauge's `shard` label; the
/// other shards' series of it stay 0). The read position is
/// the consumer's (records fetched and handed to the shard's channel), as
/// Kafka's own `records-lag` is.
#[derive(Clone)]
pub struct TaskMetrics {
    /// The run's registry.
    pub registry: Registry,
    /// The source's shard instances: a partition's gauges use the cells
    /// of the shard that reads it ([`task_instance`]).
    pub instances: usize,
}

impl std::fmt::Debug for TaskMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMetrics")
            .field("instances", &self.instances)
            .finish_non_exhaustive()
    }
}

struct TaskGauges {
    assigned: ShardGauge,
    lag: Option<ShardGauge>,
    /// Where this member started reading the partition (its resolved
    /// offset), until the statistics show a read position.
    start: Option<i64>,
    held: bool,
}

impl TaskMetrics {
    fn gauge(
        &self,
        name: &str,
        help: &str,
        component: &str,
        topic: &str,
        partition: i32,
    ) -> ShardGauge {
        let shard = task_instance(partition, self.instances);
        let partition = partition.to_string();
        let labels = [
            ("component", component),
            ("topic", topic),
            ("partition", partition.as_str()),
        ];
        self.registry.gauge(name, help, &labels).for_shard(shard)
    }

    fn assigned(&self, component: &str, topic: &str, partition: i32) -> ShardGauge {
        self.gauge(
            "weir_kafka_source_partition_assigned",
            "1 while this process reads the partition (a task of a scaled-out source), 0 \
             after it gave it up.",
            component,
            topic,
            partition,
        )
    }

    /// Records left to read of a task's changelog partition while its
    /// state is restored (0 once restored).
    pub(super) fn restore_remaining(
        &self,
        operator: &str,
        topic: &str,
        partition: i32,
    ) -> ShardGauge {
        self.gauge(
            "weir_kafka_state_restore_remaining",
            "Records of the task's changelog partition left to read while its state is \
             restored (a task given to this process); 0 once restored.",
            operator,
            topic,
            partition,
        )
    }

    /// Registered at the partition's first statistics: before them its
    /// lag is not known, and no series shows it.
    fn lag(&self, component: &str, topic: &str, partition: i32) -> ShardGauge {
        self.gauge(
            "weir_kafka_source_partition_lag",
            "Records of the partition after this process's read position, up to the last \
             stable offset (librdkafka's statistics); 0 once given up.",
            component,
            topic,
            partition,
        )
    }
}

/// Partition numbers
/// ([`Entry::partition`](super::reader::Entry::partition)), each instance's
/// own: one per assignment of a partition (one given up and given back
/// gets a new one).
#[derive(Debug, Default)]
struct Indexes {
    /// The next number of each instance.
    next: Vec<u32>,
    /// Each held partition's instance and number.
    current: HashMap<(String, i32), (usize, u32)>,
}

/// The member's context: logging, and the rebalance steps.
struct GroupContext {
    log: LogContext,
    run: Arc<GroupRun>,
    revocations: Vec<Arc<Revocation>>,
    /// Each instance's channel.
    events: Vec<Sender<Event>>,
    stop: Arc<AtomicBool>,
    indexes: Mutex<Indexes>,
    /// Set by every rebalance, so a paused reader pauses the new
    /// assignment too.
    rebalanced: AtomicBool,
    /// The run's commits, to know when it was aborted.
    watch: CommitWatch,
    /// Where a partition the group has no offset for starts.
    start: Offset,
    metrics: TaskMetrics,
    tasks: Mutex<HashMap<(String, i32), TaskGauges>>,
    /// Assignments that gave this member partitions, so far (for the
    /// `kafka-assigned` fail-point).
    assignments: AtomicU64,
    /// The source's client configuration (brokers, options): the restore
    /// consumer's.
    client: rdkafka::ClientConfig,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    /// Sets each held partition's lag gauge.
    fn stats(&self, statistics: Statistics) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, topic) in &statistics.topics {
            for (number, partition) in &topic.partitions {
                let Some(task) = tasks.get_mut(&(name.clone(), *number)) else {
                    continue;
                };
                if !task.held || partition.ls_offset < 0 {
                    continue;
                }
                // The end of what was read: past the last record handed
                // on, or where the partition's end was seen (after
                // transaction markers, which hand on no record).
                let read = partition
                    .app_offset
                    .max(partition.eof_offset)
                    .max(task.start.unwrap_or(partition.lo_offset));
                if read < 0 {
                    continue;
                }
                let lag = task
                    .lag
                    .get_or_insert_with(|| self.metrics.lag(&self.log.component, name, *number));
                lag.set((partition.ls_offset - read).max(0));
            }
        }
    }
}

fn names(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|element| (element.topic().to_owned(), element.partition()))
        .collect()
}

fn shown(partitions: &[(String, i32)]) -> String {
    let mut shown: Vec<String> = partitions
        .iter()
        .map(|(topic, partition)| format!("{topic}/{partition}"))
        .collect();
    shown.sort();
    shown.join(", ")
}

impl GroupContext {
    fn refresh_metadata(&self, consumer: &BaseConsumer<Self>) {
        if let Some(metadata) = consumer.group_metadata() {
            self.run.set_metadata(metadata);
        }
    }

    /// Tells every instance the source cannot go on.
    fn fail_all(&self, why: &str) {
        for events in &self.events {
            let _ = events.try_send(Event::Failed(why.to_owned()));
        }
    }

    /// Sends `event` to instance `instance`, waiting while its channel is
    /// full; false at a stop.
    fn send(&self, instance: usize, mut event: Event) -> bool {
        let events = &self.events[instance];
        loop {
            match events.send_timeout(event, Duration::from_millis(50)) {
                Ok(()) => return true,
                Err(crossbeam::channel::SendTimeoutError::Timeout(back)) => event = back,
                Err(crossbeam::channel::SendTimeoutError::Disconnected(_)) => return false,
            }
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
        }
    }

    /// Sets the gauges of partitions added (`held`, at their resolved
    /// offsets) or given up.
    fn track(&self, list: &TopicPartitionList, held: bool) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for element in list.elements() {
            let key = (element.topic().to_owned(), element.partition());
            let task = tasks.entry(key).or_insert_with(|| TaskGauges {
                assigned: self.metrics.assigned(
                    &self.log.component,
                    element.topic(),
                    element.partition(),
                ),
                lag: None,
                start: None,
                held: false,
            });
            task.held = held;
            task.start = match element.offset() {
                Offset::Offset(offset) if held => Some(offset),
                _ => None,
            };
            task.assigned.set(i64::from(held));
            if let (false, Some(lag)) = (held, &task.lag) {
                lag.set(0);
            }
        }
    }

    fn assigned(&self, added: &TopicPartitionList) {
        let instances = self.events.len();
        let lists = {
            let mut indexes = self.indexes.lock().unwrap_or_else(PoisonError::into_inner);
            indexes.next.resize(instances, 0);
            let mut lists: BTreeMap<usize, Vec<_>> = BTreeMap::new();
            for element in added.elements() {
                let (topic, partition) = (element.topic().to_owned(), element.partition());
                let start = match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                };
                let instance = task_instance(partition, instances);
                let index = indexes.next[instance];
                indexes.next[instance] += 1;
                indexes
                    .current
                    .insert((topic.clone(), partition), (instance, index));
                lists
                    .entry(instance)
                    .or_default()
                    .push((index, topic, partition, start));
            }
            lists
        };
        for (instance, list) in lists {
            self.send(instance, Event::Added(list));
        }
    }

    /// Asks each instance holding some of `numbers` to stop emitting them;
    /// the latest epoch any answered with, or `None` at a stop.
    fn ask_instances(&self, numbers: Vec<(usize, u32)>) -> Option<u64> {
        let mut by_instance: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        for (instance, number) in numbers {
            by_instance.entry(instance).or_default().push(number);
        }
        let mut latest = 0;
        for (instance, numbers) in by_instance {
            let answered = self.revocations[instance].ask(numbers, &self.stop)?;
            latest = latest.max(answered);
        }
        Some(latest)
    }

    fn revoked(&self, lost: bool, revoked: Vec<(String, i32)>) {
        let component = &*self.log.component;
        let numbers: Vec<(usize, u32)> = {
            let mut indexes = self.indexes.lock().unwrap_or_else(PoisonError::into_inner);
            revoked
                .iter()
                .filter_map(|name| indexes.current.remove(name))
                .collect()
        };
        if lost || numbers.is_empty() {
            // Fenced already (see `rebalance`).
            return;
        }
        if self.stop.load(Ordering::Acquire) {
            // The source ended, and the thread waited for its last epoch
            // (or fenced the run) before it closes the consumer (see
            // `run`): that close is what revokes now.
            return;
        }
        let started = Instant::now();
        tracing::info!(
            component,
            group = self.run.group(),
            "kafka: giving up {} partitions: {}",
            revoked.len(),
            shown(&revoked)
        );
        let Some(epoch) = self.ask_instances(numbers) else {
            // The source ended (a stop) before it answered: its last
            // barrier logged these partitions' offsets, and they are given
            // up once that epoch committed.
            let wait = Duration::from_millis(KAFKA_FINAL_COMMIT_WAIT_MS);
            match self.run.wait_drained(wait, || self.watch.aborted()) {
                Ok(()) => tracing::info!(
                    component,
                    group = self.run.group(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "kafka: gave up {} partitions after the source's last epoch committed",
                    revoked.len()
                ),
                Err(why) => self.run.fence(format!(
                    "partitions {} are given up before the source's last epoch committed \
                     ({why}): this run commits no more",
                    shown(&revoked)
                )),
            }
            return;
        };
        // Stateful operators hand in the tasks' last changes at this
        // epoch's barrier, then drop them.
        self.run.revoke_tasks(&revoked, epoch);
        weir_runtime::epoch::failpoint("kafka-revoking", epoch);
        let wait = Duration::from_millis(KAFKA_REVOKE_COMMIT_WAIT_MS);
        match self.run.wait_committed(epoch, &self.stop, wait) {
            Ok(()) => {
                tracing::info!(
                    component,
                    group = self.run.group(),
                    epoch,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "kafka: gave up {} partitions after epoch {epoch}, their last, committed",
                    revoked.len()
                );
                weir_runtime::epoch::failpoint("kafka-revoked", epoch);
            }
            Err(why) => self.run.fence(format!(
                "partitions {} are given up before their last epoch ({epoch}) committed \
                 ({why}): this run commits no more",
                shown(&revoked)
            )),
        }
    }
}

impl ConsumerContext for GroupContext {
    /// The rebalance steps, in place of rust-rdkafka's: a partition given
    /// to this member is assigned at the offset weir read itself (see
    /// [`GroupContext::resolve_starts`]), never left for librdkafka to
    /// look up.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        self.rebalanced.store(true, Ordering::Release);
        let lost = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
            && consumer.assignment_lost();
        if lost {
            // Thrown out of the group: others read these partitions from
            // the group's offsets now. Nothing of this run may commit any
            // more, and that is settled before the metadata of the new
            // membership is taken, with which a transaction would be
            // accepted again.
            self.run.release(&names(list));
            self.run.fence(format!(
                "the group took partitions {} from this process without a revocation (it \
                 was too slow to poll, or cut off from the group coordinator): the epochs \
                 that read them cannot commit",
                shown(&names(list))
            ));
        } else {
            self.refresh_metadata(consumer);
        }
        let component = &*self.log.component;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(why) = self.resolve_starts(consumer, list) {
                    // Nothing of them can be read safely: the run fails.
                    self.run.fence(format!(
                        "cannot read the group's offsets of partitions {}: {why}",
                        shown(&names(list))
                    ));
                    self.fail_all(&format!(
                        "cannot read the group's offsets of newly assigned partitions: {why}"
                    ));
                }
                if self.run.failure().is_none() {
                    self.restore(list);
                }
                self.run.hold(&names(list));
                self.track(list, true);
                self.assigned(list);
                if let Err(error) = consumer.incremental_assign(list) {
                    tracing::warn!(component, "kafka: incremental_assign: {error}");
                }
                if list.count() > 0 {
                    let ordinal = self.assignments.fetch_add(1, Ordering::Relaxed) + 1;
                    weir_runtime::epoch::failpoint("kafka-assigned", ordinal);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoked(lost, names(list));
                if let Err(error) = consumer.incremental_unassign(list) {
                    tracing::warn!(component, "kafka: incremental_unassign: {error}");
                }
                self.run.release(&names(list));
                self.track(list, false);
            }
            other => {
                tracing::warn!(component, "kafka: rebalance failed: {other:?}");
                let _ = consumer.incremental_unassign(list);
            }
        }
        if !lost {
            self.refresh_metadata(consumer);
        }
        let now = consumer
            .assignment()
            .map(|list| names(&list))
            .unwrap_or_default();
        tracing::info!(
            component = &*self.log.component,
            group = self.run.group(),
            "kafka: now reading {} partitions: {}",
            now.len(),
            shown(&now)
        );
    }
}

impl GroupContext {
    /// Restores the keyed state of the tasks of `list` (newly assigned)
    /// before any of their records is read; fences the run when it
    /// cannot.
    fn restore(&self, list: &TopicPartitionList) {
        if !self.run.stateful() || list.count() == 0 {
            return;
        }
        let tasks = names(list);
        let component = &*self.log.component;
        if let Err(why) = restore::restore(
            &self.run,
            &self.client,
            &tasks,
            component,
            &|operator, topic, task| self.metrics.restore_remaining(operator, topic, task),
            &self.stop,
        ) {
            self.run.fence(format!(
                "cannot restore the state of tasks {} from the changelog: {why}",
                shown(&tasks)
            ));
            self.fail_all(&format!(
                "cannot restore the state of newly assigned tasks: {why}"
            ));
        }
    }

    /// Sets where each partition of `list` starts: the group's committed
    /// offset, read here with `read_committed` (a *stable* offset fetch:
    /// while a transaction holding offsets of the partition is open, for
    /// instance one a killed member left, the coordinator answers
    /// `UNSTABLE_OFFSET_COMMIT`, and this asks again until it is
    /// resolved), or the source's `start` where the group has none.
    /// librdkafka's own lookup is not used: in a run of
    /// `tests/kafka_scale_out.rs` with it, a member given a partition
    /// whose committed offset was 10 131 (and whose previous owner had
    /// just been killed) started it at offset 0, and the records below
    /// 10 131 were published twice. librdkafka 2.10's assignment code puts
    /// a partition whose lookup got `UNSTABLE_OFFSET_COMMIT` back as
    /// pending with no offset when the assignment changed meanwhile, as it
    /// had here, and such a partition starts by `auto.offset.reset`.
    fn resolve_starts(
        &self,
        consumer: &BaseConsumer<Self>,
        list: &mut TopicPartitionList,
    ) -> Result<(), String> {
        if list.count() == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let deadline = started + Duration::from_millis(KAFKA_GROUP_OFFSETS_WAIT_MS);
        let mut waited = false;
        loop {
            let error = match consumer.committed_offsets(list.clone(), Duration::from_secs(2)) {
                Ok(committed) => {
                    let unstable = committed.elements().iter().find_map(|element| {
                        element.error().err().map(|error| {
                            format!("{}/{}: {error}", element.topic(), element.partition())
                        })
                    });
                    match unstable {
                        None => {
                            for element in committed.elements() {
                                let offset = match element.offset() {
                                    Offset::Offset(offset) if offset >= 0 => Offset::Offset(offset),
                                    _ => self.start,
                                };
                                list.set_partition_offset(
                                    element.topic(),
                                    element.partition(),
                                    offset,
                                )
                                .map_err(|error| error.to_string())?;
                            }
                            if waited {
                                tracing::info!(
                                    component = &*self.log.component,
                                    elapsed_ms = started.elapsed().as_millis() as u64,
                                    "kafka: read the group's offsets of partitions {}",
                                    shown(&names(list))
                                );
                            }
                            return Ok(());
                        }
                        Some(error) => error,
                    }
                }
                Err(error) => error.to_string(),
            };
            if self.stop.load(Ordering::Acquire) {
                return Err(format!("stopped while waiting ({error})"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no stable answer within {KAFKA_GROUP_OFFSETS_WAIT_MS} ms ({error})"
                ));
            }
            if !waited {
                // A member that died inside its transaction: the brokers
                // abort it within the transaction timeout.
                tracing::info!(
                    component = &*self.log.component,
                    "kafka: the group's offsets of partitions {} are not readable yet \
                     ({error}); waiting (an open transaction of a member that died holds \
                     them until the brokers abort it)",
                    shown(&names(list))
                );
                waited = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The readers of a started thread not yet taken by their instances.
type Joining = Vec<Option<(Reader, Arc<Revocation>)>>;

/// Every run's thread being joined, by group and run id.
fn joining() -> &'static Mutex<HashMap<(String, u64), Joining>> {
    static JOINING: std::sync::OnceLock<Mutex<HashMap<(String, u64), Joining>>> =
        std::sync::OnceLock::new();
    JOINING.get_or_init(Mutex::default)
}

/// Joins shard instance `instance` (of `instances`) of the run's source to
/// the process's one consumer thread, which the first instance to join
/// starts with `setup` (given a revocation request per instance): the
/// instance's reader and revocation requests.
pub fn join(
    run: &GroupRun,
    instance: usize,
    instances: usize,
    setup: impl FnOnce(Vec<Arc<Revocation>>) -> GroupSetup,
) -> Result<(Reader, Arc<Revocation>), String> {
    let key = (run.group().to_owned(), run.plan().run);
    let mut joining = joining().lock().unwrap_or_else(PoisonError::into_inner);
    let slots = joining.entry(key.clone()).or_insert_with(|| {
        let revocations: Vec<Arc<Revocation>> = (0..instances)
            .map(|_| Arc::new(Revocation::default()))
            .collect();
        let readers = start(setup(revocations.clone()));
        readers.into_iter().zip(revocations).map(Some).collect()
    });
    let joined = slots.get_mut(instance).and_then(Option::take);
    if slots.iter().all(Option::is_none) {
        joining.remove(&key);
    }
    joined.ok_or_else(|| {
        format!("shard instance {instance} of {instances} joined the consumer thread twice")
    })
}

/// Starts the consumer thread: a reader for each instance (one per
/// revocation request of `setup`).
fn start(setup: GroupSetup) -> Vec<Reader> {
    let instances = setup.revocations.len().max(1);
    let (senders, receivers): (Vec<Sender<Event>>, Vec<_>) = (0..instances)
        .map(|_| crossbeam::channel::bounded(KAFKA_CHANNEL_CHUNKS))
        .unzip();
    let (commands, _command_rx) = crossbeam::channel::bounded(1);
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let running = super::reader::Running::new();
    let thread_senders = senders.clone();
    let spawned = std::thread::Builder::new()
        .name("weir-kafka-group".into())
        .spawn(move || {
            let _running = running;
            let component = setup.component.clone();
            if let Err(error) = run(setup, thread_senders.clone(), thread_stop) {
                tracing::error!(component = &*component, "kafka source failed: {error}");
                for events in &thread_senders {
                    let _ = events.send(Event::Failed(error.clone()));
                }
            }
        });
    if let Err(error) = spawned {
        for events in &senders {
            let _ = events.try_send(Event::Failed(format!(
                "cannot start the consumer thread: {error}"
            )));
        }
    }
    drop(senders);
    let stop = StopOnDrop::new(stop);
    receivers
        .into_iter()
        .map(|events| Reader::sharing(events, commands.clone(), stop.clone()))
        .collect()
}

fn run(setup: GroupSetup, events: Vec<Sender<Event>>, stop: Arc<AtomicBool>) -> Result<(), String> {
    let component = setup.component.clone();
    let context = GroupContext {
        log: LogContext {
            component: component.clone(),
        },
        run: setup.run.clone(),
        revocations: setup.revocations.clone(),
        events: events.clone(),
        stop: stop.clone(),
        indexes: Mutex::default(),
        rebalanced: AtomicBool::new(false),
        watch: setup.watch.clone(),
        start: setup.start,
        metrics: setup.metrics.clone(),
        tasks: Mutex::default(),
        assignments: AtomicU64::new(0),
        client: setup.config.clone(),
    };
    restore::prepare(&setup.run, &setup.config, &setup.topics)?;
    let mut config = setup.config.clone();
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    if config.get("statistics.interval.ms").is_none() {
        config.set(
            "statistics.interval.ms",
            KAFKA_GROUP_STATISTICS_MS.to_string(),
        );
    }
    let consumer: BaseConsumer<GroupContext> = config
        .create_with_context(context)
        .map_err(|error| format!("cannot create the Kafka consumer: {error}"))?;
    // The input topics, and the repartition topics the run's stateful
    // operators send their rows through.
    let mut subscribed = setup.topics.clone();
    subscribed.extend(
        setup
            .run
            .repartitions()
            .into_iter()
            .map(|(_, topic)| topic.to_string()),
    );
    let topics: Vec<&str> = subscribed.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|error| format!("cannot subscribe to {}: {error}", subscribed.join(", ")))?;
    tracing::info!(
        component = &*component,
        group = setup.run.group(),
        "kafka: joining group `{}` for {}",
        setup.run.group(),
        subscribed.join(", ")
    );
    let instances = events.len();
    // Each instance's events not yet in its channel, and its chunk being
    // filled.
    let mut pending: Vec<VecDeque<Event>> = (0..instances).map(|_| VecDeque::new()).collect();
    let mut chunks: Vec<Chunk> = (0..instances).map(|_| Chunk::default()).collect();
    let mut paused = false;
    // Partition numbers whose end was reported to the shard, with no
    // record of that number since. librdkafka reports a partition's end
    // again after every seek, and a resume seeks every partition (see
    // `reader::resume`): without this, a process holding many partitions
    // at their end (a repartition topic it reads as fast as it writes)
    // filled the channel with those reports, paused, resumed, and so
    // again, and each resume's seek threw away what it had fetched of the
    // partitions that were not at their end, which then never advanced
    // (a run of 600 k records stalled for minutes at 500 k).
    let mut ends_reported: HashSet<i32> = HashSet::new();
    'reading: while !stop.load(Ordering::Acquire) {
        for (queue, events) in pending.iter_mut().zip(&events) {
            while let Some(event) = queue.pop_front() {
                match events.try_send(event) {
                    Ok(()) => {}
                    Err(TrySendError::Full(event)) => {
                        queue.push_front(event);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => break 'reading,
                }
            }
        }
        let rebalanced = consumer.context().rebalanced.swap(false, Ordering::AcqRel);
        setup.run.drop_unused_local();
        if pending.iter().any(|queue| !queue.is_empty()) {
            if !paused || rebalanced {
                if let Ok(assignment) = consumer.assignment() {
                    let _ = consumer.pause(&assignment);
                }
                paused = true;
            }
            // Serve librdkafka's events (rebalances; no records: paused).
            let _ = consumer.poll(Duration::from_millis(1));
            continue;
        }
        if paused
            && events
                .iter()
                .all(|events| events.len() <= KAFKA_CHANNEL_CHUNKS / 2)
        {
            if let Ok(assignment) = consumer.assignment() {
                super::reader::resume(&consumer, &assignment);
            }
            paused = false;
        }
        let wait = chunks
            .iter()
            .zip(&events)
            .map(|(chunk, events)| chunk_wait(chunk, events))
            .min()
            .unwrap_or(Duration::from_millis(50));
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                let index = consumer
                    .context()
                    .indexes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .current
                    .get(&(message.topic().to_owned(), message.partition()))
                    .copied();
                let Some((instance, partition)) = index else {
                    continue;
                };
                ends_reported.remove(&message.partition());
                if chunks[instance].push_message(&message, partition, setup.headers) {
                    let full = std::mem::take(&mut chunks[instance]);
                    pending[instance].push_back(Event::Chunk(full));
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if !ends_reported.insert(partition) {
                    continue;
                }
                // Every topic's partition of this number is read on one
                // instance.
                let instance = task_instance(partition, instances);
                if !chunks[instance].entries.is_empty() {
                    let partial = std::mem::take(&mut chunks[instance]);
                    pending[instance].push_back(Event::Chunk(partial));
                }
                pending[instance].push_back(Event::AtEnd(partition));
            }
            Some(Err(error)) => {
                tracing::warn!(component = &*component, "kafka: {error}");
            }
            None => {
                // Nothing more for now: a partial chunk goes to a shard
                // that has nothing queued; one that has keeps filling
                // (see `chunk_wait`).
                for ((chunk, events), queue) in chunks.iter_mut().zip(&events).zip(&mut pending) {
                    if !chunk.entries.is_empty() && events.is_empty() {
                        queue.push_back(Event::Chunk(std::mem::take(chunk)));
                    }
                }
            }
        }
    }
    // The source ended. Its final epoch commits after it: the consumer
    // stays in the group (holding its partitions) until that epoch's
    // transaction committed, so no other member reads them from older
    // offsets meanwhile. If it does not commit in time, the run is fenced
    // first: nothing of it commits after the partitions move.
    let wait = Duration::from_millis(KAFKA_FINAL_COMMIT_WAIT_MS);
    match setup.run.wait_drained(wait, || setup.watch.aborted()) {
        Err(why) => setup.run.fence(format!(
            "the source ended and its last epoch did not commit ({why}): that epoch is read \
             again by the partitions' next owners"
        )),
        // Its keyed operators logged their tasks in that epoch's snapshot
        // if the run stopped gracefully: a restart here reads them back.
        Ok(()) if setup.run.failure().is_none() && setup.watch.stopped() => {
            let held = setup.run.held();
            match restore::checkpoint(&setup.run, &setup.config, &held) {
                Ok(0) => {}
                Ok(tasks) => tracing::info!(
                    component = &*component,
                    group = setup.run.group(),
                    "kafka: wrote the checkpoint of {tasks} tasks at epoch {}: a restart on \
                     this data directory restores them from its local log",
                    setup.run.committed()
                ),
                Err(why) => tracing::warn!(
                    component = &*component,
                    group = setup.run.group(),
                    "kafka: no checkpoint written ({why}): a restart restores every task from \
                     its changelog"
                ),
            }
        }
        Ok(()) => {}
    }
    drop(consumer);
    Ok(())
}
