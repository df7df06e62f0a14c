//! The keyed-count workload on weir: `KeyedEvents` on every shard, hash
//! partitioned by key into `TumblingCount`, forwarded to a `ForEach` sink
//! that folds rows into per-shard [`WindowTotals`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_operators::generator::KeyedEvents;
use weir_operators::records::{ArchivedWindowCount, Event, WindowCount};
use weir_operators::sink::ForEach;
use weir_operators::window::TumblingCount;
use weir_runtime::{Graph, GraphBuilder, GraphError, Partition, Runtime};

use crate::workload::{KeyCountConfig, WindowTotals};

/// What one weir run measured.
#[derive(Debug)]
pub struct WeirRun {
    /// Wall time of the run, shards started to all shards returned.
    pub elapsed: Duration,
    /// Merged totals of every shard's sink.
    pub totals: WindowTotals,
    /// Most batch buffers alive at once.
    pub buffers_peak: usize,
}

/// The keyed-count graph; each shard's sink adds its totals to `results`.
pub fn graph(
    config: &KeyCountConfig,
    results: Arc<Mutex<WindowTotals>>,
) -> Result<Graph, GraphError> {
    let (events, keys, window) = (config.events, config.keys, config.window_ticks);
    let mut graph = GraphBuilder::new();
    graph.source("events", move |context| {
        KeyedEvents::new(context, events, keys, window)
    });
    graph.processor("count", move |_| TumblingCount::new(window));
    graph.sink("totals", move |_| {
        let results = results.clone();
        let totals = Rc::new(RefCell::new(WindowTotals::default()));
        let each_totals = totals.clone();
        ForEach::<WindowCount, _, _>::new(
            move |row: &ArchivedWindowCount| {
                let (window, key, count) = (
                    row.window.to_native(),
                    row.key.to_native(),
                    row.count.to_native(),
                );
                each_totals.borrow_mut().add_row(window, key, count);
            },
            move || {
                if let Ok(mut all) = results.lock() {
                    all.merge(&totals.borrow());
                }
            },
        )
    });
    graph.connect(
        "events",
        "count",
        Partition::hash(|event: &Event| event.key),
    );
    graph.connect::<WindowCount>("count", "totals", Partition::Forward);
    graph.build()
}

/// Runs the workload on `config.workers` shards, pinned to cores if `pin`.
pub fn run(config: &KeyCountConfig, pin: bool) -> anyhow::Result<WeirRun> {
    let runtime = Runtime::builder().shards(config.workers).pin(pin).build()?;
    let results = Arc::new(Mutex::new(WindowTotals::default()));
    let report = runtime.run(graph(config, results.clone())?)?;
    let totals = std::mem::take(&mut *results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(WeirRun {
        elapsed: report.elapsed,
        totals,
        buffers_peak: report.buffers_peak,
    })
}
