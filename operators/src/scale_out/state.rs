//! Keyed state that moves with its task (docs/scale-out.md, "State that
//! moves"): what a scaled-out run's stateful operators, its source's
//! consumer thread and its transactions hand each other.
//!
//! A **task** is a partition of the topic a stateful operator reads its
//! rows from: the input topic when the operator's key is the input's key
//! (the source's `keyed_by`), else the operator's **repartition topic**
//! (`GROUP-OPERATOR-repartition`, as many partitions as the input), to
//! which the operator itself sends each row, keyed by its group, in the
//! epoch's transaction ([`GroupRun::add_changelog`] carries those records
//! too), and which the source reads back on a port of its own
//! ([`REPARTITION_PORT`]) into the operator, as Kafka Streams' repartition
//! topics work. A stateful operator keeps the state of each task apart,
//! the group moves tasks between processes, and each operator's changelog
//! topic (`GROUP-OPERATOR-changelog`,
//! compacted, one partition per task) holds every task's state as keyed
//! records. The operator hands each epoch's changed records in at the
//! epoch's barrier ([`GroupRun::add_changelog`]); the epoch's transaction
//! publishes them with the output and the offsets
//! (`crate::sinks::kafka::group`). The consumer thread reads a task's
//! changelog partition (`read_committed`) before it reads the task's input
//! and hands the state to the operator ([`Handoff::Restore`]); when it
//! gives a task up, it tells the operator at which epoch
//! ([`Handoff::Revoke`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::{lock, task_instance, GroupRun};

/// The source's output port of the first repartition topic's rows (after
/// its main output and its dead letters); the next ones follow.
pub const REPARTITION_PORT: usize = 2;

/// One record of a changelog or repartition topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// The changelog (or repartition) topic.
    pub topic: Arc<str>,
    /// The task.
    pub partition: i32,
    /// The state's key (the operator's encoding).
    pub key: Vec<u8>,
    /// `None`: a tombstone (the key's state is gone).
    pub value: Option<Vec<u8>>,
}

/// What the consumer thread hands a stateful operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handoff {
    /// The task is now this process's, with the state its changelog
    /// partition holds: each live key's last value, in no order.
    Restore {
        /// The task (the input partition).
        task: i32,
        /// Each live key with its last value.
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// The task was given up: its records so far belong to `epoch` or
    /// earlier; once that epoch's changes are handed in, its state goes.
    Revoke {
        /// The task (the input partition).
        task: i32,
        /// The epoch its last records belong to.
        epoch: u64,
    },
}

/// A stateful operator's topics.
#[derive(Debug, Clone)]
struct Topics {
    changelog: Arc<str>,
    /// The topic whose partitions are its tasks (its repartition topic, or
    /// that of the keyed operator it follows); `None`: the input topic's.
    repartition: Option<Arc<str>>,
    /// The fields it is keyed by.
    key: Vec<String>,
}

/// The run's stateful side; see the module docs.
#[derive(Debug, Default)]
pub(super) struct States {
    /// Stateful operators, by name, with their topics.
    operators: std::sync::Mutex<BTreeMap<String, Topics>>,
    /// Operators with a repartition topic, in the order of their source
    /// ports (from [`REPARTITION_PORT`]).
    repartitions: std::sync::Mutex<Vec<(String, Arc<str>)>>,
    /// The source's name and `keyed_by`, once it was planned.
    source: std::sync::Mutex<Option<(String, Vec<String>)>>,
    /// The input topic's partitions (the tasks); 0 until the consumer
    /// thread looked.
    tasks: AtomicU32,
    /// Changelog records handed in, by epoch.
    changelog: std::sync::Mutex<BTreeMap<u64, Vec<ChangelogRecord>>>,
    /// Handoffs not yet taken, by operator and shard instance (the one
    /// that holds the task, [`super::task_instance`]).
    handoffs: std::sync::Mutex<HashMap<(String, usize), Vec<Handoff>>>,
    /// Bumped with every handoff: an operator checks it per batch.
    version: AtomicU64,
}

/// The changelog topic of stateful operator `operator` of `group`.
pub fn changelog_topic(group: &str, operator: &str) -> String {
    format!("{group}-{operator}-changelog")
}

/// The repartition topic of stateful operator `operator` of `group`.
pub fn repartition_topic(group: &str, operator: &str) -> String {
    format!("{group}-{operator}-repartition")
}

/// The tasks of an operator among `partitions`.
fn tasks_in(
    topics: &Topics,
    repartitions: &[(String, Arc<str>)],
    partitions: &[(String, i32)],
) -> Vec<i32> {
    partitions
        .iter()
        .filter(|(topic, _)| match &topics.repartition {
            Some(own) => **own == **topic,
            None => !repartitions.iter().any(|(_, other)| **other == **topic),
        })
        .map(|(_, partition)| *partition)
        .collect()
}

impl GroupRun {
    /// Registers stateful operator `name`, keyed by the fields `key`,
    /// whose tasks are the partitions of `tasks` (`None`: of the input
    /// topic); returns its changelog topic.
    pub fn add_state(&self, name: &str, key: &[String], tasks: Option<Arc<str>>) -> Arc<str> {
        let changelog: Arc<str> = changelog_topic(self.group(), name).into();
        let topics = Topics {
            changelog: changelog.clone(),
            repartition: tasks,
            key: key.to_vec(),
        };
        lock(&self.states.operators).insert(name.to_owned(), topics);
        changelog
    }

    /// Registers stateful operator `name`, keyed by the fields `key`,
    /// whose rows go through its repartition topic; returns its changelog
    /// topic, its repartition topic and the source's output port that
    /// carries that topic's rows.
    pub fn add_repartitioned_state(
        &self,
        name: &str,
        key: &[String],
    ) -> (Arc<str>, Arc<str>, usize) {
        let repartition: Arc<str> = repartition_topic(self.group(), name).into();
        let changelog = self.add_state(name, key, Some(repartition.clone()));
        let mut repartitions = lock(&self.states.repartitions);
        let port = match repartitions.iter().position(|(other, _)| other == name) {
            Some(at) => at,
            None => {
                repartitions.push((name.to_owned(), repartition.clone()));
                repartitions.len() - 1
            }
        };
        (changelog, repartition, REPARTITION_PORT + port)
    }

    /// Stateful operator `name`'s key and the topic whose partitions are
    /// its tasks (`None`: the input topic), if it is one.
    pub fn keyed(&self, name: &str) -> Option<(Vec<String>, Option<Arc<str>>)> {
        lock(&self.states.operators)
            .get(name)
            .map(|topics| (topics.key.clone(), topics.repartition.clone()))
    }

    /// The stateful operators and their changelog topics.
    pub fn changelogs(&self) -> Vec<(String, Arc<str>)> {
        lock(&self.states.operators)
            .iter()
            .map(|(name, topics)| (name.clone(), topics.changelog.clone()))
            .collect()
    }

    /// The operators with a repartition topic, and the topic, in the order
    /// of their source ports (from [`REPARTITION_PORT`]).
    pub fn repartitions(&self) -> Vec<(String, Arc<str>)> {
        lock(&self.states.repartitions).clone()
    }

    /// Each stateful operator, its changelog topic and its tasks among
    /// `partitions` (of the input and repartition topics).
    pub fn tasks_of(&self, partitions: &[(String, i32)]) -> Vec<(String, Arc<str>, Vec<i32>)> {
        let repartitions = self.repartitions();
        lock(&self.states.operators)
            .iter()
            .map(|(name, topics)| {
                let tasks = tasks_in(topics, &repartitions, partitions);
                (name.clone(), topics.changelog.clone(), tasks)
            })
            .collect()
    }

    /// The run's source is `name`, its input topic keyed by the fields
    /// `keyed_by` (empty: not said).
    pub fn set_source(&self, name: &str, keyed_by: &[String]) {
        *lock(&self.states.source) = Some((name.to_owned(), keyed_by.to_vec()));
    }

    /// The source's name and `keyed_by`, once it was planned.
    pub fn source(&self) -> Option<(String, Vec<String>)> {
        lock(&self.states.source).clone()
    }

    /// Whether the run has stateful operators.
    pub fn stateful(&self) -> bool {
        !lock(&self.states.operators).is_empty()
    }

    /// The input topic has `tasks` partitions (set before any record is
    /// read).
    pub fn set_tasks(&self, tasks: u32) {
        self.states.tasks.store(tasks, Ordering::Release);
    }

    /// The input topic's partitions; 0 before the consumer looked.
    pub fn tasks(&self) -> u32 {
        self.states.tasks.load(Ordering::Acquire)
    }

    /// Adds changelog records to `epoch`'s transaction.
    pub fn add_changelog(&self, epoch: u64, records: Vec<ChangelogRecord>) {
        if records.is_empty() {
            return;
        }
        lock(&self.states.changelog)
            .entry(epoch)
            .or_default()
            .extend(records);
    }

    /// Takes `epoch`'s changelog records (forgetting older ones).
    pub fn take_changelog(&self, epoch: u64) -> Vec<ChangelogRecord> {
        let mut changelog = lock(&self.states.changelog);
        let records = changelog.remove(&epoch).unwrap_or_default();
        changelog.retain(|&logged, _| logged > epoch);
        records
    }

    /// Hands `handoff` to operator `operator`'s instance that holds its
    /// task.
    pub fn hand_off(&self, operator: &str, handoff: Handoff) {
        let task = match &handoff {
            Handoff::Restore { task, .. } | Handoff::Revoke { task, .. } => *task,
        };
        let instance = task_instance(task, self.instances());
        lock(&self.states.handoffs)
            .entry((operator.to_owned(), instance))
            .or_default()
            .push(handoff);
        self.states.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Tells every stateful operator which of its tasks are among
    /// `partitions`, given up at `epoch`.
    pub fn revoke_tasks(&self, partitions: &[(String, i32)], epoch: u64) {
        if partitions.is_empty() {
            return;
        }
        let operators = self.tasks_of(partitions);
        let instances = self.instances();
        let mut handoffs = lock(&self.states.handoffs);
        for (operator, _, tasks) in operators {
            for task in tasks {
                let instance = task_instance(task, instances);
                let queue = handoffs.entry((operator.clone(), instance)).or_default();
                queue.push(Handoff::Revoke { task, epoch });
            }
        }
        drop(handoffs);
        self.states.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Bumped with every handoff.
    pub fn handoff_version(&self) -> u64 {
        self.states.version.load(Ordering::Acquire)
    }

    /// Takes the handoffs of operator `operator`'s shard instance
    /// `instance`, in the order given.
    pub fn take_handoffs(&self, operator: &str, instance: usize) -> Vec<Handoff> {
        lock(&self.states.handoffs)
            .remove(&(operator.to_owned(), instance))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale_out::GroupPlan;

    fn record(partition: i32, key: &str) -> ChangelogRecord {
        ChangelogRecord {
            topic: "t".into(),
            partition,
            key: key.as_bytes().to_vec(),
            value: None,
        }
    }

    #[test]
    fn changelog_records_go_with_their_epoch() {
        let run = GroupPlan::new("g-state").run();
        assert_eq!(
            &*run.add_state("per_host", &[], None),
            "g-state-per_host-changelog",
            "Kafka Streams' name shape"
        );
        run.add_changelog(3, vec![record(0, "a")]);
        run.add_changelog(4, vec![record(1, "b")]);
        run.add_changelog(4, vec![record(2, "c")]);
        run.add_changelog(5, Vec::new());
        assert_eq!(run.take_changelog(4), vec![record(1, "b"), record(2, "c")]);
        // Epoch 3's are older than a taken epoch: gone.
        assert_eq!(run.take_changelog(3), Vec::new());
    }

    #[test]
    fn a_revocation_reaches_every_stateful_operator() {
        let run = GroupPlan::new("g-handoff").run();
        run.add_state("a", &[], None);
        run.add_state("b", &[], None);
        let before = run.handoff_version();
        let restore = Handoff::Restore {
            task: 2,
            entries: vec![(b"k".to_vec(), b"v".to_vec())],
        };
        run.hand_off("a", restore.clone());
        run.revoke_tasks(&[("in".to_owned(), 2), ("in".to_owned(), 5)], 9);
        assert!(run.handoff_version() > before);
        let revoked = |task| Handoff::Revoke { task, epoch: 9 };
        assert_eq!(
            run.take_handoffs("a", 0),
            vec![restore, revoked(2), revoked(5)]
        );
        assert_eq!(run.take_handoffs("b", 0), vec![revoked(2), revoked(5)]);
        assert_eq!(run.take_handoffs("a", 0), Vec::new());
    }

    #[test]
    fn with_several_shards_a_task_goes_to_the_instance_that_reads_its_partition() {
        let run = GroupPlan::new("g-instances").run();
        run.add_state("a", &[], None);
        run.set_instances(3);
        let restore = |task| Handoff::Restore {
            task,
            entries: Vec::new(),
        };
        for task in 0..6 {
            run.hand_off("a", restore(task));
        }
        run.revoke_tasks(&[("in".to_owned(), 4)], 7);
        assert_eq!(run.take_handoffs("a", 0), vec![restore(0), restore(3)]);
        assert_eq!(
            run.take_handoffs("a", 1),
            vec![
                restore(1),
                restore(4),
                Handoff::Revoke { task: 4, epoch: 7 }
            ]
        );
        assert_eq!(run.take_handoffs("a", 2), vec![restore(2), restore(5)]);
    }
}
