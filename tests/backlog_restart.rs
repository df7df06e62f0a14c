//! Goal: a restart that replays a large backlog never fails on the WAL's
//! staging limit (`AppendError::Backpressure`, "too many bytes staged"):
//! replay logs a copy of every logged push it replays, far faster than a
//! disk takes it, and must wait for durability rather than give up. The
//! first run, which logs the pushes, must not fail on it either.
//!
//! Method: an embedded pipeline (2 shards, a data directory, 1 h epochs, so
//! nothing ever commits) whose only node counts the events it sees and
//! fails the run once it has seen all of them. Run 0 pushes 3 000 000
//! events; each poll logs what it took as an intake record. Then 10
//! restarts on the same directory: each replays the whole uncommitted
//! backlog (logging it again) and fails on purpose once every event went
//! through, so the backlog stays uncommitted for the next. Every run must
//! end with that failure, having seen exactly every event: any other end
//! (the staging limit among them) fails the test. Each restart logs the
//! backlog again (about 100 MB), so the data directory grows to about
//! 1 GB. Whether replay outruns the disk depends on both; the unit tests of
//! `weir_runtime::epoch::shard` force it with a slowed writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::runtime::{Batch, Emitter, Processor, Runtime};
use weir::Event;

const EVENTS: u64 = 3_000_000;
const RESTARTS: usize = 10;
/// How a run fails on purpose.
const SEEN_ALL: &str = "every event of the backlog went through";

/// Counts events over all shards; fails the run once all were seen.
struct CountThenFail(Arc<AtomicU64>);

impl weir::Queryable for CountThenFail {
    type Key = u64;
    type Answer = u64;

    fn query(&self, _: &u64) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

impl Processor for CountThenFail {
    type Input = Event<u64>;
    type Output = ();

    fn process(&mut self, _: usize, batch: &Batch<Event<u64>>, out: &mut Emitter<()>) {
        let count = batch.len() as u64;
        if self.0.fetch_add(count, Ordering::AcqRel) + count >= EVENTS {
            out.fail(SEEN_ALL);
        }
    }
}

/// Runs the pipeline on `dir`, pushing `push` events; returns how the run
/// ended and how many events it saw.
fn run(dir: &std::path::Path, push: u64) -> (String, u64) {
    let runtime = Runtime::builder()
        .shards(2)
        .pin(false)
        .data_dir(dir)
        .epoch_interval(Duration::from_secs(3600))
        .build()
        .expect("the runtime starts");
    let mut pipeline = weir::Pipeline::new(runtime);
    let input = pipeline.input("ids", |id: &u64| *id);
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    // A queryable node: the embedding API's way to end a graph in a
    // processor.
    pipeline.queryable(
        "count",
        "ids",
        |event: &Event<u64>| event.key,
        |key: &u64| *key,
        move |_| CountThenFail(counter.clone()),
    );
    let service = match pipeline.start() {
        Ok(service) => service,
        Err(error) => return (format!("the start failed: {error}"), 0),
    };
    let handle = service.handle();
    for id in 0..push {
        if handle.push_blocking(&input, id).is_err() {
            break;
        }
    }
    let end = handle.wait_finished(Duration::from_secs(300));
    let error = match service.shutdown() {
        Ok(report) => format!("the run ended without a failure: {report:?} ({end:?})"),
        Err(error) => error.to_string(),
    };
    drop(input);
    (error, seen.load(Ordering::Acquire))
}

#[test]
fn a_large_backlog_restarts_ten_times_out_of_ten() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let started = Instant::now();
    for attempt in 0..=RESTARTS {
        let push = if attempt == 0 { EVENTS } else { 0 };
        let at = Instant::now();
        let (error, seen) = run(dir.path(), push);
        eprintln!(
            "run {attempt}: {seen} events in {:.1} s: {error}",
            at.elapsed().as_secs_f64()
        );
        assert!(error.contains(SEEN_ALL), "run {attempt}: {error}");
        assert_eq!(seen, EVENTS, "run {attempt}");
    }
    eprintln!(
        "{RESTARTS} restarts of a {EVENTS}-event backlog in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
