//! The task loops that run node instances on a shard.
//!
//! Each node instance is one glommio task. A task runs its operator
//! synchronously, then sends the operator's ready batches into the rings,
//! awaiting when a ring is full (backpressure). It yields the shard after
//! [`TURN_MAX_MESSAGES`] messages (or [`TURN_SOURCE_MAX_BATCHES`] source
//! polls) so no node starves the others; when its input rings are empty it
//! sleeps until a producer wakes it, and a shard with every task asleep
//! parks in glommio's reactor instead of spinning.
//!
//! With epochs (a data directory), a source also logs its position and
//! emits a barrier for every epoch the coordinator requests, and keeps
//! doing so after it is exhausted until the final epoch; a processor logs
//! its snapshot (a sink its pre-commit) on every aligned barrier.
//!
//! Failure: once the run's abort flag is set (some node task failed, see
//! `crate::runtime`), a source stops at its next turn of the loop (idle
//! sources within [`SOURCE_IDLE_SLEEP_MS`]), and every wait for the final
//! epoch ends, all with [`NodeFailure::Aborted`]; a task that ends drops
//! its rings, so the nodes downstream and upstream of it see them close.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::yield_now;
use weir_wal::RecordType;

use crate::batch::BufferPool;
use crate::emit::Emitter;
use crate::epoch::failpoint;
use crate::epoch::shard::ShardEpochs;
use crate::epoch::SinkSteps;
use crate::error::NodeFailure;
use crate::error::OperatorError;
use crate::input::{Delivery, InputSet};
use crate::intake::IntakeLog;
use crate::limits::{SOURCE_IDLE_SLEEP_MS, TURN_MAX_MESSAGES, TURN_SOURCE_MAX_BATCHES};
use crate::metrics::wired::SnapshotMetrics;
use crate::operator::{Processor, SnapshotWriter, Source, SourcePoll};
use crate::record::Record;

/// [`SOURCE_IDLE_SLEEP_MS`].
const SOURCE_IDLE_SLEEP: Duration = Duration::from_millis(SOURCE_IDLE_SLEEP_MS);

/// What one node instance needs besides its operator and rings.
pub(crate) struct NodeEnv {
    pub(crate) node: Arc<str>,
    pub(crate) instance: usize,
    /// Its index among the shard's node instances.
    pub(crate) slot: usize,
    pub(crate) epochs: Option<Rc<ShardEpochs>>,
    /// State or position to restore, from recovery.
    pub(crate) restore: Option<Vec<u8>>,
    /// Changes to apply after `restore`, oldest first (incremental
    /// snapshots).
    pub(crate) restore_changes: Vec<Vec<u8>>,
    /// Counts the bytes of its snapshots and times them, by kind.
    pub(crate) snapshot_metrics: Option<Rc<SnapshotMetrics>>,
    /// Whether it snapshotted in this run yet.
    pub(crate) snapshotted: Cell<bool>,
    /// The epochs a base sweep in progress may still take (0: none in
    /// progress), for an operator with swept bases.
    pub(crate) sweep_left: Cell<u64>,
    /// A source's intake records to replay, from recovery: (identity, data).
    pub(crate) replay: Vec<(u64, Vec<u8>)>,
    /// A sink's commit step.
    pub(crate) commit: Option<SinkSteps>,
    /// What goes before each of its snapshots: its state fingerprint
    /// (`crate::epoch::state_header`).
    pub(crate) state_header: Vec<u8>,
}

/// Runs a source until it is exhausted or the runtime is told to stop (and,
/// with epochs, until the final epoch's barrier is out), then sends end of
/// stream. Returns [`NodeFailure::Aborted`] once `aborted` is set.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_source<S: Source>(
    mut source: S,
    mut out: Emitter<S::Output>,
    stop: Arc<AtomicBool>,
    aborted: Arc<AtomicBool>,
    mut node: NodeEnv,
    intake: IntakeLog,
    current: Rc<Cell<u64>>,
) -> Result<(), NodeFailure> {
    let mut epoch = node
        .epochs
        .as_ref()
        .map_or(0, |e| e.shared().committed.load(Ordering::Acquire));
    replay(
        &mut source,
        &mut out,
        &intake,
        std::mem::take(&mut node.replay),
    )
    .await?;
    let wake = intake.source_wake();
    let (mut exhausted, mut polls) = (false, 0usize);
    // Whether the run ends with a stop for a savepoint rather than the end
    // of input: then the source's output rings get `Stop`, not `End`.
    let mut stopped = false;
    loop {
        if aborted.load(Ordering::Acquire) {
            // Another node failed: stop without end of stream, so nothing
            // downstream mistakes this for a complete input.
            return Err(NodeFailure::Aborted);
        }
        if let Some(epochs) = &node.epochs {
            emit_barriers(&source, &mut out, epochs, &node, &mut epoch, &current).await?;
            current.set(epoch + 1);
        }
        if exhausted || stop.load(Ordering::Relaxed) {
            let Some(epochs) = &node.epochs else { break };
            if !exhausted {
                exhausted = true;
                out.flush();
                out.send_ready().await?;
            }
            if let Some(last) = wait_for_final_epoch(epochs, epoch, &mut polls).await {
                // End of stream (or a stop) is the final epoch's barrier.
                current.set(last);
                let position = source.position();
                epochs.append(
                    RecordType::SOURCE_POSITIONS,
                    last,
                    &node.node,
                    node.instance,
                    &position,
                )?;
                epochs.report(node.slot, last);
                stopped = epochs.shared().is_stop();
                break;
            }
            continue;
        }
        // What the poll logs must fit in the WAL's staging area.
        intake.make_room().await?;
        let status = source.poll(&mut out);
        out.take_error()?;
        match status {
            SourcePoll::Ready => {}
            SourcePoll::Idle => out.flush(),
            SourcePoll::Exhausted => exhausted = true,
        }
        out.send_ready().await?;
        if status == SourcePoll::Idle {
            futures_lite::future::or(glommio::timer::sleep(SOURCE_IDLE_SLEEP), wake.woken()).await;
        }
        polls += 1;
        if polls % TURN_SOURCE_MAX_BATCHES == 0 {
            yield_now().await;
        }
    }
    close_output(&mut out, &node, stopped).await
}

/// Emits again, in the first epoch of this run, the intake records that
/// recovery found uncommitted, logging each again as a copy (see
/// `crate::intake`).
async fn replay<S: Source>(
    source: &mut S,
    out: &mut Emitter<S::Output>,
    intake: &IntakeLog,
    records: Vec<(u64, Vec<u8>)>,
) -> Result<(), NodeFailure> {
    if records.is_empty() {
        return Ok(());
    }
    for (identity, data) in records {
        // A backlog is logged again far faster than a disk takes it: wait
        // for room rather than meet the WAL's staging limit.
        intake.make_room().await?;
        // The copy is logged before the records go out, so the epoch they
        // go out in logs them.
        drop(intake.append_copy(Some(identity), &data)?);
        source.replay(&data, out)?;
        out.take_error()?;
        out.send_ready().await?;
    }
    intake.flush();
    Ok(())
}

/// Logs the position and emits a barrier for every epoch requested since
/// `epoch`, advancing it. The final epoch gets no barrier: end of stream
/// closes it.
async fn emit_barriers<S: Source>(
    source: &S,
    out: &mut Emitter<S::Output>,
    epochs: &ShardEpochs,
    node: &NodeEnv,
    epoch: &mut u64,
    current: &Cell<u64>,
) -> Result<(), NodeFailure> {
    let shared = epochs.shared();
    let requested = shared.requested.load(Ordering::Acquire);
    let limit = shared.final_epoch().map_or(requested, |last| last - 1);
    while *epoch < limit {
        *epoch += 1;
        // While it says where it stands, the source's epoch is the one
        // this barrier closes (`Source::position`).
        current.set(*epoch);
        let position = source.position();
        epochs.append(
            RecordType::SOURCE_POSITIONS,
            *epoch,
            &node.node,
            node.instance,
            &position,
        )?;
        out.barrier(*epoch);
        out.send_ready().await?;
        epochs.report(node.slot, *epoch);
    }
    Ok(())
}

/// An exhausted source under epochs: counts itself exhausted once, then
/// waits. Returns the final epoch once every barrier before it is out.
async fn wait_for_final_epoch(
    epochs: &ShardEpochs,
    epoch: u64,
    counted: &mut usize,
) -> Option<u64> {
    let shared = epochs.shared();
    if *counted != usize::MAX {
        shared.sources_exhausted.fetch_add(1, Ordering::AcqRel);
        shared.wake_coordinator();
        *counted = usize::MAX;
    }
    if let Some(last) = shared.final_epoch().filter(|&last| epoch + 1 >= last) {
        return Some(last);
    }
    glommio::timer::sleep(SOURCE_IDLE_SLEEP).await;
    None
}

/// Runs a processor (or a sink, through `SinkProcessor`) until every input
/// ended, then finishes it and sends end of stream.
pub(crate) async fn run_processor<P: Processor>(
    mut processor: P,
    mut inputs: InputSet,
    mut out: Emitter<P::Output>,
    pool: Rc<BufferPool>,
    node: NodeEnv,
    flush_when_idle: bool,
) -> Result<(), NodeFailure> {
    if let (true, Some(epochs)) = (inputs.is_empty(), node.epochs.clone()) {
        return run_without_inputs(processor, out, node, epochs).await;
    }
    let mut handled = 0usize;
    loop {
        // With `flush_when_idle`, when nothing is left to read what was
        // emitted goes on before this task sleeps. `InputSet::next` keeps
        // its progress in the set, so dropping it while pending loses
        // nothing.
        let next = if flush_when_idle {
            match futures_lite::future::poll_once(inputs.next()).await {
                Some(next) => next?,
                None => {
                    out.flush();
                    out.send_ready().await?;
                    inputs.next().await?
                }
            }
        } else {
            inputs.next().await?
        };
        let Some(delivery) = next else { break };
        match delivery {
            Delivery::Data { port, batch } => {
                processor.process(port, batch.typed(), &mut out);
                pool.recycle(batch);
                send_all(&mut processor, &mut out).await?;
            }
            Delivery::Watermark(watermark) => {
                processor.on_watermark(watermark, &mut out);
                // Everything the watermark released goes out before it.
                send_all(&mut processor, &mut out).await?;
                out.watermark(watermark);
                out.send_ready().await?;
            }
            Delivery::Barrier(epoch) => {
                checkpoint(&mut processor, &node, epoch)?;
                // Everything of the epoch went out above; the barrier
                // follows it on every output ring.
                out.barrier(epoch);
                out.send_ready().await?;
                if let Some(epochs) = &node.epochs {
                    if node.commit.is_some() {
                        // A sink whose commits fell too far behind takes
                        // no more input until they catch up.
                        epochs.wait_for_backlog(&node.node).await?;
                    }
                    epochs.report(node.slot, epoch);
                }
            }
        }
        handled += 1;
        if handled % TURN_MAX_MESSAGES == 0 {
            yield_now().await;
        }
    }
    // A stop for a savepoint keeps open state as it is (windows stay open,
    // the watermark does not jump); the end of input finishes it.
    let stopped = inputs.stopped();
    if stopped {
        processor.on_stop(&mut out);
    } else {
        processor.finish(&mut out);
    }
    send_all(&mut processor, &mut out).await?;
    if let Some(epochs) = &node.epochs {
        // End of stream closes the final epoch: checkpoint it like a barrier.
        let last = final_epoch(epochs).await?;
        checkpoint(&mut processor, &node, last)?;
        epochs.report(node.slot, last);
    }
    close_output(&mut out, &node, stopped).await
}

/// Runs a processor (or sink) instance that has no input ring, under
/// epochs. Its upstream runs on other shards only (a `Parallelism::One`
/// source read through forward edges), so no record and no barrier ever
/// reaches it; yet its shard's epochs wait for its reports, and the
/// consumers of its output rings align barriers on them. So it closes every
/// requested epoch at once, as an idle source does (an empty snapshot or
/// pre-commit, then the barrier), until the final epoch, which it closes as
/// its inputs would have: a stop keeps its (empty) state, the end of input
/// finishes it.
async fn run_without_inputs<P: Processor>(
    mut processor: P,
    mut out: Emitter<P::Output>,
    node: NodeEnv,
    epochs: Rc<ShardEpochs>,
) -> Result<(), NodeFailure> {
    let shared = epochs.shared();
    let mut epoch = shared.committed.load(Ordering::Acquire);
    let last = loop {
        if shared.is_aborted() {
            return Err(NodeFailure::Aborted);
        }
        let requested = shared.requested.load(Ordering::Acquire);
        let limit = shared.final_epoch().map_or(requested, |last| last - 1);
        while epoch < limit {
            epoch += 1;
            checkpoint(&mut processor, &node, epoch)?;
            out.barrier(epoch);
            out.send_ready().await?;
            epochs.report(node.slot, epoch);
        }
        if let Some(last) = shared.final_epoch().filter(|&last| epoch + 1 >= last) {
            break last;
        }
        glommio::timer::sleep(SOURCE_IDLE_SLEEP).await;
    };
    let stopped = shared.is_stop();
    if stopped {
        processor.on_stop(&mut out);
    } else {
        processor.on_watermark(u64::MAX, &mut out);
        send_all(&mut processor, &mut out).await?;
        processor.finish(&mut out);
    }
    send_all(&mut processor, &mut out).await?;
    checkpoint(&mut processor, &node, last)?;
    epochs.report(node.slot, last);
    close_output(&mut out, &node, stopped).await
}

/// Ends an instance's output as its run ended (a stop, or the end of its
/// input), sends what is left, and tells its shard's epochs it finished.
async fn close_output<T: Record>(
    out: &mut Emitter<T>,
    node: &NodeEnv,
    stopped: bool,
) -> Result<(), NodeFailure> {
    if stopped {
        out.stop();
    } else {
        out.end();
    }
    out.send_ready().await?;
    if let Some(epochs) = &node.epochs {
        epochs.finished(node.slot);
    }
    Ok(())
}

/// The final epoch, waiting for the coordinator to name it (a node whose
/// inputs all ended has seen every source end, so it is named or about to
/// be), or [`NodeFailure::Aborted`] if the run is aborted first: then the
/// final epoch may never be named.
async fn final_epoch(epochs: &ShardEpochs) -> Result<u64, NodeFailure> {
    loop {
        if epochs.shared().is_aborted() {
            return Err(NodeFailure::Aborted);
        }
        if let Some(last) = epochs.shared().final_epoch() {
            return Ok(last);
        }
        glommio::timer::sleep(SOURCE_IDLE_SLEEP).await;
    }
}

/// What [`log_snapshot`] logged.
#[derive(Clone, Copy)]
enum Logged {
    Full,
    Changes,
    Precommit,
    Nothing,
}

/// Logs the processor's snapshot for `epoch` ([`log_snapshot`]) and times
/// it: the shard processes nothing else meanwhile, so the time is a stall
/// (`weir_snapshot_duration_seconds`, [`crate::RunReport::longest_snapshot`]).
fn checkpoint<P: Processor>(
    processor: &mut P,
    node: &NodeEnv,
    epoch: u64,
) -> Result<(), NodeFailure> {
    let Some(epochs) = &node.epochs else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let logged = log_snapshot(processor, node, epochs, epoch)?;
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    if let Some(metrics) = &node.snapshot_metrics {
        match logged {
            Logged::Full => metrics.full_seconds.observe_ns(ns),
            Logged::Changes => metrics.changes_seconds.observe_ns(ns),
            Logged::Precommit => metrics.precommit_seconds.observe_ns(ns),
            Logged::Nothing => {}
        }
    }
    epochs
        .shared()
        .longest_snapshot_ns
        .fetch_max(ns, Ordering::Relaxed);
    Ok(())
}

/// Logs the processor's snapshot for `epoch` (a sink's pre-commit, which is
/// also queued for commit). Empty snapshots are not logged, except the
/// bases and changes of an incremental operator.
fn log_snapshot<P: Processor>(
    processor: &mut P,
    node: &NodeEnv,
    epochs: &ShardEpochs,
    epoch: u64,
) -> Result<Logged, NodeFailure> {
    let incremental = node.commit.is_none() && processor.incremental();
    // A run's first snapshot of an incremental node is a base: a chain of
    // changes never spans a restart (whose state may have been discarded).
    let first = !node.snapshotted.replace(true);
    let base_epoch = crate::limits::snapshot_base_epoch(epoch) == epoch;
    let swept = incremental && !first && processor.swept_bases();
    if swept && (base_epoch || node.sweep_left.get() > 0) {
        return log_sweep(processor, node, epochs, epoch, base_epoch);
    }
    if incremental && (first || base_epoch) {
        // Logged even when empty: recovery takes an instance's newest base.
        // Streamed into the log as the operator writes it.
        let mut writer =
            epochs.part_writer(RecordType::OPERATOR_BASE, epoch, &node.node, node.instance);
        writer.write(&node.state_header)?;
        let (mut bytes, mut log_failure) = (0u64, None);
        let written = {
            let mut write = |piece: &[u8]| {
                bytes += piece.len() as u64;
                writer.write(piece).map_err(|failure| {
                    let message = failure.to_string();
                    log_failure = Some(failure);
                    OperatorError::other(message)
                })
            };
            processor.snapshot_base(epoch, &mut SnapshotWriter::new(&mut write))
        };
        if let Some(failure) = log_failure {
            return Err(failure);
        }
        written?;
        writer.finish()?;
        if let Some(metrics) = &node.snapshot_metrics {
            metrics.full_bytes.add(bytes);
        }
        return Ok(Logged::Full);
    }
    if incremental {
        // Logged even when empty: recovery tells an incremental node by
        // its changes record at the committed epoch.
        return CHANGES_BUFFER.with_borrow_mut(|changes| {
            changes.clear();
            processor.snapshot_changes(epoch, changes)?;
            if let Some(metrics) = &node.snapshot_metrics {
                metrics.changes_bytes.add(changes.len() as u64);
            }
            epochs.append_parts(
                RecordType::OPERATOR_CHANGES,
                epoch,
                &node.node,
                node.instance,
                &[&node.state_header, changes],
            )?;
            Ok(Logged::Changes)
        });
    }
    let bytes = processor.snapshot(epoch)?;
    if bytes.is_empty() {
        return Ok(Logged::Nothing);
    }
    match node.commit {
        Some(steps) => {
            epochs.append(
                RecordType::SINK_PRECOMMIT,
                epoch,
                &node.node,
                node.instance,
                &bytes,
            )?;
            failpoint("after-precommit", epoch);
            epochs.add_commit(epoch, node.node.clone(), node.instance, steps, bytes);
            Ok(Logged::Precommit)
        }
        None => {
            if let Some(metrics) = &node.snapshot_metrics {
                metrics.full_bytes.add(bytes.len() as u64);
            }
            epochs.append_parts(
                RecordType::OPERATOR_STATE,
                epoch,
                &node.node,
                node.instance,
                &[&node.state_header, &bytes],
            )?;
            Ok(Logged::Full)
        }
    }
}

thread_local! {
    /// The buffer changes are written into, one per shard thread and kept
    /// (changes of tens of MB are not allocated anew each epoch):
    /// checkpoints do not overlap on a shard.
    static CHANGES_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Logs an epoch's changes and the next slice of a swept base as one
/// `OPERATOR_SWEEP` record (`Processor::sweep_base`): a sweep begins at a
/// base epoch and ends within `limits::SNAPSHOT_SWEEP_EPOCHS` epochs.
fn log_sweep<P: Processor>(
    processor: &mut P,
    node: &NodeEnv,
    epochs: &ShardEpochs,
    epoch: u64,
    begin: bool,
) -> Result<Logged, NodeFailure> {
    let left = if begin {
        crate::limits::SNAPSHOT_SWEEP_EPOCHS
    } else {
        node.sweep_left.get()
    };
    CHANGES_BUFFER.with_borrow_mut(|bytes| {
        bytes.clear();
        processor.snapshot_changes(epoch, bytes)?;
        let changed = bytes.len();
        let complete = processor.sweep_base(begin, left, bytes)?;
        if !complete && left <= 1 {
            return Err(NodeFailure::Operator(OperatorError::other(format!(
                "its base sweep is not complete after {} epochs (Processor::sweep_base)",
                crate::limits::SNAPSHOT_SWEEP_EPOCHS
            ))));
        }
        node.sweep_left.set(if complete { 0 } else { left - 1 });
        if let Some(metrics) = &node.snapshot_metrics {
            metrics.changes_bytes.add(changed as u64);
            metrics.full_bytes.add((bytes.len() - changed) as u64);
        }
        let flags = u8::from(begin) | (u8::from(complete) << 1);
        epochs.append_parts(
            RecordType::OPERATOR_SWEEP,
            epoch,
            &node.node,
            node.instance,
            &[&[flags], &node.state_header, bytes],
        )?;
        Ok(Logged::Changes)
    })
}

/// Sends what the processor emitted, then drains what it held back, one
/// batch's worth at a time with backpressure in between.
async fn send_all<P: Processor>(
    processor: &mut P,
    out: &mut Emitter<P::Output>,
) -> Result<(), NodeFailure> {
    loop {
        out.take_error()?;
        out.send_ready().await?;
        if !processor.drain(out) {
            return Ok(());
        }
    }
}
