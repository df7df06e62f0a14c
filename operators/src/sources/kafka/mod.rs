//! [`KafkaSource`]: the `kafka` source, reading Kafka topics into rows,
//! exactly once.
//!
//! # Options ([`KafkaSourceConfig`])
//! - `brokers`: the bootstrap servers, `"host:port,host:port"`.
//! - `topics`: topic names; a name starting with `^` is a regular
//!   expression matched against every topic (internal `__` topics
//!   excluded), as librdkafka reads it. Partitions are found once, at
//!   start.
//! - `group` (default `weir-PIPELINE-NAME`): the consumer group offsets are
//!   committed to, after each committed epoch, for lag tools
//!   (`kafka-consumer-groups --describe`) and for `start = "committed"`;
//!   every partition the source reads gets one, an empty one its start.
//! - `start` (default `"committed"`): where a partition starts when weir's
//!   own log has no position for it (a fresh data directory, a new
//!   partition): `"earliest"`, `"latest"`, or `"committed"` (the group's
//!   committed offset, or the earliest without one).
//! - `format` (default `"json"`): `"json"` reads each record's value as one
//!   JSON object into the fields of `schema` (as the `file` source and
//!   `parse` do); `"raw"` makes it the field `message: string`.
//! - `schema`: field name → type name, for `json`.
//! - `metadata`: a list of record metadata fields to add after the schema's:
//!   `topic` (string), `partition` (int), `offset` (int), `key` (string,
//!   null without a key), `timestamp` (timestamp: the record's create or
//!   log-append time), `headers` (map of string values).
//! - `time_field`: a `timestamp` field of the schema as event time; without
//!   it the record's Kafka timestamp is the event time.
//! - `max_out_of_orderness` (default `"0s"`) and `idle_timeout` (default
//!   `"10s"`): the watermark; see below.
//! - `bounded` (default `false`): read every partition up to its end and
//!   then end the stream (closing every window), like Flink's
//!   `setBounded(OffsetsInitializer.latest())`: for backfills, tests and
//!   benchmarks. A partition ends where the source first finds no more
//!   records in it. Needs exactly one topic, given by name.
//! - `options`: librdkafka properties passed through (SASL, TLS, ...); see
//!   `crate::kafka`.
//! - `keyed_by` (scale-out only): the row fields, as the components
//!   downstream name them, whose values the input topic's records are
//!   keyed by (as a `kafka` sink with `key = [...]` writes them, with
//!   Java's default partitioner). A scaled-out window whose `group_by` is
//!   exactly this list reads its tasks straight from the input topic; any
//!   other goes through a repartition topic (docs/scale-out.md).
//!
//! # Watermarks (Flink's model)
//! Each partition's watermark is the largest event time read from it
//! minus `max_out_of_orderness`. An instance emits the smallest watermark
//! of its partitions that are not idle. A partition is idle once the
//! source has read to its end and nothing new came for `idle_timeout`
//! (counted from the later of its last record and reaching the end); it
//! does not hold the watermark back until it has records again. A
//! partition that is not at its end is never idle, however long it is
//! quiet: while the broker is unreachable or the partition is paused for
//! backpressure, it holds the watermark, so its records are not made late
//! by the others. (rust-rdkafka's end-of-partition error,
//! `KafkaError::PartitionEOF(i32)`, carries the partition number but not
//! the topic: with several topics, reaching the end of
//! partition `n` of one counts for partition `n` of the others too, until
//! their next record.) An instance whose partitions are all idle (or that
//! has none) follows the largest watermark any instance of the source
//! emitted, so a quiet shard does not stall windows downstream.
//!
//! # Parallelism
//! Every shard runs an instance. At start each instance lists the
//! partitions of the topics and reads those [`reader::owner`] gives it:
//! partition `p` of a topic goes to instance `(h + p) mod instances`, `h` a
//! hash of the topic's name, so one topic's partitions are spread evenly
//! and a partition stays with its instance when topics or partitions are
//! added between runs (its logged offset is where that instance looks).
//! It reads them on its own consumer thread (see [`reader`]) and never
//! waits on Kafka on the shard.
//!
//! # Exactly once
//! The position logged at every epoch is, per partition, the offset of the
//! next record to emit and the largest event time read. A restart assigns
//! each partition from its logged offset, so every record's effect is in
//! committed output exactly once. The source reads with
//! `isolation.level = read_committed`: records of aborted or open
//! transactions are never read.
//!
//! # Dead letters
//! A record whose value is not valid UTF-8 (`raw`) or not a JSON object
//! fitting the schema (`json`) goes to output port 1 (`NAME.dead_letter`)
//! as a row of [`dead_letter_schema`] (`topic, partition, offset, payload,
//! error`), counted in `weir_kafka_source_dead_letters_total`.

mod position;
pub mod reader;
pub mod restore;
pub mod subscribe;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::TryRecvError;
use serde::{Deserialize, Serialize};
use weir_runtime::metrics::ShardCounter;
use weir_runtime::{Emitter, IntakeLog, OperatorError, ShardContext, Source, SourcePoll};

use crate::component::{Component, Input, Node, Output, PlanContext, Planned, DEAD_LETTER};
use crate::row::{
    decode_row, json_object_into, FieldTypes, MapEntry, OptionError, Row, Schema, Type, Value,
};
use crate::scale_out::{GroupPlan, GroupRun, REPARTITION_PORT};
use position::PartitionPosition;
use reader::{Chunk, Command, Event, Reader, ReaderSetup, StartAt};
use subscribe::{GroupSetup, Revocation, TaskMetrics};

/// Where a partition with no logged position starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStart {
    /// The oldest record kept.
    Earliest,
    /// After the newest record.
    Latest,
    /// The group's committed offset, or the oldest without one.
    #[default]
    Committed,
}

/// How record values are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    /// One JSON object per record, read by `schema`.
    #[default]
    Json,
    /// The value as the field `message: string`.
    Raw,
}

/// The `[sources.NAME]` table of a `kafka` source; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic names, or `^regex`.
    pub topics: Vec<String>,
    /// The consumer group (default `weir-PIPELINE-NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where partitions without a logged position start.
    #[serde(default)]
    pub start: KafkaStart,
    /// `json` (default) or `raw`.
    #[serde(default)]
    pub format: KafkaFormat,
    /// Field name → type name, for `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<FieldTypes>,
    /// Metadata fields to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<String>,
    /// A timestamp field of the schema as event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// How far the watermark trails the largest event time (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_out_of_orderness: Option<String>,
    /// How long a partition may be quiet before it stops holding the
    /// watermark (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Read to the end of every partition, then end.
    #[serde(default)]
    pub bounded: bool,
    /// librdkafka properties passed through.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Scaled out: the fields the input topic's records are keyed by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyed_by: Vec<String>,
}

/// A metadata field a record can add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaField {
    /// `topic: string`.
    Topic,
    /// `partition: int`.
    Partition,
    /// `offset: int`.
    Offset,
    /// `key: string`.
    Key,
    /// `timestamp: timestamp`.
    Timestamp,
    /// `headers: map`.
    Headers,
}

impl MetaField {
    const ALL: [(&'static str, MetaField, Type); 6] = [
        ("topic", MetaField::Topic, Type::String),
        ("partition", MetaField::Partition, Type::Int),
        ("offset", MetaField::Offset, Type::Int),
        ("key", MetaField::Key, Type::String),
        ("timestamp", MetaField::Timestamp, Type::Timestamp),
        ("headers", MetaField::Headers, Type::Map),
    ];
}

/// A checked [`KafkaSourceConfig`].
#[derive(Debug, Clone)]
pub struct KafkaSourceSpec {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topics (names or `^regex`).
    pub topics: Vec<String>,
    /// The consumer group.
    pub group: String,
    /// Where new partitions start.
    pub start: KafkaStart,
    /// How values are read.
    pub format: KafkaFormat,
    /// The schema's fields (`json`), or `message` (`raw`).
    pub fields: Vec<(String, Type)>,
    /// Metadata fields, after `fields`.
    pub metadata: Vec<MetaField>,
    /// The event-time field's index.
    pub time_index: Option<usize>,
    /// Watermark delay, ms.
    pub max_out_of_orderness_ms: u64,
    /// Idle timeout, ms.
    pub idle_timeout_ms: u64,
    /// Read to the end, then end.
    pub bounded: bool,
    /// librdkafka properties.
    pub options: BTreeMap<String, String>,
    /// The largest watermark any instance emitted (shared by the
    /// instances of one run).
    pub shared_watermark: Arc<AtomicU64>,
    /// With `[runtime] group`: the scale-out run; the source joins the
    /// group instead of reading every partition ([`subscribe`]).
    pub scale_out: Option<GroupPlan>,
}

/// The schema of dead letters (port 1): `topic: string, partition: int,
/// offset: int, payload: string, error: string`.
pub fn dead_letter_schema() -> Schema {
    Schema::new([
        ("topic", Type::String),
        ("partition", Type::Int),
        ("offset", Type::Int),
        ("payload", Type::String),
        ("error", Type::String),
    ])
}

/// Checks `config` of the source `name` in `pipeline`; returns the spec and
/// the output schema.
pub fn build(
    config: &KafkaSourceConfig,
    pipeline: &str,
    name: &str,
) -> Result<(KafkaSourceSpec, Schema), OptionError> {
    crate::kafka::check_client(&config.brokers, &config.options)?;
    if config.topics.is_empty() || config.topics.iter().any(|t| t.trim().is_empty()) {
        return Err(OptionError::new(
            "topics",
            "must list at least one topic name (or a `^regex`), none empty",
        ));
    }
    for topic in &config.topics {
        if topic.starts_with('^') {
            regex::Regex::new(topic)
                .map_err(|error| OptionError::new("topics", format!("`{topic}`: {error}")))?;
        }
    }
    if config.bounded && (config.topics.len() != 1 || config.topics[0].starts_with('^')) {
        return Err(OptionError::new(
            "bounded",
            "a bounded source reads exactly one topic, given by name",
        ));
    }
    let mut fields: Vec<(String, Type)> = match config.format {
        KafkaFormat::Raw => {
            if config.schema.is_some() {
                return Err(OptionError::new(
                    "schema",
                    "a `raw` source has the single field `message: string`; leave `schema` out",
                ));
            }
            vec![("message".to_owned(), Type::String)]
        }
        KafkaFormat::Json => {
            let Some(schema) = config.schema.as_ref().filter(|s| !s.0.is_empty()) else {
                return Err(OptionError::new(
                    "schema",
                    "a `json` source needs a schema such as \
                     { user = \"string\", at = \"timestamp\" }",
                ));
            };
            schema
                .typed()
                .map_err(|message| OptionError::new("schema", message))?
        }
    };
    let mut metadata = Vec::new();
    for wanted in &config.metadata {
        let Some((name, field, ty)) = MetaField::ALL.iter().find(|(n, _, _)| n == wanted) else {
            return Err(OptionError::new(
                "metadata",
                format!(
                    "unknown field `{wanted}`; the metadata fields are topic, partition, \
                     offset, key, timestamp, headers"
                ),
            ));
        };
        if fields.iter().any(|(seen, _)| seen == name) {
            return Err(OptionError::new(
                "metadata",
                format!("`{name}` is also a field of the schema (or given twice)"),
            ));
        }
        fields.push(((*name).to_owned(), *ty));
        metadata.push(*field);
    }
    let schema = Schema::new(fields.iter().map(|(name, ty)| (name.clone(), *ty)));
    let time_index = match &config.time_field {
        None => None,
        Some(field) => {
            let (index, ty) = schema
                .lookup(field)
                .map_err(|message| OptionError::new("time_field", message))?;
            if ty != Type::Timestamp {
                return Err(OptionError::new(
                    "time_field",
                    format!("field `{field}` is a {ty}, not a timestamp"),
                ));
            }
            Some(index)
        }
    };
    let duration = |option: &str, text: &Option<String>, default: u64| match text {
        None => Ok(default),
        Some(text) => crate::duration::parse_ms(text).map_err(|m| OptionError::new(option, m)),
    };
    let spec = KafkaSourceSpec {
        brokers: config.brokers.clone(),
        topics: config.topics.clone(),
        group: config
            .group
            .clone()
            .unwrap_or_else(|| format!("weir-{pipeline}-{name}")),
        start: config.start,
        format: config.format,
        fields,
        metadata,
        time_index,
        max_out_of_orderness_ms: duration("max_out_of_orderness", &config.max_out_of_orderness, 0)?,
        idle_timeout_ms: duration(
            "idle_timeout",
            &config.idle_timeout,
            crate::limits::KAFKA_IDLE_TIMEOUT_DEFAULT_MS,
        )?,
        bounded: config.bounded,
        options: config.options.clone(),
        shared_watermark: Arc::new(AtomicU64::new(0)),
        scale_out: None,
    };
    Ok((spec, schema))
}

/// One partition this instance reads.
#[derive(Debug)]
struct Partition {
    topic: String,
    partition: i32,
    /// The offset after the last record emitted; `None` before the first.
    next_offset: Option<i64>,
    max_ts: Option<i64>,
    /// When its last record was emitted (or when it was assigned).
    last_record: Instant,
    /// The reader reached its end after its last record emitted: it may
    /// turn idle.
    at_end: bool,
    /// Scaled out: the epoch in which the group took it away. Nothing of
    /// it is emitted any more; its offset is logged at that epoch's
    /// barrier for the last time.
    revoked_at: Option<u64>,
    /// Scaled out: a repartition topic's partition, whose records are rows
    /// for this output port.
    port: Option<usize>,
}

impl Partition {
    /// Its position, once it has an offset.
    fn position(&self) -> Option<PartitionPosition> {
        Some(PartitionPosition {
            topic: self.topic.clone(),
            partition: self.partition,
            next_offset: self.next_offset?,
            max_ts: self.max_ts,
        })
    }
}

/// The `kafka` source; see the module docs.
#[derive(Debug)]
pub struct KafkaSource {
    spec: KafkaSourceSpec,
    instance: usize,
    instances: usize,
    component: Arc<str>,
    reader: Option<Reader>,
    /// Offsets restored from the log, until the reader starts.
    restored: Vec<PartitionPosition>,
    /// `None` until the reader says which partitions it reads.
    partitions: Option<Vec<Partition>>,
    chunk: Option<Chunk>,
    /// The reader sent [`Event::End`].
    ended: bool,
    /// The next entry of `chunk` to emit.
    cursor: usize,
    row: Row,
    dead: Row,
    emitted_watermark: Option<u64>,
    intake: Option<IntakeLog>,
    dead_metric: Option<ShardCounter>,
    records_metric: Option<ShardCounter>,
    /// Whether the run has epochs (a data directory).
    snapshots: bool,
    /// Scaled out: the run, and the consumer thread's requests to stop
    /// emitting partitions.
    group: Option<(Arc<GroupRun>, Arc<Revocation>)>,
    /// Scaled out: partitions given up before their [`Event::Added`] came
    /// through the channel, by number, with the epoch they were given up
    /// in.
    revoked_early: BTreeMap<u32, u64>,
    /// Scaled out: where the consumer thread puts each partition's gauges.
    tasks: TaskMetrics,
    /// Scaled out: the repartition topics, and the output port of each.
    repartitions: Vec<(String, usize)>,
}

impl KafkaSource {
    /// The source instance on `context`'s shard.
    pub fn new(spec: KafkaSourceSpec, context: &ShardContext) -> KafkaSource {
        let width = spec.fields.len();
        let labels = [("component", &*context.node)];
        let dead = context.metrics.counter(
            "weir_kafka_source_dead_letters",
            "Kafka records that became dead letters (not UTF-8, not JSON, or a type mismatch).",
            &labels,
        );
        let records = context.metrics.counter(
            "weir_kafka_source_records",
            "Kafka records read and emitted.",
            &labels,
        );
        if let Some(plan) = &spec.scale_out {
            plan.run().set_instances(context.instances);
        }
        KafkaSource {
            spec,
            instance: context.instance,
            instances: context.instances,
            component: context.node.clone(),
            reader: None,
            restored: Vec::new(),
            partitions: None,
            chunk: None,
            ended: false,
            cursor: 0,
            row: Row::nulls(width),
            dead: Row::nulls(5),
            emitted_watermark: None,
            intake: None,
            dead_metric: Some(dead.for_shard(context.shard)),
            records_metric: Some(records.for_shard(context.shard)),
            snapshots: context.snapshots,
            group: None,
            revoked_early: BTreeMap::new(),
            tasks: TaskMetrics {
                registry: context.metrics.clone(),
                instances: context.instances,
            },
            repartitions: Vec::new(),
        }
    }

    fn start_reader(&mut self) -> Result<(), String> {
        let defaults = [
            (
                "client.id",
                format!("weir-{}-{}", self.component, self.instance),
            ),
            (
                "queued.max.messages.kbytes",
                crate::limits::KAFKA_PREFETCH_KIB.to_string(),
            ),
            // Prefetch by bytes (the line above), not librdkafka's default
            // of 100 000 records per partition: twice the throughput on
            // small records (BENCHMARKS.md).
            ("queued.min.messages", "1000000".to_owned()),
            // An empty fetch (a partition at its end) is answered after
            // this long: librdkafka's 500 ms delays a bounded run's end
            // and the idle detection of a caught-up partition.
            ("fetch.wait.max.ms", "100".to_owned()),
        ];
        let mut config =
            crate::kafka::client_config(&self.spec.brokers, &defaults, &self.spec.options);
        config.set("group.id", &self.spec.group);
        if let Some(plan) = &self.spec.scale_out {
            if !self.snapshots {
                return Err(
                    "a scaled-out pipeline (`[runtime] group`) needs a data directory: \
                            its epochs are its transactions"
                        .into(),
                );
            }
            let run = plan.run();
            run.attach_source(&self.component)?;
            self.repartitions = run
                .repartitions()
                .into_iter()
                .enumerate()
                .map(|(at, (_, topic))| (topic.to_string(), REPARTITION_PORT + at))
                .collect();
            let watch = self
                .intake
                .as_ref()
                .map(IntakeLog::commit_watch)
                .ok_or("no intake log")?;
            self.partitions = Some(Vec::new());
            let (topics, headers) = (
                self.spec.topics.clone(),
                self.spec.metadata.contains(&MetaField::Headers),
            );
            let start = match self.spec.start {
                KafkaStart::Latest => rdkafka::Offset::End,
                KafkaStart::Earliest | KafkaStart::Committed => rdkafka::Offset::Beginning,
            };
            // The process's shard instances share one consumer thread: the
            // first to get here starts it.
            let (reader, revocation) =
                subscribe::join(&run, self.instance, self.instances, |revocations| {
                    GroupSetup {
                        config,
                        topics,
                        headers,
                        component: self.component.clone(),
                        run: run.clone(),
                        revocations,
                        watch,
                        start,
                        metrics: self.tasks.clone(),
                    }
                })?;
            self.reader = Some(reader);
            self.group = Some((run, revocation));
            return Ok(());
        }
        self.reader = Some(reader::start(ReaderSetup {
            config,
            topics: self.spec.topics.clone(),
            instance: self.instance,
            instances: self.instances,
            start: match self.spec.start {
                KafkaStart::Earliest => StartAt::Earliest,
                KafkaStart::Latest => StartAt::Latest,
                KafkaStart::Committed => StartAt::Committed,
            },
            restored: self
                .restored
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.next_offset))
                .collect(),
            headers: self.spec.metadata.contains(&MetaField::Headers),
            bounded: self.spec.bounded,
            component: self.component.clone(),
            watch: self.intake.as_ref().map(IntakeLog::commit_watch),
        }));
        Ok(())
    }

    /// Scaled out, the position at a barrier: the next offset of every
    /// partition emitted from and still held (or given up in this very
    /// epoch), handed to the run for this epoch's transaction, and logged
    /// as usual (restarts do not read it: the group's offsets say where
    /// to resume).
    fn group_position(&self, plan: &GroupPlan) -> Vec<u8> {
        let epoch = self.intake.as_ref().map_or(0, IntakeLog::current_epoch);
        // By partition; a partition given back to this process after it
        // was given up appears twice, and its newer assignment counts.
        let mut held: BTreeMap<(String, i32), &Partition> = BTreeMap::new();
        for part in self.partitions.iter().flatten() {
            if part.next_offset.is_some() && part.revoked_at.is_none_or(|at| at >= epoch) {
                held.insert((part.topic.clone(), part.partition), part);
            }
        }
        let partitions: Vec<PartitionPosition> =
            held.values().filter_map(|part| part.position()).collect();
        let offsets = partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.next_offset))
            .collect();
        match &self.group {
            Some((run, _)) => run.set_offsets(epoch, offsets),
            None => plan.run().set_offsets(epoch, offsets),
        }
        position::encode(&partitions)
    }

    /// Scaled out: answers the consumer thread's request to stop emitting
    /// partitions, if one waits.
    fn answer_revocation(&mut self) {
        let Some((_, revocation)) = &self.group else {
            return;
        };
        if !revocation.is_pending() {
            return;
        }
        let Some(revoked) = revocation.take() else {
            return;
        };
        let epoch = self.intake.as_ref().map_or(0, IntakeLog::current_epoch);
        let partitions = self.partitions.get_or_insert_with(Vec::new);
        for number in revoked {
            match partitions.get_mut(number as usize) {
                Some(part) => {
                    part.revoked_at.get_or_insert(epoch);
                }
                // Its `Added` is still in the channel.
                None => {
                    self.revoked_early.insert(number, epoch);
                }
            }
        }
        revocation.answer(epoch);
    }

    /// Emits the records of the current chunk, up to `max`.
    fn emit(&mut self, max: usize, out: &mut Emitter<Row>) -> usize {
        let (Some(chunk), Some(partitions)) = (&self.chunk, &mut self.partitions) else {
            return 0;
        };
        let now = Instant::now();
        let mut emitted = 0;
        let mut dead_letters = 0;
        let mut stale = 0u64;
        let base = self.row.values.len() - self.spec.metadata.len();
        while self.cursor < chunk.entries.len() && emitted < max {
            let entry = &chunk.entries[self.cursor];
            self.cursor += 1;
            let Some(part) = partitions
                .get_mut(entry.partition as usize)
                .filter(|part| part.revoked_at.is_none())
            else {
                // Given up to another process, which reads it from the
                // group's offset.
                continue;
            };
            if part.next_offset.is_some_and(|next| entry.offset < next) {
                // Below where the partition stands (a record librdkafka
                // had fetched for an earlier assignment of it, say):
                // emitted already, by this process or another. Never
                // again.
                stale += 1;
                continue;
            }
            emitted += 1;
            part.next_offset = Some(entry.offset + 1);
            part.last_record = now;
            part.at_end = false;
            let payload = chunk.bytes(entry.payload);
            let decoded = if let Some(port) = part.port {
                // A row a stateful operator sent through its repartition
                // topic, for that operator.
                match decode_row(payload) {
                    Ok(row) => {
                        out.push_to(port, &row);
                        continue;
                    }
                    Err(error) => Err(format!("not a row of repartition topic: {error}")),
                }
            } else {
                match self.spec.format {
                    KafkaFormat::Json => json_object_into(
                        payload,
                        &self.spec.fields[..base],
                        &mut self.row.values[..base],
                    ),
                    KafkaFormat::Raw => match std::str::from_utf8(payload) {
                        Ok(text) => {
                            set_str(&mut self.row.values[0], text);
                            Ok(())
                        }
                        Err(_) => Err("the value is not valid UTF-8".to_owned()),
                    },
                }
            };
            if let Err(error) = decoded {
                dead_letters += 1;
                set_str(&mut self.dead.values[0], &part.topic);
                self.dead.values[1] = Value::Int(i64::from(part.partition));
                self.dead.values[2] = Value::Int(entry.offset);
                set_str(&mut self.dead.values[3], &String::from_utf8_lossy(payload));
                set_str(&mut self.dead.values[4], &error);
                out.push_to(1, &self.dead);
                continue;
            }
            for (slot, field) in self.row.values[base..].iter_mut().zip(&self.spec.metadata) {
                *slot = match field {
                    MetaField::Topic => Value::String(part.topic.clone()),
                    MetaField::Partition => Value::Int(i64::from(part.partition)),
                    MetaField::Offset => Value::Int(entry.offset),
                    MetaField::Key => entry.key.map_or(Value::Null, |key| {
                        Value::String(String::from_utf8_lossy(chunk.bytes(key)).into_owned())
                    }),
                    MetaField::Timestamp => entry.timestamp.map_or(Value::Null, Value::Timestamp),
                    MetaField::Headers => Value::Map(
                        entry
                            .headers
                            .iter()
                            .map(|(key, value)| MapEntry {
                                key: key.clone(),
                                value: value.map_or(Value::Null, |range| {
                                    Value::String(
                                        String::from_utf8_lossy(chunk.bytes(range)).into_owned(),
                                    )
                                }),
                            })
                            .collect(),
                    ),
                };
            }
            let event_time = match self.spec.time_index {
                Some(index) => match self.row.values[index] {
                    Value::Timestamp(ts) => Some(ts),
                    _ => None,
                },
                None => entry.timestamp,
            };
            if let Some(ts) = event_time {
                part.max_ts = Some(part.max_ts.map_or(ts, |max| max.max(ts)));
            }
            out.push(&self.row);
        }
        if self.cursor >= chunk.entries.len() {
            self.chunk = None;
            self.cursor = 0;
        }
        if stale > 0 {
            tracing::warn!(
                component = &*self.component,
                "kafka: dropped {stale} records below their partition's next offset"
            );
        }
        if let Some(metric) = &self.records_metric {
            metric.add(emitted as u64 - dead_letters);
        }
        if dead_letters > 0 {
            if let Some(metric) = &self.dead_metric {
                metric.add(dead_letters);
            }
        }
        emitted
    }

    /// The watermark to emit now, if any; see the module docs.
    fn watermark(&self) -> Option<u64> {
        let partitions = self.partitions.as_ref()?;
        let idle = std::time::Duration::from_millis(self.spec.idle_timeout_ms);
        let now = Instant::now();
        let mut lowest: Option<u64> = None;
        let mut active = false;
        for part in partitions {
            if part.revoked_at.is_some()
                || part.port.is_some()
                || (part.at_end && now.duration_since(part.last_record) >= idle)
            {
                continue;
            }
            active = true;
            let max_ts = part.max_ts?;
            let mark = u64::try_from(max_ts)
                .unwrap_or(0)
                .saturating_sub(self.spec.max_out_of_orderness_ms);
            lowest = Some(lowest.map_or(mark, |low| low.min(mark)));
        }
        if active {
            return lowest;
        }
        // All idle (or none assigned): follow the other instances.
        let shared = self.spec.shared_watermark.load(Ordering::Acquire);
        (shared > 0).then_some(shared)
    }
}

fn set_str(value: &mut Value, text: &str) {
    match value {
        Value::String(target) => {
            target.clear();
            target.push_str(text);
        }
        other => *other = Value::String(text.to_owned()),
    }
}

impl Source for KafkaSource {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        if self.reader.is_none() {
            if let Err(error) = self.start_reader() {
                out.fail(OperatorError::external(format!(
                    "kafka source `{}`: {error}",
                    self.component
                )));
                return SourcePoll::Exhausted;
            }
        }
        self.answer_revocation();
        let max = out.batch_records_max();
        let mut emitted = 0;
        while emitted < max {
            if self.chunk.is_none() {
                let Some(reader) = &self.reader else { break };
                match reader.events.try_recv() {
                    Ok(Event::Chunk(chunk)) => {
                        self.chunk = Some(chunk);
                        self.cursor = 0;
                    }
                    Ok(Event::Added(list)) => {
                        let now = Instant::now();
                        let partitions = self.partitions.get_or_insert_with(Vec::new);
                        for (index, topic, partition, start) in list {
                            tracing::debug!(
                                component = &*self.component,
                                "kafka: {topic}/{partition} starts at offset {start:?}"
                            );
                            if index as usize != partitions.len() {
                                out.fail(OperatorError::external(format!(
                                    "kafka source `{}`: partition {topic}/{partition} came as \
                                     number {index}, expected {}",
                                    self.component,
                                    partitions.len()
                                )));
                                return SourcePoll::Exhausted;
                            }
                            let port = self
                                .repartitions
                                .iter()
                                .find(|(internal, _)| *internal == topic)
                                .map(|(_, port)| *port);
                            partitions.push(Partition {
                                port,
                                topic,
                                partition,
                                // Where it starts: records below it are
                                // not this assignment's.
                                next_offset: start,
                                max_ts: None,
                                last_record: now,
                                at_end: false,
                                revoked_at: self.revoked_early.remove(&index),
                            });
                        }
                        continue;
                    }
                    Ok(Event::Assigned(list)) => {
                        let now = Instant::now();
                        let partitions = list
                            .into_iter()
                            .map(|(topic, partition, start)| {
                                let restored = self
                                    .restored
                                    .iter()
                                    .find(|p| p.topic == topic && p.partition == partition);
                                Partition {
                                    // Where it starts: a partition that
                                    // stays empty has a position too.
                                    next_offset: start,
                                    max_ts: restored.and_then(|p| p.max_ts),
                                    topic,
                                    partition,
                                    last_record: now,
                                    at_end: false,
                                    revoked_at: None,
                                    port: None,
                                }
                            })
                            .collect();
                        self.partitions = Some(partitions);
                        continue;
                    }
                    Ok(Event::Failed(error)) => {
                        out.fail(OperatorError::external(format!(
                            "kafka source `{}`: {error}",
                            self.component
                        )));
                        return SourcePoll::Exhausted;
                    }
                    Ok(Event::AtEnd(number)) => {
                        let now = Instant::now();
                        for part in self.partitions.iter_mut().flatten() {
                            if part.partition == number && !part.at_end {
                                part.at_end = true;
                                part.last_record = part.last_record.max(now);
                            }
                        }
                        continue;
                    }
                    Ok(Event::End) => {
                        self.ended = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        out.fail(OperatorError::external(format!(
                            "kafka source `{}`: the consumer thread ended",
                            self.component
                        )));
                        return SourcePoll::Exhausted;
                    }
                }
            }
            emitted += self.emit(max - emitted, out);
        }
        if let Some(mark) = self.watermark() {
            if self.emitted_watermark.is_none_or(|emitted| mark > emitted) {
                self.emitted_watermark = Some(mark);
                self.spec.shared_watermark.fetch_max(mark, Ordering::AcqRel);
                out.watermark(mark);
            }
        }
        if self.ended && self.chunk.is_none() {
            SourcePoll::Exhausted
        } else if emitted > 0 {
            SourcePoll::Ready
        } else {
            SourcePoll::Idle
        }
    }

    fn position(&self) -> Vec<u8> {
        if let Some(plan) = &self.spec.scale_out {
            return self.group_position(plan);
        }
        let partitions: Vec<PartitionPosition> = match &self.partitions {
            Some(partitions) => partitions
                .iter()
                // A restored partition starts with its restored offset
                // (`Event::Assigned`); one without an offset yet has none
                // to log.
                .filter_map(Partition::position)
                .collect(),
            // Not started yet: what was restored still stands.
            None => self.restored.clone(),
        };
        if let (Some(intake), Some(reader)) = (&self.intake, &self.reader) {
            let offsets = partitions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.next_offset))
                .collect();
            // Full (the thread is stuck): a later epoch's offsets follow.
            let _ = reader.commands.try_send(Command::Logged {
                epoch: intake.current_epoch(),
                offsets,
            });
        }
        position::encode(&partitions)
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        if self.spec.scale_out.is_some() {
            // Scaled out, the group's offsets say where each partition
            // resumes, whichever process reads it now.
            return Ok(());
        }
        self.restored = position::decode(position)?;
        Ok(())
    }

    fn attach(&mut self, intake: IntakeLog) {
        self.intake = Some(intake);
    }
}

impl Component for KafkaSourceConfig {
    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let (mut spec, schema) = build(self, context.pipeline, context.name)?;
        if let Some(plan) = context.group {
            if self.bounded {
                return Err(OptionError::new(
                    "bounded",
                    "a scaled-out source (`[runtime] group`) is never bounded: its partitions \
                     move between processes",
                ));
            }
            if self
                .group
                .as_ref()
                .is_some_and(|group| *group != plan.group)
            {
                return Err(OptionError::new(
                    "group",
                    format!(
                        "the source reads as a member of `[runtime] group` (`{}`); leave \
                         `group` out",
                        plan.group
                    ),
                ));
            }
            spec.group = plan.group.clone();
            spec.scale_out = Some(plan.clone());
            plan.run().set_source(context.name, &self.keyed_by);
        } else if !self.keyed_by.is_empty() {
            return Err(OptionError::new(
                "keyed_by",
                "says how the input is partitioned for a scaled-out run; it needs \
                 `[runtime] group`",
            ));
        }
        if self.keyed_by.iter().any(|field| field.trim().is_empty()) {
            return Err(OptionError::new(
                "keyed_by",
                "names fields; none may be empty",
            ));
        }
        let outputs = vec![
            Output::rows(schema),
            Output::side(DEAD_LETTER, 1, dead_letter_schema()),
        ];
        Ok(Planned::new(outputs, KafkaNode(spec)))
    }

    fn scales_out(&self) -> bool {
        true
    }
}

/// The source's node.
#[derive(Debug, Clone)]
pub struct KafkaNode(pub KafkaSourceSpec);

impl Node for KafkaNode {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, _inputs: &[Input]) {
        let spec = self.0.clone();
        graph.source(name, move |context| KafkaSource::new(spec.clone(), context));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KafkaSourceConfig {
        KafkaSourceConfig {
            brokers: "127.0.0.1:9".into(),
            topics: vec!["logs".into()],
            group: None,
            start: KafkaStart::Earliest,
            format: KafkaFormat::Json,
            schema: Some(FieldTypes(vec![
                ("user".into(), "string".into()),
                ("at".into(), "timestamp".into()),
            ])),
            metadata: vec!["partition".into(), "offset".into()],
            time_field: Some("at".into()),
            max_out_of_orderness: Some("5s".into()),
            idle_timeout: None,
            bounded: false,
            options: BTreeMap::new(),
            keyed_by: Vec::new(),
        }
    }

    fn error(config: &KafkaSourceConfig) -> String {
        build(config, "p", "in").unwrap_err().naming_option()
    }

    #[test]
    fn a_good_source_plans_its_schema_and_defaults() {
        let (spec, schema) = build(&config(), "p", "in").unwrap();
        assert_eq!(spec.group, "weir-p-in");
        assert_eq!(spec.max_out_of_orderness_ms, 5_000);
        assert_eq!(
            spec.idle_timeout_ms,
            crate::limits::KAFKA_IDLE_TIMEOUT_DEFAULT_MS
        );
        assert_eq!(spec.time_index, Some(1));
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["user", "at", "partition", "offset"]);
    }

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        let mut c = config();
        c.topics.clear();
        assert!(error(&c).contains("topics"), "{}", error(&c));
        let mut c = config();
        c.topics = vec!["^(".into()];
        assert!(error(&c).contains("topics"), "{}", error(&c));
        let mut c = config();
        c.bounded = true;
        c.topics = vec!["a".into(), "b".into()];
        assert!(error(&c).contains("bounded"), "{}", error(&c));
        let mut c = config();
        c.format = KafkaFormat::Raw;
        assert!(error(&c).contains("schema"), "{}", error(&c));
        let mut c = config();
        c.metadata = vec!["user".into()];
        assert!(error(&c).contains("unknown field `user`"), "{}", error(&c));
        let mut c = config();
        c.metadata = vec!["offset".into(), "offset".into()];
        assert!(error(&c).contains("metadata"), "{}", error(&c));
        let mut c = config();
        c.time_field = Some("user".into());
        assert!(error(&c).contains("not a timestamp"), "{}", error(&c));
        let mut c = config();
        c.options
            .insert("isolation.level".into(), "read_uncommitted".into());
        assert!(error(&c).contains("set by weir"), "{}", error(&c));
        let mut c = config();
        c.options.insert("no.such.property".into(), "1".into());
        assert!(error(&c).contains("options"), "{}", error(&c));
        let mut c = config();
        c.brokers = " ".into();
        assert!(error(&c).contains("brokers"), "{}", error(&c));
    }

    #[test]
    fn partitions_spread_evenly_and_keep_their_instance() {
        let mut per_instance = [0; 2];
        for partition in 0..6 {
            per_instance[reader::owner("logs", partition, 2)] += 1;
        }
        assert_eq!(per_instance, [3, 3]);
        // Another topic does not move this one's partitions.
        let before: Vec<usize> = (0..6).map(|p| reader::owner("logs", p, 3)).collect();
        let _ = reader::owner("audit", 0, 3);
        let after: Vec<usize> = (0..6).map(|p| reader::owner("logs", p, 3)).collect();
        assert_eq!(before, after);
    }
}
