//! The pipeline configuration as Rust types.
//!
//! These types mirror the TOML file one to one: a `[runtime]` table and
//! three sections of named components, each component tagged by its `type`.
//! They derive both `Deserialize` (with `deny_unknown_fields`) and
//! `Serialize`, so a configuration can be written back and read again
//! unchanged. [`parse`](super::parse) reads each component through these
//! types one at a time, which is what lets its errors name the component.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default of [`RuntimeConfig::epoch_interval_ms`].
pub const EPOCH_INTERVAL_MS_DEFAULT: u64 = 100;

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// How long a graceful stop may take before it gives up with the sink
    /// commits still pending (`"10s"`, `"1m"`); `None`: the runtime's
    /// default, 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<String>,
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
            epoch_interval_ms: EPOCH_INTERVAL_MS_DEFAULT,
            metrics_listen: None,
            stop_timeout: None,
        }
    }
}

fn epoch_interval_ms_default() -> u64 {
    EPOCH_INTERVAL_MS_DEFAULT
}

/// A source component, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// `type = "generator"` with `keys`: keyed events.
    Generator(GeneratorConfig),
    /// `type = "generator"` with `profile`: realistic rows (web access,
    /// logins, flows) with injected attacks.
    Profile(crate::generator::ProfileGeneratorConfig),
    /// `type = "file"`: NDJSON or text lines from a file.
    File(crate::source::file::FileSourceConfig),
    /// `type = "tcp"`: the native ingest protocol.
    Tcp(IngestConfig),
    /// `type = "http"`: HTTP `POST` of NDJSON or JSON arrays.
    Http(IngestConfig),
}

/// A network ingest source (`tcp` or `http`); see
/// [`IngestSource`](crate::ingest::IngestSource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// `host:port` every shard listens on.
    pub listen: String,
    /// Events queued per shard before requests are refused (429 /
    /// `Overloaded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_events: Option<usize>,
    /// How long a batch id is remembered for deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window_ms: Option<u64>,
    /// Batch ids remembered per shard at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_max_ids: Option<usize>,
    /// How far the watermark trails the wall clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_delay_ms: Option<u64>,
    /// The retry delay given with 429 / 503 / `Overloaded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// `tcp` only: the largest frame payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<u32>,
    /// `http` only: the path events are posted to (default `/events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `http` only: the bearer token requests must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `http` only: the largest body accepted (default 10 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit_bytes: Option<usize>,
    /// Connections one instance (shard) serves at once (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_max: Option<usize>,
    /// How long a request head or frame header may take (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout_ms: Option<u64>,
    /// How long a body or payload may go without a byte (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout_ms: Option<u64>,
    /// How long a connection with nothing in flight stays open (default
    /// 75 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Bytes of bodies and payloads the source holds at once (default
    /// 128 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_budget_bytes: Option<usize>,
}

impl IngestConfig {
    /// The settings of source `name`; an error names the field.
    pub fn to_source(
        &self,
        http: bool,
        name: &str,
    ) -> Result<(crate::ingest::Protocol, crate::ingest::IngestOptions), (&'static str, String)>
    {
        use crate::ingest::IngestOptions;
        let listen: std::net::SocketAddr = self.listen.parse().map_err(|error| {
            (
                "listen",
                format!(
                    "`listen = \"{}\"` is not a host:port address: {error}",
                    self.listen
                ),
            )
        })?;
        let mut options = IngestOptions::new(listen);
        let positive = |field: &'static str, value: Option<u64>| match value {
            Some(0) => Err((field, format!("`{field}` must be positive"))),
            _ => Ok(()),
        };
        positive("queue_events", self.queue_events.map(|v| v as u64))?;
        positive("dedup_max_ids", self.dedup_max_ids.map(|v| v as u64))?;
        positive("max_frame_bytes", self.max_frame_bytes.map(u64::from))?;
        positive("body_limit_bytes", self.body_limit_bytes.map(|v| v as u64))?;
        options.queue_events = self.queue_events.unwrap_or(options.queue_events);
        options.dedup_window_ms = self.dedup_window_ms.unwrap_or(options.dedup_window_ms);
        options.dedup_max_ids = self.dedup_max_ids.unwrap_or(options.dedup_max_ids);
        options.watermark_delay_ms = self
            .watermark_delay_ms
            .unwrap_or(options.watermark_delay_ms);
        options.retry_after_ms = self.retry_after_ms.unwrap_or(options.retry_after_ms);
        let protocol = self.protocol(http)?;
        check_request_limit(&protocol, name)?;
        self.limits(&mut options.limits);
        options.limits.check(protocol.request_bytes_max())?;
        Ok((protocol, options))
    }

    /// The listener limits set in the file, over the defaults.
    fn limits(&self, limits: &mut crate::ingest::limits::ListenerLimits) {
        limits.connections_max = self.connections_max.unwrap_or(limits.connections_max);
        limits.header_timeout_ms = self.header_timeout_ms.unwrap_or(limits.header_timeout_ms);
        limits.read_timeout_ms = self.read_timeout_ms.unwrap_or(limits.read_timeout_ms);
        limits.idle_timeout_ms = self.idle_timeout_ms.unwrap_or(limits.idle_timeout_ms);
        limits.read_budget_bytes = self.read_budget_bytes.unwrap_or(limits.read_budget_bytes);
    }

    /// The protocol's own settings; options of the other protocol are
    /// refused.
    fn protocol(&self, http: bool) -> Result<crate::ingest::Protocol, (&'static str, String)> {
        use crate::ingest::{http::HttpOptions, tcp::TcpOptions, Protocol};
        let protocol = if http {
            if self.max_frame_bytes.is_some() {
                return Err((
                    "max_frame_bytes",
                    "`max_frame_bytes` applies to `tcp` sources only".into(),
                ));
            }
            let mut http = HttpOptions::default();
            if let Some(path) = &self.path {
                if !path.starts_with('/') {
                    return Err(("path", format!("`path = \"{path}\"` must start with `/`")));
                }
                http.path = path.clone();
            }
            http.token = self.token.clone();
            http.body_limit_bytes = self.body_limit_bytes.unwrap_or(http.body_limit_bytes);
            Protocol::Http(http)
        } else {
            for (field, set) in [
                ("path", self.path.is_some()),
                ("token", self.token.is_some()),
                ("body_limit_bytes", self.body_limit_bytes.is_some()),
            ] {
                if set {
                    return Err((field, format!("`{field}` applies to `http` sources only")));
                }
            }
            let mut tcp = TcpOptions::default();
            tcp.max_frame_bytes = self.max_frame_bytes.unwrap_or(tcp.max_frame_bytes);
            Protocol::Tcp(tcp)
        };
        Ok(protocol)
    }
}

/// Refuses a body or frame limit above what one write-ahead log record of
/// source `name` holds: such a request could be read but never logged.
fn check_request_limit(
    protocol: &crate::ingest::Protocol,
    name: &str,
) -> Result<(), (&'static str, String)> {
    let max = crate::ingest::limits::payload_bytes_max(name);
    let (option, limit) = match protocol {
        crate::ingest::Protocol::Http(http) => ("body_limit_bytes", http.body_limit_bytes),
        crate::ingest::Protocol::Tcp(tcp) => ("max_frame_bytes", tcp.max_frame_bytes as usize),
    };
    if limit <= max {
        return Ok(());
    }
    let message = format!(
        "`{option} = {limit}` is more than one write-ahead log record holds for source \
         `{name}`: at most {max} bytes (16 MiB less {} bytes of record headers)",
        weir_runtime::intake::RECORD_BYTES_MAX - max
    );
    Err((option, message))
}

/// A processor component, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProcessorConfig {
    /// `type = "window"` with `size_ms`: tumbling counts over generator
    /// events.
    Window(WindowConfig),
    /// `type = "window"` with `size`, `slide` or `gap`: tumbling, sliding
    /// and session windows over rows.
    RowWindow(crate::window::rows::RowWindowConfig),
    /// `type = "filter"`.
    Filter(crate::transform::filter::FilterConfig),
    /// `type = "map"`.
    Map(crate::transform::map::MapConfig),
    /// `type = "route"`.
    Route(crate::transform::route::RouteConfig),
    /// `type = "threshold"`.
    Threshold(crate::transform::threshold::ThresholdConfig),
    /// `type = "parse"`.
    Parse(crate::process::parse::ParseConfig),
    /// `type = "enrich"`.
    Enrich(crate::process::enrich::EnrichConfig),
    /// `type = "dedup"`.
    Dedup(crate::process::dedup::DedupConfig),
}

/// A sink component, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// `type = "file"`.
    File(FileSinkConfig),
    /// `type = "prometheus"`: window rows as gauges on the metrics endpoint.
    Prometheus(PrometheusSinkConfig),
    /// `type = "stdout"`: NDJSON lines on standard output.
    Stdout(crate::sink::rows::StdoutSinkConfig),
    /// `type = "blackhole"`: counts records and drops them.
    Blackhole(crate::sink::rows::BlackholeSinkConfig),
    /// `type = "webhook"`: batched HTTP POSTs with idempotency keys.
    Webhook(crate::sink::webhook::WebhookSinkConfig),
    /// `type = "postgres"`: rows and the epoch in one transaction.
    Postgres(crate::sink::postgres::PostgresSinkConfig),
}

/// Exposes window rows as Prometheus gauges; see
/// [`PrometheusSink`](crate::sink::prometheus::PrometheusSink).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSinkConfig {
    /// Components whose output this one reads (windows).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The gauges are named `weir_<name>` (`[a-z_][a-z0-9_]*`).
    pub name: String,
}

/// A deterministic generator of keyed events; see
/// [`ConfigEvents`](crate::generator::ConfigEvents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Events over all shards; `None` means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The keys events are spread over.
    pub keys: Vec<String>,
    /// Event-time rate: event `id` has time
    /// `start_ms + id * 1000 / events_per_second`.
    pub events_per_second: u64,
    /// Event time of event 0, in milliseconds.
    #[serde(default)]
    pub start_ms: u64,
    /// Seed of the key choice.
    #[serde(default)]
    pub seed: u64,
    /// Wall-clock limit in events per second over all shards; `None` means
    /// as fast as possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
}

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

/// A `file` sink: NDJSON or Parquet files, one per shard and epoch,
/// published when the epoch commits; see
/// [`RowFileSink`](crate::sink::rows::RowFileSink). Generator events and
/// `size_ms` window rows are written as NDJSON by
/// [`FileSink`](crate::sink::file::FileSink).
pub type FileSinkConfig = crate::sink::rows::RowFileSinkConfig;

/// The format of a `file` sink.
pub type FileFormat = crate::sink::rows::RowFileFormat;

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

impl SourceConfig {
    /// The `type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Generator(_) | SourceConfig::Profile(_) => "generator",
            SourceConfig::File(_) => "file",
            SourceConfig::Tcp(_) => "tcp",
            SourceConfig::Http(_) => "http",
        }
    }
}

impl ProcessorConfig {
    /// The `type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessorConfig::Window(_) | ProcessorConfig::RowWindow(_) => "window",
            ProcessorConfig::Filter(_) => "filter",
            ProcessorConfig::Map(_) => "map",
            ProcessorConfig::Route(_) => "route",
            ProcessorConfig::Threshold(_) => "threshold",
            ProcessorConfig::Parse(_) => "parse",
            ProcessorConfig::Enrich(_) => "enrich",
            ProcessorConfig::Dedup(_) => "dedup",
        }
    }

    /// Components whose output it reads.
    pub fn inputs(&self) -> &[String] {
        match self {
            ProcessorConfig::Window(window) => &window.inputs,
            ProcessorConfig::RowWindow(window) => &window.inputs,
            ProcessorConfig::Filter(config) => &config.inputs,
            ProcessorConfig::Map(config) => &config.inputs,
            ProcessorConfig::Route(config) => &config.inputs,
            ProcessorConfig::Threshold(config) => &config.inputs,
            ProcessorConfig::Parse(config) => &config.inputs,
            ProcessorConfig::Enrich(config) => &config.inputs,
            ProcessorConfig::Dedup(config) => &config.inputs,
        }
    }
}

impl SinkConfig {
    /// The `type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Prometheus(_) => "prometheus",
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Blackhole(_) => "blackhole",
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Postgres(_) => "postgres",
        }
    }

    /// Components whose output it reads.
    pub fn inputs(&self) -> &[String] {
        match self {
            SinkConfig::File(file) => &file.inputs,
            SinkConfig::Prometheus(prometheus) => &prometheus.inputs,
            SinkConfig::Stdout(config) => &config.inputs,
            SinkConfig::Blackhole(config) => &config.inputs,
            SinkConfig::Webhook(config) => &config.inputs,
            SinkConfig::Postgres(config) => &config.inputs,
        }
    }
}
