//! Goal: logging more than the WAL stages (64 MiB, where it refuses appends
//! with "too many bytes staged") never fails a run: neither a source's
//! poll that logs more than that at once, nor the replay of a backlog at
//! start, which logs a copy of every record it replays faster than any
//! disk takes it. Both wait for durability instead.
//!
//! Method: a source that logs intake records of 1 MiB through its
//! `IntakeLog` (1 shard, a data directory, 1 h epochs, so nothing
//! commits), then fails the run on purpose once they are durable, so they
//! stay uncommitted.
//! - One poll logs 100 of them (100 MiB): the appends meet the staging
//!   limit inside the poll.
//! - A paced run logs the 100 over many polls, waiting after each for its
//!   records to be durable (so it stays clear of the limit even without
//!   the fix); then two restarts replay them, each failing on purpose
//!   once all were replayed.
//!
//! Every run must end with its own failure, none with the WAL's.
//!
//! Whether the appends meet the limit here depends on how much faster
//! they are than the disk (on a fast, idle disk they may not); the unit
//! tests of `epoch::shard` slow the WAL's writer down to meet it every
//! time.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{collect_items, Item, Seen};
use weir_runtime::{
    Emitter, GraphBuilder, IntakeLog, IntakeTicket, OperatorError, Partition, Runtime, Source,
    SourcePoll,
};

const RECORDS: usize = 100;
const RECORD_BYTES: usize = 1 << 20;

/// Logs [`RECORDS`] intake records, `per_poll` a poll; counts the records
/// replayed to it. Fails the run once its records are durable, or after a
/// replay, saying how many it logged or replayed.
struct Burst {
    intake: IntakeLog,
    per_poll: usize,
    logged: usize,
    /// The last record logged, until it is durable.
    pending: Option<IntakeTicket>,
    replayed: Arc<AtomicUsize>,
    /// What each record holds (allocated once: logging is then as fast as
    /// the log takes it, far faster than a disk).
    payload: Vec<u8>,
}

impl Burst {
    /// Whether the last record logged is durable (the log syncs in order,
    /// so every record before it is too).
    fn durable(&mut self) -> bool {
        let Some(ticket) = self.pending.as_mut() else {
            return true;
        };
        match Pin::new(ticket).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => {
                result.expect("the log works");
                self.pending = None;
                true
            }
            Poll::Pending => false,
        }
    }
}

impl Source for Burst {
    type Output = Item;

    fn poll(&mut self, out: &mut Emitter<Item>) -> SourcePoll {
        let replayed = self.replayed.load(Ordering::Acquire);
        if replayed > 0 {
            out.fail(format!("replayed {replayed} records"));
            return SourcePoll::Idle;
        }
        if !self.durable() {
            self.intake.flush();
            return SourcePoll::Idle;
        }
        if self.logged == RECORDS {
            out.fail(format!("logged {RECORDS} records"));
            return SourcePoll::Idle;
        }
        for _ in 0..self.per_poll.min(RECORDS - self.logged) {
            match self.intake.append(&self.payload) {
                Ok(ticket) => self.pending = Some(ticket),
                Err(error) => {
                    out.fail(error);
                    return SourcePoll::Idle;
                }
            }
            out.push(&Item {
                id: self.logged as u64,
                key: 0,
            });
            self.logged += 1;
        }
        SourcePoll::Ready
    }

    fn attach(&mut self, intake: IntakeLog) {
        self.intake = intake;
    }

    fn replay(&mut self, data: &[u8], out: &mut Emitter<Item>) -> Result<(), OperatorError> {
        if data.len() != RECORD_BYTES {
            return Err(OperatorError::other(format!(
                "replayed {} bytes",
                data.len()
            )));
        }
        let id = self.replayed.fetch_add(1, Ordering::AcqRel) as u64;
        out.push(&Item { id, key: 0 });
        Ok(())
    }
}

/// Runs the burst on `data`, `per_poll` records a poll; returns how the
/// run ended.
fn run(data: &std::path::Path, per_poll: usize) -> String {
    let replayed = Arc::new(AtomicUsize::new(0));
    let mut graph = GraphBuilder::new();
    graph.source("burst", move |_| Burst {
        intake: IntakeLog::disabled(),
        per_poll,
        logged: 0,
        pending: None,
        replayed: replayed.clone(),
        payload: vec![7; RECORD_BYTES],
    });
    let seen: Seen<(u64, u64)> = Seen::default();
    graph.sink("out", move |context| collect_items(context, seen.clone()));
    graph.connect("burst", "out", Partition::<Item>::Forward);
    let runtime = Runtime::builder()
        .shards(1)
        .pin(false)
        .data_dir(data)
        .epoch_interval(Duration::from_secs(3600))
        .build()
        .expect("runtime starts");
    match runtime.run(graph.build().expect("valid graph")) {
        Ok(report) => format!("the run succeeded: {report:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_poll_that_logs_more_than_the_wal_stages_waits() {
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let error = run(data.path(), RECORDS);
    assert!(
        error.contains(&format!("logged {RECORDS} records")),
        "{error}"
    );
}

#[test]
fn a_replay_that_logs_more_than_the_wal_stages_waits() {
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let error = run(data.path(), 4);
    assert!(
        error.contains(&format!("logged {RECORDS} records")),
        "{error}"
    );
    for restart in 1..=2 {
        let error = run(data.path(), 4);
        let expected = format!("replayed {RECORDS} records");
        assert!(error.contains(&expected), "restart {restart}: {error}");
    }
}
