//! One shape for every source, processor and sink of a pipeline file.
//!
//! A component is the config struct its table reads into (`FilterConfig`,
//! `WebhookSinkConfig`, ...) and an implementation of [`Component`] next to
//! it, in the component's own file. The pipeline's reader, planner and
//! graph builder (`crate::config`) know no concrete component: they loop
//! over the components of a file and call these methods, and the registry
//! (`crate::config::registry`) is the one list of component types.
//!
//! A component:
//! 1. says which components it reads ([`Component::inputs`]; a source
//!    reads none);
//! 2. plans itself against the schema of the rows its inputs carry
//!    ([`Component::plan`]): its options are checked against it (an error
//!    names the option), and it says the schema of each of its outputs;
//! 3. adds its runtime node, and the edges from its inputs, to the graph
//!    ([`Node::add`]).
//!
//! Adding a component: see "Adding a component" in `docs/architecture.md`.

use std::sync::Arc;

use weir_runtime::GraphBuilder;

use crate::row::{OptionError, Schema, SchemaRef};

/// The name of the side output where records that could not be read or
/// parsed go (`NAME.dead_letter`).
pub const DEAD_LETTER: &str = "dead_letter";

/// The name of a window's side output of late events (`NAME.late`).
pub const LATE: &str = "late";

/// One readable output of a component: the rows of a schema.
#[derive(Debug, Clone)]
pub struct Output {
    /// The port's name as `inputs` entries write it (`NAME.PORT`): empty
    /// for the main output.
    pub name: String,
    /// The runtime output port.
    pub port: usize,
    /// The schema of its rows.
    pub schema: SchemaRef,
    /// The runtime node readers connect to, when it is not the component's
    /// own (an ingest source's rows come out of its `NAME:rows` node).
    pub node: Option<String>,
}

impl Output {
    /// The main output, carrying rows of `schema`.
    pub fn rows(schema: Schema) -> Output {
        Output::main(Arc::new(schema))
    }

    /// The main output, carrying rows of a shared `schema`.
    pub fn main(schema: SchemaRef) -> Output {
        Output {
            name: String::new(),
            port: 0,
            schema,
            node: None,
        }
    }

    /// Side output `name` on `port`, carrying rows of `schema`.
    pub fn side(name: &str, port: usize, schema: Schema) -> Output {
        Output {
            name: name.to_owned(),
            port,
            schema: Arc::new(schema),
            node: None,
        }
    }

    /// This output, read from runtime node `node` rather than the
    /// component's own.
    pub fn from_node(mut self, node: String) -> Output {
        self.node = Some(node);
        self
    }
}

/// One resolved `inputs` entry: the runtime node and port it reads.
#[derive(Debug, Clone)]
pub struct Input {
    /// The runtime node (a component's name, or the node its output
    /// names).
    pub node: String,
    /// The node's output port.
    pub port: usize,
}

/// What [`Component::plan`] knows of the component and the pipeline.
#[derive(Debug)]
pub struct PlanContext<'a> {
    /// The component's name.
    pub name: &'a str,
    /// The schema of the rows its inputs carry (`None` for a source); the
    /// first input's for a component with [mixed
    /// inputs](Component::mixed_inputs).
    pub input: Option<&'a SchemaRef>,
    /// The schema of each input, in `inputs` order (empty for a source).
    pub inputs: &'a [SchemaRef],
    /// The pipeline's name: the file's stem (delivery sinks put it in
    /// idempotency keys and progress rows).
    pub pipeline: &'a str,
    /// The scale-out run this plan is for, with `[runtime] group`
    /// (`crate::scale_out`): the `kafka` source joins the group and the
    /// `kafka` sinks publish in the process's epoch transaction.
    pub group: Option<&'a crate::scale_out::GroupPlan>,
}

impl PlanContext<'_> {
    /// The schema of the rows the inputs carry; empty for a source.
    pub fn schema(&self) -> SchemaRef {
        self.input
            .cloned()
            .unwrap_or_else(|| Arc::new(Schema::default()))
    }
}

/// A planned component: what its outputs carry, and its node.
pub struct Planned {
    /// Its outputs (none for a sink).
    pub outputs: Vec<Output>,
    /// How to add its runtime node.
    pub node: Box<dyn Node>,
}

impl Planned {
    /// A component with `outputs` whose node is `node`.
    pub fn new(outputs: Vec<Output>, node: impl Node + 'static) -> Planned {
        Planned {
            outputs,
            node: Box::new(node),
        }
    }
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// Adds a planned component's runtime node to a graph.
pub trait Node: Send + Sync {
    /// Adds node `name` and an edge from each of `inputs` (what the
    /// component's `inputs` entries resolved to) into it.
    fn add(&self, graph: &mut GraphBuilder, name: &str, inputs: &[Input]);
}

/// A component of a pipeline file; see the module docs.
pub trait Component {
    /// The `inputs` entries: components (or their side outputs) it reads.
    fn inputs(&self) -> &[String] {
        &[]
    }

    /// Checks the options that need no input schema (positive sizes,
    /// non-empty lists) of the component called `name`, before anything is
    /// planned. An error names the option.
    fn check(&self, name: &str) -> Result<(), OptionError> {
        let _ = name;
        Ok(())
    }

    /// Checks the options against what the inputs carry, and plans the
    /// outputs and the node. An error names the option.
    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError>;

    /// When [`plan`](Component::plan) failed: the outputs, if they do not
    /// depend on the failed option (a filter's schema is its input's), so
    /// the components reading them are still checked and one pass reports
    /// their errors too.
    fn outputs_despite_error(&self, input: &SchemaRef) -> Option<Vec<Output>> {
        let _ = input;
        None
    }

    /// Whether its inputs may carry different schemas (a join's two
    /// sides): the planner then leaves checking each to
    /// [`plan`](Component::plan), which reads them from
    /// [`PlanContext::inputs`]. The default is no: every input must carry
    /// the same schema.
    fn mixed_inputs(&self) -> bool {
        false
    }

    /// Whether it can run in a scale-out pipeline (`[runtime] group`):
    /// keeps no state that would have to move between processes, or moves
    /// it through Kafka. Kafka sources and sinks and stateless processors
    /// do; the default is no.
    fn scales_out(&self) -> bool {
        false
    }
}

/// The node of a stateful processor: its spec, and the options that shape
/// its state (its fingerprint, see [`state_options`]).
#[derive(Debug, Clone)]
pub struct Stateful<S> {
    /// The checked spec.
    pub spec: S,
    /// `NodeOptions::state_fingerprint`'s pairs.
    pub fingerprint: Vec<(String, String)>,
}

/// Forward edges from every input of a node reading rows: the usual wiring
/// of a processor or sink that keeps no state per key.
pub fn connect_forward(graph: &mut GraphBuilder, name: &str, inputs: &[Input]) {
    for input in inputs {
        graph.connect_port::<crate::row::Row>(
            &input.node,
            input.port,
            name,
            weir_runtime::Partition::Forward,
        );
    }
}

/// Hash-partitioned edges from every input of a node reading rows, by
/// `key` of the row under `spec`: a key's state lives on one shard.
pub fn connect_hashed<S: Clone + Send + Sync + 'static>(
    graph: &mut GraphBuilder,
    name: &str,
    inputs: &[Input],
    spec: &S,
    key: fn(&S, &crate::row::Row) -> u64,
) {
    for input in inputs {
        let spec = spec.clone();
        let partition = weir_runtime::Partition::hash(move |row: &crate::row::Row| key(&spec, row));
        graph.connect_port(&input.node, input.port, name, partition);
    }
}

/// Connects the node `name` of a scaled-out keyed operator planned as
/// `tasks` to `inputs` and, when it repartitions, to the source's port of
/// its repartition topic (on the port after the inputs'), all forward: a
/// task's rows are read on the shard instance that holds it
/// (`scale_out::task_instance`), from the input topic's partition or the
/// repartition topic's; rows sent on to the repartition topic may be sent
/// from any instance. Returns the repartition topic and that port, for
/// `TaskedSetup::repartition`.
pub fn connect_tasked(
    graph: &mut GraphBuilder,
    name: &str,
    inputs: &[Input],
    tasks: &crate::scale_out::tasked::TaskPlan,
) -> Option<(Arc<str>, usize)> {
    connect_forward(graph, name, inputs);
    tasks.repartition.as_ref().map(|repartitioned| {
        let back = [Input {
            node: repartitioned.source.clone(),
            port: repartitioned.source_port,
        }];
        connect_forward(graph, name, &back);
        (repartitioned.topic.clone(), inputs.len())
    })
}

/// The options of a stateful component's `config` that shape its state,
/// as `(option, JSON value)` pairs after `type`: its state fingerprint
/// (`NodeOptions::state_fingerprint`). A restart whose pairs differ is
/// refused, naming each changed option, unless its state is discarded.
pub fn state_options<C: serde::Serialize>(
    kind: &str,
    config: &C,
    options: &[&str],
) -> Vec<(String, String)> {
    let value = serde_json::to_value(config).unwrap_or_default();
    let mut pairs = vec![("type".to_owned(), kind.to_owned())];
    for option in options {
        let text = value
            .get(option)
            .filter(|value| !value.is_null())
            .map_or_else(|| "(none)".to_owned(), ToString::to_string);
        pairs.push(((*option).to_owned(), text));
    }
    pairs
}
