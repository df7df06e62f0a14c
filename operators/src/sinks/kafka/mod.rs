//! [`KafkaSink`]: the `kafka` sink, publishing rows to a Kafka topic as
//! JSON, exactly once through Kafka transactions coordinated by weir's
//! epochs.
//!
//! # Options ([`KafkaSinkConfig`])
//! - `brokers`: the bootstrap servers.
//! - `topic`: the topic (it must exist, or the brokers must create topics
//!   on first use).
//! - `key` (default none): input fields whose values make each record's
//!   key: one field gives its value as text (a string as it is, a number or
//!   bool as JSON, a timestamp or address as its text without quotes);
//!   several give a JSON array of their values. A record without
//!   key (or whose single key field is null) is spread by librdkafka; keyed
//!   records go to the partition Java clients would pick (murmur2).
//! - `format` (default and only `"json"`): each row is one JSON object, null
//!   fields left out, as the `file` sink writes NDJSON lines.
//! - `compression` (default `"none"`): `none`, `gzip`, `snappy`, `lz4` or
//!   `zstd`.
//! - `delivery` (default `"exactly_once"`): or `"at_least_once"`; see
//!   [`publish`].
//! - `options`: librdkafka properties passed through (see `crate::kafka`).
//!
//! # Exactly once
//! - `write` encodes each row (key and JSON value) into the current
//!   epoch's buffer, in memory.
//! - `precommit` returns that buffer with where to publish it (brokers and
//!   `options` included, credentials too: the WAL holds them as a
//!   `postgres` sink's holds its connection string); the runtime logs it
//!   in the shard's WAL, so the epoch's output is durable before the epoch
//!   can commit. An epoch's output larger than one WAL record (16 MiB) is
//!   logged in parts (`CONTINUED` records, `docs/wal-format.md`). It is
//!   held in memory until the pre-commit: without a data directory there
//!   are no epochs, and the sink publishes nothing.
//! - `commit` runs once the epoch is committed, on a blocking thread, and
//!   publishes the epoch in one Kafka transaction per (sink, shard, epoch)
//!   under the stable `transactional.id` `weir-PIPELINE-SINK-SHARD`,
//!   together with the marker of the last published epoch; a commit run
//!   again after a crash finds its epoch in the marker and publishes
//!   nothing. See [`publish`] and `docs/exactly-once.md`.
//!
//! Readers see the output exactly once with `isolation.level =
//! read_committed`. As for the `postgres` sink, **a run on a fresh data
//! directory starts again at epoch 1**: it must not reuse the pipeline and
//! sink names of an earlier data directory on the same topic, or its
//! first epochs look published and are skipped.

pub mod group;
pub mod publish;
pub mod staged;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, CommitControl, OperatorError, ShardContext, Sink};

use crate::component::{connect_forward, Component, Input, Node, PlanContext, Planned};
use crate::row::{write_row_json, ArchivedRow, OptionError, Row, Schema};
use staged::Header;

/// How the sink delivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaDelivery {
    /// One transaction per shard and epoch, with its marker.
    #[default]
    ExactlyOnce,
    /// An idempotent producer, no transaction: duplicates after a crash.
    AtLeastOnce,
}

/// How records are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSinkFormat {
    /// One JSON object per record.
    #[default]
    Json,
}

/// Record batch compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    /// None.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl KafkaCompression {
    fn name(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// The `[sinks.NAME]` table of a `kafka` sink; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The streams it reads (wired by the pipeline builder).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Fields whose values make the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// `json`.
    #[serde(default)]
    pub format: KafkaSinkFormat,
    /// Compression.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// `exactly_once` (default) or `at_least_once`.
    #[serde(default)]
    pub delivery: KafkaDelivery,
    /// librdkafka properties passed through.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A checked [`KafkaSinkConfig`].
#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    /// The pipeline's name.
    pub pipeline: String,
    /// The input schema.
    pub schema: Arc<Schema>,
    /// Key field indices.
    pub key: Vec<usize>,
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Compression.
    pub compression: KafkaCompression,
    /// Delivery.
    pub delivery: KafkaDelivery,
    /// librdkafka properties.
    pub options: BTreeMap<String, String>,
    /// With `[runtime] group`: the scale-out run whose process transaction
    /// publishes every epoch ([`crate::scale_out`]).
    pub group: Option<crate::scale_out::GroupPlan>,
}

/// Whether `topic` is a legal Kafka topic name.
fn check_topic(topic: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." {
        return Err(format!(
            "`{topic}` is not a topic name (1 to 249 characters)"
        ));
    }
    if let Some(bad) = topic.chars().find(|c| !legal(*c)) {
        return Err(format!(
            "`{topic}` is not a topic name: `{bad}` is not one of letters, digits, `.`, `_`, `-`"
        ));
    }
    Ok(())
}

/// Checks `config` against the input's schema.
pub fn build(
    config: &KafkaSinkConfig,
    input: &Schema,
    pipeline: &str,
) -> Result<KafkaSinkSpec, OptionError> {
    crate::kafka::check_client(&config.brokers, &config.options)?;
    check_topic(&config.topic).map_err(|message| OptionError::new("topic", message))?;
    let key = config
        .key
        .iter()
        .map(|field| {
            input
                .lookup(field)
                .map(|(index, _)| index)
                .map_err(|message| OptionError::new("key", message))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KafkaSinkSpec {
        pipeline: pipeline.to_owned(),
        schema: Arc::new(input.clone()),
        key,
        brokers: config.brokers.clone(),
        topic: config.topic.clone(),
        compression: config.compression,
        delivery: config.delivery,
        options: config.options.clone(),
        group: None,
    })
}

/// One sink instance; see the module docs.
#[derive(Debug)]
pub struct KafkaSink {
    spec: KafkaSinkSpec,
    sink: Arc<str>,
    shard: usize,
    /// The current epoch's records, encoded as [`staged`] records.
    records: Vec<u8>,
    count: u64,
    /// Whether this run staged an epoch yet (exactly-once): the first
    /// epoch is staged even without records, so that its commit
    /// initialises the transactional id (see [`KafkaSink::stage`]).
    staged_once: bool,
    key: String,
    value: String,
}

impl KafkaSink {
    /// The instance of `context`'s shard.
    pub fn new(spec: KafkaSinkSpec, context: &ShardContext) -> KafkaSink {
        if let Some(plan) = &spec.group {
            // The process's transaction of an epoch waits for the sink's
            // instance on every shard.
            plan.run().set_instances(context.instances);
        }
        KafkaSink {
            spec,
            sink: context.node.clone(),
            shard: context.shard,
            records: Vec::new(),
            count: 0,
            staged_once: false,
            key: String::new(),
            value: String::new(),
        }
    }

    /// Appends one row to the current epoch.
    pub fn push(&mut self, row: &ArchivedRow) {
        self.value.clear();
        write_row_json(row, &self.spec.schema, &mut self.value);
        let key = crate::kafka::row_key(row, &self.spec.key, &mut self.key);
        staged::push_record(&mut self.records, key, self.value.as_bytes());
        self.count += 1;
    }

    /// Closes the epoch: the staged bytes, empty if it had no records.
    ///
    /// Exactly-once, a run's first epoch is staged even without records:
    /// its commit creates the publisher, whose `init_transactions` aborts
    /// a transaction an earlier run of this (sink, shard) left open when
    /// it was killed. Without it, a shard with nothing more to publish
    /// would leave that transaction open until the broker's
    /// `transaction.timeout.ms`, and `read_committed` readers of its
    /// partitions would wait for it.
    ///
    /// Scaled out (`[runtime] group`), every epoch is staged, with records
    /// or without: the process's transaction of an epoch waits for every
    /// sink's ([`crate::scale_out`]).
    pub fn stage(&mut self, epoch: u64) -> Vec<u8> {
        let exactly_once = self.spec.delivery == KafkaDelivery::ExactlyOnce;
        let group = self.spec.group.as_ref().map(|plan| staged::GroupHeader {
            name: plan.group.clone(),
            run: plan.run,
        });
        if self.count == 0 && group.is_none() && (self.staged_once || !exactly_once) {
            return Vec::new();
        }
        self.staged_once = true;
        let header = Header {
            brokers: self.spec.brokers.clone(),
            options: self.spec.options.clone(),
            topic: self.spec.topic.clone(),
            compression: self.spec.compression.name().to_owned(),
            exactly_once,
            transactional_id: format!("weir-{}-{}-{}", self.spec.pipeline, self.sink, self.shard),
            sink: self.sink.to_string(),
            shard: self.shard as u64,
            epoch,
            records: std::mem::take(&mut self.count),
            group,
        };
        let bytes = staged::encode(&header, &self.records);
        self.records.clear();
        bytes
    }
}

impl Sink for KafkaSink {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        for row in batch.iter() {
            self.push(row);
        }
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        Ok(self.stage(epoch))
    }

    fn commit(bytes: &[u8], control: &CommitControl) -> Result<(), OperatorError> {
        if !bytes.is_empty() {
            let staged = staged::decode(bytes)?;
            if staged.header.group.is_some() {
                // Scaled out: the process's transaction of the epoch.
                return group::commit(&staged, bytes, control);
            }
        }
        publish::commit(bytes, control)
    }
}

impl Component for KafkaSinkConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let mut spec = build(self, &context.schema(), context.pipeline)?;
        if let Some(plan) = context.group {
            if spec.delivery != KafkaDelivery::ExactlyOnce {
                return Err(OptionError::new(
                    "delivery",
                    "a scaled-out pipeline (`[runtime] group`) publishes exactly once: leave \
                     `delivery` out",
                ));
            }
            let settings = crate::scale_out::ProducerSettings {
                brokers: spec.brokers.clone(),
                compression: spec.compression.name().to_owned(),
                options: spec.options.clone(),
            };
            plan.run()
                .add_producing_sink(context.name, settings)
                .map_err(|(option, message)| OptionError::new(option, message))?;
            spec.group = Some(plan.clone());
        }
        Ok(Planned::new(Vec::new(), KafkaSinkNode(spec)))
    }

    fn scales_out(&self) -> bool {
        true
    }
}

/// The sink's node.
#[derive(Debug, Clone)]
pub struct KafkaSinkNode(pub KafkaSinkSpec);

impl Node for KafkaSinkNode {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.0.clone();
        graph.sink(name, move |context| KafkaSink::new(spec.clone(), context));
        connect_forward(graph, name, inputs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Type;

    fn config() -> KafkaSinkConfig {
        KafkaSinkConfig {
            inputs: vec!["w".into()],
            brokers: "127.0.0.1:9".into(),
            topic: "alerts".into(),
            key: vec!["user".into()],
            format: KafkaSinkFormat::Json,
            compression: KafkaCompression::Zstd,
            delivery: KafkaDelivery::ExactlyOnce,
            options: BTreeMap::new(),
        }
    }

    fn schema() -> Schema {
        Schema::new([("user", Type::String), ("count", Type::Int)])
    }

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        let error =
            |config: &KafkaSinkConfig| build(config, &schema(), "p").unwrap_err().naming_option();
        assert_eq!(build(&config(), &schema(), "p").unwrap().key, vec![0]);
        let mut c = config();
        c.topic = "bad topic".into();
        assert!(error(&c).contains("topic"), "{}", error(&c));
        let mut c = config();
        c.key = vec!["nope".into()];
        assert!(error(&c).contains("key"), "{}", error(&c));
        let mut c = config();
        c.options.insert("transactional.id".into(), "x".into());
        assert!(error(&c).contains("set by weir"), "{}", error(&c));
        let mut c = config();
        c.options.insert("compression.type".into(), "gzip".into());
        assert!(error(&c).contains("compression.type"), "{}", error(&c));
    }

    fn sink(delivery: KafkaDelivery) -> KafkaSink {
        let mut config = config();
        config.delivery = delivery;
        KafkaSink {
            spec: build(&config, &schema(), "p").unwrap(),
            sink: Arc::from("alerts"),
            shard: 1,
            records: Vec::new(),
            count: 0,
            staged_once: false,
            key: String::new(),
            value: String::new(),
        }
    }

    #[test]
    fn a_runs_first_epoch_is_staged_without_records_to_initialise_the_id() {
        let mut exactly_once = sink(KafkaDelivery::ExactlyOnce);
        let first = exactly_once.stage(7);
        let staged = staged::decode(&first).unwrap();
        assert_eq!(staged.header.epoch, 7);
        assert_eq!(staged.header.records, 0);
        assert_eq!(staged.header.transactional_id, "weir-p-alerts-1");
        assert!(
            exactly_once.stage(8).is_empty(),
            "later empty epochs stage nothing"
        );

        let mut at_least_once = sink(KafkaDelivery::AtLeastOnce);
        assert!(at_least_once.stage(7).is_empty());
    }
}
