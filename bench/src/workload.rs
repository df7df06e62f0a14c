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

pub use weir_operators::pipelines::keycount::{KeyCount, WindowTotals};
pub use weir_operators::sources::generator::{event_key, mix};

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
