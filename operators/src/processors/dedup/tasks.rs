//! [`TaskDedups`]: the `dedup` of a scaled-out pipeline (`[runtime]
//! group`, docs/scale-out.md "State that moves"): one [`Dedup`] per task,
//! its entries logged to the dedup's changelog topic and restored from it
//! when the task moves.
//!
//! A row's task is its identity's (`crate::scale_out::tasked`, the key
//! being the `fields`): read straight from the input's partitions when the
//! source's `keyed_by` is the dedup's `fields`, else through the dedup's
//! repartition topic.
//!
//! # Time
//! Each task applies the rule on its own **stream time**, the largest
//! event time its rows carried, in place of the watermark: a record
//! before it is decided at once, one at it is held until a later record
//! of the task moves the stream time past it (so it waits for its task's
//! next record, as a window's rows wait for their window to close), and
//! entries expire as it passes `first + window`. The process's watermark,
//! which mixes whichever partitions it holds now, is not used, and neither
//! a stop nor the end of the input releases a held record: it stays held
//! with its task.
//!
//! # Changelog
//! At every barrier each task hands in, to its partition of the changelog
//! topic: each identity whose entry started, restarted or expired since
//! (key: its 64-bit hash, 8 bytes big-endian; value: its first-seen time, 8
//! bytes big-endian; a tombstone once it expired), and, when anything
//! changed, its meta record (key `weir.task`: the stream time, the repeats
//! dropped and the held records, as the dedup's snapshot holds them).

use rkyv::rancor;
use weir_runtime::{Batch, Emitter, OperatorError, Processor, ShardContext};

use super::{Dedup, DedupSpec, DedupState};
use crate::component::{connect_tasked, Input, Node};
use crate::row::convert::copy_row;
use crate::row::{ArchivedRow, Row};
use crate::scale_out::local::Entries;
use crate::scale_out::tasked::{Changes, TaskPlan, TaskState, Tasked, TaskedSetup, META_KEY};

/// One task's dedup.
#[derive(Debug)]
pub struct DedupTask {
    dedup: Dedup,
    /// A row reached it, or its stream time moved, since the last barrier.
    dirty: bool,
}

/// What a task's dedup is made from.
#[derive(Debug)]
pub struct DedupTemplate {
    spec: DedupSpec,
    /// The operator's `weir_dedup_dropped` on this shard.
    dropped_metric: Option<weir_runtime::metrics::ShardCounter>,
}

fn eight_bytes(bytes: &[u8], what: &str) -> Result<[u8; 8], String> {
    bytes
        .try_into()
        .map_err(|_| format!("{what} of {} bytes, not 8", bytes.len()))
}

impl TaskState for DedupTask {
    type Template = DedupTemplate;

    fn restore(template: &DedupTemplate, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self, String> {
        let mut dedup = Dedup::bare(template.spec.clone());
        dedup.dropped_metric = template.dropped_metric.clone();
        let mut meta: Option<DedupState> = None;
        let mut live = Vec::new();
        for (key, value) in entries {
            if key == META_KEY {
                let mut aligned = rkyv::util::AlignedVec::<16>::new();
                aligned.extend_from_slice(&value);
                let state = rkyv::from_bytes::<DedupState, rancor::BoxedError>(&aligned)
                    .map_err(|error| format!("the task's record: {error}"))?;
                meta = Some(state);
            } else {
                let hash = u64::from_be_bytes(eight_bytes(&key, "an identity")?);
                let first = i64::from_be_bytes(eight_bytes(&value, "a first-seen time")?);
                live.push((hash, first));
            }
        }
        match meta {
            Some(mut state) => {
                live.sort_unstable();
                state.entries = live;
                dedup.replace(state)?;
            }
            None if !live.is_empty() => {
                return Err(format!(
                    "{} identities but no `weir.task` record",
                    live.len()
                ));
            }
            None => {}
        }
        dedup.changed = Some(Vec::new());
        Ok(DedupTask {
            dedup,
            dirty: false,
        })
    }

    fn changes(&mut self) -> Result<Changes, OperatorError> {
        let dedup = &mut self.dedup;
        let changed = dedup.changed.get_or_insert_with(Vec::new);
        changed.sort_unstable();
        changed.dedup();
        let mut records: Changes = Vec::with_capacity(changed.len() + 1);
        for hash in changed.drain(..) {
            let first = dedup.first_seen.get(&hash);
            records.push((
                hash.to_be_bytes().to_vec(),
                first.map(|first| first.to_be_bytes().to_vec()),
            ));
        }
        if std::mem::take(&mut self.dirty) {
            let mut state = dedup.state();
            // The entries go as records of their own.
            state.entries = Vec::new();
            let bytes = rkyv::to_bytes::<rancor::Error>(&state)
                .map_err(|error| OperatorError::other(format!("dedup state: {error}")))?;
            records.push((META_KEY.to_vec(), Some(bytes.to_vec())));
        }
        Ok(records)
    }

    /// Every live identity, and the meta record.
    fn entries(&mut self) -> Result<Entries, OperatorError> {
        let mut state = self.dedup.state();
        let mut entries: Entries = std::mem::take(&mut state.entries)
            .into_iter()
            .map(|(hash, first)| (hash.to_be_bytes().to_vec(), first.to_be_bytes().to_vec()))
            .collect();
        let bytes = rkyv::to_bytes::<rancor::Error>(&state)
            .map_err(|error| OperatorError::other(format!("dedup state: {error}")))?;
        entries.push((META_KEY.to_vec(), bytes.to_vec()));
        Ok(entries)
    }
}

impl DedupTask {
    /// Takes `row`: whether it is emitted now; then its time moves the
    /// stream time, which releases the held records before it.
    fn take(&mut self, row: &ArchivedRow) -> bool {
        self.dirty = true;
        let emitted = self.dedup.accept(row);
        if let Some(time) = row.get(self.dedup.spec.time).as_timestamp() {
            if let Ok(time) = u64::try_from(time) {
                self.dedup.advance(time);
            }
        }
        emitted
    }
}

/// The scaled-out `dedup`; see the module docs.
#[derive(Debug)]
pub struct TaskDedups {
    template: DedupTemplate,
    tasks: Tasked<DedupTask>,
    out: Row,
}

impl TaskDedups {
    /// The dedup `spec` with the tasks of `setup`, on `context`'s shard
    /// instance.
    pub fn new(spec: DedupSpec, setup: TaskedSetup, context: &ShardContext) -> TaskDedups {
        let dropped_metric = Dedup::new(spec.clone(), context).dropped_metric;
        TaskDedups::with(
            DedupTemplate {
                spec,
                dropped_metric,
            },
            Tasked::new(setup, context),
        )
    }

    fn with(template: DedupTemplate, tasks: Tasked<DedupTask>) -> TaskDedups {
        TaskDedups {
            out: Row::nulls(template.spec.width),
            template,
            tasks,
        }
    }

    /// Takes `row` in its task; whether it is emitted now (then it is in
    /// `self.out`).
    fn take(&mut self, row: &ArchivedRow) -> bool {
        let Some(task) = self.tasks.task_for(row) else {
            return false;
        };
        if !task.take(row) {
            return false;
        }
        copy_row(&mut self.out.values, row, self.template.spec.width);
        true
    }
}

impl Processor for TaskDedups {
    type Input = Row;
    type Output = Row;

    /// Rows from the inputs are decided in their tasks, or, when the dedup
    /// repartitions, sent to its repartition topic; the rows read back
    /// from it come in on the port after the inputs'.
    fn process(&mut self, port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        self.tasks.take_handoffs(&self.template);
        if let Some(topic) = self.tasks.sends_on(port) {
            for row in batch.iter() {
                self.tasks.send_on(&topic, row);
            }
            return;
        }
        for row in batch.iter() {
            if self.take(row) {
                out.push(&self.out);
            }
        }
    }

    fn on_watermark(&mut self, _watermark: u64, _out: &mut Emitter<Row>) {
        // Tasks decide on their own stream time (module docs).
    }

    fn drain(&mut self, out: &mut Emitter<Row>) -> bool {
        let queued = |task: &&mut DedupTask| !task.dedup.released.is_empty();
        let Some(task) = self.tasks.states_mut().find(queued) else {
            return false;
        };
        task.dedup.released.drain_into(out);
        self.tasks
            .states()
            .any(|task| !task.dedup.released.is_empty())
    }

    /// The state is in the changelog; the local log holds the tasks only
    /// at a graceful stop (`Tasked::snapshot`).
    fn snapshot(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.tasks.take_handoffs(&self.template);
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

/// The node of a dedup in a scaled-out run ([`TaskDedups`]).
pub(super) struct TaskedDedup {
    pub(super) spec: DedupSpec,
    pub(super) fingerprint: Vec<(String, String)>,
    pub(super) tasks: TaskPlan,
}

impl Node for TaskedDedup {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let repartition = connect_tasked(graph, name, inputs, &self.tasks);
        let (spec, tasks) = (self.spec.clone(), self.tasks.clone());
        graph
            .processor(name, move |context| {
                let setup = tasks.setup(
                    context.node.clone(),
                    ("dedup", "fields"),
                    spec.fields.clone(),
                    repartition.clone(),
                );
                TaskDedups::new(spec.clone(), setup, context)
            })
            .state_fingerprint(self.fingerprint.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::processors::dedup::{build, DedupConfig};
    use crate::row::{Schema, Type, Value};
    use crate::scale_out::tasked::testing::{
        archived, check_local, compact, restore_all, sorted, Changelog,
    };
    use crate::scale_out::{GroupPlan, GroupRun};

    const TASKS: u32 = 4;

    fn spec() -> DedupSpec {
        let config: DedupConfig = toml::from_str(
            "inputs = [\"in\"]\nfields = [\"user\", \"path\"]\nwindow = \"2s\"\n\
             time_field = \"at\"",
        )
        .expect("a config");
        let schema = Schema::new([
            ("at", Type::Timestamp),
            ("user", Type::String),
            ("path", Type::String),
            ("n", Type::Int),
        ]);
        build(&config, &schema).expect("a spec").0
    }

    /// A dedup of `run` holding every task, restored from `topic`.
    fn tasked(spec: &DedupSpec, run: &Arc<GroupRun>, topic: &Changelog) -> TaskDedups {
        run.set_tasks(TASKS);
        let setup = TaskedSetup {
            node: "once".into(),
            kind: "dedup",
            key_option: "fields",
            key_indices: spec.fields.clone(),
            run: run.clone(),
            topic: "t".into(),
            repartition: None,
        };
        let template = DedupTemplate {
            spec: spec.clone(),
            dropped_metric: None,
        };
        let mut dedup = TaskDedups::with(template, Tasked::on(setup, 0, 1));
        restore_all(run, "once", TASKS, topic);
        dedup.tasks.take_handoffs(&dedup.template);
        dedup
    }

    /// Rows 50 ms apart, up to 400 ms out of order, of 9 users on 3
    /// paths: many repeats within the 2 s window.
    fn rows(count: usize) -> Vec<Row> {
        let mut x = 29u64;
        (0..count)
            .map(|i| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                Row {
                    values: vec![
                        Value::Timestamp(1_000 + i as i64 * 50 - ((x >> 33) % 400) as i64),
                        Value::String(format!("u{}", (x >> 40) % 9)),
                        Value::String(format!("/p{}", (x >> 20) % 3)),
                        Value::Int(i as i64),
                    ],
                }
            })
            .collect()
    }

    /// Feeds `rows` in batches of 50; returns what was emitted, at once
    /// or released.
    fn feed(dedup: &mut TaskDedups, rows: &[Row]) -> Vec<Row> {
        let mut emitted = Vec::new();
        for batch in rows.chunks(50) {
            dedup.tasks.take_handoffs(&dedup.template);
            for row in batch {
                if archived(row, |row| dedup.take(row)) {
                    emitted.push(dedup.out.clone());
                }
            }
            for task in dedup.tasks.states_mut() {
                emitted.extend(task.dedup.released.take_all());
            }
        }
        emitted
    }

    /// A dedup restored from its changelog at any epoch emits exactly what
    /// the uninterrupted one does; expired entries leave tombstones, so
    /// the changelog holds the live ones.
    #[test]
    fn a_dedup_restored_from_its_changelog_goes_on_exactly() {
        let spec = spec();
        let input = rows(4_000);
        let whole = {
            let run = GroupPlan::new("g-dedup-whole").run();
            run.add_state("once", &[], None);
            sorted(feed(&mut tasked(&spec, &run, &Changelog::new()), &input))
        };
        assert!(
            whole.len() > 200 && whole.len() < input.len() / 2,
            "{} of {} kept",
            whole.len(),
            input.len()
        );
        for cut in [0, 500, 2_000, 3_950] {
            let run = GroupPlan::new("g-dedup-cut").run();
            run.add_state("once", &[], None);
            let mut topic = Changelog::new();
            let mut first = tasked(&spec, &run, &topic);
            let mut emitted = Vec::new();
            let mut last = 0;
            for (epoch, chunk) in (1..).zip(input[..cut].chunks(50)) {
                emitted.extend(feed(&mut first, chunk));
                assert!(first.snapshot(epoch).expect("a snapshot").is_empty());
                compact(&run, epoch, &mut topic);
                last = epoch;
            }
            // A graceful stop: the final snapshot holds the tasks.
            first.tasks.stopping();
            let local = first.snapshot(last + 1).expect("the final snapshot");
            compact(&run, last + 1, &mut topic);
            check_local(&local, last + 1, &topic);
            let live: usize = first.tasks.states().map(|task| task.dedup.live()).sum();
            let logged = topic.keys().filter(|(_, key)| key != META_KEY).count();
            assert_eq!(logged, live, "cut {cut}: the live identities, no more");
            let mut restored = tasked(&spec, &run, &topic);
            assert!(run.failure().is_none(), "{:?}", run.failure());
            emitted.extend(feed(&mut restored, &input[cut..]));
            assert_eq!(sorted(emitted), whole, "cut {cut}");
        }
    }
}
