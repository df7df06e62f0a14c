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

use crate::row::{write_json_value, ArchivedRow, ArchivedValue, OptionError};

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

/// The key a `kafka` sink gives a row keyed by the fields at `indices`
/// (one field: its value as text, a string as it is, a number or bool as
/// JSON, a timestamp or address as its text without quotes; several: a
/// JSON array of their values), written into `buffer`; `None` without
/// key fields or for a single null one. A scaled-out window finds a
/// group's task with it, so rows a `kafka` sink keyed by a window's
/// `group_by` land in that group's task.
pub fn row_key<'a>(
    row: &'a ArchivedRow,
    indices: &[usize],
    buffer: &'a mut String,
) -> Option<&'a [u8]> {
    match indices {
        [] => None,
        [index] => match row.get(*index) {
            ArchivedValue::Null => None,
            ArchivedValue::String(text) => Some(text.as_bytes()),
            value => {
                buffer.clear();
                write_json_value(value, buffer);
                // A timestamp or an address is a JSON string: the key is
                // its text, without the quotes.
                let text = buffer.as_str();
                let text = text
                    .strip_prefix('"')
                    .and_then(|text| text.strip_suffix('"'))
                    .unwrap_or(text);
                Some(text.as_bytes())
            }
        },
        indices => {
            buffer.clear();
            buffer.push('[');
            for (n, index) in indices.iter().enumerate() {
                if n > 0 {
                    buffer.push(',');
                }
                write_json_value(row.get(*index), buffer);
            }
            buffer.push(']');
            Some(buffer.as_bytes())
        }
    }
}

/// Kafka's murmur2 hash of `key`, as Java clients compute it
/// (`org.apache.kafka.common.utils.Utils.murmur2`, seed `0x9747b28c`).
pub fn murmur2(key: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (key.len() as u32);
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `partitions` a Java client's default partitioner (and
/// librdkafka's `murmur2_random`, and weir's `kafka` sink) gives a record
/// keyed `key`: `(murmur2(key) & 0x7fffffff) % partitions`.
pub fn key_partition(key: &[u8], partitions: u32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as u32 % partitions.max(1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_matches_kafkas_java_clients() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
    }
}
