//! Goal: the steady-state data path makes no per-record heap allocation.
//!
//! Method: a counting global allocator. The same pipeline (source → hash
//! edge → processor → forward edge → sink, two shards) runs with N and with
//! 10 N records; start-up costs (threads, executors, rings, tables) are the
//! same in both, so the difference is what the extra 9 N records cost.
//! - Batch buffers: none. Buffers return to their home shard's pool, so the
//!   number allocated must not grow with the input.
//! - Everything else: far below one per record. What remains is glommio's
//!   cross-thread wake queue (a crossbeam list channel), which allocates a
//!   block per ~31 wake-ups of a parked shard; how many wake-ups happen
//!   depends on scheduling, so it is bounded, not counted exactly.
//!
//! This file holds one test so no other test's allocations are counted.

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

/// (all allocations, batch buffers allocated) for a run of `records`.
fn allocations_for(records: u64) -> (u64, u64) {
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
    let report = runtime.run(graph).expect("run succeeds");
    (
        ALLOCATIONS.load(Ordering::Relaxed) - before,
        report.buffer_allocations,
    )
}

#[test]
fn extra_records_cost_no_allocations() {
    const RECORDS: u64 = 200_000;
    // Warm-up: one-time process-wide allocations (thread-locals, glommio's
    // statics) happen here and are not counted below.
    allocations_for(RECORDS);
    let (small, small_buffers) = allocations_for(RECORDS);
    let (large, large_buffers) = allocations_for(10 * RECORDS);
    eprintln!("allocations: {small} ({small_buffers} buffers) for {RECORDS} records, {large} ({large_buffers} buffers) for {} records", 10 * RECORDS);
    // A few buffers of slack for scheduling: which shard runs ahead decides
    // how many are in flight at the peak, not how many records there are.
    assert!(
        large_buffers <= small_buffers + 16,
        "{large_buffers} buffers for 10x the records, {small_buffers} for 1x"
    );
    let extra = large.saturating_sub(small);
    let extra_records = 9 * RECORDS;
    assert!(
        extra * 200 < extra_records,
        "{extra} allocations for {extra_records} extra records ({small} for the small run, {large} for the large)"
    );
}
