//! [`KeyedWindow`]: the `window` processor of pipeline files.
//!
//! Tumbling windows of `size_ms` milliseconds over the event time (`ts_ms`)
//! of [`GeneratedEvent`]s, grouped by one field, with the aggregates
//! `count` and `sum:FIELD` (a wrapping sum of `id` or `ts`). Window `w`
//! covers `[w * size_ms, (w + 1) * size_ms)` and closes when the watermark
//! reaches its end: it then yields one [`WindowRow`] per group, sorted by
//! group, handed to the runtime a batch at a time through
//! `Processor::drain` ([`ClosedRows`]).
//! An aggregate that is not configured is 0 in the rows.
//!
//! # Grouping
//! `group_by` may be any field of the event: `key` groups by the key string;
//! `id` and `ts` group by the number, written in decimal as the row's `key`
//! (so `group_by = "id"` yields one row per event: valid, if rarely useful).
//! [`KeyedWindowSpec::group_hash`] is the hash the edge into the window
//! partitions by, so every group lands on one shard.
//!
//! # Late events
//! An event whose window already closed is counted in no row and tallied in
//! [`KeyedWindow::late_events`].
//!
//! # State
//! `snapshot` writes the open windows (window → group → (count, sum)), the
//! first window not yet closed, the late tally and any rows not yet drained,
//! with rkyv; `restore` validates the bytes (they come from disk) and the
//! windows' order.

use super::closed_rows::ClosedRows;
use rkyv::rancor;
use rustc_hash::FxHashMap;
use weir_runtime::{Batch, Emitter, OperatorError, Processor, ShardContext};

use crate::latency::ProcessedLatency;

use crate::records::GeneratedEvent;
use crate::records::WindowRow;

/// A field of a [`GeneratedEvent`], as pipeline files name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventField {
    /// `id`.
    Id,
    /// `key`.
    Key,
    /// `ts` (the event time, `ts_ms`).
    Ts,
}

impl EventField {
    /// The field called `name` in a pipeline file.
    pub fn parse(name: &str) -> Option<EventField> {
        match name {
            "id" => Some(EventField::Id),
            "key" => Some(EventField::Key),
            "ts" => Some(EventField::Ts),
            _ => None,
        }
    }
}

/// What a [`KeyedWindow`] computes, checked once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedWindowSpec {
    /// Window length in milliseconds, positive.
    pub size_ms: u64,
    /// The field rows are grouped by.
    pub group_by: EventField,
    /// Whether rows carry the `count` aggregate.
    pub count: bool,
    /// The numeric field rows sum, if any.
    pub sum: Option<EventField>,
}

impl KeyedWindowSpec {
    /// The partitioning hash of `event`'s group: FNV-1a of the key's bytes,
    /// or the number itself; stable across runs and builds, so a restarted
    /// run sends every group to the shard that holds its state.
    pub fn group_hash(&self, event: &GeneratedEvent) -> u64 {
        match self.group_by {
            EventField::Key => fnv1a(event.key.as_bytes()),
            EventField::Id => event.id,
            EventField::Ts => event.ts_ms,
        }
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// One open window's groups: group → (count, sum).
type Table = FxHashMap<String, (u64, u64)>;

/// Tumbling-window aggregation of configured events; see the module docs.
#[derive(Debug)]
pub struct KeyedWindow {
    spec: KeyedWindowSpec,
    /// Open windows by index, ascending; rarely more than two.
    open: Vec<(u64, Table)>,
    /// Cleared tables of closed windows, for reuse.
    spare: Vec<Table>,
    /// Rows of closed windows not yet emitted, and how many were.
    closed_rows: ClosedRows<WindowRow>,
    /// First window not yet closed.
    closed_below: u64,
    late_events: u64,
    /// A numeric group written as text, reused.
    scratch: String,
    /// Where the latency of ingested events is recorded, if anywhere.
    latency: Option<ProcessedLatency>,
    /// Late events, as a metric.
    late_metric: Option<weir_runtime::metrics::ShardCounter>,
}

/// One open window in a snapshot: its index and `(group, count, sum)` rows.
type WindowState = (u64, Vec<(String, u64, u64)>);

/// What [`KeyedWindow`] snapshots; see the module docs.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct KeyedWindowState {
    /// (window, [(group, count, sum)]).
    windows: Vec<WindowState>,
    closed_below: u64,
    late_events: u64,
    /// Rows of closed windows not yet emitted:
    /// (start, end, group, count, sum).
    pending_rows: Vec<(u64, u64, String, u64, u64)>,
}

impl KeyedWindow {
    /// An empty window operator computing `spec`.
    ///
    /// # Panics
    /// If `spec.size_ms` is zero.
    pub fn new(spec: KeyedWindowSpec) -> KeyedWindow {
        assert!(spec.size_ms > 0, "window size must be positive");
        KeyedWindow {
            spec,
            open: Vec::new(),
            spare: Vec::new(),
            closed_rows: ClosedRows::new(),
            closed_below: 0,
            late_events: 0,
            scratch: String::new(),
            latency: None,
            late_metric: None,
        }
    }

    /// A window that records the latency of the ingested events it counts
    /// (see [`crate::latency`]) and its late events as metrics of
    /// `context`'s component.
    pub fn with_metrics(mut self, context: &ShardContext) -> KeyedWindow {
        self.latency = Some(ProcessedLatency::new(context));
        let late = context.metrics.counter(
            "weir_window_late_events",
            "Events that arrived after their window closed (counted in no row).",
            &[("component", &*context.node)],
        );
        self.late_metric = Some(late.for_shard(context.shard));
        self
    }

    /// Events that arrived after their window closed.
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Adds one event.
    fn add(&mut self, id: u64, key: &str, ts_ms: u64) {
        let window = ts_ms / self.spec.size_ms;
        if window < self.closed_below {
            self.late_events += 1;
            if let Some(late) = &self.late_metric {
                late.inc();
            }
            return;
        }
        let summed = match self.spec.sum {
            Some(EventField::Id) => id,
            Some(EventField::Ts) => ts_ms,
            _ => 0,
        };
        let group = match self.spec.group_by {
            EventField::Key => key,
            EventField::Id | EventField::Ts => {
                use std::fmt::Write;
                let number = if self.spec.group_by == EventField::Id {
                    id
                } else {
                    ts_ms
                };
                self.scratch.clear();
                let _ = write!(self.scratch, "{number}");
                self.scratch.as_str()
            }
        };
        let index = match self.open.iter().rposition(|(open, _)| *open == window) {
            Some(index) => index,
            None => {
                let table = self.spare.pop().unwrap_or_default();
                let at = self.open.partition_point(|(open, _)| *open < window);
                self.open.insert(at, (window, table));
                at
            }
        };
        let table = &mut self.open[index].1;
        let entry = match table.get_mut(group) {
            Some(entry) => entry,
            None => table.entry(group.to_owned()).or_insert((0, 0)),
        };
        entry.0 += 1;
        entry.1 = entry.1.wrapping_add(summed);
    }

    /// Closes every window that ends at or before `watermark`, queueing its
    /// rows sorted by group.
    fn close_until(&mut self, watermark: u64) {
        let size = self.spec.size_ms;
        let closing = self
            .open
            .iter()
            .take_while(|(window, _)| (window + 1).saturating_mul(size) <= watermark)
            .count();
        let (count, sum) = (self.spec.count, self.spec.sum.is_some());
        for (window, mut table) in self.open.drain(..closing) {
            let start = window * size;
            let end = start.saturating_add(size);
            let added = self
                .closed_rows
                .extend(table.drain().map(|(key, (c, s))| WindowRow {
                    window_start_ms: start,
                    window_end_ms: end,
                    key,
                    count: if count { c } else { 0 },
                    sum: if sum { s } else { 0 },
                }));
            added.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            self.spare.push(table);
            self.closed_below = window + 1;
        }
        self.closed_below = self.closed_below.max(watermark / size);
    }

    fn state(&self) -> KeyedWindowState {
        KeyedWindowState {
            windows: self
                .open
                .iter()
                .map(|(window, table)| {
                    let mut rows: Vec<(String, u64, u64)> = table
                        .iter()
                        .map(|(key, &(count, sum))| (key.clone(), count, sum))
                        .collect();
                    rows.sort_unstable();
                    (*window, rows)
                })
                .collect(),
            closed_below: self.closed_below,
            late_events: self.late_events,
            pending_rows: self
                .closed_rows
                .pending()
                .iter()
                .map(|row| {
                    let WindowRow {
                        window_start_ms,
                        window_end_ms,
                        key,
                        count,
                        sum,
                    } = row.clone();
                    (window_start_ms, window_end_ms, key, count, sum)
                })
                .collect(),
        }
    }
}

impl Processor for KeyedWindow {
    type Input = GeneratedEvent;
    type Output = WindowRow;

    fn process(
        &mut self,
        _port: usize,
        batch: &Batch<GeneratedEvent>,
        _out: &mut Emitter<WindowRow>,
    ) {
        if let Some(latency) = &self.latency {
            latency.observe(batch);
        }
        for event in batch.iter() {
            self.add(
                event.id.to_native(),
                event.key.as_str(),
                event.ts_ms.to_native(),
            );
        }
    }

    fn on_watermark(&mut self, watermark: u64, _out: &mut Emitter<WindowRow>) {
        self.close_until(watermark);
    }

    fn drain(&mut self, out: &mut Emitter<WindowRow>) -> bool {
        self.closed_rows.drain_into(out)
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let bytes = rkyv::to_bytes::<rancor::Error>(&self.state())
            .map_err(|error| OperatorError::other(error.to_string()))?;
        Ok(bytes.to_vec())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        // The bytes come from disk: validate them.
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let state = rkyv::from_bytes::<KeyedWindowState, rancor::BoxedError>(&aligned)
            .map_err(|error| OperatorError::invalid(format!("window state: {error}")))?;
        let ordered = state.windows.windows(2).all(|pair| pair[0].0 < pair[1].0);
        let open = state
            .windows
            .first()
            .is_none_or(|(window, _)| *window >= state.closed_below);
        if !ordered || !open {
            return Err(OperatorError::invalid(
                "window state: windows out of order or already closed",
            ));
        }
        self.open = state
            .windows
            .into_iter()
            .map(|(window, rows)| {
                let table = rows
                    .into_iter()
                    .map(|(key, count, sum)| (key, (count, sum)))
                    .collect();
                (window, table)
            })
            .collect();
        self.closed_below = state.closed_below;
        self.late_events = state.late_events;
        let pending = state
            .pending_rows
            .into_iter()
            .map(
                |(window_start_ms, window_end_ms, key, count, sum)| WindowRow {
                    window_start_ms,
                    window_end_ms,
                    key,
                    count,
                    sum,
                },
            )
            .collect();
        self.closed_rows.replace(pending);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::processors::window::{Aggregate, WindowConfig};

    fn spec(group_by: EventField, sum: Option<EventField>) -> KeyedWindowSpec {
        KeyedWindowSpec {
            size_ms: 100,
            group_by,
            count: true,
            sum,
        }
    }

    /// (id, key, ts) of a small in-order stream over three keys.
    fn events() -> Vec<(u64, String, u64)> {
        (0..1000)
            .map(|id| {
                (
                    id,
                    ["a", "b", "c"][(id * 7 % 3) as usize].to_owned(),
                    id * 3,
                )
            })
            .collect()
    }

    /// Feeds `events` with a watermark of each event's time rounded down to
    /// 50 ms before it, then the final watermark; returns every row.
    fn run(window: &mut KeyedWindow, events: &[(u64, String, u64)]) -> Vec<WindowRow> {
        for (id, key, ts) in events {
            window.close_until(ts - ts % 50);
            window.add(*id, key, *ts);
        }
        window.close_until(u64::MAX);
        window.closed_rows.take_all()
    }

    #[test]
    fn rows_equal_a_direct_computation() {
        let mut window = KeyedWindow::new(spec(EventField::Key, Some(EventField::Id)));
        let rows = run(&mut window, &events());
        let mut expected: BTreeMap<(u64, String), (u64, u64)> = BTreeMap::new();
        for (id, key, ts) in events() {
            let entry = expected.entry((ts / 100 * 100, key)).or_default();
            entry.0 += 1;
            entry.1 += id;
        }
        let got: BTreeMap<(u64, String), (u64, u64)> = rows
            .iter()
            .map(|row| {
                assert_eq!(row.window_end_ms, row.window_start_ms + 100);
                ((row.window_start_ms, row.key.clone()), (row.count, row.sum))
            })
            .collect();
        assert_eq!(got.len(), rows.len(), "a (window, key) emitted twice");
        assert_eq!(got, expected);
        // Rows come out by window, then by key.
        let order: Vec<(u64, String)> = rows
            .iter()
            .map(|row| (row.window_start_ms, row.key.clone()))
            .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(window.late_events(), 0);
    }

    #[test]
    fn numeric_groups_late_events_and_unconfigured_aggregates() {
        let mut window = KeyedWindow::new(KeyedWindowSpec {
            count: false,
            ..spec(EventField::Ts, None)
        });
        window.add(1, "x", 5);
        window.add(2, "y", 5);
        window.add(3, "x", 150);
        window.close_until(100);
        window.add(4, "x", 99); // window [0, 100) closed: late
        window.close_until(u64::MAX);
        let rows: Vec<(u64, &str, u64, u64)> = window
            .closed_rows
            .pending()
            .iter()
            .map(|row| (row.window_start_ms, row.key.as_str(), row.count, row.sum))
            .collect();
        assert_eq!(rows, vec![(0, "5", 0, 0), (100, "150", 0, 0)]);
        assert_eq!(window.late_events(), 1);
    }

    #[test]
    fn state_round_trips_and_garbage_is_refused() {
        let mut window = KeyedWindow::new(spec(EventField::Key, Some(EventField::Ts)));
        let events = events();
        let (before, after) = events.split_at(400);
        for (id, key, ts) in before {
            window.add(*id, key, *ts);
        }
        window.close_until(1000);
        window.late_events = 2;
        let bytes = window.snapshot(1).unwrap();
        let mut restored = KeyedWindow::new(spec(EventField::Key, Some(EventField::Ts)));
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.state(), window.state());
        // Both go on to the same rows.
        let expected = run(&mut window, after);
        assert_eq!(run(&mut restored, after), expected);

        let mut fresh = KeyedWindow::new(spec(EventField::Key, None));
        assert!(fresh.restore(&bytes[..bytes.len() / 2]).is_err());
        assert!(fresh.restore(b"not a window state at all").is_err());
        assert!(fresh.restore(&[]).is_err());
    }

    #[test]
    fn spec_from_config() {
        let config = |group_by: &str, aggregates: Vec<Aggregate>| WindowConfig {
            inputs: vec!["gen".into()],
            size_ms: 10,
            group_by: group_by.into(),
            aggregates,
        };
        let spec = KeyedWindowSpec::from_config(&config(
            "key",
            vec![Aggregate::Count, Aggregate::Sum("ts".into())],
        ))
        .unwrap();
        assert_eq!(
            spec,
            KeyedWindowSpec {
                size_ms: 10,
                group_by: EventField::Key,
                count: true,
                sum: Some(EventField::Ts),
            }
        );
        assert!(KeyedWindowSpec::from_config(&config("window_start_ms", vec![])).is_err());
        assert!(
            KeyedWindowSpec::from_config(&config("key", vec![Aggregate::Sum("key".into())]))
                .is_err()
        );
    }
}
