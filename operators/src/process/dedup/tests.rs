//! The dedup processor against a model of its rule, by example, across a
//! snapshot, and its configuration.

use std::collections::BTreeMap;

use super::*;
use crate::row::Value;
use crate::row::{hash_values, Ip, MapEntry};

fn input() -> Schema {
    Schema::new([
        ("user", Type::String),
        ("n", Type::Int),
        ("timestamp", Type::Timestamp),
    ])
}

fn config(fields: &[&str], window: &str) -> DedupConfig {
    DedupConfig {
        inputs: vec![],
        fields: fields.iter().map(|field| field.to_string()).collect(),
        window: window.into(),
        time_field: default_time_field(),
    }
}

/// An event: a watermark or a record (user, n, time).
#[derive(Debug, Clone)]
enum Event {
    Watermark(u64),
    Record(String, i64, Option<i64>),
}

fn row(user: &str, n: i64, time: Option<i64>) -> Row {
    Row {
        values: vec![
            Value::String(user.into()),
            Value::Int(n),
            time.map_or(Value::Null, Value::Timestamp),
        ],
    }
}

/// Feeds `events`; returns the (user, n, time) of each emitted record.
fn run(dedup: &mut Dedup, events: &[Event]) -> Vec<(String, i64, Option<i64>)> {
    let mut emitted = Vec::new();
    for event in events {
        match event {
            Event::Watermark(watermark) => dedup.expire(*watermark),
            Event::Record(user, n, time) => {
                let bytes = rkyv::to_bytes::<rancor::Error>(&row(user, *n, *time)).unwrap();
                let archived = rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap();
                if dedup.apply(archived) {
                    copy_row(&mut dedup.out.values, archived, 3);
                    assert_eq!(dedup.out, row(user, *n, *time));
                    emitted.push((user.clone(), *n, *time));
                }
            }
        }
    }
    emitted
}

/// The rules of the module docs, by exact identity (user only).
fn model(window: i64, events: &[Event]) -> Vec<(String, i64, Option<i64>)> {
    let mut live: BTreeMap<String, i64> = BTreeMap::new();
    let mut watermark = i64::MIN;
    let mut emitted = Vec::new();
    for event in events {
        match event {
            Event::Watermark(next) => {
                watermark = watermark.max(*next as i64);
                live.retain(|_, first| *first + window > watermark);
            }
            Event::Record(user, n, None) => emitted.push((user.clone(), *n, None)),
            Event::Record(user, n, Some(time)) => {
                let emit = match live.get(user) {
                    Some(first) => *time >= first + window,
                    None => true,
                };
                if emit {
                    if time + window > watermark {
                        live.insert(user.clone(), *time);
                    }
                    emitted.push((user.clone(), *n, Some(*time)));
                }
            }
        }
    }
    emitted
}

/// A pseudo-random stream over 40 users: times drift up with jitter
/// (some out of order), a watermark every 25 records, some null times.
fn events(count: usize, seed: u64) -> Vec<Event> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut events = Vec::new();
    for index in 0..count as i64 {
        let time = index * 10 + (next() % 200) as i64;
        let time = (next() % 50 != 0).then_some(time);
        events.push(Event::Record(format!("u{}", next() % 40), index, time));
        if index % 25 == 24 {
            events.push(Event::Watermark((index * 10 - 300).max(0) as u64));
        }
    }
    events
}

fn dedup(window: &str) -> Dedup {
    let (spec, output) = build(&config(&["user"], window), &input()).unwrap();
    assert_eq!(output, input());
    Dedup::bare(spec)
}

#[test]
fn emits_what_the_model_emits_and_expires_entries() {
    for seed in [1, 2, 3] {
        let events = events(5_000, seed);
        let mut dedup = dedup("1s");
        let emitted = run(&mut dedup, &events);
        assert_eq!(emitted, model(1_000, &events), "seed {seed}");
        assert!(dedup.dropped() > 1_000, "{}", dedup.dropped());
        assert_eq!(emitted.len() as u64 + dedup.dropped(), 5_000);
        // Entries expire: at most the 40 users are live, and none after
        // the final watermark.
        assert!(dedup.live() <= 40);
        dedup.expire(u64::MAX);
        assert_eq!(dedup.live(), 0);
        assert!(dedup.expiry.is_empty());
    }
}

#[test]
fn window_expiry_by_example() {
    let mut dedup = dedup("10m");
    let minute = 60_000;
    let record = |n, minutes: i64| Event::Record("a".into(), n, Some(minutes * minute));
    let emitted = run(
        &mut dedup,
        &[
            record(1, 0),
            record(2, 5), // repeat: dropped
            record(3, 9), // still in the window
            Event::Watermark(9 * minute as u64),
            record(4, -1), // out of order, before the first: dropped
            Event::Watermark(10 * minute as u64), // the entry expires
            record(5, 10), // a new first
            record(6, 11), // dropped
            record(7, 20), // after 10 + 10 min: emitted though still live
            record(8, 29), // dropped (first is now 20)
            Event::Watermark(100 * minute as u64),
            record(9, 25),  // late and expired: emitted, not tracked
            record(10, 25), // so emitted again
        ],
    );
    let numbers: Vec<i64> = emitted.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(numbers, [1, 5, 7, 9, 10]);
    assert_eq!(dedup.dropped(), 5);
    assert_eq!(dedup.live(), 0);
}

#[test]
fn snapshot_and_restore_continue_identically() {
    let events = events(4_000, 9);
    let mut whole = dedup("700ms");
    let expected = run(&mut whole, &events);
    for cut in [0, 1, 333, 2_000, 3_999, events.len()] {
        let mut first = dedup("700ms");
        let mut emitted = run(&mut first, &events[..cut]);
        let bytes = first.snapshot(1).unwrap();
        let mut restored = dedup("700ms");
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.state(), first.state(), "cut at {cut}");
        emitted.extend(run(&mut restored, &events[cut..]));
        assert_eq!(emitted, expected, "cut at {cut}");
        assert_eq!(restored.dropped(), whole.dropped());
        assert_eq!(restored.state(), whole.state());
    }
    let mut fresh = dedup("700ms");
    let bytes = whole.snapshot(2).unwrap();
    assert!(fresh.restore(&bytes[..bytes.len() / 2]).is_err());
    assert!(fresh.restore(b"not dedup state, not at all").is_err());
    assert!(fresh.restore(&[]).is_err());
    // Entries out of order are refused.
    let bad = DedupState {
        entries: vec![(2, 0), (1, 0)],
        watermark: 0,
        dropped: 0,
    };
    let bytes = rkyv::to_bytes::<rancor::Error>(&bad).unwrap();
    assert!(fresh.restore(&bytes).is_err());
}

#[test]
fn identity_spans_fields_and_partition_hash_matches_the_state_hash() {
    let mut dedup = {
        let (spec, _) = build(&config(&["user", "n"], "1h"), &input()).unwrap();
        Dedup::bare(spec)
    };
    let emitted = run(
        &mut dedup,
        &[
            Event::Record("a".into(), 1, Some(0)),
            Event::Record("a".into(), 2, Some(1)),
            Event::Record("a".into(), 1, Some(2)),
            Event::Record("b".into(), 1, Some(3)),
        ],
    );
    assert_eq!(emitted.len(), 3);

    let schema = Schema::new([
        ("a", Type::String),
        ("b", Type::List),
        ("c", Type::Ip),
        ("d", Type::Map),
        ("e", Type::Float),
        ("f", Type::Bool),
        ("timestamp", Type::Timestamp),
    ]);
    let (spec, _) = build(
        &config(&["a", "b", "c", "d", "e", "f", "timestamp"], "1s"),
        &schema,
    )
    .unwrap();
    let row = Row {
        values: vec![
            Value::String("x".into()),
            Value::List(vec![Value::Int(1), Value::Null]),
            Value::Ip(Ip::from("10.0.0.1".parse::<std::net::IpAddr>().unwrap())),
            Value::Map(vec![MapEntry {
                key: "k".into(),
                value: Value::Bool(true),
            }]),
            Value::Float(0.5),
            Value::Bool(false),
            Value::Timestamp(7),
        ],
    };
    let bytes = rkyv::to_bytes::<rancor::Error>(&row).unwrap();
    let archived = rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap();
    let hash = partition_hash(&spec, &row);
    assert_eq!(hash, archived.hash_fields(&spec.fields));
    assert_eq!(hash, hash_values(&row.values));
    // A row narrower than the schema hashes its missing fields as null.
    let (spec, _) = build(&config(&["user", "n"], "1h"), &input()).unwrap();
    let short = Row {
        values: vec![Value::String("x".into())],
    };
    assert_eq!(
        partition_hash(&spec, &short),
        hash_values(&[Value::String("x".into()), Value::Null])
    );
}

#[test]
fn config_errors_name_the_option() {
    let error = |config: DedupConfig| build(&config, &input()).unwrap_err().option;
    assert_eq!(error(config(&[], "1m")), "fields");
    assert_eq!(error(config(&["usr"], "1m")), "fields");
    assert_eq!(error(config(&["user"], "1 fortnight")), "window");
    assert_eq!(error(config(&["user"], "0s")), "window");
    let mut bad_time = config(&["user"], "1m");
    bad_time.time_field = "n".into();
    assert_eq!(error(bad_time.clone()), "time_field");
    bad_time.time_field = "ts".into();
    assert_eq!(error(bad_time), "time_field");
    let parsed: DedupConfig = toml::from_str("fields = [\"user\"]\nwindow = \"10m\"\n").unwrap();
    assert_eq!(parsed.time_field, "timestamp");
    let (spec, _) = build(&parsed, &input()).unwrap();
    assert_eq!(spec.window_ms(), 600_000);
    assert!(toml::from_str::<DedupConfig>("fields = []\nwindow = \"1m\"\nwindw = 1\n").is_err());
}
