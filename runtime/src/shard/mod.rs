//! A shard: one pinned thread running one glommio executor, which runs its
//! node instances as cooperative tasks.

pub(crate) mod spawn;
pub(crate) mod task;

use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::batch::{BufferGauge, BufferPool, ReturnRings};
use crate::error::RunError;
use crate::graph::ShardPlan;
use spawn::ShardEnv;

/// Runs every node instance of `plan` on the current executor and returns
/// the first failure, after every instance has stopped.
pub(crate) async fn run_shard(
    shard: usize,
    plan: ShardPlan,
    returns: ReturnRings,
    gauge: Arc<BufferGauge>,
    stop: Arc<AtomicBool>,
) -> Result<(), RunError> {
    let env = ShardEnv {
        pool: Rc::new(BufferPool::new(shard, returns, gauge)),
        stop,
    };
    let tasks: Vec<_> = plan
        .instances
        .into_iter()
        .map(|instance| {
            let task = instance.spawn.spawn(&instance.context, instance.io, &env);
            (instance.context.node, glommio::spawn_local(task))
        })
        .collect();
    let mut first_failure: Option<RunError> = None;
    for (node, task) in tasks {
        if let Err(failure) = task.await {
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
    first_failure.map_or(Ok(()), Err)
}
