//! The pipeline's streams: what records every component's outputs carry,
//! worked out in dataflow order, and each component checked against the
//! schema of its input.
//!
//! [`plan`] visits sources, then processors in an order where every input
//! comes first, then sinks. For each it resolves the `inputs` entries
//! (`NAME` for a main output, `NAME.PORT` for a side output such as
//! `split.errors` or `parse.dead_letter`), checks that all inputs carry the
//! same records, and builds the component's operator spec from its input
//! schema: a missing field, a type mismatch or a bad expression becomes a
//! [`PlanError`] naming the option. [`validate`](super::validate) turns the
//! errors into located [`ConfigError`](super::ConfigError)s; `build_graph`
//! turns the plan into runtime nodes.
//!
//! Three kinds of stream exist: the events of the `generator`, `tcp` and
//! `http` sources ([`GeneratedEvent`](crate::generator::GeneratedEvent)),
//! the rows of a `size_ms` window ([`WindowRow`](crate::sink::file::WindowRow)),
//! and schema-typed [`Row`](crate::row::Row)s, which every other processor
//! reads and writes. A row reader fed events gets them through an
//! [`EventRows`](crate::row::EventRows) adapter (schema
//! [`event_schema`](crate::row::event_schema)).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::error::ConfigErrorKind;
use super::model::{PipelineConfig, ProcessorConfig, SinkConfig, SourceConfig};
use crate::row::{event_schema, OptionError, Schema, SchemaRef};
use crate::transform::{filter, map, route, threshold};

/// What records a stream carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stream {
    /// Generator or ingest events.
    Events,
    /// Rows of a `size_ms` window.
    WindowRows,
    /// Schema-typed rows.
    Rows(SchemaRef),
}

impl Stream {
    fn describe(&self) -> String {
        match self {
            Stream::Events => "generator or ingest events".into(),
            Stream::WindowRows => "rows of a `size_ms` window".into(),
            Stream::Rows(schema) => format!("rows of {}", schema.describe()),
        }
    }
}

/// A problem found while planning, located by option or input entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlanError {
    /// `SECTION.NAME`.
    pub(crate) path: String,
    pub(crate) kind: ConfigErrorKind,
    /// The option the problem is in, if one.
    pub(crate) option: Option<String>,
    /// The index of the `inputs` entry the problem is in, if one.
    pub(crate) input: Option<usize>,
    pub(crate) message: String,
}

/// One resolved `inputs` entry: the runtime node and port it reads.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// The runtime node (a component's name, or an adapter's).
    pub(crate) node: String,
    /// The node's output port.
    pub(crate) port: usize,
}

/// One readable output of a component.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    /// The port's name: empty for the main output.
    pub(crate) name: String,
    pub(crate) port: usize,
    pub(crate) stream: Stream,
}

/// The operator a component runs, built against its input.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Built from the configuration by `build_graph` (sources, `size_ms`
    /// windows, sinks of events or window rows).
    FromConfig,
    Filter(filter::FilterSpec),
    Map(map::MapSpec),
    Route(route::RouteSpec),
    Threshold(threshold::ThresholdSpec),
    Profile(crate::generator::ProfileSpec),
    FileSource(crate::source::file::FileSpec),
    RowWindow(crate::window::rows::RowWindowSpec),
    Parse(crate::process::parse::ParseSpec),
    Enrich(crate::process::enrich::EnrichSpec),
    Dedup(crate::process::dedup::DedupSpec),
    RowFile(crate::sink::rows::RowFileSpec),
    Stdout(crate::sink::rows::StdoutSpec),
    Blackhole(crate::sink::rows::BlackholeSpec),
    Webhook(crate::sink::webhook::WebhookSpec),
    Postgres(crate::sink::postgres::PostgresSpec),
}

/// A planned component.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    /// `SECTION.NAME`.
    pub(crate) path: String,
    pub(crate) inputs: Vec<Input>,
    /// What every input carries (`None` for a source).
    pub(crate) input: Option<Stream>,
    pub(crate) outputs: Vec<Output>,
    pub(crate) op: Op,
}

/// The plan of a whole pipeline.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Components by name, in dataflow order in `order`.
    pub(crate) components: BTreeMap<String, Planned>,
    pub(crate) order: Vec<String>,
    /// Event sources read as rows: each gets an adapter node
    /// [`adapter_name`].
    pub(crate) adapters: BTreeSet<String>,
}

/// The name of the side output where records that could not be read or
/// parsed go (`NAME.dead_letter`).
pub(crate) const DEAD_LETTER: &str = "dead_letter";

/// The name of a window's side output of late events (`NAME.late`).
pub(crate) const LATE: &str = "late";

/// The runtime node turning source `source`'s events into rows.
pub(crate) fn adapter_name(source: &str) -> String {
    format!("{source}:rows")
}

/// Plans `config`; components whose inputs failed are skipped, so every
/// error is a first-hand one.
pub(crate) fn plan(config: &PipelineConfig) -> (Plan, Vec<PlanError>) {
    let mut planner = Planner {
        plan: Plan::default(),
        errors: Vec::new(),
        failed: BTreeSet::new(),
    };
    for (name, source) in &config.sources {
        planner.source(name, source);
    }
    for name in processor_order(config) {
        planner.processor(&name, &config.processors[&name]);
    }
    for (name, sink) in &config.sinks {
        planner.sink(name, sink);
    }
    (planner.plan, planner.errors)
}

/// Processors, each after the processors it reads; processors on a cycle
/// are left out (the cycle is reported by `validate`).
fn processor_order(config: &PipelineConfig) -> Vec<String> {
    let mut order = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    loop {
        let before = order.len();
        for (name, processor) in &config.processors {
            if placed.contains(name.as_str()) {
                continue;
            }
            let ready = processor.inputs().iter().all(|input| {
                let component = component_of(input);
                !config.processors.contains_key(component) || placed.contains(component)
            });
            if ready {
                placed.insert(name);
                order.push(name.clone());
            }
        }
        if order.len() == before {
            return order;
        }
    }
}

/// The component an `inputs` entry names.
pub(crate) fn component_of(input: &str) -> &str {
    input.split_once('.').map_or(input, |(name, _)| name)
}

struct Planner {
    plan: Plan,
    errors: Vec<PlanError>,
    /// Components that failed: their readers are not checked further.
    failed: BTreeSet<String>,
}

/// What a component wants to read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wants {
    Rows,
    Events,
    /// Any one stream kind (file sinks).
    Any,
    WindowRows,
}

impl Planner {
    fn fail_at(
        &mut self,
        path: &str,
        kind: ConfigErrorKind,
        option: Option<String>,
        input: Option<usize>,
        message: String,
    ) {
        let name = path.split_once('.').map_or(path, |(_, name)| name);
        self.failed.insert(name.to_owned());
        self.errors.push(PlanError {
            path: path.to_owned(),
            kind,
            option,
            input,
            message,
        });
    }

    fn option_error(&mut self, path: &str, error: OptionError) {
        self.fail_at(
            path,
            ConfigErrorKind::Invalid,
            Some(error.option),
            None,
            error.message,
        );
    }

    fn add(&mut self, name: &str, planned: Planned) {
        self.plan.order.push(name.to_owned());
        self.plan.components.insert(name.to_owned(), planned);
    }

    fn source(&mut self, name: &str, source: &SourceConfig) {
        let path = format!("sources.{name}");
        let built = match source {
            SourceConfig::Generator(_) | SourceConfig::Tcp(_) | SourceConfig::Http(_) => {
                Ok((Op::FromConfig, vec![main(Stream::Events)]))
            }
            SourceConfig::Profile(config) => crate::generator::profiles::build(config)
                .map(|(spec, schema)| (Op::Profile(spec), vec![rows(schema)])),
            SourceConfig::File(config) => {
                crate::source::file::build(config).map(|(spec, schema)| {
                    let dead = Output {
                        name: DEAD_LETTER.to_owned(),
                        port: 1,
                        stream: Stream::Rows(Arc::new(crate::source::file::dead_letter_schema())),
                    };
                    (Op::FileSource(spec), vec![rows(schema), dead])
                })
            }
        };
        match built {
            Ok((op, outputs)) => self.add(
                name,
                Planned {
                    path,
                    inputs: Vec::new(),
                    input: None,
                    outputs,
                    op,
                },
            ),
            Err(error) => self.option_error(&path, error),
        }
    }

    /// Resolves `inputs` of `path`; `None` if any failed (reported, or
    /// failed upstream).
    fn inputs(
        &mut self,
        path: &str,
        inputs: &[String],
        wants: Wants,
    ) -> Option<(Vec<Input>, Stream)> {
        let mut resolved = Vec::with_capacity(inputs.len());
        let mut common: Option<(usize, Stream)> = None;
        let mut ok = true;
        for (index, input) in inputs.iter().enumerate() {
            let component = component_of(input);
            if self.failed.contains(component) {
                ok = false;
                continue;
            }
            let Some(producer) = self.plan.components.get(component) else {
                // Unknown names are `validate`'s to report.
                ok = false;
                continue;
            };
            let port_name = input.split_once('.').map_or("", |(_, port)| port);
            let Some(output) = producer
                .outputs
                .iter()
                .find(|output| output.name == port_name)
                .cloned()
            else {
                let names: Vec<String> = producer
                    .outputs
                    .iter()
                    .map(|output| match output.name.as_str() {
                        "" => format!("`{component}`"),
                        port => format!("`{component}.{port}`"),
                    })
                    .collect();
                let message = format!(
                    "input `{input}`: `{component}` has no such output; it has {}",
                    names.join(", ")
                );
                self.fail_at(
                    path,
                    ConfigErrorKind::UnknownInput,
                    None,
                    Some(index),
                    message,
                );
                ok = false;
                continue;
            };
            let (node, stream) = match (&output.stream, wants) {
                (Stream::Events, Wants::Rows) => {
                    self.plan.adapters.insert(component.to_owned());
                    (
                        adapter_name(component),
                        Stream::Rows(Arc::new(event_schema())),
                    )
                }
                (Stream::WindowRows, Wants::Rows) => {
                    let message = format!(
                        "input `{input}` carries the rows of a `size_ms` window, which only \
                         `file` and `prometheus` sinks read; write the window with `size` \
                         (e.g. `size = \"1s\"`) to process its rows"
                    );
                    self.fail_at(
                        path,
                        ConfigErrorKind::Unsupported,
                        None,
                        Some(index),
                        message,
                    );
                    ok = false;
                    continue;
                }
                (Stream::Rows(_) | Stream::WindowRows, Wants::Events)
                | (Stream::Events | Stream::Rows(_), Wants::WindowRows) => {
                    let expected = if wants == Wants::Events {
                        "generator or ingest events"
                    } else {
                        "rows of a `size_ms` window"
                    };
                    let message = format!(
                        "input `{input}` carries {}; this component reads {expected}",
                        output.stream.describe()
                    );
                    self.fail_at(
                        path,
                        ConfigErrorKind::Unsupported,
                        None,
                        Some(index),
                        message,
                    );
                    ok = false;
                    continue;
                }
                (stream, _) => (component.to_owned(), stream.clone()),
            };
            if let Some((first, common)) = &common {
                if *common != stream {
                    let message = format!(
                        "input `{input}` carries {}, but input `{}` carries {}; the inputs of \
                         one component must carry the same records",
                        stream.describe(),
                        inputs[*first],
                        common.describe()
                    );
                    self.fail_at(
                        path,
                        ConfigErrorKind::Unsupported,
                        None,
                        Some(index),
                        message,
                    );
                    ok = false;
                    continue;
                }
            } else {
                common = Some((index, stream));
            }
            resolved.push(Input {
                node,
                port: output.port,
            });
        }
        if !ok {
            let name = path.split_once('.').map_or(path, |(_, name)| name);
            self.failed.insert(name.to_owned());
            return None;
        }
        common.map(|(_, stream)| (resolved, stream))
    }

    fn processor(&mut self, name: &str, processor: &ProcessorConfig) {
        let path = format!("processors.{name}");
        let wants = match processor {
            ProcessorConfig::Window(_) => Wants::Events,
            _ => Wants::Rows,
        };
        let Some((inputs, stream)) = self.inputs(&path, processor.inputs(), wants) else {
            return;
        };
        let schema = match &stream {
            Stream::Rows(schema) => schema.clone(),
            _ => Arc::new(Schema::default()),
        };
        let built: Result<(Op, Vec<Output>), OptionError> = match processor {
            ProcessorConfig::Window(_) => Ok((Op::FromConfig, vec![main(Stream::WindowRows)])),
            ProcessorConfig::RowWindow(config) => {
                crate::window::rows::build(config, &schema).map(|(spec, out)| {
                    let late = Output {
                        name: LATE.to_owned(),
                        port: 1,
                        stream: Stream::Rows(schema.clone()),
                    };
                    (Op::RowWindow(spec), vec![rows(out), late])
                })
            }
            ProcessorConfig::Filter(config) => filter::build(config, &schema)
                .map(|(spec, out)| (Op::Filter(spec), vec![rows(out)])),
            ProcessorConfig::Map(config) => {
                map::build(config, &schema).map(|(spec, out)| (Op::Map(spec), vec![rows(out)]))
            }
            ProcessorConfig::Route(config) => route::build(config, &schema).map(|(spec, out)| {
                let out = Arc::new(out);
                let outputs = spec
                    .ports()
                    .into_iter()
                    .map(|(name, port)| Output {
                        name,
                        port,
                        stream: Stream::Rows(out.clone()),
                    })
                    .collect();
                (Op::Route(spec), outputs)
            }),
            ProcessorConfig::Threshold(config) => threshold::build(config, &schema, name)
                .map(|(spec, out)| (Op::Threshold(spec), vec![rows(out)])),
            ProcessorConfig::Parse(config) => {
                crate::process::parse::build(config, &schema).map(|(spec, out)| {
                    let dead = Output {
                        name: DEAD_LETTER.to_owned(),
                        port: 1,
                        stream: Stream::Rows(Arc::new(crate::process::parse::dead_letter_schema(
                            &schema,
                        ))),
                    };
                    (Op::Parse(spec), vec![rows(out), dead])
                })
            }
            ProcessorConfig::Enrich(config) => crate::process::enrich::build(config, &schema)
                .map(|(spec, out)| (Op::Enrich(spec), vec![rows(out)])),
            ProcessorConfig::Dedup(config) => crate::process::dedup::build(config, &schema)
                .map(|(spec, out)| (Op::Dedup(spec), vec![rows(out)])),
        };
        match built {
            Ok((op, outputs)) => self.add(
                name,
                Planned {
                    path,
                    inputs,
                    input: Some(stream),
                    outputs,
                    op,
                },
            ),
            Err(error) => {
                self.option_error(&path, error);
                // Processors whose output schema does not depend on the
                // failed option still let their readers be checked, so one
                // pass reports their errors too. The plan is not built.
                let same = |port_names: Vec<(String, usize)>| {
                    port_names
                        .into_iter()
                        .map(|(name, port)| Output {
                            name,
                            port,
                            stream: Stream::Rows(schema.clone()),
                        })
                        .collect::<Vec<_>>()
                };
                let outputs = match processor {
                    ProcessorConfig::Filter(_) | ProcessorConfig::Dedup(_) => {
                        Some(same(vec![(String::new(), 0)]))
                    }
                    ProcessorConfig::Route(config) => {
                        let mut ports = vec![(route::UNMATCHED.to_owned(), 0)];
                        ports.extend(
                            config
                                .routes
                                .keys()
                                .enumerate()
                                .map(|(index, name)| (name.clone(), index + 1)),
                        );
                        Some(same(ports))
                    }
                    _ => None,
                };
                if let Some(outputs) = outputs {
                    self.failed.remove(name);
                    self.add(
                        name,
                        Planned {
                            path,
                            inputs,
                            input: Some(stream),
                            outputs,
                            op: Op::FromConfig,
                        },
                    );
                }
            }
        }
    }

    fn sink(&mut self, name: &str, sink: &SinkConfig) {
        use crate::sink::rows::{blackhole, file, stdout, RowFileFormat};
        use crate::sink::{postgres, webhook};
        let path = format!("sinks.{name}");
        let wants = match sink {
            SinkConfig::File(config) if config.format == RowFileFormat::Ndjson => Wants::Any,
            SinkConfig::Prometheus(_) => Wants::WindowRows,
            _ => Wants::Rows,
        };
        let Some((inputs, stream)) = self.inputs(&path, sink.inputs(), wants) else {
            return;
        };
        let built = match (&stream, sink) {
            (Stream::Rows(schema), SinkConfig::File(config)) => {
                file::build(config, schema).map(Op::RowFile)
            }
            (Stream::Rows(schema), SinkConfig::Stdout(config)) => {
                stdout::build(config, schema).map(Op::Stdout)
            }
            (Stream::Rows(schema), SinkConfig::Blackhole(config)) => {
                blackhole::build(config, schema).map(Op::Blackhole)
            }
            (Stream::Rows(schema), SinkConfig::Webhook(config)) => {
                webhook::build(config, schema).map(Op::Webhook)
            }
            (Stream::Rows(schema), SinkConfig::Postgres(config)) => {
                postgres::build(config, schema).map(Op::Postgres)
            }
            // Events and `size_ms` window rows: NDJSON files and gauges.
            (_, SinkConfig::File(config)) => {
                if config.compression.is_some() || config.row_group_rows.is_some() {
                    Err(OptionError::new(
                        "compression",
                        "`compression` and `row_group_rows` apply to Parquet files",
                    ))
                } else {
                    Ok(Op::FromConfig)
                }
            }
            (_, SinkConfig::Prometheus(_)) => Ok(Op::FromConfig),
            (stream, _) => Err(OptionError::new(
                "inputs",
                format!("this sink reads rows, not {}", stream.describe()),
            )),
        };
        match built {
            Ok(op) => self.add(
                name,
                Planned {
                    path,
                    inputs,
                    input: Some(stream),
                    outputs: Vec::new(),
                    op,
                },
            ),
            Err(error) => self.option_error(&path, error),
        }
    }
}

fn main(stream: Stream) -> Output {
    Output {
        name: String::new(),
        port: 0,
        stream,
    }
}

fn rows(schema: Schema) -> Output {
    main(Stream::Rows(Arc::new(schema)))
}
