//! Small operators shared by the runtime's behaviour tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use weir_runtime::{
    ArchivedRecord, Batch, Emitter, Processor, Record, ShardContext, Sink, Source, SourcePoll,
};

/// A record with a unique id and a key.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub id: u64,
    pub key: u64,
}

/// Emits `Item { id, key: id % keys }` for the ids `first..end` stepping by
/// the number of instances, starting at the instance index.
pub struct Items {
    next: u64,
    end: u64,
    step: u64,
    keys: u64,
}

impl Items {
    pub fn new(context: &ShardContext, count: u64, keys: u64) -> Items {
        Items {
            next: context.instance as u64,
            end: count,
            step: context.instances as u64,
            keys,
        }
    }
}

impl Source for Items {
    type Output = Item;

    fn poll(&mut self, out: &mut Emitter<Item>) -> SourcePoll {
        for _ in 0..out.batch_records_max() {
            if self.next >= self.end {
                return SourcePoll::Exhausted;
            }
            out.push(&Item {
                id: self.next,
                key: self.next % self.keys,
            });
            self.next += self.step;
        }
        SourcePoll::Ready
    }
}

/// Passes items through, adding `offset` to every id.
pub struct Shift(pub u64);

impl Processor for Shift {
    type Input = Item;
    type Output = Item;

    fn process(&mut self, _port: usize, batch: &Batch<Item>, out: &mut Emitter<Item>) {
        for item in batch.iter() {
            out.push(&Item {
                id: item.id.to_native() + self.0,
                key: item.key.to_native(),
            });
        }
    }
}

/// Every record a sink saw, with the shard and port it arrived on.
pub type Seen<T> = Arc<Mutex<Vec<(usize, usize, T)>>>;

/// A sink that copies what it reads (via `read`) into a shared vector at the
/// end of the run.
pub struct Collect<T: Record, V, R> {
    shard: usize,
    local: Vec<(usize, usize, V)>,
    seen: Seen<V>,
    read: R,
    _record: std::marker::PhantomData<fn() -> T>,
}

impl<T: Record, V, R: Fn(&ArchivedRecord<T>) -> V> Collect<T, V, R> {
    pub fn new(context: &ShardContext, seen: Seen<V>, read: R) -> Self {
        Collect {
            shard: context.shard,
            local: Vec::new(),
            seen,
            read,
            _record: std::marker::PhantomData,
        }
    }
}

impl<T: Record, V: 'static, R: Fn(&ArchivedRecord<T>) -> V + 'static> Sink for Collect<T, V, R> {
    type Input = T;

    fn write(&mut self, port: usize, batch: &Batch<T>) {
        for record in batch.iter() {
            self.local.push((self.shard, port, (self.read)(record)));
        }
    }

    fn finish(&mut self) {
        self.seen.lock().unwrap().append(&mut self.local);
    }
}

/// Reads an item's id and key.
pub fn id_key(item: &ArchivedRecord<Item>) -> (u64, u64) {
    (item.id.to_native(), item.key.to_native())
}

/// A sink collecting items' ids and keys.
pub type CollectItems = Collect<Item, (u64, u64), fn(&ArchivedRecord<Item>) -> (u64, u64)>;

/// A sink collecting items' ids and keys.
pub fn collect_items(context: &ShardContext, seen: Seen<(u64, u64)>) -> CollectItems {
    Collect::new(context, seen, id_key)
}

/// Asserts that a run failed because node `node` panicked on `shard` with
/// `message` (the panic is caught in the node's task).
pub fn assert_panicked(error: weir_runtime::Error, node: &str, shard: usize, message: &str) {
    match error {
        weir_runtime::Error::Run(weir_runtime::RunError::Node {
            node: failed,
            shard: failed_shard,
            failure: weir_runtime::NodeFailure::Panicked(text),
        }) => {
            assert_eq!((failed.as_str(), failed_shard), (node, shard));
            assert_eq!(text, message);
        }
        other => panic!("unexpected error: {other}"),
    }
}
