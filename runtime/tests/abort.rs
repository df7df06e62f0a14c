//! Goal: any node failure ends the whole run promptly with the first
//! failure's error, with or without a data directory, even when the other
//! shards (or the other nodes of the failing shard) no longer exchange any
//! record with the failed node, so no closed ring would tell them.
//!
//! Method: small pipelines where one node fails (a panic, `Emitter::fail`,
//! a snapshot error, a sink commit error) while the rest of the pipeline is
//! waiting for something the failed node can no longer provide: a final
//! epoch that cannot commit, barriers that no longer come, or an idle
//! source's next record. Each run must return `Err` naming the failing node
//! (a panic too: it is caught in the node's task).
//!
//! Every run goes through [`within_deadline`]: a watchdog thread aborts the
//! test process with a message if the run has not returned after
//! [`DEADLINE`]. That is not a timing assertion (the deadline is far above
//! what any run takes); it turns a hang, the bug these tests guard
//! against, into a failure instead of a stuck test suite.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::{Item, Items};
use weir_runtime::{
    Batch, Emitter, Error, GraphBuilder, NodeFailure, OperatorError, Parallelism, Partition,
    Processor, RunError, RunReport, Runtime, Sink, Source, SourcePoll,
};

/// How long a run may take before the watchdog declares it hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `run` on this thread; if it has not returned after [`DEADLINE`], a
/// watchdog thread prints what hung and aborts the process (a hang cannot
/// be interrupted otherwise).
fn within_deadline<T>(what: &str, run: impl FnOnce() -> T) -> T {
    let (done, watch) = mpsc::channel::<()>();
    let what = what.to_string();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(DEADLINE) {
            // Straight to stderr: the test harness's capture of
            // `eprintln!` is lost when the process aborts.
            let _ = writeln!(
                std::io::stderr(),
                "watchdog: `{what}` did not return within {DEADLINE:?}: the run hangs \
                 after a node failure; aborting the test process"
            );
            std::process::abort();
        }
    });
    // Dropping the sender (also on a panic) releases the watchdog.
    let result = {
        let _done = done;
        run()
    };
    watchdog.join().expect("watchdog thread");
    result
}

/// Emits every item of `batch` unchanged.
fn forward(batch: &Batch<Item>, out: &mut Emitter<Item>) {
    for item in batch.iter() {
        out.push(&Item {
            id: item.id.to_native(),
            key: item.key.to_native(),
        });
    }
}

/// Fails the node on its first batch, on the shards listed.
struct FailOn {
    shard: usize,
    shards: &'static [usize],
    how: How,
}

#[derive(Clone, Copy)]
enum How {
    Panic,
    Fail,
}

impl Processor for FailOn {
    type Input = Item;
    type Output = Item;

    fn process(&mut self, _port: usize, batch: &Batch<Item>, out: &mut Emitter<Item>) {
        if self.shards.contains(&self.shard) {
            match self.how {
                How::Panic => panic!("boom on shard {}", self.shard),
                How::Fail => out.fail(format!("failed on shard {}", self.shard)),
            }
        }
        forward(batch, out);
    }
}

/// Counts what it receives.
struct Count(Arc<AtomicU64>);

impl Sink for Count {
    type Input = Item;

    fn write(&mut self, _port: usize, batch: &Batch<Item>) {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

fn runtime(shards: usize, data: Option<&Path>) -> Runtime {
    let mut builder = Runtime::builder()
        .shards(shards)
        .pin(false)
        .epoch_interval(Duration::from_millis(5));
    if let Some(data) = data {
        builder = builder.data_dir(data);
    }
    builder.build().expect("runtime starts")
}

/// Asserts that `result` failed in node `node` on `shard` with an
/// operator failure saying `message`.
fn assert_operator_failure(
    result: Result<RunReport, Error>,
    node: &str,
    shard: usize,
    message: &str,
) {
    match result.expect_err("the run fails") {
        Error::Run(RunError::Node {
            node: failed,
            shard: failed_shard,
            failure: NodeFailure::Operator(text),
        }) => {
            assert_eq!((failed.as_str(), failed_shard), (node, shard));
            assert_eq!(text.message(), message);
        }
        other => panic!("unexpected error: {other}"),
    }
}

/// Scenario 1: two shards, a data directory, every node a single instance
/// on shard 0, a panic there. Shard 1 runs nothing but its epoch task,
/// which used to wait forever for a final epoch that could not commit.
#[test]
fn a_panic_on_shard_zero_ends_a_two_shard_run_with_epochs() {
    let data = tempfile::tempdir().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let sink_count = received.clone();
    let mut graph = GraphBuilder::new();
    graph
        .source("items", |context| Items::new(context, 100_000, 16))
        .parallelism(Parallelism::One);
    graph
        .processor("explode", |context| FailOn {
            shard: context.shard,
            shards: &[0],
            how: How::Panic,
        })
        .parallelism(Parallelism::One);
    graph
        .sink("count", move |_| Count(sink_count.clone()))
        .parallelism(Parallelism::One);
    graph.connect("items", "explode", Partition::<Item>::Forward);
    graph.connect("explode", "count", Partition::<Item>::Forward);
    let runtime = runtime(2, Some(data.path()));
    let result = within_deadline("a panic on shard 0 of 2", || {
        runtime.run(graph.build().unwrap())
    });
    common::assert_panicked(
        result.expect_err("the run fails"),
        "explode",
        0,
        "boom on shard 0",
    );
    assert_eq!(received.load(Ordering::Relaxed), 0);
}

/// The pipeline of scenario 2: per shard, `items → fail → count` over
/// forward edges, so the shards exchange no record; `fail` fails on the
/// shards in `failing`.
fn independent_shards(failing: &'static [usize], received: Arc<AtomicU64>) -> GraphBuilder {
    let mut graph = GraphBuilder::new();
    graph.source("items", |context| Items::new(context, 200_000, 16));
    graph.processor("fail", move |context| FailOn {
        shard: context.shard,
        shards: failing,
        how: How::Fail,
    });
    graph.sink("count", move |_| Count(received.clone()));
    graph.connect("items", "fail", Partition::<Item>::Forward);
    graph.connect("fail", "count", Partition::<Item>::Forward);
    graph
}

/// Scenario 2: one shard fails while the other sends it nothing. The
/// surviving shard used to wait forever for a final epoch (the failed
/// shard's source never counts itself exhausted). A restart on the same
/// data directory, without the failure, then recovers and completes.
#[test]
fn a_failure_on_one_shard_ends_a_shard_that_sends_it_nothing() {
    let data = tempfile::tempdir().unwrap();
    let runtime = runtime(2, Some(data.path()));
    let graph = independent_shards(&[1], Arc::new(AtomicU64::new(0)));
    let result = within_deadline("a failure on shard 1 of 2", || {
        runtime.run(graph.build().unwrap())
    });
    assert_operator_failure(result, "fail", 1, "failed on shard 1");

    let received = Arc::new(AtomicU64::new(0));
    let graph = independent_shards(&[], received.clone());
    let report = within_deadline("the restart after a failure", || {
        runtime.run(graph.build().unwrap())
    })
    .expect("the restart recovers and completes");
    assert!(!report.already_complete);
    // Records of epochs that committed before the failure are not sent
    // again; the rest are, each once.
    assert!(received.load(Ordering::Relaxed) <= 200_000);
}

/// Scenario 2 without a data directory: the shards are independent, and
/// shard 0's work still stops once shard 1 failed; the failure is reported.
#[test]
fn a_failure_on_one_shard_ends_the_run_without_epochs() {
    let runtime = runtime(2, None);
    let graph = independent_shards(&[1], Arc::new(AtomicU64::new(0)));
    let result = within_deadline("a failure on shard 1 of 2, no data dir", || {
        runtime.run(graph.build().unwrap())
    });
    assert_operator_failure(result, "fail", 1, "failed on shard 1");
}

/// Scenario 3: one shard, a data directory, `source → processor that
/// calls Emitter::fail → sink`.
#[test]
fn emitter_fail_ends_a_one_shard_run_with_epochs() {
    let data = tempfile::tempdir().unwrap();
    let runtime = runtime(1, Some(data.path()));
    let graph = independent_shards(&[0], Arc::new(AtomicU64::new(0)));
    let result = within_deadline("Emitter::fail on 1 shard", || {
        runtime.run(graph.build().unwrap())
    });
    assert_operator_failure(result, "fail", 0, "failed on shard 0");
}

/// Emits a few records, then has nothing more, forever (a listener no
/// client writes to).
struct IdleAfter {
    left: u64,
}

impl Source for IdleAfter {
    type Output = Item;

    fn poll(&mut self, out: &mut Emitter<Item>) -> SourcePoll {
        if self.left == 0 {
            return SourcePoll::Idle;
        }
        self.left -= 1;
        out.push(&Item {
            id: self.left,
            key: self.left,
        });
        SourcePoll::Ready
    }
}

fn idle_source_graph() -> GraphBuilder {
    let mut graph = GraphBuilder::new();
    graph.source("idle", |_| IdleAfter { left: 10 });
    graph.processor("fail", |context| FailOn {
        shard: context.shard,
        shards: &[0, 1],
        how: How::Fail,
    });
    graph.sink("count", |_| Count(Arc::new(AtomicU64::new(0))));
    graph.connect("idle", "fail", Partition::<Item>::Forward);
    graph.connect("fail", "count", Partition::<Item>::Forward);
    graph
}

/// A source that sits idle after the node it feeds failed sends nothing,
/// so no closed ring tells it; it must still stop, with and without a data
/// directory.
#[test]
fn an_idle_source_stops_when_the_node_it_feeds_fails() {
    for data in [None, Some(tempfile::tempdir().unwrap())] {
        let runtime = runtime(1, data.as_ref().map(|dir| dir.path()));
        let graph = idle_source_graph();
        let result = within_deadline("an idle source after a failure", || {
            runtime.run(graph.build().unwrap())
        });
        assert_operator_failure(result, "fail", 0, "failed on shard 0");
    }
}

/// Panics on its `at`-th poll; emits nothing before.
struct PanicAt {
    at: u32,
}

impl Source for PanicAt {
    type Output = Item;

    fn poll(&mut self, _out: &mut Emitter<Item>) -> SourcePoll {
        self.at -= 1;
        if self.at == 0 {
            panic!("boom in a source");
        }
        SourcePoll::Idle
    }
}

/// Passes items through.
struct Relay;

impl Processor for Relay {
    type Input = Item;
    type Output = Item;

    fn process(&mut self, _port: usize, batch: &Batch<Item>, out: &mut Emitter<Item>) {
        forward(batch, out);
    }
}

/// A panic on shard 0 while another task of shard 0 (`relay`) is parked
/// on rings from shard 1 and feeds a sink on shard 1. Were the panic left
/// to unwind shard 0's thread, `relay`'s task would not be dropped (its
/// waker is held by a ring of shard 1), its output ring would never close
/// and the sink on shard 1 would wait for ever. The panic is caught in the
/// panicking node's task: the run fails naming it, with and without a
/// data directory.
#[test]
fn a_panic_ends_a_run_whose_other_shard_waits_on_a_parked_task() {
    for data in [None, Some(tempfile::tempdir().unwrap())] {
        let mut graph = GraphBuilder::new();
        graph.source("idle", |_| IdleAfter { left: 0 });
        graph
            .source("bomb", |_| PanicAt { at: 50 })
            .parallelism(Parallelism::One);
        graph.processor("relay", |_| Relay);
        graph.sink("count", |_| Count(Arc::new(AtomicU64::new(0))));
        graph.connect("idle", "relay", Partition::hash(|item: &Item| item.key));
        graph.connect("relay", "count", Partition::hash(|item: &Item| item.key));
        graph.connect("bomb", "count", Partition::<Item>::Forward);
        let runtime = runtime(2, data.as_ref().map(|dir| dir.path()));
        let result = within_deadline("a panic while a task is parked", || {
            runtime.run(graph.build().unwrap())
        });
        common::assert_panicked(
            result.expect_err("the run fails"),
            "bomb",
            0,
            "boom in a source",
        );
    }
}

/// Passes items through; its snapshot fails if `fail`.
struct BadSnapshot {
    fail: bool,
}

impl Processor for BadSnapshot {
    type Input = Item;
    type Output = Item;

    fn process(&mut self, _port: usize, batch: &Batch<Item>, out: &mut Emitter<Item>) {
        forward(batch, out);
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        if self.fail {
            return Err(OperatorError::other("the snapshot failed"));
        }
        Ok(Vec::new())
    }
}

/// A state error on shard 1 while shard 0 sends it nothing.
#[test]
fn a_snapshot_error_ends_the_run() {
    let data = tempfile::tempdir().unwrap();
    let runtime = runtime(2, Some(data.path()));
    let mut graph = GraphBuilder::new();
    graph.source("items", |context| Items::new(context, 200_000, 16));
    graph.processor("snap", |context| BadSnapshot {
        fail: context.shard == 1,
    });
    graph.sink("count", |_| Count(Arc::new(AtomicU64::new(0))));
    graph.connect("items", "snap", Partition::<Item>::Forward);
    graph.connect("snap", "count", Partition::<Item>::Forward);
    let result = within_deadline("a snapshot error on shard 1", || {
        runtime.run(graph.build().unwrap())
    });
    match result.expect_err("the run fails") {
        Error::Run(RunError::Node {
            node,
            shard,
            failure: NodeFailure::State(error),
        }) => {
            assert_eq!((node.as_str(), shard), ("snap", 1));
            assert_eq!(error.message(), "the snapshot failed");
        }
        other => panic!("unexpected error: {other}"),
    }
}

/// A sink whose commit step fails.
struct BadCommit;

impl Sink for BadCommit {
    type Input = Item;

    fn write(&mut self, _port: usize, _batch: &Batch<Item>) {}

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        Ok(epoch.to_le_bytes().to_vec())
    }

    fn commit(_staged: &[u8], _control: &weir_runtime::CommitControl) -> Result<(), OperatorError> {
        Err("the commit failed".into())
    }
}

/// Never ends by itself.
struct Endless(u64);

impl Source for Endless {
    type Output = Item;

    fn poll(&mut self, out: &mut Emitter<Item>) -> SourcePoll {
        self.0 += 1;
        out.push(&Item {
            id: self.0,
            key: self.0,
        });
        SourcePoll::Ready
    }
}

/// A sink commit error (in a shard's epoch task) ends a run whose source
/// would otherwise go on forever.
#[test]
fn a_sink_commit_error_ends_the_run() {
    let data = tempfile::tempdir().unwrap();
    let runtime = runtime(2, Some(data.path()));
    let mut graph = GraphBuilder::new();
    graph.source("items", |_| Endless(0));
    graph.sink("commit", |_| BadCommit);
    graph.connect("items", "commit", Partition::<Item>::Forward);
    let result = within_deadline("a sink commit error", || {
        runtime.run(graph.build().unwrap())
    });
    match result.expect_err("the run fails") {
        Error::Run(RunError::Node {
            failure:
                NodeFailure::Commit {
                    sink,
                    syncing,
                    error,
                    ..
                },
            ..
        }) => {
            assert_eq!((sink.as_str(), syncing), ("commit", false));
            assert_eq!(error.message(), "the commit failed");
        }
        other => panic!("unexpected error: {other}"),
    }
}
