//! A restart on the same data directory restores its tasks from the local
//! log (docs/scale-out.md, "Restarting on the same machine"), as Kafka
//! Streams restores from its local state store and the `.checkpoint` file
//! of its changelog offsets.
//!
//! - **At a graceful stop** each keyed operator logs, in its final
//!   epoch's snapshot, the whole state of every task it still holds, as
//!   changelog entries ([`encode_local`]); every other epoch it logs
//!   nothing locally (its state is in the changelog). Once that epoch's
//!   transaction committed, the consumer thread writes the **checkpoint**
//!   ([`Checkpoint`], `DATA_DIR/scale-out.checkpoint`): the epoch, and
//!   for each held task's changelog partition its last stable offset
//!   then: the offset up to which the logged state is the changelog's.
//! - **On restart** the runtime restores each operator's final snapshot
//!   from the log; the operator offers it here
//!   ([`GroupRun::offer_local`]). The consumer thread takes the
//!   checkpoint out of the data directory before it joins (so a later
//!   crash never finds it); when the group gives it a task whose state it
//!   has at the checkpoint's epoch, it reads the task's changelog
//!   partition from the checkpoint's offset only, applying what others
//!   wrote since (the task may have moved away and back) over the local
//!   state ([`GroupRun::local_start`]).
//!
//! Why that is the task's state: its changelog records are absolute (a
//! key's whole value, or a tombstone), so the local state (the compaction
//! of every record below the checkpoint's offset) with the records from
//! that offset on applied in order is the compaction of the whole
//! partition, which is what a full restore reads. Starting lower than
//! needed would be harmless for the same reason; starting higher is
//! prevented by taking the offsets after the final epoch committed and
//! using the checkpoint only with a snapshot of that very epoch.
//! Compaction may drop a tombstone once it is older than the topic's
//! `delete.retention.ms`: a checkpoint older than that is not used.
//! A crash (kill -9) leaves no checkpoint: its tasks are restored from the
//! changelog, as Kafka Streams does under exactly-once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rkyv::rancor;
use serde::{Deserialize, Serialize};

use super::{lock, GroupRun};
use crate::limits::{KAFKA_LOCAL_STATE_KEEP_MS, KAFKA_LOCAL_STATE_WAIT_MS};

/// A task's state as changelog entries: each live key and its value.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The checkpoint's file in the data directory.
pub const CHECKPOINT_FILE: &str = "scale-out.checkpoint";

/// What a run that stopped gracefully left for the next run on its data
/// directory; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The group it ran in.
    pub group: String,
    /// Its final epoch: the operators' logged state is of this epoch.
    pub epoch: u64,
    /// When it was written (ms since the Unix epoch).
    pub written_ms: u64,
    /// Changelog topic → task → the partition's last stable offset after
    /// the final epoch committed.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// The milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `checkpoint` into `dir`, durably (a temporary file, synced,
/// renamed over the old one, the directory synced).
pub fn write_checkpoint(dir: &Path, checkpoint: &Checkpoint) -> Result<(), String> {
    let path = checkpoint_path(dir);
    let temporary = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(checkpoint).map_err(|error| error.to_string())?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, &text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        sync_dir(dir)
    };
    write().map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Takes the checkpoint of `group` out of `dir`: reads it and removes the
/// file, so that it serves one restart only. A missing file is `None`; a
/// damaged one, or one of another group, is logged and `None` (its tasks
/// are restored from the changelog).
pub fn take_checkpoint(dir: &Path, group: &str) -> Option<Checkpoint> {
    let path = checkpoint_path(dir);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(
                group,
                "kafka: cannot read {}: {error}; every task is restored from its changelog",
                path.display()
            );
            return None;
        }
    };
    if let Err(error) = std::fs::remove_file(&path).and_then(|()| sync_dir(dir)) {
        // Used now, it could be used again after a crash: not at all.
        tracing::warn!(
            group,
            "kafka: cannot remove {}: {error}; every task is restored from its changelog",
            path.display()
        );
        return None;
    }
    match serde_json::from_slice::<Checkpoint>(&text) {
        Ok(checkpoint) if checkpoint.group == group => Some(checkpoint),
        Ok(checkpoint) => {
            tracing::warn!(
                group,
                "kafka: {} is of group `{}`, not this run's: every task is restored from its \
                 changelog",
                path.display(),
                checkpoint.group
            );
            None
        }
        Err(error) => {
            tracing::warn!(
                group,
                "kafka: {} is damaged ({error}): every task is restored from its changelog",
                path.display()
            );
            None
        }
    }
}

/// An operator's tasks as its final snapshot logs them.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct LocalTasks {
    epoch: u64,
    tasks: Vec<(i32, Entries)>,
}

/// The final snapshot of an operator holding `tasks` at `epoch`.
pub fn encode_local(epoch: u64, tasks: Vec<(i32, Entries)>) -> Result<Vec<u8>, String> {
    rkyv::to_bytes::<rancor::Error>(&LocalTasks { epoch, tasks })
        .map(|bytes| bytes.to_vec())
        .map_err(|error| format!("the tasks' local state: {error}"))
}

/// The epoch and tasks of a snapshot from [`encode_local`].
pub fn decode_local(bytes: &[u8]) -> Result<(u64, Vec<(i32, Entries)>), String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<LocalTasks, rancor::BoxedError>(&aligned)
        .map(|LocalTasks { epoch, tasks }| (epoch, tasks))
        .map_err(|error| format!("the tasks' local state: {error}"))
}

/// The run's side of local restores.
#[derive(Debug, Default)]
pub(super) struct Local {
    inner: Mutex<LocalInner>,
    changed: Condvar,
    /// Unused local state is kept for now ([`GroupRun::drop_unused_local`]
    /// looks no further without it).
    keeping: AtomicBool,
}

#[derive(Debug, Default)]
struct LocalInner {
    /// The consumer thread looked for the checkpoint.
    looked: bool,
    checkpoint: Option<Checkpoint>,
    /// Changelog topic → its `delete.retention.ms`, where read.
    retention_ms: HashMap<String, i64>,
    /// Operator → the epoch of its logged state, and its tasks' entries.
    offered: HashMap<String, (u64, HashMap<i32, Entries>)>,
    /// Operator instances that restored what the log held (or nothing).
    started: usize,
    /// Unused local state is dropped after this.
    keep_until: Option<Instant>,
}

impl GroupRun {
    /// The data directory, where the checkpoint is.
    fn data_dir(&self) -> Option<&Path> {
        self.plan().data_dir.as_deref()
    }

    /// Operator `operator`'s snapshot restored from the local log held
    /// its `tasks` at `epoch` ([`decode_local`]).
    pub fn offer_local(&self, operator: &str, epoch: u64, tasks: Vec<(i32, Entries)>) {
        let mut local = lock(&self.local.inner);
        if local.looked && local.checkpoint.is_none() {
            return;
        }
        let (at, held) = local
            .offered
            .entry(operator.to_owned())
            .or_insert_with(|| (epoch, HashMap::new()));
        *at = (*at).min(epoch);
        held.extend(tasks);
    }

    /// An operator instance restored what the local log held (or had
    /// nothing): called from its `on_start`.
    pub fn instance_started(&self) {
        lock(&self.local.inner).started += 1;
        self.local.changed.notify_all();
    }

    /// Takes the checkpoint out of the data directory (the consumer
    /// thread, before it joins); whether there was one.
    pub fn load_checkpoint(&self) -> bool {
        let checkpoint = self
            .data_dir()
            .and_then(|dir| take_checkpoint(dir, self.group()));
        let mut local = lock(&self.local.inner);
        local.looked = true;
        if let Some(checkpoint) = &checkpoint {
            let tasks: usize = checkpoint.offsets.values().map(BTreeMap::len).sum();
            tracing::info!(
                group = self.group(),
                "kafka: found the checkpoint of the last run (epoch {}, {tasks} tasks): tasks \
                 it holds are restored from the local log",
                checkpoint.epoch
            );
            local.keep_until =
                Some(Instant::now() + Duration::from_millis(KAFKA_LOCAL_STATE_KEEP_MS));
            self.local.keeping.store(true, Ordering::Release);
        } else {
            local.offered.clear();
        }
        local.checkpoint = checkpoint;
        local.checkpoint.is_some()
    }

    /// Changelog topic `changelog` keeps tombstones for `ms`
    /// (`delete.retention.ms`).
    pub fn set_tombstone_retention(&self, changelog: &str, ms: i64) {
        lock(&self.local.inner)
            .retention_ms
            .insert(changelog.to_owned(), ms);
    }

    /// The changelog topics the checkpoint names.
    pub fn checkpointed_changelogs(&self) -> Vec<String> {
        lock(&self.local.inner)
            .checkpoint
            .as_ref()
            .map(|checkpoint| checkpoint.offsets.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Where to read task `task` of `operator`'s `changelog` from, and the
    /// state to read it over, when the local log has the task's state of
    /// the checkpoint's epoch: (the checkpoint's offset, the entries),
    /// taken out. `None`: a full restore. Waits (up to
    /// [`KAFKA_LOCAL_STATE_WAIT_MS`], or until `stop`) for every operator
    /// instance to have offered its state.
    pub fn local_start(
        &self,
        operator: &str,
        changelog: &str,
        task: i32,
        stop: &AtomicBool,
    ) -> Option<(i64, Entries)> {
        let mut local = lock(&self.local.inner);
        let offset = *local
            .checkpoint
            .as_ref()?
            .offsets
            .get(changelog)?
            .get(&task)?;
        let expected = self.changelogs().len() * self.instances();
        let deadline = Instant::now() + Duration::from_millis(KAFKA_LOCAL_STATE_WAIT_MS);
        while local.started < expected && Instant::now() < deadline {
            if stop.load(Ordering::Acquire) {
                return None;
            }
            local = self
                .local
                .changed
                .wait_timeout(local, Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let checkpoint = local.checkpoint.as_ref()?;
        let (epoch, written_ms) = (checkpoint.epoch, checkpoint.written_ms);
        let age_ms = i64::try_from(now_ms().saturating_sub(written_ms)).unwrap_or(i64::MAX);
        let retention = local.retention_ms.get(changelog).copied();
        if retention.is_none_or(|retention| age_ms >= retention) {
            tracing::info!(
                group = self.group(),
                "kafka: the checkpoint is {age_ms} ms old and `{changelog}` keeps tombstones \
                 for {retention:?} ms: task {task} of `{operator}` is restored from the \
                 changelog"
            );
            return None;
        }
        let (logged, tasks) = local.offered.get_mut(operator)?;
        if *logged != epoch {
            tracing::info!(
                group = self.group(),
                "kafka: the local log holds `{operator}` at epoch {logged}, the checkpoint is \
                 of epoch {epoch}: task {task} is restored from the changelog"
            );
            return None;
        }
        tasks.remove(&task).map(|entries| (offset, entries))
    }

    /// Drops the local state no task took, once
    /// [`KAFKA_LOCAL_STATE_KEEP_MS`] passed since the checkpoint was
    /// found (the group gave those tasks to other members).
    pub fn drop_unused_local(&self) {
        if !self.local.keeping.load(Ordering::Acquire) {
            return;
        }
        let mut local = lock(&self.local.inner);
        let Some(until) = local.keep_until else {
            return;
        };
        if Instant::now() < until {
            return;
        }
        local.keep_until = None;
        local.checkpoint = None;
        self.local.keeping.store(false, Ordering::Release);
        let unused: BTreeMap<String, Vec<i32>> = std::mem::take(&mut local.offered)
            .into_iter()
            .map(|(operator, (_, tasks))| {
                let mut tasks: Vec<i32> = tasks.into_keys().collect();
                tasks.sort_unstable();
                (operator, tasks)
            })
            .filter(|(_, tasks)| !tasks.is_empty())
            .collect();
        if !unused.is_empty() {
            tracing::info!(
                group = self.group(),
                "kafka: dropped the local state of tasks the group gave to others: {unused:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale_out::GroupPlan;

    fn checkpoint(group: &str) -> Checkpoint {
        Checkpoint {
            group: group.to_owned(),
            epoch: 41,
            written_ms: now_ms(),
            offsets: BTreeMap::from([("g-c-changelog".to_owned(), BTreeMap::from([(3, 1_234)]))]),
        }
    }

    #[test]
    fn a_checkpoint_serves_one_restart() {
        let dir = tempfile::tempdir().expect("a directory");
        let written = checkpoint("g");
        write_checkpoint(dir.path(), &written).expect("written");
        assert_eq!(take_checkpoint(dir.path(), "g"), Some(written));
        assert_eq!(take_checkpoint(dir.path(), "g"), None, "removed once taken");
    }

    #[test]
    fn a_damaged_or_foreign_checkpoint_is_not_used_and_is_removed() {
        let dir = tempfile::tempdir().expect("a directory");
        std::fs::write(dir.path().join(CHECKPOINT_FILE), b"{ not json").expect("written");
        assert_eq!(take_checkpoint(dir.path(), "g"), None);
        assert!(!dir.path().join(CHECKPOINT_FILE).exists());
        write_checkpoint(dir.path(), &checkpoint("other")).expect("written");
        assert_eq!(take_checkpoint(dir.path(), "g"), None);
        assert!(!dir.path().join(CHECKPOINT_FILE).exists());
    }

    #[test]
    fn local_state_round_trips() {
        let tasks = vec![(3, vec![(b"k".to_vec(), b"v".to_vec())]), (7, Vec::new())];
        let bytes = encode_local(9, tasks.clone()).expect("encoded");
        assert_eq!(decode_local(&bytes), Ok((9, tasks)));
        assert!(decode_local(&bytes[..bytes.len() / 2]).is_err());
    }

    fn run_with_checkpoint(
        name: &str,
        dir: &Path,
        checkpoint: &Checkpoint,
    ) -> std::sync::Arc<GroupRun> {
        let mut plan = GroupPlan::new(name);
        plan.data_dir = Some(dir.to_path_buf());
        let run = plan.run();
        run.add_state("c", &[], None);
        write_checkpoint(dir, checkpoint).expect("written");
        run
    }

    #[test]
    fn a_task_starts_from_the_checkpoint_with_the_state_of_its_epoch() {
        let dir = tempfile::tempdir().expect("a directory");
        let mut at = checkpoint("g-local");
        at.offsets = BTreeMap::from([(
            "g-local-c-changelog".to_owned(),
            BTreeMap::from([(3, 1_234), (4, 9)]),
        )]);
        let run = run_with_checkpoint("g-local", dir.path(), &at);
        let entries = vec![(b"k".to_vec(), b"v".to_vec())];
        run.offer_local("c", 41, vec![(3, entries.clone()), (5, entries.clone())]);
        run.instance_started();
        assert!(run.load_checkpoint());
        run.set_tombstone_retention("g-local-c-changelog", 86_400_000);
        let stop = AtomicBool::new(false);
        assert_eq!(
            run.local_start("c", "g-local-c-changelog", 3, &stop),
            Some((1_234, entries))
        );
        assert_eq!(
            run.local_start("c", "g-local-c-changelog", 3, &stop),
            None,
            "taken once"
        );
        assert_eq!(
            run.local_start("c", "g-local-c-changelog", 4, &stop),
            None,
            "not logged"
        );
        assert_eq!(
            run.local_start("c", "g-local-c-changelog", 5, &stop),
            None,
            "not checkpointed"
        );
    }

    #[test]
    fn state_of_another_epoch_or_past_the_tombstone_retention_is_not_used() {
        let dir = tempfile::tempdir().expect("a directory");
        let changelog = "g-stale-c-changelog";
        let mut at = checkpoint("g-stale");
        at.offsets = BTreeMap::from([(changelog.to_owned(), BTreeMap::from([(1, 5), (2, 6)]))]);
        let run = run_with_checkpoint("g-stale", dir.path(), &at);
        let entries = vec![(b"k".to_vec(), b"v".to_vec())];
        run.offer_local("c", 40, vec![(1, entries.clone())]);
        run.instance_started();
        assert!(run.load_checkpoint());
        run.set_tombstone_retention(changelog, 86_400_000);
        let stop = AtomicBool::new(false);
        assert_eq!(
            run.local_start("c", changelog, 1, &stop),
            None,
            "epoch 40, not 41"
        );

        let dir = tempfile::tempdir().expect("a directory");
        let changelog = "g-old-c-changelog";
        let mut at = checkpoint("g-old");
        at.written_ms -= 10_000;
        at.offsets = BTreeMap::from([(changelog.to_owned(), BTreeMap::from([(1, 5)]))]);
        let run = run_with_checkpoint("g-old", dir.path(), &at);
        run.offer_local("c", 41, vec![(1, entries)]);
        run.instance_started();
        assert!(run.load_checkpoint());
        assert_eq!(
            run.local_start("c", changelog, 1, &stop),
            None,
            "retention unknown"
        );
        run.set_tombstone_retention(changelog, 5_000);
        assert_eq!(
            run.local_start("c", changelog, 1, &stop),
            None,
            "10 s old, 5 s kept"
        );
    }

    #[test]
    fn without_a_checkpoint_offered_state_is_dropped() {
        let dir = tempfile::tempdir().expect("a directory");
        let mut plan = GroupPlan::new("g-none");
        plan.data_dir = Some(dir.path().to_path_buf());
        let run = plan.run();
        run.add_state("c", &[], None);
        assert!(!run.load_checkpoint());
        run.offer_local("c", 41, vec![(1, Vec::new())]);
        assert!(lock(&run.local.inner).offered.is_empty());
    }
}
