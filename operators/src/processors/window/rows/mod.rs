//! [`RowWindow`]: the `window` processor of config-driven pipelines, over
//! [`Row`]s.
//!
//! ```toml
//! [processors.per_user]
//! type = "window"
//! inputs = ["parsed"]
//! kind = "sliding"            # "tumbling" (default) | "sliding" | "session"
//! size = "5m"                 # tumbling and sliding
//! slide = "1m"                # sliding only
//! # gap = "30s"               # session only
//! time_field = "timestamp"    # default; must be a timestamp field
//! group_by = ["user"]         # zero or more fields ("user" alone also works)
//! allowed_lateness = "10s"    # default "0s"
//! aggregates = [
//!   "count",
//!   "sum:bytes",
//!   { fn = "count_distinct", field = "ip", error = 0.01 },
//!   { fn = "top_k", field = "path", k = 5, as = "top_paths" },
//! ]
//! ```
//!
//! # Windows
//! Event time is the `time_field` (milliseconds since the epoch; negative
//! times are fine). Windows are aligned to the epoch, as in Flink:
//! - **tumbling**: `[k * size, (k + 1) * size)`, each event in exactly one;
//! - **sliding**: `[k * slide, k * slide + size)`, so each event falls in
//!   `size / slide` windows (when `slide` does not divide `size`, that
//!   quotient rounded down or up, depending on the event's offset);
//!   `slide` must be at most `size`, and `size / slide` at most
//!   [`SLIDING_WINDOWS_MAX`](crate::limits::SLIDING_WINDOWS_MAX) (an event updates that many windows);
//! - **session**: per group, an event at `t` opens the window `[t, t + gap)`;
//!   windows of a group that overlap or touch merge into one, spanning from
//!   the first event to the last event plus `gap`. So a session closes
//!   after more than `gap` of inactivity, and an event that bridges two
//!   sessions merges them (and their aggregates).
//!
//! # Firing, lateness and the late port
//! A window `[start, end)` fires when the watermark reaches
//! `end + allowed_lateness`: its rows are queued, sorted by group, and
//! handed to the runtime a batch at a time through `Processor::drain`. The
//! rows one watermark fires come out ordered by `(window_start,
//! window_end, group)`; group values order by type, then value (floats by
//! `total_cmp`). The final watermark at the end of input fires everything.
//!
//! An event whose window has not fired is counted, even if the watermark
//! already passed the window's end (it is within the allowed lateness). An
//! event of a sliding window is counted in those of its windows that have
//! not fired. An event whose windows have all fired is **late**: it is
//! counted in [`RowWindow::late_events`] (and the metric
//! `weir_window_late_events`) and emitted unchanged on **output port 1**,
//! the late side output, whose schema is the input's ([`late_schema`]).
//! A session event is late only when it joins no open session and its own
//! window `[t, t + gap)` would already have fired; it may open a new session
//! overlapping one that already fired (as in Flink).
//!
//! A row whose time field is null (or not a timestamp) cannot be placed in
//! any window: it is an error, counted in [`RowWindow::null_time_events`]
//! (metric `weir_window_null_time_events`) and also sent to port 1. No row
//! is ever dropped silently; with nothing connected to port 1, the counters
//! are the only trace.
//!
//! # Output
//! Port 0 carries one row per fired window and group; its schema is
//! `window_start: timestamp, window_end: timestamp`, then each `group_by`
//! field with its input type, then one field per aggregate, named by `as`
//! or by default `count`, `FN_FIELD` (`sum_bytes`, `top_k_path`):
//! - `count` (no field): rows, `int`;
//! - `sum`: non-null values, `int` for an int field (wrapping on overflow),
//!   `float` for a float field; null if the window saw none;
//! - `min`, `max` (int, float, timestamp, string, ip): the field's type;
//!   null if none;
//! - `avg` (numeric): `float`, null if none;
//! - `count_distinct` (any scalar): `int`, an estimate from a HyperLogLog++
//!   sketch (crate `hyperloglogplus`) whose precision `p` is the smallest
//!   with standard error `1.04 / sqrt(2^p)` at most `error` (default 0.01:
//!   `p = 14`, 0.81 %, at most 12 KiB per window and group once dense, far
//!   less while sparse). Values are hashed with FNV plus the murmur3
//!   finalizer and no random seed, so estimates are deterministic;
//! - `top_k` (any scalar): a `list` of up to `k` maps `{value, count}`,
//!   by count descending, then value ascending. Counts are **exact**: the
//!   window keeps one entry (the value plus ~40 bytes) per distinct value
//!   per group, so memory grows with the field's cardinality;
//! - `quantile` (numeric), with `q` (one number or a list in `(0, 1)`):
//!   one `float` field per `q`, named `pNN_FIELD` (`p50_latency_ms`,
//!   `p99_9_latency_ms`) unless one `q` is named with `as`; a DDSketch
//!   (crate `sketches-ddsketch`) per field whose estimate of the value at
//!   rank `floor(q * (n - 1))` is within relative error `error` (default
//!   0.01) of it, at most 2048 bins (a few KiB) per window and group.
//!   Mergeable (sessions) and snapshotted exactly (DDSketch's binary
//!   format); null if the window saw no value. Non-finite values are
//!   skipped.
//!
//! Nulls are skipped by every aggregate but `count`.
//!
//! # Partitioning
//! [`group_hash`] (of an archived row) and [`group_hash_row`] (the same
//! hash of an owned row, which is what `Partition::hash`'s key function
//! receives) are the hash the integrator partitions the input edge by, so
//! each group lives on one shard. Without `group_by` it is 0: every row
//! goes to one shard (a global window cannot be split).
//!
//! # State
//! `snapshot` writes, with rkyv, every open window and group with its
//! aggregate states (the sketch as its crate's JSON, top-k tables sorted),
//! the watermark (which says which windows fired), the late and null-time
//! counters, and rows queued but not yet drained. `restore` validates the
//! bytes and checks every window against the spec (alignment, not yet
//! fired, aggregate kinds, sketch precision); a restored operator then
//! produces exactly the output the uninterrupted one would have.
//!
//! Tumbling and sliding windows snapshot incrementally
//! (`Processor::incremental`): between the runtime's base epochs they log
//! only the (window, group) pairs a row reached since the previous
//! snapshot, in the same form, with the watermark (windows it fired are
//! gone), the counters and the queued rows; `restore_changes` overwrites
//! those pairs' aggregates. A group marks itself on its first row after a
//! snapshot and notes (window, hash) in a list, so finding the changes
//! costs their number, not the state's size. Session windows (whose
//! sessions merge) always snapshot whole.
//!
//! Their bases are swept (`Processor::swept_bases`): after a run's first
//! base, written whole, a base is never written at once (which stopped the
//! shard for as long as encoding the whole state took), but a slice per
//! epoch over the epochs the runtime gives a sweep: the slice of an epoch
//! is every open (window, group) whose group's *sweep position* (its hash,
//! mixed) falls in the next range of positions, the ranges splitting what
//! is left evenly over the epochs left, so the last one ends the sweep. An
//! epoch's slice rides in the same record as its changes (one state, the
//! changed pairs and the slice's), applied by `restore_changes` the same
//! way: a pair's aggregates are those of its last record, so from the
//! sweep's first epoch on, every pair is either in a slice or changed
//! after it. Finding a slice reads every group's hash once (no copy of the
//! rest), so a sweep reads the state's groups once an epoch.

mod agg;
mod config;
mod tasks;

pub use config::{
    build, AggregateConfig, AggregateFn, AggregateSpec, RowWindowConfig, RowWindowSpec, WindowKind,
    WindowKindConfig,
};
pub use tasks::TaskWindows;

use std::collections::BTreeMap;

use hashbrown::hash_table::{self, HashTable};
use rkyv::rancor;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use weir_runtime::metrics::ShardCounter;
use weir_runtime::{Batch, Emitter, OperatorError, Processor, ShardContext};

use self::agg::{same, Acc, AccState};
use super::closed_rows::ClosedRows;
use crate::component::{
    connect_hashed, connect_tasked, state_options, Component, Input, Node, Output, PlanContext,
    Planned, Stateful, LATE,
};
use crate::row::OptionError;
use crate::row::{cmp_slices, hash_values, ArchivedRow, ArchivedValue, Row, Schema, Value};
use crate::scale_out::tasked::TaskPlan;

/// The schema of the late side output (port 1): the input's.
pub fn late_schema(input: &Schema) -> Schema {
    input.clone()
}

/// The partitioning hash of `row`'s group: [`ArchivedRow::hash_fields`] of
/// the group fields, or 0 without `group_by` (everything on one shard).
pub fn group_hash(spec: &RowWindowSpec, row: &ArchivedRow) -> u64 {
    if spec.group_indices.is_empty() {
        0
    } else {
        row.hash_fields(&spec.group_indices)
    }
}

/// [`group_hash`] of an owned row: what `Partition::hash` (whose key
/// function sees the owned [`Row`] being pushed) calls on the edge into the
/// window. Equal to `group_hash` of the same row archived; allocates
/// nothing.
pub fn group_hash_row(spec: &RowWindowSpec, row: &Row) -> u64 {
    if spec.group_indices.is_empty() {
        return 0;
    }
    row.hash_fields(&spec.group_indices)
}

/// One group of a tumbling or sliding window.
#[derive(Debug)]
struct Group {
    /// [`ArchivedRow::hash_fields`] of its values.
    hash: u64,
    values: GroupValues,
    accs: Vec<Acc>,
    /// A row reached it since the last snapshot (see the module docs).
    changed: bool,
}

impl Group {
    /// A group read back from a snapshot or changes: not changed since.
    fn restored(hash: u64, values: Vec<Value>, accs: Vec<Acc>) -> Group {
        Group {
            hash,
            values: GroupValues::from_vec(values),
            accs,
            changed: false,
        }
    }
}

/// A group's values: up to two kept in the group itself, so matching a
/// row against its group reads no other memory for a number, and only the
/// text for a string.
type GroupValues = SmallVec<[Value; 2]>;

/// A window's groups, in one flat table by group hash: a group is found
/// with one probe and no pointer to follow but its values' own (this is
/// on every event's path).
type Groups = HashTable<Group>;

/// One open session of a group.
#[derive(Debug)]
struct Session {
    start: i64,
    end: i64,
    accs: Vec<Acc>,
}

/// A group's open sessions, by start, neither overlapping nor touching.
#[derive(Debug)]
struct SessionGroup {
    values: Vec<Value>,
    sessions: Vec<Session>,
}

/// The `window` processor over rows; see the module docs.
#[derive(Debug)]
pub struct RowWindow {
    spec: RowWindowSpec,
    /// Tumbling and sliding windows by start.
    windows: BTreeMap<i64, Groups>,
    /// Sessions by group hash.
    sessions: FxHashMap<u64, Vec<SessionGroup>>,
    /// At most the smallest end of an open session (`i64::MAX` if none).
    sessions_end_min: i64,
    /// The highest watermark seen (`i64::MIN` before the first): every
    /// window with `end + lateness <= watermark` has fired.
    watermark: i64,
    late_events: u64,
    null_time_events: u64,
    /// Rows of fired windows not yet emitted.
    closed_rows: ClosedRows<Row>,
    /// (window start, group hash) of the groups marked changed, each
    /// noted when its mark was set.
    changed: Vec<(i64, u64)>,
    /// The sweep position the next slice of the base being swept starts
    /// at, or `None` when no sweep runs (see the module docs).
    sweep_from: Option<u64>,
    /// The pairs of the last `snapshot_changes`, for the epoch's slice to
    /// join them in one record.
    last_changes: Vec<WindowState>,
    late_metric: Option<ShardCounter>,
    null_time_metric: Option<ShardCounter>,
}

/// One open (window, group) in a snapshot.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct WindowState {
    start: i64,
    end: i64,
    group: Vec<Value>,
    accs: Vec<AccState>,
}

/// What [`RowWindow`] snapshots; see the module docs.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct RowWindowState {
    watermark: i64,
    late_events: u64,
    null_time_events: u64,
    /// Ordered by (start, end, group).
    windows: Vec<WindowState>,
    pending: Vec<Row>,
}

impl RowWindow {
    /// An empty window operator computing `spec`, with its late and
    /// null-time counters registered as metrics of `context`'s component.
    pub fn new(spec: RowWindowSpec, context: &ShardContext) -> RowWindow {
        let labels = [("component", &*context.node)];
        let late = context.metrics.counter(
            "weir_window_late_events",
            "Events that arrived after their window closed (counted in no row).",
            &labels,
        );
        let null_time = context.metrics.counter(
            "weir_window_null_time_events",
            "Rows without an event time, sent to the window's late output.",
            &labels,
        );
        RowWindow {
            late_metric: Some(late.for_shard(context.shard)),
            null_time_metric: Some(null_time.for_shard(context.shard)),
            ..RowWindow::bare(spec)
        }
    }

    /// A window without metrics.
    fn bare(spec: RowWindowSpec) -> RowWindow {
        RowWindow {
            spec,
            windows: BTreeMap::new(),
            sessions: FxHashMap::default(),
            sessions_end_min: i64::MAX,
            watermark: i64::MIN,
            late_events: 0,
            null_time_events: 0,
            closed_rows: ClosedRows::new(),
            changed: Vec::new(),
            sweep_from: None,
            last_changes: Vec::new(),
            late_metric: None,
            null_time_metric: None,
        }
    }

    /// Events that arrived after all their windows fired.
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Rows whose time field was null.
    pub fn null_time_events(&self) -> u64 {
        self.null_time_events
    }

    /// Whether a window ending at `end` has fired.
    #[inline]
    fn fired(&self, end: i64) -> bool {
        end.saturating_add(self.spec.lateness) <= self.watermark
    }

    /// Adds one row; returns `false` if it was not counted (late or without
    /// a time), after counting it.
    fn add(&mut self, row: &ArchivedRow) -> bool {
        let Some(ts) = row.get(self.spec.time_index).as_timestamp() else {
            self.null_time_events += 1;
            if let Some(metric) = &self.null_time_metric {
                metric.inc();
            }
            return false;
        };
        let hash = row.hash_fields(&self.spec.group_indices);
        let counted = match self.spec.kind {
            WindowKind::Tumbling { size } => self.add_sliding(row, ts, hash, size, size),
            WindowKind::Sliding { size, slide } => self.add_sliding(row, ts, hash, size, slide),
            WindowKind::Session { gap } => self.add_session(row, ts, hash, gap),
        };
        if !counted {
            self.late_events += 1;
            if let Some(metric) = &self.late_metric {
                metric.inc();
            }
        }
        counted
    }

    /// Adds `row` at `ts` to every unfired window `[k * slide, k * slide +
    /// size)` holding it.
    fn add_sliding(
        &mut self,
        row: &ArchivedRow,
        ts: i64,
        hash: u64,
        size: i64,
        slide: i64,
    ) -> bool {
        let mut start = ts - ts.rem_euclid(slide);
        let lowest = ts.saturating_sub(size);
        let mut counted = false;
        // Windows from the latest start down; once one fired, all earlier
        // ones did too.
        while start > lowest && !self.fired(start.saturating_add(size)) {
            let groups = self.windows.entry(start).or_default();
            let group = find_group(groups, hash, row, &self.spec);
            add_row(&mut group.accs, row, &self.spec);
            if !group.changed {
                group.changed = true;
                self.changed.push((start, hash));
            }
            counted = true;
            start = match start.checked_sub(slide) {
                Some(start) => start,
                None => break,
            };
        }
        counted
    }

    /// Adds `row` at `ts` to its group's session, merging sessions it
    /// bridges.
    fn add_session(&mut self, row: &ArchivedRow, ts: i64, hash: u64, gap: i64) -> bool {
        let (start, end) = (ts, ts.saturating_add(gap));
        let spec = &self.spec;
        let entries = self.sessions.entry(hash).or_default();
        let index = entries
            .iter()
            .position(|group| group_matches(&group.values, row, &spec.group_indices));
        // Sessions overlapping or touching [start, end): a contiguous run.
        let (first, last) = match index {
            Some(index) => {
                let sessions = &entries[index].sessions;
                let first = sessions.partition_point(|session| session.end < start);
                let last = sessions.partition_point(|session| session.start <= end);
                (first, last)
            }
            None => (0, 0),
        };
        if first == last && end.saturating_add(spec.lateness) <= self.watermark {
            if entries.is_empty() {
                self.sessions.remove(&hash);
            }
            return false;
        }
        let index = index.unwrap_or_else(|| {
            entries.push(SessionGroup {
                values: group_values(row, &spec.group_indices),
                sessions: Vec::new(),
            });
            entries.len() - 1
        });
        let sessions = &mut entries[index].sessions;
        let session = if first == last {
            let accs = spec.aggregates.iter().map(Acc::new).collect();
            sessions.insert(first, Session { start, end, accs });
            &mut sessions[first]
        } else {
            let merged: Vec<Session> = sessions.drain(first + 1..last).collect();
            let session = &mut sessions[first];
            session.start = session.start.min(start);
            session.end = session.end.max(end);
            for other in merged {
                session.end = session.end.max(other.end);
                for (acc, other) in session.accs.iter_mut().zip(other.accs) {
                    acc.merge(other);
                }
            }
            session
        };
        add_row(&mut session.accs, row, spec);
        self.sessions_end_min = self.sessions_end_min.min(session.end);
        true
    }

    /// Raises the watermark to `watermark` and queues the rows of every
    /// window that fires.
    fn advance(&mut self, watermark: u64) {
        let watermark = i64::try_from(watermark).unwrap_or(i64::MAX);
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        match self.spec.kind {
            WindowKind::Tumbling { size } | WindowKind::Sliding { size, .. } => {
                while let Some(entry) = self.windows.first_entry() {
                    let start = *entry.key();
                    let end = start.saturating_add(size);
                    if end.saturating_add(self.spec.lateness) > watermark {
                        break;
                    }
                    let mut groups: Vec<Group> = entry.remove().into_iter().collect();
                    groups.sort_by(|a, b| cmp_slices(&a.values, &b.values));
                    let spec = &self.spec;
                    self.closed_rows.extend(groups.into_iter().map(|group| {
                        output_row(spec, start, end, group.values.into_iter(), group.accs)
                    }));
                }
            }
            WindowKind::Session { .. } => self.fire_sessions(),
        }
    }

    fn fire_sessions(&mut self) {
        if !self.fired(self.sessions_end_min) {
            return;
        }
        let (lateness, watermark) = (self.spec.lateness, self.watermark);
        let mut fired: Vec<(i64, i64, Vec<Value>, Vec<Acc>)> = Vec::new();
        let mut end_min = i64::MAX;
        self.sessions.retain(|_, entries| {
            entries.retain_mut(|group| {
                group.sessions.retain_mut(|session| {
                    if session.end.saturating_add(lateness) <= watermark {
                        let accs = std::mem::take(&mut session.accs);
                        fired.push((session.start, session.end, group.values.clone(), accs));
                        false
                    } else {
                        end_min = end_min.min(session.end);
                        true
                    }
                });
                !group.sessions.is_empty()
            });
            !entries.is_empty()
        });
        self.sessions_end_min = end_min;
        fired.sort_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| cmp_slices(&a.2, &b.2))
        });
        let spec = &self.spec;
        self.closed_rows
            .extend(fired.into_iter().map(|(start, end, values, accs)| {
                output_row(spec, start, end, values.into_iter(), accs)
            }));
    }

    /// The length of the tumbling or sliding windows (0 for sessions).
    fn aligned_size(&self) -> i64 {
        match self.spec.kind {
            WindowKind::Tumbling { size } | WindowKind::Sliding { size, .. } => size,
            WindowKind::Session { .. } => 0,
        }
    }

    fn state(&self) -> Result<RowWindowState, OperatorError> {
        let save = |accs: &[Acc]| -> Result<Vec<AccState>, OperatorError> {
            accs.iter()
                .map(|acc| acc.save().map_err(OperatorError::other))
                .collect()
        };
        // Each window with its group's hash, so the sort that makes the
        // snapshot the same whatever the tables' order compares two
        // numbers, and values only for equal hashes.
        let mut windows: Vec<(u64, WindowState)> = Vec::new();
        let size = self.aligned_size();
        for (&start, groups) in &self.windows {
            for group in groups {
                windows.push((group.hash, aligned_window(start, size, group)?));
            }
        }
        for (&hash, entries) in &self.sessions {
            for group in entries {
                for session in &group.sessions {
                    let window = WindowState {
                        start: session.start,
                        end: session.end,
                        group: group.values.clone(),
                        accs: save(&session.accs)?,
                    };
                    windows.push((hash, window));
                }
            }
        }
        windows.sort_unstable_by(|(a_hash, a), (b_hash, b)| {
            (a.start, a.end, a_hash)
                .cmp(&(b.start, b.end, b_hash))
                .then_with(|| cmp_slices(&a.group, &b.group))
        });
        Ok(self.state_with(windows.into_iter().map(|(_, window)| window).collect()))
    }

    /// A snapshot (or changes) holding `windows`, with the watermark, the
    /// counters and the queued rows.
    fn state_with(&self, windows: Vec<WindowState>) -> RowWindowState {
        RowWindowState {
            watermark: self.watermark,
            late_events: self.late_events,
            null_time_events: self.null_time_events,
            windows,
            pending: self.closed_rows.pending().to_vec(),
        }
    }

    fn load(&mut self, state: RowWindowState) -> Result<(), String> {
        let spec = &self.spec;
        let mut windows: BTreeMap<i64, Groups> = BTreeMap::new();
        let mut sessions: FxHashMap<u64, Vec<SessionGroup>> = FxHashMap::default();
        let mut end_min = i64::MAX;
        for window in state.windows {
            let (start, end, group, accs) = check_window(spec, state.watermark, window)?;
            let hash = hash_values(&group);
            match spec.kind {
                WindowKind::Tumbling { .. } | WindowKind::Sliding { .. } => {
                    let groups = windows.entry(start).or_default();
                    let seen = |seen: &Group| {
                        seen.hash == hash && cmp_slices(&seen.values, &group).is_eq()
                    };
                    if groups.find(hash, seen).is_some() {
                        return Err("a group appears twice in a window".into());
                    }
                    groups.insert_unique(hash, Group::restored(hash, group, accs), |group| {
                        group.hash
                    });
                }
                WindowKind::Session { .. } => {
                    end_min = end_min.min(end);
                    let entries = sessions.entry(hash).or_default();
                    let index = match entries
                        .iter()
                        .position(|seen| cmp_slices(&seen.values, &group).is_eq())
                    {
                        Some(index) => index,
                        None => {
                            entries.push(SessionGroup {
                                values: group,
                                sessions: Vec::new(),
                            });
                            entries.len() - 1
                        }
                    };
                    let group = &mut entries[index].sessions;
                    // Windows come sorted by start: sessions must not touch.
                    if group.last().is_some_and(|last| last.end >= start) {
                        return Err("sessions of a group overlap".into());
                    }
                    group.push(Session { start, end, accs });
                }
            }
        }
        if let Some(row) = state
            .pending
            .iter()
            .find(|row| row.values.len() != 2 + spec.group_indices.len() + spec.aggregates.len())
        {
            return Err(format!("a queued row has {} fields", row.values.len()));
        }
        self.windows = windows;
        self.sessions = sessions;
        self.sessions_end_min = end_min;
        self.watermark = state.watermark;
        self.late_events = state.late_events;
        self.null_time_events = state.null_time_events;
        self.closed_rows.replace(state.pending);
        self.changed.clear();
        Ok(())
    }

    /// Clears every change mark: a full snapshot was taken.
    fn forget_changes(&mut self) {
        for (start, hash) in std::mem::take(&mut self.changed) {
            let Some(groups) = self.windows.get_mut(&start) else {
                continue;
            };
            while let Some(group) = groups.find_mut(hash, |g| g.hash == hash && g.changed) {
                group.changed = false;
            }
        }
    }

    /// The changes since the last snapshot (see the module docs): every
    /// marked group of an open window, whole; clears the marks.
    fn changes(&mut self) -> Result<RowWindowState, OperatorError> {
        let size = self.aligned_size();
        let mut windows = Vec::with_capacity(self.changed.len());
        for (start, hash) in std::mem::take(&mut self.changed) {
            // A window that fired since is gone, as the watermark says.
            let Some(groups) = self.windows.get_mut(&start) else {
                continue;
            };
            while let Some(group) = groups.find_mut(hash, |g| g.hash == hash && g.changed) {
                group.changed = false;
                windows.push(aligned_window(start, size, group)?);
            }
        }
        Ok(self.state_with(windows))
    }

    /// The pairs of the next slice of the base being swept (see the module
    /// docs), and whether the sweep is complete with them: those whose
    /// sweep position is in `[from, end)`, `end` splitting what is left
    /// after `from` evenly over `epochs_left` (the last takes the rest).
    fn sweep_slice(
        &self,
        from: u64,
        epochs_left: u64,
    ) -> Result<(Vec<WindowState>, Option<u64>), OperatorError> {
        let left = (1u128 << 64) - u128::from(from);
        let end = u128::from(from) + left.div_ceil(u128::from(epochs_left.max(1)));
        let inside = |hash: u64| {
            let position = u128::from(sweep_position(hash));
            position >= u128::from(from) && position < end
        };
        let size = self.aligned_size();
        let mut slice = Vec::new();
        for (&start, groups) in &self.windows {
            for group in groups.iter().filter(|group| inside(group.hash)) {
                slice.push(aligned_window(start, size, group)?);
            }
        }
        let next = u64::try_from(end).ok();
        Ok((slice, next))
    }

    /// Applies [`changes`](RowWindow::changes) to the restored state.
    fn apply_changes(&mut self, state: RowWindowState) -> Result<(), String> {
        let (size, lateness) = match self.spec.kind {
            WindowKind::Tumbling { size } | WindowKind::Sliding { size, .. } => {
                (size, self.spec.lateness)
            }
            WindowKind::Session { .. } => return Err("session windows log no changes".into()),
        };
        if state.watermark < self.watermark {
            return Err(format!(
                "changes at watermark {} after state at watermark {}",
                state.watermark, self.watermark
            ));
        }
        if let Some(row) = state.pending.iter().find(|row| {
            row.values.len() != 2 + self.spec.group_indices.len() + self.spec.aggregates.len()
        }) {
            return Err(format!("a queued row has {} fields", row.values.len()));
        }
        self.watermark = state.watermark;
        // Windows the watermark fired since are gone.
        let watermark = state.watermark;
        self.windows
            .retain(|start, _| start.saturating_add(size).saturating_add(lateness) > watermark);
        for window in state.windows {
            let (start, _, group, accs) = check_window(&self.spec, watermark, window)?;
            let hash = hash_values(&group);
            let groups = self.windows.entry(start).or_default();
            let same = |seen: &Group| seen.hash == hash && cmp_slices(&seen.values, &group).is_eq();
            match groups.find_mut(hash, same) {
                Some(seen) => seen.accs = accs,
                None => {
                    let group = Group::restored(hash, group, accs);
                    groups.insert_unique(hash, group, |group| group.hash);
                }
            }
        }
        self.late_events = state.late_events;
        self.null_time_events = state.null_time_events;
        self.closed_rows.replace(state.pending);
        Ok(())
    }
}

/// `group` of the tumbling or sliding window `[start, start + size)`, as a
/// snapshot holds it.
fn aligned_window(start: i64, size: i64, group: &Group) -> Result<WindowState, OperatorError> {
    Ok(WindowState {
        start,
        end: start.saturating_add(size),
        group: group.values.to_vec(),
        accs: group
            .accs
            .iter()
            .map(|acc| acc.save().map_err(OperatorError::other))
            .collect::<Result<_, _>>()?,
    })
}

/// Where a group with `hash` falls in a base sweep: the hash mixed
/// (splitmix64's finalizer, a bijection), so that the groups one shard
/// holds, which the runtime chose by their hash, spread over every range.
fn sweep_position(hash: u64) -> u64 {
    let mut x = hash;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Checks a snapshot's `window` against `spec` and `watermark` (open, of
/// the spec's shape and aggregates) and loads its aggregates.
fn check_window(
    spec: &RowWindowSpec,
    watermark: i64,
    window: WindowState,
) -> Result<(i64, i64, Vec<Value>, Vec<Acc>), String> {
    let WindowState {
        start,
        end,
        group,
        accs,
    } = window;
    if end.saturating_add(spec.lateness) <= watermark || start >= end {
        return Err(format!("window [{start}, {end}) already fired or empty"));
    }
    if group.len() != spec.group_indices.len() || accs.len() != spec.aggregates.len() {
        return Err("a window's group or aggregates do not match the spec".into());
    }
    let accs = accs
        .into_iter()
        .zip(&spec.aggregates)
        .map(|(acc, aggregate)| Acc::load(acc, aggregate))
        .collect::<Result<Vec<Acc>, String>>()?;
    if let WindowKind::Tumbling { size } | WindowKind::Sliding { size, .. } = spec.kind {
        let slide = match spec.kind {
            WindowKind::Sliding { slide, .. } => slide,
            _ => size,
        };
        if start.rem_euclid(slide) != 0 || start.saturating_add(size) != end {
            return Err(format!("window [{start}, {end}) is not one of the spec"));
        }
    }
    Ok((start, end, group, accs))
}

/// Whether `values` are `row`'s group fields.
#[inline]
fn group_matches(values: &[Value], row: &ArchivedRow, indices: &[usize]) -> bool {
    values
        .iter()
        .zip(indices)
        .all(|(value, &index)| same(value, row.get(index)))
}

fn group_values<C: FromIterator<Value>>(row: &ArchivedRow, indices: &[usize]) -> C {
    indices
        .iter()
        .map(|&index| row.get(index).to_value())
        .collect()
}

/// `row`'s group in `groups`, added if new.
#[inline]
fn find_group<'a>(
    groups: &'a mut Groups,
    hash: u64,
    row: &ArchivedRow,
    spec: &RowWindowSpec,
) -> &'a mut Group {
    let matches = |group: &Group| {
        group.hash == hash && group_matches(&group.values, row, &spec.group_indices)
    };
    // Found or not, one probe: `entry` finds the slot an insert would take.
    match groups.entry(hash, matches, |group| group.hash) {
        hash_table::Entry::Occupied(group) => group.into_mut(),
        hash_table::Entry::Vacant(slot) => {
            let group = Group {
                hash,
                values: group_values(row, &spec.group_indices),
                accs: spec.aggregates.iter().map(Acc::new).collect(),
                changed: false,
            };
            slot.insert(group).into_mut()
        }
    }
}

/// Adds `row` to one window's aggregates.
#[inline]
fn add_row(accs: &mut [Acc], row: &ArchivedRow, spec: &RowWindowSpec) {
    static NULL: ArchivedValue = ArchivedValue::Null;
    for (acc, aggregate) in accs.iter_mut().zip(&spec.aggregates) {
        let value = match aggregate.field {
            Some((index, _)) => row.get(index),
            None => &NULL,
        };
        acc.add(value);
    }
}

fn output_row(
    spec: &RowWindowSpec,
    start: i64,
    end: i64,
    group: impl ExactSizeIterator<Item = Value>,
    accs: Vec<Acc>,
) -> Row {
    let mut values = Vec::with_capacity(2 + group.len() + accs.len());
    values.push(Value::Timestamp(start));
    values.push(Value::Timestamp(end));
    values.extend(group);
    values.extend(
        accs.into_iter()
            .zip(&spec.aggregates)
            .map(|(acc, aggregate)| acc.finish(aggregate)),
    );
    Row { values }
}

fn encode_state(state: &RowWindowState) -> Result<Vec<u8>, OperatorError> {
    let bytes = rkyv::to_bytes::<rancor::Error>(state)
        .map_err(|error| OperatorError::other(error.to_string()))?;
    Ok(bytes.to_vec())
}

/// Decodes a snapshot or changes (`what`), validating the bytes: they come
/// from disk.
fn decode_state(bytes: &[u8], what: &str) -> Result<RowWindowState, OperatorError> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<RowWindowState, rancor::BoxedError>(&aligned)
        .map_err(|error| OperatorError::invalid(format!("window {what}: {error}")))
}

impl Processor for RowWindow {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            if !self.add(row) && out.has_port(1) {
                out.push_to(1, &row.to_row());
            }
        }
    }

    fn on_watermark(&mut self, watermark: u64, _out: &mut Emitter<Row>) {
        self.advance(watermark);
    }

    fn drain(&mut self, out: &mut Emitter<Row>) -> bool {
        self.closed_rows.drain_into(out)
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.forget_changes();
        // A whole state: no changes for a slice to join.
        self.last_changes.clear();
        encode_state(&self.state()?)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        let state = decode_state(bytes, "state")?;
        self.load(state)
            .map_err(|error| OperatorError::invalid(format!("window state: {error}")))
    }

    fn incremental(&self) -> bool {
        !matches!(self.spec.kind, WindowKind::Session { .. })
    }

    fn snapshot_changes(&mut self, _epoch: u64, out: &mut Vec<u8>) -> Result<(), OperatorError> {
        let changes = self.changes()?;
        out.extend_from_slice(&encode_state(&changes)?);
        self.last_changes = changes.windows;
        Ok(())
    }

    fn swept_bases(&self) -> bool {
        self.incremental()
    }

    fn sweep_base(
        &mut self,
        begin: bool,
        epochs_left: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, OperatorError> {
        // Not sweeping without `begin` (none was begun in this run) starts
        // one too; the runtime takes only sweeps logged with their
        // beginning.
        let from = self.sweep_from.filter(|_| !begin).unwrap_or(0);
        let (slice, next) = self.sweep_slice(from, epochs_left)?;
        self.sweep_from = next;
        // The epoch's changes (already in `out`) and the slice, as one
        // state: the record `restore_changes` reads.
        let mut windows = std::mem::take(&mut self.last_changes);
        windows.extend(slice);
        out.clear();
        out.extend_from_slice(&encode_state(&self.state_with(windows))?);
        Ok(next.is_none())
    }

    fn restore_changes(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        let changes = decode_state(bytes, "changes")?;
        self.apply_changes(changes)
            .map_err(|error| OperatorError::invalid(format!("window changes: {error}")))
    }
}

impl Component for RowWindowConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let schema = context.schema();
        let (spec, output) = build(self, &schema)?;
        let outputs = vec![
            Output::rows(output),
            Output::side(LATE, 1, schema.as_ref().clone()),
        ];
        let options = ["kind", "size", "slide", "gap", "group_by", "aggregates"];
        let fingerprint = state_options("window", self, &options);
        if let Some(plan) = context.group {
            if spec.group_indices.is_empty() {
                return Err(OptionError::new(
                    "group_by",
                    "a window without `group_by` (one global window) cannot be split over \
                     processes: run it as one process (docs/scale-out.md)",
                ));
            }
            let tasks = TaskPlan::new(plan, context.name, "window", &self.group_by, &self.inputs)?;
            let node = TaskedWindow {
                spec,
                fingerprint,
                tasks,
            };
            return Ok(Planned::new(outputs, node));
        }
        Ok(Planned::new(outputs, Stateful { spec, fingerprint }))
    }

    fn scales_out(&self) -> bool {
        true
    }
}

impl Node for Stateful<RowWindowSpec> {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let Stateful { spec, fingerprint } = self.clone();
        connect_hashed(graph, name, inputs, &spec, group_hash_row);
        graph
            .processor(name, move |context| RowWindow::new(spec.clone(), context))
            .state_fingerprint(fingerprint);
    }
}

/// The node of a window in a scaled-out run ([`TaskWindows`]).
struct TaskedWindow {
    spec: RowWindowSpec,
    fingerprint: Vec<(String, String)>,
    tasks: TaskPlan,
}

impl Node for TaskedWindow {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let TaskedWindow {
            spec,
            fingerprint,
            tasks,
        } = self;
        let repartition = connect_tasked(graph, name, inputs, tasks);
        let (spec, tasks) = (spec.clone(), tasks.clone());
        graph
            .processor(name, move |context| {
                let setup = tasks.setup(
                    context.node.clone(),
                    ("window", "group_by"),
                    spec.group_indices.clone(),
                    repartition.clone(),
                );
                TaskWindows::new(spec.clone(), context, setup)
            })
            .state_fingerprint(fingerprint.clone());
    }
}

#[cfg(test)]
mod tests;
