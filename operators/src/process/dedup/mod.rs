//! The `dedup` processor: lets through the first record of each identity
//! and drops its repeats for a window of event time.
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
//! A record whose identity has no live entry is emitted and starts one:
//! `first = its event time`. A later record of that identity is dropped
//! when its event time is before `first + window` (also when it is earlier
//! than `first`: an out-of-order repeat), and emitted otherwise, restarting
//! the entry at its time. An entry expires, and is forgotten, when the
//! watermark reaches `first + window`; a record arriving after that is
//! emitted (a record already behind the watermark by more than the window
//! is emitted and starts no entry). Output records are the input records,
//! unchanged: the output schema is the input schema. A record whose time
//! field is null is emitted and not tracked.
//!
//! Identity fields may be of any type; a null is a value like any other
//! (two records both null in a field agree on it).
//!
//! # Identity is a 64-bit hash
//! The state keys each identity by the 64-bit FNV-1a hash of its fields
//! (the hash [`partition_hash`] returns and the runtime partitions by), not
//! by the values themselves. Two different identities with the same hash
//! look like one: the second is dropped as a repeat. With `n` identities
//! live at once the chance that any two collide is about `n² / 2⁶⁵`: 3·10⁻⁸
//! for a million, 3·10⁻⁴ for a hundred million. This is the price of a
//! fixed-size entry.
//!
//! # Memory
//! One entry per identity live in the window: a hash-map slot (16 bytes of
//! key and time, plus table overhead) and an expiry-heap slot (16 bytes),
//! about 40 to 60 bytes in all. The live identities are those first seen in
//! the last `window` of event time plus the watermark's lag, so memory is
//! bounded by (distinct identities per window) × ~60 bytes per instance;
//! partition the input by [`partition_hash`] so each identity lives on one
//! shard. There is no other cap: a window much longer than the cardinality
//! of the stream allows grows without bound.
//!
//! # State
//! `snapshot` writes the live entries (hash, first-seen time) sorted by
//! hash, the watermark and the drop count with rkyv; `restore` validates the
//! bytes (they come from disk) and rebuilds the expiry heap, so a restored
//! instance goes on exactly as the snapshotted one would.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rkyv::rancor;
use rustc_hash::FxHashMap;
use weir_runtime::metrics::ShardCounter;
use weir_runtime::{Batch, Emitter, Processor, ShardContext, StateError};

use super::copy_row;
use crate::row::{ArchivedRow, OptionError, Row, Schema, Type};

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
    /// The watermark so far (`i64::MIN` before the first).
    watermark: i64,
    /// Records dropped as repeats so far.
    dropped: u64,
}

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
    /// The watermark so far, as a signed time.
    watermark: i64,
    dropped: u64,
    /// The output row, reused.
    out: Row,
    dropped_metric: Option<ShardCounter>,
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
            watermark: i64::MIN,
            dropped: 0,
            dropped_metric: None,
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

    /// Whether a record of identity `hash` at `time` is emitted; updates
    /// the state.
    #[inline]
    fn admit(&mut self, hash: u64, time: i64) -> bool {
        let expires = time.saturating_add(self.window);
        match self.first_seen.get_mut(&hash) {
            Some(first) if time < first.saturating_add(self.window) => {
                self.dropped += 1;
                if let Some(metric) = &self.dropped_metric {
                    metric.inc();
                }
                return false;
            }
            Some(first) => *first = time,
            None if expires <= self.watermark => return true,
            None => {
                self.first_seen.insert(hash, time);
            }
        }
        self.expiry.push(Reverse((expires, hash)));
        true
    }

    /// Forgets the entries whose window ended at or before `watermark`.
    fn expire(&mut self, watermark: u64) {
        let watermark = i64::try_from(watermark).unwrap_or(i64::MAX);
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        while let Some(&Reverse((expires, hash))) = self.expiry.peek() {
            if expires > watermark {
                break;
            }
            self.expiry.pop();
            if let Some(&first) = self.first_seen.get(&hash) {
                if first.saturating_add(self.window) == expires {
                    self.first_seen.remove(&hash);
                }
            }
        }
    }

    /// The record to emit for `row`, if any.
    #[inline]
    fn apply(&mut self, row: &ArchivedRow) -> bool {
        match row.get(self.spec.time).as_timestamp() {
            Some(time) => self.admit(row.hash_fields(&self.spec.fields), time),
            None => true,
        }
    }

    fn state(&self) -> DedupState {
        let mut entries: Vec<(u64, i64)> = self
            .first_seen
            .iter()
            .map(|(&hash, &first)| (hash, first))
            .collect();
        entries.sort_unstable();
        DedupState {
            entries,
            watermark: self.watermark,
            dropped: self.dropped,
        }
    }
}

impl Processor for Dedup {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            if self.apply(row) {
                copy_row(&mut self.out.values, row, self.spec.width);
                out.push(&self.out);
            }
        }
    }

    fn on_watermark(&mut self, watermark: u64, _out: &mut Emitter<Row>) {
        self.expire(watermark);
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, StateError> {
        let bytes = rkyv::to_bytes::<rancor::Error>(&self.state())
            .map_err(|error| StateError(format!("dedup state: {error}")))?;
        Ok(bytes.to_vec())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        // The bytes come from disk: validate them.
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let state = rkyv::from_bytes::<DedupState, rancor::Error>(&aligned)
            .map_err(|error| StateError(format!("dedup state: {error}")))?;
        if !state.entries.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err(StateError(
                "dedup state: entries out of order or repeated".into(),
            ));
        }
        self.first_seen = state.entries.iter().copied().collect();
        self.expiry = state
            .entries
            .iter()
            .map(|&(hash, first)| Reverse((first.saturating_add(self.window), hash)))
            .collect();
        self.watermark = state.watermark;
        self.dropped = state.dropped;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
