//! [`build_graph`]: a [`PipelineConfig`] as a runtime [`Graph`], following
//! its plan (`plan.rs`).
//!
//! Wiring:
//! - every source, processor and sink runs on every shard, except a `file`
//!   source (one reader, `Parallelism::One`);
//! - edges into `window`, `dedup` and `threshold` (and the `size_ms`
//!   window) are hash-partitioned by the operator's key, so a key's state
//!   lives on one shard; every other edge is forward (same shard);
//! - a side output `NAME.PORT` is an edge from that output port
//!   ([`GraphBuilder::connect_port`]);
//! - a row reader fed generator or ingest events reads them through an
//!   [`EventRows`] adapter node named `SOURCE:rows`;
//! - `webhook` and `postgres` sinks name the pipeline by the file's stem in
//!   their idempotency keys and progress rows.
//!
//! Every check happens in the plan, so errors here carry no line and
//! column (a [`PipelineConfig`] keeps no spans; [`parse`](super::parse)
//! already reported them with spans). Errors the runtime raises
//! ([`GraphError`](weir_runtime::GraphError)) become
//! [`ConfigErrorKind::Graph`].
//!
//! A sink's factory cannot return an error: if a file sink cannot open its
//! directory, the shard panics with a message naming the path, which the
//! runtime reports as the run's error.

use std::path::PathBuf;

use weir_runtime::{ArchivedRecord, Graph, GraphBuilder, Parallelism, Partition, Record};

use super::error::{ConfigError, ConfigErrorKind};
use super::model::{PipelineConfig, ProcessorConfig, SinkConfig, SourceConfig};
use super::plan::{self, Op, Planned, Stream};
use crate::generator::ProfileGenerator;
use crate::generator::{ConfigEvents, GeneratedEvent};
use crate::ingest::{IngestSource, Mesh};
use crate::latency::ObservedSink;
use crate::process::dedup::{self, Dedup};
use crate::process::enrich::Enrich;
use crate::process::parse::Parse;
use crate::row::{EventRows, Row};
use crate::sink::file::{FileSink, ToJsonLine, WindowRow};
use crate::sink::postgres::PostgresSink;
use crate::sink::prometheus::PrometheusSink;
use crate::sink::rows::{BlackholeSink, RowFileSink, StdoutSink};
use crate::sink::webhook::WebhookSink;
use crate::source::file::FileSource;
use crate::transform::filter::Filter;
use crate::transform::map::Map;
use crate::transform::route::Route;
use crate::transform::threshold::Threshold;
use crate::window::rows::{self, RowWindow};
use crate::window::{KeyedWindow, KeyedWindowSpec};
use std::sync::Arc;

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
    let (plan, errors) = plan::plan(config);
    if let Some(first) = errors.into_iter().next() {
        let message = match &first.option {
            Some(option) => format!("`{option}`: {}", first.message),
            None => first.message,
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
    for (name, source) in &config.sources {
        let path = format!("sources.{name}");
        match &plan.components[name].op {
            Op::Profile(spec) => {
                let spec = spec.clone();
                graph.source(name, move |context| {
                    ProfileGenerator::new(spec.clone(), context)
                });
                continue;
            }
            Op::FileSource(spec) => {
                // One reader: a file is read in order from one offset.
                let spec = spec.clone();
                graph
                    .source(name, move |context| FileSource::new(spec.clone(), context))
                    .parallelism(Parallelism::One);
                continue;
            }
            _ => {}
        }
        match source {
            SourceConfig::Generator(generator) => {
                if generator.keys.is_empty() || generator.events_per_second == 0 {
                    let message = "a generator needs `keys` and a positive `events_per_second`";
                    return Err(error(ConfigErrorKind::Invalid, Some(path), message.into()));
                }
                let generator = generator.clone();
                graph.source(name, move |context| ConfigEvents::new(&generator, context));
            }
            SourceConfig::Profile(_) | SourceConfig::File(_) => {
                unreachable!("planned above")
            }
            SourceConfig::Tcp(ingest) | SourceConfig::Http(ingest) => {
                let http = matches!(source, SourceConfig::Http(_));
                let (protocol, options) =
                    ingest.to_source(http, name).map_err(|(_, message)| {
                        error(ConfigErrorKind::Invalid, Some(path.clone()), message)
                    })?;
                // One mesh per source, shared by its instances.
                let mesh = std::sync::Arc::new(std::sync::OnceLock::new());
                graph.source(name, move |context| {
                    let mesh = mesh
                        .get_or_init(|| Arc::new(Mesh::new(context.instances, &options.limits)));
                    IngestSource::new(protocol.clone(), options.clone(), context, mesh.clone())
                });
            }
        }
    }
    for source in &plan.adapters {
        let adapter = plan::adapter_name(source);
        graph.processor(&adapter, |_| EventRows::default());
        graph.connect::<GeneratedEvent>(source, &adapter, Partition::Forward);
    }

    for name in &plan.order {
        let planned = &plan.components[name];
        if let Some(processor) = config.processors.get(name) {
            add_processor(&mut graph, name, processor, planned).map_err(|message| {
                error(
                    ConfigErrorKind::Unsupported,
                    Some(planned.path.clone()),
                    message,
                )
            })?;
        }
    }

    // Delivery sinks name the pipeline in idempotency keys and progress
    // rows: the file's stem, stable across restarts of the same file.
    let pipeline = std::path::Path::new(file_name).file_stem().map_or_else(
        || "weir".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    for (name, sink) in &config.sinks {
        let planned = &plan.components[name];
        if add_row_sink(&mut graph, name, planned, &pipeline) {
            continue;
        }
        match sink {
            SinkConfig::Prometheus(prometheus) => {
                let metric = prometheus.name.clone();
                graph.sink(name, move |context| PrometheusSink::new(&metric, context));
                for input in &planned.inputs {
                    graph.connect_port::<WindowRow>(
                        &input.node,
                        input.port,
                        name,
                        Partition::Forward,
                    );
                }
            }
            SinkConfig::File(file) => match planned.input {
                Some(Stream::Events) => {
                    event_file_sink(&mut graph, name, &file.path, &planned.inputs)
                }
                _ => file_sink::<WindowRow>(&mut graph, name, &file.path, &planned.inputs),
            },
            _ => {
                let message = "planned as a sink of rows, which it cannot run".to_owned();
                return Err(error(
                    ConfigErrorKind::Unsupported,
                    Some(planned.path.clone()),
                    message,
                ));
            }
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

/// Adds sink `name` of rows and the edges into it, if it is one; `false`
/// for the sinks built from the configuration.
fn add_row_sink(graph: &mut GraphBuilder, name: &str, planned: &Planned, pipeline: &str) -> bool {
    match &planned.op {
        Op::RowFile(spec) => {
            let (spec, node) = (spec.clone(), name.to_owned());
            graph.sink(name, move |context| {
                RowFileSink::new(spec.clone(), context).unwrap_or_else(|io_error| {
                    panic!(
                        "sinks.{node}: cannot open the file sink on shard {}: {io_error}",
                        context.shard
                    )
                })
            });
        }
        Op::Stdout(spec) => {
            let spec = spec.clone();
            graph.sink(name, move |context| StdoutSink::new(spec.clone(), context));
        }
        Op::Blackhole(spec) => {
            let spec = spec.clone();
            graph.sink(name, move |context| {
                BlackholeSink::new(spec.clone(), context)
            });
        }
        Op::Webhook(spec) => {
            let spec = spec.clone().with_pipeline(pipeline);
            graph.sink(name, move |context| WebhookSink::new(spec.clone(), context));
        }
        Op::Postgres(spec) => {
            let spec = spec.clone().with_pipeline(pipeline);
            graph.sink(name, move |context| {
                PostgresSink::new(spec.clone(), context)
            });
        }
        _ => return false,
    }
    for input in &planned.inputs {
        graph.connect_port::<Row>(&input.node, input.port, name, Partition::Forward);
    }
    true
}

/// Adds processor `name` and the edges into it.
fn add_processor(
    graph: &mut GraphBuilder,
    name: &str,
    processor: &ProcessorConfig,
    planned: &Planned,
) -> Result<(), String> {
    let forward = |graph: &mut GraphBuilder| {
        for input in &planned.inputs {
            graph.connect_port::<Row>(&input.node, input.port, name, Partition::Forward);
        }
    };
    // Edges partitioned by the operator's key, so a key's state lives on
    // one shard.
    fn hashed<S: Clone + Send + Sync + 'static>(
        graph: &mut GraphBuilder,
        planned: &Planned,
        name: &str,
        spec: &S,
        key: fn(&S, &Row) -> u64,
    ) {
        for input in &planned.inputs {
            let spec = spec.clone();
            let partition = Partition::hash(move |row: &Row| key(&spec, row));
            graph.connect_port(&input.node, input.port, name, partition);
        }
    }
    match (&planned.op, processor) {
        (Op::FromConfig, ProcessorConfig::Window(window)) => {
            let spec = KeyedWindowSpec::from_config(window)?;
            for input in &planned.inputs {
                let spec = spec.clone();
                graph.connect_port(
                    &input.node,
                    input.port,
                    name,
                    Partition::hash(move |event: &GeneratedEvent| spec.group_hash(event)),
                );
            }
            graph
                .processor(name, move |context| {
                    KeyedWindow::new(spec.clone()).with_metrics(context)
                })
                .state_fingerprint(options_of(
                    "window",
                    window,
                    &["size_ms", "group_by", "aggregates"],
                ));
        }
        (Op::Filter(spec), _) => {
            let spec = spec.clone();
            graph.processor(name, move |_| Filter::new(spec.clone()));
            forward(graph);
        }
        (Op::Map(spec), _) => {
            let spec = spec.clone();
            graph.processor(name, move |_| Map::new(spec.clone()));
            forward(graph);
        }
        (Op::Route(spec), _) => {
            let spec = spec.clone();
            graph.processor(name, move |_| Route::new(spec.clone()));
            forward(graph);
        }
        (Op::RowWindow(spec), ProcessorConfig::RowWindow(window)) => {
            hashed(graph, planned, name, spec, |spec, row| {
                rows::group_hash_row(spec, row)
            });
            let spec = spec.clone();
            graph
                .processor(name, move |context| RowWindow::new(spec.clone(), context))
                .state_fingerprint(options_of(
                    "window",
                    window,
                    &["kind", "size", "slide", "gap", "group_by", "aggregates"],
                ));
        }
        (Op::Parse(spec), _) => {
            let spec = spec.clone();
            graph.processor(name, move |context| Parse::new(spec.clone(), context));
            forward(graph);
        }
        (Op::Enrich(spec), _) => {
            let spec = spec.clone();
            graph.processor(name, move |context| Enrich::new(spec.clone(), context));
            forward(graph);
        }
        (Op::Dedup(spec), ProcessorConfig::Dedup(config)) => {
            hashed(graph, planned, name, spec, |spec, row| {
                dedup::partition_hash(spec, row)
            });
            let mut options = options_of("dedup", config, &["fields"]);
            // The window as written may vary ("10m", "600s"); its length
            // is what shapes the state.
            options.push(("window_ms".into(), spec.window_ms().to_string()));
            let spec = spec.clone();
            graph
                .processor(name, move |context| Dedup::new(spec.clone(), context))
                .state_fingerprint(options);
        }
        (Op::Threshold(spec), ProcessorConfig::Threshold(config)) => {
            hashed(graph, planned, name, spec, |spec, row| {
                spec.row_key_hash(row)
            });
            let spec = spec.clone();
            graph
                .processor(name, move |_| Threshold::new(spec.clone()))
                .state_fingerprint(options_of("threshold", config, &["key"]));
        }
        (op, processor) => {
            return Err(format!(
                "planned as {op:?}, which a `{}` cannot run",
                processor.kind()
            ))
        }
    }
    Ok(())
}

/// The options of a stateful component's `config` that shape its state,
/// as `(option, JSON value)` pairs after `type`: its state fingerprint
/// (`NodeOptions::state_fingerprint`). A restart whose pairs differ is
/// refused, naming each changed option, unless its state is discarded.
/// Durations are typed in these configs, so `"60s"` and `"1m"` agree.
fn options_of<C: serde::Serialize>(
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

/// Adds file sink `name` of records `T` under `directory`, with a forward
/// edge from each input.
/// A file sink of events, recording their latency (`crate::latency`).
fn event_file_sink(
    graph: &mut GraphBuilder,
    name: &str,
    directory: &std::path::Path,
    inputs: &[plan::Input],
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
        graph.connect_port::<GeneratedEvent>(&input.node, input.port, name, Partition::Forward);
    }
}

fn file_sink<T>(
    graph: &mut GraphBuilder,
    name: &str,
    directory: &std::path::Path,
    inputs: &[plan::Input],
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
        graph.connect_port::<T>(&input.node, input.port, name, Partition::Forward);
    }
}
