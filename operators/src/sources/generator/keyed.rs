//! [`KeyedGenerator`]: the `generator` source with `keys`, emitting rows of
//! [`event_schema`] (`body` null).
//!
//! Event `id` is a pure function of the configuration and the id:
//! - key: `keys[mix(seed ^ id) % keys.len()]`;
//! - event time: `start_ms + id * 1000 / events_per_second` (milliseconds,
//!   computed in 128 bits, saturating), never the wall clock.
//!
//! Instance `i` of `n` emits the ids `i, i + n, i + 2n, ...` (below `count`
//! when bounded), so the union over instances is every id exactly once and
//! all instances move through event time together.
//!
//! # Position and replay
//! An instance's position is the next id it will emit
//! ([`KeyedGenerator::next_id`]; as a [`Source`], 8 little-endian bytes).
//! [`KeyedGenerator::resume`] (or `Source::restore`) starts an instance at a
//! position, and what it emits from there, records
//! and watermarks alike, equals the suffix of an uninterrupted run: every
//! output depends only on the ids, never on how polls were split or on an
//! earlier state.
//!
//! # Watermarks
//! Before emitting id `j` the instance emits watermark
//! `w(j) = floor(ts(j) / WATERMARK_INTERVAL_MS) * WATERMARK_INTERVAL_MS`
//! if `w(j)` is greater than `w(j - n)` (the watermark due at this
//! instance's previous id; nothing is due before the first id). Since event
//! time never decreases with the id, no later record of the instance is
//! older than a watermark it emitted. The runtime's end of stream carries
//! the final watermark of a bounded run.
//!
//! # Rate
//! With `rate` set, each instance emits at most `rate / n` events per second
//! of wall-clock time since its first poll, and answers
//! [`SourcePoll::Idle`] while it is ahead of that schedule.

use std::time::Instant;

use weir_runtime::{Emitter, OperatorError, ShardContext, Source, SourcePoll};

use serde::Deserialize;

use super::mix;
use crate::component::{Component, Input, Node, Output, PlanContext, Planned};
use crate::limits::KEYS_MAX;
use crate::row::{OptionError, Row, Value};
use crate::sources::events::{event_schema, KEY};
use crate::sources::numbered::{
    check_count_and_rate, check_position, id_position, position_id, InvalidPosition, Pace,
    WATERMARK_INTERVAL_MS,
};

/// A deterministic generator of keyed events; see
/// [`KeyedGenerator`](crate::sources::generator::KeyedGenerator).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Events over all shards; `None` means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The keys events are spread over.
    pub keys: Vec<String>,
    /// Event-time rate: event `id` has time
    /// `start_ms + id * 1000 / events_per_second`.
    pub events_per_second: u64,
    /// Event time of event 0, in milliseconds.
    #[serde(default)]
    pub start_ms: u64,
    /// Seed of the key choice.
    #[serde(default)]
    pub seed: u64,
    /// Wall-clock limit in events per second over all shards; `None` means
    /// as fast as possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
}

impl Component for GeneratorConfig {
    fn check(&self, _name: &str) -> Result<(), OptionError> {
        if self.keys.is_empty() || self.keys.len() > KEYS_MAX {
            return Err(OptionError::new(
                "keys",
                format!("`keys` must hold 1 to {KEYS_MAX} keys"),
            ));
        }
        if self.events_per_second == 0 {
            return Err(OptionError::new(
                "events_per_second",
                "`events_per_second` must be positive",
            ));
        }
        check_count_and_rate(self.count, self.rate)
    }

    fn plan(&self, _context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        Ok(Planned::new(
            vec![Output::rows(event_schema())],
            self.clone(),
        ))
    }
}

impl Node for GeneratorConfig {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, _inputs: &[Input]) {
        let generator = self.clone();
        graph.source(name, move |context| {
            KeyedGenerator::new(&generator, context)
        });
    }
}

/// What one [`KeyedGenerator::fill`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// A watermark to emit before the records.
    pub watermark: Option<u64>,
    /// Records written to the front of the buffer.
    pub records: usize,
    /// No id remains after these records.
    pub exhausted: bool,
}

/// One instance of a configured generator; see the module docs.
#[derive(Debug)]
pub struct KeyedGenerator {
    keys: Vec<String>,
    seed: u64,
    start_ms: u64,
    events_per_second: u64,
    /// First id not emitted, over all instances: `count`, or `u64::MAX`.
    end: u64,
    next: u64,
    instance: u64,
    step: u64,
    pace: Pace,
    /// Rows of one poll. Their `key` strings are overwritten in place, so
    /// steady state allocates nothing.
    pending: Vec<Row>,
}

impl KeyedGenerator {
    /// Instance `context.instance` of `context.instances`, from the start.
    pub fn new(config: &GeneratorConfig, context: &ShardContext) -> KeyedGenerator {
        KeyedGenerator::resume(
            config,
            context.instance,
            context.instances,
            context.instance as u64,
        )
    }

    /// Instance `instance` of `instances`, resuming at `position` (a value
    /// of [`next_id`](KeyedGenerator::next_id) of the same instance).
    ///
    /// # Panics
    /// If `keys` is empty, `events_per_second` is zero, `instance` is not
    /// below `instances`, or `position` is not one of this instance's ids
    /// (`position % instances != instance`): those are checked by the
    /// configuration, or come from a corrupt snapshot.
    pub fn resume(
        config: &GeneratorConfig,
        instance: usize,
        instances: usize,
        position: u64,
    ) -> KeyedGenerator {
        assert!(!config.keys.is_empty(), "a generator needs keys");
        assert!(
            config.events_per_second > 0,
            "events_per_second must be positive"
        );
        assert!(instance < instances, "instance {instance} of {instances}");
        let mut generator = KeyedGenerator {
            keys: config.keys.clone(),
            seed: config.seed,
            start_ms: config.start_ms,
            events_per_second: config.events_per_second,
            end: config.count.unwrap_or(u64::MAX),
            next: instance as u64,
            instance: instance as u64,
            step: instances as u64,
            pace: Pace::new(config.rate, instances),
            pending: Vec::new(),
        };
        if let Err(error) = generator.seek(position) {
            panic!("{error}");
        }
        generator
    }

    /// Moves to `position` (the next id to emit), as [`resume`](Self::resume)
    /// does, for a generator already made; the rate schedule starts again.
    pub fn seek(&mut self, position: u64) -> Result<(), InvalidPosition> {
        check_position(position, self.instance, self.step)?;
        self.next = position;
        self.pace.restart();
        Ok(())
    }

    /// The next id this instance emits: what an epoch records, and what
    /// [`resume`](KeyedGenerator::resume) and [`seek`](KeyedGenerator::seek)
    /// take.
    pub fn next_id(&self) -> u64 {
        self.next
    }

    /// Event time of `id`, in milliseconds.
    pub fn event_time_ms(&self, id: u64) -> u64 {
        let offset = u128::from(id) * 1000 / u128::from(self.events_per_second);
        self.start_ms
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// The key of `id`.
    pub fn key_of(&self, id: u64) -> &str {
        &self.keys[(mix(self.seed ^ id) % self.keys.len() as u64) as usize]
    }

    /// The watermark due before `id`: event time rounded down to the
    /// watermark interval.
    fn watermark_of(&self, id: u64) -> u64 {
        let ts = self.event_time_ms(id);
        ts - ts % WATERMARK_INTERVAL_MS
    }

    /// Whether this instance has no id left to emit.
    pub fn is_exhausted(&self) -> bool {
        self.next >= self.end
    }

    /// Generates up to `room` records into `records[..fill.records]`,
    /// stopping before an id that is due a new watermark, which the next
    /// call returns first. Independent of the wall clock.
    pub fn fill(&mut self, room: usize, records: &mut Vec<Row>) -> Fill {
        let mut fill = Fill {
            watermark: None,
            records: 0,
            exhausted: self.is_exhausted(),
        };
        if fill.exhausted {
            return fill;
        }
        let mut watermark = self.watermark_of(self.next);
        if self.next >= self.step && watermark > self.watermark_of(self.next - self.step) {
            fill.watermark = Some(watermark);
        }
        while fill.records < room && self.next < self.end {
            if fill.records > 0 {
                let due = self.watermark_of(self.next);
                if due > watermark {
                    break;
                }
                watermark = due;
            }
            self.write_record(fill.records, records);
            fill.records += 1;
            self.next = self.next.saturating_add(self.step);
        }
        fill.exhausted = self.is_exhausted();
        self.pace.emitted(fill.records);
        fill
    }

    /// Writes id `self.next` at `records[index]`, reusing its key string.
    fn write_record(&self, index: usize, records: &mut Vec<Row>) {
        if index == records.len() {
            let mut row = Row::nulls(event_schema().len());
            row.values[KEY] = Value::String(String::new());
            records.push(row);
        }
        let values = &mut records[index].values;
        // Ids and times beyond i64 wrap, as a cast; a generator would need
        // 292 years of milliseconds or 2^63 events to get there.
        values[0] = Value::Int(self.next as i64);
        values[2] = Value::Timestamp(self.event_time_ms(self.next) as i64);
        if let Value::String(key) = &mut values[KEY] {
            key.clear();
            key.push_str(self.key_of(self.next));
        }
    }

    /// Records the rate allows at `now`, at most `room`: the schedule
    /// starts at the first call, allows one record at once and then
    /// `rate / instances` per second, counting what [`fill`](Self::fill)
    /// generated since.
    pub fn allowed(&mut self, room: usize, now: Instant) -> usize {
        self.pace.allowed(room, now)
    }
}

impl Source for KeyedGenerator {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        if self.is_exhausted() {
            return SourcePoll::Exhausted;
        }
        let room = self.allowed(out.batch_records_max(), Instant::now());
        if room == 0 {
            return SourcePoll::Idle;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let fill = self.fill(room, &mut pending);
        if let Some(watermark) = fill.watermark {
            out.watermark(watermark);
        }
        out.push_all(&pending[..fill.records]);
        self.pending = pending;
        SourcePoll::Ready
    }

    /// The next id, 8 bytes little-endian.
    fn position(&self) -> Vec<u8> {
        id_position(self.next_id())
    }

    /// Seeks to a logged [`position`](Source::position); refuses bytes that
    /// are not 8 long or name an id of another instance.
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        self.seek(position_id(position)?)
            .map_err(|error| OperatorError::invalid(error.to_string()))
    }
}
