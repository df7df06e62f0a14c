//! The keycount workload as a weir graph, on the runtime API:
//! `KeyedEvents` on every shard → hash partitioned by key →
//! `TumblingCount` → forward → a `ForEach` sink that folds the rows of each
//! closed window into [`WindowTotals`]: per window, the number of events and
//! a key-weighted checksum, which [`WindowTotals::expected`] computes
//! directly from the generator for comparison.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use weir_operators::sinks::ForEach;
use weir_runtime::{Graph, GraphBuilder, GraphError, Partition};

use super::count::TumblingCount;
use super::source::KeyedEvents;
use super::{ArchivedWindowCount, Event, WindowCount};
use crate::workload::{KeyCount, WindowTotals};

/// How the keycount window snapshots (`bench/src/bin/epochs.rs` compares
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshots {
    /// Incremental, its bases swept over the epochs after each base epoch
    /// (the default).
    Swept,
    /// Incremental, each base written whole at its base epoch.
    WholeBases,
    /// The whole window every epoch.
    Full,
}

impl KeyCount {
    /// The pipeline; every shard's sink merges its totals into `results`
    /// when its input ends.
    pub fn graph(&self, results: Arc<Mutex<WindowTotals>>) -> Result<Graph, GraphError> {
        self.graph_with(results, Snapshots::Swept)
    }

    /// [`graph`](KeyCount::graph), its window snapshotting as `snapshots`
    /// says.
    pub fn graph_with(
        &self,
        results: Arc<Mutex<WindowTotals>>,
        snapshots: Snapshots,
    ) -> Result<Graph, GraphError> {
        let KeyCount {
            events,
            keys,
            window_ticks,
        } = *self;
        let mut graph = GraphBuilder::new();
        graph.source("events", move |context| {
            KeyedEvents::new(context, events, keys, window_ticks)
        });
        graph.processor("count", move |context| {
            let mut count = TumblingCount::new(window_ticks);
            if !context.snapshots {
                // No data directory: its changes are never asked for.
                count = count.untracked();
            }
            match snapshots {
                Snapshots::Swept => count,
                Snapshots::WholeBases => count.with_whole_bases(),
                Snapshots::Full => count.with_full_snapshots(),
            }
        });
        graph.sink("totals", move |_| totals_sink(results.clone()));
        graph.connect(
            "events",
            "count",
            Partition::hash(|event: &Event| event.key),
        );
        graph.connect::<WindowCount>("count", "totals", Partition::Forward);
        graph.build()
    }
}

fn totals_sink(
    results: Arc<Mutex<WindowTotals>>,
) -> ForEach<WindowCount, impl FnMut(&ArchivedWindowCount), impl FnOnce()> {
    let totals = Rc::new(RefCell::new(WindowTotals::default()));
    let each_totals = totals.clone();
    ForEach::new(
        move |row: &ArchivedWindowCount| {
            let (window, key) = (row.window.to_native(), row.key.to_native());
            each_totals
                .borrow_mut()
                .add_row(window, key, row.count.to_native());
        },
        move || {
            if let Ok(mut all) = results.lock() {
                all.merge(&totals.borrow());
            }
        },
    )
}
