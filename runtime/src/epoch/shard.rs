//! A shard's part of the protocol: its WAL, which of its node instances have
//! finished which epoch, and the sink commits it owes.
//!
//! Node instances call [`ShardEpochs::append`] to log positions, snapshots
//! and pre-commits, and [`ShardEpochs::report`] once they are done with an
//! epoch. The shard's epoch task ([`ShardEpochs::run`]) turns reports into
//! "epoch `n` durable on this shard" (after awaiting the WAL), in epoch
//! order, and runs the sinks' commits once the coordinator committed their
//! epoch.
//!
//! Appends never fail because the WAL has too much staged
//! (`AppendError::Backpressure`, at 64 MiB): the poll of a source that
//! logs its input (an intake source) and each replayed record first wait
//! without blocking the shard ([`ShardEpochs::make_room`], above half the
//! limit), and an append that
//! still meets the limit waits for durability, blocking the shard, then
//! appends again. A backlog, or input faster than the disk, slows down to
//! the disk instead of failing the run.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_wal::limits::MAX_PAYLOAD_BYTES;
use weir_wal::{AppendError, Lsn, RecordType, Wal};

use super::{
    encode_record_into, failpoint, EpochShared, SinkSteps, RECORD_HEADER_BYTES, SINK_COMMITTED,
};
use crate::error::NodeFailure;
use crate::limits::WAL_STAGED_WAIT_BYTES;
use crate::metrics::wired::SinkMetrics;

/// How often the epoch task looks for work when it has none.
const TICK: Duration = Duration::from_millis(1);

/// How often a sink whose backlog is full looks again.
const BACKLOG_POLL: Duration = Duration::from_millis(10);

/// The pause between two WAL segments deleted while the run goes on
/// ([`ShardEpochs::retire_step`]): up to 64 MiB of log retired every 20
/// ms, far more than a shard logs.
const RETIRE_PAUSE: Duration = Duration::from_millis(20);

/// A deletion of WAL segments running on a blocking thread: how many it
/// deleted.
type Deletion<'a> = Pin<Box<dyn Future<Output = Result<usize, NodeFailure>> + 'a>>;

/// The retirement of WAL segments beside the epoch loop: the cut it works
/// towards, the deletion running now, and when the next may start.
#[derive(Default)]
struct Retiring<'a> {
    cut: Option<Lsn>,
    step: Option<Deletion<'a>>,
    next: Option<Instant>,
}

struct Pending {
    epoch: u64,
    node: Arc<str>,
    instance: usize,
    steps: SinkSteps,
    payload: Vec<u8>,
    /// Whether its sync step ran.
    synced: bool,
    /// Whether its commit step runs now (its payload moved to the job).
    running: bool,
}

/// One sink's commits running on a blocking thread, with what follows
/// them on the shard (see [`ShardEpochs::start_commits`]).
type CommitJob<'a> = Pin<Box<dyn Future<Output = Result<(), NodeFailure>> + 'a>>;

/// A sink commit of a committed epoch that the previous run logged but did
/// not record as completed: this run's first commits.
pub(crate) struct RecoveredCommit {
    pub(crate) epoch: u64,
    pub(crate) node: Arc<str>,
    pub(crate) instance: usize,
    pub(crate) steps: SinkSteps,
    pub(crate) payload: Vec<u8>,
}

#[derive(Default)]
struct Progress {
    /// Per instance slot: the newest epoch it reported, or `u64::MAX` once
    /// it finished.
    reported: Vec<u64>,
    /// Epochs the whole shard finished, with the newest LSN appended for
    /// each; `done` marks how far they were handed to the epoch task.
    lsns: BTreeMap<u64, Lsn>,
    /// Per epoch not yet retired: the oldest LSN logged for it.
    first_lsns: BTreeMap<u64, Lsn>,
    /// The newest epoch any instance reported.
    newest: u64,
    /// The newest LSN appended in this run.
    newest_lsn: Lsn,
    done: u64,
    ready: VecDeque<(u64, Option<Lsn>)>,
    commits: Vec<Pending>,
    /// Whether a node logs incremental snapshots here (an
    /// `OPERATOR_CHANGES` record was appended, or recovery restored
    /// changes): the log is then kept from the last committed base epoch
    /// on, not only from the committed epoch (see [`ShardEpochs::retire_cut`]).
    incremental: bool,
    /// Committed epochs as this shard saw them advance, and when: where a
    /// sink's delivery latency starts. Pruned as commits complete.
    committed_seen: VecDeque<(u64, Instant)>,
}

/// One shard's epoch state.
pub(crate) struct ShardEpochs {
    shard: usize,
    /// Shared with the blocking thread that deletes retired segments.
    wal: Arc<Wal>,
    shared: Arc<EpochShared>,
    progress: RefCell<Progress>,
    /// Where a record is assembled before the WAL copies it.
    record: RefCell<Vec<u8>>,
    /// The runtime's metrics, for the sinks' delivery metrics.
    metrics: Option<crate::metrics::Registry>,
    /// Each sink's delivery metrics, bound when it first pre-commits.
    sinks: RefCell<BTreeMap<Arc<str>, SinkMetrics>>,
    /// Each sink's commit thread ([`ShardEpochs::commit_worker`]).
    commit_workers: RefCell<BTreeMap<Arc<str>, std::sync::mpsc::Sender<CommitWork>>>,
}

impl std::fmt::Debug for ShardEpochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardEpochs")
            .field("shard", &self.shard)
            .finish()
    }
}

impl ShardEpochs {
    /// The shard's epoch state; `recovered` are the commits the previous
    /// run left to do (they run first, in order).
    pub(crate) fn new(
        shard: usize,
        wal: Wal,
        shared: Arc<EpochShared>,
        instances: usize,
        recovered: Vec<RecoveredCommit>,
    ) -> ShardEpochs {
        let committed = shared.committed.load(Ordering::Acquire);
        let commits = recovered
            .into_iter()
            .map(|commit| Pending {
                epoch: commit.epoch,
                node: commit.node,
                instance: commit.instance,
                steps: commit.steps,
                payload: commit.payload,
                // Its epoch committed: its sync ran before that.
                synced: true,
                running: false,
            })
            .collect();
        // Recovery restored a base and changes: keep what the log holds
        // until a newer base commits.
        let incremental = shared.keep_bases.load(Ordering::Acquire);
        let mut first_lsns = BTreeMap::new();
        if incremental {
            first_lsns.insert(
                crate::limits::snapshot_kept_from(committed),
                wal.first_lsn(),
            );
        }
        ShardEpochs {
            shard,
            wal: Arc::new(wal),
            shared,
            progress: RefCell::new(Progress {
                reported: vec![committed; instances],
                newest: committed,
                done: committed,
                commits,
                first_lsns,
                incremental,
                ..Progress::default()
            }),
            record: RefCell::default(),
            metrics: None,
            sinks: RefCell::default(),
            commit_workers: RefCell::default(),
        }
    }

    /// Updates the sinks' delivery metrics in `registry`.
    pub(crate) fn with_metrics(mut self, registry: crate::metrics::Registry) -> ShardEpochs {
        self.metrics = Some(registry);
        self
    }

    /// Runs `update` on the delivery metrics of sink `node`, if there are
    /// metrics.
    fn sink_metrics(&self, node: &Arc<str>, update: impl FnOnce(&SinkMetrics)) {
        let Some(registry) = &self.metrics else {
            return;
        };
        let mut sinks = self.sinks.borrow_mut();
        let metrics = sinks.entry(node.clone()).or_insert_with(|| {
            SinkMetrics::new(registry, crate::metrics::component_of(node), self.shard)
        });
        update(metrics);
    }

    /// Sets sink `node`'s backlog gauge from the commits waiting.
    fn update_backlog(&self, node: &Arc<str>) {
        if self.metrics.is_none() {
            return;
        }
        let waiting = self.sink_backlog(node);
        self.sink_metrics(node, |metrics| metrics.backlog.set(waiting as i64));
    }

    pub(crate) fn shared(&self) -> &EpochShared {
        &self.shared
    }

    /// The shared state, for another thread.
    pub(crate) fn shared_handle(&self) -> Arc<EpochShared> {
        self.shared.clone()
    }

    /// Logs one record of `node`'s `instance` for `epoch`.
    pub(crate) fn append(
        &self,
        kind: RecordType,
        epoch: u64,
        node: &str,
        instance: usize,
        payload: &[u8],
    ) -> Result<Lsn, NodeFailure> {
        self.append_parts(kind, epoch, node, instance, &[payload])
    }

    /// [`append`](Self::append) with the payload in parts.
    pub(crate) fn append_parts(
        &self,
        kind: RecordType,
        epoch: u64,
        node: &str,
        instance: usize,
        parts: &[&[u8]],
    ) -> Result<Lsn, NodeFailure> {
        // The record's identity (`encode_record_into`), then `parts`: the
        // WAL frames them one after the other, with no joined copy.
        let mut identity = Vec::with_capacity(RECORD_HEADER_BYTES + node.len());
        encode_record_into(&mut identity, node, instance, &[]);
        let room = MAX_PAYLOAD_BYTES - identity.len();
        let mut gather: Vec<&[u8]> = vec![&identity];
        let mut filled = 0;
        // Too large for one WAL record: the leading parts go as `CONTINUED`
        // records of the same node and instance, each with the identity,
        // the last under `kind`; recovery joins them (see
        // `recovery::read_shard`).
        for part in parts {
            let mut part: &[u8] = part;
            while filled + part.len() > room {
                let (head, tail) = part.split_at(room - filled);
                gather.push(head);
                let appended = self.append_waiting(RecordType::CONTINUED, epoch, &gather)?;
                self.progress
                    .borrow_mut()
                    .first_lsns
                    .entry(epoch)
                    .or_insert(appended);
                gather.truncate(1);
                filled = 0;
                part = tail;
            }
            gather.push(part);
            filled += part.len();
        }
        let lsn = self.append_waiting(kind, epoch, &gather)?;
        self.note_appended(kind, epoch, lsn);
        Ok(lsn)
    }

    /// Notes the last (or only) record of an append, at `lsn`, in the
    /// shard's progress.
    fn note_appended(&self, kind: RecordType, epoch: u64, lsn: Lsn) {
        let mut progress = self.progress.borrow_mut();
        progress.incremental |= kind == RecordType::OPERATOR_CHANGES
            || kind == RecordType::OPERATOR_BASE
            || kind == RecordType::OPERATOR_SWEEP;
        progress.newest_lsn = progress.newest_lsn.max(lsn);
        let newest = progress.lsns.entry(epoch).or_insert(lsn);
        *newest = (*newest).max(lsn);
        progress.first_lsns.entry(epoch).or_insert(lsn);
    }

    /// A writer that logs one record of `node`'s `instance` for `epoch`
    /// from pieces ([`PartWriter::write`]), for a payload made as it is
    /// logged (what [`append_parts`] does, without copying, with a payload
    /// already whole): it appends a `CONTINUED` part each time a record is
    /// full and more comes, and the last part under `kind` at
    /// [`PartWriter::finish`]. The payload is never held whole: a base
    /// snapshot of hundreds of MB goes out in 16 MiB records.
    ///
    /// [`append_parts`]: Self::append_parts
    pub(crate) fn part_writer<'a>(
        &'a self,
        kind: RecordType,
        epoch: u64,
        node: &'a str,
        instance: usize,
    ) -> PartWriter<'a> {
        let mut record = self.record.borrow_mut();
        encode_record_into(&mut record, node, instance, &[]);
        PartWriter {
            epochs: self,
            kind,
            epoch,
            node,
            instance,
            record,
        }
    }

    /// Appends `record`; when the WAL refuses it because too much is
    /// staged ([`AppendError::Backpressure`]), waits until what is staged
    /// is durable and appends again. That wait blocks the shard: callers
    /// that can await call [`make_room`](Self::make_room) first, so only a
    /// step that logs more than the room left ever waits here.
    fn append_waiting(
        &self,
        kind: RecordType,
        epoch: u64,
        parts: &[&[u8]],
    ) -> Result<Lsn, NodeFailure> {
        loop {
            match self.wal.append_parts(kind, epoch, parts) {
                Err(AppendError::Backpressure) => {
                    if let Some(durable) = self.wal.drain() {
                        futures_lite::future::block_on(durable)
                            .map_err(|error| NodeFailure::Log(error.to_string()))?;
                    }
                }
                appended => return appended.map_err(|error| NodeFailure::Log(error.to_string())),
            }
        }
    }

    /// Waits, without blocking the shard, until the WAL has room: when more
    /// than [`WAL_STAGED_WAIT_BYTES`] bytes are staged, until all of them
    /// are durable. Call it before a step that may log much (a source's
    /// poll, a replayed record), so the step's appends stay clear of the
    /// WAL's staging limit and the shard's other tasks run meanwhile.
    pub(crate) async fn make_room(&self) -> Result<(), NodeFailure> {
        if self.wal.staged_bytes() < WAL_STAGED_WAIT_BYTES {
            return Ok(());
        }
        match self.wal.drain() {
            Some(durable) => durable
                .await
                .map_err(|error| NodeFailure::Log(error.to_string())),
            None => Ok(()),
        }
    }

    /// [`append`](Self::append), and a future that completes once the
    /// record is durable.
    pub(crate) fn append_durable(
        &self,
        kind: RecordType,
        epoch: u64,
        node: &str,
        instance: usize,
        parts: &[&[u8]],
    ) -> Result<weir_wal::Durable, NodeFailure> {
        let lsn = self.append_parts(kind, epoch, node, instance, parts)?;
        Ok(self.wal.durable(lsn))
    }

    /// Completes once every record appended so far is durable.
    pub(crate) fn durable_so_far(&self) -> weir_wal::Durable {
        let newest = self.progress.borrow().newest_lsn;
        self.wal.durable(newest)
    }

    /// Asks the WAL to write and sync what was appended now.
    pub(crate) fn flush(&self) {
        self.wal.flush();
    }

    /// Remembers a sink's pre-commit, to commit once `epoch` is committed.
    pub(crate) fn add_commit(
        &self,
        epoch: u64,
        node: Arc<str>,
        instance: usize,
        steps: SinkSteps,
        payload: Vec<u8>,
    ) {
        self.progress.borrow_mut().commits.push(Pending {
            epoch,
            node: node.clone(),
            instance,
            steps,
            payload,
            synced: false,
            running: false,
        });
        self.update_backlog(&node);
    }

    /// The instance in `slot` is done with `epoch`.
    pub(crate) fn report(&self, slot: usize, epoch: u64) {
        let mut progress = self.progress.borrow_mut();
        progress.reported[slot] = progress.reported[slot].max(epoch);
        progress.newest = progress.newest.max(epoch);
        Self::advance(&mut progress);
    }

    /// The instance in `slot` ended: it will see no more epochs.
    pub(crate) fn finished(&self, slot: usize) {
        let mut progress = self.progress.borrow_mut();
        progress.reported[slot] = u64::MAX;
        Self::advance(&mut progress);
    }

    /// Hands every epoch that all instances are done with to the epoch
    /// task, in order. Finished instances hold nothing back, but no epoch
    /// beyond the newest one anybody reported is done.
    fn advance(progress: &mut Progress) {
        let low = progress.reported.iter().min().copied().unwrap_or(u64::MAX);
        let high = low.min(progress.newest);
        while progress.done < high {
            progress.done += 1;
            let epoch = progress.done;
            let lsn = progress.lsns.remove(&epoch);
            progress.ready.push_back((epoch, lsn));
        }
    }

    /// The shard's epoch task: publishes durable epochs and runs commits
    /// until the final epoch is committed and every instance finished, or
    /// until the run is aborted ([`NodeFailure::Aborted`]). Either way the
    /// completion records of the commits that ran are made durable before
    /// it returns, so a restart after a stop (even one that gave up at its
    /// bound) repeats no completed commit.
    pub(crate) async fn run(self: Rc<Self>) -> Result<(), NodeFailure> {
        let result = self.run_epochs().await;
        self.wal.flush();
        let synced = self.durable_so_far().await;
        result?;
        synced.map_err(|error| NodeFailure::Log(error.to_string()))
    }

    async fn run_epochs(&self) -> Result<(), NodeFailure> {
        let mut retiring = Retiring::default();
        let mut jobs: Vec<CommitJob<'_>> = Vec::new();
        let result = self.epoch_loop(&mut retiring, &mut jobs).await;
        // Commits still running end before this task does: on a failed
        // run they are cancelled (they run again at the next start), so a
        // sink waiting for a receiver does not hold the failure back.
        if result.is_err() && !jobs.is_empty() {
            self.shared.commits.cancel();
        }
        let mut jobs_result = Ok(());
        for job in jobs {
            jobs_result = jobs_result.and(job.await);
        }
        let result = match result {
            Ok(()) => jobs_result,
            failed => failed,
        };
        // Whatever ended the loop, the deletion running on a blocking
        // thread ends before this task does (a next start in this process
        // must not find the log changing under it), and the rest of the
        // due segments go at once: their epochs are committed and
        // superseded whether or not this run goes on.
        let finished = match retiring.step.take() {
            Some(step) => step.await.map(|_| ()),
            None => Ok(()),
        };
        let rest = match retiring.cut {
            Some(cut) => self
                .delete_segments_below(cut, usize::MAX)
                .await
                .map(|_| ()),
            None => Ok(()),
        };
        result.and(finished).and(rest)
    }

    async fn epoch_loop<'a>(
        &'a self,
        retiring: &mut Retiring<'a>,
        jobs: &mut Vec<CommitJob<'a>>,
    ) -> Result<(), NodeFailure> {
        loop {
            if self.progress.borrow().reported.is_empty() {
                // No node runs here: this shard holds no epoch back.
                let requested = self.shared.requested.load(Ordering::Acquire);
                self.publish_done(requested);
            }
            self.publish_undelivered(jobs.len());
            self.publish_durable().await?;
            let committed = self.shared.committed.load(Ordering::Acquire);
            {
                let mut progress = self.progress.borrow_mut();
                let newest_seen = progress.committed_seen.back().map_or(0, |seen| seen.0);
                if committed > newest_seen {
                    progress
                        .committed_seen
                        .push_back((committed, Instant::now()));
                }
            }
            self.start_commits(committed, jobs);
            self.poll_commits(jobs).await?;
            self.publish_undelivered(jobs.len());
            if let Some(cut) = self.retire_cut(committed) {
                retiring.cut = Some(cut);
            }
            self.retire_step(retiring).await?;
            if self.shared.is_aborted() {
                // Something failed (maybe on another shard): no epoch after
                // `committed` will commit, so stop waiting for them.
                return Err(NodeFailure::Aborted);
            }
            let all_finished = self
                .progress
                .borrow()
                .reported
                .iter()
                .all(|&e| e == u64::MAX);
            let last = self.shared.final_epoch();
            let delivered = jobs.is_empty()
                && !self
                    .progress
                    .borrow()
                    .commits
                    .iter()
                    .any(|pending| pending.epoch <= committed);
            if all_finished && delivered && last.is_some_and(|last| committed >= last) {
                return Ok(());
            }
            glommio::timer::sleep(TICK).await;
        }
    }

    async fn publish_durable(&self) -> Result<(), NodeFailure> {
        loop {
            let next = self.progress.borrow_mut().ready.pop_front();
            let Some((epoch, lsn)) = next else {
                return Ok(());
            };
            if let Some(lsn) = lsn {
                self.wal.flush();
                self.sync_sinks(epoch).await?;
                self.wal
                    .durable(lsn)
                    .await
                    .map_err(|error| NodeFailure::Log(error.to_string()))?;
            }
            self.publish_done(epoch);
        }
    }

    /// Publishes that the shard's records of epochs up to `epoch` are
    /// durable, with the log's durable LSN first: the coordinator names it
    /// in the commit record (see `EpochShared::shard_lsns`).
    fn publish_done(&self, epoch: u64) {
        let durable = self.wal.durable_lsn().0;
        self.shared.shard_lsns[self.shard].fetch_max(durable, Ordering::Release);
        let before = self.shared.shard_done[self.shard].fetch_max(epoch, Ordering::AcqRel);
        if before < epoch {
            self.shared.wake_coordinator();
        }
    }

    /// The LSN below which WAL segments are no longer needed, if it moved:
    /// once every commit up to `committed` ran, only records of epochs `≥
    /// committed` matter (the state logged at `committed`, and later
    /// epochs), or, once a node snapshots incrementally here, of epochs `≥`
    /// `limits::snapshot_kept_from(committed)` (the newest complete base
    /// and the changes after it). Records of an epoch can interleave with
    /// the next one's, so the cut is the oldest LSN of any epoch kept.
    fn retire_cut(&self, committed: u64) -> Option<Lsn> {
        let mut progress = self.progress.borrow_mut();
        let keep = if progress.incremental {
            crate::limits::snapshot_kept_from(committed)
        } else {
            committed
        };
        // A sink's pre-commits stay until its commits ran: a sink whose
        // receiver is down keeps its backlog in the log.
        let oldest_pending = progress.commits.iter().map(|pending| pending.epoch).min();
        let keep = oldest_pending.map_or(keep, |oldest| keep.min(oldest));
        let kept = progress.first_lsns.split_off(&keep);
        let retired = std::mem::replace(&mut progress.first_lsns, kept);
        if retired.is_empty() {
            return None;
        }
        progress.first_lsns.values().min().copied()
    }

    /// Moves the retirement of segments below `retiring.cut` on by a step,
    /// without waiting for it: deletes the oldest such segment, on a
    /// blocking thread, [`RETIRE_PAUSE`] after the last one, and checks on
    /// a deletion that runs.
    ///
    /// Deleting a segment (an `unlink` of a 64 MiB file, then a directory
    /// fsync) takes tens of milliseconds on ext4, so it runs on a blocking
    /// thread: on the shard it stalled every connection and operator there
    /// (`bench/scripts/ingest-latency.sh`, `perf trace`). And it runs
    /// beside the epoch loop, a segment at a time: when a swept base
    /// completes, the epochs before it retire at once (at 10 M keys tens
    /// of segments, about a second of unlinks back to back), and waiting
    /// for them held back every commit meanwhile, and the unlinks held the
    /// log's own writes and syncs back for the filesystem's journal
    /// (`bench/src/bin/epochs.rs` at 10 M keys: its slowest commits were
    /// those epochs).
    async fn retire_step<'a>(&'a self, retiring: &mut Retiring<'a>) -> Result<(), NodeFailure> {
        if retiring.step.is_none() {
            let Some(cut) = retiring.cut else {
                return Ok(());
            };
            if retiring.next.is_some_and(|next| Instant::now() < next) {
                return Ok(());
            }
            retiring.step = Some(Box::pin(self.delete_segments_below(cut, 1)));
        }
        let step = retiring.step.as_mut().expect("a step runs");
        let Some(deleted) = futures_lite::future::poll_once(step).await else {
            return Ok(());
        };
        retiring.step = None;
        if deleted? == 0 {
            // Nothing below the cut is left.
            retiring.cut = None;
            retiring.next = None;
        } else {
            retiring.next = Some(Instant::now() + RETIRE_PAUSE);
        }
        Ok(())
    }

    /// Deletes up to `most` WAL segments below `cut` on a blocking thread.
    async fn delete_segments_below(&self, cut: Lsn, most: usize) -> Result<usize, NodeFailure> {
        let wal = self.wal.clone();
        glommio::executor()
            .spawn_blocking(move || wal.delete_some_below(cut, most))
            .await
            .map_err(|error| NodeFailure::Log(format!("retiring segments below {cut}: {error}")))
    }

    /// Runs the sync step of every pre-commit of an epoch up to `epoch`,
    /// on a blocking thread: file syncs take milliseconds on slow storage,
    /// and the shard's other tasks (connections, operators) keep running.
    async fn sync_sinks(&self, epoch: u64) -> Result<(), NodeFailure> {
        let due: Vec<(u64, Arc<str>, SinkSteps, Vec<u8>)> = {
            let mut progress = self.progress.borrow_mut();
            progress
                .commits
                .iter_mut()
                .filter(|pending| pending.epoch <= epoch && !pending.synced)
                .map(|pending| {
                    pending.synced = true;
                    let (node, payload) = (pending.node.clone(), pending.payload.clone());
                    (pending.epoch, node, pending.steps, payload)
                })
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        glommio::executor()
            .spawn_blocking(move || {
                for (epoch, node, steps, payload) in &due {
                    (steps.sync)(payload).map_err(|error| NodeFailure::Commit {
                        epoch: *epoch,
                        sink: node.to_string(),
                        syncing: true,
                        error,
                    })?;
                }
                Ok(())
            })
            .await
    }

    /// Starts the commits of every pre-commit of an epoch up to
    /// `committed`: one job per sink whose commits are not running
    /// already, each running that sink's due commits in epoch order. Sinks
    /// are isolated: one whose commit waits (a receiver down, retried)
    /// holds back only its own later commits, while the epochs go on
    /// committing and the other sinks publish; its pre-commits stay in the
    /// log ([`retire_cut`](Self::retire_cut)) and its backlog is bounded
    /// by [`wait_for_backlog`](Self::wait_for_backlog).
    fn start_commits<'a>(&'a self, committed: u64, jobs: &mut Vec<CommitJob<'a>>) {
        let mut due_by_node: BTreeMap<Arc<str>, Vec<Pending>> = BTreeMap::new();
        {
            let mut progress = self.progress.borrow_mut();
            let busy: std::collections::BTreeSet<Arc<str>> = progress
                .commits
                .iter()
                .filter(|pending| pending.running)
                .map(|pending| pending.node.clone())
                .collect();
            for pending in progress.commits.iter_mut() {
                if pending.epoch > committed || pending.running || busy.contains(&pending.node) {
                    continue;
                }
                pending.running = true;
                due_by_node
                    .entry(pending.node.clone())
                    .or_default()
                    .push(Pending {
                        epoch: pending.epoch,
                        node: pending.node.clone(),
                        instance: pending.instance,
                        steps: pending.steps,
                        payload: std::mem::take(&mut pending.payload),
                        synced: pending.synced,
                        running: true,
                    });
            }
        }
        for (_, mut due) in due_by_node {
            // Stable: a sink's instances keep their order within an epoch.
            due.sort_by_key(|pending| pending.epoch);
            jobs.push(Box::pin(self.run_commits(due)));
        }
    }

    /// Tells the coordinator how many of this shard's sink commits have
    /// not completed (`EpochShared::undelivered`).
    fn publish_undelivered(&self, jobs: usize) {
        // Running commits stay listed in `commits` until they complete.
        let waiting = self.progress.borrow().commits.len().max(jobs);
        let before = self.shared.undelivered[self.shard].swap(waiting as u64, Ordering::AcqRel);
        if waiting == 0 && before != 0 {
            // The run may be waiting for this to end.
            self.shared.wake_coordinator();
        }
    }

    /// Moves the running commit jobs on; the first that failed fails the
    /// loop.
    async fn poll_commits<'a>(&'a self, jobs: &mut Vec<CommitJob<'a>>) -> Result<(), NodeFailure> {
        let mut index = 0;
        while index < jobs.len() {
            match futures_lite::future::poll_once(&mut jobs[index]).await {
                Some(result) => {
                    drop(jobs.swap_remove(index));
                    result?;
                }
                None => index += 1,
            }
        }
        Ok(())
    }

    /// Runs the commit steps of `due` (one sink's, in order) on the sink's
    /// commit thread (renames, directory syncs, deliveries), then logs a
    /// [`SINK_COMMITTED`] record for each that completed. The records are
    /// not awaited: one lost in a crash only makes the next start run that
    /// commit again, as it must after a crash (the commit is idempotent).
    /// A commit cancelled by a stop that overran its bound ends the task
    /// with [`NodeFailure::Aborted`]; it and the ones after it run again at
    /// the next start.
    async fn run_commits(&self, due: Vec<Pending>) -> Result<(), NodeFailure> {
        let control = self.shared.commits.clone();
        let (sender, receiver) = oneshot::channel();
        let sink = due
            .first()
            .map(|pending| pending.node.clone())
            .unwrap_or_default();
        self.commit_worker(&sink)?
            .send(CommitWork {
                due,
                control,
                done: sender,
            })
            .map_err(|_| {
                NodeFailure::Panicked(format!("the commit thread of sink `{sink}` ended"))
            })?;
        let (due, steps, outcome) = receiver
            .await
            .map_err(|_| NodeFailure::Panicked(format!("a commit of sink `{sink}` panicked")))?;
        let completed = steps.iter().take_while(|step| step.ok).count();
        {
            let mut progress = self.progress.borrow_mut();
            progress.commits.retain(|waiting| {
                !due[..completed].iter().any(|done| {
                    done.epoch == waiting.epoch
                        && done.instance == waiting.instance
                        && done.node == waiting.node
                })
            });
        }
        self.count_commits(&due, &steps);
        for pending in &due[..completed] {
            failpoint("after-sink-commit", pending.epoch);
            let mut record = self.record.borrow_mut();
            encode_record_into(&mut record, &pending.node, pending.instance, &[]);
            let lsn = self.append_waiting(SINK_COMMITTED, pending.epoch, &[&record])?;
            // Not an epoch's record: only `durable_so_far` needs to know.
            let mut progress = self.progress.borrow_mut();
            progress.newest_lsn = progress.newest_lsn.max(lsn);
        }
        outcome
    }

    /// Pre-committed epochs of sink `node` on this shard whose commit has
    /// not completed.
    pub(crate) fn sink_backlog(&self, node: &str) -> usize {
        let progress = self.progress.borrow();
        let mut epochs: Vec<u64> = progress
            .commits
            .iter()
            .filter(|pending| &*pending.node == node)
            .map(|pending| pending.epoch)
            .collect();
        epochs.sort_unstable();
        epochs.dedup();
        epochs.len()
    }

    /// Waits while sink `node`'s backlog exceeds the runtime's bound
    /// (`RuntimeBuilder::sink_backlog_epochs`): the sink then takes no
    /// input, and backpressure reaches the sources. Ends with
    /// [`NodeFailure::Aborted`] if the run is aborted or its commits are
    /// cancelled meanwhile.
    pub(crate) async fn wait_for_backlog(&self, node: &str) -> Result<(), NodeFailure> {
        let bound = self.shared.sink_backlog_epochs;
        let mut warned = false;
        while self.sink_backlog(node) > bound {
            if self.shared.is_aborted() || self.shared.commits.is_cancelled() {
                return Err(NodeFailure::Aborted);
            }
            if !warned {
                tracing::warn!(
                    sink = %node,
                    shard = self.shard,
                    backlog = bound,
                    "a sink's backlog of unpublished epochs is full: it takes no more input \
                     until its commits complete (backpressure reaches the sources)"
                );
                warned = true;
            }
            glommio::timer::sleep(BACKLOG_POLL).await;
        }
        Ok(())
    }
}

/// What a commit thread hands back: the commits, how each step that ran
/// went, and the outcome.
type CommitDone = (Vec<Pending>, Vec<CommitStep>, Result<(), NodeFailure>);

/// One sink's due commits, for its commit thread.
struct CommitWork {
    due: Vec<Pending>,
    control: super::CommitControl,
    done: oneshot::Sender<CommitDone>,
}

impl ShardEpochs {
    /// The commit thread of sink `node` on this shard, started at its first
    /// commit: a thread per sink, not the executor's blocking pool (one
    /// thread), so a commit that waits for a receiver holds back neither
    /// the other sinks' commits nor the pre-commits' syncs and the log's
    /// segment deletions. It ends when this shard's epochs are dropped.
    fn commit_worker(
        &self,
        node: &Arc<str>,
    ) -> Result<std::sync::mpsc::Sender<CommitWork>, NodeFailure> {
        let mut workers = self.commit_workers.borrow_mut();
        if let Some(worker) = workers.get(node) {
            return Ok(worker.clone());
        }
        let (sender, work) = std::sync::mpsc::channel::<CommitWork>();
        std::thread::Builder::new()
            .name(format!("weir-commit-{}", self.shard))
            .spawn(move || {
                for CommitWork { due, control, done } in work {
                    let mut steps = Vec::with_capacity(due.len());
                    let outcome = run_in_order(&due, &control, &mut steps);
                    let _ = done.send((due, steps, outcome));
                }
            })
            .map_err(|error| {
                NodeFailure::Log(format!(
                    "cannot start the commit thread of sink `{node}`: {error}"
                ))
            })?;
        workers.insert(node.clone(), sender.clone());
        Ok(sender)
    }
}

/// How one commit step went, for the sink's metrics.
struct CommitStep {
    ok: bool,
    /// Its retries ([`CommitControl::sleep`](super::CommitControl::sleep)).
    waits: u64,
    finished: Instant,
}

impl ShardEpochs {
    /// Updates the delivery metrics of the sinks in `due` after their
    /// commit steps ran (`steps`, in `due`'s order, as far as they ran).
    fn count_commits(&self, due: &[Pending], steps: &[CommitStep]) {
        if self.metrics.is_none() {
            return;
        }
        for (pending, step) in due.iter().zip(steps) {
            let started = {
                let progress = self.progress.borrow();
                progress
                    .committed_seen
                    .iter()
                    .find(|(epoch, _)| *epoch >= pending.epoch)
                    .map(|(_, seen)| *seen)
            };
            self.sink_metrics(&pending.node, |metrics| {
                metrics.retries.add(step.waits);
                if step.ok {
                    metrics.commits.inc();
                    metrics.committed.set(pending.epoch as i64);
                    if let Some(started) = started {
                        let ns = step.finished.saturating_duration_since(started).as_nanos();
                        metrics
                            .latency
                            .observe_ns(u64::try_from(ns).unwrap_or(u64::MAX));
                    }
                } else {
                    metrics.failures.inc();
                }
            });
        }
        // Epochs whose commits all completed need no start time any more.
        let oldest_waiting = self
            .progress
            .borrow()
            .commits
            .iter()
            .map(|pending| pending.epoch)
            .min();
        let completed = steps.iter().take_while(|step| step.ok).count();
        let done_through = due[..completed].last().map(|pending| pending.epoch);
        if let Some(done_through) = done_through {
            let mut progress = self.progress.borrow_mut();
            let keep_from = oldest_waiting.map_or(done_through + 1, |o| o.min(done_through + 1));
            // Keep the newest entry: it dates every later epoch up to it.
            while progress.committed_seen.len() > 1 && progress.committed_seen[0].0 < keep_from {
                progress.committed_seen.pop_front();
            }
        }
        let nodes: std::collections::BTreeSet<&Arc<str>> =
            due.iter().map(|pending| &pending.node).collect();
        for node in nodes {
            self.update_backlog(node);
        }
    }
}

/// Runs `due`'s commit steps in order until one fails or the commits are
/// cancelled; `steps` says how each that ran went.
fn run_in_order(
    due: &[Pending],
    control: &super::CommitControl,
    steps: &mut Vec<CommitStep>,
) -> Result<(), NodeFailure> {
    for (index, pending) in due.iter().enumerate() {
        if control.is_cancelled() {
            log_not_done(&due[index..]);
            return Err(NodeFailure::Aborted);
        }
        let step_control = control.for_commit();
        let result = (pending.steps.commit)(&pending.payload, &step_control);
        steps.push(CommitStep {
            ok: result.is_ok(),
            waits: step_control.waits(),
            finished: Instant::now(),
        });
        if let Err(error) = result {
            // A cancelled step did not fail: it runs again at the next start.
            if control.is_cancelled() {
                steps.pop();
                log_not_done(&due[index..]);
                return Err(NodeFailure::Aborted);
            }
            return Err(NodeFailure::Commit {
                epoch: pending.epoch,
                sink: pending.node.to_string(),
                syncing: false,
                error,
            });
        }
        if index == 0 {
            failpoint("during-commit", pending.epoch);
        }
    }
    Ok(())
}

/// Says which commits a cancelled stop left to the next start.
fn log_not_done(pending: &[Pending]) {
    for pending in pending {
        tracing::warn!(
            sink = %pending.node,
            instance = pending.instance,
            epoch = pending.epoch,
            "sink commit not completed before the stop gave up; it runs again at the next start"
        );
    }
}

/// One record logged piece by piece ([`ShardEpochs::part_writer`]).
pub(crate) struct PartWriter<'a> {
    epochs: &'a ShardEpochs,
    kind: RecordType,
    epoch: u64,
    node: &'a str,
    instance: usize,
    /// The part being filled: the record's identity, then payload.
    record: std::cell::RefMut<'a, Vec<u8>>,
}

impl PartWriter<'_> {
    /// Adds `bytes` to the payload, appending full parts as `CONTINUED`.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> Result<(), NodeFailure> {
        while !bytes.is_empty() {
            if self.record.len() >= MAX_PAYLOAD_BYTES {
                let appended = self.epochs.append_waiting(
                    RecordType::CONTINUED,
                    self.epoch,
                    &[&self.record],
                )?;
                self.epochs
                    .progress
                    .borrow_mut()
                    .first_lsns
                    .entry(self.epoch)
                    .or_insert(appended);
                encode_record_into(&mut self.record, self.node, self.instance, &[]);
            }
            let take = (MAX_PAYLOAD_BYTES - self.record.len()).min(bytes.len());
            self.record.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Appends the last part, under the record's kind.
    pub(crate) fn finish(self) -> Result<Lsn, NodeFailure> {
        let lsn = self
            .epochs
            .append_waiting(self.kind, self.epoch, &[&self.record])?;
        let epochs = self.epochs;
        let (kind, epoch) = (self.kind, self.epoch);
        drop(self);
        epochs.note_appended(kind, epoch, lsn);
        Ok(lsn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use weir_wal::limits::MAX_STAGED_BYTES;

    const RECORD_BYTES: usize = 1 << 20;
    /// Twice what the WAL stages (64 MiB) before it refuses appends.
    const RECORDS: usize = 128;

    /// A shard's epochs over a WAL in `dir` whose writer sleeps 10 ms after
    /// every write (a disk of at most 100 MB/s): appends of 1 MiB records
    /// in a loop outrun it many times over.
    fn slow_shard(dir: &std::path::Path) -> ShardEpochs {
        let slow =
            weir_wal::SyncObserver::new(|_, _| std::thread::sleep(Duration::from_millis(10)));
        let config = weir_wal::Config {
            on_sync: Some(slow),
            ..weir_wal::Config::default()
        };
        let (wal, _) = Wal::open_dir(dir, &config).expect("open the log");
        let aborted = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(EpochShared::new(&[0], 1, 0, aborted));
        ShardEpochs::new(0, wal, shared, 1, Vec::new())
    }

    /// Appends that meet the WAL's staging limit wait for the disk and
    /// go on: every one succeeds and becomes durable.
    #[test]
    fn appends_beyond_the_staging_limit_wait_for_the_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let epochs = slow_shard(dir.path());
        let record = vec![7u8; RECORD_BYTES];
        for i in 0..RECORDS {
            epochs
                .append(RecordType::INPUT, 1, "source", 0, &record)
                .unwrap_or_else(|error| panic!("record {i}: {error}"));
        }
        futures_lite::future::block_on(epochs.durable_so_far()).expect("durable");
    }

    /// With `make_room` before each append (as replay and sources do),
    /// appends never come near the staging limit, so none blocks.
    #[test]
    fn make_room_keeps_appends_clear_of_the_staging_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let epochs = slow_shard(dir.path());
        let record = vec![7u8; RECORD_BYTES];
        futures_lite::future::block_on(async {
            for i in 0..RECORDS {
                epochs.make_room().await.expect("room");
                let staged = epochs.wal.staged_bytes();
                assert!(
                    staged < WAL_STAGED_WAIT_BYTES && staged + RECORD_BYTES < MAX_STAGED_BYTES,
                    "record {i}: {staged} bytes staged"
                );
                epochs
                    .append(RecordType::INPUT, 1, "source", 0, &record)
                    .expect("append");
            }
        });
    }
}
