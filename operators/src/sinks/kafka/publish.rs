//! Publishing a staged epoch: the `kafka` sink's commit step, on a blocking
//! thread off the shard.
//!
//! One [`Publisher`] per `transactional.id` (sink, shard) lives in a
//! process-wide table, made by the first commit and reused by later ones;
//! a shard's commits run in epoch order, one at a time, so a publisher is
//! never used by two commits at once.
//!
//! # Exactly once (`delivery = "exactly_once"`)
//! The marker of what is published is the offset the group named by the
//! `transactional.id` holds for partition 0 of the topic: the last epoch
//! published. Every epoch is published in one transaction holding its
//! records **and** that marker (`send_offsets_to_transaction`), so they
//! become visible together or not at all.
//! 1. A new publisher's producer calls `init_transactions`, which aborts
//!    whatever an earlier producer with the same id left open (a crash in
//!    the middle of a publish) and fences that producer off. It then reads
//!    the marker (an offset fetch that waits for pending transactional
//!    offsets to settle).
//! 2. An epoch at or below the marker is already in the topic: the commit
//!    does nothing. Otherwise: begin, send every record, add the marker
//!    `epoch`, commit.
//! 3. Any error (the broker is down, a timeout, fencing) drops the
//!    publisher and tries again after a pause (100 ms, doubling to
//!    [`KAFKA_RETRY_MAX_MS`]), from step 1, until it succeeds or the
//!    commit is cancelled by a stop (then it runs again at the next start).
//!
//! # At least once (`delivery = "at_least_once"`)
//! An idempotent producer sends the epoch's records and flushes; an error
//! sends the whole epoch again, so a retry or a crash can publish records
//! twice. No transactions: for brokers or topics where they are not
//! available.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use weir_runtime::{CommitControl, OperatorError};

use super::staged::{self, Header, Staged};
use crate::limits::{KAFKA_RETRY_MAX_MS, KAFKA_TRANSACTION_STEP_TIMEOUT_MS};

/// The producer's context: logs through `tracing` and counts failed
/// deliveries (for `at_least_once`, where no transaction reports them).
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    sink: Arc<str>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as Level;
        let sink = &*self.sink;
        match level {
            Level::Emerg | Level::Alert | Level::Critical | Level::Error => {
                tracing::error!(sink, facility = fac, "kafka: {message}");
            }
            Level::Warning => tracing::warn!(sink, facility = fac, "kafka: {message}"),
            Level::Notice | Level::Info => tracing::info!(sink, facility = fac, "kafka: {message}"),
            Level::Debug => tracing::debug!(sink, facility = fac, "kafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(
            sink = &*self.sink,
            "kafka client error (librdkafka retries): {error}: {reason}"
        );
    }
}

impl DeliveryContext {
    /// The context of a producer for sink `sink`.
    pub fn new(sink: &str) -> DeliveryContext {
        DeliveryContext {
            sink: Arc::from(sink),
            failed: Arc::default(),
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        // Counted, not logged one by one: a failed transaction can fail
        // every record it held. The attempt's error says how many.
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A producer (and, for exactly-once, the marker's reader) of one sink
/// instance.
struct Publisher {
    /// Shared only with a `send_offsets_to_transaction` call that did not
    /// return ([`send_offsets`]).
    producer: Arc<BaseProducer<DeliveryContext>>,
    failed: Arc<AtomicU64>,
    /// Reads the marker and gives the group metadata (exactly-once).
    marker: Option<BaseConsumer>,
    /// The last epoch known published.
    published: u64,
}

/// Drops `publisher` on a thread of its own: closing a consumer
/// (rust-rdkafka's drop waits until the group coordinator answers) and
/// destroying a producer can wait long, or for ever, while the brokers are
/// unreachable, and a commit must give up within the stop bound.
fn reap(publisher: Publisher) {
    let spawned = std::thread::Builder::new()
        .name("weir-kafka-reap".into())
        .spawn(move || drop(publisher));
    if let Err(error) = spawned {
        tracing::warn!(
            "kafka sink: cannot start a thread to close a producer ({error}); leaking it"
        );
    }
}

fn publishers() -> &'static Mutex<HashMap<String, Publisher>> {
    static PUBLISHERS: OnceLock<Mutex<HashMap<String, Publisher>>> = OnceLock::new();
    PUBLISHERS.get_or_init(Mutex::default)
}

fn step_timeout() -> Duration {
    Duration::from_millis(KAFKA_TRANSACTION_STEP_TIMEOUT_MS)
}

/// The commit step: publishes `bytes` (a [`staged`] epoch); see the module
/// docs.
pub fn commit(bytes: &[u8], control: &CommitControl) -> Result<(), OperatorError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let staged = staged::decode(bytes)?;
    // Damaged records are an error no retry cures.
    for record in staged::records(staged.records) {
        record.map_err(|error| {
            OperatorError::invalid(format!(
                "kafka sink `{}` epoch {}: {error}",
                staged.header.sink, staged.header.epoch
            ))
        })?;
    }
    let id = if staged.header.exactly_once {
        staged.header.transactional_id.clone()
    } else {
        format!("{}|at_least_once", staged.header.transactional_id)
    };
    let mut pause = Duration::from_millis(100);
    let mut failures = 0u32;
    let started = std::time::Instant::now();
    loop {
        let taken = publishers().lock().expect("publisher table").remove(&id);
        let attempt = match taken {
            Some(publisher) => Ok(publisher),
            None => Publisher::new(&staged.header, control),
        }
        .and_then(|mut publisher| match publisher.publish(&staged, control) {
            Ok(()) => Ok(publisher),
            Err(error) => {
                reap(publisher);
                Err(error)
            }
        });
        match attempt {
            Ok(publisher) => {
                tracing::debug!(
                    sink = staged.header.sink,
                    shard = staged.header.shard,
                    epoch = staged.header.epoch,
                    records = staged.header.records,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "kafka sink: epoch published"
                );
                if failures > 0 {
                    tracing::info!(
                        sink = staged.header.sink,
                        shard = staged.header.shard,
                        epoch = staged.header.epoch,
                        "kafka sink: epoch published after {failures} failed attempts"
                    );
                }
                publishers()
                    .lock()
                    .expect("publisher table")
                    .insert(id, publisher);
                return Ok(());
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(
                    sink = staged.header.sink,
                    shard = staged.header.shard,
                    epoch = staged.header.epoch,
                    "kafka sink: publishing the epoch to topic `{}` failed ({error}); \
                     retrying in {} ms",
                    staged.header.topic,
                    pause.as_millis()
                );
                if control.is_cancelled() || !control.sleep(pause) {
                    return Err(OperatorError::external(format!(
                        "kafka sink `{}`: epoch {} not published before the stop: {error}",
                        staged.header.sink, staged.header.epoch
                    )));
                }
                pause = (pause * 2).min(Duration::from_millis(KAFKA_RETRY_MAX_MS));
            }
        }
    }
}

fn kafka_error(what: &str) -> impl Fn(KafkaError) -> String + '_ {
    move |error| format!("{what}: {error}")
}

/// How long one try of a blocking client call waits, so that a stop's
/// cancellation is seen within about this long.
const TRY_TIMEOUT: Duration = Duration::from_millis(500);

/// Runs `call` with a short timeout until it succeeds, fails for a reason
/// other than time (a transactional error that is not retriable), the
/// step's own timeout passes, or the commit is cancelled. librdkafka
/// documents `init_transactions`, `send_offsets_to_transaction` and
/// `commit_transaction` as resumable after a timeout: calling again
/// continues the same operation.
fn step<T>(
    control: &CommitControl,
    what: &str,
    mut call: impl FnMut(Duration) -> Result<T, KafkaError>,
) -> Result<T, String> {
    let deadline = std::time::Instant::now() + step_timeout();
    loop {
        let error = match call(TRY_TIMEOUT) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let retriable = match &error {
            KafkaError::Transaction(inner) => inner.is_retriable(),
            _ => true,
        };
        if !retriable || std::time::Instant::now() >= deadline {
            return Err(format!("{what}: {error}"));
        }
        if control.is_cancelled() {
            return Err(format!("{what}: cancelled by the stop ({error})"));
        }
    }
}

/// `send_offsets_to_transaction` on a thread of its own, waited for at
/// most `limit` (and a try more) and until a stop. librdkafka can
/// block in it for ever, whatever its timeout, once the group coordinator
/// went away: its coordinator request never checks its own deadline
/// (confluentinc/librdkafka#5456, and #5511 when the broker is
/// decommissioned), and `tests/kafka_faults.rs`' broker restart hung a
/// commit there in CI, with a stack in `rd_kafka_txn_op_req0`. A call
/// that does not return is left to its thread, which keeps the producer
/// (leaked, with the thread, if it never returns); the commit fails as on
/// any error, and its retry makes a new publisher, whose
/// `init_transactions` aborts the open transaction and fences the stuck
/// producer off.
pub(crate) fn send_offsets(
    producer: &Arc<BaseProducer<DeliveryContext>>,
    offsets: TopicPartitionList,
    group: Arc<rdkafka::consumer::ConsumerGroupMetadata>,
    control: &CommitControl,
    limit: Duration,
) -> Result<(), String> {
    send_offsets_answer(producer, offsets, group, control, limit)?
        .map_err(kafka_error("send_offsets_to_transaction"))
}

/// [`send_offsets`], with librdkafka's answer as it came (`Ok`), or why
/// there was none (`Err`).
pub(crate) fn send_offsets_answer(
    producer: &Arc<BaseProducer<DeliveryContext>>,
    offsets: TopicPartitionList,
    group: Arc<rdkafka::consumer::ConsumerGroupMetadata>,
    control: &CommitControl,
    limit: Duration,
) -> Result<rdkafka::error::KafkaResult<()>, String> {
    let what = "send_offsets_to_transaction";
    let (answer, answered) = std::sync::mpsc::sync_channel(1);
    let caller = Arc::clone(producer);
    std::thread::Builder::new()
        .name("weir-kafka-offsets".into())
        .spawn(move || {
            let result = caller.send_offsets_to_transaction(&offsets, &group, limit);
            let _ = answer.send(result);
        })
        .map_err(|error| format!("{what}: cannot start its thread: {error}"))?;
    let deadline = std::time::Instant::now() + limit + TRY_TIMEOUT;
    loop {
        match answered.recv_timeout(TRY_TIMEOUT) {
            Ok(result) => return Ok(result),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("{what}: its thread ended without an answer"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if control.is_cancelled() {
            return Err(format!("{what}: cancelled by the stop"));
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                "kafka sink: {what} did not return within {} ms (librdkafka can wait for ever \
                 on a group coordinator that went away); leaving it to its thread and starting \
                 over with a new producer",
                (limit + TRY_TIMEOUT).as_millis()
            );
            return Err(format!("{what}: no answer within the step's timeout"));
        }
    }
}

impl Publisher {
    fn new(header: &Header, control: &CommitControl) -> Result<Publisher, String> {
        let failed = Arc::new(AtomicU64::new(0));
        let context = DeliveryContext {
            sink: Arc::from(header.sink.as_str()),
            failed: failed.clone(),
        };
        let defaults = [
            ("client.id", header.transactional_id.clone()),
            // Keys go to the partitions Java clients (and Kafka Streams)
            // would pick.
            ("partitioner", "murmur2_random".to_owned()),
            ("linger.ms", "5".to_owned()),
        ];
        let mut config = crate::kafka::client_config(&header.brokers, &defaults, &header.options);
        config
            .set("compression.type", &header.compression)
            .set("enable.idempotence", "true");
        if header.exactly_once {
            config
                .set("transactional.id", &header.transactional_id)
                .set("transaction.timeout.ms", "60000");
        }
        let producer: BaseProducer<DeliveryContext> = config
            .create_with_context(context)
            .map_err(kafka_error("cannot create the producer"))?;
        let mut publisher = Publisher {
            producer: Arc::new(producer),
            failed,
            marker: None,
            published: 0,
        };
        if header.exactly_once {
            if let Err(error) = publisher.start_transactions(header, control) {
                reap(publisher);
                return Err(error);
            }
        }
        Ok(publisher)
    }

    /// Fences off earlier producers of the transactional id (aborting what
    /// they left open) and reads the last published epoch.
    fn start_transactions(
        &mut self,
        header: &Header,
        control: &CommitControl,
    ) -> Result<(), String> {
        step(control, "init_transactions", |timeout| {
            self.producer.init_transactions(timeout)
        })?;
        let mut marker_config = crate::kafka::client_config(&header.brokers, &[], &header.options);
        marker_config
            .set("group.id", &header.transactional_id)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer = marker_config
            .create()
            .map_err(kafka_error("cannot create the marker's consumer"))?;
        // Held from here on, so a failure below closes it with the rest.
        let consumer = self.marker.insert(consumer);
        let mut list = TopicPartitionList::new();
        list.add_partition(&header.topic, 0);
        let committed = step(control, "reading the last published epoch", |timeout| {
            consumer.committed_offsets(list.clone(), timeout)
        })?;
        self.published = committed
            .find_partition(&header.topic, 0)
            .and_then(|element| match element.offset() {
                Offset::Offset(epoch) => u64::try_from(epoch).ok(),
                _ => None,
            })
            .unwrap_or(0);
        Ok(())
    }

    fn publish(&mut self, staged: &Staged<'_>, control: &CommitControl) -> Result<(), String> {
        let header = &staged.header;
        if header.exactly_once && header.epoch <= self.published {
            tracing::debug!(
                sink = header.sink,
                shard = header.shard,
                epoch = header.epoch,
                published = self.published,
                "kafka sink: epoch already published"
            );
            return Ok(());
        }
        if header.records == 0 {
            // A run's first epoch, staged to initialise the id: nothing to
            // publish, and the marker can stay where it is.
            return Ok(());
        }
        if header.exactly_once {
            self.producer
                .begin_transaction()
                .map_err(kafka_error("begin_transaction"))?;
        }
        self.failed.store(0, Ordering::Relaxed);
        for record in staged::records(staged.records) {
            let (key, value) = record?;
            let mut next = BaseRecord::to(&header.topic).payload(value);
            if let Some(key) = key {
                next = next.key(key);
            }
            // A queue that stays full is a producer that cannot deliver
            // (its transaction failed, say, when the coordinator aborted it
            // after a broker stall): without a bound this loop waited for
            // ever, logging nothing (a fresh-clone CI run of
            // `kafka_faults`). Past the step's timeout it is an error, and
            // the publish starts over with a new producer.
            let mut full_since = None;
            loop {
                match self.producer.send(next) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if control.is_cancelled() {
                            return Err("send: cancelled by the stop".into());
                        }
                        let since = *full_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= step_timeout() {
                            return Err(format!(
                                "send: the producer's queue stayed full for {} ms",
                                step_timeout().as_millis()
                            ));
                        }
                        next = back;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((error, _)) => return Err(format!("send: {error}")),
                }
            }
        }
        if header.exactly_once {
            let marker = self.marker.as_ref().ok_or("no marker consumer")?;
            let group = marker
                .group_metadata()
                .ok_or("the marker's consumer has no group metadata")?;
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(
                    &header.topic,
                    0,
                    Offset::Offset(i64::try_from(header.epoch).unwrap_or(i64::MAX)),
                )
                .map_err(kafka_error("marker"))?;
            send_offsets(
                &self.producer,
                offsets,
                Arc::new(group),
                control,
                step_timeout(),
            )?;
            weir_runtime::epoch::failpoint("kafka-before-commit", header.epoch);
            step(control, "commit_transaction", |timeout| {
                self.producer.commit_transaction(timeout)
            })?;
            self.published = header.epoch;
        } else {
            step(control, "flush", |timeout| self.producer.flush(timeout))?;
            let failed = self.failed.load(Ordering::Relaxed);
            if failed > 0 {
                return Err(format!("{failed} records were not delivered"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rdkafka::mocking::{MockCluster, MockCoordinator};
    use rdkafka::ClientConfig;

    use super::*;

    /// With the group coordinator gone in the middle of a transaction,
    /// librdkafka's `send_offsets_to_transaction` does not return whatever
    /// its timeout (confluentinc/librdkafka#5456); `send_offsets` gives up
    /// within its limit and a try, and says so.
    #[test]
    fn sending_offsets_gives_up_when_the_group_coordinator_is_gone() {
        let cluster = MockCluster::new(3).expect("a mock cluster");
        cluster.create_topic("out", 1, 3).expect("a topic");
        cluster
            .coordinator(MockCoordinator::Transaction("txn".into()), 1)
            .expect("the transaction coordinator");
        cluster
            .coordinator(MockCoordinator::Group("group".into()), 2)
            .expect("the group coordinator");
        let producer: BaseProducer<DeliveryContext> = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("transactional.id", "txn")
            .create_with_context(DeliveryContext {
                sink: Arc::from("test"),
                failed: Arc::default(),
            })
            .expect("a producer");
        producer
            .init_transactions(Duration::from_secs(10))
            .expect("init_transactions");
        producer.begin_transaction().expect("begin_transaction");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "group")
            .create()
            .expect("a consumer");
        let group = Arc::new(consumer.group_metadata().expect("group metadata"));
        cluster.broker_down(2).expect("the group coordinator down");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("out", 0, Offset::Offset(7))
            .expect("an offset");
        let started = Instant::now();
        // On a thread, so that a call that hangs fails the test instead.
        let (answer, answered) = std::sync::mpsc::channel();
        let producer = Arc::new(producer);
        std::thread::spawn(move || {
            let control = CommitControl::new();
            let result = send_offsets(&producer, offsets, group, &control, Duration::from_secs(2));
            let _ = answer.send(result);
        });
        let result = answered
            .recv_timeout(Duration::from_secs(30))
            .expect("send_offsets returned within 30 s");
        let error = result.expect_err("no coordinator, no offsets sent");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gave up after {:?}: {error}",
            started.elapsed()
        );
        assert!(
            error.starts_with("send_offsets_to_transaction: "),
            "{error}"
        );
    }
}
