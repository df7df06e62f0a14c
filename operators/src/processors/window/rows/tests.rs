//! The row window against a brute-force model, its configuration, its
//! distinct-count error and its state.

use std::cmp::Ordering;

use super::*;
use crate::row::{cmp_slices, cmp_values, Type};

/// Fields: timestamp, user, bytes, lat, path.
fn input() -> Schema {
    Schema::new([
        ("timestamp", Type::Timestamp),
        ("user", Type::String),
        ("bytes", Type::Int),
        ("lat", Type::Float),
        ("path", Type::String),
    ])
}

const AGGREGATES: &str = r#"aggregates = [
  "count", "sum:bytes", "sum:lat", "min:bytes", "max:path", "min:timestamp",
  "avg:lat", "count_distinct:path", { fn = "top_k", field = "path", k = 3 },
  { fn = "max", field = "lat", as = "worst" },
]"#;

fn spec_of(text: &str) -> (RowWindowSpec, Schema) {
    let config: RowWindowConfig = toml::from_str(text).expect("config parses");
    build(&config, &input()).expect("config builds")
}

/// A splitmix64 generator: deterministic test input without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
enum Item {
    Row(Row),
    Watermark(u64),
}

/// About `count` rows over a few users and paths, event times rising by
/// 0..`step` ms and then moved back by up to `disorder` ms (and, for one
/// row in `late_every`, by much more); a watermark every few rows, `hold`
/// ms behind the largest time so far. A few nulls everywhere.
fn items(seed: u64, count: usize, step: u64, disorder: u64, hold: u64) -> Vec<Item> {
    let mut rng = Rng(seed);
    let users = ["ann", "bob", "cy", "dee"];
    let paths = ["/", "/a", "/b", "/c", "/d", "/e"];
    let mut items = Vec::new();
    let mut now: i64 = -3_000; // cross the epoch: negative windows too
    let mut highest = i64::MIN;
    for i in 0..count {
        now += rng.below(step) as i64;
        let mut ts = now - rng.below(disorder + 1) as i64;
        if rng.below(40) == 0 {
            ts -= 5_000; // very late
        }
        highest = highest.max(ts);
        let null = |rng: &mut Rng| rng.below(20) == 0;
        let row = Row {
            values: vec![
                if rng.below(200) == 0 {
                    Value::Null
                } else {
                    Value::Timestamp(ts)
                },
                if null(&mut rng) {
                    Value::Null
                } else {
                    Value::String(users[rng.below(4) as usize].into())
                },
                if null(&mut rng) {
                    Value::Null
                } else {
                    Value::Int(rng.below(1000) as i64 - 100)
                },
                if null(&mut rng) {
                    Value::Null
                } else {
                    Value::Float(rng.below(10_000) as f64 / 7.0)
                },
                if null(&mut rng) {
                    Value::Null
                } else {
                    Value::String(paths[rng.below(6) as usize].into())
                },
            ],
        };
        items.push(Item::Row(row));
        if i % 7 == 6 {
            let watermark = highest.saturating_sub(hold as i64).max(0) as u64;
            items.push(Item::Watermark(watermark));
        }
    }
    items
}

fn archive(row: &Row) -> rkyv::util::AlignedVec {
    rkyv::to_bytes::<rancor::Error>(row).expect("rows serialize")
}

/// What the operator (or the model) produced.
#[derive(Debug, Default)]
struct Output {
    rows: Vec<Row>,
    late: Vec<Row>,
}

/// Feeds `items` to `window`; rows it does not count go to `out.late`.
fn feed(window: &mut RowWindow, items: &[Item], out: &mut Output) {
    for item in items {
        match item {
            Item::Row(row) => {
                let bytes = archive(row);
                let archived = rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap();
                if !window.add(archived) {
                    out.late.push(row.clone());
                }
            }
            Item::Watermark(watermark) => window.advance(*watermark),
        }
    }
}

fn run(spec: &RowWindowSpec, items: &[Item]) -> (Output, RowWindow) {
    let mut window = RowWindow::bare(spec.clone());
    let mut out = Output::default();
    feed(&mut window, items, &mut out);
    window.advance(u64::MAX);
    out.rows = window.closed_rows.take_all();
    (out, window)
}

// ---- the model: windows hold their rows; aggregates are computed at the end.

fn aggregate(spec: &AggregateSpec, rows: &[&Row]) -> Value {
    let values: Vec<&Value> = match spec.field {
        Some((index, _)) => rows
            .iter()
            .map(|row| &row.values[index])
            .filter(|value| **value != Value::Null)
            .collect(),
        None => Vec::new(),
    };
    match spec.function {
        AggregateFn::Count => Value::Int(rows.len() as i64),
        _ if values.is_empty() && spec.function != AggregateFn::CountDistinct => {
            match spec.function {
                AggregateFn::TopK => Value::List(Vec::new()),
                _ => Value::Null,
            }
        }
        AggregateFn::Sum => match spec.output {
            Type::Int => Value::Int(
                values
                    .iter()
                    .map(|value| match value {
                        Value::Int(value) => *value,
                        _ => unreachable!(),
                    })
                    .fold(0i64, i64::wrapping_add),
            ),
            _ => Value::Float(values.iter().map(|value| number(value)).sum()),
        },
        AggregateFn::Avg => Value::Float(
            values.iter().map(|value| number(value)).sum::<f64>() / values.len() as f64,
        ),
        AggregateFn::Min => (*values.iter().min_by(|a, b| cmp_values(a, b)).unwrap()).clone(),
        AggregateFn::Max => (*values.iter().max_by(|a, b| cmp_values(a, b)).unwrap()).clone(),
        AggregateFn::CountDistinct => Value::Int(counts(&values).len() as i64),
        // Exact, at the sketch's rank: estimates are checked against it
        // within their error (`quantile_is_within_its_relative_error`).
        AggregateFn::Quantile => Value::Float(exact_quantile(
            values.iter().map(|value| number(value)).collect(),
            spec.quantile,
        )),
        AggregateFn::TopK => {
            let mut counts = counts(&values);
            counts.sort_by(|(a, x), (b, y)| y.cmp(x).then_with(|| cmp_values(a, b)));
            counts.truncate(spec.k);
            Value::List(
                counts
                    .into_iter()
                    .map(|(value, count)| {
                        Value::Map(vec![
                            crate::row::MapEntry {
                                key: "value".into(),
                                value,
                            },
                            crate::row::MapEntry {
                                key: "count".into(),
                                value: Value::Int(count as i64),
                            },
                        ])
                    })
                    .collect(),
            )
        }
    }
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Int(value) => *value as f64,
        Value::Float(value) => *value,
        _ => unreachable!(),
    }
}

fn counts(values: &[&Value]) -> Vec<(Value, u64)> {
    let mut counts: Vec<(Value, u64)> = Vec::new();
    for value in values {
        match counts
            .iter_mut()
            .find(|(seen, _)| cmp_values(seen, value) == Ordering::Equal)
        {
            Some((_, count)) => *count += 1,
            None => counts.push(((*value).clone(), 1)),
        }
    }
    counts
}

/// Output rows of fired windows `(start, end, rows)`, ordered by window then
/// group.
fn model_rows(spec: &RowWindowSpec, mut fired: Vec<(i64, i64, Vec<Row>)>) -> Vec<Row> {
    fired.sort_by_key(|(start, end, _)| (*start, *end));
    let mut out = Vec::new();
    for (start, end, rows) in fired {
        let mut groups: Vec<(Vec<Value>, Vec<&Row>)> = Vec::new();
        for row in &rows {
            let key: Vec<Value> = spec
                .group_indices
                .iter()
                .map(|&i| row.values[i].clone())
                .collect();
            match groups
                .iter_mut()
                .find(|(seen, _)| cmp_slices(seen, &key).is_eq())
            {
                Some((_, members)) => members.push(row),
                None => groups.push((key, vec![row])),
            }
        }
        groups.sort_by(|a, b| cmp_slices(&a.0, &b.0));
        for (key, members) in groups {
            let mut values = vec![Value::Timestamp(start), Value::Timestamp(end)];
            values.extend(key);
            values.extend(spec.aggregates.iter().map(|a| aggregate(a, &members)));
            out.push(Row { values });
        }
    }
    out
}

fn time_of(spec: &RowWindowSpec, row: &Row) -> Option<i64> {
    match row.values[spec.time_index] {
        Value::Timestamp(ts) => Some(ts),
        _ => None,
    }
}

/// Tumbling and sliding windows, brute force.
fn model_aligned(spec: &RowWindowSpec, items: &[Item]) -> Output {
    let (size, slide) = match spec.kind {
        WindowKind::Tumbling { size } => (size, size),
        WindowKind::Sliding { size, slide } => (size, slide),
        WindowKind::Session { .. } => unreachable!(),
    };
    let lateness = spec.lateness;
    let mut watermark = i64::MIN;
    let mut open: Vec<(i64, i64, Vec<Row>)> = Vec::new();
    let mut out = Output::default();
    let advance = |watermark: i64, open: &mut Vec<(i64, i64, Vec<Row>)>, out: &mut Output| {
        let (fired, kept) = std::mem::take(open)
            .into_iter()
            .partition(|(_, end, _)| end + lateness <= watermark);
        *open = kept;
        out.rows.extend(model_rows(spec, fired));
    };
    for item in items {
        match item {
            Item::Watermark(w) => {
                let w = *w as i64;
                if w > watermark {
                    watermark = w;
                    advance(watermark, &mut open, &mut out);
                }
            }
            Item::Row(row) => {
                let Some(ts) = time_of(spec, row) else {
                    out.late.push(row.clone());
                    continue;
                };
                let mut counted = false;
                let k_max = ts.div_euclid(slide);
                for k in (k_max - size / slide - 2)..=k_max {
                    let (start, end) = (k * slide, k * slide + size);
                    if start <= ts && ts < end && end + lateness > watermark {
                        counted = true;
                        match open.iter_mut().find(|(s, _, _)| *s == start) {
                            Some((_, _, rows)) => rows.push(row.clone()),
                            None => open.push((start, end, vec![row.clone()])),
                        }
                    }
                }
                if !counted {
                    out.late.push(row.clone());
                }
            }
        }
    }
    advance(i64::MAX, &mut open, &mut out);
    out
}

/// Session windows, brute force: per group, a list of sessions with rows.
fn model_sessions(spec: &RowWindowSpec, items: &[Item]) -> Output {
    let WindowKind::Session { gap } = spec.kind else {
        unreachable!()
    };
    let lateness = spec.lateness;
    let mut watermark = i64::MIN;
    // (group, start, end, rows)
    let mut open: Vec<(Vec<Value>, i64, i64, Vec<Row>)> = Vec::new();
    let mut out = Output::default();
    let advance = |watermark: i64, open: &mut Vec<(Vec<Value>, i64, i64, Vec<Row>)>| {
        let (mut fired, kept): (Vec<_>, Vec<_>) = std::mem::take(open)
            .into_iter()
            .partition(|(_, _, end, _)| end + lateness <= watermark);
        *open = kept;
        fired.sort_by(|a, b| {
            (a.1, a.2)
                .cmp(&(b.1, b.2))
                .then_with(|| cmp_slices(&a.0, &b.0))
        });
        // One model_rows call per session keeps the (start, end, group)
        // order: a session's rows all share its group.
        fired
            .into_iter()
            .flat_map(|(_, start, end, rows)| model_rows(spec, vec![(start, end, rows)]))
            .collect::<Vec<Row>>()
    };
    for item in items {
        match item {
            Item::Watermark(w) => {
                let w = *w as i64;
                if w > watermark {
                    watermark = w;
                    out.rows.extend(advance(watermark, &mut open));
                }
            }
            Item::Row(row) => {
                let Some(ts) = time_of(spec, row) else {
                    out.late.push(row.clone());
                    continue;
                };
                let key: Vec<Value> = spec
                    .group_indices
                    .iter()
                    .map(|&i| row.values[i].clone())
                    .collect();
                let (start, end) = (ts, ts + gap);
                let (joined, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut open)
                    .into_iter()
                    .partition(|(g, s, e, _)| {
                        cmp_slices(g, &key).is_eq() && *s <= end && *e >= start
                    });
                open = rest;
                if joined.is_empty() && end + lateness <= watermark {
                    out.late.push(row.clone());
                    continue;
                }
                let mut merged = (key, start, end, vec![row.clone()]);
                for (_, s, e, rows) in joined {
                    merged.1 = merged.1.min(s);
                    merged.2 = merged.2.max(e);
                    merged.3.extend(rows);
                }
                open.push(merged);
            }
        }
    }
    out.rows.extend(advance(i64::MAX, &mut open));
    out
}

/// Equal, floats within a relative 1e-9 (sums depend on the order).
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(a), Value::Float(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (Value::List(a), Value::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| close(a, b))
        }
        (Value::Map(a), Value::Map(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(a, b)| a.key == b.key && close(&a.value, &b.value))
        }
        _ => a == b,
    }
}

fn assert_rows_close(got: &[Row], expected: &[Row], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: row count");
    for (index, (got, expected)) in got.iter().zip(expected).enumerate() {
        assert!(
            got.values.len() == expected.values.len()
                && got
                    .values
                    .iter()
                    .zip(&expected.values)
                    .all(|(a, b)| close(a, b)),
            "{what}: row {index}\n got      {got:?}\n expected {expected:?}"
        );
    }
}

/// A brute-force model of one window kind.
type Model = fn(&RowWindowSpec, &[Item]) -> Output;

fn check(config: &str, items: &[Item], model: Model) {
    let (spec, schema) = spec_of(config);
    let (got, window) = run(&spec, items);
    let expected = model(&spec, items);
    assert!(!expected.rows.is_empty());
    for row in &got.rows {
        assert_eq!(row.values.len(), schema.len());
        for (value, field) in row.values.iter().zip(schema.fields()) {
            assert!(
                value.ty().is_none_or(|ty| ty == field.ty),
                "{value:?} in {field:?}"
            );
        }
    }
    assert_rows_close(&got.rows, &expected.rows, config);
    assert_eq!(got.late, expected.late, "{config}: late rows");
    assert_eq!(
        window.late_events() + window.null_time_events(),
        got.late.len() as u64
    );
}

fn configs() -> Vec<(String, Model)> {
    vec![
        (
            format!("size = \"1s\"\ngroup_by = [\"user\"]\n{AGGREGATES}"),
            model_aligned as Model,
        ),
        (
            format!("size = \"1s\"\nallowed_lateness = \"300ms\"\ngroup_by = [\"user\", \"path\"]\n{AGGREGATES}"),
            model_aligned,
        ),
        (
            format!("kind = \"sliding\"\nsize = \"1s\"\nslide = \"250ms\"\nallowed_lateness = \"100ms\"\ngroup_by = \"user\"\n{AGGREGATES}"),
            model_aligned,
        ),
        (
            // slide does not divide size: events in 2 or 3 windows.
            format!("kind = \"sliding\"\nsize = \"700ms\"\nslide = \"300ms\"\n{AGGREGATES}"),
            model_aligned,
        ),
        (
            format!("kind = \"session\"\ngap = \"150ms\"\ngroup_by = [\"user\"]\n{AGGREGATES}"),
            model_sessions,
        ),
        (
            format!("kind = \"session\"\ngap = \"80ms\"\nallowed_lateness = \"200ms\"\ngroup_by = [\"user\", \"path\"]\n{AGGREGATES}"),
            model_sessions,
        ),
    ]
}

#[test]
fn in_order_input_matches_the_model() {
    for (seed, (config, model)) in configs().into_iter().enumerate() {
        let items = items(seed as u64, 3_000, 40, 0, 0);
        check(&config, &items, model);
    }
}

#[test]
fn out_of_order_input_within_lateness_and_late_rows_match_the_model() {
    for (seed, (config, model)) in configs().into_iter().enumerate() {
        for (disorder, hold) in [(150, 100), (400, 0), (50, 300)] {
            let items = items(100 + seed as u64, 3_000, 30, disorder, hold);
            check(&config, &items, model);
        }
    }
}

#[test]
fn late_and_within_lateness_events_by_hand() {
    let (spec, _) = spec_of(
        "size = \"100ms\"\nallowed_lateness = \"50ms\"\naggregates = [\"count\", \"max:bytes\"]",
    );
    let row = |ts: i64, bytes: i64| {
        Item::Row(Row {
            values: vec![
                Value::Timestamp(ts),
                Value::Null,
                Value::Int(bytes),
                Value::Null,
                Value::Null,
            ],
        })
    };
    let items = vec![
        row(10, 1),
        row(120, 2),
        Item::Watermark(140),
        row(99, 3), // window [0, 100) fires at 150: still counted
        Item::Watermark(150),
        row(98, 4),  // late: [0, 100) fired
        row(100, 5), // [100, 200) is open
    ];
    let (out, window) = run(&spec, &items);
    let rows: Vec<Vec<Value>> = out.rows.into_iter().map(|row| row.values).collect();
    assert_eq!(
        rows,
        vec![
            vec![
                Value::Timestamp(0),
                Value::Timestamp(100),
                Value::Int(2),
                Value::Int(3)
            ],
            vec![
                Value::Timestamp(100),
                Value::Timestamp(200),
                Value::Int(2),
                Value::Int(5)
            ],
        ]
    );
    assert_eq!(out.late.len(), 1);
    assert_eq!(out.late[0].values[2], Value::Int(4));
    assert_eq!(window.late_events(), 1);
}

#[test]
fn sessions_merge_when_an_event_bridges_them() {
    let (spec, _) = spec_of("kind = \"session\"\ngap = \"10ms\"\naggregates = [\"count\"]");
    let at = |ts: i64| {
        Item::Row(Row {
            values: vec![
                Value::Timestamp(ts),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        })
    };
    // [0, 15) and [24, 34); 14 bridges them ([14, 24) touches both).
    let items = vec![at(0), at(5), at(24), at(14), at(100)];
    let (out, _) = run(&spec, &items);
    let windows: Vec<(Value, Value, Value)> = out
        .rows
        .into_iter()
        .map(|row| {
            (
                row.values[0].clone(),
                row.values[1].clone(),
                row.values[2].clone(),
            )
        })
        .collect();
    assert_eq!(
        windows,
        vec![
            (Value::Timestamp(0), Value::Timestamp(34), Value::Int(4)),
            (Value::Timestamp(100), Value::Timestamp(110), Value::Int(1)),
        ]
    );
}

/// Restoring at any point continues with exactly the uninterrupted output.
#[test]
fn restored_operator_continues_exactly() {
    for (seed, (config, _)) in configs().into_iter().enumerate() {
        let (spec, _) = spec_of(&config);
        let items = items(200 + seed as u64, 2_000, 30, 200, 100);
        let (whole, full) = run(&spec, &items);
        for cut in [0, 1, 500, 1_111, items.len()] {
            let mut first = RowWindow::bare(spec.clone());
            let mut out = Output::default();
            feed(&mut first, &items[..cut], &mut out);
            // Half the cuts hand out the queued rows first, half keep them
            // queued in the snapshot.
            if cut % 2 == 1 {
                out.rows = first.closed_rows.take_all();
            }
            let bytes = first.snapshot(1).expect("snapshot");
            let mut restored = RowWindow::bare(spec.clone());
            restored.restore(&bytes).expect("restore");
            let what = format!("{config}: cut at {cut}");
            continues_exactly(restored, &items[cut..], out, (&whole, &full), &what);
        }
    }
}

/// A window operator's watermark, late count, queued rows and open
/// (window, group) pairs with their aggregates' count: the same windows and
/// groups (aggregates are compared by the output: a sketch's JSON does not
/// keep its set's order).
type Shape = (i64, u64, Vec<Row>, Vec<(i64, i64, Vec<Value>, usize)>);

fn shape(window: &RowWindow) -> Shape {
    let state = window.state().unwrap();
    let windows = state
        .windows
        .iter()
        .map(|w| (w.start, w.end, w.group.clone(), w.accs.len()))
        .collect();
    (state.watermark, state.late_events, state.pending, windows)
}

/// Feeds `restored` the rest of the input and checks that with the output
/// so far, `out`, it gives exactly the uninterrupted run's: `whole` and
/// the operator after it.
fn continues_exactly(
    mut restored: RowWindow,
    rest: &[Item],
    mut out: Output,
    (whole, full): (&Output, &RowWindow),
    config: &str,
) {
    feed(&mut restored, rest, &mut out);
    restored.advance(u64::MAX);
    out.rows.extend(restored.closed_rows.take_all());
    assert_eq!(out.rows, whole.rows, "{config}");
    assert_eq!(out.late, whole.late, "{config}");
    assert_eq!(restored.late_events(), full.late_events());
    assert_eq!(restored.null_time_events(), full.null_time_events());
}

/// Incremental snapshots: a base and the changes of several epochs after
/// it restore exactly the live state (queued rows taken or not between
/// them), and the restored operator then continues with exactly the
/// uninterrupted output. Session windows snapshot whole.
#[test]
fn a_base_and_its_changes_restore_the_state_exactly() {
    let mut checked = 0;
    for (seed, (config, _)) in configs().into_iter().enumerate() {
        let (spec, _) = spec_of(&config);
        let items = items(300 + seed as u64, 2_000, 30, 200, 100);
        let (whole, full) = run(&spec, &items);
        let mut live = RowWindow::bare(spec.clone());
        if !live.incremental() {
            assert!(config.contains("session"), "{config}");
            continue;
        }
        let cuts = [300, 700, 701, 1_500];
        let mut out = Output::default();
        feed(&mut live, &items[..cuts[0]], &mut out);
        let base = live.snapshot(64).expect("base");
        let mut changes = Vec::new();
        for (n, pair) in cuts.windows(2).enumerate() {
            feed(&mut live, &items[pair[0]..pair[1]], &mut out);
            if n % 2 == 0 {
                out.rows.extend(live.closed_rows.take_all());
            }
            let mut bytes = Vec::new();
            live.snapshot_changes(65 + n as u64, &mut bytes)
                .expect("changes");
            changes.push(bytes);
        }
        assert!(
            changes[1].len() < base.len(),
            "{config}: one row's changes are not smaller than the base"
        );
        let mut restored = RowWindow::bare(spec.clone());
        restored.restore(&base).expect("restore the base");
        for bytes in &changes {
            restored.restore_changes(bytes).expect("apply changes");
        }
        assert_eq!(shape(&restored), shape(&live), "{config}");
        continues_exactly(restored, &items[cuts[3]..], out, (&whole, &full), &config);
        assert!(RowWindow::bare(spec.clone())
            .restore_changes(&changes[0][..changes[0].len() / 2])
            .is_err());
        checked += 1;
    }
    assert_eq!(checked, 4, "the tumbling and sliding configs");
}

/// Swept bases: from a sweep's first epoch on, the records (each epoch's
/// changes with the sweep's slice of it) applied in order to an empty
/// operator restore exactly the live state once the sweep is complete, and
/// the restored operator continues with exactly the uninterrupted output.
/// Each slice holds part of the state, and the slices together all of it.
#[test]
fn a_complete_sweep_and_the_changes_after_it_restore_the_state_exactly() {
    let mut checked = 0;
    for (seed, (config, _)) in configs().into_iter().enumerate() {
        let (spec, _) = spec_of(&config);
        let items = items(400 + seed as u64, 3_000, 30, 200, 100);
        let (whole, full) = run(&spec, &items);
        let mut live = RowWindow::bare(spec.clone());
        if !live.swept_bases() {
            assert!(config.contains("session"), "{config}");
            continue;
        }
        let mut out = Output::default();
        feed(&mut live, &items[..1_000], &mut out);
        let _first_base = live.snapshot(1).expect("the run's first base");
        // Epochs of 3 items (so most groups change in none of them); a
        // sweep over 4 of them begins at the second, and two more epochs
        // follow it.
        let sweep_epochs = 4;
        let mut records = Vec::new();
        let mut slices = Vec::new();
        let mut complete_at = None;
        for epoch in 0..7u64 {
            let at = 1_000 + epoch as usize * 3;
            feed(&mut live, &items[at..at + 3], &mut out);
            if epoch % 2 == 0 {
                out.rows.extend(live.closed_rows.take_all());
            }
            let mut bytes = Vec::new();
            live.snapshot_changes(64 + epoch, &mut bytes)
                .expect("changes");
            let changes_only = bytes.len();
            if (1..=sweep_epochs).contains(&epoch) {
                let complete = live
                    .sweep_base(epoch == 1, sweep_epochs + 1 - epoch, &mut bytes)
                    .expect("a slice");
                assert_eq!(complete, epoch == sweep_epochs, "{config}: epoch {epoch}");
                if complete {
                    complete_at = Some(epoch);
                }
                slices.push(bytes.len() - changes_only.min(bytes.len()));
            }
            if epoch >= 1 {
                records.push(bytes);
            }
        }
        assert_eq!(complete_at, Some(sweep_epochs), "{config}");
        let mut restored = RowWindow::bare(spec.clone());
        for bytes in &records {
            restored.restore_changes(bytes).expect("apply a record");
        }
        assert_eq!(shape(&restored), shape(&live), "{config}");
        // A record of the sweep alone is not the whole state: with only
        // its first slice, pairs are missing (with groups: without, every
        // pair has the same hash, so one slice holds them all).
        let mut partial = RowWindow::bare(spec.clone());
        partial
            .restore_changes(&records[0])
            .expect("apply a record");
        let open = |window: &RowWindow| window.state().unwrap().windows.len();
        assert!(
            !config.contains("group_by") || open(&partial) < open(&live),
            "{config}: the first slice holds every pair ({} of {})",
            open(&partial),
            open(&live)
        );
        continues_exactly(restored, &items[1_021..], out, (&whole, &full), &config);
        checked += 1;
    }
    assert_eq!(checked, 4, "the tumbling and sliding configs");
}

#[test]
fn state_round_trips_and_garbage_is_refused() {
    let (config, _) = &configs()[2];
    let (spec, _) = spec_of(config);
    let items = items(9, 1_000, 30, 200, 100);
    let mut window = RowWindow::bare(spec.clone());
    feed(&mut window, &items, &mut Output::default());
    let bytes = window.snapshot(1).unwrap();
    let mut restored = RowWindow::bare(spec.clone());
    restored.restore(&bytes).unwrap();
    let (a, b) = (window.state().unwrap(), restored.state().unwrap());
    assert_eq!(a.windows.len(), b.windows.len());
    assert!(!a.windows.is_empty());
    assert_eq!(
        (a.watermark, a.late_events, a.null_time_events, &a.pending),
        (b.watermark, b.late_events, b.null_time_events, &b.pending)
    );
    let mut fresh = RowWindow::bare(spec.clone());
    assert!(fresh.restore(&bytes[..bytes.len() / 2]).is_err());
    assert!(fresh.restore(b"not a window state at all").is_err());
    assert!(fresh.restore(&[]).is_err());
    // A state of another spec is refused.
    let (other, _) = spec_of("size = \"1s\"\naggregates = [\"count\"]");
    assert!(RowWindow::bare(other).restore(&bytes).is_err());
}

/// The value at rank `floor(q * (n - 1))` of `values` sorted: the rank a
/// DDSketch estimates.
fn exact_quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(q * (values.len() as f64 - 1.0)) as usize]
}

/// One row for the quantile tests: `lat` holds `value`.
fn latency_row(value: f64) -> rkyv::util::AlignedVec {
    archive(&Row {
        values: vec![
            Value::Timestamp(1_000),
            Value::String("u".into()),
            Value::Null,
            Value::Float(value),
            Value::Null,
        ],
    })
}

/// 1 M latencies (log-normal-ish, 0.1 ms to minutes, with ties): every
/// `quantile` estimate is within its stated relative error of the exact
/// percentile, in one window, over two windows merged (two shards'
/// sketches), and after a snapshot and restore mid-way.
#[test]
fn quantile_is_within_its_relative_error() {
    const N: usize = 1_000_000;
    let mut rng = Rng(7);
    let values: Vec<f64> = (0..N)
        .map(|_| {
            let exponent = (rng.below(1_000_000) as f64 / 1_000_000.0) * 6.0 - 1.0;
            (10f64.powf(exponent) * 100.0).round() / 100.0
        })
        .collect();
    for error in [0.01, 0.002] {
        let (spec, schema) = spec_of(&format!(
            "size = \"1h\"\naggregates = [{{ fn = \"quantile\", field = \"lat\", q = [0.5, 0.9, 0.99, 0.999], error = {error} }}]"
        ));
        let names: Vec<&str> = schema.fields()[2..]
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["p50_lat", "p90_lat", "p99_lat", "p99_9_lat"]);
        let check = |rows: &[Row], how: &str| {
            for (column, aggregate) in spec.aggregates.iter().enumerate() {
                let exact = exact_quantile(values.clone(), aggregate.quantile);
                let Value::Float(estimate) = rows[0].values[2 + column] else {
                    panic!("{rows:?}")
                };
                let relative = (estimate - exact).abs() / exact;
                assert!(
                    relative <= error,
                    "{how}, error {error}, q {}: estimate {estimate}, exact {exact}, relative {relative}",
                    aggregate.quantile
                );
            }
        };
        // One window.
        let mut window = RowWindow::bare(spec.clone());
        for &value in &values {
            let bytes = latency_row(value);
            assert!(window.add(rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap()));
        }
        window.advance(u64::MAX);
        check(&window.closed_rows.take_all(), "one window");

        // Two shards' sketches, merged; the first snapshotted and restored
        // half-way through its share.
        let accs = |part: &[f64]| -> Vec<Acc> {
            let mut accs: Vec<Acc> = spec.aggregates.iter().map(Acc::new).collect();
            for &value in part {
                let bytes = latency_row(value);
                let row = rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap();
                for (acc, aggregate) in accs.iter_mut().zip(&spec.aggregates) {
                    acc.add(&row.values[aggregate.field.unwrap().0]);
                }
            }
            accs
        };
        let (first, second) = values.split_at(N / 3);
        let (early, late) = first.split_at(first.len() / 2);
        let restored: Vec<Acc> = accs(early)
            .iter()
            .zip(&spec.aggregates)
            .map(|(acc, aggregate)| Acc::load(acc.save().unwrap(), aggregate).unwrap())
            .collect();
        let mut merged: Vec<Acc> = restored
            .into_iter()
            .zip(accs(late))
            .map(|(mut acc, rest)| {
                acc.merge(rest);
                acc
            })
            .collect();
        for (acc, other) in merged.iter_mut().zip(accs(second)) {
            acc.merge(other);
        }
        let row = Row {
            values: [Value::Null, Value::Null]
                .into_iter()
                .chain(
                    merged
                        .into_iter()
                        .zip(&spec.aggregates)
                        .map(|(acc, aggregate)| acc.finish(aggregate)),
                )
                .collect(),
        };
        check(&[row], "merged and restored");
    }
}

/// Quantile options that cannot work are refused, naming what to write.
#[test]
fn quantile_options_are_checked() {
    for (aggregate, expected) in [
        (
            r#"{ fn = "quantile", field = "lat" }"#,
            "quantile needs `q`",
        ),
        ("\"quantile:lat\"", "quantile needs `q`"),
        (
            r#"{ fn = "quantile", field = "lat", q = 1.5 }"#,
            "not between 0 and 1",
        ),
        (
            r#"{ fn = "quantile", field = "path", q = 0.5 }"#,
            "cannot read `path`",
        ),
        (
            r#"{ fn = "quantile", field = "lat", q = 0.5, error = 0.5 }"#,
            "out of range",
        ),
        (
            r#"{ fn = "quantile", field = "lat", q = [0.5, 0.9], as = "x" }"#,
            "`as` names one",
        ),
        (
            r#"{ fn = "sum", field = "lat", q = 0.5 }"#,
            "`q` is for quantile",
        ),
    ] {
        let config: RowWindowConfig =
            toml::from_str(&format!("size = \"1h\"\naggregates = [{aggregate}]")).unwrap();
        let error = build(&config, &input()).unwrap_err();
        assert!(error.message.contains(expected), "{aggregate}: {error}");
    }
    let (_, schema) = spec_of(
        r#"size = "1h"
aggregates = [{ fn = "quantile", field = "bytes", q = 0.95, as = "p95" }]"#,
    );
    assert_eq!(schema.fields()[2].name, "p95");
    assert_eq!(schema.fields()[2].ty, Type::Float);
}

/// The estimate of 100 000 distinct values is within 3 standard errors.
#[test]
fn count_distinct_error_is_within_three_sigma() {
    for error in [0.01, 0.05] {
        let (spec, _) = spec_of(&format!(
            "size = \"1h\"\naggregates = [{{ fn = \"count_distinct\", field = \"user\", error = {error} }}]"
        ));
        let precision = spec.aggregates[0].precision;
        let sigma = 1.04 / f64::from(1u32 << precision).sqrt();
        assert!(sigma <= error);
        let mut window = RowWindow::bare(spec);
        const N: usize = 100_000;
        for i in 0..N {
            let row = Row {
                values: vec![
                    Value::Timestamp(1_000),
                    Value::String(format!("user-{i}")),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
            };
            let bytes = archive(&row);
            assert!(window.add(rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap()));
        }
        window.advance(u64::MAX);
        let rows = window.closed_rows.take_all();
        let Value::Int(estimate) = rows[0].values[2] else {
            panic!("{rows:?}")
        };
        let relative = (estimate as f64 - N as f64).abs() / N as f64;
        assert!(
            relative <= 3.0 * sigma,
            "error {error}: estimate {estimate}, relative error {relative}, sigma {sigma}"
        );
    }
}

#[test]
fn config_forms_and_output_schema() {
    let (spec, schema) = spec_of(
        r#"
        inputs = ["parsed"]
        kind = "sliding"
        size = "5m"
        slide = "1m"
        group_by = "user"
        allowed_lateness = "10s"
        aggregates = ["count", "sum:bytes", "avg:bytes", { fn = "top_k", field = "path", k = 2, as = "top" },
                      "count_distinct:user", "min:lat", "max:timestamp"]
        "#,
    );
    assert_eq!(
        spec.kind,
        WindowKind::Sliding {
            size: 300_000,
            slide: 60_000
        }
    );
    assert_eq!(spec.lateness, 10_000);
    assert_eq!(spec.group_indices, vec![1]);
    assert_eq!(spec.aggregates[3].k, 2);
    assert_eq!(spec.aggregates[4].precision, 14);
    let fields: Vec<(&str, Type)> = schema
        .fields()
        .iter()
        .map(|field| (field.name.as_str(), field.ty))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("window_start", Type::Timestamp),
            ("window_end", Type::Timestamp),
            ("user", Type::String),
            ("count", Type::Int),
            ("sum_bytes", Type::Int),
            ("avg_bytes", Type::Float),
            ("top", Type::List),
            ("count_distinct_user", Type::Int),
            ("min_lat", Type::Float),
            ("max_timestamp", Type::Timestamp),
        ]
    );
    assert_eq!(late_schema(&input()), input());
    // Serializing and reading back gives the same config.
    let config: RowWindowConfig =
        toml::from_str("size = \"250ms\"\naggregates = [\"count\", \"sum:lat\"]").unwrap();
    let text = toml::to_string(&config).unwrap();
    assert_eq!(toml::from_str::<RowWindowConfig>(&text).unwrap(), config);
    assert_eq!(config.time_field, "timestamp");
    assert_eq!(config.kind, WindowKindConfig::Tumbling);
}

#[test]
fn bad_configs_name_their_option() {
    let error = |text: &str| -> String {
        let config: RowWindowConfig = toml::from_str(text).expect("parses");
        build(&config, &input()).expect_err(text).option
    };
    assert_eq!(error("aggregates = [\"count\"]"), "size");
    assert_eq!(
        error("size = \"1ms\"\nslide = \"1ms\"\naggregates = [\"count\"]"),
        "slide"
    );
    assert_eq!(
        error("kind = \"sliding\"\nsize = \"1s\"\nslide = \"2s\"\naggregates = [\"count\"]"),
        "slide"
    );
    assert_eq!(
        error("kind = \"sliding\"\nsize = \"1h\"\nslide = \"1ms\"\naggregates = [\"count\"]"),
        "slide"
    );
    assert_eq!(
        error("kind = \"session\"\nsize = \"1s\"\naggregates = [\"count\"]"),
        "size"
    );
    assert_eq!(error("kind = \"session\"\naggregates = [\"count\"]"), "gap");
    assert_eq!(error("size = \"0s\"\naggregates = [\"count\"]"), "size");
    assert_eq!(error("size = \"1500us\"\naggregates = [\"count\"]"), "size");
    assert_eq!(
        error("size = \"1s\"\ntime_field = \"bytes\"\naggregates = [\"count\"]"),
        "time_field"
    );
    assert_eq!(
        error("size = \"1s\"\ntime_field = \"nope\"\naggregates = [\"count\"]"),
        "time_field"
    );
    assert_eq!(
        error("size = \"1s\"\ngroup_by = \"nope\"\naggregates = [\"count\"]"),
        "group_by"
    );
    assert_eq!(error("size = \"1s\"\naggregates = []"), "aggregates");
    for bad in [
        "\"sum:path\"",
        "\"sum\"",
        "\"avg:user\"",
        "\"count\", \"count\"",
        "{ fn = \"count\", field = \"bytes\" }",
        "{ fn = \"top_k\", field = \"path\", k = 0 }",
        "{ fn = \"sum\", field = \"bytes\", k = 3 }",
        "{ fn = \"count_distinct\", field = \"path\", error = 0.0001 }",
        "{ fn = \"count_distinct\", field = \"path\", error = 2.0 }",
        "{ fn = \"count\", as = \"window_start\" }",
        "\"max:nope\"",
    ] {
        assert_eq!(
            error(&format!("size = \"1s\"\naggregates = [{bad}]")),
            "aggregates",
            "{bad}"
        );
    }
    // Parse errors come from serde, with a useful message.
    for bad in [
        "size = \"5 parsecs\"\naggregates = [\"count\"]",
        "size = \"1s\"\naggregates = [\"median:bytes\"]",
        "size = \"1s\"\naggregates = [{ fn = \"count\", colour = \"red\" }]",
        "size = \"1s\"\ncolour = \"red\"\naggregates = [\"count\"]",
        "size = \"1s\"\nkind = \"hopping\"\naggregates = [\"count\"]",
    ] {
        assert!(toml::from_str::<RowWindowConfig>(bad).is_err(), "{bad}");
    }
}

#[test]
fn group_hash_partitions_by_group_and_is_zero_without() {
    let (spec, _) =
        spec_of("size = \"1s\"\ngroup_by = [\"user\", \"path\"]\naggregates = [\"count\"]");
    let row = Row {
        values: vec![
            Value::Timestamp(1),
            Value::String("ann".into()),
            Value::Int(3),
            Value::Null,
            Value::String("/a".into()),
        ],
    };
    let bytes = archive(&row);
    let archived = rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap();
    assert_eq!(
        group_hash(&spec, archived),
        hash_values([&row.values[1], &row.values[4]])
    );
    assert_eq!(group_hash_row(&spec, &row), group_hash(&spec, archived));
    let (global, _) = spec_of("size = \"1s\"\naggregates = [\"count\"]");
    assert_eq!(group_hash(&global, archived), 0);
    assert_eq!(group_hash_row(&global, &row), 0);
    // The owned hash equals the archived one for every kind of value.
    let values = [
        Value::Null,
        Value::Bool(true),
        Value::Int(-7),
        Value::Float(f64::NAN),
        Value::String("x\u{e9}".into()),
        Value::Timestamp(1_700_000_000_000),
        Value::Ip(crate::row::Ip([9; 16])),
        Value::List(vec![Value::Int(1), Value::List(vec![Value::Null])]),
        Value::Map(vec![crate::row::MapEntry {
            key: "k".into(),
            value: Value::Float(1.5),
        }]),
    ];
    for value in values {
        let row = Row {
            values: vec![
                Value::Timestamp(1),
                value.clone(),
                Value::Null,
                Value::Null,
                value,
            ],
        };
        let bytes = archive(&row);
        let archived = rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap();
        assert_eq!(
            group_hash_row(&spec, &row),
            group_hash(&spec, archived),
            "{row:?}"
        );
    }
}

/// A sketch restored mid-way (sparse, pending codes, or dense) goes on to
/// the same estimate as one never interrupted.
#[test]
fn restored_sketches_give_the_same_estimate() {
    let (spec, _) = spec_of(
        "size = \"1h\"\naggregates = [{ fn = \"count_distinct\", field = \"user\", error = 0.02 }]",
    );
    let items: Vec<Item> = (0..30_000)
        .map(|i| {
            Item::Row(Row {
                values: vec![
                    Value::Timestamp(i % 7),
                    Value::String(format!("u{}", i * 7 % 20_011)),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
            })
        })
        .collect();
    let (whole, _) = run(&spec, &items);
    for cut in [10, 100, 700, 3_000, 12_345, 29_999] {
        let mut first = RowWindow::bare(spec.clone());
        feed(&mut first, &items[..cut], &mut Output::default());
        let mut restored = RowWindow::bare(spec.clone());
        restored.restore(&first.snapshot(1).unwrap()).unwrap();
        feed(&mut restored, &items[cut..], &mut Output::default());
        restored.advance(u64::MAX);
        assert_eq!(restored.closed_rows.take_all(), whole.rows, "cut at {cut}");
    }
}
