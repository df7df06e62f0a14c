//! Turning a graph into per-shard work: node instances and the rings that
//! join them.
//!
//! For every edge and every producer instance the plan lists the consumer
//! instances it can reach (one for forward partitioning, all of them
//! otherwise) and makes one ring per (producer shard, consumer shard) pair.
//! The producer end goes to the producer instance's outputs and the consumer
//! end to the consumer instance's inputs, so every ring has exactly one
//! writer and one reader.

use std::sync::Arc;

use super::{Graph, Parallelism};
use crate::emit::OutputIo;
use crate::emit::PortIo;
use crate::input::InputRing;
use crate::limits::RING_CAPACITY_BATCHES;
use crate::node::spawn::{NodeIo, Spawn};
use crate::operator::ShardContext;
use crate::partition::PartitionKind;
use crate::ring::ring;

/// One node instance to start on a shard.
pub(crate) struct InstancePlan {
    pub(crate) context: ShardContext,
    pub(crate) io: NodeIo,
    pub(crate) spawn: Arc<dyn Spawn>,
    /// A sink's commit step.
    pub(crate) commit: Option<crate::epoch::SinkSteps>,
    /// What shapes the node's state (`NodeOptions::state_fingerprint`).
    pub(crate) fingerprint: Arc<str>,
    /// State or position to restore (filled from recovery).
    pub(crate) restore: Option<Vec<u8>>,
    /// Changes to apply after `restore` (filled from recovery).
    pub(crate) restore_changes: Vec<Vec<u8>>,
    /// A source's intake records to replay (filled from recovery).
    pub(crate) replay: Vec<(u64, Vec<u8>)>,
}

/// Everything one shard runs.
#[derive(Default)]
pub(crate) struct ShardPlan {
    pub(crate) instances: Vec<InstancePlan>,
}

impl Graph {
    pub(crate) fn instance_shards(&self, node: usize, shards: usize) -> Vec<usize> {
        match self.nodes[node].parallelism {
            Parallelism::EveryShard => (0..shards).collect(),
            Parallelism::One => vec![0],
        }
    }

    /// Lays the graph out over `shards` shards; `committed_epoch` is what
    /// recovery found (0 when fresh), `snapshots` whether the run takes
    /// snapshots (`ShardContext::snapshots`).
    pub(crate) fn plan(
        &self,
        shards: usize,
        committed_epoch: u64,
        snapshots: bool,
        metrics: &crate::metrics::Registry,
        taps: &crate::tap::Taps,
    ) -> Vec<ShardPlan> {
        let tap_specs: Vec<crate::tap::TapSpec> = self
            .outputs
            .iter()
            .filter_map(|output| output.tap.clone())
            .collect();
        let tap_points = taps.start_run(&tap_specs);
        // Every described output of a node, with its tap's point and format.
        let ports_of = |name: &str| -> Vec<PortIo> {
            self.outputs
                .iter()
                .filter(|output| &*output.node == name)
                .map(|output| PortIo {
                    port: output.port,
                    label: output.label.clone(),
                    tap: output.tap.as_ref().and_then(|spec| {
                        let index = tap_specs.iter().position(|s| s.name == spec.name)?;
                        Some((tap_points[index].clone(), spec.format.clone()))
                    }),
                })
                .collect()
        };
        let mut plans: Vec<ShardPlan> = (0..shards).map(|_| ShardPlan::default()).collect();
        // slot[node][shard] = index of that instance in plans[shard].instances
        let mut slot = vec![vec![usize::MAX; shards]; self.nodes.len()];
        for (node_index, node) in self.nodes.iter().enumerate() {
            let instance_shards = self.instance_shards(node_index, shards);
            for (instance, &shard) in instance_shards.iter().enumerate() {
                slot[node_index][shard] = plans[shard].instances.len();
                plans[shard].instances.push(InstancePlan {
                    context: ShardContext {
                        shard,
                        shards,
                        instance,
                        instances: instance_shards.len(),
                        node: node.name.clone(),
                        committed_epoch,
                        snapshots,
                        metrics: metrics.clone(),
                    },
                    io: NodeIo {
                        inputs: Vec::new(),
                        outputs: Vec::new(),
                        ports: ports_of(&node.name),
                    },
                    spawn: node.spawn.clone(),
                    commit: node.commit,
                    fingerprint: node.fingerprint.clone(),
                    restore: None,
                    restore_changes: Vec::new(),
                    replay: Vec::new(),
                });
            }
        }
        for (edge, resolved) in self.edges.iter().zip(&self.resolved) {
            let consumers = self.instance_shards(resolved.to, shards);
            // Between two stages of one component: not the component's
            // input or output.
            let internal = crate::metrics::component_of(&self.nodes[resolved.from].name)
                == crate::metrics::component_of(&self.nodes[resolved.to].name);
            for producer in self.instance_shards(resolved.from, shards) {
                let targets = match edge.kind {
                    PartitionKind::Forward if consumers.contains(&producer) => vec![producer],
                    PartitionKind::Forward => vec![consumers[0]],
                    _ => consumers.clone(),
                };
                let mut output = OutputIo {
                    to: self.nodes[resolved.to].name.clone(),
                    port: edge.from_port,
                    internal,
                    partition: edge.partition.clone(),
                    targets: Vec::with_capacity(targets.len()),
                };
                for consumer in targets {
                    let (ring_producer, ring_consumer) = ring(RING_CAPACITY_BATCHES);
                    output.targets.push((consumer, ring_producer));
                    let instance = slot[resolved.to][consumer];
                    plans[consumer].instances[instance]
                        .io
                        .inputs
                        .push(InputRing {
                            port: resolved.port,
                            from: self.nodes[resolved.from].name.clone(),
                            from_shard: producer,
                            internal,
                            ring: ring_consumer,
                        });
                }
                let instance = slot[resolved.from][producer];
                plans[producer].instances[instance].io.outputs.push(output);
            }
        }
        plans
    }
}
