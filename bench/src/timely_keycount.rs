//! The keyed tumbling-window count ([`crate::workload`]) on timely dataflow, the
//! baseline weir is compared against.
//!
//! Method: `config.workers` timely worker threads in one process
//! (`timely::Config::process`). Each worker feeds its share of the events
//! (indices `w, w + workers, ...`) into an [`InputHandle`] whose timely timestamp
//! is the window id (`i / window_ticks`), advancing the handle as it crosses a
//! window boundary and stepping the worker after every [`CHUNK`] records so the
//! dataflow runs while input is produced (nothing is buffered beyond a chunk).
//! To bound memory, a worker that has advanced to window `w` steps until
//! window `w - 2` has closed downstream (a [`ProbeHandle`] on the counts)
//! before it sends more.
//!
//! Events are exchanged by `mix(key)` to a counting operator (`unary_frontier`)
//! that keeps one count table per open window (weir's `CountTable`, the same
//! table weir's `TumblingCount` uses, so both engines do the same counting
//! work), holding a capability
//! for that window. When the input frontier passes a window it emits one
//! `(window, key, count)` row per key, drops the capability and keeps the
//! drained map for reuse by a later window. A sink on the same worker
//! (pipeline) folds the rows into the worker's [`WindowTotals`], which the
//! worker returns; the per-worker totals are merged after all workers join.
//!
//! `elapsed` runs from just before `timely::execute` to after every worker has
//! joined, so it includes thread start-up and dataflow construction (small next
//! to the runs measured). Timely does not pin its threads and neither does this.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::count_table::CountTable;
use anyhow::{anyhow, ensure};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Capability, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle, Stream};

use crate::workload::{event_key, mix, KeyCountConfig, WindowTotals};

/// Records a worker sends between two steps of its dataflow.
pub const CHUNK: u64 = 4096;

/// Per-window counts: key to count (the same table as weir's window).
type Counts = CountTable;

/// One run of the workload on timely.
#[derive(Debug)]
pub struct TimelyRun {
    /// Wall time from just before `timely::execute` until all workers joined.
    pub elapsed: Duration,
    /// The merged totals of all workers.
    pub totals: WindowTotals,
}

/// Runs the keyed-count workload on timely dataflow with `config.workers`
/// worker threads and returns the elapsed time and merged totals.
///
/// Fails if the configuration is degenerate (no workers, keys or window
/// length) or if timely cannot start or a worker panics.
pub fn run(config: &KeyCountConfig) -> anyhow::Result<TimelyRun> {
    ensure!(
        config.workers > 0,
        "timely keycount needs at least one worker"
    );
    ensure!(config.keys > 0, "timely keycount needs at least one key");
    ensure!(
        config.window_ticks > 0,
        "timely keycount needs a non-empty window"
    );
    let config = *config;

    let start = Instant::now();
    let guards = timely::execute(timely::Config::process(config.workers), move |worker| {
        worker_main(worker, &config)
    })
    .map_err(|error| anyhow!("timely failed to start: {error}"))?;
    let results = guards.join();
    let elapsed = start.elapsed();

    let mut totals = WindowTotals::default();
    for result in results {
        let worker_totals = result.map_err(|error| anyhow!("timely worker failed: {error}"))?;
        totals.merge(&worker_totals);
    }
    Ok(TimelyRun { elapsed, totals })
}

/// One worker: builds the dataflow, feeds its share of the events, runs the
/// dataflow to completion and returns its sink's totals.
fn worker_main(worker: &mut timely::worker::Worker, config: &KeyCountConfig) -> WindowTotals {
    let totals = Rc::new(RefCell::new(WindowTotals::default()));
    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<(u64, u64)>>>::new();
    let probe = ProbeHandle::new();

    let sink_totals = Rc::clone(&totals);
    worker.dataflow::<u64, _, _>(|scope| {
        count_windows(input.to_stream(scope))
            .probe_with(&probe)
            .sink(Pipeline, "Totals", move |(input, _frontier)| {
                let mut totals = sink_totals.borrow_mut();
                input.for_each(|_capability, rows| {
                    for &(window, key, count) in rows.iter() {
                        totals.add_row(window, key, count);
                    }
                });
            });
    });

    let peers = worker.peers() as u64;
    let mut next = worker.index() as u64;
    while next < config.events {
        let window = next / config.window_ticks;
        if window != *input.time() {
            // Advance first, then keep at most two windows in flight: wait until
            // every window before `window - 1` has closed. (Waiting before
            // advancing deadlocks when workers skip windows.)
            input.advance_to(window);
            if window >= 2 {
                let in_flight_from = window - 1;
                while probe.less_than(&in_flight_from) {
                    worker.step_or_park(None);
                }
            }
        }
        let window_end = window
            .saturating_add(1)
            .saturating_mul(config.window_ticks)
            .min(config.events);
        while next < window_end {
            let chunk_end = next.saturating_add(CHUNK * peers).min(window_end);
            while next < chunk_end {
                input.send((event_key(next, config.keys), next));
                next += peers;
            }
            worker.step();
        }
    }
    input.close();
    while worker.step_or_park(None) {}

    totals.take()
}

/// Exchanges `(key, ts)` events by key and counts them per (window, key), the
/// window being the timely time; emits one `(window, key, count)` row per key
/// once the input frontier has passed the window.
fn count_windows(
    events: Stream<'_, u64, Vec<(u64, u64)>>,
) -> Stream<'_, u64, Vec<(u64, u64, u64)>> {
    let exchange = Exchange::new(|&(key, _): &(u64, u64)| mix(key));
    events.unary_frontier::<CapacityContainerBuilder<_>, _, _, _>(
        exchange,
        "WindowCount",
        |_cap, _info| {
            // Open windows, each with the capability to emit its rows.
            let mut open: Vec<(Capability<u64>, Counts)> = Vec::new();
            // Drained maps of closed windows, kept for their capacity.
            let mut spare: Vec<Counts> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|capability, data| {
                    // Every message carries its window as its (single) time.
                    let Some(&window) = capability.least() else {
                        return;
                    };
                    let slot = match open.iter().position(|(cap, _)| *cap.time() == window) {
                        Some(slot) => slot,
                        None => {
                            let Some(cap) = capability.retain_least(output.output_index()) else {
                                return;
                            };
                            open.push((cap, spare.pop().unwrap_or_default()));
                            open.len() - 1
                        }
                    };
                    let counts = &mut open[slot].1;
                    for batch in data {
                        counts.count_slice(batch, |&(key, _ts)| key);
                    }
                });

                let mut slot = 0;
                while slot < open.len() {
                    if frontier.less_equal(open[slot].0.time()) {
                        slot += 1;
                        continue;
                    }
                    let (cap, mut counts) = open.swap_remove(slot);
                    let window = *cap.time();
                    output
                        .session(&cap)
                        .give_iterator(counts.drain().map(|(key, count)| (window, key, count)));
                    spare.push(counts);
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: KeyCountConfig) {
        let result = run(&config).expect("timely run");
        assert_eq!(result.totals, WindowTotals::expected(&config.keycount()));
        assert_eq!(result.totals.events(), config.events);
    }

    #[test]
    fn matches_expected_two_workers() {
        check(KeyCountConfig {
            events: 200_000,
            keys: 1000,
            window_ticks: 50_000,
            workers: 2,
        });
    }

    #[test]
    fn matches_expected_uneven() {
        // Partial last window, worker count not a power of two, tiny windows.
        check(KeyCountConfig {
            events: 123_457,
            keys: 777,
            window_ticks: 10_000,
            workers: 3,
        });
        check(KeyCountConfig {
            events: 5_000,
            keys: 10,
            window_ticks: 3,
            workers: 1,
        });
        // Windows shorter than the worker count: each worker skips windows.
        check(KeyCountConfig {
            events: 3_000,
            keys: 10,
            window_ticks: 1,
            workers: 3,
        });
        check(KeyCountConfig {
            events: 20_000,
            keys: 100,
            window_ticks: 7,
            workers: 2,
        });
    }

    #[test]
    fn rejects_degenerate_config() {
        let config = KeyCountConfig {
            events: 10,
            keys: 10,
            window_ticks: 10,
            workers: 0,
        };
        assert!(run(&config).is_err());
    }
}
