//! [`build_graph`]: a [`PipelineConfig`] as a runtime [`Graph`].
//!
//! Wiring:
//! - a `generator` source is a [`ConfigEvents`] on every shard, emitting
//!   [`GeneratedEvent`]s;
//! - a `window` processor is a [`KeyedWindow`] on every shard, emitting
//!   [`WindowRow`]s; each of its inputs is a hash edge by
//!   [`KeyedWindowSpec::group_hash`], so every group lands on one shard;
//! - a `file` sink is a [`FileSink`] on every shard, made with
//!   [`FileSink::for_shard`]; each input is a forward edge, and its record
//!   type follows its inputs.
//!
//! Combinations this version cannot run are refused with
//! [`ConfigErrorKind::Unsupported`], naming the component:
//! - a window whose input is not a generator (a window of windows);
//! - a sink whose inputs emit different record types (events and rows);
//! - a window `group_by`/aggregate outside `id`, `key`, `ts` (parse already
//!   refuses these), or two `sum:` aggregates.
//!
//! The errors carry no line and column: a [`PipelineConfig`] keeps no spans.
//! Errors the runtime raises ([`GraphError`](weir_runtime::GraphError))
//! become [`ConfigErrorKind::Graph`].
//!
//! A sink's factory cannot return an error: if [`FileSink::for_shard`]
//! fails (I/O), the shard panics with a message naming the path, which the
//! runtime reports as the run's error.

use std::path::PathBuf;

use weir_runtime::{ArchivedRecord, Graph, GraphBuilder, Partition, Record};

use super::error::{ConfigError, ConfigErrorKind};
use super::model::{PipelineConfig, ProcessorConfig, SinkConfig, SourceConfig};
use crate::generator::{ConfigEvents, GeneratedEvent};
use crate::ingest::{IngestSource, Mesh};
use crate::latency::ObservedSink;
use crate::sink::file::{FileSink, ToJsonLine, WindowRow};
use crate::sink::prometheus::PrometheusSink;
use crate::window::{KeyedWindow, KeyedWindowSpec};
use std::sync::Arc;

/// The file name errors of [`build_graph`] carry.
const UNNAMED: &str = "<pipeline>";

/// The record type a component emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emits {
    /// [`GeneratedEvent`].
    Events,
    /// [`WindowRow`].
    Rows,
}

impl Emits {
    fn name(self) -> &'static str {
        match self {
            Emits::Events => "generator events",
            Emits::Rows => "window rows",
        }
    }
}

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
    let emits = |name: &str, reader: &str| -> Result<Emits, ConfigError> {
        if config.sources.contains_key(name) {
            return Ok(Emits::Events);
        }
        if config.processors.contains_key(name) {
            return Ok(Emits::Rows);
        }
        let message = format!("input `{name}` names no source or processor");
        Err(error(
            ConfigErrorKind::UnknownInput,
            Some(reader.to_owned()),
            message,
        ))
    };

    let mut graph = GraphBuilder::new();
    for (name, source) in &config.sources {
        let path = format!("sources.{name}");
        match source {
            SourceConfig::Generator(generator) => {
                if generator.keys.is_empty() || generator.events_per_second == 0 {
                    let message = "a generator needs `keys` and a positive `events_per_second`";
                    return Err(error(ConfigErrorKind::Invalid, Some(path), message.into()));
                }
                let generator = generator.clone();
                graph.source(name, move |context| ConfigEvents::new(&generator, context));
            }
            SourceConfig::Tcp(ingest) | SourceConfig::Http(ingest) => {
                let http = matches!(source, SourceConfig::Http(_));
                let (protocol, options) = ingest.to_source(http).map_err(|(_, message)| {
                    error(ConfigErrorKind::Invalid, Some(path.clone()), message)
                })?;
                // One mesh per source, shared by its instances.
                let mesh = std::sync::Arc::new(std::sync::OnceLock::new());
                graph.source(name, move |context| {
                    let mesh = mesh.get_or_init(|| Arc::new(Mesh::new(context.instances)));
                    IngestSource::new(protocol.clone(), options.clone(), context, mesh.clone())
                });
            }
        }
    }

    for (name, processor) in &config.processors {
        let ProcessorConfig::Window(window) = processor;
        let path = format!("processors.{name}");
        let spec = KeyedWindowSpec::from_config(window)
            .map_err(|message| error(ConfigErrorKind::Unsupported, Some(path.clone()), message))?;
        for input in &window.inputs {
            if emits(input, &path)? != Emits::Events {
                let message = format!(
                    "input `{input}` emits window rows; a window reads only generator events"
                );
                return Err(error(ConfigErrorKind::Unsupported, Some(path), message));
            }
            let spec = spec.clone();
            graph.connect(
                input,
                name,
                Partition::hash(move |event: &GeneratedEvent| spec.group_hash(event)),
            );
        }
        graph.processor(name, move |context| {
            KeyedWindow::new(spec.clone()).with_metrics(context)
        });
    }

    for (name, sink) in &config.sinks {
        let path = format!("sinks.{name}");
        let file = match sink {
            SinkConfig::File(file) => file,
            SinkConfig::Prometheus(prometheus) => {
                if prometheus.inputs.is_empty() {
                    let message = "no inputs: add `inputs = [\"NAME\", ...]`".to_owned();
                    return Err(error(ConfigErrorKind::MissingInputs, Some(path), message));
                }
                for input in &prometheus.inputs {
                    if emits(input, &path)? != Emits::Rows {
                        let message = format!(
                            "input `{input}` emits events; a prometheus sink reads window rows"
                        );
                        return Err(error(ConfigErrorKind::Unsupported, Some(path), message));
                    }
                }
                let metric = prometheus.name.clone();
                graph.sink(name, move |context| PrometheusSink::new(&metric, context));
                for input in &prometheus.inputs {
                    graph.connect::<WindowRow>(input, name, Partition::Forward);
                }
                continue;
            }
        };
        let mut record = None;
        for input in &file.inputs {
            let emitted = emits(input, &path)?;
            match record {
                Some(first) if first != emitted => {
                    let message = format!(
                        "inputs emit both {} and {}; a file sink takes one record type",
                        Emits::name(first),
                        emitted.name()
                    );
                    return Err(error(ConfigErrorKind::Unsupported, Some(path), message));
                }
                _ => record = Some(emitted),
            }
        }
        let Some(record) = record else {
            let message = "no inputs: add `inputs = [\"NAME\", ...]`".to_owned();
            return Err(error(ConfigErrorKind::MissingInputs, Some(path), message));
        };
        match record {
            Emits::Events => event_file_sink(&mut graph, name, &file.path, &file.inputs),
            Emits::Rows => file_sink::<WindowRow>(&mut graph, name, &file.path, &file.inputs),
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

/// Adds file sink `name` of records `T` under `directory`, with a forward
/// edge from each input.
/// A file sink of events, recording their latency (`crate::latency`).
fn event_file_sink(
    graph: &mut GraphBuilder,
    name: &str,
    directory: &std::path::Path,
    inputs: &[String],
) {
    let directory: PathBuf = directory.to_owned();
    let node = name.to_owned();
    graph.sink(name, move |context| {
        let sink =
            FileSink::<GeneratedEvent>::for_shard(&directory, context).unwrap_or_else(|io_error| {
                panic!(
                    "sinks.{node}: cannot open the file sink at {} on shard {}: {io_error}",
                    directory.display(),
                    context.shard
                )
            });
        ObservedSink::new(sink, context)
    });
    for input in inputs {
        graph.connect::<GeneratedEvent>(input, name, Partition::Forward);
    }
}

fn file_sink<T>(
    graph: &mut GraphBuilder,
    name: &str,
    directory: &std::path::Path,
    inputs: &[String],
) where
    T: Record + Send + Sync,
    ArchivedRecord<T>: ToJsonLine,
{
    let directory: PathBuf = directory.to_owned();
    let node = name.to_owned();
    graph.sink(name, move |context| {
        FileSink::<T>::for_shard(&directory, context).unwrap_or_else(|io_error| {
            panic!(
                "sinks.{node}: cannot open the file sink at {} on shard {}: {io_error}",
                directory.display(),
                context.shard
            )
        })
    });
    for input in inputs {
        graph.connect::<T>(input, name, Partition::Forward);
    }
}
