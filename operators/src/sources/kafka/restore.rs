//! The consumer thread's side of keyed state that moves
//! (`crate::scale_out`'s `state`, docs/scale-out.md "State that moves"):
//! before the member joins, the input topic's partitions are counted (the
//! tasks) and each stateful operator's changelog topic is made (compacted,
//! one partition per task); when the group gives the member a task, its
//! changelog partitions are read to their end (`read_committed`) and the
//! state handed to the operators, before any record of the task is. After
//! a graceful stop on the same data directory a task whose state the local
//! log holds is read from the last run's checkpoint on only
//! (`crate::scale_out::local`); at the end of a graceful run the checkpoint
//! is written ([`checkpoint`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use weir_runtime::metrics::ShardGauge;

use crate::limits::{KAFKA_RESTORE_PROGRESS_MS, KAFKA_RESTORE_STALL_MS};
use crate::scale_out::local::{now_ms, write_checkpoint, Checkpoint};
use crate::scale_out::{GroupRun, Handoff};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a checkpoint waits, in all, for the final transaction's
/// markers to make its records stable ([`checkpoint`]): they follow the
/// commit within milliseconds on a healthy broker.
const CHECKPOINT_SETTLE: Duration = Duration::from_secs(5);

/// How often a restore at a changelog partition's last stable offset asks
/// whether records still follow it.
const HELD_BACK_ASK: Duration = Duration::from_millis(100);

/// Whether records of `changelog`/`task` follow its last stable offset:
/// an open transaction holds them back. A `read_committed` reader (the
/// restore `consumer`) reports the end of a partition at its last stable
/// offset, which an open transaction holds back: a member that died inside
/// a transaction leaves it open until the brokers abort it, and the
/// records a later owner committed after it (it had given the task up
/// since) are behind it. Stopping there would restore the state without
/// them while the group's offsets already count their input
/// (`tests/kafka_scale_out.rs` lost 16 minutes of a host's counts that
/// way: B killed mid-transaction, A held the task for 2 s and stopped, D
/// restored it before B's transaction was aborted). `everything` reads
/// `read_uncommitted`: its end is the high watermark.
fn held_back(
    consumer: &BaseConsumer,
    everything: &BaseConsumer,
    changelog: &str,
    task: i32,
) -> Result<bool, String> {
    let ends = |client: &BaseConsumer| {
        client
            .fetch_watermarks(changelog, task, METADATA_TIMEOUT)
            .map(|(_, high)| high)
            .map_err(|error| {
                format!("cannot read the ends of changelog `{changelog}`/{task}: {error}")
            })
    };
    let stable = ends(consumer)?;
    Ok(stable < ends(everything)?)
}

/// The partitions of `topic`.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<u32, String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|error| format!("cannot read the metadata of topic `{topic}`: {error}"))?;
    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
        return Err(format!("topic `{topic}` is not in the brokers' metadata"));
    };
    if let Some(error) = found.error() {
        return Err(format!(
            "topic `{topic}`: {}",
            RDKafkaErrorCode::from(error)
        ));
    }
    Ok(found.partitions().len() as u32)
}

/// The partitions of `topic`, just created (by this process or another
/// that starts at the same time): asked again while the brokers' metadata
/// does not show it yet, up to [`METADATA_TIMEOUT`].
fn partitions_of_new(consumer: &BaseConsumer, topic: &str) -> Result<u32, String> {
    let deadline = Instant::now() + METADATA_TIMEOUT;
    loop {
        match partitions_of(consumer, topic) {
            Ok(partitions) if partitions > 0 => return Ok(partitions),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Before the member joins: counts the tasks (the input topic's
/// partitions) and makes sure every changelog topic (compacted) and
/// repartition topic exists with one partition per task (made with the
/// brokers' default replication when missing).
pub fn prepare(run: &GroupRun, config: &ClientConfig, topics: &[String]) -> Result<(), String> {
    if !run.stateful() {
        return Ok(());
    }
    let [topic] = topics else {
        return Err(format!(
            "a scaled-out pipeline with a window reads one topic (its partitions are the \
             window's tasks), not {}",
            topics.join(", ")
        ));
    };
    if topic.starts_with('^') {
        return Err(format!(
            "a scaled-out pipeline with a window reads one named topic (its partitions are the \
             window's tasks), not the pattern `{topic}`"
        ));
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|error| format!("cannot create a Kafka client: {error}"))?;
    let tasks = partitions_of(&consumer, topic)?;
    if tasks == 0 {
        return Err(format!("topic `{topic}` has no partitions"));
    }
    run.set_tasks(tasks);
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|error| format!("cannot create a Kafka admin client: {error}"))?;
    let internal = run
        .changelogs()
        .into_iter()
        .map(|(operator, topic)| (operator, topic, "changelog", "compact"))
        .chain(
            run.repartitions()
                .into_iter()
                .map(|(operator, topic)| (operator, topic, "repartition", "delete")),
        );
    for (operator, internal, kind, cleanup) in internal {
        let new = NewTopic::new(&internal, tasks as i32, TopicReplication::Fixed(-1))
            .set("cleanup.policy", cleanup);
        let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        let created = futures_lite::future::block_on(admin.create_topics([&new], &options))
            .map_err(|error| format!("cannot create {kind} topic `{internal}`: {error}"))?;
        for result in created {
            match result {
                Ok(_) => tracing::info!(
                    group = run.group(),
                    "kafka: created {kind} topic `{internal}` of `{operator}` ({tasks} \
                     partitions, cleanup.policy={cleanup})"
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(format!("cannot create {kind} topic `{internal}`: {code}"))
                }
            }
        }
        let found = partitions_of_new(&consumer, &internal)?;
        if found != tasks {
            return Err(format!(
                "{kind} topic `{internal}` of `{operator}` has {found} partitions, but \
                 input topic `{topic}` has {tasks}: each task needs its own (recreate the \
                 {kind} topic, or the input, with the same count)"
            ));
        }
    }
    if run.load_checkpoint() {
        tombstone_retention(run, &admin);
    }
    Ok(())
}

/// Reads the `delete.retention.ms` of each changelog the checkpoint
/// names: a checkpoint older than that is not used (compaction may have
/// dropped tombstones written after it). One that cannot be read is
/// logged, and its tasks are restored from the changelog.
fn tombstone_retention(run: &GroupRun, admin: &AdminClient<DefaultClientContext>) {
    let changelogs = run.checkpointed_changelogs();
    let specifiers: Vec<ResourceSpecifier<'_>> = changelogs
        .iter()
        .map(|topic| ResourceSpecifier::Topic(topic))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    let described = futures_lite::future::block_on(admin.describe_configs(&specifiers, &options));
    let results = match described {
        Ok(results) => results,
        Err(error) => {
            tracing::warn!(
                group = run.group(),
                "kafka: cannot read the changelogs' delete.retention.ms ({error}): every task \
                 is restored from its changelog"
            );
            return;
        }
    };
    for (topic, result) in changelogs.iter().zip(results) {
        let retention = result
            .ok()
            .and_then(|resource| resource.get("delete.retention.ms")?.value.clone())
            .and_then(|value| value.parse::<i64>().ok());
        match retention {
            Some(ms) => run.set_tombstone_retention(topic, ms),
            None => tracing::warn!(
                group = run.group(),
                "kafka: cannot read delete.retention.ms of `{topic}`: its tasks are restored \
                 from the changelog"
            ),
        }
    }
}

/// Writes the checkpoint of a run that ended gracefully (its final
/// epoch's transaction committed, the member still holding `held`): for
/// each held task's changelog partition, its last stable offset, which a
/// `read_committed` client reports as its end. The run's `committed()`
/// epoch is read first: a checkpoint names an epoch no later than its
/// offsets (`crate::scale_out::local`). Returns the tasks written.
///
/// A committed transaction's markers are written after the commit returns,
/// so the last stable offset can still stand before the final epoch's
/// records: each partition's is read once no transaction holds records back
/// there ([`held_back`]), for at most [`CHECKPOINT_SETTLE`] in all (then as
/// it is: a restart reads those records again, which is only slower).
pub fn checkpoint(
    run: &GroupRun,
    config: &ClientConfig,
    held: &[(String, i32)],
) -> Result<usize, String> {
    let Some(dir) = run.plan().data_dir.clone() else {
        return Ok(0);
    };
    if !run.stateful() {
        return Ok(0);
    }
    let epoch = run.committed();
    let mut config = config.clone();
    config
        .set("group.id", format!("weir-checkpoint-{}", run.group()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|error| format!("cannot create a Kafka client: {error}"))?;
    let everything: BaseConsumer = config
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(|error| format!("cannot create a Kafka client: {error}"))?;
    let settle = Instant::now() + CHECKPOINT_SETTLE;
    let mut offsets: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    let mut count = 0;
    for (_, changelog, tasks) in run.tasks_of(held) {
        for task in tasks {
            while Instant::now() < settle && held_back(&consumer, &everything, &changelog, task)? {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (_, end) = consumer
                .fetch_watermarks(&changelog, task, METADATA_TIMEOUT)
                .map_err(|error| {
                    format!("cannot read the end of changelog `{changelog}`/{task}: {error}")
                })?;
            offsets
                .entry(changelog.to_string())
                .or_default()
                .insert(task, end);
            count += 1;
        }
    }
    let checkpoint = Checkpoint {
        group: run.group().to_owned(),
        epoch,
        written_ms: now_ms(),
        offsets,
    };
    write_checkpoint(&dir, &checkpoint)?;
    Ok(count)
}

/// One changelog partition being read.
struct Reading {
    task: i32,
    /// Each live key's last value.
    state: HashMap<Vec<u8>, Vec<u8>>,
    records: u64,
    bytes: u64,
    /// Records left up to the end seen when the restore began.
    left: i64,
    gauge: ShardGauge,
    done: bool,
    /// An open transaction held records back when the restore began
    /// ([`held_back`]): the end reported may not be the end.
    open: bool,
    /// At the last stable offset, with records after it that an open
    /// transaction holds back: since when, and when that was last asked.
    held_back: Option<(Instant, Instant)>,
}

/// Reads the changelog partitions of the tasks among `partitions` (newly
/// assigned, of the input and repartition topics) to their end and hands
/// each task's state to its operator; an error if the brokers let nothing be
/// read for [`KAFKA_RESTORE_STALL_MS`] or the source stopped. `remaining`
/// gives the gauge of records left to read of (operator, changelog,
/// task).
pub fn restore(
    run: &GroupRun,
    config: &ClientConfig,
    partitions: &[(String, i32)],
    component: &str,
    remaining: &dyn Fn(&str, &str, i32) -> ShardGauge,
    stop: &AtomicBool,
) -> Result<(), String> {
    for (operator, changelog, tasks) in run.tasks_of(partitions) {
        if tasks.is_empty() {
            continue;
        }
        let started = Instant::now();
        let mut config = config.clone();
        config
            .set("group.id", format!("weir-restore-{}", run.group()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|error| format!("cannot create the restore consumer: {error}"))?;
        let everything: BaseConsumer = config
            .clone()
            .set("isolation.level", "read_uncommitted")
            .create()
            .map_err(|error| format!("cannot create the restore consumer: {error}"))?;
        let mut list = TopicPartitionList::new();
        let mut readings: BTreeMap<i32, Reading> = BTreeMap::new();
        // Nobody writes a task's changelog while it is restored (its last
        // owner gave it up, or died): only a transaction open now can hold
        // records back.
        let mut open: Vec<i32> = Vec::new();
        for &task in &tasks {
            if held_back(&consumer, &everything, &changelog, task)? {
                open.push(task);
            }
        }
        let mut local = Vec::new();
        for &task in &tasks {
            let (low, high) = consumer
                .fetch_watermarks(&changelog, task, METADATA_TIMEOUT)
                .map_err(|error| {
                    format!("cannot read the ends of changelog `{changelog}`/{task}: {error}")
                })?;
            // From the checkpoint over the local state, or all of it.
            let (from, state) = match run.local_start(&operator, &changelog, task, stop) {
                Some((offset, entries)) if (low..=high).contains(&offset) => {
                    local.push(task);
                    (offset, entries.into_iter().collect())
                }
                Some((offset, _)) => {
                    tracing::info!(
                        component,
                        group = run.group(),
                        "kafka: changelog `{changelog}`/{task} holds offsets {low}..{high}, \
                         not the checkpoint's {offset} (recreated, or cleaned up): its task is \
                         restored from the changelog"
                    );
                    (low, HashMap::new())
                }
                None => (low, HashMap::new()),
            };
            let start = if local.last() == Some(&task) {
                Offset::Offset(from)
            } else {
                Offset::Beginning
            };
            list.add_partition_offset(&changelog, task, start)
                .map_err(|error| error.to_string())?;
            let gauge = remaining(&operator, &changelog, task);
            gauge.set((high - from).max(0));
            readings.insert(
                task,
                Reading {
                    task,
                    state,
                    records: 0,
                    bytes: 0,
                    left: (high - from).max(0),
                    gauge,
                    done: false,
                    open: open.contains(&task),
                    held_back: None,
                },
            );
        }
        consumer
            .assign(&list)
            .map_err(|error| format!("cannot read changelog `{changelog}`: {error}"))?;
        tracing::info!(
            component,
            group = run.group(),
            "kafka: restoring `{operator}` for tasks {tasks:?} from `{changelog}` ({} records)",
            readings.values().map(|reading| reading.left).sum::<i64>()
        );
        // Records read in this restore (the `kafka-restoring` fail-point).
        let mut read: u64 = 0;
        let mut progress_at = Instant::now();
        let mut heard = Instant::now();
        while readings.values().any(|reading| !reading.done) {
            if stop.load(Ordering::Acquire) {
                return Err("the source stopped during a restore".into());
            }
            if heard.elapsed() >= Duration::from_millis(KAFKA_RESTORE_STALL_MS) {
                return Err(format!(
                    "changelog `{changelog}` gave nothing for {KAFKA_RESTORE_STALL_MS} ms"
                ));
            }
            if progress_at.elapsed() >= Duration::from_millis(KAFKA_RESTORE_PROGRESS_MS) {
                progress_at = Instant::now();
                let left: i64 = readings.values().map(|reading| reading.left.max(0)).sum();
                tracing::info!(
                    component,
                    group = run.group(),
                    "kafka: restoring `{operator}` from `{changelog}`: {read} records read, \
                     about {left} left, {} s so far",
                    started.elapsed().as_secs()
                );
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    heard = Instant::now();
                    let Some(reading) = readings.get_mut(&message.partition()) else {
                        continue;
                    };
                    reading.records += 1;
                    reading.left -= 1;
                    read += 1;
                    weir_runtime::epoch::failpoint("kafka-restoring", read);
                    reading.gauge.set(reading.left.max(0));
                    let Some(key) = message.key() else { continue };
                    match message.payload() {
                        Some(value) => {
                            reading.bytes += (key.len() + value.len()) as u64;
                            reading.state.insert(key.to_vec(), value.to_vec());
                        }
                        None => {
                            reading.state.remove(key);
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    heard = Instant::now();
                    if let Some(reading) = readings.get_mut(&partition) {
                        if reading.open && held_back(&consumer, &everything, &changelog, partition)?
                        {
                            let now = Instant::now();
                            reading.held_back.get_or_insert((now, now));
                        } else {
                            reading.done = true;
                            reading.left = 0;
                            reading.gauge.set(0);
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(component, "kafka: restore from `{changelog}`: {error}");
                }
                None => {}
            }
            for reading in readings.values_mut() {
                if reading.done {
                    continue;
                }
                let Some((since, asked)) = reading.held_back else {
                    continue;
                };
                if asked.elapsed() < HELD_BACK_ASK {
                    continue;
                }
                if !held_back(&consumer, &everything, &changelog, reading.task)? {
                    // The transaction ended: read on from where the end was
                    // reported (a seek reports the end again once reached).
                    reading.held_back = None;
                    let from = consumer
                        .position()
                        .ok()
                        .and_then(|position| {
                            position
                                .find_partition(&changelog, reading.task)
                                .map(|element| element.offset())
                        })
                        .filter(|offset| matches!(offset, Offset::Offset(_)))
                        .unwrap_or(Offset::Beginning);
                    consumer
                        .seek(&changelog, reading.task, from, METADATA_TIMEOUT)
                        .map_err(|error| {
                            format!("cannot read on in changelog `{changelog}`: {error}")
                        })?;
                    continue;
                }
                if asked == since {
                    tracing::info!(
                        component,
                        group = run.group(),
                        "kafka: restoring `{operator}`: changelog `{changelog}`/{} has records \
                         after an open transaction (a member that died inside it: the brokers \
                         abort it within the transaction timeout); waiting to read them",
                        reading.task
                    );
                }
                reading.held_back = Some((since, Instant::now()));
                // Waiting on the brokers, not stalled.
                heard = Instant::now();
                if since.elapsed() >= Duration::from_millis(KAFKA_RESTORE_STALL_MS) {
                    return Err(format!(
                        "changelog `{changelog}`/{}: an open transaction held its records back \
                         for {KAFKA_RESTORE_STALL_MS} ms",
                        reading.task
                    ));
                }
            }
        }
        let (mut records, mut bytes, mut keys) = (0, 0, 0);
        for reading in readings.into_values() {
            records += reading.records;
            bytes += reading.bytes;
            keys += reading.state.len();
            run.hand_off(
                &operator,
                Handoff::Restore {
                    task: reading.task,
                    entries: reading.state.into_iter().collect(),
                },
            );
        }
        let elapsed = started.elapsed();
        let from_local = if local.is_empty() {
            String::new()
        } else {
            format!(
                "; tasks {local:?} from the local log, their changelog read from the last \
                 run's checkpoint on"
            )
        };
        tracing::info!(
            component,
            group = run.group(),
            elapsed_ms = elapsed.as_millis() as u64,
            "kafka: restored `{operator}` for tasks {tasks:?}: {keys} keys from {records} \
             records ({bytes} bytes) in {} ms{from_local}",
            elapsed.as_millis()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale_out::GroupPlan;

    fn config() -> ClientConfig {
        // No broker is reached: the checks come first.
        crate::kafka::client_config("127.0.0.1:9", &[], &Default::default())
    }

    #[test]
    fn a_stateless_run_needs_nothing_from_the_brokers() {
        let run = GroupPlan::new("g-prepare-stateless").run();
        let topics = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(prepare(&run, &config(), &topics), Ok(()));
        assert_eq!(run.tasks(), 0);
    }

    #[test]
    fn a_window_needs_one_named_input_topic() {
        let run = GroupPlan::new("g-prepare").run();
        run.add_state("per_user", &[], None);
        let two = vec!["a".to_owned(), "b".to_owned()];
        let why = prepare(&run, &config(), &two).unwrap_err();
        assert!(
            why.contains("reads one topic") && why.contains("a, b"),
            "{why}"
        );
        let pattern = vec!["^logs-.*".to_owned()];
        let why = prepare(&run, &config(), &pattern).unwrap_err();
        assert!(why.contains("not the pattern `^logs-.*`"), "{why}");
    }
}
