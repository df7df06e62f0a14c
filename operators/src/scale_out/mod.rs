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
//! The transactions themselves are the `kafka` sink's
//! (`crate::sinks::kafka::group`). A [`GroupRun`] is one planned run's
//! meeting point, shared by the source instance (it hands in the offsets
//! it logs at each barrier), its consumer thread (the group's metadata
//! after each rebalance; it waits here for the commit of the epoch that
//! holds a revoked partition's last offset) and the sinks' commit steps (each hands in its epoch; the
//! last one of an epoch runs the transaction). Runs are told apart by a
//! random id made when the pipeline is planned ([`GroupPlan`]): a sink
//! commit recovered from an earlier run's log carries that run's id and
//! publishes nothing, since the group's offsets, not weir's log, say where
//! this run resumes.
//!
//! Stateful operators (windows, dedups, thresholds) keep
//! each task's state apart and move it through a changelog topic; one
//! keyed otherwise than the input first sends its rows through a
//! repartition topic ([`state`], [`tasked`]).
//!
//! A process may run several shards (`shards`, 1 by default, as Kafka
//! Streams' `num.stream.threads`): it is still one member of the group,
//! with one consumer thread and one transaction per epoch; partition `p`
//! of every topic it reads is read on shard instance [`task_instance`]`(p)`,
//! and a stateful operator keeps task `p` on that same instance (its edges
//! from the source are forward ones), so a task's state is never split.
//!
//! Limits for now, checked when the pipeline is loaded (one `kafka`
//! source: when its instance starts): only `kafka` sinks, stateless
//! processors and keyed operators with a key (windows with `group_by`,
//! `dedup`, thresholds with `key`); see `docs/scale-out.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;

pub mod local;
mod state;
pub mod tasked;

pub use state::{changelog_topic, repartition_topic, ChangelogRecord, Handoff, REPARTITION_PORT};

/// Next offsets: (topic, partition, offset of the next record).
pub type Offsets = Vec<(String, i32, i64)>;

/// What a scaled-out `kafka` sink's records are published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSettings {
    /// The bootstrap servers.
    pub brokers: String,
    /// librdkafka's `compression.type`.
    pub compression: String,
    /// The sink's librdkafka `options`.
    pub options: std::collections::BTreeMap<String, String>,
}

/// The group and run a pipeline was planned for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// The consumer group (`[runtime] group`).
    pub group: String,
    /// This run's id: random, made when the pipeline is planned.
    pub run: u64,
    /// The run's data directory (`[runtime] data_dir`, or `--data-dir`):
    /// where a graceful stop leaves its checkpoint ([`local`]).
    pub data_dir: Option<std::path::PathBuf>,
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
            data_dir: None,
        }
    }

    /// This plan, its run's data directory `data_dir`.
    pub fn with_data_dir(self, data_dir: Option<std::path::PathBuf>) -> GroupPlan {
        GroupPlan { data_dir, ..self }
    }

    /// The run's meeting point in this process.
    pub fn run(&self) -> Arc<GroupRun> {
        GroupRun::of(self)
    }
}

/// Checks `[runtime] group`.
pub fn check_group(group: &str) -> Result<(), String> {
    if group.trim().is_empty() {
        return Err("`group` must name a Kafka consumer group".into());
    }
    Ok(())
}

/// The shard instance (of `instances`) that reads partition `partition`
/// of every topic a scaled-out source reads, and that holds task
/// `partition` of every stateful operator: `partition mod instances`.
pub fn task_instance(partition: i32, instances: usize) -> usize {
    usize::try_from(partition).unwrap_or(0) % instances.max(1)
}

/// The error a component that cannot run scaled out gets.
pub fn not_scalable_message() -> &'static str {
    "cannot run with `[runtime] group` (scale-out over Kafka): scaled-out pipelines have one \
     `kafka` source, `kafka` sinks, stateless processors (parse, filter, map, route, enrich) \
     and keyed operators (windows, dedup, threshold) for now; see docs/scale-out.md"
}

/// A planned scale-out run's meeting point in this process; see the
/// module docs.
pub struct GroupRun {
    plan: GroupPlan,
    /// The `kafka` sinks of the plan, by name: an epoch is complete when
    /// each handed it in.
    sinks: Mutex<BTreeSet<String>>,
    /// The first sink's producer settings, with its name: every sink's
    /// must be the same (they publish through one producer).
    producer: Mutex<Option<(String, ProducerSettings)>>,
    /// The source whose instances joined (only one source may).
    joined: Mutex<Option<String>>,
    /// The shard instances of each node (the process's shards).
    instances: AtomicUsize,
    /// Offsets logged at each barrier, by epoch, until their commit: every
    /// source instance's, merged.
    offsets: Mutex<BTreeMap<u64, Offsets>>,
    /// The group's metadata, as the consumer last saw it.
    metadata: Mutex<Option<Arc<ConsumerGroupMetadata>>>,
    /// Bumped with every new metadata; waited on by a retry.
    metadata_version: (Mutex<u64>, Condvar),
    /// Held while a transaction of the run is in flight
    /// ([`GroupRun::gate`]).
    gate: Mutex<()>,
    /// The last epoch whose transaction committed (or that needed none),
    /// and its signal.
    committed: (Mutex<u64>, Condvar),
    /// Why this run can commit no more, once it cannot.
    failed: Mutex<Option<String>>,
    /// The newest epoch whose offsets were logged: until its transaction
    /// committed (not merely began), offsets are pending.
    logged: AtomicU64,
    /// Set as a fence begins, before it waits for the transaction in
    /// flight: that transaction's retries stop.
    fencing: AtomicBool,
    /// The partitions the member holds now (assigned, and not yet given
    /// up): a transaction sends offsets only of these.
    held: Mutex<BTreeSet<(String, i32)>>,
    /// The stateful operators' side (`state`).
    states: state::States,
    /// Restores from the local log ([`local`]).
    local: local::Local,
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
                    producer: Mutex::default(),
                    joined: Mutex::default(),
                    instances: AtomicUsize::new(1),
                    offsets: Mutex::default(),
                    metadata: Mutex::default(),
                    metadata_version: (Mutex::new(0), Condvar::new()),
                    gate: Mutex::default(),
                    committed: (Mutex::new(0), Condvar::new()),
                    failed: Mutex::default(),
                    logged: AtomicU64::new(0),
                    fencing: AtomicBool::new(false),
                    held: Mutex::default(),
                    states: state::States::default(),
                    local: local::Local::default(),
                })
            })
            .clone()
    }

    /// The meeting point of `group`'s run `run`, if this process planned
    /// it.
    pub fn find(group: &str, run: u64) -> Option<Arc<GroupRun>> {
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

    /// Counts sink `name`, which publishes with `settings`, in every
    /// epoch's transaction; an error naming the option when they differ
    /// from an earlier sink's: the run's transactions go through one
    /// producer, with one client configuration and one compression.
    pub fn add_producing_sink(
        &self,
        name: &str,
        settings: ProducerSettings,
    ) -> Result<(), (&'static str, String)> {
        let mut first = lock(&self.producer);
        if let Some((other, seen)) = &*first {
            let differs = if seen.brokers != settings.brokers {
                Some("brokers")
            } else if seen.compression != settings.compression {
                Some("compression")
            } else if seen.options != settings.options {
                Some("options")
            } else {
                None
            };
            if let Some(option) = differs {
                return Err((
                    option,
                    format!(
                        "differs from sink `{other}`'s: a scaled-out pipeline publishes every \
                         `kafka` sink's records in one transaction through one producer, so \
                         its sinks share `brokers`, `compression` and `options`"
                    ),
                ));
            }
        } else {
            *first = Some((name.to_owned(), settings));
        }
        drop(first);
        self.add_sink(name);
        Ok(())
    }

    /// The sinks counted.
    pub fn sinks(&self) -> usize {
        lock(&self.sinks).len()
    }

    /// Joins an instance of source `name`; an error if another source
    /// joined already.
    pub fn attach_source(&self, name: &str) -> Result<(), String> {
        let mut joined = lock(&self.joined);
        match &*joined {
            Some(other) if other != name => {
                return Err(format!(
                    "a scaled-out pipeline reads through one `kafka` source (it may read \
                     several topics), and `{other}` is it"
                ));
            }
            Some(_) => {}
            None => *joined = Some(name.to_owned()),
        }
        drop(joined);
        if self.sinks() == 0 {
            return Err(
                "a scaled-out pipeline needs a `kafka` sink: its transactions carry \
                        the consumed offsets"
                    .into(),
            );
        }
        Ok(())
    }

    /// The offsets a source instance logged at `epoch`'s barrier (its
    /// partitions'; every instance hands its own in).
    pub fn set_offsets(&self, epoch: u64, offsets: Offsets) {
        lock(&self.offsets)
            .entry(epoch)
            .or_default()
            .extend(offsets);
        self.logged.fetch_max(epoch, Ordering::AcqRel);
    }

    /// Each node of the run has `instances` shard instances (the
    /// process's shards); every instance says so as it is made.
    pub fn set_instances(&self, instances: usize) {
        self.instances.store(instances.max(1), Ordering::Release);
    }

    /// The shard instances of each node (1 until one said).
    pub fn instances(&self) -> usize {
        self.instances.load(Ordering::Acquire)
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
        self.fencing.store(true, Ordering::Release);
        let gate = self.gate();
        self.fail(why);
        drop(gate);
    }

    /// Whether a fence began: a transaction in flight gives up.
    pub fn fencing(&self) -> bool {
        self.fencing.load(Ordering::Acquire)
    }

    /// The member was given `partitions`.
    pub fn hold(&self, partitions: &[(String, i32)]) {
        lock(&self.held).extend(partitions.iter().cloned());
    }

    /// The member gave `partitions` up (or lost them).
    pub fn release(&self, partitions: &[(String, i32)]) {
        let mut held = lock(&self.held);
        for partition in partitions {
            held.remove(partition);
        }
    }

    /// The partitions the member holds now.
    pub fn held(&self) -> Vec<(String, i32)> {
        lock(&self.held).iter().cloned().collect()
    }

    /// The partitions of `offsets` the member does not hold now.
    pub fn not_held(&self, offsets: &Offsets) -> Vec<(String, i32)> {
        let held = lock(&self.held);
        offsets
            .iter()
            .map(|(topic, partition, _)| (topic.clone(), *partition))
            .filter(|partition| !held.contains(partition))
            .collect()
    }

    /// Held by whoever runs one of the run's transactions, for its whole
    /// length (and by [`fence`](GroupRun::fence)).
    pub fn gate(&self) -> MutexGuard<'_, ()> {
        lock(&self.gate)
    }

    /// The plan.
    pub fn plan(&self) -> &GroupPlan {
        &self.plan
    }

    /// Takes the offsets logged at `epoch`'s barrier (forgetting older
    /// ones).
    pub fn take_offsets(&self, epoch: u64) -> Option<Offsets> {
        let mut logged = lock(&self.offsets);
        let mut offsets = logged.remove(&epoch);
        logged.retain(|&logged, _| logged > epoch);
        if let Some(offsets) = &mut offsets {
            // The instances' in one order, whichever logged first.
            offsets.sort_unstable();
        }
        offsets
    }

    /// The group's metadata as last seen, if any yet.
    pub fn metadata(&self) -> Option<Arc<ConsumerGroupMetadata>> {
        lock(&self.metadata).clone()
    }

    /// How many times the metadata was set.
    pub fn metadata_version(&self) -> u64 {
        *lock(&self.metadata_version.0)
    }

    /// Waits (at most a few seconds, or until `cancelled`) for metadata
    /// newer than `version`.
    pub fn wait_metadata_after(&self, version: u64, cancelled: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (current, changed) = &self.metadata_version;
        let mut seen = lock(current);
        while *seen == version && Instant::now() < deadline && !cancelled() {
            seen = changed
                .wait_timeout(seen, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Whether offsets logged at a barrier wait for their epoch's
    /// transaction.
    pub fn offsets_pending(&self) -> bool {
        self.committed() < self.logged.load(Ordering::Acquire)
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
            if *done >= self.logged.load(Ordering::Acquire) {
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

    /// Records that `epoch`'s transaction committed (or needed none).
    pub fn mark_committed(&self, epoch: u64) {
        let mut done = lock(&self.committed.0);
        *done = (*done).max(epoch);
        drop(done);
        self.committed.1.notify_all();
    }
}
