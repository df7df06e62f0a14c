//! Goal: a failing node ends the whole run with an error that says where,
//! instead of hanging the other shards.
//!
//! Method: a processor panics on its first batch on one shard; the other
//! shards see their rings to it close and stop. `run` must return an error
//! carrying the panic message.

mod common;

use common::{Item, Items};
use weir_runtime::{Batch, Emitter, GraphBuilder, Partition, Processor, Runtime, Sink};

struct Explode {
    shard: usize,
}

impl Processor for Explode {
    type Input = Item;
    type Output = Item;

    fn process(&mut self, _port: usize, _batch: &Batch<Item>, _out: &mut Emitter<Item>) {
        assert!(self.shard != 1, "boom on shard {}", self.shard);
    }
}

struct Ignore;

impl Sink for Ignore {
    type Input = Item;
    fn write(&mut self, _port: usize, _batch: &Batch<Item>) {}
}

#[test]
fn a_panicking_operator_fails_the_run_with_its_message() {
    let mut graph = GraphBuilder::new();
    graph.source("items", |context| Items::new(context, 1_000_000, 64));
    graph.processor("explode", |context| Explode {
        shard: context.shard,
    });
    graph.sink("ignore", |_| Ignore);
    graph.connect("items", "explode", Partition::hash(|item: &Item| item.key));
    graph.connect("explode", "ignore", Partition::<Item>::Forward);
    let runtime = Runtime::builder()
        .shards(2)
        .build()
        .expect("runtime starts");
    let error = runtime
        .run(graph.build().unwrap())
        .expect_err("the run fails");
    common::assert_panicked(error, "explode", 1, "boom on shard 1");
}
