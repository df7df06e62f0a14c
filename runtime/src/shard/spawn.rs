//! Type erasure for nodes: how the graph, which holds nodes of many record
//! types, starts a typed task for each node instance.
//!
//! Each node is registered with a factory for its operator. The graph keeps
//! it as an `Arc<dyn Spawn>`; on each shard the plan hands it the instance's
//! rings and it returns the instance's task, monomorphized for the
//! operator's types, so the per-record path has no dynamic dispatch besides
//! an edge's key function.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::batch::BufferPool;
use crate::emit::{Emitter, OutputIo};
use crate::error::NodeFailure;
use crate::input::{InputRing, InputSet};
use crate::operator::{Processor, ShardContext, Sink, SinkProcessor, Source};
use crate::shard::task::{run_processor, run_source};

/// A node instance's task.
pub(crate) type NodeTask = Pin<Box<dyn Future<Output = Result<(), NodeFailure>>>>;

/// A node instance's rings.
pub(crate) struct NodeIo {
    pub(crate) inputs: Vec<InputRing>,
    pub(crate) outputs: Vec<OutputIo>,
}

/// What every task on a shard shares.
pub(crate) struct ShardEnv {
    pub(crate) pool: Rc<BufferPool>,
    pub(crate) stop: Arc<AtomicBool>,
}

/// Builds a node instance's task on its shard.
pub(crate) trait Spawn: Send + Sync {
    fn spawn(&self, context: &ShardContext, io: NodeIo, env: &ShardEnv) -> NodeTask;
}

pub(crate) struct SourceSpawn<F, S>(pub(crate) F, pub(crate) PhantomData<fn() -> S>);

impl<F, S> Spawn for SourceSpawn<F, S>
where
    F: Fn(&ShardContext) -> S + Send + Sync,
    S: Source,
{
    fn spawn(&self, context: &ShardContext, io: NodeIo, env: &ShardEnv) -> NodeTask {
        let source = (self.0)(context);
        let out = Emitter::<S::Output>::new(io.outputs, env.pool.clone());
        Box::pin(run_source(source, out, env.stop.clone()))
    }
}

pub(crate) struct ProcessorSpawn<F, P>(pub(crate) F, pub(crate) PhantomData<fn() -> P>);

impl<F, P> Spawn for ProcessorSpawn<F, P>
where
    F: Fn(&ShardContext) -> P + Send + Sync,
    P: Processor,
{
    fn spawn(&self, context: &ShardContext, io: NodeIo, env: &ShardEnv) -> NodeTask {
        let processor = (self.0)(context);
        let inputs = InputSet::new(io.inputs);
        let out = Emitter::<P::Output>::new(io.outputs, env.pool.clone());
        Box::pin(run_processor(processor, inputs, out, env.pool.clone()))
    }
}

pub(crate) struct SinkSpawn<F, K>(pub(crate) F, pub(crate) PhantomData<fn() -> K>);

impl<F, K> Spawn for SinkSpawn<F, K>
where
    F: Fn(&ShardContext) -> K + Send + Sync,
    K: Sink,
{
    fn spawn(&self, context: &ShardContext, io: NodeIo, env: &ShardEnv) -> NodeTask {
        let sink = SinkProcessor((self.0)(context));
        let inputs = InputSet::new(io.inputs);
        let out = Emitter::<()>::new(io.outputs, env.pool.clone());
        Box::pin(run_processor(sink, inputs, out, env.pool.clone()))
    }
}
