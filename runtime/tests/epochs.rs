//! Goal: with a data directory, a run's committed output holds every input
//! record's effect exactly once, also when a run fails half-way and a new
//! run recovers on the same directory.
//!
//! Method:
//! - Pipeline: a replayable source of ids → hash edge → a counter per key
//!   (state snapshotted each epoch, emitted at the end) → a sink that
//!   stages each epoch's lines in a hidden directory and publishes them by
//!   rename on commit (idempotent).
//! - First run: the sink panics on its first write. The counter emits at
//!   the end, so that is in the final epoch, after earlier epochs committed
//!   the counter's snapshots and the sources' positions. Second run, same
//!   directory: it must recover from the committed epoch and finish. A third
//!   run finds the run complete and does nothing.
//! - Check: published files, read back, hold every (key, count) exactly as
//!   computed directly, and no staged file is left. No timing is involved:
//!   the crash point is chosen by epoch, not by time.
//! - Stop and drain: a run stopped with `Handle::shutdown` publishes
//!   nothing (the counter is not finished) and the next run's counts are
//!   exact; a run drained with `Handle::shutdown_and_drain` publishes its
//!   partial counts and is complete.
//!
//! - Lost segments: a shard log whose only segment is deleted after a stop
//!   ends below the durable LSN the last commit record names for it, and
//!   a shard log missing its newest or a middle segment has a gap; each is
//!   refused at the next start, naming the shard's directory, and starts
//!   again once the segment is back. A commit record of an older build
//!   (no shard LSNs) is read without that check.
//!
//! - Incremental snapshots: the counter logs a base every 64th epoch and
//!   only its changed keys otherwise; a run over more than 64 epochs
//!   fails at its end, and the recovery (the base and the changes after
//!   it) must give exact counts. The log holds both kinds of record.
//!
//! The SIGKILL tests live in the top-level `tests/`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::Item;
use weir_runtime::{
    Batch, Emitter, GraphBuilder, OperatorError, Partition, Processor, Runtime, ShardContext, Sink,
    Source, SourcePoll,
};

const ITEMS: u64 = 300_000;

/// How a test runs the pipeline.
#[derive(Clone, Copy)]
struct Options {
    keys: u64,
    fail: bool,
    segment_bytes: Option<u64>,
    epoch_interval_ms: u64,
    shards: usize,
    /// Bytes of a checked pattern the counter adds to every snapshot, to
    /// make it larger than one WAL record.
    pad_bytes: usize,
    /// Whether the counter snapshots incrementally.
    incremental: bool,
    /// Whether its bases are swept (with `incremental`).
    swept: bool,
}

const PLAIN: Options = Options {
    keys: 100,
    fail: false,
    segment_bytes: None,
    epoch_interval_ms: 5,
    shards: 2,
    pad_bytes: 0,
    incremental: false,
    swept: false,
};

/// Ids `instance, instance + n, ...` below `ITEMS`, 500 per poll (so a run
/// spans several epochs); its position is the next id.
struct Ids {
    next: u64,
    step: u64,
    keys: u64,
    /// Ids per poll, and the pause after each poll.
    per_poll: u64,
    pause: Duration,
}

impl Source for Ids {
    type Output = Item;

    fn poll(&mut self, out: &mut Emitter<Item>) -> SourcePoll {
        for _ in 0..self.per_poll {
            if self.next >= ITEMS {
                return SourcePoll::Exhausted;
            }
            out.push(&Item {
                id: self.next,
                key: self.next % self.keys,
            });
            self.next += self.step;
        }
        // Slow enough that epochs (every 5 ms) interleave with the data.
        std::thread::sleep(self.pause);
        SourcePoll::Ready
    }

    fn position(&self) -> Vec<u8> {
        self.next.to_le_bytes().to_vec()
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| OperatorError::invalid("bad position"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Counts ids per key; emits `Item { id: count, key }` per key at the end.
/// Its snapshot is `u64` pad length, that many pattern bytes (checked on
/// restore), then the (key, count) pairs. Incremental, its changes are the
/// same with only the keys counted since the last snapshot.
#[derive(Default)]
struct CountPerKey {
    counts: BTreeMap<u64, u64>,
    pad: usize,
    incremental: bool,
    changed: std::collections::BTreeSet<u64>,
    swept: bool,
    /// The next key a base sweep in progress writes.
    sweep_next: Option<u64>,
}

impl CountPerKey {
    fn encode<'a>(&self, pairs: impl Iterator<Item = (&'a u64, &'a u64)>) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + self.pad + self.counts.len() * 16);
        bytes.extend_from_slice(&(self.pad as u64).to_le_bytes());
        bytes.extend((0..self.pad).map(pad_byte));
        for (k, c) in pairs {
            bytes.extend_from_slice(&k.to_le_bytes());
            bytes.extend_from_slice(&c.to_le_bytes());
        }
        bytes
    }
}

fn pad_byte(index: usize) -> u8 {
    (index.wrapping_mul(31).wrapping_add(7) % 251) as u8
}

impl Processor for CountPerKey {
    type Input = Item;
    type Output = Item;

    fn process(&mut self, _port: usize, batch: &Batch<Item>, _out: &mut Emitter<Item>) {
        for item in batch.iter() {
            let key = item.key.to_native();
            *self.counts.entry(key).or_insert(0) += 1;
            if self.incremental {
                self.changed.insert(key);
            }
        }
    }

    fn finish(&mut self, out: &mut Emitter<Item>) {
        for (&key, &count) in &self.counts {
            out.push(&Item { id: count, key });
        }
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.changed.clear();
        Ok(self.encode(self.counts.iter()))
    }

    fn incremental(&self) -> bool {
        self.incremental
    }

    fn snapshot_changes(&mut self, _epoch: u64, out: &mut Vec<u8>) -> Result<(), OperatorError> {
        let changed = std::mem::take(&mut self.changed);
        let pairs: Vec<(u64, u64)> = changed.iter().map(|k| (*k, self.counts[k])).collect();
        out.extend_from_slice(&self.encode(pairs.iter().map(|(k, c)| (k, c))));
        Ok(())
    }

    fn restore_changes(&mut self, changes: &[u8]) -> Result<(), OperatorError> {
        // Changed keys overwrite their counts, as `restore` inserts them.
        self.restore(changes)
    }

    fn swept_bases(&self) -> bool {
        self.swept
    }

    /// A slice is (key, count) pairs in key order, after the changes' (no
    /// padding in this mode: `restore` reads them as more pairs).
    fn sweep_base(
        &mut self,
        begin: bool,
        epochs_left: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, OperatorError> {
        assert_eq!(self.pad, 0, "swept bases are not padded");
        if begin {
            self.sweep_next = Some(0);
        }
        let Some(next) = self.sweep_next else {
            return Ok(true);
        };
        let remaining = self.counts.range(next..).count() as u64;
        let take = if epochs_left <= 1 {
            remaining
        } else {
            remaining.div_ceil(epochs_left)
        };
        let mut last = None;
        for (key, count) in self.counts.range(next..).take(take as usize) {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            last = Some(*key);
        }
        self.sweep_next = match last {
            Some(key) if take < remaining => Some(key + 1),
            _ => None,
        };
        Ok(self.sweep_next.is_none())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        let pad = u64::from_le_bytes(state[..8].try_into().expect("8 bytes")) as usize;
        let bad = (0..pad).find(|&i| state[8 + i] != pad_byte(i));
        if let Some(i) = bad {
            return Err(OperatorError::invalid(format!(
                "snapshot pad byte {i} is wrong"
            )));
        }
        for pair in state[8 + pad..].chunks_exact(16) {
            let key = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
            let count = u64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
            self.counts.insert(key, count);
        }
        Ok(())
    }
}

/// Stages "key count" lines per epoch in `DIR/.staging/shard-S-epoch-E`;
/// commit renames to `DIR/shard-S-epoch-E`.
struct Staged {
    dir: PathBuf,
    shard: usize,
    lines: Vec<u8>,
    fail: bool,
}

impl Staged {
    fn new(context: &ShardContext, dir: &Path, fail: bool) -> Staged {
        let staging = dir.join(".staging");
        fs::create_dir_all(&staging).expect("staging dir");
        // Staged output of epochs after the committed one never committed.
        for entry in fs::read_dir(&staging).expect("list staging").flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let prefix = format!("shard-{}-epoch-", context.shard);
            if let Some(epoch) = name
                .strip_prefix(&prefix)
                .and_then(|e| e.parse::<u64>().ok())
            {
                if epoch > context.committed_epoch {
                    fs::remove_file(entry.path()).expect("discard staged file");
                }
            }
        }
        Staged {
            dir: dir.to_path_buf(),
            shard: context.shard,
            lines: Vec::new(),
            fail,
        }
    }
}

impl Sink for Staged {
    type Input = Item;

    fn write(&mut self, _port: usize, batch: &Batch<Item>) {
        assert!(!self.fail, "simulated crash");
        for item in batch.iter() {
            writeln!(
                self.lines,
                "{} {}",
                item.key.to_native(),
                item.id.to_native()
            )
            .expect("in memory");
        }
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        if self.lines.is_empty() {
            return Ok(Vec::new());
        }
        let name = format!("shard-{}-epoch-{epoch}", self.shard);
        let staged = self.dir.join(".staging").join(&name);
        let mut file = fs::File::create(&staged)?;
        file.write_all(&std::mem::take(&mut self.lines))?;
        file.sync_all()?;
        let paths = format!("{}\n{}", staged.display(), self.dir.join(&name).display());
        Ok(paths.into_bytes())
    }

    fn commit(staged: &[u8], _control: &weir_runtime::CommitControl) -> Result<(), OperatorError> {
        let text = std::str::from_utf8(staged).map_err(|e| e.to_string())?;
        let (from, to) = text.split_once('\n').ok_or("bad pre-commit")?;
        if Path::new(from).exists() {
            fs::rename(from, to).map_err(|e| format!("{from}: {e}"))?;
        } else if !Path::new(to).exists() {
            return Err(format!("neither {from} nor {to} exists").into());
        }
        Ok(())
    }
}

fn run(
    data: &Path,
    out: &Path,
    options: Options,
) -> Result<weir_runtime::RunReport, weir_runtime::Error> {
    let (runtime, graph) = pipeline(data, out, options);
    runtime.run(graph)
}

/// Starts the pipeline, lets it commit two epochs, then stops it with
/// `Handle::shutdown` (a savepoint) or, with `drain`,
/// `Handle::shutdown_and_drain`.
fn run_and_stop(data: &Path, out: &Path, drain: bool) -> weir_runtime::RunReport {
    let (runtime, graph) = pipeline(data, out, PLAIN);
    let running = runtime.start(graph).expect("starts");
    let committed = || {
        runtime
            .metrics()
            .render()
            .lines()
            .find_map(|line| line.strip_prefix("weir_epoch_committed "))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while committed() < 2 {
        assert!(std::time::Instant::now() < deadline, "no epoch committed");
        std::thread::sleep(Duration::from_millis(1));
    }
    if drain {
        running.handle().shutdown_and_drain();
    } else {
        running.handle().shutdown();
    }
    running.wait().expect("the stop succeeds")
}

/// Segments are numbered densely from 0, so the last number of those
/// `left` tells how many were ever written; retention must have removed
/// most.
fn assert_most_segments_retired(left: &[u64], shard: usize) {
    let written = left.last().map_or(0, |last| last + 1) as usize;
    eprintln!("shard {shard}: {} of {written} segments kept", left.len());
    assert!(
        left.len() * 2 < written,
        "shard {shard}: {} of {written} segments kept ({left:?})",
        left.len()
    );
}

fn pipeline(data: &Path, out: &Path, options: Options) -> (Runtime, weir_runtime::Graph) {
    let out: Arc<Path> = out.into();
    let mut graph = GraphBuilder::new();
    graph.source("ids", move |context| Ids {
        next: context.instance as u64,
        step: context.instances as u64,
        keys: options.keys,
        // Incremental: a run of more than 64 epochs (polls of 25 ids,
        // with a barrier between every few polls).
        per_poll: if options.incremental { 25 } else { 500 },
        pause: Duration::from_micros(200),
    });
    graph.processor("count", move |_| CountPerKey {
        pad: options.pad_bytes,
        incremental: options.incremental,
        swept: options.swept,
        ..CountPerKey::default()
    });
    graph.sink("out", move |context| {
        Staged::new(context, &out, options.fail)
    });
    graph.connect("ids", "count", Partition::hash(|item: &Item| item.key));
    graph.connect("count", "out", Partition::<Item>::Forward);
    let mut runtime = Runtime::builder()
        .shards(options.shards)
        // More shards than this machine's 2 cores run unpinned.
        .pin(options.shards <= 2)
        .data_dir(data)
        .epoch_interval(Duration::from_millis(options.epoch_interval_ms));
    if let Some(bytes) = options.segment_bytes {
        runtime = runtime.wal_segment_bytes(bytes);
    }
    let runtime = runtime.build().expect("runtime starts");
    (runtime, graph.build().expect("valid graph"))
}

fn published(out: &Path) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    for entry in fs::read_dir(out).expect("list output").flatten() {
        if entry.path().is_dir() {
            continue;
        }
        for line in fs::read_to_string(entry.path())
            .expect("read output")
            .lines()
        {
            let (key, count) = line.split_once(' ').expect("key count");
            let previous = counts.insert(key.parse().expect("key"), count.parse().expect("count"));
            assert!(previous.is_none(), "key {key} published twice");
        }
    }
    counts
}

fn expected(keys: u64) -> BTreeMap<u64, u64> {
    (0..keys).map(|key| (key, ITEMS / keys)).collect()
}

#[test]
fn a_bounded_run_commits_every_effect_once() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let report = run(data.path(), out.path(), PLAIN).expect("run succeeds");
    assert!(
        report.last_committed_epoch >= 2,
        "only {} epochs",
        report.last_committed_epoch
    );
    assert_eq!(published(out.path()), expected(PLAIN.keys));
}

#[test]
fn a_failed_run_is_recovered_exactly_once() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let error = run(
        data.path(),
        out.path(),
        Options {
            fail: true,
            ..PLAIN
        },
    )
    .expect_err("the sink fails");
    assert!(error.to_string().contains("simulated crash"), "{error}");
    assert!(
        published(out.path()).is_empty(),
        "the failed epoch published output"
    );

    let recovered = run(data.path(), out.path(), PLAIN).expect("recovery run succeeds");
    assert!(!recovered.already_complete);
    // It resumed from a committed epoch: counts restored from snapshots plus
    // records replayed from logged positions, not a replay from scratch.
    assert!(
        recovered.resumed_from_epoch > 0,
        "nothing had committed before the failure"
    );
    assert_eq!(published(out.path()), expected(PLAIN.keys));
    let staged = fs::read_dir(out.path().join(".staging")).unwrap().count();
    assert_eq!(staged, 0, "staged files left behind");

    let again = run(data.path(), out.path(), PLAIN).expect("a completed run restarts cleanly");
    assert!(again.already_complete);
    assert_eq!(again.last_committed_epoch, recovered.last_committed_epoch);
    assert_eq!(published(out.path()), expected(PLAIN.keys));
}

/// A snapshot larger than one WAL record (16 MiB) is logged as CONTINUED
/// parts and its last part, and a recovery joins them: the counter's
/// restore checks every byte of a 20 MiB pattern.
#[test]
fn a_snapshot_larger_than_a_wal_record_is_recovered_whole() {
    let big = Options {
        fail: true,
        pad_bytes: 20 << 20,
        // Short epochs: the input (300 000 ids) can end within 100 ms on
        // an idle machine, before a longer epoch would have committed.
        epoch_interval_ms: 10,
        ..PLAIN
    };
    let (data, out) = failed_run(big);
    let recovered = run(data.path(), out.path(), Options { fail: false, ..big })
        .expect("recovery joins the parts");
    assert!(recovered.resumed_from_epoch > 0, "nothing had committed");
    assert_eq!(published(out.path()), expected(PLAIN.keys));
}

/// The run of [`failed_run`] again on its directories, its sink working.
fn recover(
    data: &tempfile::TempDir,
    out: &tempfile::TempDir,
    options: Options,
) -> Result<weir_runtime::RunReport, weir_runtime::Error> {
    let options = Options {
        fail: false,
        ..options
    };
    run(data.path(), out.path(), options)
}

/// A failing run with incremental snapshots over 6 000 keys: a base (96 KB
/// per shard) fills more than a 64 KiB segment, an epoch touches about a
/// hundred keys.
const INCREMENTAL: Options = Options {
    keys: 6_000,
    fail: true,
    incremental: true,
    epoch_interval_ms: 1,
    segment_bytes: Some(64 << 10),
    ..PLAIN
};

/// A run with `options` (which make its sink fail) in fresh data and
/// output directories, failed as the sink makes it.
fn failed_run(options: Options) -> (tempfile::TempDir, tempfile::TempDir) {
    assert!(options.fail, "a run that does not fail");
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let error = run(data.path(), out.path(), options).expect_err("the sink fails");
    assert!(error.to_string().contains("simulated crash"), "{error}");
    (data, out)
}

/// Incremental snapshots (see the module docs): a failed run of more than
/// 64 epochs is recovered from a base and the changes after it, exactly.
#[test]
fn incremental_snapshots_are_recovered_from_a_base_and_its_changes() {
    let options = INCREMENTAL;
    let (data, out) = failed_run(options);
    // Both kinds of record are in the log; changes are a fraction of a base.
    let (mut bases, mut base_bytes, mut changes, mut change_bytes) = (0, 0, 0, 0);
    for shard in 0..options.shards {
        let dir = data.path().join(format!("shard-{shard}"));
        for record in weir_wal::inspect_records(&dir).expect("the log reads") {
            let record = record.expect("a record");
            if record.kind == weir_wal::RecordType::OPERATOR_BASE {
                // Base epochs, and the run's first epoch.
                assert!(
                    record.epoch % 64 == 0 || record.epoch == 1,
                    "a base at epoch {}",
                    record.epoch
                );
                bases += 1;
                base_bytes += record.payload.len();
            } else if record.kind == weir_wal::RecordType::OPERATOR_CHANGES {
                changes += 1;
                change_bytes += record.payload.len();
            }
        }
    }
    assert!(changes > 0 && bases > 0, "{bases} bases, {changes} changes");
    let (base_mean, change_mean) = (base_bytes / bases, change_bytes / changes);
    eprintln!("the log keeps {bases} bases of {base_mean} B, {changes} changes of {change_mean} B");
    // An epoch touches about a hundred of the 3 000 keys a shard holds,
    // a few hundred on a loaded machine (slower commits, longer epochs).
    assert!(
        change_mean * 4 < base_mean,
        "changes ({change_mean} B) are not much smaller than bases ({base_mean} B)"
    );
    let recovered = recover(&data, &out, options).expect("recovery applies the changes");
    eprintln!("resumed from epoch {}", recovered.resumed_from_epoch);
    // Its snapshots were timed: at least its first base took some time.
    assert!(
        recovered.longest_snapshot > Duration::ZERO,
        "no snapshot was timed"
    );
    assert!(
        recovered.resumed_from_epoch > 64,
        "the run committed {} epochs: no base rewrite to span",
        recovered.resumed_from_epoch
    );
    assert_eq!(published(out.path()), expected(options.keys));
    // The log is still retired: from the last committed base on.
    for shard in 0..2 {
        assert_most_segments_retired(&segments(data.path(), shard), shard);
    }
}

/// Swept bases (`Processor::sweep_base`): from the run's second base on,
/// a base is written a slice per epoch over the epochs after its base
/// epoch, and a recovery rebuilds the state from the records of the newest
/// complete sweep on, exactly; the log holds no whole base but the run's
/// first.
#[test]
fn swept_bases_are_recovered_from_the_newest_complete_sweep() {
    let options = Options {
        swept: true,
        ..INCREMENTAL
    };
    let (data, out) = failed_run(options);
    let sweep_epochs = weir_runtime::limits::SNAPSHOT_SWEEP_EPOCHS;
    let (mut begun, mut completed) = (0, 0);
    for shard in 0..options.shards {
        let dir = data.path().join(format!("shard-{shard}"));
        let mut sweeping = None;
        for record in weir_wal::inspect_records(&dir).expect("the log reads") {
            let record = record.expect("a record");
            if record.kind == weir_wal::RecordType::OPERATOR_BASE {
                assert_eq!(record.epoch, 1, "a whole base after the run's first epoch");
            }
            if record.kind != weir_wal::RecordType::OPERATOR_SWEEP {
                continue;
            }
            // After the node's name and instance (`encode_record`), then the
            // sweep flags: 1 = begins, 2 = complete.
            let flags = record.payload[4 + "count".len() + 4];
            if flags & 1 != 0 {
                assert_eq!(
                    record.epoch % 64,
                    0,
                    "a sweep begins at epoch {}",
                    record.epoch
                );
                sweeping = Some(record.epoch);
                begun += 1;
            }
            // Slices at the log's start without their sweep's beginning
            // are the rest of a sweep whose first segments were retired
            // (segments go one at a time, and a run can stop between two):
            // recovery never takes such a sweep.
            let Some(began) = sweeping else {
                continue;
            };
            assert!(
                record.epoch < began + sweep_epochs,
                "a slice at epoch {} of a sweep begun at {began}",
                record.epoch
            );
            if flags & 2 != 0 {
                completed += 1;
            }
        }
    }
    assert!(
        begun > 0 && completed > 0,
        "{begun} sweeps begun, {completed} complete"
    );
    let recovered =
        recover(&data, &out, options).expect("recovery rebuilds the state from a sweep");
    assert!(
        recovered.resumed_from_epoch >= 64 + sweep_epochs,
        "the run committed {} epochs: no sweep had completed",
        recovered.resumed_from_epoch
    );
    assert_eq!(published(out.path()), expected(options.keys));
    for shard in 0..2 {
        assert_most_segments_retired(&segments(data.path(), shard), shard);
    }
}

/// A stop is a savepoint: the counter's `finish` does not run (nothing is
/// published), its state is kept, and the next run goes on from it: every
/// count comes out exactly as if the run had never stopped.
#[test]
fn a_stop_keeps_state_for_the_next_run() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stopped = run_and_stop(data.path(), out.path(), false);
    assert!(stopped.stopped, "the stop was not a savepoint");
    assert!(!stopped.already_complete);
    assert!(
        published(out.path()).is_empty(),
        "the stop finished the counter and published its counts"
    );
    let resumed = run(data.path(), out.path(), PLAIN).expect("the next run succeeds");
    assert_eq!(resumed.resumed_from_epoch, stopped.last_committed_epoch);
    assert!(!resumed.stopped);
    assert_eq!(published(out.path()), expected(PLAIN.keys));
}

/// A drain is the end of input: the counter finishes (its partial counts
/// are published) and the run is complete: the next start runs nothing.
#[test]
fn a_drain_ends_the_input_and_completes_the_run() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let drained = run_and_stop(data.path(), out.path(), true);
    assert!(!drained.stopped);
    let counts = published(out.path());
    let total: u64 = counts.values().sum();
    assert!(
        total > 0 && total < ITEMS,
        "a drain mid-run publishes the counts so far, not {total}"
    );
    let again = run(data.path(), out.path(), PLAIN).expect("restart");
    assert!(again.already_complete);
    assert_eq!(published(out.path()), counts);
}

/// Keyed state is split by shard: a data directory written by 2 shards is
/// refused by a run of 3, naming both counts.
#[test]
fn a_changed_shard_count_is_refused() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_and_stop(data.path(), out.path(), false);
    let three = Options { shards: 3, ..PLAIN };
    let error = run(data.path(), out.path(), three).expect_err("3 shards are refused");
    assert!(
        error
            .to_string()
            .contains("holds a run of 2 shards, and this run has 3"),
        "{error}"
    );
    run(data.path(), out.path(), PLAIN).expect("2 shards go on");
    assert_eq!(published(out.path()), expected(PLAIN.keys));
}

/// A run killed while it created its shards' logs leaves the first few and
/// no commit: the next start takes them as they are (nothing committed, no
/// state to split), but not logs of shards it does not have.
#[test]
fn a_start_killed_while_it_created_its_logs_is_not_taken_for_another_shard_count() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fs::create_dir_all(data.path().join("shard-0")).unwrap();
    let report = run(data.path(), out.path(), PLAIN).expect("the start goes on");
    assert_eq!(report.resumed_from_epoch, 0);
    assert_eq!(published(out.path()), expected(PLAIN.keys));

    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for shard in 0..3 {
        fs::create_dir_all(data.path().join(format!("shard-{shard}"))).unwrap();
    }
    let error = run(data.path(), out.path(), PLAIN).expect_err("a third shard's log is refused");
    assert!(
        error
            .to_string()
            .contains("holds a run of 3 shards, and this run has 2"),
        "{error}"
    );
}

/// One run at a time per data directory, also within one process (two
/// embedded runtimes): the second start is refused, naming this process;
/// once the first run ended the directory can be used again.
#[test]
fn a_second_runtime_on_the_same_data_directory_is_refused() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, graph) = pipeline(data.path(), out.path(), PLAIN);
    let running = first.start(graph).expect("the first starts");
    let (second, graph) = pipeline(data.path(), out.path(), PLAIN);
    let error = second.start(graph).expect_err("the second is refused");
    match &error {
        weir_runtime::StartError::DataDirInUse { holder_pid, .. } => {
            assert_eq!(*holder_pid, Some(std::process::id()), "{error}");
        }
        other => panic!("refused for another reason: {other}"),
    }
    assert!(error.to_string().contains("this process"), "{error}");
    running.wait().expect("the first run completes");
    assert_eq!(published(out.path()), expected(PLAIN.keys));
    let again = run(data.path(), out.path(), PLAIN).expect("free again");
    assert!(again.already_complete);
}

/// The WAL segments of `shard` under `data`, by number: files with a
/// header, not spares made ready for later rolls (`docs/wal-format.md`
/// §12), as `weir wal inspect` lists them.
fn segments(data: &Path, shard: usize) -> Vec<u64> {
    let report = weir_wal::inspect(&data.join(format!("shard-{shard}"))).expect("inspect");
    report.analysis.segments.iter().map(|s| s.number).collect()
}

#[test]
fn old_segments_are_retired_and_recovery_still_exact() {
    // 6 000 keys: each epoch's counter snapshot is ~48 KiB per shard, so the
    // 64 KiB segments roll about every epoch; epochs every 2 ms over a run
    // paced to last at least 60 ms give dozens of segments.
    let options = Options {
        keys: 6_000,
        fail: false,
        segment_bytes: Some(64 << 10),
        epoch_interval_ms: 2,
        shards: 2,
        pad_bytes: 0,
        incremental: false,
        swept: false,
    };
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(
        data.path(),
        out.path(),
        Options {
            fail: true,
            ..options
        },
    )
    .expect_err("the sink fails");
    let recovered = run(data.path(), out.path(), options).expect("recovery run succeeds");
    assert!(recovered.resumed_from_epoch > 0);
    assert_eq!(published(out.path()), expected(options.keys));
    for shard in 0..2 {
        let left = segments(data.path(), shard);
        assert!(
            !left.contains(&0),
            "shard {shard}: segment 0 was never retired ({left:?})"
        );
        assert_most_segments_retired(&left, shard);
    }
    let again = run(data.path(), out.path(), options).expect("restart after retention");
    assert!(again.already_complete);
}

/// Moves `name` out of `shard`'s log to `aside`, runs the pipeline, and
/// returns the start error (a run that starts fails the test); then puts
/// the file back.
fn refused_without(data: &Path, shard: usize, name: &str, options: Options) -> String {
    let (out, aside) = (tempfile::tempdir().unwrap(), data.join("aside.wal"));
    let path = data.join(format!("shard-{shard}")).join(name);
    fs::rename(&path, &aside).expect("move the segment aside");
    let error = run(data, out.path(), options).expect_err("a log that lost records starts");
    fs::rename(&aside, &path).expect("put the segment back");
    error.to_string()
}

fn segment_name(number: u64) -> String {
    format!("{number:020}.wal")
}

#[test]
fn a_shard_log_that_ends_below_the_last_commit_is_refused() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_and_stop(data.path(), out.path(), false);
    assert_eq!(segments(data.path(), 1), [0], "one segment per shard log");
    let error = refused_without(data.path(), 1, &segment_name(0), PLAIN);
    let directory = data.path().join("shard-1").display().to_string();
    for part in [
        directory.as_str(),
        "ends at lsn 0",
        "commit of epoch",
        "missing",
    ] {
        assert!(error.contains(part), "no `{part}` in: {error}");
    }
    let again = run(data.path(), out.path(), PLAIN).expect("starts with the segment back");
    assert!(again.resumed_from_epoch >= 2, "{again:?}");
    assert_eq!(published(out.path()), expected(PLAIN.keys));
}

#[test]
fn a_shard_log_missing_a_segment_is_refused() {
    // As in `old_segments_are_retired_and_recovery_still_exact`: each
    // epoch's snapshot fills most of a 64 KiB segment, and the failed run
    // leaves the segments of its uncommitted epochs.
    let options = Options {
        keys: 6_000,
        fail: false,
        segment_bytes: Some(64 << 10),
        epoch_interval_ms: 2,
        shards: 2,
        pad_bytes: 0,
        incremental: false,
        swept: false,
    };
    let failing = Options {
        fail: true,
        ..options
    };
    // How many segments the failed run leaves depends on how many epochs
    // it committed before the sink failed, which is timing: run it again
    // on a fresh directory until it leaves three (a first, a middle and a
    // last), at most 10 times.
    let mut runs = 0;
    let (data, out, left) = loop {
        let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        run(data.path(), out.path(), failing).expect_err("the sink fails");
        let left = segments(data.path(), 0);
        runs += 1;
        if left.len() >= 3 || runs == 10 {
            break (data, out, left);
        }
    };
    assert!(
        left.len() >= 3,
        "too few segments left after {runs} runs: {left:?}"
    );
    let directory = data.path().join("shard-0").display().to_string();
    let newest = segment_name(left[left.len() - 1]);
    let error = refused_without(data.path(), 0, &newest, options);
    for part in [directory.as_str(), newest.as_str(), "missing"] {
        assert!(error.contains(part), "no `{part}` in: {error}");
    }
    let middle = segment_name(left[1]);
    let error = refused_without(data.path(), 0, &middle, options);
    let around = [segment_name(left[0]), segment_name(left[2])];
    for part in [directory.as_str(), middle.as_str(), &around[0], &around[1]] {
        assert!(error.contains(part), "no `{part}` in: {error}");
    }
    run(data.path(), out.path(), options).expect("starts with every segment back");
    assert_eq!(published(out.path()), expected(options.keys));
}

#[test]
fn an_older_commit_record_without_lsns_is_read_without_the_check() {
    // The commit record an older build wrote for the final epoch of a
    // completed run: the payload `final`, no shard LSNs. The shard logs
    // are empty, which a record naming their LSNs would refuse.
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = weir_wal::Config {
        shard: 2,
        ..weir_wal::Config::default()
    };
    let (mut coordinator, _) =
        weir_wal::SyncLog::open_dir(&data.path().join("coordinator"), &config).unwrap();
    coordinator
        .append(weir_wal::RecordType::EPOCH_COMMIT, 3, b"final")
        .unwrap();
    coordinator.commit().unwrap();
    drop(coordinator);
    let report = run(data.path(), out.path(), PLAIN).expect("an older directory opens");
    assert!(report.already_complete, "{report:?}");
}
