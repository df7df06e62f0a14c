//! The process's epoch transactions of a scaled-out pipeline
//! (`[runtime] group`, `crate::scale_out`, docs/scale-out.md): every
//! `kafka` sink's instance on every shard hands in each epoch ([`commit`],
//! its commit step); the last one of an epoch runs one transaction with
//! every sink's records and the offsets the source's instances logged at
//! the epoch's barrier, sent with the group's metadata
//! (`send_offsets_to_transaction`, KIP-447). Each shard runs its commit
//! steps on its own, so a shard may hand in the next epoch before another
//! handed in this one: epochs are published in order, each once it is
//! complete and every earlier one was published. A rebalance
//! that moved the group's generation under a transaction aborts it; the
//! epoch is then sent again with the new generation, up to
//! [`TRANSACTION_TRIES`] times. Any other failure fences the run
//! ([`GroupRun::fail`]): nothing of it commits any more, and the run
//! fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};
use weir_runtime::{CommitControl, OperatorError};

use super::publish::{send_offsets_answer, DeliveryContext};
use super::staged::{self, Staged};
use crate::limits::{KAFKA_SCALE_OUT_TRANSACTION_TIMEOUT_MS, KAFKA_TRANSACTION_STEP_TIMEOUT_MS};
use crate::scale_out::{ChangelogRecord, GroupRun, Offsets};

/// How many times one epoch's transaction is tried (a rebalance that
/// moved the group's generation under it aborts it; the next try sends
/// the epoch again with the new generation).
const TRANSACTION_TRIES: u32 = 5;

/// One epoch being gathered from the sinks.
#[derive(Debug, Default)]
struct Gathering {
    epoch: u64,
    /// Sink instances that handed the epoch in: (sink, shard).
    sinks: BTreeSet<(String, u64)>,
    /// Their staged bytes with records, in the order handed in.
    staged: Vec<Vec<u8>>,
}

/// A run's transaction side, used by one commit step at a time.
#[derive(Default)]
struct Transactions {
    producer: Option<Arc<BaseProducer<DeliveryContext>>>,
    /// Epochs being gathered, oldest first.
    gathering: BTreeMap<u64, Gathering>,
    /// The offsets the last committed transaction held.
    last_offsets: Offsets,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every run's transaction side, by group and run id.
type States = Mutex<HashMap<(String, u64), Arc<Mutex<Transactions>>>>;

fn state_of(run: &GroupRun) -> Arc<Mutex<Transactions>> {
    static STATES: OnceLock<States> = OnceLock::new();
    let key = (run.plan().group.clone(), run.plan().run);
    lock(STATES.get_or_init(Mutex::default))
        .entry(key)
        .or_default()
        .clone()
}

/// A sink instance's commit step for one staged epoch: gathers it, and
/// publishes every epoch that is complete (each sink instance handed it
/// in) once the ones before it were, each with its offsets in one
/// transaction.
fn gather(
    run: &GroupRun,
    staged: &Staged<'_>,
    bytes: &[u8],
    control: &CommitControl,
) -> Result<(), String> {
    let epoch = staged.header.epoch;
    let _gate = run.gate();
    let state = state_of(run);
    let mut transactions = lock(&state);
    // Checked under the lock: after `fence` no transaction begins.
    if let Some(why) = run.failure() {
        return Err(why);
    }
    if epoch <= run.committed() {
        let why = format!(
            "sink `{}` (shard {}) handed in epoch {epoch}, which was published already",
            staged.header.sink, staged.header.shard
        );
        run.fail(why.clone());
        return Err(why);
    }
    let gathering = transactions
        .gathering
        .entry(epoch)
        .or_insert_with(|| Gathering {
            epoch,
            ..Gathering::default()
        });
    gathering
        .sinks
        .insert((staged.header.sink.clone(), staged.header.shard));
    if staged.header.records > 0 {
        gathering.staged.push(bytes.to_vec());
    }
    let expected = run.sinks() * run.instances();
    while let Some(oldest) = transactions.gathering.first_entry() {
        if oldest.get().sinks.len() < expected {
            break;
        }
        let gathering = oldest.remove();
        publish_epoch(run, &mut transactions, staged, gathering, control)?;
    }
    Ok(())
}

/// Publishes gathered epoch `gathering` with the offsets and changelog
/// records handed in at its barrier (nothing, when nothing was read or
/// written since the last transaction).
fn publish_epoch(
    run: &GroupRun,
    transactions: &mut Transactions,
    staged: &Staged<'_>,
    gathering: Gathering,
    control: &CommitControl,
) -> Result<(), String> {
    let epoch = gathering.epoch;
    let offsets = run.take_offsets(epoch);
    let Some(offsets) = offsets else {
        let why = format!("the source logged no offsets at epoch {epoch}'s barrier");
        run.fail(why.clone());
        return Err(why);
    };
    let changelog = run.take_changelog(epoch);
    if gathering.staged.is_empty() && changelog.is_empty() && offsets == transactions.last_offsets {
        // Nothing read or written since the last transaction.
        run.mark_committed(epoch);
        return Ok(());
    }
    let started = Instant::now();
    let result = publish(
        run,
        transactions,
        staged,
        &gathering,
        &changelog,
        &offsets,
        control,
    );
    match result {
        Ok(tries) => {
            tracing::debug!(
                group = run.group(),
                epoch,
                tries,
                offsets = ?offsets,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "kafka scale-out: epoch committed"
            );
            transactions.last_offsets = offsets;
            run.mark_committed(epoch);
            Ok(())
        }
        Err(why) => {
            let why = format!("epoch {epoch}: {why}");
            run.fail(why.clone());
            Err(why)
        }
    }
}

/// Runs the epoch's transaction, trying again (sending everything
/// again) when a rebalance aborted it; returns the tries it took.
fn publish(
    run: &GroupRun,
    transactions: &mut Transactions,
    staged: &Staged<'_>,
    gathering: &Gathering,
    changelog: &[ChangelogRecord],
    offsets: &Offsets,
    control: &CommitControl,
) -> Result<u32, String> {
    let mut tries = 0;
    loop {
        tries += 1;
        // Offsets only of partitions this member holds now: after a
        // rebalance took some away without a revocation, the new
        // membership's metadata would let them through.
        if run.fencing() {
            return Err("the run is being fenced".into());
        }
        let lost = run.not_held(offsets);
        if !lost.is_empty() {
            return Err(format!(
                "the epoch read partitions this process no longer holds: {lost:?}"
            ));
        }
        let version = run.metadata_version();
        let producer = match &transactions.producer {
            Some(producer) => producer.clone(),
            None => {
                let producer = producer(run, staged, control)?;
                transactions.producer = Some(producer.clone());
                producer
            }
        };
        match attempt(run, &producer, gathering, changelog, offsets, control) {
            Ok(()) => return Ok(tries),
            Err(Attempt::Abort(why)) if tries < TRANSACTION_TRIES => {
                tracing::info!(
                    group = run.group(),
                    epoch = gathering.epoch,
                    "kafka scale-out: the epoch's transaction was aborted ({why}); \
                         sending it again once the group's generation is known"
                );
                // The abort waits for every record sent to be reported
                // delivered or failed, and a `BaseProducer` reports only
                // while polled: drop what is queued and serve the reports
                // first (without this a rebalance's abort failed with
                // "Failed to flush all outstanding messages").
                producer.purge(PurgeConfig::default().queue().inflight());
                deliver(&producer, step_timeout());
                if let Err(error) = producer.abort_transaction(step_timeout()) {
                    return Err(format!("abort_transaction after {why}: {error}"));
                }
                // The next try gets a producer of its own: this one's
                // purge of in-flight records resets its idempotence state,
                // and a send into the next transaction could fail with
                // "Erroneous state" while it does (seen in
                // `tests/kafka_scale_out.rs`: A's retry after a rebalance
                // failed its run that way). A new producer's
                // `init_transactions` under the same transactional id
                // fences this one.
                transactions.producer = None;
                drop(producer);
                run.wait_metadata_after(version, || control.is_cancelled());
            }
            Err(Attempt::Abort(why) | Attempt::Fatal(why)) => return Err(why),
        }
    }
}

fn producer(
    run: &GroupRun,
    staged: &Staged<'_>,
    control: &CommitControl,
) -> Result<Arc<BaseProducer<DeliveryContext>>, String> {
    let header = &staged.header;
    let id = format!("weir-{}-{:016x}", run.plan().group, run.plan().run);
    let defaults = [
        ("client.id", id.clone()),
        ("partitioner", "murmur2_random".to_owned()),
        ("linger.ms", "5".to_owned()),
    ];
    let mut config = crate::kafka::client_config(&header.brokers, &defaults, &header.options);
    config
        .set("enable.idempotence", "true")
        .set("compression.type", &header.compression)
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
    run: &GroupRun,
    producer: &Arc<BaseProducer<DeliveryContext>>,
    gathering: &Gathering,
    changelog: &[ChangelogRecord],
    offsets: &Offsets,
    control: &CommitControl,
) -> Result<(), Attempt> {
    producer
        .begin_transaction()
        .map_err(Attempt::of("begin_transaction"))?;
    for bytes in &gathering.staged {
        let staged = staged::decode(bytes).map_err(|error| Attempt::Fatal(error.to_string()))?;
        for record in staged::records(staged.records) {
            let (key, value) = record.map_err(|error| Attempt::Fatal(error.to_string()))?;
            let mut next = BaseRecord::to(&staged.header.topic).payload(value);
            if let Some(key) = key {
                next = next.key(key);
            }
            send(producer, next, control)?;
        }
    }
    // The stateful operators' changes, each to its task's partition.
    for record in changelog {
        let mut next: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(&record.topic)
            .partition(record.partition)
            .key(&record.key[..]);
        if let Some(value) = &record.value {
            next = next.payload(&value[..]);
        }
        send(producer, next, control)?;
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|error| Attempt::Fatal(format!("offsets: {error}")))?;
    }
    if list.count() > 0 {
        let metadata = run
            .metadata()
            .ok_or_else(|| Attempt::Abort("no group metadata yet".into()))?;
        send_offsets_answer(producer, list, metadata, control, step_timeout())
            .map_err(Attempt::Fatal)?
            .map_err(Attempt::of("send_offsets_to_transaction"))?;
    }
    weir_runtime::epoch::failpoint("kafka-before-commit", gathering.epoch);
    if !deliver(producer, step_timeout()) {
        return Err(Attempt::Fatal(format!(
            "commit_transaction: the transaction's records were not delivered within {} ms",
            step_timeout().as_millis()
        )));
    }
    producer
        .commit_transaction(step_timeout())
        .map_err(Attempt::of("commit_transaction"))
}

/// Serves the producer's delivery reports until none of its records is
/// in flight, or `timeout` (by the clock) passes; whether none is.
/// rust-rdkafka's own flush, which `commit_transaction` runs first,
/// counts 100 ms of its timeout for every report it serves, however fast:
/// a transaction of many records (a repartitioned window sends every row
/// again) failed with "Flush error: OperationTimedOut" 1.3 s into a 30 s
/// step. Its flush finds nothing in flight after this.
fn deliver(producer: &BaseProducer<DeliveryContext>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        producer.poll(Duration::from_millis(100));
    }
    true
}

/// Sends `record`, waiting while the producer's queue is full.
fn send<K, P>(
    producer: &BaseProducer<DeliveryContext>,
    mut record: BaseRecord<'_, K, P, ()>,
    control: &CommitControl,
) -> Result<(), Attempt>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    let full_since = Instant::now();
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if control.is_cancelled() || full_since.elapsed() >= step_timeout() {
                    return Err(Attempt::Fatal(
                        "send: the producer's queue stayed full".into(),
                    ));
                }
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => return Err(Attempt::Fatal(format!("send: {error}"))),
        }
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
    gather(&run, staged, bytes, control).map_err(|why| {
        OperatorError::external(format!(
            "kafka scale-out (group `{}`): {why}; this process stops, and the group moves its \
             partitions to the others",
            group.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::ClientConfig;

    use super::*;
    use crate::scale_out::GroupPlan;
    use crate::sinks::kafka::staged::{GroupHeader, Header};

    /// One sink's staged epoch of `records` JSON records for `plan`'s run.
    fn staged_epoch(plan: &GroupPlan, brokers: &str, epoch: u64, records: u64) -> Vec<u8> {
        staged_on(plan, brokers, epoch, records, 0)
    }

    /// [`staged_epoch`] by the sink's instance on shard `shard`.
    fn staged_on(plan: &GroupPlan, brokers: &str, epoch: u64, records: u64, shard: u64) -> Vec<u8> {
        let header = Header {
            brokers: brokers.to_owned(),
            options: BTreeMap::new(),
            topic: "out".into(),
            compression: "none".into(),
            exactly_once: true,
            transactional_id: "unused".into(),
            sink: "out".into(),
            shard,
            epoch,
            records,
            group: Some(GroupHeader {
                name: plan.group.clone(),
                run: plan.run,
            }),
        };
        let mut body = Vec::new();
        for n in 0..records {
            staged::push_record(&mut body, None, format!("{{\"n\":{n}}}").as_bytes());
        }
        staged::encode(&header, &body)
    }

    /// The group coordinator refuses an epoch's offsets for an old
    /// generation (a rebalance moved it under the transaction): the
    /// transaction is aborted and the epoch sent again with the new
    /// metadata, and it commits; the run is not failed.
    #[test]
    fn an_epoch_refused_for_an_old_generation_is_sent_again_and_commits() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic("in", 2, 1).expect("a topic");
        cluster.create_topic("out", 1, 1).expect("a topic");
        let brokers = cluster.bootstrap_servers();
        let plan = GroupPlan::new("g");
        let run = plan.run();
        run.add_sink("out");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "g")
            .create()
            .expect("a consumer");
        run.set_metadata(consumer.group_metadata().expect("metadata"));
        run.hold(&[("in".into(), 0), ("in".into(), 1)]);
        run.set_offsets(1, vec![("in".into(), 0, 5), ("in".into(), 1, 7)]);
        cluster.request_errors(
            RDKafkaApiKey::TxnOffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION],
        );
        // The consumer sees the new generation a moment later.
        let consumer = Arc::new(consumer);
        let (seen, later) = (run.clone(), consumer.clone());
        let refresh = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            seen.set_metadata(later.group_metadata().expect("metadata"));
        });
        let bytes = staged_epoch(&plan, &brokers, 1, 3);
        let staged = staged::decode(&bytes).expect("staged");
        let control = CommitControl::new();
        commit(&staged, &bytes, &control).expect("published on the second try");
        refresh.join().unwrap();
        assert_eq!(run.committed(), 1);
        assert_eq!(run.failure(), None);
        assert!(!run.offsets_pending());

        // An epoch with nothing new needs no transaction.
        run.set_offsets(2, vec![("in".into(), 0, 5), ("in".into(), 1, 7)]);
        let bytes = staged_epoch(&plan, &brokers, 2, 0);
        commit(&staged::decode(&bytes).unwrap(), &bytes, &control).expect("nothing to send");
        assert_eq!(run.committed(), 2);
    }

    /// With two shards, an epoch is published once the sink's instances on
    /// both handed it in, and in order: shard 0 handing in epochs 1 and 2
    /// publishes nothing; shard 1's epoch 1 publishes epoch 1 (with both
    /// instances' offsets and records), its epoch 2 then epoch 2.
    #[test]
    fn with_two_shards_an_epoch_waits_for_both_and_epochs_go_in_order() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic("in", 2, 1).expect("a topic");
        cluster.create_topic("out", 1, 1).expect("a topic");
        let brokers = cluster.bootstrap_servers();
        let plan = GroupPlan::new("g-two");
        let run = plan.run();
        run.add_sink("out");
        run.set_instances(2);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "g-two")
            .create()
            .expect("a consumer");
        run.set_metadata(consumer.group_metadata().expect("metadata"));
        run.hold(&[("in".into(), 0), ("in".into(), 1)]);
        for epoch in 1..=2 {
            // Each shard's source instance logs its own partition.
            run.set_offsets(epoch, vec![("in".into(), 0, 10 * epoch as i64)]);
            run.set_offsets(epoch, vec![("in".into(), 1, 20 * epoch as i64)]);
        }
        let control = CommitControl::new();
        let hand_in = |epoch, shard| {
            let bytes = staged_on(&plan, &brokers, epoch, 2, shard);
            commit(&staged::decode(&bytes).unwrap(), &bytes, &control)
        };
        hand_in(1, 0).expect("gathered");
        hand_in(2, 0).expect("gathered");
        assert_eq!(run.committed(), 0, "shard 1 handed nothing in yet");
        hand_in(1, 1).expect("epoch 1 published");
        assert_eq!(run.committed(), 1, "epoch 2 still waits for shard 1");
        hand_in(2, 1).expect("epoch 2 published");
        assert_eq!(run.committed(), 2);
        assert_eq!(run.failure(), None);

        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "g-two")
            .set("isolation.level", "read_committed")
            .create()
            .expect("a reader");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("out", 0, Offset::Beginning)
            .unwrap();
        reader.assign(&list).unwrap();
        let mut records = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while records < 8 && Instant::now() < deadline {
            if let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
                records += 1;
            }
        }
        assert_eq!(records, 8, "2 records of each instance in each epoch");
        // Epoch 2's transaction sent both instances' offsets.
        let sent = lock(&state_of(&run)).last_offsets.clone();
        assert_eq!(sent, vec![("in".into(), 0, 20), ("in".into(), 1, 40)]);
    }

    /// An epoch that read a partition the member no longer holds (the
    /// group took it without a revocation) is not published, and the run
    /// commits nothing more.
    #[test]
    fn an_epoch_of_a_partition_no_longer_held_fails_the_run() {
        let plan = GroupPlan::new("g-lost");
        let run = plan.run();
        run.add_sink("out");
        run.hold(&[("in".into(), 0)]);
        run.set_offsets(3, vec![("in".into(), 0, 5), ("in".into(), 1, 7)]);
        // No broker: the check comes before any Kafka call.
        let bytes = staged_epoch(&plan, "127.0.0.1:9", 3, 1);
        let control = CommitControl::new();
        let error = commit(&staged::decode(&bytes).unwrap(), &bytes, &control)
            .expect_err("a partition no longer held");
        assert!(error.to_string().contains("no longer holds"), "{error}");
        assert!(run.failure().is_some());
        assert_eq!(run.committed(), 0);
    }

    /// An epoch staged by an earlier run (recovered from its log) is not
    /// published: the group's offsets say where this run resumes.
    #[test]
    fn an_epoch_of_an_earlier_run_is_not_published() {
        let earlier = GroupPlan::new("g-earlier");
        let bytes = staged_epoch(&earlier, "127.0.0.1:9", 4, 2);
        let control = CommitControl::new();
        // No run of that id in this process: nothing is sent (the brokers
        // do not even exist).
        commit(&staged::decode(&bytes).unwrap(), &bytes, &control).expect("skipped");
    }
}
