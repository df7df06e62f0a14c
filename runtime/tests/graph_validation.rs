//! Goal: invalid graphs are rejected when built, with a message that names
//! the nodes at fault.
//!
//! Method: build one faulty graph per rule and check the error variant and
//! its message.

mod common;

use common::{Item, Items, Shift};
use weir_runtime::{Batch, GraphBuilder, GraphError, Partition, Sink};

struct Drop<T>(std::marker::PhantomData<T>);

impl<T: weir_runtime::Record> Sink for Drop<T> {
    type Input = T;
    fn write(&mut self, _port: usize, _batch: &Batch<T>) {}
}

fn drop_sink<T>() -> impl Fn(&weir_runtime::ShardContext) -> Drop<T> + Send + Sync {
    |_| Drop(std::marker::PhantomData)
}

fn error_of(graph: GraphBuilder) -> (GraphError, String) {
    let error = graph.build().expect_err("the graph is invalid");
    let message = error.to_string();
    (error, message)
}

fn forward() -> Partition<Item> {
    Partition::Forward
}

#[test]
fn cycle_is_named() {
    let mut graph = GraphBuilder::new();
    graph.source("src", |c| Items::new(c, 1, 1));
    graph.processor("a", |_| Shift(0));
    graph.processor("b", |_| Shift(0));
    graph.sink("out", drop_sink::<Item>());
    graph.connect("src", "a", forward());
    graph.connect("a", "b", forward());
    graph.connect("b", "a", forward());
    graph.connect("b", "out", forward());
    let (error, message) = error_of(graph);
    assert_eq!(error, GraphError::Cycle(vec!["a".into(), "b".into()]));
    assert_eq!(message, "the edges form a cycle: `a` -> `b` -> `a`");
}

#[test]
fn edge_to_a_missing_node_is_named() {
    let mut graph = GraphBuilder::new();
    graph.source("src", |c| Items::new(c, 1, 1));
    graph.connect("src", "nowhere", forward());
    let (_, message) = error_of(graph);
    assert_eq!(
        message,
        "edge `src` -> `nowhere` names `nowhere`, which is not a node"
    );
}

#[test]
fn dangling_nodes_are_named() {
    let mut graph = GraphBuilder::new();
    graph.source("src", |c| Items::new(c, 1, 1));
    graph.sink("out", drop_sink::<Item>());
    graph.sink("lonely", drop_sink::<Item>());
    graph.connect("src", "out", forward());
    assert_eq!(error_of(graph).1, "`lonely` has no input edge");

    let mut graph = GraphBuilder::new();
    graph.source("src", |c| Items::new(c, 1, 1));
    graph.processor("dead_end", |_| Shift(0));
    graph.connect("src", "dead_end", forward());
    assert_eq!(
        error_of(graph).1,
        "`dead_end` has no output edge: its records would go nowhere"
    );
}

#[test]
fn edges_into_sources_and_out_of_sinks_are_rejected() {
    let mut graph = GraphBuilder::new();
    graph.source("src", |c| Items::new(c, 1, 1));
    graph.source("other", |c| Items::new(c, 1, 1));
    graph.connect("src", "other", forward());
    assert_eq!(
        error_of(graph).0,
        GraphError::IntoSource {
            from: "src".into(),
            to: "other".into()
        }
    );

    let mut graph = GraphBuilder::new();
    graph.source("src", |c| Items::new(c, 1, 1));
    graph.sink("out", drop_sink::<Item>());
    graph.sink("after", drop_sink::<Item>());
    graph.connect("src", "out", forward());
    graph.connect("out", "after", forward());
    assert_eq!(
        error_of(graph).0,
        GraphError::OutOfSink {
            from: "out".into(),
            to: "after".into()
        }
    );
}

#[test]
fn duplicate_names_and_type_mismatches_are_named() {
    let mut graph = GraphBuilder::new();
    graph.source("twin", |c| Items::new(c, 1, 1));
    graph.sink("twin", drop_sink::<Item>());
    assert_eq!(error_of(graph).1, "two nodes are named `twin`");

    let mut graph = GraphBuilder::new();
    graph.source("src", |c| Items::new(c, 1, 1));
    graph.sink("numbers", drop_sink::<u64>());
    graph.connect("src", "numbers", forward());
    let (error, message) = error_of(graph);
    assert!(
        matches!(error, GraphError::TypeMismatch { .. }),
        "{error:?}"
    );
    assert!(
        message.starts_with("edge `src` -> `numbers` carries `"),
        "{message}"
    );
    assert!(message.contains("u64"), "{message}");
}

#[test]
fn empty_graph_is_rejected() {
    assert_eq!(error_of(GraphBuilder::new()).0, GraphError::Empty);
}
