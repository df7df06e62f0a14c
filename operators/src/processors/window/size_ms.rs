//! The `size_ms` form of the `window` component, kept for pipeline files
//! written for it: when planned it becomes a tumbling row window
//! ([`RowWindowConfig`], `size = size_ms`, time field `timestamp`) and a
//! projection of its rows to the legacy columns
//! `window_start_ms, window_end_ms, key, count, sum` (all `int` but `key`,
//! a `string`; `count` and `sum` are 0 when not asked for). NDJSON output is
//! the same, byte for byte, as when this form had its own operator.
//!
//! `group_by = "ts"` means the `timestamp` field. Every input that carries
//! the fields it names can be read: the `generator` with `keys`, `tcp` and
//! `http` (event rows), or any processor's rows.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, Emitter, GraphBuilder, Partition, Processor};

use super::rows::{AggregateConfig, AggregateFn, RowWindowConfig, WindowKindConfig};
use crate::component::{Component, Input, Node, Output, PlanContext, Planned};
use crate::row::{write_json_value, ArchivedValue, OptionError, Row, Schema, Type, Value};

/// Tumbling windows over event time, grouped by one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Components whose output this one reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Window length in milliseconds of event time.
    pub size_ms: u64,
    /// The field rows are grouped by.
    pub group_by: String,
    /// What each row carries, e.g. `["count", "sum:id"]`.
    pub aggregates: Vec<Aggregate>,
}

/// One aggregate of a window, written as a string: `"count"` or
/// `"sum:FIELD"` (e.g. `"sum:id"`). The string form keeps the common case a
/// one-word list; a function that needs parameters would get a table form
/// next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Aggregate {
    /// Records in the window.
    Count,
    /// Sum of a numeric field, wrapping on overflow.
    Sum(String),
}

impl Aggregate {
    /// The field it reads, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Aggregate::Count => None,
            Aggregate::Sum(field) => Some(field),
        }
    }
}

impl TryFrom<String> for Aggregate {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text == "count" {
            return Ok(Aggregate::Count);
        }
        let expected = "expected `count` or `sum:FIELD`";
        let Some((function, field)) = text.split_once(':') else {
            return Err(format!("unknown aggregate `{text}`, {expected}"));
        };
        if field.is_empty() {
            return Err(format!("aggregate `{text}` names no field, {expected}"));
        }
        match function {
            "sum" => Ok(Aggregate::Sum(field.to_owned())),
            _ => Err(format!("unknown aggregate `{text}`, {expected}")),
        }
    }
}

impl From<Aggregate> for String {
    fn from(aggregate: Aggregate) -> String {
        aggregate.to_string()
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Count => f.write_str("count"),
            Aggregate::Sum(field) => write!(f, "sum:{field}"),
        }
    }
}

impl WindowConfig {
    /// The row window this window is, with its aggregates named `count`
    /// and `sum`.
    pub fn to_row_window(&self) -> Result<RowWindowConfig, OptionError> {
        let group = match self.group_by.as_str() {
            "ts" => "timestamp",
            field => field,
        };
        let mut aggregates = Vec::new();
        for aggregate in &self.aggregates {
            let (function, field, name) = match aggregate {
                Aggregate::Count => (AggregateFn::Count, None, "count"),
                Aggregate::Sum(field) if field == "ts" || field == "timestamp" => {
                    let message = format!(
                        "`sum:{field}`: event times are not summed; sum an `int` field \
                         (a `map` with `set = {{ ts_ms = \"to_int(timestamp)\" }}` makes one)"
                    );
                    return Err(OptionError::new("aggregates", message));
                }
                Aggregate::Sum(field) => (AggregateFn::Sum, Some(field.clone()), "sum"),
            };
            aggregates.push(AggregateConfig {
                function,
                field,
                name: Some(name.to_owned()),
                k: None,
                error: None,
                q: None,
            });
        }
        Ok(RowWindowConfig {
            inputs: self.inputs.clone(),
            kind: WindowKindConfig::Tumbling,
            size: Some(Duration::from_millis(self.size_ms)),
            slide: None,
            gap: None,
            time_field: "timestamp".to_owned(),
            group_by: vec![group.to_owned()],
            aggregates,
            allowed_lateness: Duration::ZERO,
        })
    }
}

/// The legacy columns of a `size_ms` window's rows.
pub fn size_ms_schema() -> Schema {
    Schema::new([
        ("window_start_ms", Type::Int),
        ("window_end_ms", Type::Int),
        ("key", Type::String),
        ("count", Type::Int),
        ("sum", Type::Int),
    ])
}

impl Component for WindowConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn check(&self, _name: &str) -> Result<(), OptionError> {
        if self.size_ms == 0 {
            return Err(OptionError::new("size_ms", "`size_ms` must be positive"));
        }
        if self.aggregates.is_empty() {
            return Err(OptionError::new(
                "aggregates",
                "`aggregates` must name at least one",
            ));
        }
        let mut seen = HashSet::new();
        for aggregate in &self.aggregates {
            if !seen.insert(std::mem::discriminant(aggregate)) {
                let message = format!("`{aggregate}`: each aggregate function may appear once");
                return Err(OptionError::new("aggregates", message));
            }
        }
        self.to_row_window().map(drop)
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let window = self.to_row_window()?;
        let planned = window.plan(context).map_err(|error| {
            // The row window's options, named as this form writes them.
            let (option, message) = match error.option.as_str() {
                "size" => ("size_ms", error.message),
                "aggregates" => ("aggregates", error.message),
                "time_field" => (
                    "inputs",
                    format!(
                        "a `size_ms` window reads event time from a `timestamp` field: {}",
                        error.message
                    ),
                ),
                _ => ("group_by", error.message),
            };
            OptionError::new(option, message)
        })?;
        let rows = planned.outputs[0].schema.clone();
        let field = |name: &str| rows.index(name);
        let projection = Projection {
            group: field(&window.group_by[0]).expect("a row window's rows hold its group"),
            count: field("count"),
            sum: field("sum"),
            row: Row::nulls(5),
        };
        let output = Output::rows(size_ms_schema()).from_node(projection_name(context.name));
        let node = SizeMsNode {
            window: planned.node,
            projection,
        };
        Ok(Planned::new(vec![output], node))
    }
}

/// The runtime node of window `name`'s projection.
fn projection_name(name: &str) -> String {
    format!("{name}:rows")
}

/// The row window's node, then the projection's.
struct SizeMsNode {
    window: Box<dyn Node>,
    projection: Projection,
}

impl Node for SizeMsNode {
    fn add(&self, graph: &mut GraphBuilder, name: &str, inputs: &[Input]) {
        self.window.add(graph, name, inputs);
        let projection = self.projection.clone();
        let node = projection_name(name);
        graph.processor(&node, move |_| projection.clone());
        graph.connect::<Row>(name, &node, Partition::Forward);
    }
}

/// Turns a row window's rows (`window_start, window_end, GROUP, count?,
/// sum?`) into rows of [`size_ms_schema`].
#[derive(Debug, Clone)]
struct Projection {
    group: usize,
    count: Option<usize>,
    sum: Option<usize>,
    /// The output row, reused.
    row: Row,
}

impl Processor for Projection {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        let int = |value: &ArchivedValue| match value {
            ArchivedValue::Int(number) | ArchivedValue::Timestamp(number) => {
                Value::Int(number.to_native())
            }
            _ => Value::Int(0),
        };
        for row in batch.iter() {
            let values = &mut self.row.values;
            values[0] = int(row.get(0));
            values[1] = int(row.get(1));
            values[2] = group_text(row.get(self.group));
            values[3] = self
                .count
                .map_or(Value::Int(0), |index| int(row.get(index)));
            values[4] = self.sum.map_or(Value::Int(0), |index| int(row.get(index)));
            out.push(&self.row);
        }
    }
}

/// A group's value as the legacy `key` string: numbers and times (in
/// milliseconds) in decimal, other values as their JSON text unquoted.
fn group_text(value: &ArchivedValue) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    if let Some(text) = value.as_str() {
        return Value::String(text.to_owned());
    }
    if let Some(number) = value.as_int().or_else(|| value.as_timestamp()) {
        return Value::String(number.to_string());
    }
    let mut text = String::new();
    write_json_value(value, &mut text);
    Value::String(text.trim_matches('"').to_owned())
}
