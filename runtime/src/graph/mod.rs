//! The dataflow graph: named sources, processors and sinks joined by
//! partitioned edges, built and checked before anything runs.
//!
//! Nodes are declared with a factory that makes the node's operator on each
//! shard; edges are declared by node name with a partitioning
//! ([`Partition`]). [`GraphBuilder::build`] rejects, naming the nodes: a
//! duplicate name, an edge to a missing node, an edge into a source or out of
//! a sink, a processor or sink without input (a dangling node), a source or
//! processor without output (records going nowhere), a cycle, and an edge
//! whose record type differs from its producer's output or its consumer's
//! input.
//!
//! Every node runs one instance on every shard unless it declares
//! [`Parallelism::One`], in which case its single instance runs on shard 0.

mod plan;
mod validate;

pub(crate) use plan::ShardPlan;

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::GraphError;
use crate::node::spawn::{ProcessorSpawn, SinkSpawn, SourceSpawn, Spawn};
use crate::operator::{Processor, ShardContext, Sink, Source};
use crate::partition::{Partition, PartitionKind};
use crate::record::Record;

/// How many instances of a node run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    /// One instance per shard, each owning its slice of the node's work.
    EveryShard,
    /// A single instance, on shard 0.
    One,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// No inputs, one output stream.
    Source,
    /// Inputs and one output stream.
    Processor,
    /// Inputs, no output.
    Sink,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeInfo {
    id: TypeId,
    name: &'static str,
}

impl TypeInfo {
    fn of<T: 'static>() -> TypeInfo {
        TypeInfo {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        }
    }
}

pub(crate) struct NodeSpec {
    pub(crate) name: Arc<str>,
    pub(crate) kind: NodeKind,
    pub(crate) parallelism: Parallelism,
    input: Option<TypeInfo>,
    output: Option<TypeInfo>,
    pub(crate) spawn: Arc<dyn Spawn>,
    /// A sink's commit step.
    pub(crate) commit: Option<crate::epoch::SinkSteps>,
    /// A processor allowed to have no output edge.
    pub(crate) output_optional: bool,
    /// What shapes the node's state (see [`NodeOptions::state_fingerprint`]);
    /// empty if nothing was declared.
    pub(crate) fingerprint: Arc<str>,
}

pub(crate) struct EdgeSpec {
    from: String,
    /// The producer's output port the edge carries (0 unless connected
    /// with [`GraphBuilder::connect_port`]).
    pub(crate) from_port: usize,
    to: String,
    pub(crate) kind: PartitionKind,
    record: TypeInfo,
    pub(crate) partition: Arc<dyn Any + Send + Sync>,
}

/// Options of a node just added to a [`GraphBuilder`].
pub struct NodeOptions<'a> {
    node: &'a mut NodeSpec,
}

impl std::fmt::Debug for NodeOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("node", &self.node.name)
            .field("parallelism", &self.node.parallelism)
            .field("output_optional", &self.node.output_optional)
            .finish()
    }
}

impl NodeOptions<'_> {
    /// Sets how many instances of the node run.
    pub fn parallelism(self, parallelism: Parallelism) -> Self {
        self.node.parallelism = parallelism;
        self
    }

    /// Lets a processor have no output edge: one whose purpose is its
    /// state (queried while it runs) rather than its output. Without this
    /// a processor nothing reads from is rejected as a mistake.
    pub fn output_optional(self) -> Self {
        self.node.output_optional = true;
        self
    }

    /// Declares what shapes the node's state: the options that decide how
    /// its snapshot is to be read (a window's kind, size and grouping, a
    /// dedup's identity fields), as `(option, value)` pairs. Every snapshot
    /// of the node carries them; a restart whose pairs differ from those
    /// of the state it would restore refuses to start, naming the node and
    /// each option that changed, unless the node's state is discarded
    /// ([`RuntimeBuilder::discard_state`](crate::RuntimeBuilder::discard_state)).
    /// Options that do not shape the state (a condition, a lateness) are
    /// best left out, so changing them keeps the state.
    pub fn state_fingerprint<K, V>(self, options: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: std::fmt::Display,
        V: std::fmt::Display,
    {
        let text: Vec<String> = options
            .into_iter()
            .map(|(option, value)| format!("{option}={value}"))
            .collect();
        self.node.fingerprint = text.join("\n").into();
        self
    }
}

/// What [`GraphBuilder::describe_output`] says of one output port.
#[derive(Clone)]
pub(crate) struct OutputSpec {
    pub(crate) node: Arc<str>,
    pub(crate) port: usize,
    /// Its name in metrics (`output` label): `_default` for the main one.
    pub(crate) label: Arc<str>,
    record: TypeInfo,
    pub(crate) tap: Option<crate::tap::TapSpec>,
}

/// Declares a graph; [`build`](GraphBuilder::build) checks it.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeSpec>,
    edges: Vec<EdgeSpec>,
    outputs: Vec<OutputSpec>,
}

impl std::fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.nodes.iter().map(|node| &*node.name).collect();
        f.debug_struct("GraphBuilder")
            .field("nodes", &names)
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> GraphBuilder {
        GraphBuilder::default()
    }

    /// Adds a source; `factory` makes its operator on each shard it runs on.
    pub fn source<S, F>(&mut self, name: &str, factory: F) -> NodeOptions<'_>
    where
        S: Source,
        F: Fn(&ShardContext) -> S + Send + Sync + 'static,
    {
        let spawn = Arc::new(SourceSpawn(factory, PhantomData));
        self.add(
            name,
            NodeKind::Source,
            None,
            Some(TypeInfo::of::<S::Output>()),
            spawn,
        )
    }

    /// Adds a processor; `factory` makes its operator on each shard.
    pub fn processor<P, F>(&mut self, name: &str, factory: F) -> NodeOptions<'_>
    where
        P: Processor,
        F: Fn(&ShardContext) -> P + Send + Sync + 'static,
    {
        let spawn = Arc::new(ProcessorSpawn(factory, PhantomData));
        let input = Some(TypeInfo::of::<P::Input>());
        self.add(
            name,
            NodeKind::Processor,
            input,
            Some(TypeInfo::of::<P::Output>()),
            spawn,
        )
    }

    /// Adds a sink; `factory` makes its operator on each shard.
    pub fn sink<K, F>(&mut self, name: &str, factory: F) -> NodeOptions<'_>
    where
        K: Sink,
        F: Fn(&ShardContext) -> K + Send + Sync + 'static,
    {
        let spawn = Arc::new(SinkSpawn(factory, PhantomData));
        let input = Some(TypeInfo::of::<K::Input>());
        self.add(name, NodeKind::Sink, input, None, spawn);
        let node = self.nodes.last_mut().expect("just pushed");
        node.commit = Some(crate::epoch::SinkSteps {
            sync: K::sync,
            commit: K::commit,
        });
        NodeOptions { node }
    }

    fn add(
        &mut self,
        name: &str,
        kind: NodeKind,
        input: Option<TypeInfo>,
        output: Option<TypeInfo>,
        spawn: Arc<dyn Spawn>,
    ) -> NodeOptions<'_> {
        self.nodes.push(NodeSpec {
            name: name.into(),
            kind,
            parallelism: Parallelism::EveryShard,
            input,
            output,
            spawn,
            commit: None,
            output_optional: false,
            fingerprint: "".into(),
        });
        let node = self.nodes.last_mut().expect("just pushed");
        NodeOptions { node }
    }

    /// Connects `from`'s output to an input of `to`, carrying records of type
    /// `T` partitioned by `partition`. A node's input ports are numbered in
    /// the order its edges are connected.
    pub fn connect<T: Record + Send + Sync>(
        &mut self,
        from: &str,
        to: &str,
        partition: Partition<T>,
    ) -> &mut Self {
        self.connect_port(from, 0, to, partition)
    }

    /// Connects output port `port` of `from` to an input of `to`: the edge
    /// carries only what `from` emits with
    /// [`Emitter::push_to`](crate::Emitter::push_to)`(port, ..)`. Port 0 is
    /// the main output ([`connect`](GraphBuilder::connect),
    /// [`Emitter::push`](crate::Emitter::push)); other ports are side
    /// outputs such as a router's branches, a parser's dead letters or a
    /// window's late events.
    pub fn connect_port<T: Record + Send + Sync>(
        &mut self,
        from: &str,
        port: usize,
        to: &str,
        partition: Partition<T>,
    ) -> &mut Self {
        self.edges.push(EdgeSpec {
            from: from.to_string(),
            from_port: port,
            to: to.to_string(),
            kind: partition.kind(),
            record: TypeInfo::of::<T>(),
            partition: Arc::new(partition),
        });
        self
    }

    /// Names output `port` of `node` (records of type `T`) for metrics and
    /// taps: `name` is the port's name (empty for the main output, which
    /// metrics call `_default`), and `tap`, if given, lets `weir tap`
    /// sample it as `COMPONENT` or `COMPONENT.NAME` (the component being
    /// [`component_of`](crate::component_of) the node). Outputs not described are labelled by
    /// port number and cannot be tapped.
    pub fn describe_output<T: Record + Send + Sync>(
        &mut self,
        node: &str,
        port: usize,
        name: &str,
        tap: Option<crate::tap::TapFormat<T>>,
    ) -> &mut Self {
        let node: Arc<str> = node.into();
        let component = crate::metrics::component_of(&node);
        let tap = tap.map(|format| crate::tap::TapSpec {
            name: if name.is_empty() {
                component.into()
            } else {
                format!("{component}.{name}").into()
            },
            format: Arc::new(format),
        });
        self.outputs.push(OutputSpec {
            node,
            port,
            label: if name.is_empty() { "_default" } else { name }.into(),
            record: TypeInfo::of::<T>(),
            tap,
        });
        self
    }

    /// Checks the graph and freezes it.
    pub fn build(self) -> Result<Graph, GraphError> {
        let edges = validate::validate(&self.nodes, &self.edges)?;
        validate::check_outputs(&self.nodes, &self.outputs)?;
        Ok(Graph {
            nodes: self.nodes,
            edges: self.edges,
            resolved: edges,
            outputs: self.outputs,
        })
    }
}

impl Graph {
    /// Each node's state fingerprint, for the nodes that declared one
    /// ([`NodeOptions::state_fingerprint`]), by node name.
    pub fn state_fingerprints(&self) -> std::collections::BTreeMap<String, String> {
        self.nodes
            .iter()
            .filter(|node| !node.fingerprint.is_empty())
            .map(|node| (node.name.to_string(), node.fingerprint.to_string()))
            .collect()
    }

    /// What starting this graph over state saved by a graph with the
    /// fingerprints `saved` ([`state_fingerprints`](Graph::state_fingerprints))
    /// would refuse: one line per node whose state this graph cannot take
    /// over (it left the graph, or changed an option that shapes its
    /// state), as a start refuses it. Empty: compatible.
    pub fn state_changes_from(
        &self,
        saved: &std::collections::BTreeMap<String, String>,
    ) -> Vec<String> {
        let current = self.state_fingerprints();
        saved
            .iter()
            .filter_map(|(node, saved)| match current.get(node) {
                None => Some(format!(
                    "`{node}` keeps state but is no longer in the pipeline"
                )),
                Some(current) if current != saved => Some(format!(
                    "`{node}` changed an option that shapes its state: {}",
                    describe_change(saved, current)
                )),
                Some(_) => None,
            })
            .collect()
    }
}

/// An edge after validation: node indices and the consumer's input port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResolvedEdge {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) port: usize,
}

/// A checked graph, ready to run.
pub struct Graph {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) edges: Vec<EdgeSpec>,
    pub(crate) resolved: Vec<ResolvedEdge>,
    pub(crate) outputs: Vec<OutputSpec>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let edges: Vec<String> = self
            .edges
            .iter()
            .map(|edge| format!("{} -[{:?}]-> {}", edge.from, edge.kind, edge.to))
            .collect();
        f.debug_struct("Graph").field("edges", &edges).finish()
    }
}

impl Graph {
    /// The node named `node`.
    pub(crate) fn node(&self, node: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|spec| &*spec.name == node)
    }

    /// The commit steps of the sink named `node`, if it is one.
    pub(crate) fn steps_of(&self, node: &str) -> Option<crate::epoch::SinkSteps> {
        self.node(node)?.commit
    }

    /// Source instances over `shards` shards.
    pub(crate) fn source_instances(&self, shards: usize) -> usize {
        (0..self.nodes.len())
            .filter(|&node| self.nodes[node].kind == NodeKind::Source)
            .map(|node| self.instance_shards(node, shards).len())
            .sum()
    }
}

/// `saved` against `current` fingerprint, option by option:
/// `size: 10s → 5m, group_by: ["service"] → []`.
pub(crate) fn describe_change(saved: &str, current: &str) -> String {
    let options = |text: &str| -> std::collections::BTreeMap<String, String> {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(option, value)| (option.to_string(), value.to_string()))
            .collect()
    };
    let (saved, current) = (options(saved), options(current));
    let mut names: Vec<&String> = saved.keys().chain(current.keys()).collect();
    names.sort();
    names.dedup();
    let none = "(none)".to_string();
    names
        .into_iter()
        .filter_map(|name| {
            // An option one side lacks reads as `(none)`, as an unset one.
            let old = saved.get(name).unwrap_or(&none);
            let new = current.get(name).unwrap_or(&none);
            (old != new).then(|| format!("{name}: {old} → {new}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
