//! [`BlackholeSink`]: counts rows and drops them, for benchmarks.
//!
//! # Configuration
//! ```toml
//! [sinks.nowhere]
//! type = "blackhole"         # the integrator's tag; not part of this struct
//! inputs = ["parse"]
//! ```
//!
//! # Metrics
//! Each shard adds to its own cells (no shared write on the data path):
//! - `weir_blackhole_records_total{sink="NODE"}`: rows received;
//! - `weir_blackhole_bytes_total{sink="NODE"}`: bytes of the batches that
//!   carried them (archived rows, as they travel between shards).
//!
//! The same totals, summed over shards, are in the spec's
//! [`BlackholeTotals`] for tests and benchmarks that run without a metrics
//! endpoint (one relaxed atomic add per batch and total).
//!
//! It stages nothing, so it takes part in epochs without any effect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_runtime::metrics::ShardCounter;
use weir_runtime::{Batch, ShardContext, Sink};

use crate::component::{connect_forward, Component, Input, Node, PlanContext, Planned};
use crate::row::{OptionError, Row, Schema};

/// The configuration of a [`BlackholeSink`] (a `[sinks.NAME]` table
/// without its `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {
    /// Components whose output this one reads.
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// Rows and bytes a blackhole's instances received, summed over shards.
#[derive(Debug, Default)]
pub struct BlackholeTotals {
    /// Rows.
    pub records: AtomicU64,
    /// Bytes of the batches (archived rows).
    pub bytes: AtomicU64,
}

impl BlackholeTotals {
    /// Rows received so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Batch bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A checked [`BlackholeSinkConfig`]: clones share one
/// [`BlackholeTotals`].
#[derive(Debug, Clone, Default)]
pub struct BlackholeSpec {
    /// What every instance adds to.
    pub totals: Arc<BlackholeTotals>,
}

/// Makes the spec; any input schema is fine.
pub fn build(config: &BlackholeSinkConfig, input: &Schema) -> Result<BlackholeSpec, OptionError> {
    let _ = (config, input);
    Ok(BlackholeSpec::default())
}

/// Counts and drops rows; see the module docs.
#[derive(Debug)]
pub struct BlackholeSink {
    totals: Arc<BlackholeTotals>,
    records: ShardCounter,
    bytes: ShardCounter,
}

impl BlackholeSink {
    /// The sink of `context.shard`, registering its counters (labelled
    /// `sink = context.node`) in `context.metrics`.
    pub fn new(spec: BlackholeSpec, context: &ShardContext) -> BlackholeSink {
        let labels = [("sink", &*context.node)];
        let records = context
            .metrics
            .counter(
                "weir_blackhole_records",
                "Rows a blackhole sink received and dropped.",
                &labels,
            )
            .for_shard(context.shard);
        let bytes = context
            .metrics
            .counter(
                "weir_blackhole_bytes",
                "Bytes of the batches (archived rows) a blackhole sink received.",
                &labels,
            )
            .for_shard(context.shard);
        BlackholeSink {
            totals: spec.totals,
            records,
            bytes,
        }
    }
}

impl Sink for BlackholeSink {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        let (records, bytes) = (batch.len() as u64, batch.bytes_len() as u64);
        self.records.add(records);
        self.bytes.add(bytes);
        self.totals.records.fetch_add(records, Ordering::Relaxed);
        self.totals.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Component for BlackholeSinkConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let spec = build(self, &context.schema())?;
        Ok(Planned::new(Vec::new(), spec))
    }
}

impl Node for BlackholeSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.sink(name, move |context| {
            BlackholeSink::new(spec.clone(), context)
        });
        connect_forward(graph, name, inputs);
    }
}
