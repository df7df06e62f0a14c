//! The keyed-count workload on weir, on the runtime API: a source of keyed
//! events ([`source`]), a tumbling count ([`count`]) and a sink folding the
//! rows ([`pipeline`]), on `config.workers` shards.

pub mod count;
pub mod pipeline;
pub mod source;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rkyv::{Archive, Serialize};
use weir_runtime::Runtime;

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

/// Runs the workload on `config.workers` shards, pinned to cores if `pin`.
pub fn run(config: &KeyCountConfig, pin: bool) -> anyhow::Result<WeirRun> {
    let runtime = Runtime::builder().shards(config.workers).pin(pin).build()?;
    let results = Arc::new(Mutex::new(WindowTotals::default()));
    let report = runtime.run(config.keycount().graph(results.clone())?)?;
    let totals = std::mem::take(&mut *results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(WeirRun {
        elapsed: report.elapsed,
        totals,
        buffers_peak: report.buffers_peak,
    })
}

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
