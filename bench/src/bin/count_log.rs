//! What logging a period's changes costs the count table per event: counts
//! `--events` events over `--keys` keys (the keycount workload's keys) in
//! batches of 1024, once without periods (the table stops logging early)
//! and once taking the log every `--period` events (a sparse period keeps
//! its log, as `epochs` does at 10 M keys and more), each `--runs` times,
//! alternating; prints ns per event of each.
//!
//! ```text
//! cargo run --release -p weir-bench --bin count_log -- --keys 5000000
//! ```

use std::time::Instant;

use clap::Parser;
use weir_bench::count_table::CountTable;
use weir_bench::workload::event_key;

#[derive(Parser)]
struct Args {
    /// Keys in the table.
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Events counted in each measured run.
    #[arg(long, default_value_t = 200_000_000)]
    events: u64,
    /// Events per period (between two takes of the log).
    #[arg(long, default_value_t = 2_700_000)]
    period: usize,
    /// Measured runs of each mode.
    #[arg(long, default_value_t = 2)]
    runs: usize,
}

/// The header room a changes record keeps before the pairs (as `count`).
const PREFIX: usize = 44;

fn main() {
    let args = Args::parse();
    let events: Vec<u64> = (0..args.events).map(|i| event_key(i, args.keys)).collect();
    for run in 0..args.runs * 2 {
        let periods = run % 2 == 1;
        let mut table = CountTable::new();
        table.set_log_prefix(PREFIX);
        // Every key in the table first (as a restore does: no change
        // marked, and the table still logs), outside the measurement.
        let keys: Vec<(u64, u64)> = (0..args.keys).map(|key| (key, 1)).collect();
        table.set_slice(&keys);
        let mut spare = Vec::new();
        let started = Instant::now();
        let mut since = 0;
        for batch in events.chunks(1024) {
            table.count_slice(batch, |&key| key);
            since += batch.len();
            if periods && since >= args.period {
                since = 0;
                spare = match table.take_log(std::mem::take(&mut spare)) {
                    Ok(log) => log,
                    Err(spare) => {
                        table.drain_changes(|_, _| {});
                        spare
                    }
                };
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / events.len() as f64;
        println!(
            "{}: {ns:.2} ns/event ({} keys)",
            if periods {
                "periods of logged changes"
            } else {
                "no periods"
            },
            table.len()
        );
    }
}
