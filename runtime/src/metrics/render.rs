//! The Prometheus text exposition format, version 0.0.4.

use std::fmt::Write;

use super::handles::{HistogramCells, HISTOGRAM_BUCKETS};
use super::{Family, Series};

/// Appends family `name` to `out`: its `# HELP` and `# TYPE` lines, then its
/// series in label order.
pub(super) fn family(out: &mut String, name: &str, family: &Family) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(out, &family.help);
    out.push('\n');
    let _ = writeln!(out, "# TYPE {name} {}", family.series.kind());
    match &family.series {
        Series::Counter(series) => {
            for (labels, cells) in series {
                sample(out, name, "", labels, None, &cells.sum().to_string());
            }
        }
        Series::Gauge(series) => {
            for (labels, cells) in series {
                for (shard, value) in cells.values().enumerate() {
                    let shard = shard.to_string();
                    let extra = Some(("shard", shard.as_str()));
                    sample(out, name, "", labels, extra, &value.to_string());
                }
            }
        }
        Series::SummedGauge(series) => {
            for (labels, cells) in series {
                let sum = cells.values().fold(0i64, i64::wrapping_add);
                sample(out, name, "", labels, None, &sum.to_string());
            }
        }
        Series::FloatGauge(series) => {
            for (labels, cells) in series {
                let sum: f64 = cells.float_values().sum();
                sample(out, name, "", labels, None, &float_text(sum));
            }
        }
        Series::Histogram(series) => {
            for (labels, cells) in series {
                histogram(out, name, labels, cells);
            }
        }
    }
}

/// Appends one histogram series: cumulative `_bucket`s, `_sum` (seconds)
/// and `_count`.
fn histogram(out: &mut String, name: &str, labels: &[(String, String)], cells: &HistogramCells) {
    let snapshot = cells.snapshot();
    let mut cumulative = 0u64;
    for (i, count) in snapshot.buckets.iter().enumerate() {
        cumulative = cumulative.wrapping_add(*count);
        let le = match HISTOGRAM_BUCKETS.get(i) {
            Some(&bound_ns) => ns_as_seconds(bound_ns),
            None => "+Inf".to_owned(),
        };
        let extra = Some(("le", le.as_str()));
        sample(out, name, "_bucket", labels, extra, &cumulative.to_string());
    }
    let sum = ns_as_seconds(snapshot.sum_ns);
    sample(out, name, "_sum", labels, None, &sum);
    sample(out, name, "_count", labels, None, &cumulative.to_string());
}

/// Appends `name{labels,extra} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    extra: Option<(&str, &str)>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    let pairs = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra);
    let mut first = true;
    for (label, label_value) in pairs {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, label_value);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Appends `help` with `\` and line feeds escaped.
fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `value` with `\`, `"` and line feeds escaped.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `ns` nanoseconds as an exact decimal number of seconds: `1.5`, `0.000001`.
fn ns_as_seconds(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    if frac == 0 {
        return secs.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{secs}.{}", digits.trim_end_matches('0'))
}

/// A float as the exposition format writes it: `NaN`, `+Inf`, `-Inf`, or
/// the shortest decimal that reads back the same (`3`, `0.25`, `1e21`).
fn float_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;

    fn escaped(f: fn(&mut String, &str), s: &str) -> String {
        let mut out = String::new();
        f(&mut out, s);
        out
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escaped(escape_label_value, "a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escaped(escape_label_value, "plain é"), "plain é");
    }

    #[test]
    fn escapes_help_but_not_quotes() {
        assert_eq!(escaped(escape_help, "a\\b\"c\nd"), "a\\\\b\"c\\nd");
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(ns_as_seconds(0), "0");
        assert_eq!(ns_as_seconds(1_000), "0.000001");
        assert_eq!(ns_as_seconds(1), "0.000000001");
        assert_eq!(ns_as_seconds(1_500_000_000), "1.5");
        assert_eq!(ns_as_seconds(67_108_864_000), "67.108864");
        assert_eq!(ns_as_seconds(2_000_000_000), "2");
    }

    #[test]
    fn counter_gets_total_suffix_and_escaped_labels() {
        let registry = Registry::new(2);
        let c = registry.counter(
            "weir_test_events_in",
            "Events in.\nSecond line \\ here.",
            &[("component", "a\"b\\c\nd")],
        );
        c.add(0, 3);
        c.add(1, 4);
        let text = registry.render();
        assert_eq!(
            text,
            "# HELP weir_test_events_in_total Events in.\\nSecond line \\\\ here.\n\
             # TYPE weir_test_events_in_total counter\n\
             weir_test_events_in_total{component=\"a\\\"b\\\\c\\nd\"} 7\n"
        );
    }

    #[test]
    fn gauges_are_per_shard() {
        let registry = Registry::new(2);
        let g = registry.gauge("weir_test_depth", "Depth.", &[("edge", "e")]);
        g.set(0, 5);
        g.set(1, -2);
        let unlabelled = registry.gauge("weir_test_free_bytes", "Free.", &[]);
        unlabelled.set(1, 9);
        assert_eq!(
            registry.render(),
            "# HELP weir_test_depth Depth.\n\
             # TYPE weir_test_depth gauge\n\
             weir_test_depth{edge=\"e\",shard=\"0\"} 5\n\
             weir_test_depth{edge=\"e\",shard=\"1\"} -2\n\
             # HELP weir_test_free_bytes Free.\n\
             # TYPE weir_test_free_bytes gauge\n\
             weir_test_free_bytes{shard=\"0\"} 0\n\
             weir_test_free_bytes{shard=\"1\"} 9\n"
        );
    }

    #[test]
    fn families_and_series_are_sorted() {
        let registry = Registry::new(1);
        registry.counter("weir_b", "B.", &[("x", "2")]).inc(0);
        registry.counter("weir_b", "B.", &[("x", "1")]).inc(0);
        registry.counter("weir_a", "A.", &[]).inc(0);
        let text = registry.render();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "weir_a_total 1",
                "weir_b_total{x=\"1\"} 1",
                "weir_b_total{x=\"2\"} 1"
            ]
        );
        assert_eq!(text, registry.render());
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let registry = Registry::new(2);
        let h = registry.histogram("weir_test_latency_seconds", "Latency.", &[("c", "x")]);
        h.observe_ns(0, 500); // le 0.000001
        h.observe_ns(1, 1_000); // le 0.000001
        h.observe_ns(0, 3_000); // le 0.000004
        h.observe_ns(1, 1_500_000_000); // le 2.097152
        h.observe_ns(0, 100_000_000_000); // +Inf
        let text = registry.render();
        assert!(text.starts_with(
            "# HELP weir_test_latency_seconds Latency.\n\
             # TYPE weir_test_latency_seconds histogram\n"
        ));
        let buckets: Vec<(String, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("weir_test_latency_seconds_bucket{c=\"x\",le=\""))
            .map(|rest| {
                let (le, count) = rest.split_once("\"} ").unwrap();
                (le.to_owned(), count.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets.len(), HISTOGRAM_BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        let at = |le: &str| buckets.iter().find(|(b, _)| b == le).unwrap().1;
        assert_eq!(at("0.000001"), 2);
        assert_eq!(at("0.000002"), 2);
        assert_eq!(at("0.000004"), 3);
        assert_eq!(at("1.048576"), 3);
        assert_eq!(at("2.097152"), 4);
        assert_eq!(at("67.108864"), 4);
        assert_eq!(at("+Inf"), 5);
        assert!(text.contains("\nweir_test_latency_seconds_sum{c=\"x\"} 101.5000045\n"));
        assert!(text.ends_with("weir_test_latency_seconds_count{c=\"x\"} 5\n"));
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn floats_are_written_as_the_exposition_format_reads_them() {
        assert_eq!(super::float_text(3.0), "3");
        assert_eq!(super::float_text(0.25), "0.25");
        assert_eq!(super::float_text(f64::NAN), "NaN");
        assert_eq!(super::float_text(f64::INFINITY), "+Inf");
        assert_eq!(super::float_text(f64::NEG_INFINITY), "-Inf");
    }
}
