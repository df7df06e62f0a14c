//! What the `kafka` source and sink share: the client options every
//! librdkafka handle gets ([`client_config`]) and how a librdkafka error
//! reads in weir's messages.
//!
//! Both components take `brokers` (librdkafka's `bootstrap.servers`) and
//! `options`, a table of librdkafka properties passed through as they are
//! (SASL, TLS, timeouts: `security.protocol`, `sasl.mechanism`,
//! `ssl.ca.location`, ...), as Vector's `librdkafka_options` does. The
//! properties weir sets itself for its guarantees (`enable.auto.commit`,
//! `isolation.level`, `transactional.id`, ...; [`RESERVED_OPTIONS`]) and
//! the ones a component has its own option for (`compression.type`)
//! cannot be given there. Weir's tuning defaults (`client.id`,
//! `linger.ms`, `partitioner`, `queued.max.messages.kbytes`,
//! `queued.min.messages`, `fetch.wait.max.ms`) are set before `options`,
//! so `options` overrides them.

use std::collections::BTreeMap;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

use crate::row::OptionError;

/// The options a component's `options` table may not set, because the
/// component sets them for its guarantees.
pub const RESERVED_OPTIONS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "isolation.level",
    "enable.partition.eof",
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "compression.type",
    "compression.codec",
];

/// Checks `brokers` and `options` (the component's option names are
/// `brokers` and `options`).
pub fn check_client(brokers: &str, options: &BTreeMap<String, String>) -> Result<(), OptionError> {
    if brokers.trim().is_empty() {
        return Err(OptionError::new(
            "brokers",
            "must list at least one broker, such as \"127.0.0.1:9092\"",
        ));
    }
    for key in options.keys() {
        if RESERVED_OPTIONS.contains(&key.as_str()) {
            return Err(OptionError::new(
                "options",
                format!("`{key}` is set by weir for exactly-once delivery and cannot be given"),
            ));
        }
    }
    // librdkafka checks names and values when a handle is made: make one
    // (a producer starts no connection before it has something to send).
    let config = client_config(brokers, &[("client.id", "weir-validate".into())], options);
    config
        .create::<rdkafka::producer::BaseProducer>()
        .map(drop)
        .map_err(|error| OptionError::new("options", error.to_string()))
}

/// A librdkafka configuration with `brokers`, weir's tuning `defaults`
/// (overridden by `options`), then `options`, and weir's logging
/// (librdkafka's log lines go to `tracing` at their level).
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, String)],
    options: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in defaults {
        config.set(*key, value);
    }
    for (key, value) in options {
        config.set(key, value);
    }
    config
}
