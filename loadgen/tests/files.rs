//! The output formats: `.hgrm` files, interval logs and SVG plots.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use weir_loadgen::{begin_interval_log, plot_svg, quantile_points, read_hgrm, write_hgrm};

/// A deterministic, skewed latency distribution in microseconds.
fn sample_histogram(seed: u64, count: u64) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    let mut state = seed;
    for _ in 0..count {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
        // Mostly around 1 ms, with a long tail up to ~1 s.
        let value = 500.0 + 1000.0 * unit + 1_000_000.0 * unit.powi(40);
        histogram.record(value as u64).unwrap();
    }
    histogram
}

#[test]
fn hgrm_round_trip() {
    let histogram = sample_histogram(7, 100_000);
    let mut out = Vec::new();
    write_hgrm(&histogram, 1000.0, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("       Value   Percentile   TotalCount 1/(1-Percentile)\n\n"));
    assert!(text.contains("#[Mean    = "));
    assert!(text.contains(&format!(
        "#[Max     = {:12.3}, Total count    = {:12}]",
        histogram.max() as f64 / 1000.0,
        histogram.len()
    )));
    assert!(text.contains("#[Buckets = "));

    let rows = read_hgrm(&text);
    let expected: Vec<_> = histogram.iter_quantiles(5).collect();
    assert_eq!(rows.len(), expected.len());
    assert!(rows.len() > 50, "5 ticks per half distance");
    let mut last_count = 0;
    for (&(value_ms, percentile, count), step) in rows.iter().zip(&expected) {
        // Values are milliseconds with microsecond precision: exact.
        let value = (value_ms * 1000.0).round() as u64;
        assert_eq!(value, step.value_iterated_to());
        assert!((percentile - step.quantile_iterated_to()).abs() <= 5e-7);
        assert!(count >= last_count);
        last_count = count;
        // The row's value is the histogram's value at the row's percentile
        // (as iterated: the file rounds it to 6 decimals, which in a sparse
        // tail can cross samples), within the histogram's precision: one
        // bucket, since the quantile iterator and value_at_quantile may
        // round a quantile on a bucket boundary to neighbouring buckets.
        if percentile < 1.0 {
            let at = histogram.value_at_quantile(step.quantile_iterated_to());
            assert!(
                at.abs_diff(value) <= histogram.equivalent_range(value),
                "p{percentile}: {at} vs {value}"
            );
        }
    }
    assert_eq!(last_count, histogram.len());
    let (max_ms, max_percentile, _) = *rows.last().unwrap();
    assert_eq!(max_percentile, 1.0);
    assert_eq!((max_ms * 1000.0).round() as u64, histogram.max());
    // The usual percentiles read off the rows match value_at_quantile.
    for quantile in [0.5, 0.9, 0.99, 0.999] {
        let row = rows.iter().find(|row| row.1 >= quantile).unwrap();
        let from_rows = (row.0 * 1000.0).round() as u64;
        let direct = histogram.value_at_quantile(quantile);
        let next = rows.iter().position(|r| r == row).unwrap();
        // The first row at or past the quantile bounds it from above and
        // the row before it from below.
        assert!(from_rows >= direct, "p{quantile}");
        if next > 0 {
            assert!(((rows[next - 1].0 * 1000.0).round() as u64) <= direct);
        }
    }
    // Blank and foreign lines are skipped; CSV rows are read.
    assert_eq!(
        read_hgrm("Value,Percentile,TotalCount,1/(1-Percentile)\n1.5,0.5,10,2.00\n\n#[Mean = 1]\n"),
        vec![(1.5, 0.5, 10)]
    );
}

#[test]
fn interval_log_round_trip() {
    let intervals: Vec<Histogram<u64>> = (0..5)
        .map(|i| sample_histogram(i, 1000 * (i + 1)))
        .collect();
    let start_time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let mut log = Vec::new();
    {
        let mut serializer = V2DeflateSerializer::new();
        let mut writer = begin_interval_log(&mut log, &mut serializer, start_time, "test").unwrap();
        for (i, histogram) in intervals.iter().enumerate() {
            writer
                .write_histogram(
                    histogram,
                    Duration::from_secs(i as u64),
                    Duration::from_secs(1),
                    None,
                )
                .unwrap();
        }
    }
    let text = String::from_utf8(log.clone()).unwrap();
    assert!(
        text.starts_with("#test; latencies in microseconds\n"),
        "{text}"
    );
    assert!(text.contains("#[MaxValueDivisor: 1000.000]"));

    let mut deserializer = Deserializer::new();
    let mut read = Vec::new();
    let mut start = None;
    for entry in IntervalLogIterator::new(&log) {
        match entry.unwrap() {
            LogEntry::StartTime(time) => start = Some(time),
            LogEntry::BaseTime(_) => {}
            LogEntry::Interval(interval) => {
                let bytes = base64_decode(interval.encoded_histogram());
                let histogram: Histogram<u64> =
                    deserializer.deserialize(&mut bytes.as_slice()).unwrap();
                read.push((
                    interval.start_timestamp(),
                    interval.duration(),
                    interval.max(),
                    histogram,
                ));
            }
        }
    }
    assert_eq!(
        start.unwrap().as_millis(),
        start_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    assert_eq!(read.len(), intervals.len());
    for (i, ((timestamp, duration, max, histogram), original)) in
        read.iter().zip(&intervals).enumerate()
    {
        assert_eq!(*timestamp, Duration::from_secs(i as u64));
        assert_eq!(*duration, Duration::from_secs(1));
        assert!((max - original.max() as f64 / 1000.0).abs() < 0.001);
        assert_eq!(histogram.len(), original.len());
        for quantile in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                histogram.value_at_quantile(quantile),
                original.value_at_quantile(quantile)
            );
        }
        assert_eq!(histogram, original);
    }
}

/// Standard base64 (what interval logs use), decoded by hand so the test
/// needs no extra crate.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in text.bytes().filter(|&b| b != b'=') {
        let value = ALPHABET.iter().position(|&c| c == byte).expect("base64") as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn svg_has_one_path_per_run_and_a_legend() {
    let runs: Vec<(String, Vec<(f64, f64)>)> = vec![
        (
            "baseline".to_string(),
            quantile_points(&sample_histogram(1, 10_000)),
        ),
        (
            "with <wal>".to_string(),
            quantile_points(&sample_histogram(2, 20_000)),
        ),
        ("from-hgrm".to_string(), {
            let mut out = Vec::new();
            write_hgrm(&sample_histogram(3, 5_000), 1000.0, &mut out).unwrap();
            read_hgrm(std::str::from_utf8(&out).unwrap())
                .into_iter()
                .map(|(value, percentile, _)| (percentile, value))
                .collect()
        }),
    ];
    let svg = plot_svg(&runs);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<path ").count(), 3);
    assert!(svg.contains(">baseline</text>"));
    assert!(svg.contains(">with &lt;wal&gt;</text>"));
    assert!(svg.contains(">from-hgrm</text>"));
    for tick in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
        assert!(svg.contains(&format!(">{tick}</text>")), "{tick}");
    }
    assert!(svg.contains("Latency (ms)"));
    // Every path starts with a move and has as many points as its run.
    for (path, (_, points)) in svg.split("<path d=\"").skip(1).zip(&runs) {
        let d = &path[..path.find('"').unwrap()];
        assert!(d.starts_with('M'));
        assert_eq!(d.split(' ').count(), points.len());
    }
}
