//! [`WindowJoin`]: a window join (see the module docs of
//! [`join`](super)): rows of both sides by window and key, every pair of
//! equal keys in a window emitted when the window fires.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rustc_hash::FxHashMap;
use weir_runtime::{Batch, Emitter, OperatorError, Processor};

use super::{
    send_late, side_of, state_bytes, state_from, JoinKind, JoinSpec, Windows, LEFT, RIGHT,
};
use crate::row::{ArchivedRow, Row, Value};

/// One window's rows of one key hash (keys that collide share it and are
/// told apart by value when paired).
#[derive(Debug, Default)]
struct Group {
    rows: [Vec<Row>; 2],
}

/// A session: one key's rows closer than the gap, from `start` to the
/// last row's time plus the gap.
#[derive(Debug)]
struct Session {
    start: i64,
    end: i64,
    /// `None` for a left row with a null key in a left join: it matches
    /// nothing, so it is a session of its own.
    key: Option<Vec<Value>>,
    rows: [Vec<Row>; 2],
}

/// A kept row, as a snapshot holds it.
#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Kept {
    start: i64,
    end: i64,
    side: u8,
    row: Row,
}

#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct WindowJoinState {
    watermark: u64,
    rows: Vec<Kept>,
}

/// One instance of a window join.
#[derive(Debug)]
pub struct WindowJoin {
    spec: JoinSpec,
    windows: Windows,
    /// Tumbling and sliding windows by `(end, start)`, then key hash.
    open: BTreeMap<(i64, i64), FxHashMap<u64, Group>>,
    /// Sessions by key hash.
    sessions: FxHashMap<u64, Vec<Session>>,
    /// `(end, key hash)` of every session, earliest first; stale entries
    /// (a session merged or moved since) are skipped.
    session_ends: BinaryHeap<Reverse<(i64, u64)>>,
    watermark: u64,
    out: Row,
}

impl WindowJoin {
    /// An empty window join.
    ///
    /// # Panics
    /// If `spec` is not a window join's.
    pub fn new(spec: JoinSpec) -> WindowJoin {
        let JoinKind::Window(windows) = spec.kind else {
            panic!("not a window join: {:?}", spec.kind);
        };
        WindowJoin {
            spec,
            windows,
            open: BTreeMap::new(),
            sessions: FxHashMap::default(),
            session_ends: BinaryHeap::new(),
            watermark: 0,
            out: Row::default(),
        }
    }

    fn watermark_ms(&self) -> i64 {
        i64::try_from(self.watermark).unwrap_or(i64::MAX)
    }

    /// The `(start, end)` of each tumbling or sliding window holding
    /// `time` that has not fired.
    fn windows_of(&self, time: i64) -> Vec<(i64, i64)> {
        let (size, slide) = match self.windows {
            Windows::Tumbling { size } => (size, size),
            Windows::Sliding { size, slide } => (size, slide),
            Windows::Session { .. } => return Vec::new(),
        };
        let watermark = self.watermark_ms();
        let last = time.div_euclid(slide) * slide;
        let mut windows = Vec::new();
        let mut start = last;
        while start > time - size {
            let end = start.saturating_add(size);
            if end > watermark {
                windows.push((start, end));
            }
            start -= slide;
        }
        windows
    }

    fn arrive(&mut self, side: usize, archived: &ArchivedRow, out: &mut Emitter<Row>) {
        let times = self.spec.times.expect("a window join has times");
        let Some(time) = archived.get(times[side]).as_timestamp() else {
            return send_late(side, archived, out);
        };
        match self.windows {
            Windows::Session { gap } => {
                if time.saturating_add(gap) <= self.watermark_ms() {
                    return send_late(side, archived, out);
                }
                self.add_to_session(side, time, gap, archived.to_row());
            }
            _ => {
                let windows = self.windows_of(time);
                if windows.is_empty() {
                    return send_late(side, archived, out);
                }
                let row = archived.to_row();
                let hash = row.hash_fields(&self.spec.keys[side]);
                for (start, end) in windows {
                    let group = self
                        .open
                        .entry((end, start))
                        .or_default()
                        .entry(hash)
                        .or_default();
                    group.rows[side].push(row.clone());
                }
            }
        }
    }

    /// Adds a row at `time` to its key's sessions, merging every session
    /// its own `[time, time + gap)` overlaps.
    fn add_to_session(&mut self, side: usize, time: i64, gap: i64, row: Row) {
        let key = session_key(&self.spec.keys[side], &row);
        if key.is_none() && !(side == LEFT && self.spec.left_outer) {
            // A null key matches nothing: only a left join emits the row.
            return;
        }
        let hash = row.hash_fields(&self.spec.keys[side]);
        let sessions = self.sessions.entry(hash).or_default();
        let (mut start, mut end) = (time, time.saturating_add(gap));
        let mut rows: [Vec<Row>; 2] = Default::default();
        let mut index = 0;
        while index < sessions.len() {
            let session = &sessions[index];
            if key.is_some() && session.key == key && session.start < end && start < session.end {
                let merged = sessions.swap_remove(index);
                start = start.min(merged.start);
                end = end.max(merged.end);
                for (all, some) in rows.iter_mut().zip(merged.rows) {
                    all.extend(some);
                }
                // The merged session may now reach others: look again.
                index = 0;
            } else {
                index += 1;
            }
        }
        rows[side].push(row);
        let session = Session {
            start,
            end,
            key,
            rows,
        };
        open_session(sessions, &mut self.session_ends, hash, session);
    }

    /// Emits every pair of equal keys among `rows` in window
    /// `[start, end)`, and with a left join each left row that has none.
    fn fire(&mut self, start: i64, end: i64, rows: &[Vec<Row>; 2], out: &mut Emitter<Row>) {
        let spec = &self.spec;
        for left in &rows[LEFT] {
            let mut matched = false;
            if !spec.null_key(LEFT, left) {
                for right in &rows[RIGHT] {
                    if spec.keys_equal(left, right) {
                        matched = true;
                        push(&mut self.out, spec, start, end, left, Some(right), out);
                    }
                }
            }
            if spec.left_outer && !matched {
                push(&mut self.out, spec, start, end, left, None, out);
            }
        }
    }

    fn state(&self) -> WindowJoinState {
        let mut rows = Vec::new();
        for (&(end, start), groups) in &self.open {
            for group in groups.values() {
                for (side, side_rows) in group.rows.iter().enumerate() {
                    for row in side_rows {
                        rows.push(Kept {
                            start,
                            end,
                            side: side as u8,
                            row: row.clone(),
                        });
                    }
                }
            }
        }
        for sessions in self.sessions.values() {
            for session in sessions {
                for (side, side_rows) in session.rows.iter().enumerate() {
                    for row in side_rows {
                        rows.push(Kept {
                            start: session.start,
                            end: session.end,
                            side: side as u8,
                            row: row.clone(),
                        });
                    }
                }
            }
        }
        WindowJoinState {
            watermark: self.watermark,
            rows,
        }
    }
}

/// Adds `session` to its key hash's `sessions`, and its end to `ends`.
fn open_session(
    sessions: &mut Vec<Session>,
    ends: &mut BinaryHeap<Reverse<(i64, u64)>>,
    hash: u64,
    session: Session,
) {
    ends.push(Reverse((session.end, hash)));
    sessions.push(session);
}

/// The values of `row`'s key fields, or `None` if one is null.
fn session_key(keys: &[usize], row: &Row) -> Option<Vec<Value>> {
    keys.iter()
        .map(|&index| match row.values.get(index) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.clone()),
        })
        .collect()
}

/// Emits `window_start, window_end`, `left`, then `right` (or nulls).
fn push(
    scratch: &mut Row,
    spec: &JoinSpec,
    start: i64,
    end: i64,
    left: &Row,
    right: Option<&Row>,
    out: &mut Emitter<Row>,
) {
    let values = &mut scratch.values;
    values.clear();
    values.push(Value::Timestamp(start));
    values.push(Value::Timestamp(end));
    values.extend_from_slice(&left.values);
    values.resize(2 + spec.left_width, Value::Null);
    match right {
        Some(right) => values.extend_from_slice(&right.values),
        None => values.resize(2 + spec.left_width + spec.right_width, Value::Null),
    }
    out.push(scratch);
}

impl Processor for WindowJoin {
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
        let watermark = self.watermark_ms();
        while let Some(entry) = self.open.first_entry() {
            let (end, start) = *entry.key();
            if end > watermark {
                break;
            }
            let groups = entry.remove();
            for group in groups.values() {
                self.fire(start, end, &group.rows, out);
            }
        }
        while let Some(&Reverse((end, hash))) = self.session_ends.peek() {
            if end > watermark {
                break;
            }
            self.session_ends.pop();
            let Some(sessions) = self.sessions.get_mut(&hash) else {
                continue;
            };
            let mut due = Vec::new();
            let mut index = 0;
            while index < sessions.len() {
                if sessions[index].end <= watermark {
                    due.push(sessions.swap_remove(index));
                } else {
                    index += 1;
                }
            }
            if sessions.is_empty() {
                self.sessions.remove(&hash);
            }
            for session in due {
                self.fire(session.start, session.end, &session.rows, out);
            }
        }
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        state_bytes(&self.state())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        let state: WindowJoinState = state_from(bytes, "window")?;
        self.watermark = state.watermark;
        self.open.clear();
        self.sessions.clear();
        self.session_ends.clear();
        for Kept {
            start,
            end,
            side,
            row,
        } in state.rows
        {
            let side = usize::from(side).min(RIGHT);
            let hash = row.hash_fields(&self.spec.keys[side]);
            match self.windows {
                Windows::Session { .. } => {
                    let key = session_key(&self.spec.keys[side], &row);
                    let sessions = self.sessions.entry(hash).or_default();
                    let found = sessions.iter_mut().find(|session| {
                        key.is_some() && session.start == start && session.key == key
                    });
                    match found {
                        Some(session) => session.rows[side].push(row),
                        None => {
                            let mut rows: [Vec<Row>; 2] = Default::default();
                            rows[side].push(row);
                            let session = Session {
                                start,
                                end,
                                key,
                                rows,
                            };
                            open_session(sessions, &mut self.session_ends, hash, session);
                        }
                    }
                }
                _ => {
                    let group = self
                        .open
                        .entry((end, start))
                        .or_default()
                        .entry(hash)
                        .or_default();
                    group.rows[side].push(row);
                }
            }
        }
        Ok(())
    }
}
