//! The registry: every component type a pipeline file may declare, one
//! line each: its section, its `type`, the config struct its table reads
//! into (which implements [`Component`]) and its variant in the section's
//! enum ([`SourceConfig`], [`ProcessorConfig`], [`SinkConfig`]).
//!
//! Everything else goes through [`Component`]: reading a table
//! (`document.rs`), planning (`plan.rs`) and building the graph
//! (`graph.rs`) loop over components and know none of them. Adding a
//! component is its own file (the config struct and its `Component`
//! implementation), one line here, its section in `docs/operators.md` and
//! its tests.
//!
//! A `type` may name two config structs told apart by a field the table
//! has (`when "field"`): the first line whose condition holds is taken.

use serde::de::DeserializeOwned;
use serde::ser::{Serialize, SerializeMap, Serializer};
use toml::de::{DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::{ConfigError, Source};

use crate::component::Component;

/// Declares a section's enum, and how a table of each `type` is read.
macro_rules! section {
    (
        $(#[$enum_doc:meta])*
        $section:ident: $enum:ident, $expected:literal {
            $(
                $(#[$doc:meta])*
                $variant:ident($ty:ty) = $kind:literal $(when $key:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$enum_doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum {
            $(
                $(#[$doc])*
                $variant($ty),
            )*
        }

        impl $enum {
            /// The `type` string.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $enum::$variant(_) => $kind, )*
                }
            }

            /// Components whose output it reads.
            pub fn inputs(&self) -> &[String] {
                self.component().inputs()
            }

            /// The component, to plan and build.
            pub(crate) fn component(&self) -> &dyn Component {
                match self {
                    $( $enum::$variant(config) => config, )*
                }
            }

            /// The `type`s this section takes, for errors.
            pub(crate) const EXPECTED: &'static str = $expected;

            /// Reads the table of a component of this section whose `type`
            /// is `kind`; `None` for an unknown `type`.
            pub(crate) fn read(
                kind: &str,
                body: toml::Spanned<toml::de::DeValue<'_>>,
                source: &super::error::Source<'_>,
                path: &str,
            ) -> Option<Result<$enum, super::ConfigError>> {
                let has = |field: &str| {
                    body.get_ref()
                        .as_table()
                        .is_some_and(|table| table.contains_key(field))
                };
                let _ = &has;
                $(
                    if kind == $kind $( && has($key) )? {
                        let config = deserialize::<$ty>(source, body, path);
                        return Some(config.map($enum::$variant));
                    }
                )*
                None
            }
        }

        impl Serialize for $enum {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( $enum::$variant(config) => tagged(serializer, $kind, config), )*
                }
            }
        }
    };
}

/// Deserializes one component (or `runtime`), naming it in errors.
pub(crate) fn deserialize<T: DeserializeOwned>(
    source: &Source<'_>,
    value: Spanned<DeValue<'_>>,
    component: &str,
) -> Result<T, ConfigError> {
    let span = value.span();
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|error| ConfigError::from_toml(source, &error, Some(component), span))
}

/// Writes `config` as a table with `type = kind` first: the form a
/// pipeline file has, so a written configuration reads back the same.
fn tagged<S: Serializer, T: Serialize>(
    serializer: S,
    kind: &str,
    config: &T,
) -> Result<S::Ok, S::Error> {
    let value = toml::Value::try_from(config).map_err(serde::ser::Error::custom)?;
    let table = value.as_table().cloned().unwrap_or_default();
    let mut map = serializer.serialize_map(Some(table.len() + 1))?;
    map.serialize_entry("type", kind)?;
    for (key, value) in &table {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

section! {
    /// A source component, by `type`.
    sources: SourceConfig, "`generator`, `nexmark`, `file`, `tcp`, `http`, `otlp`, `syslog` or `kafka`" {
        /// `type = "generator"` with `profile`: realistic rows (web access,
        /// logins, flows) with injected attacks.
        Profile(crate::sources::generator::ProfileGeneratorConfig) = "generator" when "profile",
        /// `type = "generator"` with `keys`: keyed events.
        Generator(crate::sources::generator::GeneratorConfig) = "generator",
        /// `type = "nexmark"`: the Nexmark benchmark's events.
        Nexmark(crate::sources::nexmark::NexmarkSourceConfig) = "nexmark",
        /// `type = "file"`: NDJSON or text lines from a file.
        File(crate::sources::file::FileSourceConfig) = "file",
        /// `type = "tcp"`: the native ingest protocol.
        Tcp(crate::sources::ingest::TcpSourceConfig) = "tcp",
        /// `type = "http"`: HTTP `POST` of NDJSON or JSON arrays.
        Http(crate::sources::ingest::HttpSourceConfig) = "http",
        /// `type = "otlp"`: OTLP/HTTP log exports, protobuf or JSON.
        Otlp(crate::sources::ingest::OtlpSourceConfig) = "otlp",
        /// `type = "syslog"`: RFC 5424 and RFC 3164 over TCP or UDP.
        Syslog(crate::sources::ingest::SyslogSourceConfig) = "syslog",
        /// `type = "kafka"`: Kafka topics, exactly once.
        Kafka(crate::sources::kafka::KafkaSourceConfig) = "kafka",
    }
}

section! {
    /// A processor component, by `type`.
    processors: ProcessorConfig,
        "one of `filter`, `map`, `route`, `parse`, `enrich`, `dedup`, `window`, `threshold`, `join`" {
        /// `type = "window"` with `size_ms`: the legacy form, planned as a
        /// tumbling row window with its legacy columns.
        Window(crate::processors::window::WindowConfig) = "window" when "size_ms",
        /// `type = "window"` with `size`, `slide` or `gap`: tumbling,
        /// sliding and session windows over rows.
        RowWindow(crate::processors::window::rows::RowWindowConfig) = "window",
        /// `type = "filter"`.
        Filter(crate::processors::filter::FilterConfig) = "filter",
        /// `type = "map"`.
        Map(crate::processors::map::MapConfig) = "map",
        /// `type = "route"`.
        Route(crate::processors::route::RouteConfig) = "route",
        /// `type = "join"`.
        Join(crate::processors::join::JoinConfig) = "join",
        /// `type = "threshold"`.
        Threshold(crate::processors::threshold::ThresholdConfig) = "threshold",
        /// `type = "parse"`.
        Parse(crate::processors::parse::ParseConfig) = "parse",
        /// `type = "enrich"`.
        Enrich(crate::processors::enrich::EnrichConfig) = "enrich",
        /// `type = "dedup"`.
        Dedup(crate::processors::dedup::DedupConfig) = "dedup",
    }
}

section! {
    /// A sink component, by `type`.
    sinks: SinkConfig,
        "one of `file`, `stdout`, `blackhole`, `webhook`, `postgres`, `prometheus`, `kafka`" {
        /// `type = "file"`.
        File(crate::sinks::RowFileSinkConfig) = "file",
        /// `type = "prometheus"`: window rows as gauges on the metrics
        /// endpoint.
        Prometheus(crate::sinks::prometheus::PrometheusSinkConfig) = "prometheus",
        /// `type = "stdout"`: NDJSON lines on standard output.
        Stdout(crate::sinks::StdoutSinkConfig) = "stdout",
        /// `type = "blackhole"`: counts records and drops them.
        Blackhole(crate::sinks::BlackholeSinkConfig) = "blackhole",
        /// `type = "webhook"`: batched HTTP POSTs with idempotency keys.
        Webhook(crate::sinks::webhook::WebhookSinkConfig) = "webhook",
        /// `type = "postgres"`: rows and the epoch in one transaction.
        Postgres(crate::sinks::postgres::PostgresSinkConfig) = "postgres",
        /// `type = "kafka"`: a Kafka topic, in one transaction per shard
        /// and epoch.
        Kafka(crate::sinks::kafka::KafkaSinkConfig) = "kafka",
    }
}
