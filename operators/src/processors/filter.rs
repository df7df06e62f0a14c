//! `filter`: keeps the records for which `condition` is true; a condition
//! that is false or null drops the record.
//!
//! ```toml
//! [processors.errors]
//! type = "filter"
//! inputs = ["access"]
//! condition = 'status >= 500 and not starts_with(path, "/health")'
//! ```
//!
//! The output schema is the input's.

use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, Emitter, Processor};

use crate::component::{connect_forward, Component, Input, Node, Output, PlanContext, Planned};
use crate::expr::{Expr, Scratch};
use crate::row::{OptionError, Row, Schema};

/// A `filter` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Components whose output this one reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The condition records must meet (an expression of type bool).
    pub condition: String,
}

/// A checked `filter`.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    condition: Expr,
}

/// Checks `config` against `input`; the output schema is `input`'s.
pub fn build(config: &FilterConfig, input: &Schema) -> Result<(FilterSpec, Schema), OptionError> {
    let condition = Expr::compile_condition(&config.condition, input)
        .map_err(|error| OptionError::new("condition", error.to_string()))?;
    Ok((FilterSpec { condition }, input.clone()))
}

/// The `filter` operator.
#[derive(Debug)]
pub struct Filter {
    spec: FilterSpec,
    scratch: Scratch,
    row: Row,
}

impl Filter {
    /// An instance of `spec`.
    pub fn new(spec: FilterSpec) -> Filter {
        Filter {
            spec,
            scratch: Scratch::default(),
            row: Row::default(),
        }
    }
}

impl Processor for Filter {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            if self.spec.condition.test(row, &mut self.scratch) {
                row.copy_into(&mut self.row);
                out.push(&self.row);
            }
        }
    }
}

impl Component for FilterConfig {
    /// Stateless: runs in a scaled-out pipeline.
    fn scales_out(&self) -> bool {
        true
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let (spec, output) = build(self, &context.schema())?;
        Ok(Planned::new(vec![Output::rows(output)], spec))
    }

    fn outputs_despite_error(&self, input: &crate::row::SchemaRef) -> Option<Vec<Output>> {
        // A filter's output is its input.
        Some(vec![Output::rows(input.as_ref().clone())])
    }
}

impl Node for FilterSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.processor(name, move |_| Filter::new(spec.clone()));
        connect_forward(graph, name, inputs);
    }
}
