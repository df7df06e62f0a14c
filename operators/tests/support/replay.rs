//! Shared by the delivery sinks' tests (`webhook_sink.rs`,
//! `postgres_sink.rs`): a replayable source of rows of every type, and a
//! sink wrapper that fails a run part-way, after some epochs committed.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use weir_operators::row::{ArchivedRow, Ip, MapEntry, Row, Schema, Type, Value};
use weir_runtime::{Batch, Emitter, OperatorError, Sink, Source, SourcePoll};

/// The schema of [`row`].
pub fn schema() -> Schema {
    Schema::new([
        ("id", Type::Int),
        ("ratio", Type::Float),
        ("path", Type::String),
        ("ok", Type::Bool),
        ("at", Type::Timestamp),
        ("ip", Type::Ip),
        ("tags", Type::List),
        ("attrs", Type::Map),
    ])
}

/// Row `id`: every type, derived from the id, some fields null.
pub fn row(id: i64) -> Row {
    let ip: IpAddr = if id % 2 == 0 {
        format!("10.0.{}.{}", (id / 256) % 256, id % 256)
            .parse()
            .unwrap()
    } else {
        format!("2001:db8::{:x}", id).parse().unwrap()
    };
    Row {
        values: vec![
            Value::Int(id),
            if id % 7 == 3 {
                Value::Null
            } else {
                Value::Float(id as f64 / 8.0)
            },
            Value::String(format!("/p/{id}\t\"q\"\\\n☃")),
            Value::Bool(id % 3 == 0),
            Value::Timestamp(1_700_000_000_000 + id * 1_001),
            Value::Ip(Ip::from(ip)),
            Value::List(vec![Value::Int(id), Value::String("t".into())]),
            Value::Map(vec![MapEntry {
                key: "n".into(),
                value: Value::Int(id * 2),
            }]),
        ],
    }
}

/// Gates [`Rows`]: rows with an id from `hold_from` wait until a commit
/// of [`Crashing`] went through, so a run that fails later has committed
/// something first. Tests of one binary that use it must not run
/// concurrently with each other (one per binary).
pub static COMMITS: AtomicU64 = AtomicU64::new(0);

/// Set by [`Crashing`] when it fails the run. The runtime notices a failed
/// shard only through rings to it, so in a failing run every [`Rows`]
/// instance waits for this (rather than ending) and then fails too: the
/// run ends however far the other shards got.
pub static CRASHED: AtomicBool = AtomicBool::new(false);

/// Ids `instance, instance + instances, ...` below `end`, 50 per poll;
/// replayable (its position is the next id).
pub struct Rows {
    pub next: i64,
    pub step: i64,
    pub end: i64,
    /// Ids from here wait for [`COMMITS`] to be non-zero; also makes the
    /// source wait for [`CRASHED`] at the end instead of ending.
    pub hold_from: Option<i64>,
}

impl Rows {
    pub fn new(context: &weir_runtime::ShardContext, end: i64, hold_from: Option<i64>) -> Rows {
        Rows {
            next: context.instance as i64,
            step: context.instances as i64,
            end,
            hold_from,
        }
    }
}

impl Source for Rows {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        for _ in 0..50 {
            if self.hold_from.is_some() && CRASHED.load(Ordering::Acquire) {
                panic!("simulated crash: another shard failed");
            }
            if self.next >= self.end {
                if self.hold_from.is_some() {
                    out.flush();
                    return SourcePoll::Idle;
                }
                return SourcePoll::Exhausted;
            }
            if self
                .hold_from
                .is_some_and(|hold| self.next >= hold && COMMITS.load(Ordering::Acquire) == 0)
            {
                out.flush();
                return SourcePoll::Idle;
            }
            out.push(&row(self.next));
            self.next += self.step;
        }
        // Pacing, so a run spans several epochs (not synchronisation).
        std::thread::sleep(Duration::from_micros(500));
        SourcePoll::Ready
    }

    fn position(&self) -> Vec<u8> {
        self.next.to_le_bytes().to_vec()
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| OperatorError::invalid("bad position"))?;
        self.next = i64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Wraps a sink: panics when it is handed the row with id `fail_at`
/// (failing the run), and counts commits in [`COMMITS`].
pub struct Crashing<K> {
    pub inner: K,
    pub fail_at: Option<i64>,
}

impl<K: Sink<Input = Row>> Sink for Crashing<K> {
    type Input = Row;

    fn write(&mut self, port: usize, batch: &Batch<Row>) {
        if let Some(fail_at) = self.fail_at {
            if batch.iter().any(|row| row.get(0).as_int() == Some(fail_at)) {
                CRASHED.store(true, Ordering::Release);
                panic!("simulated crash at row {fail_at}");
            }
        }
        self.inner.write(port, batch);
    }

    fn finish(&mut self) {
        self.inner.finish();
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.inner.precommit(epoch)
    }

    fn sync(staged: &[u8]) -> Result<(), OperatorError> {
        K::sync(staged)
    }

    fn commit(staged: &[u8], control: &weir_runtime::CommitControl) -> Result<(), OperatorError> {
        K::commit(staged, control)?;
        if !staged.is_empty() {
            COMMITS.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// A `ShardContext` for driving a sink by hand.
pub fn context(node: &str, shard: usize) -> weir_runtime::ShardContext {
    weir_runtime::ShardContext {
        shard,
        shards: 2,
        instance: shard,
        instances: 2,
        node: node.into(),
        committed_epoch: 0,
        snapshots: true,
        metrics: weir_runtime::metrics::Registry::new(2),
    }
}

/// Calls `push` with each row, archived (sinks driven by hand: batches
/// are made by the runtime only).
pub fn push_rows(rows: impl IntoIterator<Item = Row>, mut push: impl FnMut(&ArchivedRow)) {
    for row in rows {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&row).expect("rows serialize");
        push(rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes).expect("valid row"));
    }
}

/// A hash edge that sends about half of each shard's rows to the other
/// shard (by id).
pub fn spread() -> weir_runtime::Partition<Row> {
    weir_runtime::Partition::hash(|row: &Row| match row.values[0] {
        Value::Int(id) => (id / 2) as u64,
        _ => 0,
    })
}
