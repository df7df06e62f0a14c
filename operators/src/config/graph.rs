//! [`build_graph`]: a [`PipelineConfig`] as a runtime [`Graph`], following
//! its plan (`plan.rs`): every planned component adds its own node and the
//! edges into it ([`Node::add`](crate::component::Node::add)), in dataflow
//! order. Nothing here knows a concrete component; each says how it is
//! wired, as a rule:
//! - every source, processor and sink runs on every shard, except a `file`
//!   source (one reader, `Parallelism::One`);
//! - edges into `window`, `dedup` and `threshold` are hash-partitioned by the operator's key, so a key's state
//!   lives on one shard; every other edge is forward (same shard);
//! - a side output `NAME.PORT` is an edge from that output port
//!   ([`GraphBuilder::connect_port`]);
//! - a reader of an output that names another runtime node
//!   ([`Output::node`](crate::component::Output::node), an ingest source's
//!   `SOURCE:rows`) connects to that node;
//! - `webhook` and `postgres` sinks name the pipeline by the file's stem in
//!   their idempotency keys and progress rows.
//!
//! Every check happens before or in the plan, so errors here carry no line
//! and column (a [`PipelineConfig`] keeps no spans; [`parse`](super::parse)
//! already reported them with spans). Errors the runtime raises
//! ([`GraphError`](weir_runtime::GraphError)) become
//! [`ConfigErrorKind::Graph`].
//!
//! A sink's factory cannot return an error: if a file sink cannot open its
//! directory, the shard panics with a message naming the path, which the
//! runtime reports as the run's error.

use weir_runtime::{Graph, GraphBuilder};

use super::error::{ConfigError, ConfigErrorKind};
use super::model::PipelineConfig;
use super::plan;

/// The file name errors of [`build_graph`] carry.
const UNNAMED: &str = "<pipeline>";

/// Builds the runtime graph of `config`; see the module docs. Errors name
/// the file as `<pipeline>`; [`build_graph_named`] takes the name.
pub fn build_graph(config: &PipelineConfig) -> Result<Graph, ConfigError> {
    build_graph_named(config, UNNAMED)
}

/// [`build_graph`], with errors naming the file `file_name`.
pub fn build_graph_named(config: &PipelineConfig, file_name: &str) -> Result<Graph, ConfigError> {
    let error = |kind: ConfigErrorKind, component: Option<String>, message: String| ConfigError {
        kind,
        file: file_name.to_owned(),
        location: None,
        component,
        message,
    };
    check_components(config)
        .map_err(|(path, message)| error(ConfigErrorKind::Invalid, Some(path), message))?;
    let (plan, errors) = plan::plan(config, &pipeline_name(file_name));
    if let Some(first) = errors.into_iter().next() {
        let message = match &first.option {
            Some(option) if !first.message.contains(&format!("`{option}`")) => {
                format!("`{option}`: {}", first.message)
            }
            _ => first.message,
        };
        return Err(error(first.kind, Some(first.path), message));
    }
    for (name, processor) in &config.processors {
        if !plan.components.contains_key(name) {
            let message = format!("`{}` is on a cycle or reads one", processor.kind());
            return Err(error(
                ConfigErrorKind::Cycle,
                Some(format!("processors.{name}")),
                message,
            ));
        }
    }

    let mut graph = GraphBuilder::new();
    for name in &plan.order {
        let planned = &plan.components[name];
        let node = planned
            .node
            .as_ref()
            .expect("a plan without errors has every node");
        node.add(&mut graph, name, &planned.inputs);
        // Each output by its name in metrics, and tappable (`weir tap`).
        for output in &planned.outputs {
            let from = output.node.as_deref().unwrap_or(name);
            let format = crate::row::tap_format(output.schema.clone());
            graph.describe_output(from, output.port, &output.name, Some(format));
        }
    }
    graph.build().map_err(|graph_error| {
        error(
            ConfigErrorKind::Graph,
            None,
            format!("the runtime refused the pipeline: {graph_error}"),
        )
    })
}

/// A Kafka topic a scaled-out pipeline (`[runtime] group`) keeps for
/// itself (docs/scale-out.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopic {
    /// The stateful component it belongs to.
    pub component: String,
    /// `repartition` (the component's rows, keyed by its key, read back by
    /// the source) or `changelog` (its state, compacted).
    pub kind: &'static str,
    /// The topic.
    pub topic: String,
}

/// The repartition and changelog topics of `config`'s stateful
/// components, when it scales out (none otherwise, or when it does not
/// plan).
pub fn internal_topics(config: &PipelineConfig) -> Vec<InternalTopic> {
    let (plan, errors) = plan::plan(config, UNNAMED);
    let Some(group) = plan.group.filter(|_| errors.is_empty()) else {
        return Vec::new();
    };
    let run = group.run();
    let topic = |kind: &'static str| {
        move |(component, topic): (String, std::sync::Arc<str>)| InternalTopic {
            component,
            kind,
            topic: topic.to_string(),
        }
    };
    let mut topics: Vec<InternalTopic> = run
        .repartitions()
        .into_iter()
        .map(topic("repartition"))
        .collect();
    topics.extend(run.changelogs().into_iter().map(topic("changelog")));
    topics
}

/// The pipeline's name in delivery sinks' idempotency keys and progress
/// rows: the file's stem, stable across restarts of the same file.
fn pipeline_name(file_name: &str) -> String {
    std::path::Path::new(file_name).file_stem().map_or_else(
        || "weir".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

/// Every component's own checks ([`Component::check`](crate::component::Component::check)), for a
/// configuration built in code rather than read from a file (which had
/// them already); the first failure as (`SECTION.NAME`, message).
fn check_components(config: &PipelineConfig) -> Result<(), (String, String)> {
    for (section, name, component) in config.components() {
        component
            .check(name)
            .map_err(|error| (format!("{section}.{name}"), error.naming_option()))?;
    }
    Ok(())
}
