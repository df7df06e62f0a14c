//! [`Join`]: the runtime operator of a `join` (see the module docs of
//! [`join`](super)): each side's rows by key hash, probed by the other
//! side's arrivals, and trimmed by the watermark.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use weir_runtime::{Batch, Emitter, OperatorError, Processor};

use super::{send_late, side_of, state_bytes, state_from, JoinSpec, LEFT, RIGHT};
use crate::row::{ArchivedRow, Row, Value};

/// A kept row.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Entry {
    /// The hash of its key.
    hash: u64,
    /// Its event time (0 in a regular join).
    time: i64,
    /// A left row that matched a right one (left joins emit the others).
    matched: bool,
    row: Row,
}

/// One side's kept rows.
#[derive(Debug, Default)]
struct Side {
    /// By key hash, each list in time order (rows of colliding keys share
    /// a list and are told apart by their key values), so the partners
    /// in an interval and the rows past the watermark are found by binary
    /// search, however many rows a hot key has.
    rows: FxHashMap<u64, Vec<Entry>>,
    /// `(the watermark past which it can go, key hash)` per kept row of an
    /// interval join, earliest first.
    expiry: BinaryHeap<Reverse<(i64, u64)>>,
}

/// Inserts `entry` after every entry of its time or earlier: at the end,
/// for rows that arrive in time order.
fn insert_in_time_order(entries: &mut Vec<Entry>, entry: Entry) {
    let at = entries.partition_point(|kept| kept.time <= entry.time);
    entries.insert(at, entry);
}

/// The watermark past which an entry of `side` at `time` can go, in a
/// join with `bounds` (never, in a regular join).
fn expires(bounds: Option<(i64, i64)>, side: usize, time: i64) -> i64 {
    let (lower, upper) = bounds.unwrap_or((i64::MIN, i64::MAX));
    if side == LEFT {
        time.saturating_add(upper)
    } else {
        time.saturating_sub(lower)
    }
}

/// `left` joined with `right` (nulls of `right_width` fields when `None`),
/// built in `scratch`.
fn joined<'a>(
    scratch: &'a mut Row,
    right_width: usize,
    left: &Row,
    right: Option<&Row>,
) -> &'a Row {
    let values = &mut scratch.values;
    values.clear();
    values.extend_from_slice(&left.values);
    match right {
        Some(right) => values.extend_from_slice(&right.values),
        None => values.resize(left.values.len() + right_width, Value::Null),
    }
    scratch
}

/// The state a snapshot holds.
#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct JoinState {
    watermark: u64,
    left: Vec<Entry>,
    right: Vec<Entry>,
}

/// One instance of a join.
#[derive(Debug)]
pub struct Join {
    spec: JoinSpec,
    sides: [Side; 2],
    watermark: u64,
    /// The output row being built.
    out: Row,
}

impl Join {
    /// An empty join.
    pub fn new(spec: JoinSpec) -> Join {
        Join {
            spec,
            sides: [Side::default(), Side::default()],
            watermark: 0,
            out: Row::default(),
        }
    }

    /// The watermark past which an entry of `side` at `time` can go.
    fn expires(&self, side: usize, time: i64) -> i64 {
        expires(self.spec.bounds, side, time)
    }

    /// Emits `left` joined with `right` (nulls when `None`).
    fn emit(&mut self, left: &Row, right: Option<&Row>, out: &mut Emitter<Row>) {
        out.push(joined(&mut self.out, self.spec.right_width, left, right));
    }

    fn arrive(&mut self, side: usize, row: &ArchivedRow, out: &mut Emitter<Row>) {
        let time = match self.spec.times {
            None => Some(0),
            Some(times) => row.get(times[side]).as_timestamp(),
        };
        let watermark = i64::try_from(self.watermark).unwrap_or(i64::MAX);
        let Some(time) = time.filter(|&time| self.spec.times.is_none() || time >= watermark) else {
            return send_late(side, row, out);
        };
        let row = row.to_row();
        let keys = &self.spec.keys[side];
        if self.spec.null_key(side, &row) {
            // Matches nothing, ever: a left join emits it alone now.
            if side == LEFT && self.spec.left_outer {
                self.emit(&row, None, out);
            }
            return;
        }
        let hash = row.hash_fields(keys);
        let other = 1 - side;
        let mut matched = false;
        let mut partners = self.sides[other].rows.remove(&hash).unwrap_or_default();
        let (spec, scratch) = (&self.spec, &mut self.out);
        // The partners' times a match needs: right in [left + lower,
        // left + upper], so left in [right - upper, right - lower].
        let (from, to) = match spec.bounds {
            None => (i64::MIN, i64::MAX),
            Some((lower, upper)) if side == LEFT => {
                (time.saturating_add(lower), time.saturating_add(upper))
            }
            Some((lower, upper)) => (time.saturating_sub(upper), time.saturating_sub(lower)),
        };
        let start = partners.partition_point(|entry| entry.time < from);
        let end = partners.partition_point(|entry| entry.time <= to);
        for entry in &mut partners[start..end.max(start)] {
            let (left, right) = if side == LEFT {
                ((time, &row), (entry.time, &entry.row))
            } else {
                ((entry.time, &entry.row), (time, &row))
            };
            // Every entry of the range is in the interval; only the key may differ.
            if !spec.keys_equal(left.1, right.1) {
                continue;
            }
            matched = true;
            entry.matched |= side == RIGHT;
            out.push(joined(scratch, spec.right_width, left.1, Some(right.1)));
        }
        if !partners.is_empty() {
            self.sides[other].rows.insert(hash, partners);
        }
        let expires = self.expires(side, time);
        let this = &mut self.sides[side];
        if self.spec.bounds.is_some() {
            this.expiry.push(Reverse((expires, hash)));
        }
        let entry = Entry {
            hash,
            time,
            matched: side == LEFT && matched,
            row,
        };
        insert_in_time_order(this.rows.entry(hash).or_default(), entry);
    }

    /// Drops the entries of `side` that no row still to come can match:
    /// those whose expiry is below the watermark; a left join emits its
    /// unmatched left rows as they go.
    fn trim(&mut self, side: usize, watermark: i64, out: &mut Emitter<Row>) {
        let bounds = self.spec.bounds;
        let mut gone = Vec::new();
        while let Some(&Reverse((due, hash))) = self.sides[side].expiry.peek() {
            if due >= watermark {
                break;
            }
            self.sides[side].expiry.pop();
            let Some(entries) = self.sides[side].rows.get_mut(&hash) else {
                continue;
            };
            // Expiry grows with time, and the list is in time order.
            let removed =
                entries.partition_point(|entry| expires(bounds, side, entry.time) < watermark);
            gone.extend(entries.drain(..removed));
            if entries.is_empty() {
                self.sides[side].rows.remove(&hash);
            }
        }
        if side == LEFT && self.spec.left_outer {
            for entry in gone.iter().filter(|entry| !entry.matched) {
                self.emit(&entry.row, None, out);
            }
        }
    }

    fn state(&self) -> JoinState {
        let entries = |side: &Side| -> Vec<Entry> {
            let mut entries: Vec<Entry> = side.rows.values().flatten().cloned().collect();
            // One order for one state, whatever the map's.
            entries.sort_by_key(|entry| (entry.hash, entry.time));
            entries
        };
        JoinState {
            watermark: self.watermark,
            left: entries(&self.sides[LEFT]),
            right: entries(&self.sides[RIGHT]),
        }
    }
}

impl Processor for Join {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        let side = side_of(port);
        for row in batch.iter() {
            self.arrive(side, row, out);
        }
    }

    fn on_watermark(&mut self, watermark: u64, out: &mut Emitter<Row>) {
        self.watermark = self.watermark.max(watermark);
        if self.spec.bounds.is_none() {
            return;
        }
        let watermark = i64::try_from(self.watermark).unwrap_or(i64::MAX);
        self.trim(LEFT, watermark, out);
        self.trim(RIGHT, watermark, out);
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        state_bytes(&self.state())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        let kind = if self.spec.bounds.is_some() {
            "interval"
        } else {
            "regular"
        };
        let state: JoinState = state_from(bytes, kind)?;
        self.watermark = state.watermark;
        self.sides = [Side::default(), Side::default()];
        for (side, entries) in [(LEFT, state.left), (RIGHT, state.right)] {
            for entry in entries {
                let expires = self.expires(side, entry.time);
                let this = &mut self.sides[side];
                if self.spec.bounds.is_some() {
                    this.expiry.push(Reverse((expires, entry.hash)));
                }
                insert_in_time_order(this.rows.entry(entry.hash).or_default(), entry);
            }
        }
        Ok(())
    }
}
