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
//!
//! # Scaled out
//! With `[runtime] group` (docs/scale-out.md) a threshold needs a `key`
//! and keeps each task's cooldowns apart ([`TaskThresholds`]): a row's
//! task is its key's (`crate::scale_out::tasked`), read straight from the
//! input's partitions when the source's `keyed_by` is the threshold's
//! `key`, else through the threshold's repartition topic (only rows whose
//! `condition` holds are sent there). Each task forgets a cooldown once
//! its own **stream time** (the largest event time its rows carried)
//! passes `a + cooldown`, as a scaled-out window fires on its task's
//! stream time. At every barrier each task hands in to the threshold's
//! changelog topic every key whose alert time changed (key: the key's
//! 64-bit hash, 8 bytes big-endian; value: the alert time, 8 bytes
//! big-endian), a tombstone for every cooldown forgotten, and its stream
//! time (key `weir.task`) when it moved; a task that moves is restored
//! from those records.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rkyv::rancor;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, Emitter, OperatorError, Processor};

use super::parse_duration_ms;
use crate::component::{
    connect_hashed, connect_tasked, state_options, Component, Input, Node, Output, PlanContext,
    Planned, Stateful,
};
use crate::expr::{Expr, Scratch};
use crate::row::{ArchivedRow, OptionError, Row, Schema, Type, Value};
use crate::scale_out::local::Entries;
use crate::scale_out::tasked::{Changes, TaskPlan, TaskState, Tasked, TaskedSetup, META_KEY};

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
}

impl Threshold {
    /// An instance of `spec`.
    pub fn new(spec: ThresholdSpec) -> Threshold {
        Threshold {
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

/// `row` with its `alert` field, into `out`: the field replaces one of
/// that name or comes last.
fn alert_row(spec: &ThresholdSpec, row: &ArchivedRow, out: &mut Row) {
    row.copy_into(out);
    let alert = Value::String(spec.alert.clone());
    if spec.alert_index < out.values.len() {
        out.values[spec.alert_index] = alert;
    } else {
        out.values.resize(spec.alert_index, Value::Null);
        out.values.push(alert);
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
            alert_row(&self.spec, row, &mut self.row);
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
        if let Some(plan) = context.group {
            if self.key.is_empty() {
                return Err(OptionError::new(
                    "key",
                    "a threshold without `key` (one cooldown for the whole stream) cannot be \
                     split over processes: give it a `key`, or run it as one process \
                     (docs/scale-out.md)",
                ));
            }
            let tasks = TaskPlan::new(plan, context.name, "threshold", &self.key, &self.inputs)?;
            let node = TaskedThreshold {
                spec,
                fingerprint,
                tasks,
            };
            return Ok(Planned::new(vec![Output::rows(output)], node));
        }
        let node = Stateful { spec, fingerprint };
        Ok(Planned::new(vec![Output::rows(output)], node))
    }

    fn scales_out(&self) -> bool {
        true
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

/// One task's cooldowns, scaled out; see the module docs.
#[derive(Debug)]
pub struct ThresholdTask {
    cooldown_ms: i64,
    /// Key hash → time of its last alert.
    last: FxHashMap<u64, i64>,
    /// The largest event time of its rows (`i64::MIN` before the first).
    stream_time: i64,
    /// Keys whose cooldown started or was forgotten since the last
    /// barrier.
    changed: Vec<u64>,
    /// The stream time moved since the last barrier.
    time_moved: bool,
    /// When each cooldown ends, earliest first: (end, key), an entry
    /// stale once its key alerted again or was forgotten. The stream time
    /// moves with nearly every row; this spares [`advance`] a scan of
    /// every cooldown each time.
    ///
    /// [`advance`]: ThresholdTask::advance
    ends: BinaryHeap<Reverse<(i64, u64)>>,
}

impl ThresholdTask {
    /// Decides `row` (its `condition` holds) at event time `time`:
    /// whether it alerts, starting its key's cooldown if it does.
    fn decide(&mut self, key: u64, time: Option<i64>) -> bool {
        let at = time.unwrap_or(0);
        if let Some(&last) = self.last.get(&key) {
            if at < last.saturating_add(self.cooldown_ms) {
                return false;
            }
        }
        if let Some(time) = time {
            self.last.insert(key, time);
            self.ends
                .push(Reverse((time.saturating_add(self.cooldown_ms), key)));
            self.changed.push(key);
        }
        true
    }

    /// Moves the stream time to `time` if later, forgetting the cooldowns
    /// it ended.
    fn advance(&mut self, time: i64) {
        if time <= self.stream_time {
            return;
        }
        self.stream_time = time;
        self.time_moved = true;
        while let Some(&Reverse((end, key))) = self.ends.peek() {
            if end > time {
                break;
            }
            self.ends.pop();
            // Forgotten only if this is still its cooldown's end.
            let current = self
                .last
                .get(&key)
                .map(|last| last.saturating_add(self.cooldown_ms));
            if current == Some(end) {
                self.last.remove(&key);
                self.changed.push(key);
            }
        }
    }
}

fn eight_bytes(bytes: &[u8], what: &str) -> Result<[u8; 8], String> {
    bytes
        .try_into()
        .map_err(|_| format!("{what} of {} bytes, not 8", bytes.len()))
}

impl TaskState for ThresholdTask {
    /// The cooldown, in ms.
    type Template = i64;

    fn restore(cooldown_ms: &i64, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self, String> {
        let mut task = ThresholdTask {
            cooldown_ms: *cooldown_ms,
            last: FxHashMap::default(),
            stream_time: i64::MIN,
            changed: Vec::new(),
            time_moved: false,
            ends: BinaryHeap::new(),
        };
        for (key, value) in entries {
            let value = i64::from_be_bytes(eight_bytes(&value, "a value")?);
            if key == META_KEY {
                task.stream_time = value;
            } else {
                task.last
                    .insert(u64::from_be_bytes(eight_bytes(&key, "a key")?), value);
            }
        }
        task.ends = task
            .last
            .iter()
            .map(|(&key, &last)| Reverse((last.saturating_add(task.cooldown_ms), key)))
            .collect();
        Ok(task)
    }

    fn changes(&mut self) -> Result<Changes, OperatorError> {
        self.changed.sort_unstable();
        self.changed.dedup();
        let mut records: Changes = self
            .changed
            .drain(..)
            .map(|key| {
                let value = self.last.get(&key).map(|at| at.to_be_bytes().to_vec());
                (key.to_be_bytes().to_vec(), value)
            })
            .collect();
        if std::mem::take(&mut self.time_moved) {
            records.push((
                META_KEY.to_vec(),
                Some(self.stream_time.to_be_bytes().to_vec()),
            ));
        }
        Ok(records)
    }

    /// Every running cooldown, and the stream time.
    fn entries(&mut self) -> Result<Entries, OperatorError> {
        let mut entries: Entries = self
            .last
            .iter()
            .map(|(key, at)| (key.to_be_bytes().to_vec(), at.to_be_bytes().to_vec()))
            .collect();
        entries.push((META_KEY.to_vec(), self.stream_time.to_be_bytes().to_vec()));
        Ok(entries)
    }
}

/// The scaled-out `threshold`; see the module docs.
#[derive(Debug)]
pub struct TaskThresholds {
    spec: ThresholdSpec,
    scratch: Scratch,
    row: Row,
    tasks: Tasked<ThresholdTask>,
}

impl TaskThresholds {
    /// The threshold `spec` with the tasks of `setup`, on shard instance
    /// `instance` of `instances`.
    pub fn new(
        spec: ThresholdSpec,
        setup: TaskedSetup,
        instance: usize,
        instances: usize,
    ) -> TaskThresholds {
        TaskThresholds {
            spec,
            scratch: Scratch::default(),
            row: Row::default(),
            tasks: Tasked::on(setup, instance, instances),
        }
    }

    /// The cooldowns running in the held tasks.
    pub fn keys(&self) -> usize {
        self.tasks.states().map(|task| task.last.len()).sum()
    }

    /// Takes `row`: sends it on to `sends_on` (the repartition topic) or
    /// decides it in its task when its condition holds; whether it alerts
    /// (the alert is then in `self.row`).
    fn take(&mut self, row: &ArchivedRow, sends_on: Option<&Arc<str>>) -> bool {
        if !self.spec.condition.test(row, &mut self.scratch) {
            return false;
        }
        if let Some(topic) = sends_on {
            self.tasks.send_on(topic, row);
            return false;
        }
        let key = self.spec.key_hash(row);
        let time = row.get(self.spec.time).as_timestamp();
        let Some(task) = self.tasks.task_for(row) else {
            return false;
        };
        let alerts = task.decide(key, time);
        if let Some(time) = time {
            task.advance(time);
        }
        if alerts {
            alert_row(&self.spec, row, &mut self.row);
        }
        alerts
    }
}

impl Processor for TaskThresholds {
    type Input = Row;
    type Output = Row;

    /// Rows from the inputs whose condition holds are decided in their
    /// tasks, or, when the threshold repartitions, sent to its repartition
    /// topic; the rows read back from it come in on the port after the
    /// inputs'.
    fn process(&mut self, port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        self.tasks.take_handoffs(&self.spec.cooldown_ms);
        let sends_on = self.tasks.sends_on(port);
        for row in batch.iter() {
            if self.take(row, sends_on.as_ref()) {
                out.push(&self.row);
            }
        }
    }

    /// The state is in the changelog; the local log holds the tasks only
    /// at a graceful stop (`Tasked::snapshot`).
    fn snapshot(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.tasks.take_handoffs(&self.spec.cooldown_ms);
        self.tasks.snapshot(epoch)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        self.tasks.restore_local(state)
    }

    fn on_start(&mut self) {
        self.tasks.started();
    }

    fn on_stop(&mut self, _out: &mut Emitter<Row>) {
        self.tasks.stopping();
    }
}

/// The node of a threshold in a scaled-out run ([`TaskThresholds`]).
struct TaskedThreshold {
    spec: ThresholdSpec,
    fingerprint: Vec<(String, String)>,
    tasks: TaskPlan,
}

impl Node for TaskedThreshold {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let repartition = connect_tasked(graph, name, inputs, &self.tasks);
        let (spec, tasks) = (self.spec.clone(), self.tasks.clone());
        graph
            .processor(name, move |context| {
                let setup = tasks.setup(
                    context.node.clone(),
                    ("threshold", "key"),
                    spec.key.clone(),
                    repartition.clone(),
                );
                TaskThresholds::new(spec.clone(), setup, context.instance, context.instances)
            })
            .state_fingerprint(self.fingerprint.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale_out::tasked::testing::{
        archived, check_local, compact, restore_all, Changelog,
    };
    use crate::scale_out::{GroupPlan, GroupRun};

    const TASKS: u32 = 4;

    fn spec() -> ThresholdSpec {
        let config: ThresholdConfig = toml::from_str(
            "inputs = [\"in\"]\ncondition = \"failures >= 5\"\nkey = [\"ip\"]\n\
             cooldown = \"5m\"\ntime_field = \"at\"",
        )
        .expect("a config");
        let schema = Schema::new([
            ("at", Type::Timestamp),
            ("ip", Type::String),
            ("failures", Type::Int),
        ]);
        build(&config, &schema, "brute_force").expect("a spec").0
    }

    /// A threshold of `run` holding every task, restored from `topic`.
    fn tasked(spec: &ThresholdSpec, run: &Arc<GroupRun>, topic: &Changelog) -> TaskThresholds {
        run.set_tasks(TASKS);
        let setup = TaskedSetup {
            node: "alerts".into(),
            kind: "threshold",
            key_option: "key",
            key_indices: spec.key.clone(),
            run: run.clone(),
            topic: "t".into(),
            repartition: None,
        };
        let mut threshold = TaskThresholds::new(spec.clone(), setup, 0, 1);
        restore_all(run, "alerts", TASKS, topic);
        threshold.tasks.take_handoffs(&spec.cooldown_ms);
        threshold
    }

    /// Rows a minute apart per IP in time order, failures 0 to 9.
    fn rows(count: usize) -> Vec<Row> {
        let mut x = 17u64;
        (0..count)
            .map(|i| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                Row {
                    values: vec![
                        Value::Timestamp(i as i64 * 20_000),
                        Value::String(format!("10.0.0.{}", (x >> 40) % 13)),
                        Value::Int(((x >> 20) % 10) as i64),
                    ],
                }
            })
            .collect()
    }

    fn feed(threshold: &mut TaskThresholds, rows: &[Row]) -> Vec<Row> {
        let mut alerts = Vec::new();
        for row in rows {
            if archived(row, |row| threshold.take(row, None)) {
                alerts.push(threshold.row.clone());
            }
        }
        alerts
    }

    /// Scaled out, a threshold alerts by the documented rule, and one
    /// restored from its changelog at any epoch goes on exactly; forgotten
    /// cooldowns leave tombstones, so the changelog holds the live ones.
    #[test]
    fn a_threshold_restored_from_its_changelog_alerts_exactly_as_one_that_ran_on() {
        let spec = spec();
        let input = rows(3_000);
        // The documented rule, by hand: a matching row alerts unless its
        // key alerted less than a cooldown before it.
        let plain = {
            let mut scratch = Scratch::default();
            let mut last: FxHashMap<u64, i64> = FxHashMap::default();
            let mut alerts = Vec::new();
            for row in &input {
                let (key, at, matches) = archived(row, |archived| {
                    let at = archived.get(spec.time).as_timestamp().unwrap_or(0);
                    let matches = spec.condition.test(archived, &mut scratch);
                    (spec.key_hash(archived), at, matches)
                });
                let cooling = last.get(&key).is_some_and(|&a| at < a + spec.cooldown_ms);
                if matches && !cooling {
                    last.insert(key, at);
                    alerts.push(row.clone());
                }
            }
            alerts
        };
        assert!(plain.len() > 50, "{} alerts", plain.len());
        let whole = {
            let run = GroupPlan::new("g-threshold-whole").run();
            run.add_state("alerts", &[], None);
            feed(&mut tasked(&spec, &run, &Changelog::new()), &input)
        };
        let without_alert = |rows: &[Row]| -> Vec<Row> {
            rows.iter()
                .map(|row| Row {
                    values: row.values[..3].to_vec(),
                })
                .collect()
        };
        assert_eq!(without_alert(&whole), plain, "by the documented rule");
        for cut in [0, 400, 1_500, 2_999] {
            let run = GroupPlan::new("g-threshold-cut").run();
            run.add_state("alerts", &[], None);
            let mut topic = Changelog::new();
            let mut first = tasked(&spec, &run, &topic);
            let mut alerts = Vec::new();
            let mut last = 0;
            for (epoch, chunk) in (1..).zip(input[..cut].chunks(300)) {
                alerts.extend(feed(&mut first, chunk));
                assert!(first.snapshot(epoch).expect("a snapshot").is_empty());
                compact(&run, epoch, &mut topic);
                last = epoch;
            }
            // A graceful stop: the final snapshot holds the tasks.
            first.tasks.stopping();
            let local = first.snapshot(last + 1).expect("the final snapshot");
            compact(&run, last + 1, &mut topic);
            check_local(&local, last + 1, &topic);
            let live = topic.keys().filter(|(_, key)| key != META_KEY).count();
            assert_eq!(live, first.keys(), "cut {cut}: the live cooldowns, no more");
            let mut restored = tasked(&spec, &run, &topic);
            assert_eq!(restored.keys(), first.keys(), "cut {cut}");
            alerts.extend(feed(&mut restored, &input[cut..]));
            assert_eq!(alerts, whole, "cut {cut}");
            assert!(run.failure().is_none(), "{:?}", run.failure());
        }
    }
}
