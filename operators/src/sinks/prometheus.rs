//! [`PrometheusSink`]: the `prometheus` sink of pipeline files.
//!
//! Exposes the rows of a window, of any kind (tumbling, sliding, session,
//! or the legacy `size_ms` form), as Prometheus gauges on the runtime's
//! metrics endpoint (`[runtime] metrics_listen`), for dashboards. With
//! `name = "logins_per_user"`, each row sets, for its labels,
//!
//! - `weir_logins_per_user{sink="...",LABEL="...",...,aggregate="FIELD"}`:
//!   the row's numeric field `FIELD` (each of `values`);
//! - `weir_logins_per_user_window_end_seconds{sink="...",LABEL="...",...}`:
//!   the end of the row's window, so a dashboard can tell a fresh value
//!   from a stale one (a group absent from the latest window keeps its last
//!   value).
//!
//! The window's end is its `window_end` field (a `timestamp`), or the
//! legacy `window_end_ms` (an `int` of milliseconds). `labels` default to
//! every `string`, `bool` and `ip` field, `values` to every `int` and
//! `float` field other than the window's bounds and the labels; both can be
//! listed
//! instead (an `int` group field is listed in `labels`). A null label is
//! the empty string; a null value leaves its gauge as it was.
//!
//! Every label set becomes its own series, kept for the life of the
//! process: use the sink for groupings with a bounded number of values
//! (statuses, services, countries), not for user ids or IP addresses.
//!
//! A gauge shows the latest row of its labels. Rows reach the sink when
//! windows close, before their epoch commits, and a row replayed after a
//! crash sets the same value again: setting is idempotent, so the gauges
//! converge on the committed rows. Each group's rows come from one shard
//! (the window partitions by group), so every gauge has one writer.

use std::collections::HashMap;

use weir_runtime::metrics::{FloatGauge, Registry};
use weir_runtime::{Batch, ShardContext, Sink};

use crate::component::{connect_forward, Component, Input, Node, PlanContext, Planned};
use crate::row::{write_json_value, ArchivedRow, ArchivedValue, OptionError, Row, Schema, Type};

/// The window bound fields: never labels or values.
const BOUNDS: [&str; 4] = [
    "window_start",
    "window_end",
    "window_start_ms",
    "window_end_ms",
];

/// Labels the sink sets itself.
const RESERVED_LABELS: [&str; 2] = ["sink", "aggregate"];

/// The gauges of one label set: one per value field, then the window end.
#[derive(Debug)]
struct GroupGauges {
    values: Vec<FloatGauge>,
    window_end: FloatGauge,
}

/// What the sink reads from each row: checked against the input schema.
#[derive(Debug, Clone)]
pub struct PrometheusSpec {
    /// `weir_<name>`.
    prefix: String,
    /// Label fields: (name, index).
    labels: Vec<(String, usize)>,
    /// Value fields: (name, index).
    values: Vec<(String, usize)>,
    /// The window end's index (a `timestamp`, or an `int` of
    /// milliseconds).
    window_end: usize,
}

/// Sets gauges from window rows; see the module docs.
#[derive(Debug)]
pub struct PrometheusSink {
    spec: PrometheusSpec,
    registry: Registry,
    sink: String,
    shard: usize,
    groups: HashMap<Vec<String>, GroupGauges>,
    /// One row's label values, reused.
    scratch: Vec<String>,
}

/// Whether `name` can go into a metric name (`[a-z_][a-z0-9_]*`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !["_total", "_count", "_sum", "_bucket"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

impl PrometheusSink {
    /// The instance for `context`'s shard.
    pub fn new(spec: PrometheusSpec, context: &ShardContext) -> PrometheusSink {
        PrometheusSink {
            spec,
            registry: context.metrics.clone(),
            sink: context.node.to_string(),
            shard: context.shard,
            groups: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Registers the gauges of the label values in `scratch`, on their
    /// first row.
    fn register_group(&mut self) {
        if self.groups.contains_key(&self.scratch) {
            return;
        }
        let mut labels: Vec<(&str, &str)> = vec![("sink", self.sink.as_str())];
        for ((name, _), value) in self.spec.labels.iter().zip(&self.scratch) {
            labels.push((name.as_str(), value.as_str()));
        }
        let help = "An aggregate of the latest closed window of the group.";
        let values = self
            .spec
            .values
            .iter()
            .map(|(field, _)| {
                let mut labels = labels.clone();
                labels.push(("aggregate", field.as_str()));
                self.registry
                    .summed_float_gauge(&self.spec.prefix, help, &labels)
            })
            .collect();
        let window_end = self.registry.summed_float_gauge(
            &format!("{}_window_end_seconds", self.spec.prefix),
            "End of the latest closed window of the group, in seconds since the Unix epoch.",
            &labels,
        );
        let gauges = GroupGauges { values, window_end };
        self.groups.insert(self.scratch.clone(), gauges);
    }

    fn set(&mut self, row: &ArchivedRow) {
        // The label values go into `scratch`'s strings, reused row to row.
        self.scratch
            .resize_with(self.spec.labels.len(), String::new);
        for ((_, index), text) in self.spec.labels.iter().zip(&mut self.scratch) {
            label_text(row.get(*index), text);
        }
        self.register_group();
        let (shard, gauges) = (self.shard, &self.groups[&self.scratch]);
        for ((_, index), gauge) in self.spec.values.iter().zip(&gauges.values) {
            if let Some(value) = number(row.get(*index)) {
                gauge.set(shard, value);
            }
        }
        let end = row.get(self.spec.window_end);
        if let Some(end_ms) = end.as_int().or_else(|| end.as_timestamp()) {
            gauges.window_end.set(shard, end_ms as f64 / 1000.0);
        }
    }
}

/// Writes a label's text into `text`: strings as they are, null as empty,
/// anything else as its JSON text unquoted.
fn label_text(value: &ArchivedValue, text: &mut String) {
    text.clear();
    if value.is_null() {
        return;
    }
    if let Some(string) = value.as_str() {
        text.push_str(string);
        return;
    }
    write_json_value(value, text);
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        text.pop();
        text.remove(0);
    }
}

/// A value field's number, `None` when null.
fn number(value: &ArchivedValue) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_int().map(|int| int as f64))
}

impl Sink for PrometheusSink {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        for row in batch.iter() {
            self.set(row);
        }
    }
}

/// Exposes window rows as Prometheus gauges; see
/// [`PrometheusSink`](PrometheusSink).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSinkConfig {
    /// Components whose output this one reads (windows).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The gauges are named `weir_<name>` (`[a-z_][a-z0-9_]*`).
    pub name: String,
    /// Fields whose values label the gauges; default: every `string`,
    /// `bool` and `ip` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Numeric fields that each become a gauge (`aggregate="FIELD"`);
    /// default: every `int` and `float` field but the window's bounds and
    /// the labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

impl PrometheusSinkConfig {
    /// Checks the options against the window's rows.
    pub fn build(&self, schema: &Schema) -> Result<PrometheusSpec, OptionError> {
        let Some(window_end) = ["window_end", "window_end_ms"]
            .iter()
            .find_map(|name| schema.index(name))
        else {
            let message = format!(
                "reads the rows of a `window`, which have a `window_end` field; the input \
                 carries rows of {}",
                schema.describe()
            );
            return Err(OptionError::new("inputs", message));
        };
        let fields = schema.fields();
        let pick = |option: &str,
                    listed: &Option<Vec<String>>,
                    default: fn(Type) -> bool,
                    allowed: fn(Type) -> bool|
         -> Result<Vec<(String, usize)>, OptionError> {
            let Some(listed) = listed else {
                return Ok(fields
                    .iter()
                    .enumerate()
                    .filter(|(_, field)| !BOUNDS.contains(&field.name.as_str()))
                    .filter(|(_, field)| default(field.ty))
                    .map(|(index, field)| (field.name.clone(), index))
                    .collect());
            };
            listed
                .iter()
                .map(|name| {
                    let (index, ty) = schema
                        .lookup(name)
                        .map_err(|message| OptionError::new(option, message))?;
                    if !allowed(ty) {
                        let message = format!(
                            "`{name}` is of type {}, which {option} cannot hold",
                            ty.name()
                        );
                        return Err(OptionError::new(option, message));
                    }
                    Ok((name.clone(), index))
                })
                .collect()
        };
        let labels = pick(
            "labels",
            &self.labels,
            |ty| matches!(ty, Type::String | Type::Bool | Type::Ip),
            |ty| !matches!(ty, Type::List | Type::Map),
        )?;
        for (label, _) in &labels {
            if !valid_label(label) {
                let message = format!(
                    "`{label}` cannot be a Prometheus label: labels match [a-zA-Z_][a-zA-Z0-9_]*, \
                     do not start with `__`, and `sink` and `aggregate` are the sink's own"
                );
                return Err(OptionError::new("labels", message));
            }
        }
        let mut values = pick("values", &self.values, Type::is_numeric, Type::is_numeric)?;
        if self.values.is_none() {
            // A field that labels the gauges is no value of them.
            values.retain(|(name, _)| !labels.iter().any(|(label, _)| label == name));
        }
        if values.is_empty() {
            let message = "the rows have no `int` or `float` field to expose besides the \
                           window's bounds";
            return Err(OptionError::new("values", message));
        }
        Ok(PrometheusSpec {
            prefix: format!("weir_{}", self.name),
            labels,
            values,
            window_end,
        })
    }
}

/// Whether `name` can be a label of the sink's gauges.
fn valid_label(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
        && !RESERVED_LABELS.contains(&name)
}

impl Component for PrometheusSinkConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn check(&self, _name: &str) -> Result<(), OptionError> {
        if valid_name(&self.name) {
            return Ok(());
        }
        let message = format!(
            "`name = \"{}\"`: gauges are named `weir_<name>`, so it must match \
             [a-z_][a-z0-9_]* and not end in _total, _count, _sum or _bucket",
            self.name
        );
        Err(OptionError::new("name", message))
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        Ok(Planned::new(Vec::new(), self.build(&context.schema())?))
    }
}

impl Node for PrometheusSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.sink(name, move |context| {
            PrometheusSink::new(spec.clone(), context)
        });
        connect_forward(graph, name, inputs);
    }
}
