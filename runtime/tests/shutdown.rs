//! Goal: stopping a running pipeline through its handle stops the sources,
//! drains every ring and flushes every sink before `wait` returns.
//!
//! Method: an unbounded source counts what it emitted; a sink counts what it
//! received and, once it has seen a threshold, asks the handle to shut
//! down. After `wait` the two counts must be equal: nothing emitted was left
//! in a ring. No timing is involved.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use common::Item;
use weir_runtime::{
    Batch, Emitter, GraphBuilder, Handle, Partition, Runtime, Sink, Source, SourcePoll,
};

struct Endless {
    next: u64,
    emitted: Arc<AtomicU64>,
}

impl Source for Endless {
    type Output = Item;

    fn poll(&mut self, out: &mut Emitter<Item>) -> SourcePoll {
        for _ in 0..100 {
            out.push(&Item {
                id: self.next,
                key: self.next,
            });
            self.next += 1;
        }
        self.emitted.fetch_add(100, Ordering::Relaxed);
        SourcePoll::Ready
    }
}

struct StopAfter {
    received: Arc<AtomicU64>,
    handle: Arc<OnceLock<Handle>>,
}

impl Sink for StopAfter {
    type Input = Item;

    fn write(&mut self, _port: usize, batch: &Batch<Item>) {
        let total = self
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if total > 100_000 {
            if let Some(handle) = self.handle.get() {
                handle.shutdown();
            }
        }
    }
}

#[test]
fn shutdown_drains_everything_emitted() {
    let emitted = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let handle = Arc::new(OnceLock::new());
    let (source_count, sink_count, sink_handle) =
        (emitted.clone(), received.clone(), handle.clone());
    let mut graph = GraphBuilder::new();
    graph.source("endless", move |_| Endless {
        next: 0,
        emitted: source_count.clone(),
    });
    graph.sink("stop", move |_| StopAfter {
        received: sink_count.clone(),
        handle: sink_handle.clone(),
    });
    graph.connect("endless", "stop", Partition::hash(|item: &Item| item.key));
    let runtime = Runtime::builder()
        .shards(2)
        .build()
        .expect("runtime starts");
    let running = runtime.start(graph.build().unwrap()).expect("starts");
    handle.set(running.handle()).expect("set once");
    running.wait().expect("run succeeds");
    let (emitted, received) = (
        emitted.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );
    assert!(received > 100_000);
    assert_eq!(emitted, received, "records were lost in the drain");
}
