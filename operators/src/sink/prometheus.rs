//! [`PrometheusSink`]: the `prometheus` sink of pipeline files.
//!
//! Exposes the rows of a window as Prometheus gauges on the runtime's
//! metrics endpoint (`[runtime] metrics_listen`), for dashboards: with
//! `name = "logins_per_user"`, each row of a closed window sets, for its key,
//!
//! - `weir_logins_per_user{sink="...",key="...",aggregate="count"}`: the
//!   row's `count`, and with `aggregate="sum"` its `sum`;
//! - `weir_logins_per_user_window_end_seconds{sink="...",key="..."}`: the end of the
//!   row's window, so a dashboard can tell a fresh value from a stale one (a
//!   key absent from the latest window keeps its last value).
//!
//! Every key becomes its own series, kept for the life of the process: use
//! the sink for groupings with a bounded number of keys (statuses,
//! services, countries), not for user ids or IP addresses.
//!
//! A gauge shows the latest closed window of its key. Rows reach the sink
//! when windows close, before their epoch commits, and a row replayed after
//! a crash sets the same value again: setting is idempotent, so the gauges
//! converge on the committed rows. Each key's rows come from one shard (the
//! window partitions by key), so every gauge has one writer.

use std::collections::HashMap;

use weir_runtime::metrics::{Gauge, Registry};
use weir_runtime::{Batch, ShardContext, Sink};

use super::file::WindowRow;
use weir_runtime::Partition;

use crate::component::{Component, Input, Node, PlanContext, Planned, Reads};
use crate::row::OptionError;

/// The three gauges of one key.
#[derive(Debug)]
struct KeyGauges {
    count: Gauge,
    sum: Gauge,
    window_end: Gauge,
}

/// Sets gauges from window rows; see the module docs.
#[derive(Debug)]
pub struct PrometheusSink {
    registry: Registry,
    /// `weir_<name>`.
    prefix: String,
    sink: String,
    shard: usize,
    keys: HashMap<String, KeyGauges>,
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
    /// The instance for `context`'s shard; `name` must be
    /// [`valid_name`] (the config checks it).
    pub fn new(name: &str, context: &ShardContext) -> PrometheusSink {
        PrometheusSink {
            registry: context.metrics.clone(),
            prefix: format!("weir_{name}"),
            sink: context.node.to_string(),
            shard: context.shard,
            keys: HashMap::new(),
        }
    }

    fn gauges(&mut self, key: &str) -> &KeyGauges {
        if !self.keys.contains_key(key) {
            let help = "An aggregate of the latest closed window of the key.";
            let aggregate = |aggregate: &str| {
                let labels = [
                    ("sink", self.sink.as_str()),
                    ("key", key),
                    ("aggregate", aggregate),
                ];
                self.registry.summed_gauge(&self.prefix, help, &labels)
            };
            let labels = [("sink", self.sink.as_str()), ("key", key)];
            let gauges = KeyGauges {
                count: aggregate("count"),
                sum: aggregate("sum"),
                window_end: self.registry.summed_gauge(
                    &format!("{}_window_end_seconds", self.prefix),
                    "End of the latest closed window of the key, in seconds since the Unix epoch.",
                    &labels,
                ),
            };
            self.keys.insert(key.to_string(), gauges);
        }
        &self.keys[key]
    }
}

impl Sink for PrometheusSink {
    type Input = WindowRow;

    fn write(&mut self, _port: usize, batch: &Batch<WindowRow>) {
        let shard = self.shard;
        for row in batch.iter() {
            let gauges = self.gauges(row.key.as_str());
            gauges.count.set(shard, row.count.to_native() as i64);
            gauges.sum.set(shard, row.sum.to_native() as i64);
            gauges
                .window_end
                .set(shard, (row.window_end_ms.to_native() / 1000) as i64);
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
}

impl Component for PrometheusSinkConfig {
    fn reads(&self) -> Reads {
        Reads::WindowRows
    }

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

    fn plan(&self, _context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        Ok(Planned::new(Vec::new(), self.clone()))
    }
}

impl Node for PrometheusSinkConfig {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let metric = self.name.clone();
        graph.sink(name, move |context| PrometheusSink::new(&metric, context));
        for input in inputs {
            graph.connect_port::<WindowRow>(&input.node, input.port, name, Partition::Forward);
        }
    }
}
