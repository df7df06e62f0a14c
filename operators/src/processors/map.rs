//! `map`: computes, renames and drops fields.
//!
//! ```toml
//! [processors.shape]
//! type = "map"
//! inputs = ["access"]
//! drop = ["user_agent"]
//! [processors.shape.set]
//! is_error = "status >= 500"
//! kb = "bytes / 1024"
//! [processors.shape.rename]
//! client_ip = "ip"
//! ```
//!
//! In order: every `set` expression is evaluated against the *input*
//! record (so `set` entries do not see each other) and stored in its field,
//! replacing a field of that name (whose type becomes the expression's) or
//! adding one at the end; then `rename` (old name → new name) renames
//! fields; then `drop` removes fields. A constant is an expression too:
//! `source = '"web"'` sets a string. Every name is checked against the
//! schema at build time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, Emitter, Processor};

use crate::component::{connect_forward, Component, Input, Node, Output, PlanContext, Planned};
use crate::expr::{Expr, Scratch};
use crate::row::{OptionError, Row, Schema};

/// A `map` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Components whose output this one reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Field → expression computing it.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Old field name → new field name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Fields to remove.
    #[serde(default)]
    pub drop: Vec<String>,
}

/// Where one output field comes from.
#[derive(Debug, Clone)]
enum FieldSource {
    Input(usize),
    Computed(usize),
}

/// A checked `map`.
#[derive(Debug, Clone)]
pub struct MapSpec {
    expressions: Vec<Expr>,
    fields: Vec<FieldSource>,
}

/// Checks `config` against `input` and returns the output schema.
pub fn build(config: &MapConfig, input: &Schema) -> Result<(MapSpec, Schema), OptionError> {
    if config.set.is_empty() && config.rename.is_empty() && config.drop.is_empty() {
        return Err(OptionError::new(
            "set",
            "a map needs at least one of `set`, `rename` or `drop`",
        ));
    }
    // (name, type, source), in output order.
    let mut fields: Vec<(String, crate::row::Type, FieldSource)> = input
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| (field.name.clone(), field.ty, FieldSource::Input(index)))
        .collect();
    let mut expressions = Vec::new();
    for (name, text) in &config.set {
        if name.is_empty() {
            return Err(OptionError::new("set", "a field name cannot be empty"));
        }
        let expr = Expr::compile(text, input)
            .map_err(|error| OptionError::new("set", format!("`{name}`: {error}")))?;
        let source = FieldSource::Computed(expressions.len());
        let ty = expr.ty();
        expressions.push(expr);
        match fields.iter_mut().find(|(field, _, _)| field == name) {
            Some(slot) => *slot = (name.clone(), ty, source),
            None => fields.push((name.clone(), ty, source)),
        }
    }
    for (old, new) in &config.rename {
        let Some(at) = fields.iter().position(|(field, _, _)| field == old) else {
            let schema = Schema::new(fields.iter().map(|(name, ty, _)| (name.clone(), *ty)));
            return Err(OptionError::new("rename", schema.lookup(old).unwrap_err()));
        };
        if old != new && fields.iter().any(|(field, _, _)| field == new) {
            let message = format!("cannot rename `{old}` to `{new}`: `{new}` exists already");
            return Err(OptionError::new("rename", message));
        }
        fields[at].0 = new.clone();
    }
    for name in &config.drop {
        let Some(at) = fields.iter().position(|(field, _, _)| field == name) else {
            let schema = Schema::new(fields.iter().map(|(name, ty, _)| (name.clone(), *ty)));
            return Err(OptionError::new("drop", schema.lookup(name).unwrap_err()));
        };
        fields.remove(at);
    }
    let schema = Schema::new(fields.iter().map(|(name, ty, _)| (name.clone(), *ty)));
    let spec = MapSpec {
        expressions,
        fields: fields.into_iter().map(|(_, _, source)| source).collect(),
    };
    Ok((spec, schema))
}

/// The `map` operator.
#[derive(Debug)]
pub struct Map {
    spec: MapSpec,
    scratch: Scratch,
    row: Row,
}

impl Map {
    /// An instance of `spec`.
    pub fn new(spec: MapSpec) -> Map {
        let width = spec.fields.len();
        Map {
            spec,
            scratch: Scratch::default(),
            row: Row::nulls(width),
        }
    }
}

impl Processor for Map {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            for (slot, source) in self.row.values.iter_mut().zip(&self.spec.fields) {
                match source {
                    FieldSource::Input(index) => row.get(*index).copy_into(slot),
                    FieldSource::Computed(index) => {
                        *slot = self.spec.expressions[*index].eval(row, &mut self.scratch);
                    }
                }
            }
            out.push(&self.row);
        }
    }
}

impl MapSpec {
    /// Output fields, for tests: how many there are.
    pub fn width(&self) -> usize {
        self.fields.len()
    }
}

impl Component for MapConfig {
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
}

impl Node for MapSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.processor(name, move |_| Map::new(spec.clone()));
        connect_forward(graph, name, inputs);
    }
}
