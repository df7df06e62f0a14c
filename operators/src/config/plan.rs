//! The pipeline's streams: what records every component's outputs carry,
//! worked out in dataflow order, and each component checked against what
//! its inputs carry.
//!
//! [`plan`] visits sources, then processors in an order where every input
//! comes first, then sinks. For each it resolves the `inputs` entries
//! (`NAME` for a main output, `NAME.PORT` for a side output such as
//! `split.errors` or `parse.dead_letter`), checks that all inputs carry
//! rows of one schema, and lets the component plan itself against it
//! ([`Component::plan`]): a
//! missing field, a type mismatch or a bad expression becomes a
//! [`PlanError`] naming the option. [`validate`](super::validate) turns the
//! errors into located [`ConfigError`](super::ConfigError)s; `build_graph`
//! adds each planned component's node to the runtime graph. Nothing here
//! knows a concrete component.
//!
//! Every stream carries schema-typed rows.

use std::collections::{BTreeMap, BTreeSet};

use super::error::ConfigErrorKind;
use super::model::PipelineConfig;
use crate::component::{Component, Input, Node, Output, PlanContext};
use crate::row::{OptionError, SchemaRef};

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

/// A planned component.
pub(crate) struct Planned {
    /// `SECTION.NAME`.
    pub(crate) path: String,
    pub(crate) inputs: Vec<Input>,
    /// The schema of the rows every input carries (`None` for a source).
    pub(crate) input: Option<SchemaRef>,
    pub(crate) outputs: Vec<Output>,
    /// Its runtime node; `None` when its plan failed but its outputs are
    /// known (only so its readers are checked: nothing is built then).
    pub(crate) node: Option<Box<dyn Node>>,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("input", &self.input)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// The plan of a whole pipeline.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Components by name, in dataflow order in `order`.
    pub(crate) components: BTreeMap<String, Planned>,
    pub(crate) order: Vec<String>,
    /// The scale-out run planned, with `[runtime] group`.
    pub(crate) group: Option<crate::scale_out::GroupPlan>,
}

/// Plans `config`; components whose inputs failed are skipped, so every
/// error is a first-hand one.
pub(crate) fn plan(config: &PipelineConfig, pipeline: &str) -> (Plan, Vec<PlanError>) {
    let group = config.runtime.group.as_deref().map(|group| {
        crate::scale_out::GroupPlan::new(group).with_data_dir(config.runtime.data_dir.clone())
    });
    let mut planner = Planner {
        plan: Plan::default(),
        errors: Vec::new(),
        failed: BTreeSet::new(),
        pipeline,
        group,
    };
    for (name, source) in &config.sources {
        planner.component("sources", name, source.component());
    }
    for name in processor_order(config) {
        planner.component("processors", &name, config.processors[&name].component());
    }
    for (name, sink) in &config.sinks {
        planner.component("sinks", name, sink.component());
    }
    let mut plan = planner.plan;
    plan.group = planner.group;
    (plan, planner.errors)
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

struct Planner<'p> {
    plan: Plan,
    errors: Vec<PlanError>,
    /// Components that failed: their readers are not checked further.
    failed: BTreeSet<String>,
    /// The pipeline's name (the file's stem).
    pipeline: &'p str,
    /// The scale-out run planned, with `[runtime] group`.
    group: Option<crate::scale_out::GroupPlan>,
}

impl Planner<'_> {
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

    /// Plans component `name` of `section`: resolves its inputs, then lets
    /// it check its options against what they carry.
    fn component(&mut self, section: &str, name: &str, component: &dyn Component) {
        let path = format!("{section}.{name}");
        let (inputs, input) = if section == "sources" {
            (Vec::new(), None)
        } else {
            match self.inputs(&path, component.inputs(), component.mixed_inputs()) {
                Some((inputs, streams)) => (inputs, Some(streams)),
                None => return,
            }
        };
        let streams = input.unwrap_or_default();
        let input = streams.first().cloned();
        if self.group.is_some() && !component.scales_out() {
            let message = crate::scale_out::not_scalable_message().to_owned();
            self.fail_at(&path, ConfigErrorKind::Invalid, None, None, message);
            return;
        }
        let context = PlanContext {
            name,
            input: input.as_ref(),
            inputs: &streams,
            pipeline: self.pipeline,
            group: self.group.as_ref(),
        };
        match component.plan(&context) {
            Ok(planned) => {
                let planned = Planned {
                    path,
                    inputs,
                    input,
                    outputs: planned.outputs,
                    node: Some(planned.node),
                };
                self.add(name, planned);
            }
            Err(error) => {
                self.option_error(&path, error);
                // A component whose output schema does not depend on the
                // failed option still lets its readers be checked, so one
                // pass reports their errors too. Nothing is built.
                let Some(schema) = &input else {
                    return;
                };
                if let Some(outputs) = component.outputs_despite_error(schema) {
                    self.failed.remove(name);
                    let planned = Planned {
                        path,
                        inputs,
                        input,
                        outputs,
                        node: None,
                    };
                    self.add(name, planned);
                }
            }
        }
    }

    /// Resolves `inputs` of `path`, and the schema each carries; `None` if
    /// any failed (reported, or failed upstream). Unless the component
    /// takes `mixed` inputs, they must all carry the same schema.
    fn inputs(
        &mut self,
        path: &str,
        inputs: &[String],
        mixed: bool,
    ) -> Option<(Vec<Input>, Vec<SchemaRef>)> {
        let mut resolved = Vec::with_capacity(inputs.len());
        let mut streams = Vec::with_capacity(inputs.len());
        let mut common: Option<(usize, SchemaRef)> = None;
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
            let node = output.node.clone().unwrap_or_else(|| component.to_owned());
            let stream = output.schema.clone();
            streams.push(stream.clone());
            if mixed {
                // Each input is checked by the component.
            } else if let Some((first, common)) = &common {
                if *common != stream {
                    let message = format!(
                        "input `{input}` carries rows of {}, but input `{}` carries rows of {}; \
                         the inputs of one component must carry the same records",
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
        if streams.is_empty() {
            return None;
        }
        Some((resolved, streams))
    }
}
