//! The `size_ms` form of the `window` component: tumbling counts (and a
//! sum) per key over generator or ingest events, as [`WindowRow`]s
//! ([`KeyedWindow`]).

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use weir_runtime::{GraphBuilder, Partition};

use super::keyed::EventField;
use super::{KeyedWindow, KeyedWindowSpec};
use crate::component::{
    state_options, Component, Input, Node, Output, PlanContext, Planned, Reads, Stateful, Stream,
};
use crate::records::GeneratedEvent;
#[cfg(doc)]
use crate::records::WindowRow;
use crate::row::OptionError;

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

impl Component for WindowConfig {
    fn reads(&self) -> Reads {
        Reads::Events
    }

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
        Ok(())
    }

    fn plan(&self, _context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let spec = KeyedWindowSpec::from_config(self).map_err(|message| {
            let option = if message.starts_with("`group_by`") {
                "group_by"
            } else {
                "aggregates"
            };
            OptionError::new(option, message)
        })?;
        let fingerprint = state_options("window", self, &["size_ms", "group_by", "aggregates"]);
        let node = Stateful { spec, fingerprint };
        Ok(Planned::new(vec![Output::main(Stream::WindowRows)], node))
    }
}

impl Node for Stateful<KeyedWindowSpec> {
    fn add(&self, graph: &mut GraphBuilder, name: &str, inputs: &[Input]) {
        let Stateful { spec, fingerprint } = self.clone();
        for input in inputs {
            let spec = spec.clone();
            let partition = Partition::hash(move |event: &GeneratedEvent| spec.group_hash(event));
            graph.connect_port(&input.node, input.port, name, partition);
        }
        graph
            .processor(name, move |context| {
                KeyedWindow::new(spec.clone()).with_metrics(context)
            })
            .state_fingerprint(fingerprint);
    }
}

impl KeyedWindowSpec {
    /// The spec of a window over generator events; the error says what this
    /// version cannot compute.
    pub fn from_config(config: &WindowConfig) -> Result<KeyedWindowSpec, String> {
        if config.size_ms == 0 {
            return Err("`size_ms` must be positive".into());
        }
        let group_by = EventField::parse(&config.group_by).ok_or_else(|| {
            format!(
                "`group_by`: events have no field `{}`, expected one of `id`, `key`, `ts`",
                config.group_by
            )
        })?;
        let mut spec = KeyedWindowSpec {
            size_ms: config.size_ms,
            group_by,
            count: false,
            sum: None,
        };
        for aggregate in &config.aggregates {
            match aggregate {
                Aggregate::Count => spec.count = true,
                Aggregate::Sum(field) => {
                    let field = match EventField::parse(field) {
                        Some(field @ (EventField::Id | EventField::Ts)) => field,
                        _ => {
                            return Err(format!(
                                "`aggregates`: cannot sum `{field}`, expected `sum:id` or `sum:ts`"
                            ))
                        }
                    };
                    if spec.sum.replace(field).is_some() {
                        return Err("`aggregates`: at most one `sum:FIELD`".into());
                    }
                }
            }
        }
        Ok(spec)
    }
}
