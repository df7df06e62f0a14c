//! Goal: the keycount pipeline counts every event exactly once whether the
//! run takes snapshots or not: without a data directory its window keeps
//! no changes (untracked tables), with one it logs them every epoch in 8-
//! or 16-byte pairs; windows close and their tables are reused in both.
//!
//! Method: run the pipeline through the runtime as a user embeds it (2
//! shards, 20 windows over 50 000 keys), once without a data directory and
//! once with one and 5 ms epochs, and compare each run's per-window totals
//! (events and a key-weighted checksum of every emitted row) with the ones
//! computed directly from the generator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_bench::workload::{KeyCount, WindowTotals};
use weir_runtime::Runtime;

fn run(keycount: &KeyCount, data_dir: Option<&std::path::Path>) -> (WindowTotals, u64) {
    let mut builder = Runtime::builder().shards(2);
    if let Some(dir) = data_dir {
        builder = builder
            .data_dir(dir)
            .epoch_interval(Duration::from_millis(5));
    }
    let runtime = builder.build().expect("runtime starts");
    let results = Arc::new(Mutex::new(WindowTotals::default()));
    let graph = keycount.graph(results.clone()).expect("valid graph");
    let report = runtime.run(graph).expect("run succeeds");
    let totals = std::mem::take(&mut *results.lock().expect("totals"));
    (totals, report.last_committed_epoch)
}

#[test]
fn keycount_is_exact_with_and_without_snapshots() {
    let keycount = KeyCount {
        events: 4_000_000,
        keys: 50_000,
        window_ticks: 200_000,
    };
    let expected = WindowTotals::expected(&keycount);
    let (without, _) = run(&keycount, None);
    assert!(without == expected, "without a data directory: not exact");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
    let (with, epochs) = run(&keycount, Some(dir.path()));
    assert!(with == expected, "with a data directory: not exact");
    assert!(epochs >= 2, "only {epochs} epochs committed");
}
