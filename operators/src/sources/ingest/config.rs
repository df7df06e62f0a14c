//! The `tcp` and `http` source components: their options
//! ([`IngestConfig`]), checked into an [`IngestSource`]'s settings.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::rows::{self, EventRows};
use super::{IngestSource, Mesh};
use crate::component::{Component, Input, Node, Output, PlanContext, Planned};
use crate::row::OptionError;
use crate::sources::events::event_schema;
use crate::sources::ingest::event::IngestEvent;
use weir_runtime::Partition;

/// A network ingest source (`tcp` or `http`); see
/// [`IngestSource`](crate::sources::ingest::IngestSource).
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
    ) -> Result<
        (
            crate::sources::ingest::Protocol,
            crate::sources::ingest::IngestOptions,
        ),
        (&'static str, String),
    > {
        use crate::sources::ingest::IngestOptions;
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
    fn limits(&self, limits: &mut crate::sources::ingest::limits::ListenerLimits) {
        limits.connections_max = self.connections_max.unwrap_or(limits.connections_max);
        limits.header_timeout_ms = self.header_timeout_ms.unwrap_or(limits.header_timeout_ms);
        limits.read_timeout_ms = self.read_timeout_ms.unwrap_or(limits.read_timeout_ms);
        limits.idle_timeout_ms = self.idle_timeout_ms.unwrap_or(limits.idle_timeout_ms);
        limits.read_budget_bytes = self.read_budget_bytes.unwrap_or(limits.read_budget_bytes);
    }

    /// The protocol's own settings; options of the other protocol are
    /// refused.
    fn protocol(
        &self,
        http: bool,
    ) -> Result<crate::sources::ingest::Protocol, (&'static str, String)> {
        use crate::sources::ingest::{http::HttpOptions, tcp::TcpOptions, Protocol};
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
    protocol: &crate::sources::ingest::Protocol,
    name: &str,
) -> Result<(), (&'static str, String)> {
    let max = crate::sources::ingest::limits::payload_bytes_max(name);
    let (option, limit) = match protocol {
        crate::sources::ingest::Protocol::Http(http) => ("body_limit_bytes", http.body_limit_bytes),
        crate::sources::ingest::Protocol::Tcp(tcp) => {
            ("max_frame_bytes", tcp.max_frame_bytes as usize)
        }
    };
    if limit <= max {
        return Ok(());
    }
    let message = format!(
        "`{option} = {limit}` is more than one write-ahead log record holds for source \
         `{name}`: at most {max} bytes (16 MiB less {} bytes of record headers)",
        weir_runtime::limits::INTAKE_RECORD_MAX_BYTES - max
    );
    Err((option, message))
}

/// A `tcp` source's table: [`IngestConfig`] of the native protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TcpSourceConfig(pub IngestConfig);

/// An `http` source's table: [`IngestConfig`] of HTTP ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HttpSourceConfig(pub IngestConfig);

impl std::ops::Deref for TcpSourceConfig {
    type Target = IngestConfig;

    fn deref(&self) -> &IngestConfig {
        &self.0
    }
}

impl std::ops::Deref for HttpSourceConfig {
    type Target = IngestConfig;

    fn deref(&self) -> &IngestConfig {
        &self.0
    }
}

/// An ingest source's checked settings: its node.
struct IngestNode {
    protocol: super::Protocol,
    options: super::IngestOptions,
}

impl IngestConfig {
    /// Plans source `name` of this protocol: its events are read as rows of
    /// [`event_schema`] from its `NAME:rows` node.
    fn plan_source(&self, http: bool, name: &str) -> Result<Planned, OptionError> {
        let (protocol, options) = self
            .to_source(http, name)
            .map_err(|(option, message)| OptionError::new(option, message))?;
        let node = IngestNode { protocol, options };
        let rows = Output::rows(event_schema()).from_node(rows::node_name(name));
        Ok(Planned::new(vec![rows], node))
    }
}

impl Component for TcpSourceConfig {
    fn check(&self, name: &str) -> Result<(), OptionError> {
        self.0.plan_source(false, name).map(drop)
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        self.0.plan_source(false, context.name)
    }
}

impl Component for HttpSourceConfig {
    fn check(&self, name: &str) -> Result<(), OptionError> {
        self.0.plan_source(true, name).map(drop)
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        self.0.plan_source(true, context.name)
    }
}

impl Node for IngestNode {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, _inputs: &[Input]) {
        let (protocol, options) = (self.protocol.clone(), self.options.clone());
        // One mesh per source, shared by its instances.
        let mesh = Arc::new(OnceLock::new());
        graph.source(name, move |context| {
            let mesh = mesh.get_or_init(|| Arc::new(Mesh::new(context.instances, &options.limits)));
            IngestSource::new(protocol.clone(), options.clone(), context, mesh.clone())
        });
        let rows = rows::node_name(name);
        graph.processor(&rows, EventRows::new);
        graph.connect::<IngestEvent>(name, &rows, Partition::Forward);
    }
}
