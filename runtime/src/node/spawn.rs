//! Type erasure for nodes: how the graph, which holds nodes of many record
//! types, starts a typed task for each node instance.
//!
//! Each node is registered with a factory for its operator. The graph keeps
//! it as an `Arc<dyn Spawn>`; on each shard the plan hands it the instance's
//! rings and it returns the instance's task, monomorphized for the
//! operator's types, so the per-record path has no dynamic dispatch besides
//! an edge's key function.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::batch::BufferPool;
use crate::emit::{Emitter, OutputIo, PortIo};
use crate::error::NodeFailure;
use crate::input::{InputRing, InputSet};
use crate::intake::IntakeLog;
use crate::metrics::wired::{InputMetrics, OutputMetrics};
use crate::node::task::{run_processor, run_source, NodeEnv};
use crate::operator::{Processor, ShardContext, Sink, SinkProcessor, Source};

/// A node instance's task.
pub(crate) type NodeTask = Pin<Box<dyn Future<Output = Result<(), NodeFailure>>>>;

/// A node instance's rings.
pub(crate) struct NodeIo {
    pub(crate) inputs: Vec<InputRing>,
    pub(crate) outputs: Vec<OutputIo>,
    /// Its described output ports (`GraphBuilder::describe_output`).
    pub(crate) ports: Vec<PortIo>,
}

/// What every task on a shard shares.
pub(crate) struct ShardEnv {
    pub(crate) pool: Rc<BufferPool>,
    pub(crate) stop: Arc<AtomicBool>,
    /// The run's abort flag (see `crate::runtime`): sources stop with
    /// [`NodeFailure::Aborted`] once it is set.
    pub(crate) aborted: Arc<AtomicBool>,
    /// Processors hand on partly filled batches whenever their inputs are
    /// momentarily empty (`RuntimeBuilder::low_latency`).
    pub(crate) flush_when_idle: bool,
}

/// The output metrics of a node instance, if it has outputs.
fn output_metrics(context: &ShardContext, io: &NodeIo) -> Option<OutputMetrics> {
    // Outputs that leave the component, by port, with their labels.
    let mut ports: Vec<(usize, Arc<str>)> = Vec::new();
    for output in io.outputs.iter().filter(|output| !output.internal) {
        if ports.iter().any(|(port, _)| *port == output.port) {
            continue;
        }
        let label = io
            .ports
            .iter()
            .find(|described| described.port == output.port)
            .map_or_else(
                || match output.port {
                    0 => "_default".into(),
                    port => port.to_string().into(),
                },
                |described| described.label.clone(),
            );
        ports.push((output.port, label));
    }
    (!io.outputs.is_empty())
        .then(|| OutputMetrics::new(&context.metrics, context.component(), context.shard, &ports))
}

/// The input metrics of a node instance.
fn input_metrics(context: &ShardContext) -> InputMetrics {
    InputMetrics::new(&context.metrics, context.component(), context.shard)
}

/// Builds a node instance's task on its shard.
pub(crate) trait Spawn: Send + Sync {
    fn spawn(&self, context: &ShardContext, io: NodeIo, env: &ShardEnv, node: NodeEnv) -> NodeTask;
}

pub(crate) struct SourceSpawn<F, S>(pub(crate) F, pub(crate) PhantomData<fn() -> S>);

impl<F, S> Spawn for SourceSpawn<F, S>
where
    F: Fn(&ShardContext) -> S + Send + Sync,
    S: Source,
{
    fn spawn(&self, context: &ShardContext, io: NodeIo, env: &ShardEnv, node: NodeEnv) -> NodeTask {
        let mut source = (self.0)(context);
        let metrics = output_metrics(context, &io);
        let out = Emitter::<S::Output>::new(io.outputs, &io.ports, env.pool.clone(), metrics);
        let (stop, aborted) = (env.stop.clone(), env.aborted.clone());
        let committed = node
            .epochs
            .as_ref()
            .map_or(0, |e| e.shared().committed.load(Ordering::Acquire));
        // Records emitted before the first barrier belong to epoch C + 1.
        let epoch = Rc::new(Cell::new(committed + 1));
        let intake = match &node.epochs {
            Some(epochs) => IntakeLog::new(
                epochs.clone(),
                node.node.clone(),
                node.instance,
                epoch.clone(),
            ),
            None => IntakeLog::disabled(),
        };
        source.attach(intake.clone());
        Box::pin(async move {
            if let Some(position) = &node.restore {
                source.restore(position)?;
            }
            run_source(source, out, stop, aborted, node, intake, epoch).await
        })
    }
}

pub(crate) struct ProcessorSpawn<F, P>(pub(crate) F, pub(crate) PhantomData<fn() -> P>);

impl<F, P> Spawn for ProcessorSpawn<F, P>
where
    F: Fn(&ShardContext) -> P + Send + Sync,
    P: Processor,
{
    fn spawn(&self, context: &ShardContext, io: NodeIo, env: &ShardEnv, node: NodeEnv) -> NodeTask {
        let processor = (self.0)(context);
        let metrics = output_metrics(context, &io);
        let inputs = InputSet::new(io.inputs, input_metrics(context));
        let out = Emitter::<P::Output>::new(io.outputs, &io.ports, env.pool.clone(), metrics);
        Box::pin(restore_and_run(
            processor,
            inputs,
            out,
            env.pool.clone(),
            node,
            env.flush_when_idle,
        ))
    }
}

pub(crate) struct SinkSpawn<F, K>(pub(crate) F, pub(crate) PhantomData<fn() -> K>);

impl<F, K> Spawn for SinkSpawn<F, K>
where
    F: Fn(&ShardContext) -> K + Send + Sync,
    K: Sink,
{
    fn spawn(&self, context: &ShardContext, io: NodeIo, env: &ShardEnv, node: NodeEnv) -> NodeTask {
        let sink = SinkProcessor((self.0)(context));
        let metrics = output_metrics(context, &io);
        let inputs = InputSet::new(io.inputs, input_metrics(context));
        let out = Emitter::<()>::new(io.outputs, &io.ports, env.pool.clone(), metrics);
        Box::pin(run_processor(
            sink,
            inputs,
            out,
            env.pool.clone(),
            node,
            env.flush_when_idle,
        ))
    }
}

async fn restore_and_run<P: Processor>(
    mut processor: P,
    inputs: InputSet,
    out: Emitter<P::Output>,
    pool: Rc<BufferPool>,
    node: NodeEnv,
    flush_when_idle: bool,
) -> Result<(), NodeFailure> {
    if let Some(state) = &node.restore {
        processor.restore(state)?;
    }
    for changes in &node.restore_changes {
        processor.restore_changes(changes)?;
    }
    processor.on_start();
    run_processor(processor, inputs, out, pool, node, flush_when_idle).await
}
