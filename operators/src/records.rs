//! Record types shared by several operators.

use rkyv::{Archive, Serialize};

/// A keyed event with an event time.
#[derive(Archive, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The grouping key.
    pub key: u64,
    /// Event time, in ticks.
    pub ts: u64,
}

/// The count of one key in one closed window.
#[derive(Archive, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Window index: the window covers `[window * size, (window + 1) * size)`.
    pub window: u64,
    /// The key.
    pub key: u64,
    /// Events of `key` in the window.
    pub count: u64,
}
