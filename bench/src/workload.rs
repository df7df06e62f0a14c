//! The keyed tumbling-window count workload, defined once so that every engine
//! compared in `keycount` runs exactly the same work.
//!
//! Event `i` (for `i` in `0..events`) has key `mix(i) % keys` and event time `i`
//! (one tick per event). Windows are tumbling over event time: event `i` falls in
//! window `i / window_ticks`. Worker (shard) `w` of `workers` generates the
//! indices `w, w + workers, w + 2 * workers, ...`, so every worker moves through
//! event time at the same pace and all workers close windows together.
//!
//! Each engine partitions events by key, counts per (window, key), emits one
//! `(window, key, count)` row per key when the window closes, and a sink folds
//! the rows into [`WindowTotals`]: per window, the number of events and a
//! key-weighted checksum. Both engines must produce identical totals.

use std::collections::BTreeMap;

pub use weir_operators::sources::generator::mix;

/// The key of event `index` among `keys` keys.
#[inline]
pub fn event_key(index: u64, keys: u64) -> u64 {
    mix(index) % keys
}

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

/// Parameters shared by every engine.
#[derive(Debug, Clone, Copy)]
pub struct KeyCountConfig {
    /// Total events over all workers.
    pub events: u64,
    /// Number of distinct keys.
    pub keys: u64,
    /// Window length in event-time ticks (one tick per event).
    pub window_ticks: u64,
    /// Number of workers (weir shards, timely workers).
    pub workers: usize,
}

impl KeyCountConfig {
    /// The workload without the worker count.
    pub fn keycount(&self) -> KeyCount {
        KeyCount {
            events: self.events,
            keys: self.keys,
            window_ticks: self.window_ticks,
        }
    }
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
