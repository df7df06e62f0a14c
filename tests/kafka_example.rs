//! Goal: `examples/pipelines/kafka.toml` runs against a real broker as its
//! comments say: Kafka → `parse` → a 1-minute window per service → a
//! `kafka` sink, and every raw record with its metadata → a Parquet archive.
//!
//! Method: a copy of the example (its topics renamed to this run's, its
//! pipeline name unique, so transactional ids and groups are fresh) runs
//! with `WEIR_KAFKA_BROKERS` set to the test broker. 30 000 request events
//! over 5 minutes of event time, 4 services, each with its event time as
//! the record timestamp (as the example asks of producers), are written
//! first. Once the archive holds every record, the test waits past the
//! idle timeout (so the windows the watermark passed fire) and stops weir
//! with SIGTERM (a savepoint). Then: the archive, read with the parquet
//! crate, holds every (partition, offset) once and every event once; Kafka's
//! `read_committed` console consumer finds each (minute, service) row at
//! most once, keyed by its service, with the count, average and maximum
//! computed directly, and at least the first three minutes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use parquet::record::Field;
use support::kafka;
use support::{parquet_rows, scratch, Weir};

const EVENTS: i64 = 30_000;
const BASE_MS: i64 = 1_764_900_000_000;
const STEP_MS: i64 = 10;

fn event(i: i64) -> (String, i64, String, i64) {
    let at = BASE_MS + i * STEP_MS;
    let service = format!("s{}", i % 4);
    let latency = (i * 7) % 100;
    let line = format!(
        r#"{{"at":{at},"service":"{service}","status":{},"latency_ms":{latency}}}"#,
        if i % 10 == 0 { 500 } else { 200 }
    );
    (line, at, service, latency)
}

#[test]
fn the_kafka_example_counts_per_service_and_archives_every_record() {
    let bootstrap = kafka::bootstrap();
    let run = kafka::unique("weir-example");
    let (requests, per_minute) = (format!("{run}-requests"), format!("{run}-per-minute"));
    kafka::create_topic(&bootstrap, &requests, 6);
    kafka::create_topic(&bootstrap, &per_minute, 3);
    kafka::produce_timed(
        &bootstrap,
        &requests,
        (0..EVENTS).map(|i| {
            let (line, at, _, _) = event(i);
            (line, at)
        }),
    );

    let dir = scratch();
    let example = std::fs::read_to_string(kafka::root().join("examples/pipelines/kafka.toml"))
        .expect("read the example");
    let copy = example
        .replace(
            "topics = [\"requests\"]",
            &format!("topics = [\"{requests}\"]"),
        )
        .replace(
            "topic = \"requests-per-minute\"",
            &format!("topic = \"{per_minute}\""),
        );
    assert_ne!(copy, example, "the example's topic names changed");
    let config = dir.path().join(format!("{}.toml", run.replace('-', "_")));
    std::fs::write(&config, copy).expect("write the copy");
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    let out_text = out.display().to_string();
    let mut weir = Weir::start(
        &config,
        &data,
        &[],
        &[("WEIR_KAFKA_BROKERS", &bootstrap), ("WEIR_OUT", &out_text)],
    );
    let archive = out.join("kafka/archive");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if parquet_rows(&archive).len() as i64 >= EVENTS {
            break;
        }
        if let Some(status) = weir.wait_for(Duration::from_millis(500)) {
            panic!("weir exited ({status}):\n{}", weir.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "the archive never held every record"
        );
    }
    // Past the idle timeout (10 s), so caught-up partitions stop holding
    // the watermark back, and an epoch (1 s) more.
    std::thread::sleep(Duration::from_secs(13));
    weir.terminate();
    let (status, log) = weir.exit_within(Duration::from_secs(30));
    assert!(status.success(), "the stop failed ({status}):\n{log}");

    // The archive: every record once, with its metadata.
    let rows = parquet_rows(&archive);
    assert_eq!(rows.len() as i64, EVENTS, "archived records");
    let mut places = BTreeSet::new();
    let mut messages = BTreeSet::new();
    for row in &rows {
        let (Field::Long(partition), Field::Long(offset)) = (&row["partition"], &row["offset"])
        else {
            panic!("partition and offset in {row:?}");
        };
        assert!(
            places.insert((*partition, *offset)),
            "record {partition}/{offset} twice"
        );
        let Field::Str(message) = &row["message"] else {
            panic!("message in {row:?}");
        };
        messages.insert(message.clone());
        assert!(matches!(&row["topic"], Field::Str(topic) if *topic == requests));
    }
    let expected: BTreeSet<String> = (0..EVENTS).map(|i| event(i).0).collect();
    assert_eq!(messages, expected, "archived values");

    // The per-minute rows, by Kafka's own reader.
    let mut truth: BTreeMap<(i64, String), (u64, i64, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let (_, at, service, latency) = event(i);
        let minute = at - at.rem_euclid(60_000);
        let entry = truth.entry((minute, service)).or_insert((0, 0, 0));
        entry.0 += 1;
        entry.1 += latency;
        entry.2 = entry.2.max(latency);
    }
    let lines = kafka::consume(&bootstrap, &per_minute, true, Duration::from_secs(8));
    let mut seen = BTreeSet::new();
    for line in &lines {
        let (key, value) = line.split_once('\t').expect("key TAB value");
        let row: serde_json::Value = serde_json::from_str(value).expect("JSON");
        let service = row["service"].as_str().expect("service").to_owned();
        assert_eq!(key, service, "keyed by service");
        let start = weir::operators::row::parse_timestamp(
            row["window_start"].as_str().expect("window_start"),
        )
        .expect("an RFC 3339 window start");
        assert!(
            seen.insert((start, service.clone())),
            "({start}, {service}) twice"
        );
        let (count, sum, max) = truth[&(start, service.clone())];
        assert_eq!(row["requests"].as_u64(), Some(count), "{line}");
        assert_eq!(row["max_latency_ms"].as_i64(), Some(max), "{line}");
        let avg = row["avg_latency_ms"].as_f64().expect("avg");
        assert!((avg - sum as f64 / count as f64).abs() < 1e-9, "{line}");
    }
    let minutes: BTreeSet<i64> = seen.iter().map(|(minute, _)| *minute).collect();
    assert!(
        minutes.len() >= 3 && seen.len() == minutes.len() * 4,
        "expected whole minutes of 4 services, at least 3: {seen:?}"
    );
}
