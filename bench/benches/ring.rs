//! Cross-thread SPSC hand-off: weir's own ring (`weir_runtime::ring`, what
//! the runtime uses between shards) and glommio's `shared_channel`, against
//! `rtrb::RingBuffer` and `crossbeam::queue::ArrayQueue`.
//!
//! Method: each measured call (`iter_custom(iters)`) starts a producer and a
//! consumer thread once (pinned to the first two CPUs where there are two) and
//! runs `iters` rounds over one bounded ring; a round moves a fixed number of
//! items, timed from the producer's start to the consumer receiving the last
//! item. Between rounds the consumer hands its checksum, end time and kept
//! items back over a side channel (outside the timing), which the producer
//! checks and recycles. Thread and executor start-up are outside the measured
//! time: the rounds start after a barrier (lock-free rings) or after
//! `connect().await`, a rendezvous (glommio).
//!
//! Two modes:
//! - `record`: `u64` items one at a time through a 1024-slot ring;
//! - `batch16k`: boxed 16 KiB batches (1024 records of 16 bytes) moved by
//!   pointer through a 64-slot ring; the consumer reads each batch's 8-byte
//!   header. Throughput is reported in records.
//!
//! `weir_ring` runs weir's ring as the runtime does: each end in a glommio
//! executor, `push().await` / `pop().await`, parking when full or empty.
//! `weir_ring_spin` uses its non-blocking `try_push` / `try_pop` and spins,
//! exactly like the rtrb and ArrayQueue cases, to compare the queues alone.
//!
//! rtrb and ArrayQueue ends spin (`std::hint::spin_loop`) when the ring is
//! full or empty; glommio ends use `send().await` / `recv().await`, as the
//! runtime will, inside a `LocalExecutor` each (io memory cut to 1 MiB to fit
//! the locked-memory limit), so an idle glommio end may park its executor. The
//! extra `glommio_shared_channel_spin` cases set `spin_before_park(100 µs)` to
//! separate the channel's cost from the cost of parking and waking.

use std::hint::spin_loop;
use std::sync::{mpsc, Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam::queue::ArrayQueue;
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use weir_runtime::ring::PushError;

/// `u64` records moved per measured iteration in `record` mode.
const RECORDS_PER_ITER: u64 = 1 << 16;
/// Ring capacity in `record` mode.
const RECORD_SLOTS: usize = 1024;
/// Bytes in one batch.
const BATCH_BYTES: usize = 16 * 1024;
/// Records (of 16 bytes) in one batch.
const RECORDS_PER_BATCH: u64 = (BATCH_BYTES / 16) as u64;
/// Batches moved per measured iteration in `batch16k` mode.
const BATCHES_PER_ITER: u64 = 1024;
/// Ring capacity in `batch16k` mode.
const BATCH_SLOTS: usize = 64;
/// How long the `_spin` glommio variants spin before parking an idle executor.
const GLOMMIO_SPIN: Duration = Duration::from_micros(100);
/// glommio io memory per executor (the default 10 MiB exceeds RLIMIT_MEMLOCK).
const IO_MEMORY: usize = 1 << 20;

type Batch = Box<[u8; BATCH_BYTES]>;

/// An item handed from producer to consumer.
trait Item: Send + Sized + 'static {
    /// Refills `pool` with `count` items carrying sequence numbers `0..count`,
    /// reusing the items in `returned` (outside the measured time).
    fn refill(pool: &mut Vec<Self>, returned: Vec<Self>, count: u64);
    /// Consumes an item, returning its sequence number; items that own memory
    /// go to `keep`, to be handed back to the producer after the round.
    fn consume(self, keep: &mut Vec<Self>) -> u64;
}

impl Item for u64 {
    fn refill(pool: &mut Vec<Self>, _returned: Vec<Self>, count: u64) {
        pool.clear();
        pool.extend(0..count);
    }

    #[inline]
    fn consume(self, _keep: &mut Vec<Self>) -> u64 {
        self
    }
}

impl Item for Batch {
    fn refill(pool: &mut Vec<Self>, returned: Vec<Self>, count: u64) {
        pool.extend(returned);
        while (pool.len() as u64) < count {
            let batch: Batch = vec![0u8; BATCH_BYTES]
                .into_boxed_slice()
                .try_into()
                .expect("a vector of BATCH_BYTES converts to a batch");
            pool.push(batch);
        }
        for (seq, batch) in (0u64..).zip(pool.iter_mut()) {
            batch[..8].copy_from_slice(&seq.to_le_bytes());
        }
    }

    #[inline]
    fn consume(self, keep: &mut Vec<Self>) -> u64 {
        let mut header = [0u8; 8];
        header.copy_from_slice(&self[..8]);
        keep.push(self);
        u64::from_le_bytes(header)
    }
}

/// What the consumer hands back after each round: when it received the last
/// item, the checksum of sequence numbers, and the items it kept.
type RoundEnd<T> = (Instant, u64, Vec<T>);

/// The checksum of sequence numbers `0..count`.
fn expected_sum(count: u64) -> u64 {
    count * count.saturating_sub(1) / 2
}

/// CPUs for the producer and the consumer, if the machine has two.
fn cpus() -> (Option<usize>, Option<usize>) {
    match core_affinity::get_core_ids() {
        Some(ids) if ids.len() >= 2 => (Some(ids[0].id), Some(ids[1].id)),
        _ => (None, None),
    }
}

fn spawn_pinned<R, F>(cpu: Option<usize>, body: F) -> JoinHandle<R>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    thread::spawn(move || {
        if let Some(id) = cpu {
            core_affinity::set_for_current(core_affinity::CoreId { id });
        }
        body()
    })
}

/// Moves `rounds` rounds of `count` items through a lock-free ring whose ends
/// are `push` and `pop`, both spinning, and returns the summed transfer time.
fn run_spinning<T, P, C>(rounds: u64, count: u64, mut push: P, mut pop: C) -> Duration
where
    T: Item,
    P: FnMut(T) -> Result<(), T> + Send + 'static,
    C: FnMut() -> Option<T> + Send + 'static,
{
    let (producer_cpu, consumer_cpu) = cpus();
    let barrier = Arc::new(Barrier::new(2));
    let (back_tx, back_rx) = mpsc::channel::<RoundEnd<T>>();

    let consumer_barrier = Arc::clone(&barrier);
    let consumer = spawn_pinned(consumer_cpu, move || {
        consumer_barrier.wait();
        for _ in 0..rounds {
            let mut keep = Vec::with_capacity(count as usize);
            let (mut received, mut sum) = (0u64, 0u64);
            while received < count {
                match pop() {
                    Some(item) => {
                        sum = sum.wrapping_add(item.consume(&mut keep));
                        received += 1;
                    }
                    None => spin_loop(),
                }
            }
            back_tx
                .send((Instant::now(), sum, keep))
                .expect("producer gone");
        }
    });
    let producer = spawn_pinned(producer_cpu, move || {
        let mut pool = Vec::new();
        T::refill(&mut pool, Vec::new(), count);
        let mut total = Duration::ZERO;
        barrier.wait();
        for _ in 0..rounds {
            let start = Instant::now();
            for mut item in pool.drain(..) {
                while let Err(back) = push(item) {
                    item = back;
                    spin_loop();
                }
            }
            let (end, sum, keep) = back_rx.recv().expect("consumer gone");
            assert_eq!(sum, expected_sum(count), "items lost or reordered");
            total += end.saturating_duration_since(start);
            T::refill(&mut pool, keep, count);
        }
        total
    });
    consumer.join().expect("consumer thread panicked");
    producer.join().expect("producer thread panicked")
}

fn run_rtrb<T: Item>(rounds: u64, count: u64, slots: usize) -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::<T>::new(slots);
    run_spinning(
        rounds,
        count,
        move |item| tx.push(item).map_err(|rtrb::PushError::Full(item)| item),
        move || rx.pop().ok(),
    )
}

fn run_array_queue<T: Item>(rounds: u64, count: u64, slots: usize) -> Duration {
    let queue = Arc::new(ArrayQueue::<T>::new(slots));
    let consumer_queue = Arc::clone(&queue);
    run_spinning(
        rounds,
        count,
        move |item| queue.push(item),
        move || consumer_queue.pop(),
    )
}

fn executor(cpu: Option<usize>, spin: Option<Duration>) -> LocalExecutorBuilder {
    let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
    let builder = LocalExecutorBuilder::new(placement).io_memory(IO_MEMORY);
    match spin {
        Some(spin) => builder.spin_before_park(spin),
        None => builder,
    }
}

/// As [`run_spinning`], through a glommio `shared_channel` whose ends live in
/// two executors and await (`send().await`, `recv().await`); with `spin`, the
/// executors spin that long before parking when idle (glommio's default, `None`,
/// parks at once).
fn run_glommio<T: Item>(rounds: u64, count: u64, slots: usize, spin: Option<Duration>) -> Duration {
    let (tx, rx) = shared_channel::new_bounded::<T>(slots);
    let (producer_cpu, consumer_cpu) = cpus();
    let (back_tx, back_rx) = mpsc::channel::<RoundEnd<T>>();

    let consumer = executor(consumer_cpu, spin)
        .name("ring-consumer")
        .spawn(move || async move {
            let rx = rx.connect().await;
            for _ in 0..rounds {
                let mut keep = Vec::with_capacity(count as usize);
                let (mut received, mut sum) = (0u64, 0u64);
                while received < count {
                    let item = rx.recv().await.expect("producer hung up early");
                    sum = sum.wrapping_add(item.consume(&mut keep));
                    received += 1;
                }
                back_tx
                    .send((Instant::now(), sum, keep))
                    .expect("producer gone");
            }
        })
        .expect("spawn the consumer executor");
    let producer = executor(producer_cpu, spin)
        .name("ring-producer")
        .spawn(move || async move {
            let mut pool = Vec::new();
            T::refill(&mut pool, Vec::new(), count);
            let mut total = Duration::ZERO;
            let tx = tx.connect().await;
            for _ in 0..rounds {
                let start = Instant::now();
                for item in pool.drain(..) {
                    if tx.send(item).await.is_err() {
                        panic!("consumer hung up early");
                    }
                }
                // Blocking here is fine: this executor has nothing else to run.
                let (end, sum, keep) = back_rx.recv().expect("consumer gone");
                assert_eq!(sum, expected_sum(count), "items lost or reordered");
                total += end.saturating_duration_since(start);
                T::refill(&mut pool, keep, count);
            }
            total
        })
        .expect("spawn the producer executor");

    consumer.join().expect("consumer executor failed");
    producer.join().expect("producer executor failed")
}

fn run_weir_spinning<T: Item>(rounds: u64, count: u64, slots: usize) -> Duration {
    let (mut tx, mut rx) = weir_runtime::ring::ring::<T>(slots);
    run_spinning(
        rounds,
        count,
        move |item| {
            tx.try_push(item).map_err(|error| match error {
                PushError::Full(item) | PushError::Closed(item) => item,
            })
        },
        move || rx.try_pop(),
    )
}

/// As [`run_glommio`], through weir's own ring as the runtime uses it: each
/// end in its own glommio executor, `push().await` and `pop().await`, parking
/// when full or empty and woken by the other side.
fn run_weir<T: Item>(rounds: u64, count: u64, slots: usize) -> Duration {
    let (mut tx, mut rx) = weir_runtime::ring::ring::<T>(slots);
    let (producer_cpu, consumer_cpu) = cpus();
    let (back_tx, back_rx) = mpsc::channel::<RoundEnd<T>>();
    let consumer = executor(consumer_cpu, None)
        .name("weir-ring-consumer")
        .spawn(move || async move {
            for _ in 0..rounds {
                let mut keep = Vec::with_capacity(count as usize);
                let (mut received, mut sum) = (0u64, 0u64);
                while received < count {
                    let item = rx.pop().await.expect("producer hung up early");
                    sum = sum.wrapping_add(item.consume(&mut keep));
                    received += 1;
                }
                back_tx
                    .send((Instant::now(), sum, keep))
                    .expect("producer gone");
            }
        })
        .expect("spawn the consumer executor");
    let producer = executor(producer_cpu, None)
        .name("weir-ring-producer")
        .spawn(move || async move {
            let mut pool = Vec::new();
            T::refill(&mut pool, Vec::new(), count);
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let start = Instant::now();
                for item in pool.drain(..) {
                    if tx.push(item).await.is_err() {
                        panic!("consumer hung up early");
                    }
                }
                let (end, sum, keep) = back_rx.recv().expect("consumer gone");
                assert_eq!(sum, expected_sum(count), "items lost or reordered");
                total += end.saturating_duration_since(start);
                T::refill(&mut pool, keep, count);
            }
            total
        })
        .expect("spawn the producer executor");
    consumer.join().expect("consumer executor failed");
    producer.join().expect("producer executor failed")
}

/// One criterion group: every ring moving `count` items of type `T` per
/// iteration through `slots` slots; throughput counted in `records`.
fn group<T: Item>(c: &mut Criterion, name: &str, count: u64, slots: usize, records: u64) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(records));
    group.bench_function("weir_ring", |b| {
        b.iter_custom(|iters| run_weir::<T>(iters, count, slots))
    });
    group.bench_function("weir_ring_spin", |b| {
        b.iter_custom(|iters| run_weir_spinning::<T>(iters, count, slots))
    });
    group.bench_function("glommio_shared_channel", |b| {
        b.iter_custom(|iters| run_glommio::<T>(iters, count, slots, None))
    });
    group.bench_function("glommio_shared_channel_spin", |b| {
        b.iter_custom(|iters| run_glommio::<T>(iters, count, slots, Some(GLOMMIO_SPIN)))
    });
    group.bench_function("rtrb", |b| {
        b.iter_custom(|iters| run_rtrb::<T>(iters, count, slots))
    });
    group.bench_function("crossbeam_array_queue", |b| {
        b.iter_custom(|iters| run_array_queue::<T>(iters, count, slots))
    });
    group.finish();
}

fn records(c: &mut Criterion) {
    group::<u64>(
        c,
        "ring/record",
        RECORDS_PER_ITER,
        RECORD_SLOTS,
        RECORDS_PER_ITER,
    );
}

fn batches(c: &mut Criterion) {
    let records = BATCHES_PER_ITER * RECORDS_PER_BATCH;
    group::<Batch>(c, "ring/batch16k", BATCHES_PER_ITER, BATCH_SLOTS, records);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = records, batches
}
criterion_main!(benches);
