//! The pipeline configuration as Rust types.
//!
//! These types mirror the TOML file one to one: a `[runtime]` table and
//! three sections of named components, each component tagged by its `type`
//! (the section enums are the registry, `registry.rs`; each component's
//! config struct lives in the component's own file). They serialize, so a
//! configuration can be written back and read again unchanged.
//! [`parse`](super::parse) reads each component through its config struct
//! one at a time, which is what lets its errors name the component.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::limits::EPOCH_INTERVAL_DEFAULT_MS;

pub use super::registry::{ProcessorConfig, SinkConfig, SourceConfig};
use crate::component::Component;

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PipelineConfig {
    /// The `[runtime]` table.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// `[sources.NAME]` tables, by name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[processors.NAME]` tables, by name.
    #[serde(default)]
    pub processors: BTreeMap<String, ProcessorConfig>,
    /// `[sinks.NAME]` tables, by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
}

impl PipelineConfig {
    /// Every component as (section, name, component): sources, then
    /// processors, then sinks, each by name.
    pub(crate) fn components(&self) -> impl Iterator<Item = (&'static str, &str, &dyn Component)> {
        let sources = self
            .sources
            .iter()
            .map(|(name, c)| ("sources", name.as_str(), c.component()));
        let processors = self
            .processors
            .iter()
            .map(|(name, c)| ("processors", name.as_str(), c.component()));
        let sinks = self
            .sinks
            .iter()
            .map(|(name, c)| ("sinks", name.as_str(), c.component()));
        sources.chain(processors).chain(sinks)
    }
}

/// The `[runtime]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Shards to run; `None` means one per usable core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// Where the write-ahead logs live; `None` means the runner's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Milliseconds between two epochs (checkpoints).
    #[serde(default = "epoch_interval_ms_default")]
    pub epoch_interval_ms: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`), as
    /// `"IP:PORT"`; `None` serves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Serve `GET /tap` on the metrics endpoint (`weir tap`): samples of
    /// what a component emits. Off by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tap: bool,
    /// Let clients other than loopback use `/tap` (with `tap = true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tap_remote: bool,
    /// How many epochs one sink may leave unpublished on a shard (its
    /// receiver down, say) while the other sinks go on, before it takes no
    /// more input and backpressure reaches the sources; `None`: the
    /// runtime's default, 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_backlog_epochs: Option<usize>,
    /// How long a graceful stop may take before it gives up with the sink
    /// commits still pending (`"10s"`, `"1m"`); `None`: the runtime's
    /// default, 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<String>,
    /// Scale-out over Kafka (`docs/scale-out.md`): processes running this
    /// pipeline with the same `group` share the input partitions through
    /// this Kafka consumer group, and each publishes its epochs in one
    /// Kafka transaction with the offsets it consumed. `None`: one process
    /// reads every partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl RuntimeConfig {
    /// [`stop_timeout`](RuntimeConfig::stop_timeout) in milliseconds, if
    /// set (checked when the file was loaded).
    pub fn stop_timeout_ms(&self) -> Option<Result<u64, String>> {
        self.stop_timeout
            .as_deref()
            .map(crate::duration::parse_positive_ms)
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: None,
            data_dir: None,
            epoch_interval_ms: EPOCH_INTERVAL_DEFAULT_MS,
            metrics_listen: None,
            tap: false,
            tap_remote: false,
            sink_backlog_epochs: None,
            stop_timeout: None,
            group: None,
        }
    }
}

fn epoch_interval_ms_default() -> u64 {
    EPOCH_INTERVAL_DEFAULT_MS
}

/// A `file` sink: NDJSON or Parquet files, a shard's epochs rolled into
/// one file by age and size, published once their epochs commit; see
/// [`RowFileSink`](crate::sinks::RowFileSink).
pub type FileSinkConfig = crate::sinks::RowFileSinkConfig;

/// The format of a `file` sink.
pub type FileFormat = crate::sinks::RowFileFormat;
