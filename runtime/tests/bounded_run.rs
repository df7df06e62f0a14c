//! Goal: a bounded pipeline ends on its own with exactly the expected
//! output, for every partitioning, for nodes with several inputs and
//! outputs, and for a node with a parallelism of one.
//!
//! Method: sources emit items with unique ids; sinks collect every
//! (shard, port, id) they see; after `run()` returns, the collected ids are
//! compared with what each partitioning must deliver.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{collect_items, Item, Items, Seen, Shift};
use weir_runtime::{GraphBuilder, Parallelism, Partition, Runtime};

const COUNT: u64 = 50_000;
const SHARDS: usize = 2;

fn runtime() -> Runtime {
    Runtime::builder()
        .shards(SHARDS)
        .build()
        .expect("runtime starts")
}

fn run_one_edge(partition: Partition<Item>) -> Vec<(usize, usize, (u64, u64))> {
    let seen: Seen<(u64, u64)> = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let mut graph = GraphBuilder::new();
    graph.source("items", |context| Items::new(context, COUNT, 97));
    graph.sink("collect", move |context| {
        collect_items(context, sink_seen.clone())
    });
    graph.connect("items", "collect", partition);
    runtime().run(graph.build().unwrap()).expect("run succeeds");
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    seen.sort();
    seen
}

fn ids(seen: &[(usize, usize, (u64, u64))]) -> Vec<u64> {
    let mut ids: Vec<u64> = seen.iter().map(|(_, _, (id, _))| *id).collect();
    ids.sort();
    ids
}

#[test]
fn forward_delivers_every_record_once_on_its_own_shard() {
    let seen = run_one_edge(Partition::Forward);
    assert_eq!(ids(&seen), (0..COUNT).collect::<Vec<_>>());
    for (shard, _, (id, _)) in &seen {
        assert_eq!(
            *shard as u64,
            id % SHARDS as u64,
            "item {id} left its shard"
        );
    }
}

#[test]
fn round_robin_delivers_every_record_once_and_spreads_them() {
    let seen = run_one_edge(Partition::RoundRobin);
    assert_eq!(ids(&seen), (0..COUNT).collect::<Vec<_>>());
    let on_zero = seen.iter().filter(|(shard, _, _)| *shard == 0).count() as u64;
    assert_eq!(on_zero, COUNT / 2);
}

#[test]
fn broadcast_delivers_every_record_to_every_shard() {
    let seen = run_one_edge(Partition::Broadcast);
    for shard in 0..SHARDS {
        let on_shard: Vec<(usize, usize, (u64, u64))> = seen
            .iter()
            .copied()
            .filter(|(s, _, _)| *s == shard)
            .collect();
        assert_eq!(
            ids(&on_shard),
            (0..COUNT).collect::<Vec<_>>(),
            "shard {shard}"
        );
    }
}

#[test]
fn several_inputs_and_outputs_and_a_single_instance_node() {
    let union: Seen<(u64, u64)> = Arc::new(Mutex::new(Vec::new()));
    let single: Seen<(u64, u64)> = Arc::new(Mutex::new(Vec::new()));
    let (union_sink, single_sink) = (union.clone(), single.clone());
    let mut graph = GraphBuilder::new();
    graph.source("low", |context| Items::new(context, COUNT, 10));
    graph.source("high", |context| Items::new(context, COUNT, 10));
    graph.processor("lift", |_| Shift(COUNT));
    graph.processor("same", |_| Shift(0));
    graph.sink("union", move |context| {
        collect_items(context, union_sink.clone())
    });
    graph
        .sink("single", move |context| {
            collect_items(context, single_sink.clone())
        })
        .parallelism(Parallelism::One);
    graph.connect("high", "lift", Partition::<Item>::Forward);
    graph.connect("low", "same", Partition::<Item>::Forward);
    graph.connect("same", "union", Partition::hash(|item: &Item| item.key));
    graph.connect("lift", "union", Partition::hash(|item: &Item| item.key));
    graph.connect("lift", "single", Partition::<Item>::RoundRobin);
    runtime().run(graph.build().unwrap()).expect("run succeeds");

    let union = union.lock().unwrap();
    assert_eq!(ids(&union), (0..2 * COUNT).collect::<Vec<_>>());
    for (_, port, (id, _)) in union.iter() {
        let expected_port = if *id < COUNT { 0 } else { 1 };
        assert_eq!(*port, expected_port, "item {id} arrived on the wrong port");
    }
    let single = single.lock().unwrap();
    assert_eq!(ids(&single), (COUNT..2 * COUNT).collect::<Vec<_>>());
    assert!(single.iter().all(|(shard, _, _)| *shard == 0));
}

#[test]
fn hash_partitioning_sends_each_key_to_one_shard_the_same_every_run() {
    let owners = || {
        let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
        for (shard, _, (id, key)) in run_one_edge(Partition::hash(|item: &Item| item.key)) {
            let previous = owner.insert(key, shard);
            assert!(
                previous.is_none_or(|p| p == shard),
                "key {key} (item {id}) reached two shards"
            );
        }
        owner
    };
    let first = owners();
    assert_eq!(first.len(), 97);
    assert!(first.values().any(|&shard| shard == 0) && first.values().any(|&shard| shard == 1));
    for (key, shard) in &first {
        assert_eq!(*shard, weir_runtime::owner_of(*key, SHARDS));
    }
    assert_eq!(first, owners(), "a second run placed keys differently");
}

/// Every node instance is told whether the run takes snapshots: only with
/// a data directory (an operator that tracks its changes for incremental
/// snapshots skips that work without one).
#[test]
fn nodes_are_told_whether_the_run_takes_snapshots() {
    let data = tempfile::tempdir().expect("scratch directory");
    for (data_dir, expected) in [(None, false), (Some(data.path()), true)] {
        let told: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(Vec::new()));
        let source_told = told.clone();
        let mut graph = GraphBuilder::new();
        graph.source("items", move |context| {
            source_told.lock().unwrap().push(context.snapshots);
            Items::new(context, 1_000, 97)
        });
        let seen: Seen<(u64, u64)> = Arc::new(Mutex::new(Vec::new()));
        graph.sink("collect", move |context| {
            collect_items(context, seen.clone())
        });
        graph.connect("items", "collect", Partition::<Item>::Forward);
        let mut builder = Runtime::builder().shards(SHARDS);
        if let Some(dir) = data_dir {
            builder = builder.data_dir(dir);
        }
        let runtime = builder.build().expect("runtime starts");
        runtime.run(graph.build().unwrap()).expect("run succeeds");
        assert_eq!(*told.lock().unwrap(), vec![expected; SHARDS]);
    }
}

/// What [`SlowPolls`] saw: a poll, or a position asked for with the
/// source's epoch (`IntakeLog::current_epoch`) at the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen2 {
    Poll,
    Position(u64),
}

/// Ten items, one per poll, each poll slower than several epochs (so
/// several barriers are due at once between two polls).
struct SlowPolls {
    left: u64,
    intake: Option<weir_runtime::IntakeLog>,
    seen: Arc<Mutex<Vec<Seen2>>>,
}

impl weir_runtime::Source for SlowPolls {
    type Output = Item;

    fn poll(&mut self, out: &mut weir_runtime::Emitter<Item>) -> weir_runtime::SourcePoll {
        self.seen.lock().unwrap().push(Seen2::Poll);
        if self.left == 0 {
            return weir_runtime::SourcePoll::Exhausted;
        }
        self.left -= 1;
        out.push(&Item {
            id: self.left,
            key: 0,
        });
        std::thread::sleep(std::time::Duration::from_millis(30));
        weir_runtime::SourcePoll::Ready
    }

    fn position(&self) -> Vec<u8> {
        let epoch = self
            .intake
            .as_ref()
            .map_or(0, weir_runtime::IntakeLog::current_epoch);
        self.seen.lock().unwrap().push(Seen2::Position(epoch));
        self.left.to_le_bytes().to_vec()
    }

    fn attach(&mut self, intake: weir_runtime::IntakeLog) {
        self.intake = Some(intake);
    }
}

/// While a source says where it stands, its epoch is the one whose barrier
/// that position is logged at, also when several barriers go out between
/// two polls (a scaled-out Kafka source hands its offsets to that epoch's
/// transaction by this number).
#[test]
fn a_source_position_is_taken_in_the_epoch_of_its_barrier() {
    let data = tempfile::tempdir().expect("scratch directory");
    let seen: Arc<Mutex<Vec<Seen2>>> = Arc::new(Mutex::new(Vec::new()));
    let source_seen = seen.clone();
    let mut graph = GraphBuilder::new();
    graph.source("slow", move |_| SlowPolls {
        left: 10,
        intake: None,
        seen: source_seen.clone(),
    });
    let collected: Seen<(u64, u64)> = Arc::new(Mutex::new(Vec::new()));
    graph.sink("collect", move |context| {
        collect_items(context, collected.clone())
    });
    graph.connect("slow", "collect", Partition::<Item>::Forward);
    let runtime = Runtime::builder()
        .shards(1)
        .data_dir(data.path())
        .epoch_interval(std::time::Duration::from_millis(2))
        .build()
        .expect("runtime starts");
    runtime.run(graph.build().unwrap()).expect("run succeeds");
    let seen = seen.lock().unwrap().clone();
    let epochs: Vec<u64> = seen
        .iter()
        .filter_map(|event| match event {
            Seen2::Position(epoch) => Some(*epoch),
            Seen2::Poll => None,
        })
        .collect();
    assert!(epochs.len() >= 3, "positions at {epochs:?}");
    let expected: Vec<u64> = (1..=epochs.len() as u64).collect();
    assert_eq!(
        epochs, expected,
        "one position per barrier, each in its epoch"
    );
    assert!(
        seen.windows(2)
            .any(|pair| matches!(pair, [Seen2::Position(_), Seen2::Position(_)])),
        "several barriers went out between two polls at least once: {seen:?}"
    );
}
