//! `threshold`: raises an alert record when a condition over an aggregate
//! holds, at most once per key per cooldown.
//!
//! ```toml
//! [processors.brute_force]
//! type = "threshold"
//! inputs = ["failed_per_ip"]        # e.g. a window's rows
//! condition = "failures >= 10"
//! key = ["source_ip"]
//! cooldown = "5m"
//! alert = "brute_force"             # optional, default: the component's name
//! ```
//!
//! For each input record whose `condition` is true, with key `k` (the
//! values of the `key` fields; no `key` means one key for the stream) and
//! event time `t` (the `time_field`, by default `window_end` when the input
//! has one, else `timestamp`): if `k` alerted at time `a` and
//! `t < a + cooldown`, the record is suppressed; otherwise it is emitted
//! with an added `alert: string` field holding the alert's name, and `k`'s
//! alert time becomes `t`. Cooldowns run on event time, so a replay after a
//! crash makes the same decisions; a record with a null time never starts or
//! ends a cooldown (it alerts if no cooldown is running from time 0).
//!
//! # State
//! Per key, the last alert time, identified by the 64-bit FNV hash of the
//! key's values (two keys colliding share a cooldown; at a million keys the
//! chance of any collision is about 3e-8). Entries are forgotten once the
//! watermark passes `a + cooldown`. The state is snapshotted at each epoch
//! barrier and restored after a crash. The edge into a threshold is
//! hash-partitioned by [`ThresholdSpec::key_hash`], so a key's state lives
//! on one shard.

use rkyv::rancor;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, Emitter, OperatorError, Processor};

use super::parse_duration_ms;
use crate::component::{
    connect_hashed, state_options, Component, Input, Node, Output, PlanContext, Planned, Stateful,
};
use crate::expr::{Expr, Scratch};
use crate::row::{ArchivedRow, OptionError, Row, Schema, Type, Value};

/// A `threshold` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Components whose output this one reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// When to alert (an expression of type bool).
    pub condition: String,
    /// Fields identifying what alerts (e.g. the source IP).
    #[serde(default)]
    pub key: Vec<String>,
    /// The least event time between two alerts of one key (`"5m"`);
    /// default `"0s"`: every matching record alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// The timestamp field cooldowns are measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// The alert's name, written in the `alert` field; default: the
    /// component's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

/// A checked `threshold`.
#[derive(Debug, Clone)]
pub struct ThresholdSpec {
    condition: Expr,
    key: Vec<usize>,
    cooldown_ms: i64,
    time: usize,
    alert: String,
    /// Where `alert` goes in the output.
    alert_index: usize,
}

impl ThresholdSpec {
    /// The hash of `row`'s key: what the edge into the threshold
    /// partitions by.
    pub fn key_hash(&self, row: &ArchivedRow) -> u64 {
        row.hash_fields(&self.key)
    }

    /// [`key_hash`](ThresholdSpec::key_hash) of an owned row (the same
    /// value).
    pub fn row_key_hash(&self, row: &Row) -> u64 {
        row.hash_fields(&self.key)
    }
}

/// Checks `config` against `input`; `name` is the component's. The output
/// schema is `input`'s plus `alert: string`.
pub fn build(
    config: &ThresholdConfig,
    input: &Schema,
    name: &str,
) -> Result<(ThresholdSpec, Schema), OptionError> {
    let condition = Expr::compile_condition(&config.condition, input)
        .map_err(|error| OptionError::new("condition", error.to_string()))?;
    let mut key = Vec::with_capacity(config.key.len());
    for field in &config.key {
        let (index, _) = input
            .lookup(field)
            .map_err(|message| OptionError::new("key", message))?;
        key.push(index);
    }
    let cooldown_ms = match &config.cooldown {
        Some(text) => parse_duration_ms("cooldown", text)?,
        None => 0,
    };
    let time_name = match &config.time_field {
        Some(name) => name.as_str(),
        None if input.index("window_end").is_some() => "window_end",
        None => "timestamp",
    };
    let (time, ty) = input
        .lookup(time_name)
        .map_err(|message| OptionError::new("time_field", message))?;
    if ty != Type::Timestamp {
        let message = format!("`{time_name}` is a {ty}; cooldowns need a timestamp field");
        return Err(OptionError::new("time_field", message));
    }
    let mut output = input.clone();
    let alert_index = output.set("alert", Type::String);
    let spec = ThresholdSpec {
        condition,
        key,
        cooldown_ms: i64::try_from(cooldown_ms).unwrap_or(i64::MAX),
        time,
        alert: config.alert.clone().unwrap_or_else(|| name.to_owned()),
        alert_index,
    };
    Ok((spec, output))
}

/// The `threshold` operator.
#[derive(Debug)]
pub struct Threshold {
    spec: ThresholdSpec,
    scratch: Scratch,
    row: Row,
    /// Key hash → time of its last alert.
    last: FxHashMap<u64, i64>,
    alert_index: usize,
}

impl Threshold {
    /// An instance of `spec`.
    pub fn new(spec: ThresholdSpec) -> Threshold {
        // `alert` replaces a field of that name or comes last.
        let alert_index = spec.alert_index;
        Threshold {
            alert_index,
            spec,
            scratch: Scratch::default(),
            row: Row::default(),
            last: FxHashMap::default(),
        }
    }

    /// Keys with a running cooldown.
    pub fn keys(&self) -> usize {
        self.last.len()
    }
}

/// What [`Threshold`] snapshots: (key hash, last alert), sorted.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct ThresholdState {
    last: Vec<(u64, i64)>,
}

impl Processor for Threshold {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            if !self.spec.condition.test(row, &mut self.scratch) {
                continue;
            }
            let key = self.spec.key_hash(row);
            let time = row.get(self.spec.time).as_timestamp();
            let at = time.unwrap_or(0);
            if let Some(&last) = self.last.get(&key) {
                if at < last.saturating_add(self.spec.cooldown_ms) {
                    continue;
                }
            }
            if time.is_some() {
                self.last.insert(key, at);
            }
            row.copy_into(&mut self.row);
            let alert = Value::String(self.spec.alert.clone());
            if self.alert_index < self.row.values.len() {
                self.row.values[self.alert_index] = alert;
            } else {
                self.row.values.resize(self.alert_index, Value::Null);
                self.row.values.push(alert);
            }
            out.push(&self.row);
        }
    }

    fn on_watermark(&mut self, watermark: u64, _out: &mut Emitter<Row>) {
        let watermark = i64::try_from(watermark).unwrap_or(i64::MAX);
        let cooldown = self.spec.cooldown_ms;
        self.last
            .retain(|_, last| last.saturating_add(cooldown) > watermark);
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let mut last: Vec<(u64, i64)> = self.last.iter().map(|(k, v)| (*k, *v)).collect();
        last.sort_unstable();
        let bytes = rkyv::to_bytes::<rancor::Error>(&ThresholdState { last })
            .map_err(|error| OperatorError::other(error.to_string()))?;
        Ok(bytes.to_vec())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let state = rkyv::from_bytes::<ThresholdState, rancor::BoxedError>(&aligned)
            .map_err(|error| OperatorError::invalid(format!("threshold state: {error}")))?;
        self.last = state.last.into_iter().collect();
        Ok(())
    }
}

impl Component for ThresholdConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let (spec, output) = build(self, &context.schema(), context.name)?;
        let fingerprint = state_options("threshold", self, &["key"]);
        let node = Stateful { spec, fingerprint };
        Ok(Planned::new(vec![Output::rows(output)], node))
    }
}

impl Node for Stateful<ThresholdSpec> {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let Stateful { spec, fingerprint } = self.clone();
        connect_hashed(graph, name, inputs, &spec, |spec, row| {
            spec.row_key_hash(row)
        });
        graph
            .processor(name, move |_| Threshold::new(spec.clone()))
            .state_fingerprint(fingerprint);
    }
}
