//! The `tcp`, `http`, `otlp` and `syslog` source components: their options
//! ([`IngestConfig`]), checked into an [`IngestSource`]'s settings.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::rows::{self, EventRows};
use super::{IngestSource, Mesh};
use crate::component::{Component, Input, Node, Output, PlanContext, Planned};
use crate::row::{FieldTypes, OptionError};
use crate::sources::events::event_schema;
use crate::sources::ingest::event::IngestEvent;
use crate::sources::ingest::json_events::{JsonFormat, TimestampFormat};
use crate::sources::ingest::Watermarks;

/// Which ingest source a table configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `type = "tcp"`.
    Tcp,
    /// `type = "http"`.
    Http,
    /// `type = "syslog"`.
    Syslog,
    /// `type = "otlp"`.
    Otlp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Syslog => "syslog",
            Kind::Otlp => "otlp",
        }
    }
}

/// What an `http` source's events are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// Any JSON object per event (log shippers).
    Json,
    /// weir's own: `key`, `ts` (ms), `sent_ns`.
    Weir,
}
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
    /// Replaced by `max_out_of_orderness` (kept to say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_delay_ms: Option<u64>,
    /// `data` (from event times) or `wall_clock`; default `data` for
    /// `http` with `format = "json"`, `wall_clock` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Watermarks>,
    /// How far the watermark trails the largest event time (or the wall
    /// clock): a duration, default `"2s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_out_of_orderness: Option<String>,
    /// How long an instance goes without events before it stops holding
    /// data watermarks back: a duration, default `"10s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_idle_timeout: Option<String>,
    /// `http` only: `json` (any JSON object per event; the default) or
    /// `weir` (`key`, `ts`, `sent_ns`: what the load generator sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<HttpFormat>,
    /// `http` with `format = "json"`: the member that is the event's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_field: Option<String>,
    /// `http` with `format = "json"`: the member that is the event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_field: Option<String>,
    /// How `timestamp_field` is written (default `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_format: Option<TimestampFormat>,
    /// `http` with `format = "json"`: typed fields read into the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<FieldTypes>,
    /// `syslog` only: `tcp` (the default) or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::sources::ingest::syslog::SyslogMode>,
    /// `syslog` only: the longest message (default 102400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<usize>,
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
    /// TLS on the listener: `{ cert, key, client_ca }` (PEM files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::sources::ingest::tls::TlsConfig>,
}

impl IngestConfig {
    /// The settings of source `name`; an error names the field.
    pub fn to_source(
        &self,
        kind: Kind,
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
        self.watermarks(kind, &mut options)?;
        options.retry_after_ms = self.retry_after_ms.unwrap_or(options.retry_after_ms);
        let protocol = self.protocol(kind)?;
        if let Some(tls) = &self.tls {
            if let crate::sources::ingest::Protocol::Syslog(syslog) = &protocol {
                if syslog.mode == crate::sources::ingest::syslog::SyslogMode::Udp {
                    return Err((
                        "tls",
                        "`tls` applies to `mode = \"tcp\"` only: syslog over UDP has no TLS".into(),
                    ));
                }
            }
            options.tls = Some(tls.server().map_err(|error| ("tls", error))?);
        }
        check_request_limit(&protocol, name)?;
        self.limits(&mut options.limits);
        options.limits.check(protocol.request_bytes_max())?;
        Ok((protocol, options))
    }

    /// The watermark options, over the defaults.
    fn watermarks(
        &self,
        kind: Kind,
        options: &mut crate::sources::ingest::IngestOptions,
    ) -> Result<(), (&'static str, String)> {
        if let Some(ms) = self.watermark_delay_ms {
            return Err((
                "watermark_delay_ms",
                format!(
                    "`watermark_delay_ms` is replaced by `max_out_of_orderness`: write \
                     `watermark = \"wall_clock\"` and `max_out_of_orderness = \"{ms}ms\"`"
                ),
            ));
        }
        let json = kind == Kind::Otlp
            || kind == Kind::Http && self.format.unwrap_or(HttpFormat::Json) == HttpFormat::Json;
        options.watermarks = self.watermark.unwrap_or(if json {
            Watermarks::Data
        } else {
            Watermarks::WallClock
        });
        if let Some(text) = &self.max_out_of_orderness {
            options.max_out_of_orderness_ms =
                crate::duration::parse_ms(text).map_err(|error| ("max_out_of_orderness", error))?;
        }
        if let Some(text) = &self.watermark_idle_timeout {
            if options.watermarks != Watermarks::Data {
                return Err((
                    "watermark_idle_timeout",
                    "`watermark_idle_timeout` applies to `watermark = \"data\"` only".into(),
                ));
            }
            options.watermark_idle_timeout_ms = crate::duration::parse_positive_ms(text)
                .map_err(|error| ("watermark_idle_timeout", error))?;
        }
        Ok(())
    }

    /// `format = "json"`'s options, checked; `None` for the weir format.
    fn json_format(&self) -> Result<Option<JsonFormat>, (&'static str, String)> {
        if self.format == Some(HttpFormat::Weir) {
            for (field, set) in [
                ("key_field", self.key_field.is_some()),
                ("timestamp_field", self.timestamp_field.is_some()),
                ("timestamp_format", self.timestamp_format.is_some()),
                ("schema", self.schema.is_some()),
            ] {
                if set {
                    let message = format!("`{field}` applies to `format = \"json\"` only");
                    return Err((field, message));
                }
            }
            return Ok(None);
        }
        if self.timestamp_format.is_some() && self.timestamp_field.is_none() {
            return Err((
                "timestamp_format",
                "`timestamp_format` needs `timestamp_field`".into(),
            ));
        }
        for (field, value) in [
            ("key_field", &self.key_field),
            ("timestamp_field", &self.timestamp_field),
        ] {
            if value.as_deref() == Some("") {
                return Err((field, format!("`{field}` is empty")));
            }
        }
        let fields = match &self.schema {
            Some(schema) => schema.typed().map_err(|error| ("schema", error))?,
            None => Vec::new(),
        };
        Ok(Some(JsonFormat {
            key_field: self.key_field.clone(),
            timestamp_field: self.timestamp_field.clone(),
            timestamp_format: self.timestamp_format.unwrap_or_default(),
            fields,
        }))
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
        kind: Kind,
    ) -> Result<crate::sources::ingest::Protocol, (&'static str, String)> {
        use crate::sources::ingest::{
            http::HttpOptions, syslog::SyslogOptions, tcp::TcpOptions, Protocol,
        };
        // Each option, and the sources it applies to.
        let owned: [(&'static str, bool, &[Kind]); 11] = [
            (
                "max_frame_bytes",
                self.max_frame_bytes.is_some(),
                &[Kind::Tcp],
            ),
            ("path", self.path.is_some(), &[Kind::Http, Kind::Otlp]),
            ("token", self.token.is_some(), &[Kind::Http, Kind::Otlp]),
            (
                "body_limit_bytes",
                self.body_limit_bytes.is_some(),
                &[Kind::Http, Kind::Otlp],
            ),
            ("format", self.format.is_some(), &[Kind::Http]),
            ("key_field", self.key_field.is_some(), &[Kind::Http]),
            (
                "timestamp_field",
                self.timestamp_field.is_some(),
                &[Kind::Http],
            ),
            (
                "timestamp_format",
                self.timestamp_format.is_some(),
                &[Kind::Http],
            ),
            ("schema", self.schema.is_some(), &[Kind::Http]),
            ("mode", self.mode.is_some(), &[Kind::Syslog]),
            (
                "max_message_bytes",
                self.max_message_bytes.is_some(),
                &[Kind::Syslog],
            ),
        ];
        for (field, set, kinds) in owned {
            if set && !kinds.contains(&kind) {
                let owners: Vec<&str> = kinds.iter().map(|kind| kind.name()).collect();
                let message = format!(
                    "`{field}` applies to `{}` sources only, not `{}`",
                    owners.join("`, `"),
                    kind.name()
                );
                return Err((field, message));
            }
        }
        let protocol = match kind {
            Kind::Http | Kind::Otlp => {
                let mut http = HttpOptions::default();
                if kind == Kind::Otlp {
                    http.path = "/v1/logs".into();
                    http.otlp = true;
                    http.json = Some(Arc::new(crate::sources::ingest::http::otlp::format()));
                } else {
                    http.json = self.json_format()?.map(Arc::new);
                }
                if let Some(path) = &self.path {
                    if !path.starts_with('/') {
                        return Err(("path", format!("`path = \"{path}\"` must start with `/`")));
                    }
                    http.path = path.clone();
                }
                http.token = self.token.clone();
                http.body_limit_bytes = self.body_limit_bytes.unwrap_or(http.body_limit_bytes);
                Protocol::Http(http)
            }
            Kind::Tcp => {
                let mut tcp = TcpOptions::default();
                tcp.max_frame_bytes = self.max_frame_bytes.unwrap_or(tcp.max_frame_bytes);
                Protocol::Tcp(tcp)
            }
            Kind::Syslog => {
                let mut syslog = SyslogOptions::default();
                syslog.mode = self.mode.unwrap_or(syslog.mode);
                if self.max_message_bytes == Some(0) {
                    return Err((
                        "max_message_bytes",
                        "`max_message_bytes` must be positive".into(),
                    ));
                }
                syslog.max_message_bytes =
                    self.max_message_bytes.unwrap_or(syslog.max_message_bytes);
                Protocol::Syslog(syslog)
            }
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
        crate::sources::ingest::Protocol::Syslog(syslog) => {
            ("max_message_bytes", syslog.max_message_bytes)
        }
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

/// An `otlp` source's table: [`IngestConfig`] of OTLP/HTTP log exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OtlpSourceConfig(pub IngestConfig);

impl Component for OtlpSourceConfig {
    fn check(&self, name: &str) -> Result<(), OptionError> {
        self.0.plan_source(Kind::Otlp, name).map(drop)
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        self.0.plan_source(Kind::Otlp, context.name)
    }
}

/// An ingest source's checked settings: its node.
struct IngestNode {
    protocol: super::Protocol,
    options: super::IngestOptions,
    /// How its rows are made.
    layout: rows::Layout,
}

impl IngestConfig {
    /// Plans source `name` of this protocol: its events are read as rows of
    /// [`event_schema`] from its `NAME:rows` node.
    fn plan_source(&self, kind: Kind, name: &str) -> Result<Planned, OptionError> {
        let (protocol, options) = self
            .to_source(kind, name)
            .map_err(|(option, message)| OptionError::new(option, message))?;
        let json = match &protocol {
            crate::sources::ingest::Protocol::Http(http) => http.json.clone(),
            _ => None,
        };
        // An `otlp` source's lines are weir's own: none can be dead.
        let dead_letters = json.is_some() && kind != Kind::Otlp;
        let syslog = matches!(protocol, crate::sources::ingest::Protocol::Syslog(_));
        let layout = json.as_deref().map(rows::JsonLayout::new);
        let schema = match (&layout, syslog) {
            (Some(layout), _) => layout.schema.clone(),
            (None, true) => rows::syslog_schema(),
            (None, false) => event_schema(),
        };
        let node_name = rows::node_name(name);
        let mut outputs = vec![Output::rows(schema).from_node(node_name.clone())];
        if dead_letters {
            outputs.push(
                Output::side(crate::component::DEAD_LETTER, 1, rows::dead_letter_schema())
                    .from_node(node_name),
            );
        }
        let layout = match json.zip(layout) {
            Some(json) => rows::Layout::Json(Arc::new(json)),
            None if syslog => rows::Layout::Syslog,
            None => rows::Layout::Events,
        };
        let node = IngestNode {
            protocol,
            options,
            layout,
        };
        Ok(Planned::new(outputs, node))
    }
}

impl Component for TcpSourceConfig {
    fn check(&self, name: &str) -> Result<(), OptionError> {
        self.0.plan_source(Kind::Tcp, name).map(drop)
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        self.0.plan_source(Kind::Tcp, context.name)
    }
}

impl Component for HttpSourceConfig {
    fn check(&self, name: &str) -> Result<(), OptionError> {
        self.0.plan_source(Kind::Http, name).map(drop)
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        self.0.plan_source(Kind::Http, context.name)
    }
}

/// A `syslog` source's table: [`IngestConfig`] with `mode` and
/// `max_message_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SyslogSourceConfig(pub IngestConfig);

impl Component for SyslogSourceConfig {
    fn check(&self, name: &str) -> Result<(), OptionError> {
        self.0.plan_source(Kind::Syslog, name).map(drop)
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        self.0.plan_source(Kind::Syslog, context.name)
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
        let layout = self.layout.clone();
        graph.processor(&rows, move |context| {
            EventRows::new(context, layout.clone())
        });
        graph.connect::<IngestEvent>(name, &rows, Partition::Forward);
    }
}
