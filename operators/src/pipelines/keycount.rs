//! The keyed tumbling-window count: weir's first example pipeline and the
//! workload of the `keycount` benchmark.
//!
//! `KeyedEvents` on every shard → hash partitioned by key →
//! `TumblingCount` → forward → a `ForEach` sink that folds the rows of each
//! closed window into [`WindowTotals`]: per window, the number of events and
//! a key-weighted checksum, which [`WindowTotals::expected`] computes
//! directly from the generator for comparison.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use weir_runtime::{Graph, GraphBuilder, GraphError, Partition};

use crate::processors::window::TumblingCount;
use crate::records::{ArchivedWindowCount, Event, WindowCount};
use crate::sinks::ForEach;
use crate::sources::generator::{event_key, KeyedEvents};

/// The workload's parameters.
#[derive(Debug, Clone, Copy)]
pub struct KeyCount {
    /// Events over all shards.
    pub events: u64,
    /// Distinct keys.
    pub keys: u64,
    /// Window length in event-time ticks (one tick per event).
    pub window_ticks: u64,
}

impl KeyCount {
    /// The pipeline; every shard's sink merges its totals into `results`
    /// when its input ends.
    pub fn graph(&self, results: Arc<Mutex<WindowTotals>>) -> Result<Graph, GraphError> {
        let KeyCount {
            events,
            keys,
            window_ticks,
        } = *self;
        let mut graph = GraphBuilder::new();
        graph.source("events", move |context| {
            KeyedEvents::new(context, events, keys, window_ticks)
        });
        graph.processor("count", move |_| TumblingCount::new(window_ticks));
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

/// Per window: `(events counted, sum over rows of key * count, wrapping)`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WindowTotals {
    /// Window index to `(count, checksum)`.
    pub windows: BTreeMap<u64, (u64, u64)>,
}

impl WindowTotals {
    /// Folds one `(window, key, count)` row in.
    #[inline]
    pub fn add_row(&mut self, window: u64, key: u64, count: u64) {
        let entry = self.windows.entry(window).or_default();
        entry.0 += count;
        entry.1 = entry.1.wrapping_add(key.wrapping_mul(count));
    }

    /// Merges another worker's totals in.
    pub fn merge(&mut self, other: &WindowTotals) {
        for (window, (count, checksum)) in &other.windows {
            let entry = self.windows.entry(*window).or_default();
            entry.0 += count;
            entry.1 = entry.1.wrapping_add(*checksum);
        }
    }

    /// The totals computed directly from the generator, without any engine:
    /// the reference every run is checked against.
    pub fn expected(config: &KeyCount) -> WindowTotals {
        let mut totals = WindowTotals::default();
        for index in 0..config.events {
            totals.add_row(
                index / config.window_ticks,
                event_key(index, config.keys),
                1,
            );
        }
        totals
    }

    /// Total events over all windows.
    pub fn events(&self) -> u64 {
        self.windows.values().map(|(count, _)| count).sum()
    }
}
