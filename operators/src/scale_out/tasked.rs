//! [`Tasked`]: what every keyed operator of a scaled-out run does with its
//! tasks, whatever state a task holds (docs/scale-out.md, "State that
//! moves").
//!
//! A row's task is the partition that a record keyed by the operator's key
//! would be in: the key a `kafka` sink with `key = KEY` writes
//! ([`row_key`]), partitioned as Java clients do ([`key_partition`]).
//! - When the source says the input topic is keyed by the operator's key
//!   (its `keyed_by`), the tasks are the input topic's partitions and rows
//!   are taken as they come. A row of a task this process does not hold
//!   means the input is not partitioned that way: the run fails, naming
//!   the group and the task, rather than keep its state in the wrong place.
//! - Otherwise the operator **repartitions**, as Kafka Streams does: each
//!   row from its inputs goes, in the epoch's transaction, to its task's
//!   partition of the operator's repartition topic (key: the row's key,
//!   value: the row in weir's encoding, [`encode_row`]); the source reads
//!   that topic back, as the group assigns its partitions, and its rows
//!   come in on the port after the inputs' ([`Tasked::sends_on`]).
//!
//! The tasks this shard instance holds come and go with the consumer
//! thread's handoffs ([`Handoff`]): a task given to the process is
//! restored from its changelog partition ([`TaskState::restore`]); one
//! given up hands in its last epoch's changes and goes. At every barrier
//! each task hands in what changed ([`TaskState::changes`]) to its
//! partition of the operator's changelog topic, in the epoch's
//! transaction ([`Tasked::snapshot`]). The local log holds nothing of the
//! tasks but at a graceful stop: the final snapshot holds every held
//! task's whole state ([`TaskState::entries`]), for a restart on the same
//! data directory (`super::local`).

use std::sync::Arc;

use weir_runtime::{OperatorError, ShardContext};

use super::local::{decode_local, encode_local, Entries};
use super::{task_instance, ChangelogRecord, GroupRun, Handoff};
use crate::kafka::{key_partition, row_key};
use crate::row::{encode_row, ArchivedRow, Value};

/// A task's changelog records: (key, value), `None` a tombstone.
pub type Changes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The key of a task's meta record (what is not one key's state: its
/// stream time, say).
pub const META_KEY: &[u8] = b"weir.task";

/// One task's state of a scaled-out keyed operator.
pub trait TaskState: Sized {
    /// What a task is made from: the operator's spec, its metrics handles.
    type Template;

    /// A task holding the state of its changelog partition's `entries`
    /// (each live key's last value, in no order; none: a new task).
    fn restore(template: &Self::Template, entries: Vec<(Vec<u8>, Vec<u8>)>)
        -> Result<Self, String>;

    /// The task's changelog records since the last call, in order: (key,
    /// value), `None` a tombstone.
    fn changes(&mut self) -> Result<Changes, OperatorError>;

    /// The task's whole state as the entries [`restore`] takes: every
    /// live key's value, as its last changelog record holds it, and the
    /// meta record. Called at a graceful stop's final barrier, just after
    /// [`changes`](TaskState::changes).
    ///
    /// [`restore`]: TaskState::restore
    fn entries(&mut self) -> Result<Entries, OperatorError>;
}

/// A held task.
#[derive(Debug)]
struct Slot<T> {
    state: T,
    /// Given up: its records so far belong to this epoch or earlier.
    revoked_at: Option<u64>,
}

/// Which operator a [`Tasked`] serves, and where its state goes.
#[derive(Debug, Clone)]
pub struct TaskedSetup {
    /// The operator's name.
    pub node: Arc<str>,
    /// What it is, for messages (`window`, `threshold`).
    pub kind: &'static str,
    /// Its key option's name, for messages (`group_by`, `key`).
    pub key_option: &'static str,
    /// The key's fields in its input rows.
    pub key_indices: Vec<usize>,
    /// The run.
    pub run: Arc<GroupRun>,
    /// The changelog topic.
    pub topic: Arc<str>,
    /// The repartition topic, and the input port its rows come back on;
    /// `None`: the input is keyed as the operator.
    pub repartition: Option<(Arc<str>, usize)>,
}

/// A scaled-out keyed operator's tasks on one shard instance; see the
/// module docs.
pub struct Tasked<T> {
    setup: TaskedSetup,
    /// This shard instance, and how many there are: it holds the tasks
    /// [`task_instance`] gives it.
    instance: usize,
    instances: usize,
    /// Held tasks, by number.
    slots: Vec<Option<Slot<T>>>,
    /// The run's handoff version last looked at.
    seen: u64,
    /// A buffer for rows' keys.
    key: String,
    /// Rows sent to the repartition topic since the last barrier.
    staged: Vec<ChangelogRecord>,
    /// The run stops: the next snapshot is the final one.
    stopping: bool,
}

impl<T> std::fmt::Debug for Tasked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasked")
            .field("node", &self.setup.node)
            .field("topic", &self.setup.topic)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl<T: TaskState> Tasked<T> {
    /// The tasks of `setup`'s operator on `context`'s shard instance.
    pub fn new(setup: TaskedSetup, context: &ShardContext) -> Tasked<T> {
        Tasked::on(setup, context.instance, context.instances)
    }

    /// The tasks of `setup`'s operator on shard instance `instance` of
    /// `instances`.
    pub fn on(setup: TaskedSetup, instance: usize, instances: usize) -> Tasked<T> {
        setup.run.set_instances(instances);
        Tasked {
            setup,
            instance,
            instances,
            slots: Vec::new(),
            seen: u64::MAX,
            key: String::new(),
            staged: Vec::new(),
            stopping: false,
        }
    }

    /// The run.
    pub fn run(&self) -> &Arc<GroupRun> {
        &self.setup.run
    }

    /// Fails the run, naming the operator.
    pub fn fail(&self, why: impl std::fmt::Display) {
        let TaskedSetup { kind, node, .. } = &self.setup;
        self.setup.run.fail(format!("{kind} `{node}`: {why}"));
    }

    /// Takes the handoffs the consumer thread left, if any: restores the
    /// tasks given to this instance (from `template`), marks those given
    /// up.
    pub fn take_handoffs(&mut self, template: &T::Template) {
        let version = self.setup.run.handoff_version();
        if version == self.seen {
            return;
        }
        self.seen = version;
        let handoffs = self
            .setup
            .run
            .take_handoffs(&self.setup.node, self.instance);
        for handoff in handoffs {
            match handoff {
                Handoff::Restore { task, entries } => match T::restore(template, entries) {
                    Ok(state) => {
                        let index = usize::try_from(task).unwrap_or(0);
                        if self.slots.len() <= index {
                            self.slots.resize_with(index + 1, || None);
                        }
                        self.slots[index] = Some(Slot {
                            state,
                            revoked_at: None,
                        });
                    }
                    Err(why) => self.fail(format_args!(
                        "the state of task {task} in changelog `{}` cannot be restored: {why}",
                        self.setup.topic
                    )),
                },
                Handoff::Revoke { task, epoch } => {
                    let slot = usize::try_from(task)
                        .ok()
                        .and_then(|index| self.slots.get_mut(index))
                        .and_then(Option::as_mut);
                    if let Some(slot) = slot {
                        slot.revoked_at = Some(epoch);
                    }
                }
            }
        }
    }

    /// The repartition topic when rows of `port` are to be sent on to it
    /// (they come from the operator's inputs, not back from the topic).
    pub fn sends_on(&self, port: usize) -> Option<Arc<str>> {
        match &self.setup.repartition {
            Some((topic, back)) if port < *back => Some(topic.clone()),
            _ => None,
        }
    }

    /// The task of `row`'s key.
    pub fn task_of(&mut self, row: &ArchivedRow) -> i32 {
        let key = row_key(row, &self.setup.key_indices, &mut self.key).unwrap_or_default();
        key_partition(key, self.setup.run.tasks())
    }

    /// The task `row` belongs to, if this instance holds it; otherwise
    /// the run fails (once), naming the key and the task.
    pub fn task_for(&mut self, row: &ArchivedRow) -> Option<&mut T> {
        let task = self.task_of(row);
        let held = usize::try_from(task)
            .ok()
            .and_then(|index| self.slots.get(index))
            .is_some_and(Option::is_some);
        if !held {
            self.misrouted(row, task);
            return None;
        }
        self.slots[task as usize]
            .as_mut()
            .map(|slot| &mut slot.state)
    }

    fn misrouted(&mut self, row: &ArchivedRow, task: i32) {
        if self.setup.run.failure().is_some() {
            return;
        }
        let TaskedSetup {
            kind, key_option, ..
        } = &self.setup;
        let key: Vec<Value> = self
            .setup
            .key_indices
            .iter()
            .map(|&index| row.get(index).to_value())
            .collect();
        let owner = task_instance(task, self.instances);
        let why = match &self.setup.repartition {
            _ if owner != self.instance => format!(
                "it reached shard instance {} of {}, and instance {owner} reads that partition: \
                 the {kind}'s input is not read straight from the source (a scaled-out {kind} \
                 reads its rows on the shard that read their records; docs/scale-out.md)",
                self.instance, self.instances
            ),
            Some((topic, _)) => format!(
                "partition {task} of repartition topic `{topic}`, which this process does not \
                 read: a record there was not written by this {kind}"
            ),
            None => format!(
                "partition {task} of the input topic, which this process does not read: the \
                 source's `keyed_by` says the input topic is keyed by the {kind}'s \
                 `{key_option}`, and it is not (leave `keyed_by` out to repartition; \
                 docs/scale-out.md)"
            ),
        };
        self.fail(format_args!("key {key:?} belongs to task {task} ({why})"));
    }

    /// Sends `row` to its task's partition of the repartition `topic`, in
    /// the next barrier's transaction.
    pub fn send_on(&mut self, topic: &Arc<str>, row: &ArchivedRow) {
        let key = row_key(row, &self.setup.key_indices, &mut self.key).unwrap_or_default();
        let partition = key_partition(key, self.setup.run.tasks());
        let key = key.to_vec();
        match encode_row(&row.to_row()) {
            Ok(value) => self.staged.push(ChangelogRecord {
                topic: topic.clone(),
                partition,
                key,
                value: Some(value),
            }),
            Err(error) => self.fail(format_args!(
                "a row cannot be encoded for `{topic}`: {error}"
            )),
        }
    }

    /// The held tasks' states.
    pub fn states(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten().map(|slot| &slot.state)
    }

    /// The held tasks' states, to change.
    pub fn states_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().flatten().map(|slot| &mut slot.state)
    }

    /// The operator's snapshot restored from the local log (`bytes`, of
    /// the last run's final epoch; empty: none): offered to the consumer
    /// thread, which restores the tasks the group gives this process from
    /// it when the last run's checkpoint says it may (`super::local`).
    pub fn restore_local(&self, bytes: &[u8]) -> Result<(), OperatorError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (epoch, tasks) = decode_local(bytes).map_err(OperatorError::other)?;
        self.setup.run.offer_local(&self.setup.node, epoch, tasks);
        Ok(())
    }

    /// The operator starts (after [`restore_local`](Tasked::restore_local),
    /// before any input): from its `on_start`.
    pub fn started(&self) {
        self.setup.run.instance_started();
    }

    /// The run stops (a graceful stop, from the operator's `on_stop`): the
    /// next barrier is the final one, whose snapshot holds the held tasks'
    /// state.
    pub fn stopping(&mut self) {
        self.stopping = true;
    }

    /// At `epoch`'s barrier: hands the rows sent on and every task's
    /// changes in for the epoch's transaction, then drops the tasks given
    /// up in or before `epoch`. Returns what the local log is to hold:
    /// nothing, except at a graceful stop's final barrier, where it is
    /// every task still held, whole ([`encode_local`]).
    pub fn snapshot(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let mut records = std::mem::take(&mut self.staged);
        for (number, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            let partition = number as i32;
            records.extend(
                slot.state
                    .changes()?
                    .into_iter()
                    .map(|(key, value)| ChangelogRecord {
                        topic: self.setup.topic.clone(),
                        partition,
                        key,
                        value,
                    }),
            );
        }
        self.setup.run.add_changelog(epoch, records);
        for slot in &mut self.slots {
            if slot
                .as_ref()
                .is_some_and(|slot| slot.revoked_at.is_some_and(|at| at <= epoch))
            {
                *slot = None;
            }
        }
        if !self.stopping {
            return Ok(Vec::new());
        }
        let mut tasks = Vec::new();
        for (number, slot) in self.slots.iter_mut().enumerate() {
            if let Some(slot) = slot {
                tasks.push((number as i32, slot.state.entries()?));
            }
        }
        encode_local(epoch, tasks).map_err(OperatorError::other)
    }
}

/// A scaled-out keyed operator's repartition topic, and where its rows
/// come back.
#[derive(Debug, Clone)]
pub struct Repartitioned {
    /// The topic.
    pub topic: Arc<str>,
    /// The `kafka` source that reads the topic back...
    pub source: String,
    /// ...on this output port.
    pub source_port: usize,
}

/// Where a scaled-out keyed operator's tasks come from, decided when it is
/// planned.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// The run.
    pub run: Arc<GroupRun>,
    /// Its changelog topic.
    pub changelog: Arc<str>,
    /// Its repartition topic, when its key is not the input's.
    pub repartition: Option<Repartitioned>,
}

impl TaskPlan {
    /// Plans operator `name` (a `kind`) reading `inputs`, keyed by the
    /// fields `key`, in `plan`'s run: Kafka Streams' rule, an operator
    /// keyed as its input is reads its tasks as they are, any other goes
    /// through a repartition topic keyed by its key. Its input is keyed by
    /// `key` when the source's `keyed_by` is `key` (its tasks are the
    /// input topic's partitions), or when its one input is a keyed
    /// operator of the run with the same key (its tasks are that
    /// operator's: its rows are on the shard, and in the process, that
    /// holds their task already).
    pub fn new(
        plan: &super::GroupPlan,
        name: &str,
        kind: &str,
        key: &[String],
        inputs: &[String],
    ) -> Result<TaskPlan, crate::row::OptionError> {
        let run = plan.run();
        let Some((source, keyed_by)) = run.source() else {
            return Err(crate::row::OptionError::new(
                "inputs",
                format!("a scaled-out {kind} reads from the pipeline's `kafka` source"),
            ));
        };
        if keyed_by == key {
            let changelog = run.add_state(name, key, None);
            return Ok(TaskPlan {
                run,
                changelog,
                repartition: None,
            });
        }
        let upstream = match inputs {
            [input] => run.keyed(input),
            _ => None,
        };
        if let Some((upstream_key, tasks)) = upstream.filter(|(upstream, _)| upstream == key) {
            let changelog = run.add_state(name, &upstream_key, tasks);
            return Ok(TaskPlan {
                run,
                changelog,
                repartition: None,
            });
        }
        let (changelog, topic, source_port) = run.add_repartitioned_state(name, key);
        Ok(TaskPlan {
            run,
            changelog,
            repartition: Some(Repartitioned {
                topic,
                source,
                source_port,
            }),
        })
    }

    /// The setup of this plan's operator `node` (a `kind`, keyed by its
    /// option `key_option`, the fields `key_indices` of its input), its
    /// repartition topic and port as `component::connect_tasked` wired
    /// them.
    pub fn setup(
        &self,
        node: Arc<str>,
        (kind, key_option): (&'static str, &'static str),
        key_indices: Vec<usize>,
        repartition: Option<(Arc<str>, usize)>,
    ) -> TaskedSetup {
        TaskedSetup {
            node,
            kind,
            key_option,
            key_indices,
            run: self.run.clone(),
            topic: self.changelog.clone(),
            repartition,
        }
    }
}

/// What the tasked operators' unit tests share: a compacted changelog
/// topic kept in memory.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use rkyv::rancor;

    use crate::row::{ArchivedRow, Row};
    use crate::scale_out::{GroupRun, Handoff};

    /// A compacted changelog topic: (partition, key) → value.
    pub(crate) type Changelog = BTreeMap<(i32, Vec<u8>), Vec<u8>>;

    /// Hands operator `node` of `run` each of tasks `0..tasks`, with the
    /// state `topic` holds of it.
    pub(crate) fn restore_all(run: &GroupRun, node: &str, tasks: u32, topic: &Changelog) {
        for task in 0..tasks as i32 {
            let entries = topic
                .iter()
                .filter(|((partition, _), _)| *partition == task)
                .map(|((_, key), value)| (key.clone(), value.clone()))
                .collect();
            run.hand_off(node, Handoff::Restore { task, entries });
        }
    }

    /// Applies `run`'s changelog records of `epoch` to `topic` as
    /// compaction would; how many there were.
    pub(crate) fn compact(run: &GroupRun, epoch: u64, topic: &mut Changelog) -> usize {
        let records = run.take_changelog(epoch);
        let count = records.len();
        for record in records {
            let key = (record.partition, record.key);
            match record.value {
                Some(value) => topic.insert(key, value),
                None => topic.remove(&key),
            };
        }
        count
    }

    /// Checks a final snapshot (`bytes`, of `epoch`) against the changelog
    /// `topic` compacted to that epoch: each task's local state holds
    /// exactly the live keys with their last values, so a restart that
    /// reads the changelog from the checkpoint on over it restores what a
    /// full read would. A task's meta record may be in the local state
    /// only (a task no row reached logged none).
    pub(crate) fn check_local(bytes: &[u8], epoch: u64, topic: &Changelog) {
        let (at, tasks) = crate::scale_out::local::decode_local(bytes).expect("local state");
        assert_eq!(at, epoch, "the final snapshot's epoch");
        let mut local = Changelog::new();
        for (task, entries) in tasks {
            for (key, value) in entries {
                let meta = key == super::META_KEY;
                let key = (task, key);
                if meta && !topic.contains_key(&key) {
                    continue;
                }
                assert!(
                    local.insert(key, value).is_none(),
                    "task {task}: a key twice"
                );
            }
        }
        assert_eq!(local.len(), topic.len(), "the local state's keys");
        assert!(local == *topic, "the local state is the changelog's");
    }

    /// `f` of `row`, archived.
    pub(crate) fn archived<R>(row: &Row, f: impl FnOnce(&ArchivedRow) -> R) -> R {
        let bytes = rkyv::to_bytes::<rancor::Error>(row).expect("a row");
        f(rkyv::access::<ArchivedRow, rancor::Error>(&bytes).expect("an archived row"))
    }

    /// `rows` in the rows' total order.
    pub(crate) fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
        rows.sort_by(|a, b| crate::row::cmp_slices(&a.values, &b.values));
        rows
    }
}
