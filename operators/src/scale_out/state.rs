//! Keyed state that moves with its task (docs/scale-out.md, "State that
//! moves"): what a scaled-out run's stateful operators, its source's
//! consumer thread and its transactions hand each other.
//!
//! A **task** is a partition of the input topic: a stateful operator keeps
//! the state of each task apart, the group moves tasks between processes,
//! and each operator's changelog topic (`GROUP-OPERATOR-changelog`,
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

use super::{lock, GroupRun};

/// One record of a changelog topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// The changelog topic.
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

/// The run's stateful side; see the module docs.
#[derive(Debug, Default)]
pub(super) struct States {
    /// Stateful operators, by name, with their changelog topics.
    operators: std::sync::Mutex<BTreeMap<String, Arc<str>>>,
    /// The input topic's partitions (the tasks); 0 until the consumer
    /// thread looked.
    tasks: AtomicU32,
    /// Changelog records handed in, by epoch.
    changelog: std::sync::Mutex<BTreeMap<u64, Vec<ChangelogRecord>>>,
    /// Handoffs not yet taken, by operator.
    handoffs: std::sync::Mutex<HashMap<String, Vec<Handoff>>>,
    /// Bumped with every handoff: an operator checks it per batch.
    version: AtomicU64,
}

/// The changelog topic of stateful operator `operator` of `group`.
pub fn changelog_topic(group: &str, operator: &str) -> String {
    format!("{group}-{operator}-changelog")
}

impl GroupRun {
    /// Registers stateful operator `name`; returns its changelog topic.
    pub fn add_state(&self, name: &str) -> Arc<str> {
        let topic: Arc<str> = changelog_topic(self.group(), name).into();
        lock(&self.states.operators).insert(name.to_owned(), topic.clone());
        topic
    }

    /// The stateful operators and their changelog topics.
    pub fn changelogs(&self) -> Vec<(String, Arc<str>)> {
        lock(&self.states.operators)
            .iter()
            .map(|(name, topic)| (name.clone(), topic.clone()))
            .collect()
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

    /// Hands `handoff` to operator `operator`.
    pub fn hand_off(&self, operator: &str, handoff: Handoff) {
        lock(&self.states.handoffs)
            .entry(operator.to_owned())
            .or_default()
            .push(handoff);
        self.states.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Tells every stateful operator that `tasks` were given up at `epoch`.
    pub fn revoke_tasks(&self, tasks: &[i32], epoch: u64) {
        if tasks.is_empty() {
            return;
        }
        let operators: Vec<String> = lock(&self.states.operators).keys().cloned().collect();
        let mut handoffs = lock(&self.states.handoffs);
        for operator in operators {
            let queue = handoffs.entry(operator).or_default();
            queue.extend(tasks.iter().map(|&task| Handoff::Revoke { task, epoch }));
        }
        drop(handoffs);
        self.states.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Bumped with every handoff.
    pub fn handoff_version(&self) -> u64 {
        self.states.version.load(Ordering::Acquire)
    }

    /// Takes operator `operator`'s handoffs, in the order given.
    pub fn take_handoffs(&self, operator: &str) -> Vec<Handoff> {
        lock(&self.states.handoffs)
            .remove(operator)
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
            &*run.add_state("per_host"),
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
        run.add_state("a");
        run.add_state("b");
        let before = run.handoff_version();
        let restore = Handoff::Restore {
            task: 2,
            entries: vec![(b"k".to_vec(), b"v".to_vec())],
        };
        run.hand_off("a", restore.clone());
        run.revoke_tasks(&[2, 5], 9);
        assert!(run.handoff_version() > before);
        let revoked = |task| Handoff::Revoke { task, epoch: 9 };
        assert_eq!(
            run.take_handoffs("a"),
            vec![restore, revoked(2), revoked(5)]
        );
        assert_eq!(run.take_handoffs("b"), vec![revoked(2), revoked(5)]);
        assert_eq!(run.take_handoffs("a"), Vec::new());
    }
}
