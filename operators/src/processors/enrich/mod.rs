//! The `enrich` processor: adds columns from a lookup table to each record,
//! joined on one field.
//!
//! ```toml
//! [processors.geo]
//! type = "enrich"
//! inputs = ["access"]
//! field = "client_ip"            # the join key in the input
//! table = "data/networks.csv"    # CSV, or JSON / NDJSON
//! format = "csv"                 # default: from the extension
//! key = "network"                # the table's key column
//! match = "cidr"                 # "exact" (default) or "cidr"
//! columns = ["country", { name = "asn", type = "int" }]
//! prefix = "geo_"                # output names: geo_country, geo_asn
//! ```
//!
//! # The table
//! Loaded once, when the pipeline is built, and shared read-only by every
//! shard; a problem in it is a build error naming the file and the line
//! (`networks.csv:7: ...`) or, for a JSON array, the element.
//! - `csv`: a header row names the columns; every row has as many fields.
//!   An empty cell is null.
//! - `json`: a JSON array of objects, or NDJSON (one object per line; blank
//!   lines skipped); members are the columns, a missing member is null.
//!
//! `format` defaults from the extension: `.csv` is CSV; `.json`, `.ndjson`
//! and `.jsonl` are JSON. In a pipeline file, a relative `table` path is
//! resolved against the file's directory ([`crate::config::load_all`]);
//! given to [`build`] directly, it is opened relative to the working
//! directory.
//!
//! `columns` lists the table columns to add, as a name (a `string`
//! column) or `{ name, type }`; left out, every column but the key is added
//! as a string (CSV header order; JSON in member-name order). Values convert
//! from text as `parse` converts them (`list` and `map` columns need JSON).
//!
//! # Matching
//! - `exact`: the table's key converts to the input field's type (`string`,
//!   `int`, `timestamp`, `bool` or `ip`) and a record matches the row with
//!   an equal key. Two rows with one key are an error.
//! - `cidr`: the input field is an `ip`; the key column holds networks
//!   (`10.0.0.0/8`, `2001:db8::/32`, or a bare address for a single host) and
//!   a record matches the most specific network containing its address
//!   (longest prefix). IPv4 and IPv6 networks share one table: IPv4 is
//!   IPv4-mapped, so `::/0` matches IPv4 addresses too. A network with host
//!   bits set (`10.0.0.1/8`) or given twice is an error. The lookup probes
//!   one hash map per prefix length present in the table, longest first.
//!
//! # Output
//! The input schema plus one field per column, named `prefix + column`, in
//! `columns` order; null when no row matches (or the key is null). A name
//! that collides with an input field is a config error (set `prefix`).

mod cidr;
mod config;
mod load;
mod spec;
mod table;

#[cfg(test)]
mod tests;

use weir_runtime::{Batch, Emitter, Processor, ShardContext};

use crate::component::{connect_forward, Component, Input, Node, Output, PlanContext, Planned};
use crate::row::convert::{assign_value, copy_row};
use crate::row::{ArchivedRow, OptionError, Row, Value};

pub use config::{ColumnConfig, EnrichConfig, MatchKind, TableFormat, TypedColumn};
pub use spec::{build, EnrichSpec};

/// The `enrich` operator; see the module docs.
#[derive(Debug)]
pub struct Enrich {
    spec: EnrichSpec,
    /// The output row, reused.
    out: Row,
}

impl Enrich {
    /// An enricher for `spec` (sharing its table).
    pub fn new(spec: EnrichSpec, context: &ShardContext) -> Enrich {
        let _ = context;
        Enrich::bare(spec)
    }

    fn bare(spec: EnrichSpec) -> Enrich {
        Enrich {
            out: Row::nulls(spec.output_width),
            spec,
        }
    }

    /// Fills `self.out` from `row` and its match.
    #[inline]
    fn apply(&mut self, row: &ArchivedRow) {
        let spec = &self.spec;
        let values = &mut self.out.values;
        copy_row(values, row, spec.input_width);
        values.resize(spec.output_width, Value::Null);
        match spec.table.lookup(row.get(spec.field)) {
            Some(found) => {
                for (&out, value) in spec.outs.iter().zip(found) {
                    assign_value(&mut values[out], value);
                }
            }
            None => {
                for &out in &spec.outs {
                    values[out] = Value::Null;
                }
            }
        }
    }
}

impl Processor for Enrich {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            self.apply(row);
            out.push(&self.out);
        }
    }
}

impl Component for EnrichConfig {
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

impl Node for EnrichSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.processor(name, move |context| Enrich::new(spec.clone(), context));
        connect_forward(graph, name, inputs);
    }
}
