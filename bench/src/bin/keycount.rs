//! weir vs timely dataflow on the keyed tumbling-window count, side by side
//! in one process.
//!
//! Each run executes both engines on the same workload (`bench/src/workload.rs`)
//! one after the other, alternating which goes first, and checks that both
//! produced the same per-window totals as a direct computation. It prints
//! each run's rates and the median rate and median ratio over all runs.
//!
//! ```text
//! cargo run --release -p weir-bench --bin keycount -- --events 100000000 --keys 1000000 --shards 2
//! ```

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use weir_bench::workload::{KeyCountConfig, WindowTotals};
use weir_bench::{timely_keycount, weir_keycount};

#[derive(Parser, Debug)]
#[command(about = "weir vs timely dataflow: keyed tumbling-window count")]
struct Args {
    /// Events over all shards.
    #[arg(long, default_value_t = 100_000_000)]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Window length in event-time ticks (one tick per event).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Shards (weir) and workers (timely).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Runs of each engine; medians are over these.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Skip the direct computation of the expected totals (the two engines
    /// are still compared with each other).
    #[arg(long)]
    no_reference: bool,
    /// Do not pin weir's shards to cores.
    #[arg(long)]
    no_pin: bool,
    /// Run only weir (for profiling); prints its rate, no comparison.
    #[arg(long)]
    weir_only: bool,
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn check(engine: &str, totals: &WindowTotals, expected: &WindowTotals) -> Result<()> {
    if totals != expected {
        bail!(
            "{engine} produced different per-window totals: {} events in {} windows, expected {} in {}",
            totals.events(),
            totals.windows.len(),
            expected.events(),
            expected.windows.len()
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config = KeyCountConfig {
        events: args.events,
        keys: args.keys,
        window_ticks: args.window,
        workers: args.shards,
    };
    let pin = !args.no_pin;
    println!(
        "keycount: {} events, {} keys, window {} ticks, {} shards/workers, {} runs",
        args.events, args.keys, args.window, args.shards, args.runs
    );
    if args.weir_only {
        for run in 0..args.runs.max(1) {
            let weir = weir_keycount::run(&config, pin)?;
            let rate = rate(args.events, weir.elapsed);
            println!("run {run}: weir {:.2} M events/s", rate / 1e6);
        }
        return Ok(());
    }
    let mut reference = (!args.no_reference).then(|| WindowTotals::expected(&config.keycount()));
    let (mut weir_rates, mut timely_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs.max(1) {
        let (weir, timely) = if run % 2 == 0 {
            let weir = weir_keycount::run(&config, pin)?;
            (weir, timely_keycount::run(&config)?)
        } else {
            let timely = timely_keycount::run(&config)?;
            (weir_keycount::run(&config, pin)?, timely)
        };
        let expected = reference.get_or_insert_with(|| timely.totals.clone());
        check("weir", &weir.totals, expected)?;
        check("timely", &timely.totals, expected)?;
        let (weir_rate, timely_rate) = (
            rate(args.events, weir.elapsed),
            rate(args.events, timely.elapsed),
        );
        println!(
            "run {run}: weir {:.2} M events/s, timely {:.2} M events/s, ratio {:.3} (weir buffers peak {})",
            weir_rate / 1e6,
            timely_rate / 1e6,
            weir_rate / timely_rate,
            weir.buffers_peak
        );
        weir_rates.push(weir_rate);
        timely_rates.push(timely_rate);
        ratios.push(weir_rate / timely_rate);
    }
    println!(
        "median: weir {:.2} M events/s, timely {:.2} M events/s, weir/timely {:.3}; totals match ({} windows)",
        median(&mut weir_rates) / 1e6,
        median(&mut timely_rates) / 1e6,
        median(&mut ratios),
        reference.map(|totals| totals.windows.len()).unwrap_or(0)
    );
    Ok(())
}
