//! Goal: a slow sink bounds the memory of a fast source: the number of batch
//! buffers alive stays under a bound computed from the ring sizes, instead of
//! growing with the input.
//!
//! Method: every shard runs a source that can emit as fast as it likes; a
//! single sink instance on shard 0 sleeps after every batch. (The sink must
//! not share a thread with every source, or its sleeping would throttle
//! them directly: shard 1's source only slows down if backpressure works.)
//! A buffer is alive while it is in flight (in a ring, being filled, queued
//! to send or being read) or parked (in a shard's pool, or in a return ring
//! on its way home). In flight is at most: every ring full, plus per node
//! instance one open and one ready batch per target and one being read;
//! parked is at most the pool cap per pool and per return ring. Without
//! backpressure the
//! source would fill one buffer per 1024 of its 1 000 000 records: the
//! sink takes 2 ms a batch, several times what the source needs to fill one
//! (even in a debug build), so without backpressure most would be alive at
//! once.

mod common;

use std::time::Duration;

use common::{Item, Items};
use weir_runtime::limits::{BATCH_MAX_RECORDS, POOL_MAX_BUFFERS, RING_CAPACITY_BATCHES};
use weir_runtime::{Batch, GraphBuilder, Parallelism, Partition, Runtime, Sink};

struct Slow;

impl Sink for Slow {
    type Input = Item;

    fn write(&mut self, _port: usize, _batch: &Batch<Item>) {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn slow_sink_bounds_buffers_in_flight() {
    const SHARDS: usize = 2;
    const RECORDS: u64 = 1_000_000;
    let mut graph = GraphBuilder::new();
    graph.source("fast", |context| Items::new(context, RECORDS, 1_000));
    graph.sink("slow", |_| Slow).parallelism(Parallelism::One);
    graph.connect("fast", "slow", Partition::hash(|item: &Item| item.key));
    let runtime = Runtime::builder()
        .shards(SHARDS)
        .build()
        .expect("runtime starts");
    let report = runtime.run(graph.build().unwrap()).expect("run succeeds");

    // One ring from each shard's source to the sink; each source has one
    // target; the sink reads one batch at a time.
    let rings = SHARDS;
    let in_flight = rings * RING_CAPACITY_BATCHES + SHARDS * (2 + 1) + 1;
    let return_rings = SHARDS * (SHARDS - 1);
    let bound = in_flight + (SHARDS + return_rings) * POOL_MAX_BUFFERS;
    let unbounded = RECORDS as usize / BATCH_MAX_RECORDS;
    eprintln!(
        "buffers alive at peak: {}, bound {bound}",
        report.buffers_peak
    );
    assert!(
        bound * 2 < unbounded,
        "the test must be able to tell the difference"
    );
    assert!(
        report.buffers_peak <= bound,
        "{} buffers were alive at once; the bound is {bound}",
        report.buffers_peak
    );
}
