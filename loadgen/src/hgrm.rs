//! HdrHistogram's `.hgrm` percentile distribution text format.
//!
//! The layout is the one HdrHistogram's `outputPercentileDistribution`
//! prints (as in wrk2 and HdrHistogram_c's `hdr_percentiles_print`), which
//! the HdrHistogram plotter and most tooling read:
//!
//! ```text
//!        Value   Percentile   TotalCount 1/(1-Percentile)
//!
//!        0.921     0.000000            1         1.00
//!        ...
//!       16.383     1.000000        99993          inf
//! #[Mean    =        2.040, StdDeviation   =        1.418]
//! #[Max     =       16.368, Total count    =        99993]
//! #[Buckets =           27, SubBuckets     =         2048]
//! ```

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Percentile ticks per half distance, as wrk2 and HdrHistogram default to.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Writes `histogram`'s percentile distribution in `.hgrm` format. Values
/// are divided by `scale` (1000 turns microseconds into milliseconds) and
/// printed with as many decimals as the histogram has significant digits.
pub fn write_hgrm<W: Write>(histogram: &Histogram<u64>, scale: f64, mut out: W) -> io::Result<()> {
    let digits = usize::from(histogram.sigfig());
    writeln!(
        out,
        "{:>12} {:>12} {:>12} {:>12}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !histogram.is_empty() {
        let mut total = 0u64;
        for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += step.count_since_last_iteration();
            let quantile = step.quantile_iterated_to();
            let value = step.value_iterated_to() as f64 / scale;
            let inverse = 1.0 / (1.0 - quantile);
            if inverse.is_finite() {
                writeln!(
                    out,
                    "{value:12.digits$} {quantile:12.6} {total:12} {inverse:12.2}"
                )?;
            } else {
                writeln!(
                    out,
                    "{value:12.digits$} {quantile:12.6} {total:12} {:>12}",
                    "inf"
                )?;
            }
        }
    }
    let (mean, stdev, max) = if histogram.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            histogram.mean() / scale,
            histogram.stdev() / scale,
            histogram.max() as f64 / scale,
        )
    };
    writeln!(
        out,
        "#[Mean    = {mean:12.digits$}, StdDeviation   = {stdev:12.digits$}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.digits$}, Total count    = {:12}]",
        histogram.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_buckets(histogram.sigfig())
    )?;
    out.flush()
}

/// HdrHistogram's sub-bucket count for a number of significant digits.
fn sub_buckets(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

/// Reads the rows of a `.hgrm` percentile distribution: `(value,
/// percentile, total count)`, the percentile as a fraction (0.99, not 99).
/// Headers, footers (`#[...]`), blank lines and anything else that is not a
/// row are skipped. CSV output (`Value,Percentile,...`) is read as well.
pub fn read_hgrm(text: &str) -> Vec<(f64, f64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|field| !field.is_empty());
            let value: f64 = fields.next()?.parse().ok()?;
            let percentile: f64 = fields.next()?.parse().ok()?;
            let count: u64 = fields.next()?.parse().ok()?;
            (value.is_finite() && (0.0..=1.0).contains(&percentile))
                .then_some((value, percentile, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_hdrhistogram() {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for value in 1..=1000u64 {
            histogram.record(value * 10).unwrap();
        }
        let mut out = Vec::new();
        write_hgrm(&histogram, 1000.0, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value   Percentile   TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       0.010     0.000000            1         1.00"
        );
        let last_row = lines[lines.len() - 4];
        assert_eq!(
            last_row,
            "      10.007     1.000000         1000          inf"
        );
        assert!(lines[lines.len() - 3].starts_with("#[Mean    =        5.00"));
        assert_eq!(
            lines[lines.len() - 2],
            "#[Max     =       10.007, Total count    =         1000]"
        );
        assert!(lines[lines.len() - 1].ends_with("SubBuckets     =         2048]"));
    }
}
