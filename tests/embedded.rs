//! The embedding API end to end: pushes from many foreign threads (std and
//! tokio), backpressure, queryable state against a model, subscriptions,
//! shutdown, failure, durable pushes (receipts, logging in parts, replay
//! after a failed run), and that the library installs nothing global.
//!
//! Every wait here is for an event (a count reaching its total, a gate),
//! never for a time; waits are bounded (120 s) only so that an event that
//! never comes fails the test instead of hanging it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::runtime::{Batch, Emitter, Partition, Processor, Runtime};
use weir::{At, Event, PushError, QueryError, Rolling};

/// What the tests push: who sent it, its number among that sender's
/// records of the key, its key and event time.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    sender: u32,
    seq: u32,
    key: u64,
    time_ms: u64,
}

/// The tests here run one at a time: each starts shards and up to 16
/// pushing threads, and this machine has two cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime(shards: usize) -> Runtime {
    Runtime::builder()
        .shards(shards)
        .pin(false)
        .low_latency(Duration::from_micros(50))
        .build()
        .expect("the runtime starts")
}

/// A runtime with a data directory, committing every 20 ms.
fn durable_runtime(shards: usize, dir: &std::path::Path) -> Runtime {
    Runtime::builder()
        .shards(shards)
        .pin(false)
        .data_dir(dir)
        .epoch_interval(Duration::from_millis(20))
        .build()
        .expect("the runtime starts")
}

/// Spins (yielding the core) until `done` holds. The pipeline is expected
/// to get there; the bound only turns a pipeline that never does into a
/// failure instead of a hang, and is far above any wait here.
fn until(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "the awaited state was not reached in 120 s"
        );
        std::thread::yield_now();
    }
}

/// Checks that `seen` holds every record of `senders` × `keys` × `per_key`
/// once, and each (sender, key)'s records in order.
fn check_exactly_once_in_order(seen: &[Record], senders: u32, keys: u64, per_key: u32) {
    assert_eq!(
        seen.len(),
        (senders as u64 * keys * per_key as u64) as usize
    );
    let mut next: HashMap<(u32, u64), u32> = HashMap::new();
    for record in seen {
        let expected = next.entry((record.sender, record.key)).or_default();
        assert_eq!(
            record.seq, *expected,
            "sender {} key {}: got record {} after {} (loss, duplicate or reordering)",
            record.sender, record.key, record.seq, *expected
        );
        *expected += 1;
    }
    assert_eq!(next.len() as u64, senders as u64 * keys);
    assert!(next.values().all(|&count| count == per_key));
}

#[test]
fn pushes_from_many_std_threads_arrive_once_in_order() {
    let _serial = serial();
    const SENDERS: u32 = 8;
    const KEYS: u64 = 64;
    const PER_KEY: u32 = 400;
    let mut pipeline = weir::Pipeline::new(runtime(2));
    // A small queue, so pushers meet backpressure and wait for room.
    let input = pipeline.input_with(
        "records",
        weir::InputOptions::default().queue_capacity(64),
        |record: &Record| record.key,
    );
    let echo = pipeline.subscription::<Event<Record>>("echo", "records", Partition::Forward);
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    // One list per shard, appended by that shard's callback only.
    let seen: Arc<Vec<Mutex<Vec<Record>>>> = Arc::new((0..2).map(|_| Mutex::default()).collect());
    let shard_of = |key: u64| weir::runtime::owner_of(key, 2);
    let lists = seen.clone();
    handle.on_output(&echo, move |event| {
        let record = Record {
            sender: event.value.sender.to_native(),
            seq: event.value.seq.to_native(),
            key: event.value.key.to_native(),
            time_ms: event.value.time_ms.to_native(),
        };
        assert_eq!(event.key.to_native(), record.key);
        lists[shard_of(record.key)].lock().unwrap().push(record);
    });
    let threads: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (handle, input) = (handle.clone(), input.clone());
            std::thread::spawn(move || {
                for seq in 0..PER_KEY {
                    for key in 0..KEYS {
                        let record = Record {
                            sender,
                            seq,
                            key,
                            time_ms: 0,
                        };
                        // Alternate the blocking and the non-blocking push.
                        if (seq as u64 + key) % 2 == 0 {
                            handle.push_blocking(&input, record).unwrap();
                        } else {
                            let mut record = record;
                            loop {
                                match handle.try_push(&input, record) {
                                    Ok(()) => break,
                                    Err(PushError::Full(back)) => {
                                        record = back;
                                        std::thread::yield_now();
                                    }
                                    Err(PushError::Closed(_)) => panic!("closed while running"),
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // Shutdown drains what is still queued before the run ends.
    service.shutdown().unwrap();
    let all: Vec<Record> = seen
        .iter()
        .flat_map(|list| list.lock().unwrap().clone())
        .collect();
    check_exactly_once_in_order(&all, SENDERS, KEYS, PER_KEY);
}

#[test]
fn pushes_from_tokio_tasks_and_a_channel_subscriber() {
    let _serial = serial();
    const SENDERS: u32 = 16;
    const KEYS: u64 = 32;
    const PER_KEY: u32 = 100;
    let total = (SENDERS as u64 * KEYS * PER_KEY as u64) as usize;
    let mut pipeline = weir::Pipeline::new(runtime(2));
    let input = pipeline.input_with(
        "records",
        weir::InputOptions::default().queue_capacity(128),
        |record: &Record| record.key,
    );
    let echo = pipeline.subscription::<Event<Record>>("echo", "records", Partition::Forward);
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    let subscriber = handle.subscribe(&echo, total);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    tokio.block_on(async {
        let tasks: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (handle, input) = (handle.clone(), input.clone());
                tokio::spawn(async move {
                    for seq in 0..PER_KEY {
                        let batch: Vec<Record> = (0..KEYS)
                            .map(|key| Record {
                                sender,
                                seq,
                                key,
                                time_ms: 0,
                            })
                            .collect();
                        if seq % 2 == 0 {
                            handle.push_batch(&input, batch).await.unwrap();
                        } else {
                            for record in batch {
                                handle.push(&input, record).await.unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    service.shutdown().unwrap();
    let mut per_shard: Vec<Vec<Record>> = vec![Vec::new(); 2];
    while let Some(event) = subscriber.try_recv() {
        per_shard[weir::runtime::owner_of(event.key, 2)].push(event.value);
    }
    assert_eq!(subscriber.missed(), 0);
    // The run ended: the channel is closed once read out.
    assert_eq!(subscriber.recv(), None);
    let all: Vec<Record> = per_shard.concat();
    check_exactly_once_in_order(&all, SENDERS, KEYS, PER_KEY);
}

/// Holds a shard inside an operator: the operator calls
/// [`hold_first`](Latch::hold_first) on every batch; the first call blocks
/// the shard until the test calls [`open`](Latch::open). While it is held,
/// nothing leaves the shard's input queue.
#[derive(Default)]
struct Latch {
    entered: AtomicUsize,
    open: Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Latch {
    /// Blocks if this is the first call, until opened; returns whether it
    /// was.
    fn hold_first(&self) -> bool {
        if self.entered.fetch_add(1, Ordering::AcqRel) != 0 {
            return false;
        }
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        true
    }

    /// Waits until the shard is held.
    fn wait_held(&self) {
        until(|| self.entered.load(Ordering::Acquire) >= 1);
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Adds processor `gate` (made by `gate`) reading input `numbers`, and a
/// subscription `out` to what it passes on.
fn behind_gate<P>(
    pipeline: &mut weir::Pipeline,
    gate: impl Fn() -> P + Send + Sync + 'static,
) -> weir::Subscription<Event<u64>>
where
    P: Processor<Input = Event<u64>, Output = Event<u64>>,
{
    pipeline.graph().processor("gate", move |_| gate());
    pipeline
        .graph()
        .connect::<Event<u64>>("numbers", "gate", Partition::Forward);
    pipeline.subscription::<Event<u64>>("out", "gate", Partition::Forward)
}

/// Passes records through, but holds the shard on its first batch until
/// the test opens the gate: the shard then takes nothing from its queue.
struct Gate(Arc<Latch>);

impl Processor for Gate {
    type Input = Event<u64>;
    type Output = Event<u64>;

    fn process(&mut self, _: usize, batch: &Batch<Event<u64>>, out: &mut Emitter<Event<u64>>) {
        self.0.hold_first();
        for event in batch.iter() {
            out.push(&Event {
                key: event.key.to_native(),
                time_ms: event.time_ms.to_native(),
                pushed_ns: event.pushed_ns.to_native(),
                value: event.value.to_native(),
            });
        }
    }
}

#[test]
fn a_full_queue_hands_the_record_back_and_push_waits_for_room() {
    let _serial = serial();
    const CAPACITY: usize = 8;
    let mut pipeline = weir::Pipeline::new(runtime(1));
    let input = pipeline.input_with(
        "numbers",
        weir::InputOptions::default().queue_capacity(CAPACITY),
        |n: &u64| *n,
    );
    let latch = Arc::new(Latch::default());
    let held = latch.clone();
    let out = behind_gate(&mut pipeline, move || Gate(held.clone()));
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    let subscriber = handle.subscribe(&out, 1024);
    handle.try_push(&input, 0).unwrap();
    // The shard is now held inside the gate: nothing leaves its queue.
    latch.wait_held();
    for n in 1..=CAPACITY as u64 {
        handle.try_push(&input, n).unwrap();
    }
    let refused = handle.try_push(&input, 1000).unwrap_err();
    assert_eq!(refused, PushError::Full(1000), "{refused}");
    if let Err(PushError::Full(rest)) = handle.try_push_batch(&input, vec![1001, 1002]) {
        assert_eq!(rest, vec![1001, 1002]);
    } else {
        panic!("a batch into a full queue must be handed back");
    }
    // An async push waits while the queue is full...
    let mut waiting = Box::pin(handle.push(&input, 99));
    assert!(
        futures_lite::future::block_on(futures_lite::future::poll_once(&mut waiting)).is_none()
    );
    // ...and completes once the shard takes records again.
    latch.open();
    futures_lite::future::block_on(waiting).unwrap();
    let mut got = Vec::new();
    while got.len() < CAPACITY + 2 {
        got.push(subscriber.recv().expect("delivered").value);
    }
    let mut expected: Vec<u64> = (0..=CAPACITY as u64).collect();
    expected.push(99);
    assert_eq!(got, expected);
    service.shutdown().unwrap();
}

#[test]
fn durable_pushes_complete_their_receipts_with_or_without_a_data_directory() {
    let _serial = serial();
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 500;
    const KEYS: u64 = 50;
    for durable in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Runtime::builder()
            .shards(2)
            .pin(false)
            .epoch_interval(Duration::from_millis(20));
        if durable {
            builder = builder.data_dir(dir.path());
        }
        let mut pipeline = weir::Pipeline::new(builder.build().unwrap());
        // A small queue: pushers meet backpressure.
        let input = pipeline.input_with(
            "numbers",
            weir::InputOptions::default().queue_capacity(64),
            |n: &u64| *n % KEYS,
        );
        let counts = pipeline.rolling("counts", &input, Rolling::count(Duration::from_secs(3600)));
        let service = pipeline.start().unwrap();
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (handle, input) = (service.handle(), input.clone());
                std::thread::spawn(move || {
                    let mut receipts = Vec::new();
                    for i in 0..PER_THREAD {
                        let n = thread * PER_THREAD + i;
                        // Each thread pushes its own way.
                        let receipt = match thread {
                            0 => handle.push_durable_blocking(&input, n).unwrap(),
                            1 => futures_lite::future::block_on(handle.push_durable(&input, n))
                                .unwrap(),
                            _ => loop {
                                match handle.try_push_durable(&input, n) {
                                    Ok(receipt) => break receipt,
                                    Err(PushError::Full(_)) => std::thread::yield_now(),
                                    Err(closed) => panic!("{closed}"),
                                }
                            },
                        };
                        receipts.push(receipt);
                    }
                    // Awaited on one thread, waited for on the others.
                    for receipt in receipts {
                        if thread == 1 {
                            futures_lite::future::block_on(receipt).unwrap();
                        } else {
                            receipt.wait().unwrap();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let handle = service.handle();
        for key in 0..KEYS {
            until(|| handle.query(&counts, key).unwrap().count == THREADS * PER_THREAD / KEYS);
        }
        // Receipts still open at a graceful shutdown complete `Ok`: the
        // drain waits for their syncs.
        let late: Vec<_> = (0..KEYS)
            .map(|n| handle.push_durable_blocking(&input, n).unwrap())
            .collect();
        service.shutdown().unwrap();
        for receipt in late {
            receipt.wait().unwrap();
        }
        match handle.try_push_durable(&input, 7) {
            Err(PushError::Closed(7)) => {}
            other => panic!("durable: {durable}: expected Closed(7), got {other:?}"),
        }
        assert_eq!(
            handle.push_durable_blocking(&input, 8).unwrap_err(),
            PushError::Closed(8)
        );
    }
}

/// Holds its shard in its first `write` until opened; counts records and
/// bytes.
struct BlobGate {
    latch: Arc<Latch>,
    records: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl weir::runtime::Sink for BlobGate {
    type Input = Event<(u64, Vec<u8>)>;

    fn write(&mut self, _: usize, batch: &Batch<Event<(u64, Vec<u8>)>>) {
        self.latch.hold_first();
        for event in batch.iter() {
            let (n, blob) = (&event.value.0, &event.value.1);
            assert!(blob.iter().all(|&byte| byte == n.to_native() as u8));
            // Bytes first: the test waits on the record count, then reads
            // the bytes.
            self.bytes.fetch_add(blob.len(), Ordering::AcqRel);
            self.records.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[test]
fn records_one_poll_takes_beyond_a_wal_record_are_logged_in_parts() {
    let _serial = serial();
    const BLOBS: usize = 300;
    const BLOB: usize = 64 << 10; // 300 × 64 KiB: more than a WAL record's 16 MiB
    let dir = tempfile::tempdir().unwrap();
    let mut pipeline = weir::Pipeline::new(durable_runtime(1, dir.path()));
    let input = pipeline.input("blobs", |blob: &(u64, Vec<u8>)| blob.0);
    let latch = Arc::new(Latch::default());
    let (records, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gate = (latch.clone(), records.clone(), bytes.clone());
    pipeline.graph().sink("gate", move |_| BlobGate {
        latch: gate.0.clone(),
        records: gate.1.clone(),
        bytes: gate.2.clone(),
    });
    pipeline
        .graph()
        .connect::<Event<(u64, Vec<u8>)>>("blobs", "gate", Partition::Forward);
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    handle.try_push(&input, (0, vec![0; 10])).unwrap();
    // The shard is now held in the sink: the next poll takes every blob.
    latch.wait_held();
    let receipts: Vec<_> = (1..=BLOBS as u64)
        .map(|n| {
            handle
                .try_push_durable(&input, (n, vec![n as u8; BLOB]))
                .unwrap()
        })
        .collect();
    latch.open();
    for receipt in receipts {
        receipt.wait().unwrap();
    }
    until(|| records.load(Ordering::Acquire) == BLOBS + 1);
    assert_eq!(bytes.load(Ordering::Acquire), BLOBS * BLOB + 10);
    service
        .shutdown()
        .expect("no intake record was too large for the WAL");
}

/// Count of `key`'s events with time in the window ending with `now_ms`'s
/// slice (slices of `slice_ms`, `buckets` of them): the rolling window's
/// definition, by brute force.
fn model(events: &[(u64, u64)], key: u64, now_ms: u64, slice_ms: u64, buckets: u64) -> u64 {
    let now = now_ms / slice_ms;
    events
        .iter()
        .filter(|&&(k, t)| k == key && t / slice_ms <= now && t / slice_ms + buckets > now)
        .count() as u64
}

#[test]
fn queryable_rolling_window_matches_a_model() {
    let _serial = serial();
    const SENDERS: u64 = 4;
    const KEYS_PER_SENDER: u64 = 25;
    let (slice_ms, buckets) = (100, 10);
    let spec = Rolling::count(Duration::from_millis(slice_ms * buckets)).buckets(buckets);
    let mut pipeline = weir::Pipeline::new(runtime(2));
    let input = pipeline.input_timed(
        "events",
        weir::InputOptions::default(),
        |record: &Record| record.key,
        |record: &Record| record.time_ms,
    );
    let rolling = pipeline.rolling("rolling", &input, spec);
    let updates =
        pipeline.subscription::<weir::RollingUpdate>("updates", "rolling", Partition::Forward);
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    let delivered = Arc::new(AtomicU64::new(0));
    let updates_seen: Arc<Mutex<Vec<(u64, u64, u64)>>> = Arc::default();
    let (count, list) = (delivered.clone(), updates_seen.clone());
    handle.on_output(&updates, move |update| {
        list.lock().unwrap().push((
            update.key.to_native(),
            update.time_ms.to_native(),
            update.count.to_native(),
        ));
        count.fetch_add(1, Ordering::Release);
    });
    // Each key belongs to one sender. Senders push in rounds, meeting at a
    // barrier after each, so a shard takes round i's events before round
    // i + 1's; times are 10 ms a round (plus < 10 ms of jitter), so no
    // event is older than the window at its shard's clock. Some keys skip
    // rounds, one in three skips rounds 100 to 199 (its window empties,
    // it is swept, and it comes back).
    const ROUNDS: u64 = 300;
    let base = 1_000_000u64;
    let present = |key: u64, round: u64| {
        (key * 7 + round * 13) % 5 != 0 && !(key % 3 == 0 && (100..200).contains(&round))
    };
    let time_of = move |key: u64, round: u64| base + round * 10 + (key * 7 + round * 13) % 10;
    let mut events: Vec<(u64, u64)> = Vec::new();
    for round in 0..ROUNDS {
        for sender in 0..SENDERS {
            for k in 0..KEYS_PER_SENDER {
                let key = sender * 1000 + k;
                if present(key, round) {
                    events.push((key, time_of(key, round)));
                }
            }
        }
    }
    let barrier = Arc::new(std::sync::Barrier::new(SENDERS as usize));
    let threads: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (handle, input, barrier) = (handle.clone(), input.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut seq = 0;
                for round in 0..ROUNDS {
                    for k in 0..KEYS_PER_SENDER {
                        let key = sender * 1000 + k;
                        if !present(key, round) {
                            continue;
                        }
                        let record = Record {
                            sender: sender as u32,
                            seq,
                            key,
                            time_ms: time_of(key, round),
                        };
                        seq += 1;
                        handle.push_blocking(&input, record).unwrap();
                    }
                    barrier.wait();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // Every event yields one update (none is late).
    until(|| delivered.load(Ordering::Acquire) == events.len() as u64);
    // Each update holds its key's count up to and including its event.
    let mut per_key: HashMap<u64, Vec<u64>> = HashMap::new();
    for &(key, time) in &events {
        per_key.entry(key).or_default().push(time);
    }
    for &(key, time, count) in updates_seen.lock().unwrap().iter() {
        let times = &per_key[&key];
        let upto: Vec<(u64, u64)> = times
            .iter()
            .take_while(|&&t| t <= time)
            .map(|&t| (key, t))
            .collect();
        assert_eq!(
            count,
            model(&upto, key, time, slice_ms, buckets),
            "update of {key} at {time}"
        );
    }
    // Queries at several times agree with the model, for keys with events
    // and for keys without.
    let end = events.iter().map(|&(_, t)| t).max().unwrap();
    for now in [end, end + 250, end + 999, end + 1_000, end + 60_000] {
        for key in (0..SENDERS).flat_map(|s| (0..KEYS_PER_SENDER + 2).map(move |k| s * 1000 + k)) {
            let value = handle.query(&rolling, At::time(key, now)).unwrap();
            assert_eq!(
                value.count,
                model(&events, key, now, slice_ms, buckets),
                "key {key} at {now}"
            );
            assert_eq!(value.end_ms, (now / slice_ms + 1) * slice_ms);
        }
    }
    // The async form gives the same answers.
    let key = 1003;
    let sync = handle.query(&rolling, At::time(key, end)).unwrap();
    let asynchronous =
        futures_lite::future::block_on(handle.query_async(&rolling, At::time(key, end))).unwrap();
    assert_eq!(sync, asynchronous);
    service.shutdown().unwrap();
}

#[test]
fn shutdown_drains_then_refuses_with_a_clear_error() {
    let _serial = serial();
    const N: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let mut pipeline = weir::Pipeline::new(durable_runtime(2, dir.path()));
    let input = pipeline.input("numbers", |n: &u64| *n);
    let counts = pipeline.rolling("counts", &input, Rolling::count(Duration::from_secs(3600)));
    let echo = pipeline.subscription::<weir::RollingUpdate>("echo", "counts", Partition::Forward);
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    let delivered = Arc::new(AtomicU64::new(0));
    let seen = delivered.clone();
    handle.on_output(&echo, move |_| {
        seen.fetch_add(1, Ordering::Relaxed);
    });
    let subscriber = handle.subscribe(&echo, 16);
    for n in 0..N {
        handle.push_blocking(&input, n % 1000).unwrap();
    }
    // Shut down with records still queued: every one goes through.
    let report = service.shutdown().unwrap();
    assert_eq!(delivered.load(Ordering::Relaxed), N);
    assert!(report.last_committed_epoch >= 1, "{report:?}");
    assert!(handle.is_finished());
    assert_eq!(handle.wait_finished(Duration::ZERO), Some(None));
    // After shutdown: pushes come back with the record, queries and
    // subscriptions say the run ended.
    match handle.try_push(&input, 7) {
        Err(error @ PushError::Closed(7)) => {
            assert!(error.to_string().contains("shut down"), "{error}")
        }
        other => panic!("expected Closed(7), got {other:?}"),
    }
    assert_eq!(
        futures_lite::future::block_on(handle.push(&input, 8)),
        Err(PushError::Closed(8))
    );
    assert_eq!(handle.push_blocking(&input, 9), Err(PushError::Closed(9)));
    let error = handle.query(&counts, 7).unwrap_err();
    assert_eq!(
        error,
        QueryError::Closed {
            node: "counts".into()
        }
    );
    assert!(error.to_string().contains("`counts`"), "{error}");
    // The small subscriber missed most updates, and then saw the end.
    let mut read = 0;
    while subscriber.recv().is_some() {
        read += 1;
    }
    assert_eq!(read + subscriber.missed(), N);
    assert!(subscriber.missed() > 0);
    let late = handle.subscribe(&echo, 16);
    assert_eq!(late.recv(), None);
    // A shut-down run is a stop, not a completion: the next start on the
    // data directory resumes it, with the window's state restored.
    let runtime = Runtime::builder()
        .shards(2)
        .pin(false)
        .data_dir(dir.path())
        .build()
        .unwrap();
    let mut pipeline = weir::Pipeline::new(runtime);
    let input = pipeline.input("numbers", |n: &u64| *n);
    let counts = pipeline.rolling("counts", &input, Rolling::count(Duration::from_secs(3600)));
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    for key in [0, 7, 999] {
        assert_eq!(
            handle.query(&counts, key).unwrap().count,
            N / 1000,
            "key {key}"
        );
    }
    handle.push_blocking(&input, 7).unwrap();
    until(|| handle.query(&counts, 7).unwrap().count == N / 1000 + 1);
    let report = service.shutdown().unwrap();
    assert!(report.resumed_from_epoch >= 1, "{report:?}");
}

/// Holds its shard in its first batch until opened, then fails the run.
struct FailGate(Arc<Latch>);

impl Processor for FailGate {
    type Input = Event<u64>;
    type Output = Event<u64>;

    fn process(&mut self, _: usize, _: &Batch<Event<u64>>, out: &mut Emitter<Event<u64>>) {
        if self.0.hold_first() {
            out.fail("the gate fails the run");
        }
    }
}

#[test]
fn receipts_of_records_a_failed_run_never_took_fail() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut pipeline = weir::Pipeline::new(durable_runtime(1, dir.path()));
    let input = pipeline.input("numbers", |n: &u64| *n);
    let latch = Arc::new(Latch::default());
    let held = latch.clone();
    behind_gate(&mut pipeline, move || FailGate(held.clone()));
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    handle.try_push(&input, 0).unwrap();
    // The shard is held in the gate: these stay queued, and the run fails
    // before it takes them.
    latch.wait_held();
    let receipts: Vec<_> = (1..=10)
        .map(|n| handle.try_push_durable(&input, n).unwrap())
        .collect();
    latch.open();
    // Waited for on another thread, so a receipt that never completes fails
    // the test instead of hanging it (the test keeps `input` alive).
    let (answers, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for receipt in receipts {
            answers.send(receipt.wait()).unwrap();
        }
    });
    for _ in 1..=10 {
        let answer = answered
            .recv_timeout(Duration::from_secs(60))
            .expect("a receipt of a record never taken completes once the run ends");
        let error = answer.unwrap_err();
        assert!(error.to_string().contains("run ended"), "{error}");
    }
    let error = service.shutdown().unwrap_err();
    assert!(
        error.to_string().contains("the gate fails the run"),
        "{error}"
    );
    drop(input);
}

/// Fails the run on the record 13.
struct FailOn13;

impl Processor for FailOn13 {
    type Input = Event<u64>;
    type Output = ();

    fn process(&mut self, _: usize, batch: &Batch<Event<u64>>, out: &mut Emitter<()>) {
        if batch.iter().any(|event| event.value == 13) {
            out.fail("record 13 is not allowed");
        }
    }
}

impl weir::Queryable for FailOn13 {
    type Key = u64;
    type Answer = u64;

    fn query(&self, key: &u64) -> u64 {
        *key
    }
}

/// Input `numbers` read by a queryable [`FailOn13`] (a query for `k`
/// answers `k`).
fn failing_on_13(pipeline: &mut weir::Pipeline) -> (weir::Input<u64>, weir::Query<u64, u64>) {
    let input = pipeline.input("numbers", |n: &u64| *n);
    let echo = pipeline.queryable(
        "fail_on_13",
        "numbers",
        |event: &Event<u64>| event.key,
        |key: &u64| *key,
        |_| FailOn13,
    );
    (input, echo)
}

#[test]
fn a_failed_run_closes_the_handle_and_reports_why() {
    let _serial = serial();
    let mut pipeline = weir::Pipeline::new(runtime(2));
    let (input, echo) = failing_on_13(&mut pipeline);
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    assert_eq!(handle.query(&echo, 5u64), Ok(5));
    handle.push_blocking(&input, 13).unwrap();
    let failure = handle
        .wait_finished(Duration::from_secs(600))
        .expect("the run ends")
        .expect("with a failure");
    assert!(failure.contains("record 13 is not allowed"), "{failure}");
    assert!(matches!(
        handle.try_push(&input, 1),
        Err(PushError::Closed(1))
    ));
    assert!(matches!(
        handle.query(&echo, 5u64),
        Err(QueryError::Closed { .. })
    ));
    let error = service.shutdown().unwrap_err();
    assert!(
        error.to_string().contains("record 13 is not allowed"),
        "{error}"
    );
}

/// The current disposition of `signal`: `SIG_DFL`, `SIG_IGN` or a
/// handler's address.
fn disposition(signal: libc::c_int) -> libc::sighandler_t {
    // SAFETY: a zeroed sigaction is a valid out-parameter, and a null new
    // action only reads the current one.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    let read = unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) };
    assert_eq!(read, 0);
    current.sa_sigaction
}

#[test]
fn the_library_installs_nothing_global() {
    let _serial = serial();
    let signals = [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
    ];
    let before: Vec<_> = signals.iter().map(|&signal| disposition(signal)).collect();
    let mut pipeline = weir::Pipeline::new(runtime(1));
    let input = pipeline.input("numbers", |n: &u64| *n);
    let counts = pipeline.rolling("counts", &input, Rolling::count(Duration::from_secs(1)));
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    handle.push_blocking(&input, 1).unwrap();
    until(|| handle.query(&counts, 1).unwrap().count == 1);
    service.shutdown().unwrap();
    // No global tracing subscriber was set...
    assert!(!tracing::dispatcher::has_been_set());
    // ...and no signal handler: each signal keeps what the process started
    // with (the default, or ignored when started in the background), and
    // none has a handler.
    let after: Vec<_> = signals.iter().map(|&signal| disposition(signal)).collect();
    assert_eq!(before, after);
    for (signal, action) in signals.iter().zip(after) {
        assert!(
            action == libc::SIG_DFL || action == libc::SIG_IGN,
            "signal {signal} has a handler"
        );
    }
}

/// A runtime on `dir` whose first epoch does not end during a test: what
/// it logs stays uncommitted unless the run shuts down gracefully.
fn one_epoch_runtime(dir: &std::path::Path) -> Runtime {
    Runtime::builder()
        .shards(1)
        .pin(false)
        .data_dir(dir)
        .epoch_interval(Duration::from_secs(3600))
        .build()
        .expect("the runtime starts")
}

#[test]
fn a_failed_runs_logged_pushes_are_replayed_and_a_changed_type_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Run 1: 1 is logged (its receipt says so), then 13 fails the run with
    // epoch 1, holding both, uncommitted.
    let mut pipeline = weir::Pipeline::new(one_epoch_runtime(dir.path()));
    let (input, _) = failing_on_13(&mut pipeline);
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    handle
        .push_durable_blocking(&input, 1)
        .unwrap()
        .wait()
        .unwrap();
    handle.push_blocking(&input, 13).unwrap();
    assert!(service.shutdown().is_err(), "13 fails the run");

    // Run 2: the input now takes another type; its logged records do not
    // validate as that type, and the run says which input.
    let mut pipeline = weir::Pipeline::new(one_epoch_runtime(dir.path()));
    let input = pipeline.input("numbers", |n: &(u64, u64, u64)| n.0);
    pipeline.rolling("counts", &input, Rolling::count(Duration::from_secs(3600)));
    let error = match pipeline.start() {
        Ok(service) => service.shutdown().unwrap_err().to_string(),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("input `numbers`") && error.contains("do not validate"),
        "{error}"
    );

    // Run 3: the original type again: 1 is pushed again before anything
    // else, and counted once (13, if its record was synced before run 1
    // died, too).
    let mut pipeline = weir::Pipeline::new(one_epoch_runtime(dir.path()));
    let input = pipeline.input("numbers", |n: &u64| *n);
    let counts = pipeline.rolling("counts", &input, Rolling::count(Duration::from_secs(3600)));
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    until(|| handle.query(&counts, 1).unwrap().count == 1);
    assert!(handle.query(&counts, 13).unwrap().count <= 1);
    service.shutdown().unwrap();

    // Run 4: run 3 committed the replay; nothing is pushed again.
    let mut pipeline = weir::Pipeline::new(one_epoch_runtime(dir.path()));
    let input = pipeline.input("numbers", |n: &u64| *n);
    let counts = pipeline.rolling("counts", &input, Rolling::count(Duration::from_secs(3600)));
    let service = pipeline.start().unwrap();
    let handle = service.handle();
    handle.push_blocking(&input, 2).unwrap();
    until(|| handle.query(&counts, 2).unwrap().count == 1);
    assert_eq!(handle.query(&counts, 1).unwrap().count, 1);
    service.shutdown().unwrap();
}
