//! `route`: splits a stream into named outputs, as Vector's `route` does.
//!
//! ```toml
//! [processors.split]
//! type = "route"
//! inputs = ["access"]
//! [processors.split.routes]
//! errors = "status >= 500"
//! logins = 'path == "/login"'
//! ```
//!
//! Readers name an output as `split.errors`; a record goes to every route
//! whose condition is true, and to `split._unmatched` when none is. Every
//! output has the input's schema. Port numbers: `_unmatched` is port 0 and
//! the routes follow in name order from port 1 ([`RouteSpec::ports`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, Emitter, Processor};

use crate::component::{connect_forward, Component, Input, Node, Output, PlanContext, Planned};
use crate::expr::{Expr, Scratch};
use crate::row::{OptionError, Row, Schema};

/// The output records matching no route go to.
pub const UNMATCHED: &str = "_unmatched";

/// A `route` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Components whose output this one reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Output name → condition.
    pub routes: BTreeMap<String, String>,
}

/// A checked `route`.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    routes: Vec<(String, Expr)>,
}

impl RouteSpec {
    /// Every output's name and port: `_unmatched` on 0, then the routes.
    pub fn ports(&self) -> Vec<(String, usize)> {
        let mut ports = vec![(UNMATCHED.to_owned(), 0)];
        for (index, (name, _)) in self.routes.iter().enumerate() {
            ports.push((name.clone(), index + 1));
        }
        ports
    }
}

/// Checks `config` against `input`; every output has `input`'s schema.
pub fn build(config: &RouteConfig, input: &Schema) -> Result<(RouteSpec, Schema), OptionError> {
    if config.routes.is_empty() {
        return Err(OptionError::new("routes", "name at least one route"));
    }
    let mut routes = Vec::with_capacity(config.routes.len());
    for (name, condition) in &config.routes {
        let valid = !name.is_empty()
            && name != UNMATCHED
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            let message = format!(
                "route `{name}`: a route name is ASCII letters, digits, `_` or `-`, \
                 and not `{UNMATCHED}`"
            );
            return Err(OptionError::new("routes", message));
        }
        let condition = Expr::compile_condition(condition, input)
            .map_err(|error| OptionError::new("routes", format!("route `{name}`: {error}")))?;
        routes.push((name.clone(), condition));
    }
    Ok((RouteSpec { routes }, input.clone()))
}

/// The `route` operator.
#[derive(Debug)]
pub struct Route {
    spec: RouteSpec,
    scratch: Scratch,
    row: Row,
}

impl Route {
    /// An instance of `spec`.
    pub fn new(spec: RouteSpec) -> Route {
        Route {
            spec,
            scratch: Scratch::default(),
            row: Row::default(),
        }
    }
}

impl Processor for Route {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        // Unmatched records are copied only when someone reads them.
        let unmatched_read = out.has_port(0);
        for row in batch.iter() {
            let mut matched = false;
            let mut copied = false;
            for (index, (_, condition)) in self.spec.routes.iter().enumerate() {
                if condition.test(row, &mut self.scratch) {
                    if !copied {
                        row.copy_into(&mut self.row);
                        copied = true;
                    }
                    out.push_to(index + 1, &self.row);
                    matched = true;
                }
            }
            if !matched && unmatched_read {
                row.copy_into(&mut self.row);
                out.push_to(0, &self.row);
            }
        }
    }
}

impl Component for RouteConfig {
    /// Stateless: runs in a scaled-out pipeline.
    fn scales_out(&self) -> bool {
        true
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let (spec, output) = build(self, &context.schema())?;
        let outputs = route_outputs(spec.ports(), &output);
        Ok(Planned::new(outputs, spec))
    }

    fn outputs_despite_error(&self, input: &crate::row::SchemaRef) -> Option<Vec<Output>> {
        // Every branch carries the input's rows: the routes' names suffice.
        let mut ports = vec![(UNMATCHED.to_owned(), 0)];
        ports.extend(
            self.routes
                .keys()
                .enumerate()
                .map(|(index, name)| (name.clone(), index + 1)),
        );
        Some(route_outputs(ports, input))
    }
}

/// One output per named port, each carrying rows of `schema`.
fn route_outputs(ports: Vec<(String, usize)>, schema: &Schema) -> Vec<Output> {
    ports
        .into_iter()
        .map(|(name, port)| Output::side(&name, port, schema.clone()))
        .collect()
}

impl Node for RouteSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.processor(name, move |_| Route::new(spec.clone()));
        connect_forward(graph, name, inputs);
    }
}
