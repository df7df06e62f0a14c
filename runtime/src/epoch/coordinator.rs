//! The coordinator: starts epochs and commits them.
//!
//! It runs on its own thread (it never touches the data path) and owns a
//! small log of commit records, separate from the shards' logs. It sleeps
//! until a shard publishes an epoch done, a source runs dry or the next
//! epoch is due, and at most [`IDLE_MAX`] (to see a stop or an abort);
//! each time it wakes (a tick) it:
//! 1. requests epoch `n + 1` once the epoch interval has passed, unless
//!    [`IN_FLIGHT_MAX_EPOCHS`] epochs are already uncommitted; once every
//!    source is exhausted (or the run is stopping) it requests one final
//!    epoch instead and no more;
//! 2. commits the newest epoch every shard reports durable: appends
//!    `EPOCH_COMMIT` (naming each shard's durable LSN, `commit_record`)
//!    and fdatasyncs it, then publishes it so shards run their sinks'
//!    commits;
//! 3. returns once the final epoch is committed, or at once if the run is
//!    aborted ([`EpochShared::aborted`]: any node task failed or a shard
//!    panicked; nothing more is committed then). A failure of its own log
//!    aborts the run too.
//!
//! A stop is bounded: once the run was told to stop, if the final epoch
//! has not committed after the stop timeout (a sink commit retrying a
//! receiver that is down holds its shard's epochs back), the coordinator
//! cancels the sink commits still running ([`EpochShared::commits`]),
//! aborts the run and returns [`RunError::StopTimedOut`]. What committed
//! stays committed; the commits that did not complete run again at the
//! next start, and everything after the last committed epoch is replayed
//! from the logs, as after a crash.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir_wal::{RecordType, SyncLog};

use super::commit_record::CommitRecord;
use super::{failpoint, EpochShared};
use crate::error::RunError;
use crate::limits::IN_FLIGHT_MAX_EPOCHS;
use crate::metrics::wired::EpochMetrics;
use crate::stop::StopRequest;

/// The longest the coordinator sleeps without looking at the shards: a
/// shard publishing an epoch done, or a source running dry, wakes it at
/// once, the next epoch's time too; a stop request or an abort it notices
/// within this.
const IDLE_MAX: Duration = Duration::from_millis(10);

/// What the coordinator measured.
#[derive(Debug, Default)]
pub(crate) struct CoordinatorReport {
    /// Per committed epoch: from its request to its commit record durable.
    pub(crate) commit_latencies: Vec<Duration>,
    /// The last epoch committed.
    pub(crate) last_committed: u64,
    /// Whether the run ended with a stop for a savepoint (its final epoch
    /// is not marked complete: the next start resumes).
    pub(crate) stopped: bool,
    /// The longest snapshot of one node instance (`EpochShared`'s).
    pub(crate) longest_snapshot: Duration,
}

/// How the coordinator paces epochs and bounds a stop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How often an epoch starts.
    pub(crate) interval: Duration,
    /// How long a stop may take before it gives up (see the module docs).
    pub(crate) stop_timeout: Duration,
}

pub(crate) fn spawn(
    mut log: SyncLog,
    shared: Arc<EpochShared>,
    timing: Timing,
    request: Arc<StopRequest>,
    metrics: EpochMetrics,
) -> std::io::Result<JoinHandle<Result<CoordinatorReport, RunError>>> {
    std::thread::Builder::new()
        .name("weir-coordinator".into())
        .spawn(move || run(&mut log, &shared, timing, &request, &metrics))
}

fn run(
    log: &mut SyncLog,
    shared: &EpochShared,
    timing: Timing,
    stop: &StopRequest,
    metrics: &EpochMetrics,
) -> Result<CoordinatorReport, RunError> {
    // A run has one coordinator: `set` fails only if it was set already.
    let _ = shared.coordinator.set(std::thread::current());
    let mut report = CoordinatorReport {
        last_committed: shared.committed.load(Ordering::Acquire),
        ..CoordinatorReport::default()
    };
    metrics.committed(report.last_committed);
    let mut requested_at: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut next_epoch_at = Instant::now() + timing.interval;
    let mut stop_seen_at: Option<Instant> = None;
    loop {
        if shared.aborted.load(Ordering::Acquire) {
            return Ok(report);
        }
        if stop_seen_at.is_none() && stop.is_requested() {
            stop_seen_at = Some(Instant::now());
        }
        request(
            shared,
            stop,
            timing.interval,
            &mut next_epoch_at,
            &mut requested_at,
        );
        let done = shared
            .shard_done
            .iter()
            .map(|done| done.load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        if done > report.last_committed {
            let is_final =
                shared.final_epoch() == Some(done) && !shared.stopped.load(Ordering::Acquire);
            let record = CommitRecord {
                complete: is_final,
                shard_lsns: Some(durable_lsns(shared)),
            };
            if let Err(error) = commit(log, done, &record) {
                shared.aborted.store(true, Ordering::Release);
                return Err(RunError::Coordinator(error));
            }
            shared.committed.store(done, Ordering::Release);
            report.last_committed = done;
            metrics.committed(done);
            while let Some(&(epoch, at)) = requested_at.front() {
                if epoch > done {
                    break;
                }
                let latency = at.elapsed();
                metrics.commit_latency(latency);
                report.commit_latencies.push(latency);
                requested_at.pop_front();
            }
            if shared.final_epoch() == Some(done) {
                report.stopped = shared.is_stop();
                tracing::info!(
                    epoch = done,
                    complete = is_final,
                    savepoint = report.stopped,
                    "committed the final epoch"
                );
            }
        }
        let delivered = || {
            shared
                .undelivered
                .iter()
                .all(|undelivered| undelivered.load(Ordering::Acquire) == 0)
        };
        if shared
            .final_epoch()
            .is_some_and(|last| report.last_committed >= last)
            && delivered()
        {
            return Ok(report);
        }
        if stop_seen_at.is_some_and(|at| at.elapsed() >= timing.stop_timeout) {
            return Err(give_up_stop(shared, timing.stop_timeout, &report));
        }
        // Until the next epoch is due, or a shard wakes it (an `unpark`
        // before this `park` makes it return at once: no wake-up is lost).
        let until_next = next_epoch_at.saturating_duration_since(Instant::now());
        let wait = if until_next.is_zero() {
            // Due, but held back by epochs in flight: a shard's progress
            // wakes it.
            IDLE_MAX
        } else {
            until_next.min(IDLE_MAX)
        };
        std::thread::park_timeout(wait);
    }
}

/// The stop overran its bound: cancels the sink commits still running and
/// aborts the run (see the module docs).
fn give_up_stop(shared: &EpochShared, timeout: Duration, report: &CoordinatorReport) -> RunError {
    tracing::warn!(
        stop_timeout_ms = timeout.as_millis() as u64,
        committed_epoch = report.last_committed,
        "the stop did not finish in time; cancelling the sink commits still running: \
         they run again at the next start, which resumes from the committed epoch"
    );
    shared.commits.cancel();
    shared.aborted.store(true, Ordering::Release);
    RunError::StopTimedOut {
        timeout,
        committed_epoch: report.last_committed,
    }
}

/// Step 1 of the tick: ask for the next epoch, or the final one.
fn request(
    shared: &EpochShared,
    stop: &StopRequest,
    interval: Duration,
    next_epoch_at: &mut Instant,
    requested_at: &mut VecDeque<(u64, Instant)>,
) {
    if shared.final_epoch().is_some() {
        return;
    }
    let requested = shared.requested.load(Ordering::Acquire);
    let committed = shared.committed.load(Ordering::Acquire);
    let exhausted = shared.sources_exhausted.load(Ordering::Acquire) >= shared.sources_total;
    let now = Instant::now();
    if exhausted || stop.is_requested() {
        let last = requested + 1;
        // A run told to stop (or to stay resumable) is not complete: it
        // ends with a savepoint, and its sources resume from their
        // positions when it starts again. A drain is the end of input.
        let stopped = stop.is_savepoint();
        shared.stopped.store(stopped, Ordering::Release);
        shared.final_epoch.store(last, Ordering::Release);
        shared.requested.store(last, Ordering::Release);
        requested_at.push_back((last, now));
    } else if now >= *next_epoch_at && requested - committed < IN_FLIGHT_MAX_EPOCHS {
        shared.requested.store(requested + 1, Ordering::Release);
        requested_at.push_back((requested + 1, now));
        *next_epoch_at = now + interval;
    }
}

/// Each shard's durable LSN, read after its `shard_done` (see
/// `EpochShared::shard_lsns`): at least the end of the shard's records of
/// the epoch being committed.
fn durable_lsns(shared: &EpochShared) -> Vec<u64> {
    shared
        .shard_lsns
        .iter()
        .map(|lsn| lsn.load(Ordering::Acquire))
        .collect()
}

fn commit(log: &mut SyncLog, epoch: u64, record: &CommitRecord) -> Result<(), String> {
    log.append(RecordType::EPOCH_COMMIT, epoch, &record.encode())
        .map_err(|error| format!("cannot log the commit of epoch {epoch}: {error}"))?;
    log.commit()
        .map_err(|error| format!("cannot make the commit of epoch {epoch} durable: {error}"))?;
    failpoint("after-commit-record", epoch);
    Ok(())
}
