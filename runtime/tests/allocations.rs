//! Goal: the steady-state data path makes no per-record heap allocation.
//!
//! Method: a counting global allocator. The same pipeline (source → hash
//! edge → processor → forward edge → sink, two shards) runs with N and with
//! 10 N records; start-up costs (threads, executors, rings, tables) are the
//! same in both, so the difference in allocations is what the extra 9 N
//! records cost. It must stay far below one allocation per batch of records,
//! let alone one per record. This file holds one test so no other test's
//! allocations are counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Item, Items, Shift};
use weir_runtime::{Batch, GraphBuilder, Partition, Runtime, Sink};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Count(u64);

impl Sink for Count {
    type Input = Item;

    fn write(&mut self, _port: usize, batch: &Batch<Item>) {
        self.0 += batch.len() as u64;
    }
}

fn allocations_for(records: u64) -> u64 {
    let runtime = Runtime::builder()
        .shards(2)
        .build()
        .expect("runtime starts");
    let mut graph = GraphBuilder::new();
    graph.source("items", move |context| Items::new(context, records, 1_000));
    graph.processor("shift", |_| Shift(1));
    graph.sink("count", |_| Count(0));
    graph.connect("items", "shift", Partition::hash(|item: &Item| item.key));
    graph.connect("shift", "count", Partition::<Item>::Forward);
    let graph = graph.build().unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    runtime.run(graph).expect("run succeeds");
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn extra_records_cost_no_allocations() {
    const RECORDS: u64 = 200_000;
    // Warm-up: one-time process-wide allocations (thread-locals, glommio's
    // statics) happen here and are not counted below.
    allocations_for(RECORDS);
    let small = allocations_for(RECORDS);
    let large = allocations_for(10 * RECORDS);
    let extra = large.saturating_sub(small);
    eprintln!(
        "allocations: {small} for {RECORDS} records, {large} for {} records",
        10 * RECORDS
    );
    let extra_records = 9 * RECORDS;
    // 1 800 000 extra records fill about 3 500 batches on two edges; allow
    // far less than one allocation per batch to absorb pool imbalance.
    assert!(
        extra * 1_000 < extra_records,
        "{extra} allocations for {extra_records} extra records ({small} for the small run, {large} for the large)"
    );
}
