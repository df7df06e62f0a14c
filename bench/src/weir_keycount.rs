//! The keyed-count workload on weir: the `keycount` pipeline from the
//! operator library on `config.workers` shards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
