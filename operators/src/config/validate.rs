//! Checks that need the whole pipeline, run after every component parsed.
//!
//! In order, so that the first error reported is the most basic one:
//! 1. names: allowed characters and length, unique across sections;
//! 2. values: positive sizes and rates, non-empty lists, limits;
//! 3. edges: every processor and sink has inputs, each naming a source or
//!    processor, and every source and processor is read by someone;
//! 4. no cycle among processors (the cycle is listed);
//!
//! Each error points at the offending value, or at the component's name
//! when the problem is something missing.

use std::collections::{BTreeMap, BTreeSet};

use super::document::Spans;
use super::error::{ConfigError, ConfigErrorKind, Source};
use super::model::PipelineConfig;
use crate::limits::{COMPONENT_NAME_MAX_BYTES, SHARDS_MAX};

/// What the checks look at.
struct Checker<'a> {
    /// Every problem found so far.
    errors: std::cell::RefCell<Vec<ConfigError>>,
    /// Components that did not parse: inputs may name them.
    broken: &'a BTreeSet<String>,
    source: &'a Source<'a>,
    config: &'a PipelineConfig,
    spans: &'a Spans,
    /// Every component's `SECTION.NAME`, by name.
    paths: BTreeMap<&'a str, String>,
}

/// Runs every check; see the module docs.
pub(crate) fn check(
    source: &Source<'_>,
    config: &PipelineConfig,
    spans: &Spans,
    broken: &BTreeSet<String>,
) -> Vec<ConfigError> {
    let checker = Checker {
        errors: std::cell::RefCell::new(Vec::new()),
        broken,
        source,
        config,
        spans,
        paths: BTreeMap::new(),
    };
    let checker = checker.names();
    let _ = checker.runtime();
    let _ = checker.values();
    let _ = checker.edges();
    let _ = checker.cycles();
    checker.errors.into_inner()
}

impl<'a> Checker<'a> {
    /// Records `error` and lets the check go on.
    fn report(&self, error: ConfigError) -> Result<(), ConfigError> {
        self.errors.borrow_mut().push(error);
        Ok(())
    }

    fn error(
        &self,
        kind: ConfigErrorKind,
        path: &str,
        field: &str,
        message: String,
    ) -> ConfigError {
        let span = self.spans.field(path, field);
        ConfigError::at(kind, self.source, span, Some(path), message)
    }

    fn names(mut self) -> Self {
        let config = self.config;
        let sections = [
            ("sources", config.sources.keys().collect::<Vec<_>>()),
            ("processors", config.processors.keys().collect()),
            ("sinks", config.sinks.keys().collect()),
        ];
        for (section, names) in sections {
            for name in names {
                let path = format!("{section}.{name}");
                let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
                if name.is_empty()
                    || name.len() > COMPONENT_NAME_MAX_BYTES
                    || !name.chars().all(allowed)
                {
                    let message = format!(
                        "a name must be 1 to {COMPONENT_NAME_MAX_BYTES} ASCII letters, digits, `_` or `-`"
                    );
                    let _ = self.report(self.error(ConfigErrorKind::Name, &path, "", message));
                    continue;
                }
                if let Some(first) = self.paths.get(name.as_str()) {
                    let message = format!("the name `{name}` is already used by `{first}`");
                    let _ = self.report(self.error(ConfigErrorKind::Name, &path, "", message));
                    continue;
                }
                self.paths.insert(name, path);
            }
        }
        self
    }

    fn runtime(&self) -> Result<(), ConfigError> {
        let runtime = &self.config.runtime;
        if let Some(shards) = runtime.shards {
            if shards == 0 || shards > SHARDS_MAX {
                let message = format!("`shards` must be 1 to {SHARDS_MAX}, not {shards}");
                let _ =
                    self.report(self.error(ConfigErrorKind::Invalid, "runtime", "shards", message));
            }
        }
        if runtime.epoch_interval_ms == 0 {
            let message = "`epoch_interval_ms` must be positive".to_owned();
            let _ = self.report(self.error(
                ConfigErrorKind::Invalid,
                "runtime",
                "epoch_interval_ms",
                message,
            ));
        }
        if let Some(Err(message)) = runtime.stop_timeout_ms() {
            let message = format!("`stop_timeout`: {message}");
            let _ = self.report(self.error(
                ConfigErrorKind::Invalid,
                "runtime",
                "stop_timeout",
                message,
            ));
        }
        if let Some(group) = &runtime.group {
            if let Err(message) = crate::scale_out::check_group(group) {
                let _ =
                    self.report(self.error(ConfigErrorKind::Invalid, "runtime", "group", message));
            }
        }
        if let Some(listen) = &runtime.metrics_listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                let message = format!(
                    "`metrics_listen` must be a socket address like \"127.0.0.1:9898\", not {listen:?}"
                );
                let _ = self.report(self.error(
                    ConfigErrorKind::Invalid,
                    "runtime",
                    "metrics_listen",
                    message,
                ));
            }
        }
        if runtime.sink_backlog_epochs == Some(0) {
            let message = "`sink_backlog_epochs` must be at least 1".to_owned();
            let _ = self.report(self.error(
                ConfigErrorKind::Invalid,
                "runtime",
                "sink_backlog_epochs",
                message,
            ));
        }
        if runtime.tap && runtime.metrics_listen.is_none() {
            let message = "`tap = true` serves `/tap` on the metrics endpoint: set \
                           `metrics_listen` (e.g. \"127.0.0.1:9898\") too"
                .to_owned();
            let _ = self.report(self.error(ConfigErrorKind::Invalid, "runtime", "tap", message));
        }
        if runtime.tap_remote && !runtime.tap {
            let message = "`tap_remote = true` needs `tap = true`".to_owned();
            let _ =
                self.report(self.error(ConfigErrorKind::Invalid, "runtime", "tap_remote", message));
        }
        Ok(())
    }

    /// Each component's own checks of its options ([`Component::check`]).
    fn values(&self) -> Result<(), ConfigError> {
        for (section, name, component) in self.config.components() {
            if let Err(error) = component.check(name) {
                let path = format!("{section}.{name}");
                let option = error.option.clone();
                let message = error.naming_option();
                let kind = ConfigErrorKind::Invalid;
                let _ = self.report(self.error(kind, &path, &option, message));
            }
        }
        Ok(())
    }

    /// The inputs of every processor and sink, by `SECTION.NAME`.
    fn readers(&self) -> Vec<(String, &'a [String])> {
        let config = self.config;
        let processors = config
            .processors
            .iter()
            .map(|(name, processor)| (format!("processors.{name}"), processor.inputs()));
        let sinks = config
            .sinks
            .iter()
            .map(|(name, sink)| (format!("sinks.{name}"), sink.inputs()));
        processors.chain(sinks).collect()
    }

    fn edges(&self) -> Result<(), ConfigError> {
        let mut read = BTreeSet::new();
        for (path, inputs) in self.readers() {
            if inputs.is_empty() {
                let message = "no inputs: add `inputs = [\"NAME\", ...]`".to_owned();
                let _ = self.report(self.error(
                    ConfigErrorKind::MissingInputs,
                    &path,
                    "inputs",
                    message,
                ));
                continue;
            }
            let spans = &self.spans.component(&path).inputs;
            for (index, input) in inputs.iter().enumerate() {
                let span = spans
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| self.spans.field(&path, "inputs"));
                // `NAME.PORT` reads a side output; the ports are checked
                // with the schemas.
                let component = input
                    .split_once('.')
                    .map_or(input.as_str(), |(name, _)| name);
                if self.broken.contains(component) {
                    continue;
                }
                let message = match self.paths.get(component) {
                    None => format!("input `{input}` names no component"),
                    Some(target) if target.starts_with("sinks.") => {
                        format!("input `{input}` is a sink, which has no output")
                    }
                    Some(target) => {
                        if !read.insert((target.clone(), input.clone(), path.clone())) {
                            format!("input `{input}` is listed twice")
                        } else {
                            continue;
                        }
                    }
                };
                let kind = ConfigErrorKind::UnknownInput;
                let _ = self.report(ConfigError::at(
                    kind,
                    self.source,
                    span,
                    Some(&path),
                    message,
                ));
                continue;
            }
        }
        let inputs_wrong = self.errors.borrow().iter().any(|error| {
            matches!(
                error.kind,
                ConfigErrorKind::MissingInputs | ConfigErrorKind::UnknownInput
            )
        });
        if !self.broken.is_empty() || inputs_wrong {
            // A component that did not parse, or whose inputs are wrong,
            // may be the one meant to read them.
            return Ok(());
        }
        let read: BTreeSet<&String> = read.iter().map(|(target, _, _)| target).collect();
        for path in self
            .paths
            .values()
            .filter(|path| !path.starts_with("sinks."))
        {
            if !read.contains(path) {
                let message =
                    "nothing reads its output: list it in a processor's or sink's `inputs`";
                let _ = self.report(self.error(
                    ConfigErrorKind::UnusedOutput,
                    path,
                    "",
                    message.to_owned(),
                ));
                continue;
            }
        }
        Ok(())
    }

    /// Finds a cycle among processors by depth-first search.
    fn cycles(&self) -> Result<(), ConfigError> {
        let processors = &self.config.processors;
        // 0: not visited, 1: on the current path, 2: done.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        for start in processors.keys() {
            let mut path: Vec<&str> = Vec::new();
            if let Some(cycle) = self.visit(start, &mut state, &mut path) {
                let first = format!("processors.{}", cycle[0]);
                let message = format!("processors form a cycle: {}", cycle.join(" -> "));
                return self.report(self.error(ConfigErrorKind::Cycle, &first, "", message));
            }
        }
        Ok(())
    }

    fn visit<'b>(
        &'b self,
        name: &'b str,
        state: &mut BTreeMap<&'b str, u8>,
        path: &mut Vec<&'b str>,
    ) -> Option<Vec<&'b str>> {
        // A name that is also a source or sink is reported as a duplicate;
        // an input naming it is ambiguous, not a step of a cycle.
        if self.config.sources.contains_key(name) || self.config.sinks.contains_key(name) {
            return None;
        }
        match state.get(name).copied().unwrap_or(0) {
            1 => {
                let at = path
                    .iter()
                    .position(|on_path| *on_path == name)
                    .unwrap_or(0);
                let mut cycle = path[at..].to_vec();
                cycle.push(name);
                return Some(cycle);
            }
            2 => return None,
            _ => {}
        }
        let processor = self.config.processors.get(name)?;
        state.insert(name, 1);
        path.push(name);
        for input in processor.inputs() {
            if let Some(cycle) = self.visit(input, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(name, 2);
        None
    }
}

/// Plans the pipeline ([`super::plan`]) and locates its errors: at the
/// option's value, at the `inputs` entry, or at the component's name.
pub(crate) fn check_plan(
    source: &Source<'_>,
    config: &PipelineConfig,
    spans: &Spans,
) -> Vec<ConfigError> {
    let pipeline = std::path::Path::new(source.file).file_stem().map_or_else(
        || "weir".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let (_, errors) = super::plan::plan(config, &pipeline);
    errors
        .into_iter()
        .map(|error| {
            let component = spans.component(&error.path);
            let span = match (&error.input, &error.option) {
                (Some(index), _) => component
                    .inputs
                    .get(*index)
                    .cloned()
                    .unwrap_or_else(|| spans.field(&error.path, "inputs")),
                (None, Some(option)) => spans.field(&error.path, option),
                (None, None) => component.name.clone(),
            };
            let message = match &error.option {
                Some(option) if !error.message.contains(&format!("`{option}`")) => {
                    format!("`{option}`: {}", error.message)
                }
                _ => error.message,
            };
            ConfigError::at(error.kind, source, span, Some(&error.path), message)
        })
        .collect()
}
