//! The outcome of a run: [`Summary`], the table it prints as, and the files
//! written from its histogram (`--hgrm`, `--plot`).
//!
//! Everything in a summary counts measured batches only, those due after
//! the warmup; latencies run from each batch's intended send time.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::stats::Shared;
use crate::{plot_svg, write_hgrm, TICKS_PER_HALF_DISTANCE};

/// The outcome of a run. Everything counts measured batches only (those
/// due after the warmup).
#[derive(Debug, Clone)]
pub struct Summary {
    /// The target.
    pub target: String,
    /// Latencies of accepted events, in microseconds, one count per event.
    pub histogram: Histogram<u64>,
    /// Events sent.
    pub sent_events: u64,
    /// Batches (frames or requests) sent.
    pub sent_batches: u64,
    /// Events acknowledged as accepted.
    pub acked_events: u64,
    /// Batches acknowledged as accepted.
    pub acked_batches: u64,
    /// Failed batches by kind: `overloaded`, `rejected`, `duplicate`,
    /// `unavailable`, `backlogged`, `unsent` (due, but the run's time was
    /// over before it could be sent), `timeout`, `io`, `protocol`,
    /// `http_NNN`, ...
    pub errors: BTreeMap<String, u64>,
    /// The measured time: `--duration`, or longer if acks for measured
    /// batches came later.
    pub elapsed: Duration,
    /// Accepted events per second over `elapsed`.
    pub throughput: f64,
    /// Bytes per event asked for.
    pub record_bytes: usize,
}

impl Summary {
    /// The latency at `quantile` (0.99 for p99), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Failed batches, all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// What the connections measured, once they are done: `duration` is the
    /// measured time asked for, the least `elapsed` can be.
    pub(crate) fn collect(
        shared: &Shared,
        target: String,
        duration: Duration,
        record_bytes: usize,
    ) -> Summary {
        let stats = shared.stats();
        let measure_start = shared.start + shared.warmup;
        let elapsed = stats
            .last_ack
            .map(|last| last.saturating_duration_since(measure_start))
            .unwrap_or_default()
            .max(duration);
        Summary {
            target,
            histogram: stats.total.clone(),
            sent_events: stats.sent_events,
            sent_batches: stats.sent_batches,
            acked_events: stats.acked_events,
            acked_batches: stats.acked_batches,
            errors: stats.errors.clone(),
            elapsed,
            throughput: stats.acked_events as f64 / elapsed.as_secs_f64(),
            record_bytes,
        }
    }

    /// Writes the percentile distribution (`.hgrm`, milliseconds) to `hgrm`
    /// and the latency-by-percentile plot to `plot`, those asked for.
    pub(crate) fn write_files(&self, hgrm: Option<&Path>, plot: Option<&Path>) -> Result<()> {
        if let Some(path) = hgrm {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            write_hgrm(&self.histogram, 1000.0, BufWriter::new(file))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if let Some(path) = plot {
            let points = quantile_points(&self.histogram);
            std::fs::write(path, plot_svg(&[(self.target.clone(), points)]))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "target      {}", self.target)?;
        writeln!(f, "latency (ms, from intended send time)")?;
        let ms = |us: u64| us as f64 / 1000.0;
        for (label, quantile) in [
            ("p50", 0.5),
            ("p90", 0.9),
            ("p99", 0.99),
            ("p99.9", 0.999),
            ("p99.99", 0.9999),
        ] {
            writeln!(
                f,
                "  {label:<8} {:>12.3}",
                ms(self.histogram.value_at_quantile(quantile))
            )?;
        }
        writeln!(f, "  {:<8} {:>12.3}", "max", ms(self.histogram.max()))?;
        writeln!(
            f,
            "throughput  {:.1} events/s ({:.2} MB/s) over {:.3} s",
            self.throughput,
            self.throughput * self.record_bytes as f64 / 1e6,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "events      {} acked of {} sent ({} of {} batches)",
            self.acked_events, self.sent_events, self.acked_batches, self.sent_batches
        )?;
        if self.errors.is_empty() {
            writeln!(f, "errors      none")?;
        } else {
            writeln!(f, "errors      {} batches", self.error_count())?;
            for (kind, count) in &self.errors {
                writeln!(f, "  {kind:<14} {count:>10}")?;
            }
        }
        Ok(())
    }
}

/// `(percentile, milliseconds)` points of a microsecond histogram, at the
/// same steps as its `.hgrm` output.
pub fn quantile_points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    histogram
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|step| {
            (
                step.quantile_iterated_to(),
                step.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect()
}
