//! Goal: the configured generator is a deterministic function of its
//! configuration and position: instances partition the ids, a restored
//! instance replays exactly the suffix of an uninterrupted run, and its
//! watermarks never overtake its records.
//!
//! Method: drive `KeyedGenerator::fill` directly (no runtime needed), record
//! what it would emit (watermarks and records, in order) and compare runs
//! with different poll sizes, instances and restore points.

use std::time::{Duration, Instant};

use weir_operators::config::GeneratorConfig;
use weir_operators::row::{Row, Value};
use weir_operators::sources::generator::{KeyedGenerator, WATERMARK_INTERVAL_MS};

/// An emitted row's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    id: u64,
    key: String,
    ts_ms: u64,
}

/// Reads an emitted row of the event schema (`id, key, timestamp, body`),
/// checking that `body` is null.
fn event(row: &Row) -> Event {
    match &row.values[..] {
        [Value::Int(id), Value::String(key), Value::Timestamp(ts_ms), Value::Null] => Event {
            id: *id as u64,
            key: key.clone(),
            ts_ms: *ts_ms as u64,
        },
        other => panic!("not an event row: {other:?}"),
    }
}

/// What an instance emits, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Watermark(u64),
    Record(Event),
}

fn config(count: Option<u64>) -> GeneratorConfig {
    GeneratorConfig {
        count,
        keys: vec!["alice".into(), "bob".into(), "carol".into(), "dave".into()],
        // 3 ms of event time per 10 ids: watermarks every ~333 ids.
        events_per_second: 3_333,
        start_ms: 1_000,
        seed: 7,
        rate: None,
    }
}

/// Fills of `room` records until exhausted or `fills_max` fills; returns
/// the items and the generator.
fn run(generator: &mut KeyedGenerator, room: usize, fills_max: usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut records = Vec::new();
    for _ in 0..fills_max {
        let fill = generator.fill(room, &mut records);
        items.extend(fill.watermark.map(Item::Watermark));
        items.extend(
            records[..fill.records]
                .iter()
                .map(|row| Item::Record(event(row))),
        );
        if fill.exhausted {
            break;
        }
    }
    items
}

fn from_start(config: &GeneratorConfig, instance: usize, instances: usize) -> KeyedGenerator {
    KeyedGenerator::resume(config, instance, instances, instance as u64)
}

#[test]
fn same_config_and_position_give_identical_output_however_polled() {
    let config = config(Some(20_000));
    let whole = run(&mut from_start(&config, 1, 3), 1024, usize::MAX);
    let small = run(&mut from_start(&config, 1, 3), 7, usize::MAX);
    assert_eq!(whole, small);
    let again = run(
        &mut KeyedGenerator::resume(&config, 1, 3, 1),
        1024,
        usize::MAX,
    );
    assert_eq!(whole, again);
}

#[test]
fn union_over_instances_is_every_id_once_with_derived_key_and_time() {
    let config = config(Some(10_001));
    let mut ids = Vec::new();
    for instance in 0..3 {
        let generator = &mut from_start(&config, instance, 3);
        for item in run(generator, 512, usize::MAX) {
            let Item::Record(event) = item else { continue };
            assert_eq!(event.id % 3, instance as u64);
            assert_eq!(event.ts_ms, 1_000 + event.id * 1000 / 3_333);
            assert_eq!(event.key, generator.key_of(event.id));
            ids.push(event.id);
        }
        assert!(generator.is_exhausted());
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..10_001).collect::<Vec<u64>>());
}

#[test]
fn restore_from_a_position_replays_the_suffix() {
    let config = config(Some(30_000));
    let whole = run(&mut from_start(&config, 2, 4), 100, usize::MAX);
    for fills in [0, 1, 3, 17, 40] {
        let generator = &mut from_start(&config, 2, 4);
        let prefix = run(generator, 100, fills);
        let position = generator.next_id();
        let restored = &mut KeyedGenerator::resume(&config, 2, 4, position);
        let suffix = run(restored, 64, usize::MAX);
        assert_eq!(
            prefix.len() + suffix.len(),
            whole.len(),
            "cut after {fills} fills"
        );
        assert_eq!(
            &whole[prefix.len()..],
            &suffix[..],
            "cut after {fills} fills"
        );
    }
}

#[test]
fn watermarks_rise_and_never_pass_a_later_record() {
    let config = config(Some(50_000));
    let items = run(&mut from_start(&config, 0, 2), 1024, usize::MAX);
    let mut watermark = 0;
    let mut watermarks = 0;
    for item in &items {
        match item {
            Item::Watermark(next) => {
                assert!(*next > watermark, "watermark {next} after {watermark}");
                assert_eq!(next % WATERMARK_INTERVAL_MS, 0);
                watermark = *next;
                watermarks += 1;
            }
            Item::Record(event) => assert!(event.ts_ms >= watermark, "{event:?} after {watermark}"),
        }
    }
    // 50 000 ids at 3 333/s span 15 s of event time: about 150 intervals.
    assert!((140..=160).contains(&watermarks), "{watermarks} watermarks");
}

#[test]
fn unbounded_generator_is_never_exhausted() {
    let config = config(None);
    let generator = &mut from_start(&config, 0, 1);
    let items = run(generator, 1024, 2_000);
    assert!(!generator.is_exhausted());
    assert!(generator.next_id() > 100_000);
    assert!(items.iter().any(|item| matches!(item, Item::Record(_))));
}

#[test]
fn keys_depend_on_the_seed() {
    let seeded = |seed| {
        let config = GeneratorConfig {
            seed,
            ..config(Some(64))
        };
        let generator = from_start(&config, 0, 1);
        (0..64)
            .map(|id| generator.key_of(id).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(seeded(7), seeded(7));
    assert_ne!(seeded(7), seeded(8));
    let all = seeded(7);
    assert!(["alice", "bob", "carol", "dave"]
        .iter()
        .all(|key| all.iter().any(|k| k == key)));
}

#[test]
fn rate_limits_records_per_instance() {
    // A high event-time rate, so no fill stops early at a watermark.
    let config = GeneratorConfig {
        rate: Some(1_000),
        events_per_second: 1_000_000,
        ..config(None)
    };
    // Two instances: 500 events per second each.
    let generator = &mut from_start(&config, 0, 2);
    let start = Instant::now();
    let mut records = Vec::new();
    assert_eq!(generator.allowed(1024, start), 1);
    assert_eq!(generator.fill(1, &mut records).records, 1);
    assert_eq!(generator.allowed(1024, start), 0, "ahead of schedule");
    let second = start + Duration::from_secs(1);
    assert_eq!(generator.allowed(1024, second), 500);
    let fill = generator.fill(500, &mut records);
    assert_eq!(fill.records, 500);
    assert_eq!(generator.allowed(1024, second), 0);
    assert_eq!(generator.allowed(100, start + Duration::from_secs(10)), 100);
}

#[test]
fn seek_moves_an_existing_instance_and_refuses_foreign_ids() {
    let config = config(Some(5_000));
    let whole = run(&mut from_start(&config, 1, 2), 256, usize::MAX);
    let generator = &mut from_start(&config, 1, 2);
    run(generator, 256, 3);
    let position = generator.next_id();
    let suffix = run(
        &mut KeyedGenerator::resume(&config, 1, 2, position),
        256,
        usize::MAX,
    );
    generator.seek(1).expect("back to the start");
    assert_eq!(run(generator, 100, usize::MAX), whole);
    generator.seek(position).expect("an id of instance 1");
    assert_eq!(run(generator, 100, usize::MAX), suffix);
    let error = generator.seek(4).expect_err("4 belongs to instance 0");
    assert_eq!((error.position, error.instance, error.instances), (4, 1, 2));
}

#[test]
fn source_position_is_the_next_id_and_restore_seeks_to_it() {
    use weir_runtime::Source;
    let config = config(Some(5_000));
    let generator = &mut from_start(&config, 1, 2);
    run(generator, 256, 3);
    let position = Source::position(generator);
    assert_eq!(position, generator.next_id().to_le_bytes());
    let suffix = run(
        &mut KeyedGenerator::resume(&config, 1, 2, generator.next_id()),
        256,
        usize::MAX,
    );
    let restored = &mut from_start(&config, 1, 2);
    Source::restore(restored, &position).expect("a position of instance 1");
    assert_eq!(run(restored, 100, usize::MAX), suffix);
    assert!(Source::restore(restored, &position[..7]).is_err());
    assert!(Source::restore(restored, &4u64.to_le_bytes()).is_err());
}
