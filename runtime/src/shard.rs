//! A shard: one pinned thread running one glommio executor, which runs its
//! node instances as cooperative tasks.
//!
//! Each task runs under an [`AbortOnFailure`] guard: a task that returns an
//! error (a panic in it is caught and becomes
//! [`NodeFailure::Panicked`]), or is dropped unfinished (its shard's thread
//! panicked outside any task and is unwinding), sets the run's abort flag
//! at once, so every other task, on every shard, and the epoch coordinator
//! stop waiting for it (see `crate::runtime`).

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::batch::{BufferGauge, BufferPool, ReturnRings};
use crate::epoch::shard::{RecoveredCommit, ShardEpochs};
use crate::epoch::EpochShared;
use crate::error::{NodeFailure, RunError};
use crate::graph::ShardPlan;
use crate::metrics::wired;
use crate::node::spawn::ShardEnv;
use crate::node::task::NodeEnv;

/// A shard's share of the epoch protocol: its WAL, the shared state, and
/// the sink commits the previous run left to do on this shard.
pub(crate) struct ShardLog {
    pub(crate) wal: weir_wal::Wal,
    pub(crate) shared: Arc<EpochShared>,
    pub(crate) recovered: Vec<RecoveredCommit>,
}

/// Sets the run's abort flag when dropped armed: when the task it guards
/// failed, or was dropped before it finished (a panic unwinding the shard's
/// thread drops the executor's tasks).
struct AbortOnFailure(Option<Arc<AtomicBool>>);

impl AbortOnFailure {
    /// The task completed successfully: nothing to abort.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnFailure {
    fn drop(&mut self) {
        if let Some(aborted) = &self.0 {
            aborted.store(true, Ordering::Release);
        }
    }
}

/// `task`, aborting the run as soon as it fails (or is dropped unfinished).
async fn abort_on_failure(
    task: impl Future<Output = Result<(), NodeFailure>>,
    aborted: Arc<AtomicBool>,
) -> Result<(), NodeFailure> {
    let mut guard = AbortOnFailure(Some(aborted));
    // A panic is caught here, inside the task, rather than left to unwind
    // the shard's thread: an unwinding executor drops only the tasks it
    // has queued, and a task parked on a ring (its waker held by another
    // shard) would keep its rings open, so a shard waiting on them would
    // wait for ever.
    let result = futures_lite::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(task))
        .await
        .unwrap_or_else(|payload| {
            Err(NodeFailure::Panicked(crate::error::panic_message(
                &*payload,
            )))
        });
    if result.is_ok() {
        guard.disarm();
    }
    result
}

/// Runs every node instance of `plan` on the current executor (and, with
/// epochs, the shard's epoch task) and returns the first failure, after
/// every task has stopped. Any task's failure sets `aborted` at once (see
/// the module documentation), which ends the others promptly.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_shard(
    shard: usize,
    plan: ShardPlan,
    returns: ReturnRings,
    gauge: Arc<BufferGauge>,
    stop: Arc<AtomicBool>,
    aborted: Arc<AtomicBool>,
    log: Option<ShardLog>,
    flush_when_idle: bool,
    registry: crate::metrics::Registry,
) -> Result<(), RunError> {
    let instances = plan.instances.len();
    let epochs = log.map(|log| {
        Rc::new(
            ShardEpochs::new(shard, log.wal, log.shared, instances, log.recovered)
                .with_metrics(registry.clone()),
        )
    });
    let env = ShardEnv {
        pool: Rc::new(BufferPool::new(shard, returns, gauge)),
        stop,
        aborted: aborted.clone(),
        flush_when_idle,
    };
    let snapshot_metrics = match (&epochs, plan.instances.first()) {
        (Some(_), Some(first)) => Some(Rc::new(wired::snapshot_metrics(
            &first.context.metrics,
            shard,
        ))),
        _ => None,
    };
    let mut tasks: Vec<_> = plan
        .instances
        .into_iter()
        .enumerate()
        .map(|(slot, instance)| {
            let node = NodeEnv {
                node: instance.context.node.clone(),
                instance: instance.context.instance,
                slot,
                epochs: epochs.clone(),
                restore: instance.restore,
                restore_changes: instance.restore_changes,
                replay: instance.replay,
                commit: instance.commit,
                state_header: crate::epoch::state_header(&instance.fingerprint),
                snapshot_metrics: snapshot_metrics.clone(),
                snapshotted: std::cell::Cell::new(false),
                sweep_left: std::cell::Cell::new(0),
            };
            let failures = wired::failures(
                &instance.context.metrics,
                instance.context.component(),
                shard,
            );
            let task = instance
                .spawn
                .spawn(&instance.context, instance.io, &env, node);
            let task = glommio::spawn_local(abort_on_failure(task, aborted.clone()));
            (instance.context.node, Some(failures), task)
        })
        .collect();
    // Every node has started (recovery came before): the shard takes
    // input, for the readiness probe, until its nodes end.
    registry.shard_started();
    if let Some(epochs) = epochs {
        tasks.push((
            "(epochs)".into(),
            None,
            glommio::spawn_local(Box::pin(abort_on_failure(epochs.run(), aborted))),
        ));
    }
    let mut first_failure: Option<RunError> = None;
    for (node, failures, task) in tasks {
        if let Err(failure) = task.await {
            if let Some(failures) = failures {
                failures.inc();
            }
            tracing::error!(node = %node, shard, error = %failure, "node failed");
            let error = RunError::Node {
                node: node.to_string(),
                shard,
                failure,
            };
            // Keep the first root cause over a ring closed by another failure.
            match &first_failure {
                Some(known) if !known.is_consequence() || error.is_consequence() => {}
                _ => first_failure = Some(error),
            }
        }
    }
    registry.shard_ended();
    first_failure.map_or(Ok(()), Err)
}
