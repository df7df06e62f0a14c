//! [`TemporalJoin`]: an event-time temporal join (see the module docs of
//! [`join`](super)): the right input is a changing table, each of its rows
//! the version of its key from its time on; each left row is joined with
//! the version current at its own time, once the watermark shows every
//! version up to that time has arrived.

use rustc_hash::FxHashMap;
use weir_runtime::{Batch, Emitter, OperatorError, Processor};

use super::{send_late, side_of, state_bytes, state_from, JoinKind, JoinSpec, LEFT, RIGHT};
use crate::row::{ArchivedRow, Row, Value};

/// A kept row: its side, time and key hash.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Kept {
    side: u8,
    time: i64,
    /// The order it arrived in among rows of its side and time, so equal
    /// times resolve the same way after a restore.
    seq: u64,
    row: Row,
}

#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct TemporalState {
    watermark: u64,
    seq: u64,
    rows: Vec<Kept>,
}

/// One instance of a temporal join.
#[derive(Debug)]
pub struct TemporalJoin {
    spec: JoinSpec,
    /// Left rows waiting for the watermark to pass their time.
    waiting: Vec<Kept>,
    /// Versions by key hash, in `(time, seq)` order.
    versions: FxHashMap<u64, Vec<Kept>>,
    seq: u64,
    watermark: u64,
    out: Row,
}

impl TemporalJoin {
    /// An empty temporal join.
    ///
    /// # Panics
    /// If `spec` is not a temporal join's.
    pub fn new(spec: JoinSpec) -> TemporalJoin {
        assert_eq!(spec.kind, JoinKind::Temporal, "not a temporal join");
        TemporalJoin {
            spec,
            waiting: Vec::new(),
            versions: FxHashMap::default(),
            seq: 0,
            watermark: 0,
            out: Row::default(),
        }
    }

    fn watermark_ms(&self) -> i64 {
        i64::try_from(self.watermark).unwrap_or(i64::MAX)
    }

    fn arrive(&mut self, side: usize, archived: &ArchivedRow, out: &mut Emitter<Row>) {
        let times = self.spec.times.expect("a temporal join has times");
        let time = archived.get(times[side]).as_timestamp();
        let Some(time) = time.filter(|&time| time >= self.watermark_ms()) else {
            return send_late(side, archived, out);
        };
        self.seq += 1;
        let kept = Kept {
            side: side as u8,
            time,
            seq: self.seq,
            row: archived.to_row(),
        };
        if side == LEFT {
            self.waiting.push(kept);
        } else {
            self.insert_version(kept);
        }
    }

    fn insert_version(&mut self, kept: Kept) {
        let hash = kept.row.hash_fields(&self.spec.keys[RIGHT]);
        let versions = self.versions.entry(hash).or_default();
        let at = versions.partition_point(|v| (v.time, v.seq) <= (kept.time, kept.seq));
        versions.insert(at, kept);
    }

    /// The version of `left`'s key current at `time`: the latest at or
    /// before it (of equal times, the last to arrive).
    fn current<'a>(
        spec: &JoinSpec,
        versions: &'a FxHashMap<u64, Vec<Kept>>,
        left: &Row,
        time: i64,
    ) -> Option<&'a Row> {
        if spec.null_key(LEFT, left) {
            return None;
        }
        let hash = left.hash_fields(&spec.keys[LEFT]);
        versions
            .get(&hash)?
            .iter()
            .rev()
            .filter(|version| version.time <= time)
            .find(|version| spec.keys_equal(left, &version.row))
            .map(|version| &version.row)
    }

    /// Drops the versions no left row still to come can need: of each
    /// key's versions before the watermark, all but the latest.
    fn trim(&mut self, watermark: i64) {
        let keys = &self.spec.keys[RIGHT];
        self.versions.retain(|_, versions| {
            // Keys that collide share a list: keep the latest of each.
            let before = versions.partition_point(|v| v.time < watermark);
            if before > 1 {
                let mut keep = vec![false; before];
                let mut seen: Vec<Vec<&Value>> = Vec::new();
                for index in (0..before).rev() {
                    let key: Vec<&Value> = keys
                        .iter()
                        .map(|&k| versions[index].row.values.get(k).unwrap_or(&Value::Null))
                        .collect();
                    if !seen.contains(&key) {
                        seen.push(key);
                        keep[index] = true;
                    }
                }
                let mut index = 0;
                versions.retain(|_| {
                    let kept = index >= before || keep[index];
                    index += 1;
                    kept
                });
            }
            !versions.is_empty()
        });
    }

    fn state(&self) -> TemporalState {
        let mut rows = self.waiting.clone();
        for versions in self.versions.values() {
            rows.extend(versions.iter().cloned());
        }
        rows.sort_by_key(|kept| (kept.side, kept.time, kept.seq));
        TemporalState {
            watermark: self.watermark,
            seq: self.seq,
            rows,
        }
    }
}

impl Processor for TemporalJoin {
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
        // Every version at or before a waiting row's time has arrived once
        // the watermark passes that time.
        let (due, waiting): (Vec<Kept>, Vec<Kept>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|kept| kept.time < watermark);
        self.waiting = waiting;
        for kept in &due {
            let version = Self::current(&self.spec, &self.versions, &kept.row, kept.time);
            if version.is_none() && !self.spec.left_outer {
                continue;
            }
            let values = &mut self.out.values;
            values.clear();
            values.extend_from_slice(&kept.row.values);
            match version {
                Some(version) => values.extend_from_slice(&version.values),
                None => values.resize(self.spec.left_width + self.spec.right_width, Value::Null),
            }
            out.push(&self.out);
        }
        self.trim(watermark);
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        state_bytes(&self.state())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        let state: TemporalState = state_from(bytes, "temporal")?;
        self.watermark = state.watermark;
        self.seq = state.seq;
        self.waiting.clear();
        self.versions.clear();
        for kept in state.rows {
            if usize::from(kept.side) == LEFT {
                self.waiting.push(kept);
            } else {
                self.insert_version(kept);
            }
        }
        Ok(())
    }
}
