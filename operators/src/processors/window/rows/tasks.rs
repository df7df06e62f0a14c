//! [`TaskWindows`]: the `window` of a scaled-out pipeline (`[runtime]
//! group`, docs/scale-out.md "State that moves"): one [`RowWindow`] per
//! task, its state logged to the window's changelog topic and restored
//! from it when the task moves.
//!
//! # Tasks
//! A row's task is its group's (`crate::scale_out::tasked`): with the
//! source's `keyed_by` equal to the window's `group_by` the tasks are the
//! input topic's partitions, and the rows are counted as they come;
//! otherwise the window **repartitions** through its repartition topic
//! and counts the rows the source reads back from it, on the port after
//! the inputs' ([`TaskWindows::process`]).
//!
//! # Time
//! Each task closes its windows on its own **stream time**, the largest
//! event time its rows carried (Kafka Streams' semantics; the window's
//! `allowed_lateness` is Kafka Streams' grace period): after each batch,
//! a task whose stream time passed a window's `end + allowed_lateness`
//! fires it. The source's watermark, which mixes the partitions this
//! process happens to hold, is not used, and neither the end of the input
//! nor a stop fires anything: an open window stays open, wherever its task
//! goes next.
//!
//! # Changelog
//! At every barrier each task hands in, for the epoch's transaction
//! ([`GroupRun::add_changelog`]), to its partition of the changelog topic:
//! - every (window, group) a row reached since the last barrier, keyed by
//!   (window start, window end, group values) and holding the aggregates
//!   (rkyv, as the window's snapshots hold them);
//! - a tombstone for every (window, group) that fired since;
//! - its meta record (key `weir.task`): the stream time, the late and
//!   null-time counters and the rows fired but not yet emitted, when any
//!   of them changed.
//!
//! A task restored from its changelog ([`crate::scale_out::Handoff::Restore`]) is exactly
//! the task as of the last committed epoch, which is where the group's
//! offsets of its partition stand. A task given up ([`crate::scale_out::Handoff::Revoke`])
//! hands in the changes of its last epoch and is dropped. The local log
//! holds the tasks only at a graceful stop, whole, for a restart on the
//! same data directory (`crate::scale_out::local`); otherwise a
//! scaled-out run resumes from Kafka (docs/scale-out.md).

use rkyv::rancor;
use weir_runtime::{Batch, Emitter, OperatorError, Processor, ShardContext};

use super::{
    decode_state, encode_state, RowWindow, RowWindowSpec, RowWindowState, SessionGroup, WindowKind,
    WindowState,
};
use crate::row::{ArchivedRow, Row, Value};
use crate::scale_out::local::Entries;
use crate::scale_out::tasked::{Changes, TaskState, Tasked, TaskedSetup, META_KEY};

/// A (window, group)'s key in the changelog.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct PairKey {
    start: i64,
    end: i64,
    group: Vec<Value>,
}

/// A (window, group)'s value in the changelog: its aggregates (the key
/// says which window and group).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct PairValue {
    accs: Vec<super::AccState>,
}

/// A session window's group in the changelog.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct SessionKey {
    group: Vec<Value>,
}

/// A session window group's open sessions in the changelog, by start.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct SessionsValue {
    sessions: Vec<SessionValue>,
}

/// One open session.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct SessionValue {
    start: i64,
    end: i64,
    accs: Vec<super::AccState>,
}

/// One task's window.
#[derive(Debug)]
struct Task {
    window: RowWindow,
    /// The largest event time of its rows (`i64::MIN` before the first).
    stream_time: i64,
    /// Keys of pairs (or session groups) fired since the last barrier:
    /// their tombstones.
    fired: Vec<Vec<u8>>,
    /// Session windows: hashes of the groups a row reached, or a fire
    /// changed, since the last barrier.
    touched: Vec<u64>,
    /// A row reached it since the last barrier.
    dirty: bool,
    /// Its last meta record held queued rows.
    pending_logged: bool,
}

/// The scaled-out `window`; see the module docs.
pub struct TaskWindows {
    /// A template for tasks' windows: its metrics handles.
    metrics: RowWindow,
    tasks: Tasked<Task>,
}

impl std::fmt::Debug for TaskWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskWindows")
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}

fn encode<T>(value: &T) -> Result<Vec<u8>, OperatorError>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rancor::Error>(value)
        .map(|bytes| bytes.to_vec())
        .map_err(|error| OperatorError::other(error.to_string()))
}

fn decode<T>(bytes: &[u8], what: &str) -> Result<T, String>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::BoxedError>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::BoxedError>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::BoxedError>(&aligned).map_err(|error| format!("{what}: {error}"))
}

/// The open sessions of a session window's changelog record.
fn decode_sessions(key: &[u8], value: &[u8]) -> Result<Vec<WindowState>, String> {
    let SessionKey { group } = decode(key, "a session group's key")?;
    let SessionsValue { sessions } = decode(value, "a session group's sessions")?;
    Ok(sessions
        .into_iter()
        .map(|SessionValue { start, end, accs }| WindowState {
            start,
            end,
            group: group.clone(),
            accs,
        })
        .collect())
}

/// The (window, group) of a changelog record.
fn decode_window(key: &[u8], value: &[u8]) -> Result<WindowState, String> {
    let PairKey { start, end, group } = decode(key, "a window's key")?;
    let PairValue { accs } = decode(value, "a window's aggregates")?;
    Ok(WindowState {
        start,
        end,
        group,
        accs,
    })
}

impl TaskState for Task {
    /// A window whose metrics handles tasks' windows share.
    type Template = RowWindow;

    /// A task with the state of its changelog `entries`.
    fn restore(template: &RowWindow, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Task, String> {
        let mut meta: Option<RowWindowState> = None;
        let mut windows = Vec::new();
        let sessions = matches!(template.spec.kind, WindowKind::Session { .. });
        for (key, value) in entries {
            if key == META_KEY {
                meta = Some(decode_state(&value, "task").map_err(|error| error.to_string())?);
            } else if sessions {
                windows.extend(decode_sessions(&key, &value)?);
            } else {
                windows.push(decode_window(&key, &value)?);
            }
        }
        let mut window = RowWindow {
            late_metric: template.late_metric.clone(),
            null_time_metric: template.null_time_metric.clone(),
            ..RowWindow::bare(template.spec.clone())
        };
        let pending = meta.as_ref().is_some_and(|meta| !meta.pending.is_empty());
        if let Some(mut state) = meta {
            state.windows = windows;
            window.load(state)?;
        } else if !windows.is_empty() {
            return Err(format!(
                "{} windows but no `weir.task` record",
                windows.len()
            ));
        }
        Ok(Task {
            stream_time: window.watermark,
            window,
            fired: Vec::new(),
            touched: Vec::new(),
            dirty: false,
            pending_logged: pending,
        })
    }

    /// The task's changelog records since the last barrier: tombstones of
    /// the fired pairs, the changed pairs, and its meta record when it
    /// changed.
    fn changes(&mut self) -> Result<Changes, OperatorError> {
        let mut records = Vec::new();
        let changes = self.window.changes()?;
        for fired in self.fired.drain(..) {
            records.push((fired, None));
        }
        let pending = !changes.pending.is_empty();
        let RowWindowState {
            watermark,
            late_events,
            null_time_events,
            windows,
            pending: rows,
        } = changes;
        for window in windows {
            let WindowState {
                start,
                end,
                group,
                accs,
            } = window;
            let key = encode(&PairKey { start, end, group })?;
            records.push((key, Some(encode(&PairValue { accs })?)));
        }
        self.session_changes(&mut records)?;
        if self.dirty || pending || self.pending_logged {
            let meta = RowWindowState {
                watermark,
                late_events,
                null_time_events,
                windows: Vec::new(),
                pending: rows,
            };
            records.push((META_KEY.to_vec(), Some(encode_state(&meta)?)));
        }
        self.dirty = false;
        self.pending_logged = pending;
        Ok(records)
    }

    /// Every open (window, group) (each session group's open sessions),
    /// and the meta record.
    fn entries(&mut self) -> Result<Entries, OperatorError> {
        let mut entries = Vec::new();
        let RowWindowState {
            watermark,
            late_events,
            null_time_events,
            windows,
            pending,
        } = self.window.state()?;
        if matches!(self.window.spec.kind, WindowKind::Session { .. }) {
            for groups in self.window.sessions.values() {
                for group in groups {
                    entries.push(session_record(group)?);
                }
            }
        } else {
            for WindowState {
                start,
                end,
                group,
                accs,
            } in windows
            {
                let key = encode(&PairKey { start, end, group })?;
                entries.push((key, encode(&PairValue { accs })?));
            }
        }
        let meta = RowWindowState {
            watermark,
            late_events,
            null_time_events,
            windows: Vec::new(),
            pending,
        };
        entries.push((META_KEY.to_vec(), encode_state(&meta)?));
        Ok(entries)
    }
}

/// The changelog record of a session group: its open sessions, by start.
fn session_record(group: &SessionGroup) -> Result<(Vec<u8>, Vec<u8>), OperatorError> {
    let mut sessions = Vec::with_capacity(group.sessions.len());
    for session in &group.sessions {
        let accs = session
            .accs
            .iter()
            .map(|acc| acc.save().map_err(OperatorError::other))
            .collect::<Result<Vec<_>, _>>()?;
        sessions.push(SessionValue {
            start: session.start,
            end: session.end,
            accs,
        });
    }
    let key = encode(&SessionKey {
        group: group.values.clone(),
    })?;
    Ok((key, encode(&SessionsValue { sessions })?))
}

impl Task {
    /// Fires the windows its stream time closed, noting their tombstones.
    fn fire(&mut self) -> Result<(), OperatorError> {
        let Ok(watermark) = u64::try_from(self.stream_time) else {
            return Ok(());
        };
        if self.stream_time <= self.window.watermark {
            return Ok(());
        }
        if matches!(self.window.spec.kind, WindowKind::Session { .. }) {
            self.fire_sessions()?;
            self.window.advance(watermark);
            return Ok(());
        }
        let size = self.window.aligned_size();
        let lateness = self.window.spec.lateness;
        for (&start, groups) in &self.window.windows {
            let end = start.saturating_add(size);
            if end.saturating_add(lateness) > self.stream_time {
                break;
            }
            for group in groups {
                let key = PairKey {
                    start,
                    end,
                    group: group.values.to_vec(),
                };
                self.fired.push(encode(&key)?);
            }
        }
        self.window.advance(watermark);
        Ok(())
    }

    /// Session windows, before the stream time fires sessions: notes
    /// each group that loses sessions, and the tombstone of each that
    /// loses all of them.
    fn fire_sessions(&mut self) -> Result<(), OperatorError> {
        let lateness = self.window.spec.lateness;
        let closes = |end: i64| end.saturating_add(lateness) <= self.stream_time;
        if !closes(self.window.sessions_end_min) {
            return Ok(());
        }
        for (&hash, groups) in &self.window.sessions {
            for group in groups {
                let closing = group.sessions.iter().filter(|s| closes(s.end)).count();
                if closing == 0 {
                    continue;
                }
                if closing == group.sessions.len() {
                    let key = SessionKey {
                        group: group.values.clone(),
                    };
                    self.fired.push(encode(&key)?);
                } else {
                    self.touched.push(hash);
                }
            }
        }
        Ok(())
    }

    /// Session windows: a record for each group touched since the last
    /// barrier that still has open sessions (all of them, by start).
    fn session_changes(&mut self, records: &mut Changes) -> Result<(), OperatorError> {
        self.touched.sort_unstable();
        self.touched.dedup();
        for hash in self.touched.drain(..) {
            let Some(groups) = self.window.sessions.get(&hash) else {
                continue;
            };
            for group in groups {
                let (key, value) = session_record(group)?;
                records.push((key, Some(value)));
            }
        }
        Ok(())
    }

    /// Adds `row`: its time moves the stream time.
    fn add(&mut self, row: &ArchivedRow) -> bool {
        if let Some(ts) = row.get(self.window.spec.time_index).as_timestamp() {
            self.stream_time = self.stream_time.max(ts);
        }
        self.dirty = true;
        if matches!(self.window.spec.kind, WindowKind::Session { .. }) {
            self.touched.push(super::group_hash(&self.window.spec, row));
        }
        self.window.add(row)
    }
}

impl TaskWindows {
    /// The window `spec` with the tasks of `setup`, on `context`'s shard
    /// instance.
    pub fn new(spec: RowWindowSpec, context: &ShardContext, setup: TaskedSetup) -> TaskWindows {
        TaskWindows {
            metrics: RowWindow::new(spec, context),
            tasks: Tasked::new(setup, context),
        }
    }

    /// Takes the handoffs the consumer thread left, if any.
    fn take_handoffs(&mut self) {
        self.tasks.take_handoffs(&self.metrics);
    }

    /// Adds `row` to its task; `false` if it was not counted (late,
    /// without a time, or of a task this process does not hold).
    fn add(&mut self, row: &ArchivedRow) -> bool {
        self.tasks.task_for(row).is_some_and(|task| task.add(row))
    }

    /// Fires what each task's stream time closed.
    fn fire_all(&mut self) {
        let mut failed = None;
        for task in self.tasks.states_mut() {
            if let Err(error) = task.fire() {
                failed = Some(error);
            }
        }
        if let Some(error) = failed {
            self.tasks.fail(error);
        }
    }
}

impl Processor for TaskWindows {
    type Input = Row;
    type Output = Row;

    /// Rows from the inputs are counted in their tasks, or, when the
    /// window repartitions, sent to its repartition topic; the rows read
    /// back from that topic come in on the port after the inputs' and are
    /// counted.
    fn process(&mut self, port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        self.take_handoffs();
        if let Some(topic) = self.tasks.sends_on(port) {
            for row in batch.iter() {
                self.tasks.send_on(&topic, row);
            }
            return;
        }
        for row in batch.iter() {
            if !self.add(row) && out.has_port(1) {
                out.push_to(1, &row.to_row());
            }
        }
        self.fire_all();
    }

    fn on_watermark(&mut self, _watermark: u64, _out: &mut Emitter<Row>) {
        // Tasks close windows on their own stream time (module docs).
    }

    fn drain(&mut self, out: &mut Emitter<Row>) -> bool {
        let queued = |task: &&mut Task| !task.window.closed_rows.is_empty();
        let Some(task) = self.tasks.states_mut().find(queued) else {
            return false;
        };
        task.window.closed_rows.drain_into(out);
        self.tasks
            .states()
            .any(|task| !task.window.closed_rows.is_empty())
    }

    /// The state is in the changelog; the local log holds the tasks only
    /// at a graceful stop (`Tasked::snapshot`).
    fn snapshot(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.take_handoffs();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::kafka::key_partition;
    use crate::processors::window::rows::{build, RowWindowConfig};
    use crate::row::{Schema, Type};
    use crate::scale_out::tasked::testing::{
        archived, check_local, compact, restore_all, sorted, Changelog,
    };
    use crate::scale_out::{ChangelogRecord, GroupPlan, GroupRun};

    const TASKS: u32 = 4;

    fn spec(extra: &str) -> RowWindowSpec {
        // A session window has a gap, no size.
        let size = if extra.contains("session") {
            ""
        } else {
            "size = \"1s\"\n"
        };
        let text = format!(
            "inputs = [\"in\"]\n{size}time_field = \"at\"\ngroup_by = [\"user\"]\n\
             aggregates = [\"count\", \"sum:bytes\"]\n{extra}"
        );
        let config: RowWindowConfig = toml::from_str(&text).expect("a config");
        let schema = Schema::new([
            ("at", Type::Timestamp),
            ("user", Type::String),
            ("bytes", Type::Int),
        ]);
        build(&config, &schema).expect("a spec").0
    }

    /// A window of a run holding every task, their state as `topic` (a
    /// compacted changelog: partition and key to value) holds it.
    fn window(spec: &RowWindowSpec, run: &Arc<GroupRun>, topic: &Changelog) -> TaskWindows {
        repartitioning(spec, run, topic, None)
    }

    /// [`window`], repartitioning through `repartition` when given.
    fn repartitioning(
        spec: &RowWindowSpec,
        run: &Arc<GroupRun>,
        topic: &Changelog,
        repartition: Option<(Arc<str>, usize)>,
    ) -> TaskWindows {
        run.set_tasks(TASKS);
        let setup = TaskedSetup {
            node: "per_user".into(),
            kind: "window",
            key_option: "group_by",
            key_indices: spec.group_indices.clone(),
            run: run.clone(),
            topic: "t".into(),
            repartition,
        };
        let mut window = TaskWindows {
            metrics: RowWindow::bare(spec.clone()),
            tasks: Tasked::on(setup, 0, 1),
        };
        restore_all(run, "per_user", TASKS, topic);
        window.take_handoffs();
        window
    }

    fn rows(seed: u64, count: usize) -> Vec<Row> {
        let mut x = seed;
        (0..count)
            .map(|i| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // In order per user but mixed across them: up to 300 ms back.
                let at = i as i64 * 7 - ((x >> 33) % 300) as i64;
                Row {
                    values: vec![
                        Value::Timestamp(at),
                        Value::String(format!("u{}", (x >> 40) % 23)),
                        Value::Int((x >> 20) as i64 % 100),
                    ],
                }
            })
            .collect()
    }

    /// Feeds `rows` a batch of 50 at a time; returns the rows fired.
    fn feed(window: &mut TaskWindows, rows: &[Row]) -> Vec<Row> {
        let mut fired = Vec::new();
        for batch in rows.chunks(50) {
            window.take_handoffs();
            for row in batch {
                archived(row, |row| window.add(row));
            }
            window.fire_all();
            for task in window.tasks.states_mut() {
                fired.extend(task.window.closed_rows.take_all());
            }
        }
        fired
    }

    /// A window restored from its changelog, at any epoch, fires exactly
    /// what the uninterrupted one does; tombstones keep the changelog to
    /// the open windows.
    #[test]
    fn a_window_restored_from_its_changelog_continues_exactly() {
        for extra in [
            "",
            "kind = \"sliding\"\nslide = \"250ms\"",
            "allowed_lateness = \"200ms\"",
            "kind = \"session\"\ngap = \"150ms\"",
            "kind = \"session\"\ngap = \"400ms\"\nallowed_lateness = \"100ms\"",
            // Sessions of a group open side by side: some fire, some stay.
            "kind = \"session\"\ngap = \"60ms\"\nallowed_lateness = \"600ms\"",
        ] {
            let spec = spec(extra);
            let input = rows(7, 6_000);
            let whole = {
                let run = GroupPlan::new("g-whole").run();
                run.add_state("per_user", &[], None);
                sorted(feed(&mut window(&spec, &run, &Changelog::new()), &input))
            };
            assert!(whole.len() > 300, "{extra}: {} rows", whole.len());
            // Cuts between batches: where a batch ends decides which rows
            // a fire made late, in a restored run as in an uninterrupted one.
            for cut in [0, 750, 3_000, 5_950] {
                let run = GroupPlan::new("g-cut").run();
                run.add_state("per_user", &[], None);
                let mut topic = Changelog::new();
                let mut first = window(&spec, &run, &topic);
                let mut fired = Vec::new();
                // Epochs of one batch, 50 rows (some groups get none: their sessions fire
                // untouched), then one at the cut.
                let mut epoch = 0;
                for chunk in input[..cut].chunks(50) {
                    fired.extend(feed(&mut first, chunk));
                    epoch += 1;
                    assert!(first.snapshot(epoch).expect("a snapshot").is_empty());
                    compact(&run, epoch, &mut topic);
                }
                // A graceful stop: the final snapshot holds the tasks.
                first.tasks.stopping();
                epoch += 1;
                let local = first.snapshot(epoch).expect("the final snapshot");
                compact(&run, epoch, &mut topic);
                check_local(&local, epoch, &topic);
                // Open (window, group)s, or session groups with open
                // sessions.
                let open: usize = first
                    .tasks
                    .states()
                    .map(|task| {
                        let windows: usize = task.window.windows.values().map(|g| g.len()).sum();
                        let sessions: usize = task.window.sessions.values().map(Vec::len).sum();
                        windows + sessions
                    })
                    .sum();
                // Every open (window, group) and each task's record: no
                // fired window left behind.
                let tasks_seen = topic.keys().filter(|(_, key)| key == META_KEY).count();
                assert_eq!(topic.len(), open + tasks_seen, "{extra}: cut {cut}");
                let mut restored = window(&spec, &run, &topic);
                fired.extend(feed(&mut restored, &input[cut..]));
                let fired = sorted(fired);
                let first_difference = fired.iter().zip(&whole).position(|(a, b)| a != b);
                assert!(
                    fired.len() == whole.len() && first_difference.is_none(),
                    "{extra}: cut at {cut}: {} rows against {}, first difference at {:?}: {:?}",
                    fired.len(),
                    whole.len(),
                    first_difference,
                    first_difference.map(|at| (&fired[at], &whole[at]))
                );
            }
        }
    }

    /// A task given up hands in its last epoch's changes and goes; a row
    /// of a task not held fails the run, naming the group and the task.
    #[test]
    fn a_revoked_task_goes_after_its_epoch_and_a_row_of_no_held_task_fails_the_run() {
        let spec = spec("");
        let run = GroupPlan::new("g-revoke").run();
        run.add_state("per_user", &[], None);
        let mut topic = Changelog::new();
        let mut window = window(&spec, &run, &topic);
        let input = rows(11, 400);
        feed(&mut window, &input[..200]);
        let partitions: Vec<(String, i32)> = (0..4).map(|task| ("in".to_owned(), task)).collect();
        run.revoke_tasks(&partitions, 2);
        window.snapshot(1).expect("a snapshot");
        assert!(compact(&run, 1, &mut topic) > 0);
        assert!(window.tasks.states().count() == 4, "held through epoch 1");
        feed(&mut window, &input[200..300]);
        window.snapshot(2).expect("a snapshot");
        assert!(
            compact(&run, 2, &mut topic) > 0,
            "epoch 2's changes are handed in"
        );
        assert_eq!(window.tasks.states().count(), 0, "dropped after epoch 2");
        assert!(run.failure().is_none());
        feed(&mut window, &input[300..301]);
        let why = run.failure().expect("the run failed");
        assert!(why.contains("belongs to task"), "{why}");
        assert!(
            why.contains("says the input topic is keyed by the window's `group_by`"),
            "{why}"
        );
    }

    /// A repartitioning window sends each row, at the next barrier, to the
    /// partition of its task, keyed by its group; the rows read back (as
    /// the source decodes them) and counted fire what a window fed
    /// directly fires.
    #[test]
    fn rows_sent_through_the_repartition_topic_count_as_rows_fed_directly() {
        let spec = spec("");
        let input = rows(5, 3_000);
        let direct = {
            let run = GroupPlan::new("g-direct").run();
            run.add_state("per_user", &[], None);
            sorted(feed(&mut window(&spec, &run, &Changelog::new()), &input))
        };
        let run = GroupPlan::new("g-repartition").run();
        let (_, topic, port) = run.add_repartitioned_state("per_user", &[]);
        assert_eq!(&*topic, "g-repartition-per_user-repartition");
        assert_eq!(port, crate::scale_out::REPARTITION_PORT);
        let mut window = repartitioning(&spec, &run, &Changelog::new(), Some((topic.clone(), 1)));
        let mut fired = Vec::new();
        let mut epoch = 0;
        for chunk in input.chunks(700) {
            for row in chunk {
                archived(row, |row| window.tasks.send_on(&topic, row));
            }
            epoch += 1;
            window.snapshot(epoch).expect("a snapshot");
            let sent: Vec<ChangelogRecord> = run
                .take_changelog(epoch)
                .into_iter()
                .filter(|record| record.topic == topic)
                .collect();
            assert_eq!(sent.len(), chunk.len(), "every row, once, in its epoch");
            let mut back = Vec::new();
            for record in sent {
                let row = crate::row::decode_row(&record.value.expect("a row")).expect("decodes");
                let Value::String(user) = &row.values[1] else {
                    panic!("a user in {row:?}")
                };
                assert_eq!(record.key, user.as_bytes(), "keyed by the group");
                assert_eq!(record.partition, key_partition(user.as_bytes(), TASKS));
                back.push(row);
            }
            fired.extend(feed(&mut window, &back));
        }
        assert_eq!(sorted(fired), direct);
        assert!(run.failure().is_none(), "{:?}", run.failure());
    }

    /// A changelog that cannot be read fails the run, naming the task and
    /// the topic.
    #[test]
    fn a_bad_changelog_record_fails_the_run() {
        let spec = spec("");
        let run = GroupPlan::new("g-bad").run();
        run.add_state("per_user", &[], None);
        let mut topic = Changelog::new();
        topic.insert((2, b"some key".to_vec()), b"not a window".to_vec());
        let _window = window(&spec, &run, &topic);
        let why = run.failure().expect("the run failed");
        assert!(why.contains("task 2"), "{why}");
        assert!(why.contains("changelog `t`"), "{why}");
    }
}
