//! The dedup processor against a model of its rule (records sorted by
//! event time, then the rule applied in that order), by example, under two
//! arrival orders of the same records, across a snapshot, and its
//! configuration.

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

/// An event: a watermark, a record (user, n, time), or the end of input.
#[derive(Debug, Clone)]
enum Event {
    Watermark(u64),
    Record(String, i64, Option<i64>),
    Finish,
}

/// An emitted record: (user, n, time).
type Emitted = (String, i64, Option<i64>);

fn row(user: &str, n: i64, time: Option<i64>) -> Row {
    Row {
        values: vec![
            Value::String(user.into()),
            Value::Int(n),
            time.map_or(Value::Null, Value::Timestamp),
        ],
    }
}

/// The (user, n, time) of an output row.
fn emitted(row: &Row) -> Emitted {
    match &row.values[..] {
        [Value::String(user), Value::Int(n), time] => {
            let time = match time {
                Value::Timestamp(time) => Some(*time),
                _ => None,
            };
            (user.clone(), *n, time)
        }
        other => panic!("not an input row: {other:?}"),
    }
}

/// Feeds `events` as the runtime would (a watermark's release is drained,
/// `Finish` follows a final watermark); returns what was emitted, in order.
fn run(dedup: &mut Dedup, events: &[Event]) -> Vec<Emitted> {
    let mut output = Vec::new();
    for event in events {
        match event {
            Event::Watermark(watermark) => dedup.advance(*watermark),
            Event::Finish => dedup.release_through(i64::MAX),
            Event::Record(user, n, time) => {
                let bytes = rkyv::to_bytes::<rancor::Error>(&row(user, *n, *time)).unwrap();
                let archived = rkyv::access::<ArchivedRow, rancor::Error>(&bytes).unwrap();
                if dedup.accept(archived) {
                    copy_row(&mut dedup.out.values, archived, 3);
                    output.push(emitted(&dedup.out));
                }
            }
        }
        output.extend(dedup.released.take_all().iter().map(emitted));
    }
    output
}

/// The module docs' rule, by exact identity (user only), written the
/// plain way: records at or after the watermark wait in a list; a
/// watermark sorts those before it by (time, identity hash, row) and
/// applies the rule to each in that order; late records meet the rule at
/// once.
#[derive(Debug)]
struct Model {
    window: i64,
    live: BTreeMap<String, i64>,
    watermark: i64,
    waiting: Vec<(i64, String, i64)>,
    output: Vec<Emitted>,
}

impl Model {
    fn run(window: i64, events: &[Event]) -> Vec<Emitted> {
        let mut model = Model {
            window,
            live: BTreeMap::new(),
            watermark: i64::MIN,
            waiting: Vec::new(),
            output: Vec::new(),
        };
        for event in events {
            model.feed(event);
        }
        model.output
    }

    fn feed(&mut self, event: &Event) {
        match event {
            Event::Watermark(next) => {
                let next = i64::try_from(*next).unwrap_or(i64::MAX);
                if next > self.watermark {
                    self.release(next);
                    self.watermark = next;
                    let (window, watermark) = (self.window, self.watermark);
                    self.live.retain(|_, first| *first + window > watermark);
                }
            }
            Event::Finish => self.release(i64::MAX),
            Event::Record(user, n, None) => self.output.push((user.clone(), *n, None)),
            Event::Record(user, n, Some(time)) if *time < self.watermark => {
                self.apply(user, *n, *time);
            }
            Event::Record(user, n, Some(time)) => self.waiting.push((*time, user.clone(), *n)),
        }
    }

    /// Applies the rule to the waiting records before `end` (all of them
    /// for `i64::MAX`), in release order.
    fn release(&mut self, end: i64) {
        let (mut due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(time, _, _)| *time < end || end == i64::MAX);
        self.waiting = waiting;
        let hash = |user: &str| hash_values(&[Value::String(user.into())]);
        due.sort_by(|a, b| (a.0, hash(&a.1), &a.1, a.2).cmp(&(b.0, hash(&b.1), &b.1, b.2)));
        for (time, user, n) in due {
            self.apply(&user, n, time);
        }
    }

    fn apply(&mut self, user: &str, n: i64, time: i64) {
        let emit = match self.live.get(user) {
            Some(first) => time >= first + self.window,
            None => true,
        };
        if emit {
            if time + self.window > self.watermark {
                self.live.insert(user.into(), time);
            }
            self.output.push((user.into(), n, Some(time)));
        }
    }
}

/// The old rule, first arrival wins: what the arrival-order test must not
/// match (to show its two orders would tell the rules apart).
fn first_arrival(window: i64, events: &[Event]) -> Vec<Emitted> {
    let mut live: BTreeMap<&str, i64> = BTreeMap::new();
    let mut output = Vec::new();
    for event in events {
        if let Event::Record(user, n, Some(time)) = event {
            if live
                .get(&**user)
                .is_none_or(|first| *time >= first + window)
            {
                live.insert(user, *time);
                output.push((user.clone(), *n, Some(*time)));
            }
        }
    }
    output
}

/// A xorshift generator: deterministic test input without a crate.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// A pseudo-random stream over 40 users: times drift up with jitter (some
/// out of order), a watermark every 25 records, some null times, and one
/// record in 30 late (behind the watermark, some by more than a second);
/// then the final watermark and the end of input.
fn events(count: usize, seed: u64) -> Vec<Event> {
    let mut next = rng(seed);
    let mut events = Vec::new();
    for index in 0..count as i64 {
        let mut time = index * 10 + (next() % 200) as i64;
        if index > 100 && next() % 30 == 0 {
            time = index * 10 - 600 - (next() % 2_000) as i64;
        }
        let time = (next() % 50 != 0).then_some(time);
        events.push(Event::Record(format!("u{}", next() % 40), index, time));
        if index % 25 == 24 {
            events.push(Event::Watermark((index * 10 - 300).max(0) as u64));
        }
    }
    events.extend([Event::Watermark(u64::MAX), Event::Finish]);
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
        let (mut held_max, mut live_max) = (0, 0);
        let mut emitted = Vec::new();
        for event in &events {
            emitted.extend(run(&mut dedup, std::slice::from_ref(event)));
            held_max = held_max.max(dedup.held());
            live_max = live_max.max(dedup.live());
        }
        assert_eq!(emitted, Model::run(1_000, &events), "seed {seed}");
        assert!(dedup.dropped() > 1_000, "{}", dedup.dropped());
        assert_eq!(emitted.len() as u64 + dedup.dropped(), 5_000);
        // Records wait for the watermark, and no longer: the watermark
        // trails by 300 to 500 ms, a few hundred records at most.
        assert!((25..500).contains(&held_max), "{held_max}");
        // Entries expire: at most the 40 users are live, and none after
        // the final watermark; nothing is held after the end.
        assert!(live_max <= 40);
        assert_eq!(dedup.live(), 0);
        assert!(dedup.expiry.is_empty());
        assert_eq!(dedup.held(), 0);
    }
}

#[test]
fn rule_by_example() {
    let mut dedup = dedup("10m");
    let minute = 60_000;
    let record = |n, minutes: i64| Event::Record("a".into(), n, Some(minutes * minute));
    let watermark = |minutes: u64| Event::Watermark(minutes * minute as u64);
    // Nothing is decided before the watermark passes.
    let emitted = run(&mut dedup, &[record(1, 5), record(2, 0), record(3, 9)]);
    assert_eq!((emitted, dedup.held()), (vec![], 3));
    let emitted = run(
        &mut dedup,
        &[
            watermark(9),  // releases 2 (the earliest: kept) and 1 (dropped)
            record(4, 9),  // covered by the entry of 2: dropped at once
            record(5, -1), // late, before the first: dropped
            watermark(10), // releases 3: dropped; the entry expires
            record(6, 12),
            record(7, 11),
            watermark(12),  // releases 7: a new first (6 waits)
            watermark(22),  // releases 6: dropped; the entry expires
            record(9, 30),  // arrives first but ties with 8 at 30 min:
            record(8, 30),  // the smaller row (n = 8) is kept
            record(10, 40), // 30 + 10 min: kept, restarts the entry
            record(11, 45), // dropped (the first is now 40)
            watermark(100),
            record(12, 25), // late and its window over: emitted, untracked
            record(13, 25), // so emitted again
            Event::Record("a".into(), 14, None), // no time: emitted at once
            Event::Watermark(u64::MAX),
            Event::Finish,
        ],
    );
    let numbers: Vec<i64> = emitted.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(numbers, [2, 7, 8, 10, 12, 13, 14]);
    assert_eq!(dedup.dropped(), 7);
    assert_eq!((dedup.live(), dedup.held()), (0, 0));
}

/// Records in chunks of 100 ms of event time over 8 users, each chunk
/// closed by a watermark at its end; many ties (same user and time, and
/// identical rows). `Some(seed)` scrambles the arrival order: each record
/// arrives in its own chunk or the one before (never after a watermark
/// past its time), shuffled within it.
fn chunked(seed: Option<u64>) -> Vec<Event> {
    let mut next = rng(7);
    let mut slots: Vec<Vec<(i64, String, i64)>> = vec![Vec::new(); 40];
    let mut scramble = seed.map(rng);
    for chunk in 0..40 {
        for _ in 0..60 {
            let time = chunk * 100 + (next() % 100) as i64;
            let record = (time, format!("u{}", next() % 8), (next() % 3) as i64);
            let early = scramble.as_mut().is_some_and(|next| next() % 3 == 0);
            slots[chunk as usize - usize::from(early && chunk > 0)].push(record);
        }
    }
    let mut events = Vec::new();
    for (chunk, mut slot) in slots.into_iter().enumerate() {
        if let Some(next) = scramble.as_mut() {
            for index in (1..slot.len()).rev() {
                slot.swap(index, (next() % (index as u64 + 1)) as usize);
            }
        }
        let records = slot
            .into_iter()
            .map(|(t, user, n)| Event::Record(user, n, Some(t)));
        events.extend(records);
        events.push(Event::Watermark((chunk as u64 + 1) * 100));
    }
    events.extend([Event::Watermark(u64::MAX), Event::Finish]);
    events
}

#[test]
fn arrival_order_does_not_change_the_output() {
    let ordered = chunked(None);
    let mut first = dedup("250ms");
    let expected = run(&mut first, &ordered);
    assert_eq!(expected, Model::run(250, &ordered));
    assert!(first.dropped() > 1_000 && expected.len() > 100);
    for seed in [1, 2, 3, 4] {
        let scrambled = chunked(Some(seed));
        // The same records, in an order where first arrival would keep
        // others.
        let multiset = |events: &[Event]| {
            let mut records: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
            records.sort_unstable();
            records
        };
        assert_eq!(multiset(&scrambled), multiset(&ordered));
        assert_ne!(first_arrival(250, &scrambled), first_arrival(250, &ordered));
        let mut dedup = dedup("250ms");
        assert_eq!(run(&mut dedup, &scrambled), expected, "seed {seed}");
        assert_eq!(dedup.dropped(), first.dropped());
    }
}

#[test]
fn snapshot_and_restore_continue_identically() {
    let events = events(4_000, 9);
    let mut whole = dedup("700ms");
    let expected = run(&mut whole, &events);
    for cut in [0, 1, 333, 2_000, 3_999, events.len() - 1, events.len()] {
        let mut first = dedup("700ms");
        let mut emitted = run(&mut first, &events[..cut]);
        if (1..events.len() - 2).contains(&cut) {
            assert!(first.held() > 0, "cut at {cut} holds records");
        }
        let bytes = first.snapshot(1).unwrap();
        let mut restored = dedup("700ms");
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.state(), first.state(), "cut at {cut}");
        emitted.extend(run(&mut restored, &events[cut..]));
        assert_eq!(emitted, expected, "cut at {cut}");
        assert_eq!(restored.dropped(), whole.dropped());
        assert_eq!(restored.state(), whole.state());
    }
}

#[test]
fn restore_refuses_bad_state() {
    let events = events(1_000, 4);
    let mut operator = dedup("700ms");
    run(&mut operator, &events[..700]);
    let good = operator.state();
    assert!(good.held.len() > 2 && good.entries.len() > 2);
    let mut fresh = dedup("700ms");
    let bytes = operator.snapshot(2).unwrap();
    assert!(fresh.restore(&bytes[..bytes.len() / 2]).is_err());
    assert!(fresh.restore(b"not dedup state, not at all").is_err());
    assert!(fresh.restore(&[]).is_err());
    let refused = |change: &dyn Fn(&mut DedupState)| {
        let mut state = operator.state();
        change(&mut state);
        let bytes = rkyv::to_bytes::<rancor::Error>(&state).unwrap();
        let error = dedup("700ms").restore(&bytes).unwrap_err();
        error.message().to_string()
    };
    assert!(refused(&|state| state.entries.swap(0, 1)).contains("entries"));
    assert!(refused(&|state| state.held.swap(0, 1)).contains("release order"));
    assert!(refused(&|state| state.held[0].values.truncate(2)).contains("fields"));
    assert!(refused(&|state| state.held[1].values[2] = Value::Null).contains("no time"));
    let behind = |state: &mut DedupState| state.held[0].values[2] = Value::Timestamp(-5);
    assert!(refused(&behind).contains("behind the watermark"));
    let narrow = |state: &mut DedupState| state.released.push(Row::nulls(2));
    assert!(refused(&narrow).contains("released"));
    // The unchanged state restores.
    let bytes = rkyv::to_bytes::<rancor::Error>(&good).unwrap();
    fresh.restore(&bytes).unwrap();
    assert_eq!(fresh.state(), good);
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
            Event::Finish,
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
