//! The `dedup` processor: of each identity's records, lets through the
//! earliest by event time and drops the repeats that follow it within a
//! window of event time. Which record is kept depends on the records alone,
//! not on the order they arrive in, so two runs over the same input, and a
//! run restored from a snapshot, publish the same records.
//!
//! ```toml
//! [processors.once]
//! type = "dedup"
//! inputs = ["access"]
//! fields = ["client_ip", "path"]   # the identity
//! window = "10m"                    # ms, s, m, h or d
//! time_field = "timestamp"          # the default
//! ```
//!
//! # Behaviour
//! **The rule.** Taken in event-time order, an identity's first record is
//! emitted and starts an entry, `first = its time`. A later record of that
//! identity is dropped when its time is before `first + window`, and
//! emitted otherwise, restarting the entry at its time. Output records are
//! the input records, unchanged: the output schema is the input schema.
//!
//! **The order.** Records from several shards arrive interleaved by thread
//! timing, so the operator applies the rule only once the watermark fixes
//! the order:
//! 1. A record at or after the watermark is held. When a live entry already
//!    covers it (`first <= time < first + window`) it is dropped at once
//!    instead: no record still to be released can restart that entry
//!    before its time, so the rule would drop it anyway.
//! 2. When the watermark rises to `w`, the held records with a time before
//!    `w` are released in the order (time, identity hash, row values) and
//!    the rule is applied to each. Row values compare field by field in
//!    the total order of `crate::row::order` (type, then value; floats by
//!    `total_cmp`), under which only identical rows are equal, so ties
//!    between different records are broken by their contents and never by
//!    arrival. Kept records are queued and handed to the runtime a batch
//!    per `Processor::drain` call, before the watermark is forwarded.
//! 3. Then the entries whose window ended, `first + window <= w`, expire
//!    and are forgotten.
//! 4. The end of input (a final `u64::MAX` watermark, then `finish`)
//!    releases every record still held.
//!
//! **Latency.** A record is emitted once the watermark passes its time, not
//! on arrival: the output trails the input by the watermark's lag. Behind a
//! source that sends no watermark before its input ends (a `file` source
//! without a `time_field`), every record waits for the end of input.
//!
//! **Late records**, those already behind the watermark on arrival, are
//! decided at once by the same rule against the live entries: dropped when
//! an entry's window reaches past their time (also when they are earlier
//! than `first`), emitted otherwise; they start or restart an entry unless
//! their own window already ended at the watermark. A record can be late
//! only if its source sent it behind the source's own watermark, and
//! whether it then counts as late here can depend on how far the other
//! shards' watermarks have got: late data is the one input on which two
//! runs can differ. A record whose time field is null is emitted at once
//! and not tracked.
//!
//! Identity fields may be of any type; a null is a value like any other
//! (two records both null in a field agree on it).
//!
//! # Identity is a 64-bit hash
//! The state keys each identity by the 64-bit FNV-1a hash of its fields
//! (the hash [`partition_hash`] returns and the runtime partitions by), not
//! by the values themselves. Two different identities with the same hash
//! look like one: the later is dropped as a repeat. With `n` identities
//! live at once the chance that any two collide is about `n² / 2⁶⁵`: 3·10⁻⁸
//! for a million, 3·10⁻⁴ for a hundred million. This is the price of a
//! fixed-size entry.
//!
//! # Memory
//! **Entries.** One per identity live in the window: a hash-map slot (16
//! bytes of key and time, plus table overhead) and an expiry-heap slot (16
//! bytes), about 40 to 60 bytes in all. The live identities are those first
//! seen in the last `window` of event time plus the watermark's lag, so
//! memory is bounded by (distinct identities per window) × ~60 bytes per
//! instance; partition the input by [`partition_hash`] so each identity
//! lives on one shard. There is no other cap: a window much longer than the
//! cardinality of the stream allows grows without bound.
//!
//! **Held records.** Every record at or after the watermark that no live
//! entry covers is held until the watermark passes its time: a heap slot
//! of 40 bytes (time, hash, row header) plus the row's values (32 bytes a
//! field, and the text of its strings and the items of its lists and
//! maps). The buffer thus holds the records within the watermark's lag:
//! (records per lag of event time, less the repeats of identities already
//! decided) × (row size + 40 bytes). There is no cap: without watermarks
//! it holds the whole input until its end.
//!
//! # State
//! `snapshot` writes with rkyv the live entries (hash, first-seen time)
//! sorted by hash, the held records in release order, the records released
//! but not yet drained (none at a barrier, since the runtime drains before
//! it reads the next input), the watermark and the drop count. `restore`
//! validates the bytes (they come from disk), checks that the entries are
//! sorted without repeats and that every held record has the schema's
//! width and a time at or after the watermark and comes in release order,
//! recomputes the held records' hashes and rebuilds both heaps, so a
//! restored instance goes on exactly as the snapshotted one would.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rkyv::rancor;
use rustc_hash::FxHashMap;
use weir_runtime::metrics::ShardCounter;
use weir_runtime::{Batch, Emitter, OperatorError, Processor, ShardContext};

use crate::component::{
    connect_hashed, state_options, Component, Input, Node, Output, PlanContext, Planned, Stateful,
};
use crate::processors::window::closed_rows::ClosedRows;
use crate::row::convert::copy_row;
use crate::row::{cmp_slices, ArchivedRow, OptionError, Row, Schema, Type, Value};
use crate::scale_out::tasked::TaskPlan;

/// The `dedup` processor's options; see the module docs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Upstream components (wired by the pipeline builder).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The fields whose values together are a record's identity.
    pub fields: Vec<String>,
    /// How long after an identity's first record its repeats are dropped:
    /// `"10m"`, `"30s"`, `"500ms"`, `"1h"`, `"1d"`.
    pub window: String,
    /// The event-time field (a `timestamp`); default `timestamp`.
    #[serde(default = "default_time_field")]
    pub time_field: String,
}

fn default_time_field() -> String {
    "timestamp".into()
}

/// A checked `dedup` configuration (see [`build`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupSpec {
    /// Input indices of the identity fields.
    fields: Vec<usize>,
    /// Input index of the time field.
    time: usize,
    /// The window, in milliseconds (positive, at most `i64::MAX`).
    window_ms: u64,
    width: usize,
}

impl DedupSpec {
    /// The window in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }
}

/// Checks `config` against the `input` schema; returns the spec and the
/// output schema (the input's).
pub fn build(config: &DedupConfig, input: &Schema) -> Result<(DedupSpec, Schema), OptionError> {
    if config.fields.is_empty() {
        return Err(OptionError::new(
            "fields",
            "name at least one field: the identity of a record",
        ));
    }
    let fields = config
        .fields
        .iter()
        .map(|name| input.lookup(name).map(|(index, _)| index))
        .collect::<Result<Vec<usize>, String>>()
        .map_err(|message| OptionError::new("fields", message))?;
    let (time, ty) = input
        .lookup(&config.time_field)
        .map_err(|message| OptionError::new("time_field", message))?;
    if ty != Type::Timestamp {
        return Err(OptionError::new(
            "time_field",
            format!(
                "`{}` is a {ty}; the event time must be a timestamp",
                config.time_field
            ),
        ));
    }
    let window_ms = crate::duration::parse_positive_ms(&config.window)
        .map_err(|message| OptionError::new("window", message))?;
    let spec = DedupSpec {
        fields,
        time,
        window_ms,
        width: input.len(),
    };
    Ok((spec, input.clone()))
}

/// The identity hash of `row` under `spec`: the hash to partition the
/// dedup's input by (`Partition::hash(move |row| partition_hash(&spec,
/// row))`), equal to the hash the operator keys its state by
/// ([`ArchivedRow::hash_fields`] of the identity fields).
pub fn partition_hash(spec: &DedupSpec, row: &Row) -> u64 {
    row.hash_fields(&spec.fields)
}

/// What [`Dedup`] snapshots; see the module docs.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct DedupState {
    /// (identity hash, first-seen time), sorted by hash, no repeats.
    entries: Vec<(u64, i64)>,
    /// The held records, in release order.
    held: Vec<Row>,
    /// Records released and kept but not yet handed to the runtime.
    released: Vec<Row>,
    /// The watermark so far (`i64::MIN` before the first).
    watermark: i64,
    /// Records dropped as repeats so far.
    dropped: u64,
}

/// A record held until the watermark passes its time.
///
/// Its order is the release order: by time, then identity hash, then the
/// row's values ([`cmp_slices`]). Two held records compare equal only when
/// their rows are identical, so the order leaves nothing to arrival.
#[derive(Debug)]
struct Held {
    time: i64,
    hash: u64,
    /// The record as it will be emitted: the schema's width.
    row: Row,
}

impl Ord for Held {
    fn cmp(&self, other: &Held) -> Ordering {
        self.time
            .cmp(&other.time)
            .then(self.hash.cmp(&other.hash))
            .then_with(|| cmp_slices(&self.row.values, &other.row.values))
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Held {}

/// The `dedup` operator; see the module docs.
#[derive(Debug)]
pub struct Dedup {
    spec: DedupSpec,
    window: i64,
    /// Identity hash → first-seen time of the live entries.
    first_seen: FxHashMap<u64, i64>,
    /// (first + window, hash), soonest first; an item whose entry has since
    /// restarted (or gone) is stale and skipped.
    expiry: BinaryHeap<Reverse<(i64, u64)>>,
    /// Records at or after the watermark, not yet decided, first to be
    /// released first.
    held: BinaryHeap<Reverse<Held>>,
    /// Records a watermark released and the rule kept, for `drain`.
    released: ClosedRows<Row>,
    /// The watermark so far, as a signed time.
    watermark: i64,
    dropped: u64,
    /// The output row, reused.
    out: Row,
    dropped_metric: Option<ShardCounter>,
    /// Scaled out ([`tasks`]): the identities whose entry started,
    /// restarted or expired since the changelog last took them.
    changed: Option<Vec<u64>>,
}

impl Dedup {
    /// A dedup for `spec` on `context`'s shard, counting the repeats it
    /// drops in `weir_dedup_dropped`.
    pub fn new(spec: DedupSpec, context: &ShardContext) -> Dedup {
        let mut dedup = Dedup::bare(spec);
        let counter = context.metrics.counter(
            "weir_dedup_dropped",
            "Records a dedup processor dropped as repeats.",
            &[("component", &*context.node)],
        );
        dedup.dropped_metric = Some(counter.for_shard(context.shard));
        dedup
    }

    fn bare(spec: DedupSpec) -> Dedup {
        Dedup {
            window: i64::try_from(spec.window_ms).unwrap_or(i64::MAX),
            out: Row::nulls(spec.width),
            spec,
            first_seen: FxHashMap::default(),
            expiry: BinaryHeap::new(),
            held: BinaryHeap::new(),
            released: ClosedRows::new(),
            watermark: i64::MIN,
            dropped: 0,
            dropped_metric: None,
            changed: None,
        }
    }

    /// Records dropped as repeats by this instance.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Identities tracked now.
    pub fn live(&self) -> usize {
        self.first_seen.len()
    }

    /// Records held until the watermark passes their time.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether `row` is emitted now. A record at or after the watermark is
    /// held (or dropped, when a live entry covers it); see the module docs.
    #[inline]
    fn accept(&mut self, row: &ArchivedRow) -> bool {
        let Some(time) = row.get(self.spec.time).as_timestamp() else {
            return true;
        };
        let hash = row.hash_fields(&self.spec.fields);
        if time < self.watermark {
            return self.admit(hash, time);
        }
        if self.covers(hash, time) {
            self.count_drop();
            return false;
        }
        let mut held = Row::default();
        copy_row(&mut held.values, row, self.spec.width);
        self.held.push(Reverse(Held {
            time,
            hash,
            row: held,
        }));
        false
    }

    /// Whether a live entry of identity `hash` drops a record at `time`
    /// (at or after the watermark) whatever is released before it.
    #[inline]
    fn covers(&self, hash: u64, time: i64) -> bool {
        self.first_seen.get(&hash).is_some_and(|&first| {
            // Entries start only below the watermark, by release or by a
            // late record, so none starts after a record not yet released.
            debug_assert!(first <= time, "entry at {first} after held {time}");
            time < first.saturating_add(self.window)
        })
    }

    /// The rule: whether a record of identity `hash` at `time` is emitted;
    /// updates the entries.
    #[inline]
    fn admit(&mut self, hash: u64, time: i64) -> bool {
        let expires = time.saturating_add(self.window);
        match self.first_seen.get_mut(&hash) {
            Some(first) if time < first.saturating_add(self.window) => {
                self.count_drop();
                return false;
            }
            Some(first) => *first = time,
            None if expires <= self.watermark => return true,
            None => {
                self.first_seen.insert(hash, time);
            }
        }
        self.expiry.push(Reverse((expires, hash)));
        if let Some(changed) = &mut self.changed {
            changed.push(hash);
        }
        true
    }

    fn count_drop(&mut self) {
        self.dropped += 1;
        if let Some(metric) = &self.dropped_metric {
            metric.inc();
        }
    }

    /// Raises the watermark to `watermark`: releases the held records
    /// before it, then expires the entries whose window ended.
    fn advance(&mut self, watermark: u64) {
        let watermark = i64::try_from(watermark).unwrap_or(i64::MAX);
        if watermark <= self.watermark {
            return;
        }
        self.release_through(watermark - 1);
        self.expire(watermark);
    }

    /// Applies the rule to the held records with a time at most `last`, in
    /// release order, and queues those it keeps.
    fn release_through(&mut self, last: i64) {
        while self
            .held
            .peek()
            .is_some_and(|Reverse(held)| held.time <= last)
        {
            let Some(Reverse(held)) = self.held.pop() else {
                break;
            };
            if self.admit(held.hash, held.time) {
                self.released.extend([held.row]);
            }
        }
    }

    /// Forgets the entries whose window ended at or before `watermark`,
    /// which becomes the watermark.
    fn expire(&mut self, watermark: i64) {
        self.watermark = watermark;
        while let Some(&Reverse((expires, hash))) = self.expiry.peek() {
            if expires > watermark {
                break;
            }
            self.expiry.pop();
            if let Some(&first) = self.first_seen.get(&hash) {
                if first.saturating_add(self.window) == expires {
                    self.first_seen.remove(&hash);
                    if let Some(changed) = &mut self.changed {
                        changed.push(hash);
                    }
                }
            }
        }
    }

    fn state(&self) -> DedupState {
        let mut entries: Vec<(u64, i64)> = self
            .first_seen
            .iter()
            .map(|(&hash, &first)| (hash, first))
            .collect();
        entries.sort_unstable();
        let mut held: Vec<&Held> = self.held.iter().map(|Reverse(held)| held).collect();
        held.sort_unstable();
        DedupState {
            entries,
            held: held.into_iter().map(|held| held.row.clone()).collect(),
            released: self.released.pending().to_vec(),
            watermark: self.watermark,
            dropped: self.dropped,
        }
    }

    /// A held record of a snapshot, checked against the spec and the
    /// snapshot's `watermark`.
    fn held_of(&self, row: Row, watermark: i64) -> Result<Held, String> {
        if row.values.len() != self.spec.width {
            return Err(format!("a held record has {} fields", row.values.len()));
        }
        let Value::Timestamp(time) = row.values[self.spec.time] else {
            return Err("a held record has no time".into());
        };
        if time < watermark {
            return Err(format!("a held record at {time} is behind the watermark"));
        }
        let hash = row.hash_fields(&self.spec.fields);
        Ok(Held { time, hash, row })
    }

    /// Replaces the state by `state`, if it is valid for this spec.
    fn replace(&mut self, state: DedupState) -> Result<(), String> {
        if !state.entries.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err("entries out of order or repeated".into());
        }
        let held = state
            .held
            .into_iter()
            .map(|row| self.held_of(row, state.watermark))
            .collect::<Result<Vec<Held>, String>>()?;
        if !held.windows(2).all(|pair| pair[0] <= pair[1]) {
            return Err("held records out of release order".into());
        }
        if let Some(row) = state
            .released
            .iter()
            .find(|row| row.values.len() != self.spec.width)
        {
            return Err(format!("a released record has {} fields", row.values.len()));
        }
        self.first_seen = state.entries.iter().copied().collect();
        self.expiry = state
            .entries
            .iter()
            .map(|&(hash, first)| Reverse((first.saturating_add(self.window), hash)))
            .collect();
        self.held = held.into_iter().map(Reverse).collect();
        self.released.replace(state.released);
        self.watermark = state.watermark;
        self.dropped = state.dropped;
        Ok(())
    }
}

impl Processor for Dedup {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            if self.accept(row) {
                copy_row(&mut self.out.values, row, self.spec.width);
                out.push(&self.out);
            }
        }
    }

    fn on_watermark(&mut self, watermark: u64, _out: &mut Emitter<Row>) {
        // What the watermark releases goes out through `drain`, a batch at
        // a time: a watermark after a long pause can release a lot.
        self.advance(watermark);
    }

    fn drain(&mut self, out: &mut Emitter<Row>) -> bool {
        self.released.drain_into(out)
    }

    fn finish(&mut self, _out: &mut Emitter<Row>) {
        // The final watermark released every time but `i64::MAX`.
        self.release_through(i64::MAX);
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let bytes = rkyv::to_bytes::<rancor::Error>(&self.state())
            .map_err(|error| OperatorError::other(format!("dedup state: {error}")))?;
        Ok(bytes.to_vec())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        // The bytes come from disk: validate them.
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let state = rkyv::from_bytes::<DedupState, rancor::BoxedError>(&aligned)
            .map_err(|error| OperatorError::invalid(format!("dedup state: {error}")))?;
        self.replace(state)
            .map_err(|message| OperatorError::invalid(format!("dedup state: {message}")))
    }
}

impl Component for DedupConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let (spec, output) = build(self, &context.schema())?;
        let mut fingerprint = state_options("dedup", self, &["fields"]);
        // The window as written may vary ("10m", "600s"); its length is
        // what shapes the state.
        fingerprint.push(("window_ms".into(), spec.window_ms().to_string()));
        if let Some(plan) = context.group {
            let tasks = TaskPlan::new(plan, context.name, "dedup", &self.fields, &self.inputs)?;
            let node = tasks::TaskedDedup {
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

    fn outputs_despite_error(&self, input: &crate::row::SchemaRef) -> Option<Vec<Output>> {
        // A dedup's output is its input.
        Some(vec![Output::rows(input.as_ref().clone())])
    }
}

impl Node for Stateful<DedupSpec> {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let Stateful { spec, fingerprint } = self.clone();
        connect_hashed(graph, name, inputs, &spec, partition_hash);
        graph
            .processor(name, move |context| Dedup::new(spec.clone(), context))
            .state_fingerprint(fingerprint);
    }
}

#[cfg(test)]
mod tests;

pub mod tasks;
