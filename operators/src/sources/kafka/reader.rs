//! The consumer thread of one `kafka` source instance.
//!
//! librdkafka runs its own threads; this one owns the instance's
//! `BaseConsumer`. It finds the instance's partitions, assigns them from
//! the offsets the shard gives it, polls records, copies them into
//! [`Chunk`]s and hands those to the shard through a bounded channel. The
//! shard only ever `try_recv`s: it never waits on Kafka.
//!
//! **Backpressure.** When the channel is full (the shard, or what is
//! downstream of it, is slower than Kafka), the thread pauses every
//! partition it reads (`rd_kafka_pause_partitions`: no more fetches;
//! librdkafka drops what it prefetched for them and fetches it again on
//! resume, from the offset after the last record handed out), and resumes
//! them once the channel is half empty ([`resume`] wakes librdkafka's
//! fetcher, which would otherwise sleep up to a second). What one instance
//! holds is thus
//! bounded by the channel ([`KAFKA_CHANNEL_CHUNKS`] chunks of at most
//! [`KAFKA_CHUNK_RECORDS`] records or [`KAFKA_CHUNK_BYTES`]) plus
//! librdkafka's prefetch queue (`queued.max.messages.kbytes`, by default
//! [`KAFKA_PREFETCH_KIB`]).
//!
//! **Offsets to the group.** The shard sends the offsets it logs at each
//! epoch barrier ([`Command::Logged`]); the thread commits the newest ones
//! whose epoch committed ([`CommitWatch`]) to the consumer group,
//! asynchronously, and after the source ended it waits (at most
//! [`KAFKA_FINAL_COMMIT_WAIT_MS`]) for the final epoch to commit and
//! commits its offsets too, synchronously (an asynchronous commit could
//! still be queued when the thread, and the process, end: the fresh-clone
//! CI once found a partition's offsets missing from the group after a
//! successful run), so a run that ends leaves the group at its end. The
//! thread outlives its source; `weir run` waits for it after a successful
//! run ([`wait_for_readers`], at most [`KAFKA_FINAL_COMMIT_WAIT_MS`]), and
//! not after a failed one, so a broker that is down holds nobody's exit.
//! The offsets are for lag tools only: restarts resume from the position
//! in weir's own log. A partition that no record was read from has a
//! position too, the offset it started at, asked of the brokers at
//! assignment (`start_offsets`), as Flink's Kafka source resolves a
//! split's start: the fresh-clone CI once found an empty partition
//! (unkeyed records spread by the sticky partitioner) missing from the
//! group after a successful run. Where the brokers do not answer then,
//! librdkafka resolves the start itself and an empty partition has no
//! position, and no group offset, until it has a record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, TrySendError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use weir_runtime::CommitWatch;

#[cfg(doc)]
use crate::limits::KAFKA_PREFETCH_KIB;
use crate::limits::{
    KAFKA_CHANNEL_CHUNKS, KAFKA_CHUNK_BYTES, KAFKA_CHUNK_RECORDS, KAFKA_FINAL_COMMIT_WAIT_MS,
    KAFKA_METADATA_TIMEOUT_MS, KAFKA_WATERMARKS_TIMEOUT_MS,
};

/// Where an unknown partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record kept.
    Earliest,
    /// After the newest record.
    Latest,
    /// The group's committed offset, or the oldest record without one.
    Committed,
}

/// What the consumer thread needs.
#[derive(Debug, Clone)]
pub struct ReaderSetup {
    /// The librdkafka configuration (brokers, group, options).
    pub config: rdkafka::ClientConfig,
    /// Topic names; a name starting with `^` is a regular expression.
    pub topics: Vec<String>,
    /// This instance and the number of instances: the instance reads the
    /// partitions [`owner`] gives it.
    pub instance: usize,
    /// Instances of the source.
    pub instances: usize,
    /// Where partitions without a restored offset start.
    pub start: StartAt,
    /// Restored next offsets, by topic and partition.
    pub restored: Vec<(String, i32, i64)>,
    /// Whether to copy record headers.
    pub headers: bool,
    /// Stop at the end of every partition (one topic only).
    pub bounded: bool,
    /// The component's name, for log lines.
    pub component: Arc<str>,
    /// The run's committed epoch, when it has a data directory: offsets
    /// go to the group once their epoch committed.
    pub watch: Option<CommitWatch>,
}

/// One record, its bytes in its [`Chunk`]'s arena.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index into [`Event::Assigned`]'s list.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp (create or log-append time), if any.
    pub timestamp: Option<i64>,
    /// The key's bytes in the arena, if it has a key.
    pub key: Option<(u32, u32)>,
    /// The payload's bytes in the arena (empty for a null payload).
    pub payload: (u32, u32),
    /// The headers (key, value) in the arena, if copied.
    pub headers: Vec<(String, Option<(u32, u32)>)>,
}

/// Records handed over at once.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The bytes of keys, payloads and header values.
    pub arena: Vec<u8>,
    /// The records, in the order read.
    pub entries: Vec<Entry>,
}

impl Chunk {
    /// The bytes at `range` of the arena.
    pub fn bytes(&self, range: (u32, u32)) -> &[u8] {
        &self.arena[range.0 as usize..range.1 as usize]
    }

    /// Copies `message` in as a record of partition number `partition`
    /// (with its headers if `headers`); returns whether the chunk is full.
    pub(crate) fn push_message(
        &mut self,
        message: &impl Message,
        partition: u32,
        headers: bool,
    ) -> bool {
        let key = message.key().map(|key| self.push_bytes(key));
        let payload = self.push_bytes(message.payload().unwrap_or_default());
        let mut copied = Vec::new();
        if headers {
            if let Some(list) = message.headers() {
                for header in list.iter() {
                    let value = header.value.map(|value| self.push_bytes(value));
                    copied.push((header.key.to_owned(), value));
                }
            }
        }
        self.entries.push(Entry {
            partition,
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key,
            payload,
            headers: copied,
        });
        self.entries.len() >= KAFKA_CHUNK_RECORDS || self.arena.len() >= KAFKA_CHUNK_BYTES
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> (u32, u32) {
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        (start, self.arena.len() as u32)
    }
}

/// What the thread tells the shard.
#[derive(Debug)]
pub enum Event {
    /// The partitions this instance reads, in the order [`Entry::partition`]
    /// indexes, with the offset each starts at (`None`: librdkafka resolves
    /// it, as `start` says). Sent once, before any chunk.
    Assigned(Vec<(String, i32, Option<i64>)>),
    /// Partitions the group gave a scaled-out source
    /// (`super::subscribe`): each with the [`Entry::partition`] number
    /// its records carry and the offset it starts at (the group's
    /// committed offset; `None`: the source's `start`), sent before any
    /// of its records.
    Added(Vec<(u32, String, i32, Option<i64>)>),
    /// Records.
    Chunk(Chunk),
    /// The reader found no more records in the partitions of this number
    /// (of any of its topics: librdkafka's end-of-partition event names
    /// no topic), after the chunks with their records.
    AtEnd(i32),
    /// Every partition reached its end (`bounded` only), after the last
    /// chunk.
    End,
    /// The source cannot go on (a topic does not exist, say).
    Failed(String),
}

/// Next offsets: (topic, partition, offset).
pub type Offsets = Vec<(String, i32, i64)>;

/// What the shard tells the thread.
#[derive(Debug)]
pub enum Command {
    /// The next offsets the source logged at `epoch`'s barrier: commit
    /// them to the group once `epoch` committed.
    Logged {
        /// The epoch.
        epoch: u64,
        /// Its next offsets.
        offsets: Offsets,
    },
}

/// The shard's side of a running consumer thread; dropping it stops the
/// thread (within one poll timeout), without waiting for it. The
/// instances of a scaled-out source share one thread, which stops once
/// every instance dropped its reader.
#[derive(Debug)]
pub struct Reader {
    /// Events from the thread.
    pub events: Receiver<Event>,
    /// Commands to the thread.
    pub commands: Sender<Command>,
    _stop: Arc<StopOnDrop>,
}

/// Sets its flag when dropped: the last [`Reader`] of a thread stops it.
#[derive(Debug)]
pub(crate) struct StopOnDrop(Arc<AtomicBool>);

impl StopOnDrop {
    pub(crate) fn new(stop: Arc<AtomicBool>) -> Arc<StopOnDrop> {
        Arc::new(StopOnDrop(stop))
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Reader {
    /// The shard's side of a thread with these channels and stop flag.
    pub(crate) fn new(
        events: Receiver<Event>,
        commands: Sender<Command>,
        stop: Arc<AtomicBool>,
    ) -> Reader {
        Reader::sharing(events, commands, StopOnDrop::new(stop))
    }

    /// One of several shard instances' sides of one thread: it stops once
    /// each dropped its reader.
    pub(crate) fn sharing(
        events: Receiver<Event>,
        commands: Sender<Command>,
        stop: Arc<StopOnDrop>,
    ) -> Reader {
        Reader {
            events,
            commands,
            _stop: stop,
        }
    }
}

/// How long the thread's next poll waits for a record. With an empty
/// chunk, up to 50 ms (nothing to hand over). With a partial one, not at
/// all when the shard's channel is empty: the shard waits for records, and
/// a poll that comes back empty hands the chunk over. Otherwise 1 ms, and
/// the chunk keeps filling until the shard has emptied its channel or the
/// chunk is full. The channel counts chunks ([`KAFKA_CHANNEL_CHUNKS`]):
/// handing over a chunk at every empty poll filled it with chunks of ten
/// to thirty records at 20 000 records/s (`bench/scripts/failover.sh`),
/// and a full channel pauses the partitions.
pub(super) fn chunk_wait(chunk: &Chunk, events: &Sender<Event>) -> Duration {
    if chunk.entries.is_empty() {
        Duration::from_millis(50)
    } else if events.is_empty() {
        Duration::ZERO
    } else {
        Duration::from_millis(1)
    }
}

/// Resumes `list`, paused while the channel was full, and has its fetches
/// start at once. librdkafka's resume only clears a flag: with every
/// partition paused, the broker thread that fetches them has nothing to do
/// and sleeps on its queue of operations for up to a second
/// (`rd_kafka_broker_serve`), and 2.10's resume does not wake it, so the
/// shard, which drained its channel in milliseconds, waited that long: in
/// `bench/scripts/failover.sh` a process that had taken over partitions
/// committed once a second, each time a second of records, paused and
/// resumed again, for as long as it ran. A seek of each partition to its
/// position (librdkafka's own: after the last record handed out, where a
/// resume fetches from anyway) sets the partition's fetch state afresh,
/// which wakes the broker thread. A partition with no position yet (no
/// record handed out since its assignment) is left to the resume: it
/// fetches from its assigned offset.
pub(super) fn resume<C: ConsumerContext>(consumer: &BaseConsumer<C>, list: &TopicPartitionList) {
    let _ = consumer.resume(list);
    let Ok(positions) = consumer.position() else {
        return;
    };
    for element in positions.elements() {
        if let Offset::Offset(offset) = element.offset() {
            let _ = consumer.seek(
                element.topic(),
                element.partition(),
                Offset::Offset(offset),
                Duration::ZERO,
            );
        }
    }
}

/// Logs librdkafka's log lines and errors through `tracing`, naming the
/// component.
#[derive(Debug, Clone)]
pub struct LogContext {
    /// The component's name.
    pub component: Arc<str>,
}

impl ClientContext for LogContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as Level;
        let component = &*self.component;
        match level {
            Level::Emerg | Level::Alert | Level::Critical | Level::Error => {
                tracing::error!(component, facility = fac, "kafka: {message}");
            }
            Level::Warning => tracing::warn!(component, facility = fac, "kafka: {message}"),
            Level::Notice | Level::Info => {
                tracing::info!(component, facility = fac, "kafka: {message}");
            }
            Level::Debug => tracing::debug!(component, facility = fac, "kafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            // The end of a partition (`bounded`), not a fault.
            return;
        }
        tracing::warn!(
            component = &*self.component,
            "kafka client error (librdkafka retries): {error}: {reason}"
        );
    }
}

impl ConsumerContext for LogContext {}

/// Consumer threads running in this process, and a signal for when one
/// ends (see [`wait_for_readers`]).
static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// The count of [`RUNNING`] (a panic while it was held left it right).
fn running_threads() -> MutexGuard<'static, usize> {
    RUNNING.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a consumer thread as running while it lives.
pub(crate) struct Running;

impl Running {
    pub(crate) fn new() -> Running {
        *running_threads() += 1;
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        *running_threads() -= 1;
        RUNNING.1.notify_all();
    }
}

/// Waits, at most `timeout`, until every consumer thread of this process
/// has ended; returns whether they all did. A thread outlives its source
/// (dropping the [`Reader`] does not wait for it) to commit the final
/// epoch's offsets to the group once that epoch committed; a process that
/// exits right after its run ends calls this first, or those offsets can
/// be lost with the thread (lag tools then show the group behind).
pub fn wait_for_readers(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut running = running_threads();
    while *running > 0 {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        running = RUNNING
            .1
            .wait_timeout(running, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}

/// Starts the consumer thread.
pub fn start(setup: ReaderSetup) -> Reader {
    let (event_tx, events) = crossbeam::channel::bounded(KAFKA_CHANNEL_CHUNKS);
    let (commands, command_rx) = crossbeam::channel::bounded(64);
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let name = format!("weir-kafka-{}", setup.instance);
    let running = Running::new();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _running = running;
        let component = setup.component.clone();
        if let Err(error) = run(setup, &event_tx, &command_rx, &thread_stop) {
            tracing::error!(component = &*component, "kafka source failed: {error}");
            let _ = event_tx.send(Event::Failed(error));
        }
    });
    if let Err(error) = spawned {
        let (tx, rx) = crossbeam::channel::bounded(1);
        let _ = tx.send(Event::Failed(format!(
            "cannot start the consumer thread: {error}"
        )));
        return Reader::new(rx, commands, stop);
    }
    Reader::new(events, commands, stop)
}

/// The instance (of `instances`) that reads `partition` of `topic`:
/// partition `p` of a topic goes to instance `(h + p) mod instances`, `h`
/// a hash of the topic's name. Partitions of one topic are spread evenly,
/// and a partition keeps its instance when topics or partitions are added
/// (its logged offset is found by the same instance after a restart).
pub fn owner(topic: &str, partition: i32, instances: usize) -> usize {
    // FNV-1a: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let partition = u64::try_from(partition).unwrap_or(0);
    (hash.wrapping_add(partition) % instances.max(1) as u64) as usize
}

/// Every partition of `topics`, sorted, from the cluster's metadata;
/// waits (logging) while the brokers cannot be reached.
fn discover(
    consumer: &BaseConsumer<LogContext>,
    topics: &[String],
    stop: &AtomicBool,
    component: &str,
) -> Result<Vec<(String, i32)>, String> {
    let timeout = Duration::from_millis(KAFKA_METADATA_TIMEOUT_MS);
    let metadata = loop {
        if stop.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        match consumer.fetch_metadata(None, timeout) {
            Ok(metadata) => break metadata,
            Err(error) => tracing::warn!(
                component,
                "kafka: cannot read the cluster's metadata ({error}); retrying"
            ),
        }
    };
    let mut found = Vec::new();
    for wanted in topics {
        let pattern = match wanted.strip_prefix('^') {
            Some(_) => Some(
                regex::Regex::new(wanted)
                    .map_err(|error| format!("topic pattern `{wanted}`: {error}"))?,
            ),
            None => None,
        };
        let mut matched = false;
        for topic in metadata.topics() {
            let hit = match &pattern {
                Some(pattern) => pattern.is_match(topic.name()) && !topic.name().starts_with("__"),
                None => topic.name() == wanted,
            };
            if !hit {
                continue;
            }
            if let Some(error) = topic.error() {
                return Err(format!(
                    "topic `{}`: {}",
                    topic.name(),
                    rdkafka::types::RDKafkaErrorCode::from(error)
                ));
            }
            matched = true;
            for partition in topic.partitions() {
                found.push((topic.name().to_owned(), partition.id()));
            }
        }
        if !matched && pattern.is_none() {
            return Err(format!(
                "topic `{wanted}` does not exist on the brokers (weir does not create \
                 input topics)"
            ));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Warns when a restored offset is no longer in its partition: the brokers
/// deleted records (retention, `kafka-delete-records`) that weir had not
/// read yet, or the topic was deleted and made again. librdkafka then
/// starts the partition over by `auto.offset.reset`, and the lost records
/// cannot be read by anybody: this says which. All the checks together
/// wait at most [`KAFKA_WATERMARKS_TIMEOUT_MS`] and end at a stop, so
/// brokers that cannot be reached delay neither the reading nor a stop.
fn warn_of_deleted_records(
    consumer: &BaseConsumer<LogContext>,
    restored: &[(String, i32, i64)],
    mine: &[(String, i32)],
    component: &str,
    stop: &AtomicBool,
) {
    let deadline = std::time::Instant::now() + Duration::from_millis(KAFKA_WATERMARKS_TIMEOUT_MS);
    for (topic, partition, offset) in restored {
        if !mine.iter().any(|(t, p)| t == topic && p == partition) {
            continue;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stop.load(Ordering::Acquire) {
            tracing::debug!(component, "kafka: no time left to check restored offsets");
            return;
        }
        let (low, high) = match consumer.fetch_watermarks(topic, *partition, left) {
            Ok(marks) => marks,
            Err(error) => {
                tracing::debug!(
                    component,
                    "kafka: cannot read the offsets of {topic}/{partition}: {error}"
                );
                continue;
            }
        };
        if *offset < low {
            tracing::warn!(
                component,
                "kafka: partition {topic}/{partition} resumes at offset {offset}, but the \
                 brokers deleted everything below offset {low} (retention or delete-records): \
                 {} records were never read; reading on from {low}",
                low - offset
            );
        } else if *offset > high {
            tracing::warn!(
                component,
                "kafka: partition {topic}/{partition} resumes at offset {offset}, past its end \
                 ({high}): the topic was deleted and made again, or truncated; the partition \
                 starts over as `auto.offset.reset` says"
            );
        }
    }
}

/// The offset each of `mine` starts at: the restored one, else the one
/// `start` names, asked of the brokers now (the group's committed offset,
/// or the partition's start or end), so that a partition that stays empty
/// has a position too, for the log and the group's offsets. `None` where
/// the brokers did not answer within [`KAFKA_WATERMARKS_TIMEOUT_MS`] (all
/// the questions together) or a stop came: librdkafka resolves it then.
fn start_offsets(
    consumer: &BaseConsumer<LogContext>,
    setup: &ReaderSetup,
    mine: &[(String, i32)],
    stop: &AtomicBool,
) -> Vec<Option<i64>> {
    let component = &*setup.component;
    let mut starts: Vec<Option<i64>> = mine
        .iter()
        .map(|(topic, partition)| {
            setup
                .restored
                .iter()
                .find(|(t, p, _)| t == topic && p == partition)
                .map(|(_, _, offset)| *offset)
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_millis(KAFKA_WATERMARKS_TIMEOUT_MS);
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    if setup.start == StartAt::Committed {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), start) in mine.iter().zip(&starts) {
            if start.is_none() {
                list.add_partition(topic, *partition);
            }
        }
        if list.count() > 0 {
            match consumer.committed_offsets(list, left()) {
                Ok(committed) => {
                    for ((topic, partition), start) in mine.iter().zip(&mut starts) {
                        if start.is_none() {
                            *start =
                                committed
                                    .find_partition(topic, *partition)
                                    .and_then(|element| match element.offset() {
                                        Offset::Offset(offset) if offset >= 0 => Some(offset),
                                        _ => None,
                                    });
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(component, "kafka: cannot read the group's offsets: {error}");
                    return starts;
                }
            }
        }
    }
    for ((topic, partition), start) in mine.iter().zip(&mut starts) {
        if start.is_some() {
            continue;
        }
        if left().is_zero() || stop.load(Ordering::Acquire) {
            tracing::debug!(component, "kafka: no time left to look up start offsets");
            break;
        }
        match consumer.fetch_watermarks(topic, *partition, left()) {
            // `committed` without a committed offset starts at the oldest.
            Ok((low, high)) => {
                *start = Some(if setup.start == StartAt::Latest {
                    high
                } else {
                    low
                })
            }
            Err(error) => tracing::debug!(
                component,
                "kafka: cannot read the offsets of {topic}/{partition}: {error}"
            ),
        }
    }
    starts
}

fn run(
    setup: ReaderSetup,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let component = setup.component.clone();
    let context = LogContext {
        component: component.clone(),
    };
    let mut config = setup.config.clone();
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        // The end of a partition is what makes it idle (and ends it when
        // `bounded`).
        .set("enable.partition.eof", "true")
        .set(
            "auto.offset.reset",
            match setup.start {
                StartAt::Latest => "latest",
                StartAt::Earliest | StartAt::Committed => "earliest",
            },
        );
    let consumer: BaseConsumer<LogContext> = config
        .create_with_context(context)
        .map_err(|error| format!("cannot create the Kafka consumer: {error}"))?;
    let all = discover(&consumer, &setup.topics, stop, &component)?;
    let mine: Vec<(String, i32)> = all
        .into_iter()
        .filter(|(topic, partition)| owner(topic, *partition, setup.instances) == setup.instance)
        .collect();
    let starts = start_offsets(&consumer, &setup, &mine, stop);
    let mut assignment = TopicPartitionList::new();
    for ((topic, partition), start) in mine.iter().zip(&starts) {
        let offset = match (start, setup.start) {
            (Some(offset), _) => Offset::Offset(*offset),
            (None, StartAt::Earliest) => Offset::Beginning,
            (None, StartAt::Latest) => Offset::End,
            (None, StartAt::Committed) => Offset::Stored,
        };
        assignment
            .add_partition_offset(topic, *partition, offset)
            .map_err(|error| format!("partition {topic}/{partition}: {error}"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| format!("cannot assign partitions: {error}"))?;
    warn_of_deleted_records(&consumer, &setup.restored, &mine, &component, stop);
    tracing::info!(
        component = &*component,
        instance = setup.instance,
        "kafka: reading {} partitions: {}",
        mine.len(),
        mine.iter()
            .map(|(topic, partition)| format!("{topic}/{partition}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let index_of = |topic: &str, partition: i32| {
        mine.iter()
            .position(|(t, p)| t == topic && *p == partition)
            .map(|index| index as u32)
    };
    let assigned = mine
        .iter()
        .zip(&starts)
        .map(|((topic, partition), start)| (topic.clone(), *partition, *start))
        .collect();
    if events.send(Event::Assigned(assigned)).is_err() {
        return Ok(());
    }
    // Events the channel had no room for yet, in order.
    let mut pending: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
    let mut chunk = Chunk::default();
    let mut paused = false;
    // Partition numbers whose end was reported, with no record of that
    // number since (see `subscribe::run`).
    let mut ends_reported: std::collections::HashSet<i32> = std::collections::HashSet::new();
    // `bounded`: the partitions (one topic) that have not reached their end.
    let mut unfinished: Vec<i32> = mine.iter().map(|(_, partition)| *partition).collect();
    let mut ended = false;
    if setup.bounded && unfinished.is_empty() {
        // More instances than partitions: this one has nothing to read.
        pending.push_back(Event::End);
        ended = true;
    }
    // Offsets logged at barriers whose epoch has not committed yet.
    let mut logged = VecDeque::new();
    'reading: while !stop.load(Ordering::Acquire) {
        receive_logged(commands, &mut logged);
        commit_durable(
            &consumer,
            &mut logged,
            setup.watch.as_ref(),
            CommitMode::Async,
            &component,
        );
        while let Some(event) = pending.pop_front() {
            match events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    pending.push_front(event);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => break 'reading,
            }
        }
        if !pending.is_empty() {
            if !paused && !mine.is_empty() {
                tracing::debug!(component = &*component, "kafka: channel full; pausing");
                let _ = consumer.pause(&assignment);
                paused = true;
            }
            // Serve librdkafka's events (no records: paused).
            let _ = consumer.poll(Duration::from_millis(1));
            continue;
        }
        if ended {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if paused && events.len() <= KAFKA_CHANNEL_CHUNKS / 2 {
            resume(&consumer, &assignment);
            paused = false;
        }
        let wait = chunk_wait(&chunk, events);
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                let Some(partition) = index_of(message.topic(), message.partition()) else {
                    continue;
                };
                ends_reported.remove(&message.partition());
                if chunk.push_message(&message, partition, setup.headers) {
                    pending.push_back(Event::Chunk(std::mem::take(&mut chunk)));
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // Reported once until a record of the number comes: see
                // `subscribe::run`.
                if !ends_reported.insert(partition) {
                    continue;
                }
                if !chunk.entries.is_empty() {
                    pending.push_back(Event::Chunk(std::mem::take(&mut chunk)));
                }
                pending.push_back(Event::AtEnd(partition));
                if setup.bounded {
                    unfinished.retain(|unfinished| *unfinished != partition);
                    if unfinished.is_empty() {
                        // Everything read is queued above; nothing follows.
                        pending.push_back(Event::End);
                        ended = true;
                    }
                }
            }
            Some(Err(error)) => {
                tracing::warn!(component = &*component, "kafka: {error}");
            }
            None => {
                // Nothing more for now: a partial chunk goes to a shard
                // that has nothing queued; one that has keeps filling
                // (see `chunk_wait`).
                if !chunk.entries.is_empty() && events.is_empty() {
                    pending.push_back(Event::Chunk(std::mem::take(&mut chunk)));
                }
            }
        }
    }
    // The source ended: its final epoch commits after it, so wait for that
    // (bounded: a failed run never commits it) and leave the group at it,
    // committing synchronously: the thread (and maybe the process) ends
    // right after, and an asynchronous commit could still be queued.
    if let Some(watch) = &setup.watch {
        let deadline = Instant::now() + Duration::from_millis(KAFKA_FINAL_COMMIT_WAIT_MS);
        loop {
            receive_logged(commands, &mut logged);
            commit_durable(
                &consumer,
                &mut logged,
                Some(watch),
                CommitMode::Sync,
                &component,
            );
            if logged.is_empty() || watch.aborted() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// Queues the offsets the source logged since the last call.
fn receive_logged(commands: &Receiver<Command>, logged: &mut VecDeque<(u64, Offsets)>) {
    while let Ok(Command::Logged { epoch, offsets }) = commands.try_recv() {
        logged.push_back((epoch, offsets));
    }
}

/// Commits to the group the newest offsets in `logged` whose epoch
/// committed, and forgets those and the older ones.
fn commit_durable<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    logged: &mut VecDeque<(u64, Offsets)>,
    watch: Option<&CommitWatch>,
    mode: CommitMode,
    component: &str,
) {
    let Some(watch) = watch else {
        logged.clear();
        return;
    };
    let committed = watch.committed_epoch();
    let Some(done) = logged.iter().rposition(|(epoch, _)| *epoch <= committed) else {
        return;
    };
    let offsets = logged
        .drain(..=done)
        .next_back()
        .map(|(_, offsets)| offsets);
    let Some(offsets) = offsets.filter(|offsets| !offsets.is_empty()) else {
        return;
    };
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in &offsets {
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    if let Err(error) = consumer.commit(&list, mode) {
        tracing::warn!(
            component,
            "kafka: committing offsets to the group failed ({error}); the next epoch's commit \
             tries again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wait_for_readers` waits while a consumer thread runs, and returns
    /// once the last one ends.
    #[test]
    fn waiting_for_readers_ends_when_the_last_thread_does() {
        assert!(wait_for_readers(Duration::ZERO), "no reader runs yet");
        let running = Running::new();
        assert!(
            !wait_for_readers(Duration::from_millis(20)),
            "a reader runs"
        );
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(running);
        });
        let started = Instant::now();
        assert!(wait_for_readers(Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(10));
        thread.join().unwrap();
    }
}
