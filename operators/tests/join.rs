//! The `join` processor through the runtime, on 1 and 2 shards, against a
//! plain model of each kind's rule: every (left, right) pair with equal
//! keys (no null among them) and, in an interval join, the right time
//! within `[left + lower, left + upper]`; in a window join, in one
//! tumbling, sliding or session window; in a temporal join, the right row
//! of the key current at the left row's time. A left join adds each left
//! row that matched nothing, right fields null. The inputs come in time order with
//! watermarks, as a source's do, so the join trims its state while it
//! runs; late rows (older than the watermark) go to the side outputs.

mod support;

use std::collections::BTreeMap;

use weir_operators::config::{build_graph, parse};
use weir_operators::processors::join::{
    build, Join, JoinConfig, JoinKind, TemporalJoin, WindowJoin,
};
use weir_operators::row::{Row, Schema, Type, Value};
use weir_runtime::{Emitter, GraphBuilder, Parallelism, Source, SourcePoll};

use support::{collect, run, sorted};

/// Emits rows (field 2 is their time) bucket by bucket of `grain` ms, in
/// falling time order within a bucket (out of order, when `grain` > 1),
/// with the bucket's start as the watermark before its rows, then ends;
/// `late` rows are emitted after the watermark has passed them.
struct Timed {
    rows: std::vec::IntoIter<Row>,
    late: Vec<Row>,
    last: i64,
    grain: i64,
}

impl Source for Timed {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        match self.rows.next() {
            Some(row) => {
                let Value::Timestamp(time) = row.values[2] else {
                    panic!("no time")
                };
                let bucket = time.div_euclid(self.grain) * self.grain;
                if bucket > self.last {
                    self.last = bucket;
                    out.watermark(bucket as u64);
                }
                out.push(&row);
                SourcePoll::Ready
            }
            None => {
                for row in self.late.drain(..) {
                    out.push(&row);
                }
                SourcePoll::Exhausted
            }
        }
    }
}

fn timed(graph: &mut GraphBuilder, name: &str, mut rows: Vec<Row>, late: Vec<Row>, grain: i64) {
    rows.sort_by_key(|row| (time(row).div_euclid(grain), std::cmp::Reverse(time(row))));
    graph
        .source(name, move |_| Timed {
            rows: rows.clone().into_iter(),
            late: late.clone(),
            last: i64::MIN,
            grain,
        })
        .parallelism(Parallelism::One);
}

fn schema(side: &str) -> Schema {
    Schema::new([
        (format!("{side}_id"), Type::Int),
        ("key".to_owned(), Type::Int),
        ("ts".to_owned(), Type::Timestamp),
    ])
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % below
    }
}

/// `count` rows `(id, key, ts)`: keys from 0..keys (one row in 20 with a
/// null key), times from 0..span ms.
fn rows(rng: &mut Rng, count: i64, keys: u64, span: u64) -> Vec<Row> {
    (0..count)
        .map(|id| {
            let key = if rng.next(20) == 0 {
                Value::Null
            } else {
                Value::Int(rng.next(keys) as i64)
            };
            Row {
                values: vec![Value::Int(id), key, Value::Timestamp(rng.next(span) as i64)],
            }
        })
        .collect()
}

fn time(row: &Row) -> i64 {
    match row.values[2] {
        Value::Timestamp(time) => time,
        _ => panic!("no time"),
    }
}

/// The rule, by nested loops.
fn model(left: &[Row], right: &[Row], bounds: Option<(i64, i64)>, left_outer: bool) -> Vec<Row> {
    let mut out = Vec::new();
    for l in left {
        let mut matched = false;
        for r in right {
            let keys_equal = l.values[1] != Value::Null && l.values[1] == r.values[1];
            let in_time = bounds.is_none_or(|(lower, upper)| {
                time(l) + lower <= time(r) && time(r) <= time(l) + upper
            });
            if keys_equal && in_time {
                matched = true;
                out.push(Row {
                    values: [l.values.clone(), r.values.clone()].concat(),
                });
            }
        }
        if left_outer && !matched {
            out.push(Row {
                values: [l.values.clone(), vec![Value::Null; 3]].concat(),
            });
        }
    }
    out.sort_by_key(|row| format!("{row:?}"));
    out
}

fn config(extra: &str) -> JoinConfig {
    toml::from_str(&format!(
        "inputs = [\"left\", \"right\"]\nleft_key = [\"key\"]\nright_key = [\"key\"]\ntime_field = \"ts\"\n{extra}"
    ))
    .unwrap()
}

/// Runs the join of `left` and `right` (plus late rows) on `shards`;
/// returns its output and its late rows, left then right.
fn join(
    config: &JoinConfig,
    left: &[Row],
    right: &[Row],
    late: (&[Row], &[Row]),
    shards: usize,
    grain: i64,
) -> (Vec<Row>, Vec<Row>, Vec<Row>) {
    let (spec, _) = build(config, &schema("left"), &schema("right")).unwrap();
    let mut graph = GraphBuilder::new();
    timed(&mut graph, "left", left.to_vec(), late.0.to_vec(), grain);
    timed(&mut graph, "right", right.to_vec(), late.1.to_vec(), grain);
    for (side, name) in ["left", "right"].into_iter().enumerate() {
        let spec = spec.clone();
        let partition = weir_runtime::Partition::hash(move |row: &Row| spec.key_hash(side, row));
        graph.connect_port(name, 0, "join", partition);
    }
    let operator = spec.clone();
    match spec.kind() {
        JoinKind::Window(_) => {
            graph.processor("join", move |_| WindowJoin::new(operator.clone()));
        }
        JoinKind::Temporal => {
            graph.processor("join", move |_| TemporalJoin::new(operator.clone()));
        }
        _ => {
            graph.processor("join", move |_| Join::new(operator.clone()));
        }
    }
    let joined = collect(&mut graph, "out", "join", 0);
    let late_left = collect(&mut graph, "late_left", "join", 1);
    let late_right = collect(&mut graph, "late_right", "join", 2);
    run(graph, shards);
    (sorted(&joined), sorted(&late_left), sorted(&late_right))
}

/// [`join`] with no late rows.
fn join_with(
    config: &JoinConfig,
    left: &[Row],
    right: &[Row],
    shards: usize,
) -> (Vec<Row>, Vec<Row>, Vec<Row>) {
    join(config, left, right, (&[], &[]), shards, 1)
}

#[test]
fn interval_joins_equal_the_nested_loop_rule() {
    for (seed, extra, bounds, left_outer) in [
        (1, "lower = \"-50ms\"\nupper = \"20ms\"", (-50, 20), false),
        (2, "lower = \"0ms\"\nupper = \"0ms\"", (0, 0), false),
        (
            3,
            "lower = \"10ms\"\nupper = \"200ms\"\nmode = \"left\"",
            (10, 200),
            true,
        ),
        (
            4,
            "lower = \"-100ms\"\nupper = \"-10ms\"\nmode = \"left\"",
            (-100, -10),
            true,
        ),
    ] {
        let mut rng = Rng(seed);
        let left = rows(&mut rng, 3_000, 40, 5_000);
        let right = rows(&mut rng, 3_000, 40, 5_000);
        let expected = model(&left, &right, Some(bounds), left_outer);
        assert!(expected.len() > 20, "seed {seed}: {} rows", expected.len());
        // In time order, and out of order within 50 ms (never late).
        for (shards, grain) in [(1, 1), (2, 1), (2, 50)] {
            let (got, late_left, late_right) =
                join(&config(extra), &left, &right, (&[], &[]), shards, grain);
            let case = format!("seed {seed}, {shards} shards, grain {grain}");
            assert_eq!(got.len(), expected.len(), "{case}");
            assert_eq!(got, expected, "{case}");
            assert!(late_left.is_empty() && late_right.is_empty());
        }
    }
}

#[test]
fn a_regular_join_matches_every_pair_whenever_it_arrives() {
    let mut rng = Rng(9);
    let left = rows(&mut rng, 1_500, 100, 10_000);
    let right = rows(&mut rng, 1_500, 100, 10_000);
    let expected = model(&left, &right, None, false);
    for shards in [1, 2] {
        let (got, _, _) = join(&config(""), &left, &right, (&[], &[]), shards, 50);
        assert_eq!(got, expected, "{shards} shards");
    }
}

#[test]
fn rows_older_than_the_watermark_go_to_the_late_outputs() {
    let mut rng = Rng(5);
    let left = rows(&mut rng, 500, 10, 1_000);
    let right = rows(&mut rng, 500, 10, 1_000);
    let late_row = |id: i64| Row {
        values: vec![Value::Int(id), Value::Int(1), Value::Timestamp(3)],
    };
    let (got, late_left, late_right) = join(
        &config("lower = \"-5ms\"\nupper = \"5ms\""),
        &left,
        &right,
        (&[late_row(10_000)], &[late_row(20_000), late_row(20_001)]),
        2,
        1,
    );
    assert_eq!(got, model(&left, &right, Some((-5, 5)), false));
    assert_eq!(late_left, vec![late_row(10_000)]);
    assert_eq!(late_right, vec![late_row(20_000), late_row(20_001)]);
}

/// A window join's rule: per window, every pair of equal keys among the
/// rows in it, then (left joins) each left row alone that had none;
/// `windows` gives the windows `(start, end)` of a time. Rows are
/// `window_start, window_end, left..., right...`.
fn window_model(
    left: &[Row],
    right: &[Row],
    windows: impl Fn(i64) -> Vec<(i64, i64)>,
    left_outer: bool,
) -> Vec<Row> {
    let mut all = BTreeMap::<(i64, i64), (Vec<&Row>, Vec<&Row>)>::new();
    for row in left {
        for window in windows(time(row)) {
            all.entry(window).or_default().0.push(row);
        }
    }
    for row in right {
        for window in windows(time(row)) {
            all.entry(window).or_default().1.push(row);
        }
    }
    let mut out = Vec::new();
    for ((start, end), (lefts, rights)) in all {
        pairs(start, end, &lefts, &rights, left_outer, &mut out);
    }
    out.sort_by_key(|row| format!("{row:?}"));
    out
}

fn pairs(
    start: i64,
    end: i64,
    lefts: &[&Row],
    rights: &[&Row],
    left_outer: bool,
    out: &mut Vec<Row>,
) {
    let window = vec![Value::Timestamp(start), Value::Timestamp(end)];
    for l in lefts {
        let mut matched = false;
        for r in rights {
            if l.values[1] != Value::Null && l.values[1] == r.values[1] {
                matched = true;
                out.push(Row {
                    values: [window.clone(), l.values.clone(), r.values.clone()].concat(),
                });
            }
        }
        if left_outer && !matched {
            out.push(Row {
                values: [window.clone(), l.values.clone(), vec![Value::Null; 3]].concat(),
            });
        }
    }
}

/// Session windows' rule: per key (null keys alone), both sides' rows in
/// time order, a new session wherever a row comes `gap` or more after the
/// previous one; a session ends at its last row plus `gap`.
fn session_model(left: &[Row], right: &[Row], gap: i64, left_outer: bool) -> Vec<Row> {
    let mut by_key = BTreeMap::<String, Vec<(i64, usize, &Row)>>::new();
    for (side, rows) in [(0, left), (1, right)] {
        for (index, row) in rows.iter().enumerate() {
            let key = match &row.values[1] {
                Value::Null => format!("null-{side}-{index}"),
                key => format!("{key:?}"),
            };
            by_key.entry(key).or_default().push((time(row), side, row));
        }
    }
    let mut out = Vec::new();
    for (_, mut rows) in by_key {
        rows.sort_by_key(|(time, _, _)| *time);
        let mut session: Vec<(i64, usize, &Row)> = Vec::new();
        let flush = |session: &mut Vec<(i64, usize, &Row)>, out: &mut Vec<Row>| {
            if session.is_empty() {
                return;
            }
            let start = session[0].0;
            let end = session.last().unwrap().0 + gap;
            let lefts: Vec<&Row> = session.iter().filter(|r| r.1 == 0).map(|r| r.2).collect();
            let rights: Vec<&Row> = session.iter().filter(|r| r.1 == 1).map(|r| r.2).collect();
            pairs(start, end, &lefts, &rights, left_outer, out);
            session.clear();
        };
        for row in rows {
            if session.last().is_some_and(|last| row.0 - last.0 >= gap) {
                flush(&mut session, &mut out);
            }
            session.push(row);
        }
        flush(&mut session, &mut out);
    }
    out.sort_by_key(|row| format!("{row:?}"));
    out
}

#[test]
fn window_joins_equal_the_per_window_rule() {
    let tumbling = |size: i64| {
        move |t: i64| vec![(t.div_euclid(size) * size, t.div_euclid(size) * size + size)]
    };
    let sliding = |size: i64, slide: i64| {
        move |t: i64| {
            let mut windows = Vec::new();
            let mut start = t.div_euclid(slide) * slide;
            while start > t - size {
                windows.push((start, start + size));
                start -= slide;
            }
            windows
        }
    };
    for (seed, extra, left_outer) in [
        (11, "window = \"tumbling\"\nsize = \"100ms\"", false),
        (
            12,
            "window = \"tumbling\"\nsize = \"100ms\"\nmode = \"left\"",
            true,
        ),
        (
            13,
            "window = \"sliding\"\nsize = \"100ms\"\nslide = \"30ms\"",
            false,
        ),
        (
            14,
            "window = \"sliding\"\nsize = \"60ms\"\nslide = \"20ms\"\nmode = \"left\"",
            true,
        ),
        (15, "window = \"session\"\ngap = \"40ms\"", false),
        (
            16,
            "window = \"session\"\ngap = \"25ms\"\nmode = \"left\"",
            true,
        ),
    ] {
        let mut rng = Rng(seed);
        let left = rows(&mut rng, 1_500, 60, 20_000);
        let right = rows(&mut rng, 1_500, 60, 20_000);
        let expected = match seed {
            11 | 12 => window_model(&left, &right, tumbling(100), left_outer),
            13 => window_model(&left, &right, sliding(100, 30), left_outer),
            14 => window_model(&left, &right, sliding(60, 20), left_outer),
            15 => session_model(&left, &right, 40, left_outer),
            _ => session_model(&left, &right, 25, left_outer),
        };
        assert!(expected.len() > 20, "seed {seed}: {} rows", expected.len());
        for shards in [1, 2] {
            let config = config(extra);
            let (got, late_left, late_right) = join_with(&config, &left, &right, shards);
            assert_eq!(got.len(), expected.len(), "seed {seed}, {shards} shards");
            assert_eq!(got, expected, "seed {seed}, {shards} shards");
            assert!(late_left.is_empty() && late_right.is_empty());
        }
    }
}

#[test]
fn a_temporal_join_takes_the_version_current_at_the_left_rows_time() {
    for (seed, left_outer) in [(21, false), (22, true)] {
        let mut rng = Rng(seed);
        let left = rows(&mut rng, 2_000, 50, 10_000);
        let right = rows(&mut rng, 400, 50, 10_000);
        // The rule: of the right rows with the left row's key at or before
        // its time, the latest; of equal times, the last in input order.
        let mut expected = Vec::new();
        for l in &left {
            let version = right
                .iter()
                .enumerate()
                .filter(|(_, r)| l.values[1] != Value::Null && r.values[1] == l.values[1])
                .filter(|(_, r)| time(r) <= time(l))
                .max_by_key(|(index, r)| (time(r), *index));
            match version {
                Some((_, r)) => expected.push(Row {
                    values: [l.values.clone(), r.values.clone()].concat(),
                }),
                None if left_outer => expected.push(Row {
                    values: [l.values.clone(), vec![Value::Null; 3]].concat(),
                }),
                None => {}
            }
        }
        expected.sort_by_key(|row| format!("{row:?}"));
        let mode = if left_outer { "\nmode = \"left\"" } else { "" };
        for shards in [1, 2] {
            let config = config(&format!("kind = \"temporal\"{mode}"));
            let (got, _, _) = join_with(&config, &left, &right, shards);
            assert_eq!(got, expected, "seed {seed}, {shards} shards");
        }
    }
}

#[test]
fn bad_joins_are_refused_naming_the_option() {
    let refused = |text: &str| {
        let error = parse(
            &format!(
                r#"
[sources.a]
type = "nexmark"
count = 10

[processors.j]
type = "join"
{text}

[sinks.out]
type = "blackhole"
inputs = ["j"]
"#
            ),
            "p.toml",
        )
        .and_then(|config| build_graph(&config).map(|_| ()))
        .expect_err(text);
        error.to_string()
    };
    let cases: BTreeMap<&str, &str> = [
        (
            "inputs = [\"a.bid\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]",
            "exactly two inputs",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"nope\"]",
            "right input: no field `nope`",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"itemName\"]",
            "is a string but `auction` is a int",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nmode = \"left\"",
            "a regular join cannot be a left join",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nwindow = \"hopping\"\ntime_field = \"dateTime\"",
            "`hopping` is not a window",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nkind = \"window\"",
            "a window join needs `window`",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nsize = \"1s\"",
            "belong to a window join",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nwindow = \"sliding\"\nsize = \"1s\"\nslide = \"2s\"\ntime_field = \"dateTime\"",
            "`slide` must not be longer than `size`",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nkind = \"temporal\"\nlower = \"0s\"\nupper = \"1s\"",
            "belong to an interval join",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nkind = \"lookup\"",
            "not a join kind",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nlower = \"1s\"",
            "needs both `lower` and `upper`",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nlower = \"1s\"\nupper = \"0s\"\ntime_field = \"dateTime\"",
            "`upper` must not be before `lower`",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nlower = \"0s\"\nupper = \"1s\"",
            "time_field",
        ),
        (
            "inputs = [\"a.bid\", \"a.auction\"]\nleft_key = [\"auction\"]\nright_key = [\"id\"]\nmode = \"full\"",
            "not a join mode",
        ),
    ]
    .into_iter()
    .collect();
    for (text, expected) in cases {
        let message = refused(text);
        assert!(message.contains(expected), "{text}\n=> {message}");
        assert!(message.contains("processors.j"), "{message}");
    }
}

#[test]
fn clashing_right_fields_take_the_prefix() {
    let config = parse(
        r#"
[sources.a]
type = "nexmark"
count = 10

[processors.j]
type = "join"
inputs = ["a.auction", "a.person"]
left_key = ["seller"]
right_key = ["id"]
right_prefix = "p_"

[sinks.out]
type = "blackhole"
inputs = ["j"]
"#,
        "p.toml",
    )
    .unwrap();
    assert!(build_graph(&config).is_ok());
    let (_, output) = build(
        &toml::from_str(
            "inputs = [\"a\", \"b\"]\nleft_key = [\"key\"]\nright_key = [\"key\"]\nright_prefix = \"r.\"",
        )
        .unwrap(),
        &schema("left"),
        &schema("right"),
    )
    .unwrap();
    let names: Vec<&str> = output
        .fields()
        .iter()
        .map(|field| field.name.as_str())
        .collect();
    assert_eq!(names, ["left_id", "key", "ts", "right_id", "r.key", "r.ts"]);
}
