//! A real Kafka broker for the tests, through Kafka's own tools: the
//! broker is the one `scripts/test.sh` starts with `scripts/start-kafka.sh`
//! (its address in `WEIR_TEST_KAFKA_BOOTSTRAP`); topics are made and read
//! with `scripts/kafka-tool.sh` (Kafka 4.4's `kafka-topics` and
//! `kafka-console-consumer` with `--isolation-level read_committed`), so
//! what weir wrote is checked by Kafka's own reader, not weir's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Users of [`event`].
pub const USERS: u64 = 500;
/// Event times: `BASE_MS + id * STEP_MS` (1 M events span 100 minutes).
pub const BASE_MS: i64 = 1_764_900_000_000;
/// Milliseconds between events.
pub const STEP_MS: i64 = 6;

/// The test event `id` as a JSON line (`id`, `user`, `host`, `at`,
/// `status`), with its user number, time and status; drawn from `id`
/// alone.
pub fn event(id: u64) -> (String, u64, i64, u64) {
    let mut rng = super::Rng(id.wrapping_mul(7919));
    let user = rng.next() % USERS;
    let host = rng.next() % 8;
    let status = [200, 200, 200, 404, 500][(rng.next() % 5) as usize];
    let at = BASE_MS + id as i64 * STEP_MS;
    let line =
        format!(r#"{{"id":{id},"user":"u{user}","host":"h{host}","at":{at},"status":{status}}}"#);
    (line, user, at, status)
}

/// Writes events `0..count` ([`event`]) to `topic` with their times as
/// record timestamps.
pub fn produce_events(bootstrap: &str, topic: &str, count: u64) {
    produce_timed(
        bootstrap,
        topic,
        (0..count).map(|id| {
            let (line, _, at, _) = event(id);
            (line, at)
        }),
    );
}

/// The `id` of the JSON object `line` (from `what`); panics without one.
fn id_of(line: &str, what: &str) -> u64 {
    let row: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {line:?}: {e}"));
    row["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: no id in {line}"))
}

/// Panics unless `lines` (JSON objects with an `id`) hold each id of
/// `expected` exactly once, and no other.
pub fn check_set_once(lines: &[String], expected: &std::collections::HashSet<u64>, what: &str) {
    let mut seen = std::collections::HashSet::with_capacity(expected.len());
    for line in lines {
        let id = id_of(line, what);
        assert!(expected.contains(&id), "{what}: unexpected event {id}");
        assert!(seen.insert(id), "{what}: event {id} appears twice");
    }
    let (want, missing) = (expected.len(), expected.len() - seen.len());
    assert_eq!(missing, 0, "{what}: {missing} of {want} events missing");
}

/// Panics unless `lines` (JSON objects with an `id`) hold each of
/// `0..count` exactly once.
pub fn check_ids_once(lines: &[String], count: u64, what: &str) {
    let mut seen = vec![false; count as usize];
    for line in lines {
        let id = id_of(line, what);
        assert!(id < count, "{what}: unknown event {id}");
        assert!(!seen[id as usize], "{what}: event {id} appears twice");
        seen[id as usize] = true;
    }
    let missing = seen.iter().filter(|seen| !**seen).count();
    assert_eq!(missing, 0, "{what}: {missing} of {count} events missing");
}

/// The `[processors]` of the Kafka tests' windows, reading `input`: a
/// `filter` (`errors`: status 400 and up) and a 1-minute tumbling count
/// per user (`per_user`) by the event time `at`.
pub fn errors_per_user(input: &str) -> String {
    format!(
        r#"
[processors.errors]
type = "filter"
inputs = ["{input}"]
condition = "status >= 400"

[processors.per_user]
type = "window"
inputs = ["errors"]
size = "1m"
time_field = "at"
group_by = ["user"]
aggregates = [{{ fn = "count" }}]
"#
    )
}

/// (window start in ms, user) → the count of events `0..events` with
/// status 400 and up, computed directly.
pub fn expected_counts(events: u64) -> std::collections::BTreeMap<(i64, String), u64> {
    let mut counts = std::collections::BTreeMap::new();
    for id in 0..events {
        let (_, user, at, status) = event(id);
        if status >= 400 {
            let start = at - at.rem_euclid(60_000);
            *counts.entry((start, format!("u{user}"))).or_insert(0) += 1;
        }
    }
    counts
}

/// Panics unless `rows` (window rows: `window_start`, `user`, `count`)
/// hold each (window, user) of `expected` exactly once, with its count.
pub fn check_counts(
    rows: &[serde_json::Value],
    expected: &std::collections::BTreeMap<(i64, String), u64>,
    what: &str,
) {
    check_counts_by(rows, "user", expected, what);
}

/// [`check_counts`] of windows grouped by `field`.
pub fn check_counts_by(
    rows: &[serde_json::Value],
    field: &str,
    expected: &std::collections::BTreeMap<(i64, String), u64>,
    what: &str,
) {
    let mut seen = std::collections::BTreeMap::new();
    for row in rows {
        let start = row["window_start"]
            .as_str()
            .and_then(weir::operators::row::parse_timestamp)
            .unwrap_or_else(|| panic!("{what}: no window_start in {row}"));
        let key = (start, row[field].as_str().expect(field).to_owned());
        let count = row["count"].as_u64().expect("count");
        assert!(
            seen.insert(key.clone(), count).is_none(),
            "{what}: the row of window {key:?} appears twice"
        );
    }
    assert_eq!(seen.len(), expected.len(), "{what}: (window, {field}) rows");
    for (key, count) in expected {
        assert_eq!(seen.get(key), Some(count), "{what}: window {key:?}");
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The broker's bootstrap address; panics with how to get one.
pub fn bootstrap() -> String {
    std::env::var("WEIR_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "WEIR_TEST_KAFKA_BOOTSTRAP is not set: run the tests with scripts/test.sh, or \
             export WEIR_TEST_KAFKA_BOOTSTRAP=\"$(scripts/start-kafka.sh)\""
        )
    })
}

/// A name unique to this test process and `what`.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// Runs `scripts/kafka-tool.sh TOOL ARGS...`, optionally feeding `input`;
/// panics with its output if it fails.
pub fn tool(tool: &str, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut command = Command::new(root().join("scripts/kafka-tool.sh"));
    command
        .arg(tool)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run scripts/kafka-tool.sh");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("feed the tool");
    }
    let output = child.wait_with_output().expect("wait for the tool");
    assert!(
        output.status.success(),
        "kafka-tool.sh {tool} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Creates `topic` with `partitions` partitions on `bootstrap`, kept for
/// ever: the tests' events carry record timestamps in the past, which a
/// time-based retention (Kafka's default: 7 days) deletes mid-test.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: u32) {
    tool(
        "topics",
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=-1",
        ],
        None,
    );
}

/// Writes `lines` (one record each, no key) to `topic` with Kafka's
/// console producer.
pub fn produce(bootstrap: &str, topic: &str, lines: &[String]) {
    let mut input = Vec::with_capacity(lines.iter().map(|line| line.len() + 1).sum());
    for line in lines {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    console_produce(bootstrap, topic, &[], &input);
}

/// Writes `records` (key, value) to `topic` with Kafka's console
/// producer: each goes to the partition Java clients give its key
/// (murmur2), as an application keying its events would write them.
pub fn produce_keyed(bootstrap: &str, topic: &str, records: &[(String, String)]) {
    let size = records
        .iter()
        .map(|(key, value)| key.len() + value.len() + 2);
    let mut input = Vec::with_capacity(size.sum());
    for (key, value) in records {
        assert!(!key.contains('\t'), "a key with a tab: {key:?}");
        input.extend_from_slice(key.as_bytes());
        input.push(b'\t');
        input.extend_from_slice(value.as_bytes());
        input.push(b'\n');
    }
    let keyed = [
        "--property",
        "parse.key=true",
        "--property",
        "key.separator=\t",
    ];
    console_produce(bootstrap, topic, &keyed, &input);
}

/// Runs Kafka's console producer on `input` (lines) with `options`.
fn console_produce(bootstrap: &str, topic: &str, options: &[&str], input: &[u8]) {
    let mut args = vec!["--bootstrap-server", bootstrap, "--topic", topic];
    args.extend_from_slice(options);
    args.extend([
        "--producer-property",
        "linger.ms=20",
        "--producer-property",
        "batch.size=262144",
    ]);
    tool("console-producer", &args, Some(input));
}

/// Writes `records` (value, timestamp in ms) to `topic`, in order, with
/// the record timestamps given (no key: librdkafka's sticky partitioner
/// spreads them, so each partition holds its records in order), and waits
/// until every one is acknowledged.
pub fn produce_timed(bootstrap: &str, topic: &str, records: impl Iterator<Item = (String, i64)>) {
    produce_to(bootstrap, topic, records, None);
}

/// [`produce_events`], the events dealt round-robin over `partitions`
/// partitions (event `id` to partition `id % partitions`), so that each
/// holds as many: the sticky partitioner can leave one partition with
/// half the topic and others nearly empty, and a process given only
/// small ones would run out of work early.
pub fn produce_events_evenly(bootstrap: &str, topic: &str, count: u64, partitions: u32) {
    produce_range_evenly(bootstrap, topic, 0..count, partitions);
}

/// [`produce_events_evenly`] of the events `ids`.
pub fn produce_range_evenly(
    bootstrap: &str,
    topic: &str,
    ids: std::ops::Range<u64>,
    partitions: u32,
) {
    let records = ids.map(|id| {
        let (line, _, at, _) = event(id);
        (line, at)
    });
    produce_to(bootstrap, topic, records, Some(partitions));
}

/// [`produce_timed`], to partition `n % partitions` for the `n`-th record
/// when `partitions` is given.
fn produce_to(
    bootstrap: &str,
    topic: &str,
    records: impl Iterator<Item = (String, i64)>,
    partitions: Option<u32>,
) {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a producer");
    for (n, (value, timestamp)) in records.enumerate() {
        let mut record = BaseRecord::<(), String>::to(topic)
            .payload(&value)
            .timestamp(timestamp);
        if let Some(partitions) = partitions {
            record = record.partition((n as u64 % u64::from(partitions)) as i32);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => panic!("producing to {topic}: {error}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .unwrap_or_else(|error| panic!("flushing to {topic}: {error}"));
}

/// Every committed record of `topic` (values, or `key\tvalue` with
/// `keys`), read from the beginning by Kafka's console consumer with
/// `read_committed`, until nothing arrives for `quiet`.
///
/// The console consumer's quiet period runs from its first poll, which
/// also joins its group: on a loaded 2-core machine (several consumers
/// and `weir` processes at once) it has come back with nothing while the
/// topic held every record. So when it reads fewer records than a
/// `read_committed` reader in this process counts ([`count_committed`]),
/// it reads again with twice the quiet period, three times at most; the
/// caller checks what the last read returned.
pub fn consume(bootstrap: &str, topic: &str, keys: bool, quiet: Duration) -> Vec<String> {
    let committed = count_committed(bootstrap, topic);
    let mut quiet = quiet;
    let mut attempt = 1;
    loop {
        let lines = consume_once(bootstrap, topic, keys, quiet);
        if lines.len() >= committed || attempt == 3 {
            return lines;
        }
        eprintln!(
            "the console consumer read {} of {committed} committed records of {topic} \
             within a quiet period of {quiet:?}: reading again",
            lines.len()
        );
        quiet *= 2;
        attempt += 1;
    }
}

/// One console consumer run of [`consume`].
fn consume_once(bootstrap: &str, topic: &str, keys: bool, quiet: Duration) -> Vec<String> {
    let timeout = quiet.as_millis().to_string();
    let mut args = vec![
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--isolation-level",
        "read_committed",
        "--timeout-ms",
        &timeout,
    ];
    if keys {
        args.extend(["--formatter-property", "print.key=true"]);
    }
    // The console consumer exits 0 after the timeout with what it read.
    let output = tool("console-consumer", &args, None);
    String::from_utf8(output.stdout)
        .expect("UTF-8 records")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many records of `topic` a `read_committed` reader finds now, read
/// with librdkafka in this process (fast): for polling until output is
/// complete. The checks themselves read with Kafka's console consumer
/// ([`consume`]).
pub fn count_committed(bootstrap: &str, topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-test-count")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a counting consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .unwrap_or_else(|e| panic!("the metadata of {topic}: {e}"));
    let partitions = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic)
        .map_or(0, |found| found.partitions().len());
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        list.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&list).expect("assign the partitions");
    let (mut count, mut ended) = (0, std::collections::HashSet::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ended.len() < partitions && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => count += 1,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => {}
        }
    }
    count
}

/// The committed offsets of `group` per partition of `topic`, from
/// `kafka-consumer-groups --describe` (`-` when none).
pub fn group_offsets(bootstrap: &str, group: &str) -> String {
    let output = tool(
        "consumer-groups",
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
        ],
        None,
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A private broker (its own port and directory), for tests that stop and
/// start it; stopped and deleted on drop.
pub struct OwnBroker {
    pub port: u16,
    pub dir: PathBuf,
    pub bootstrap: String,
}

impl OwnBroker {
    /// Starts a broker on `port`, in `dir`.
    pub fn start(port: u16, dir: &Path) -> OwnBroker {
        let mut broker = OwnBroker {
            port,
            dir: dir.to_owned(),
            bootstrap: String::new(),
        };
        broker.bootstrap = broker.script("start");
        broker
    }

    /// Runs `scripts/start-kafka.sh ACTION` for this broker; its stdout.
    pub fn script(&self, action: &str) -> String {
        let output = Command::new(root().join("scripts/start-kafka.sh"))
            .arg(action)
            .env("WEIR_TEST_KAFKA_PORT", self.port.to_string())
            .env("WEIR_TEST_KAFKA_DIR", &self.dir)
            .stderr(Stdio::piped())
            .output()
            .expect("run scripts/start-kafka.sh");
        assert!(
            output.status.success(),
            "start-kafka.sh {action} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// What the broker itself says, for a failing test's message: whether
    /// its process is still running, and the last `lines` lines of its
    /// `server.log` and `stdout.log`.
    pub fn describe(&self, lines: usize) -> String {
        let running = std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        let mut out = format!(
            "the broker in {} is {}running\n",
            self.dir.display(),
            if running { "" } else { "not " }
        );
        for name in ["server.log", "stdout.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- the end of its {name}:\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/start-kafka.sh"))
            .arg("clean")
            .env("WEIR_TEST_KAFKA_PORT", self.port.to_string())
            .env("WEIR_TEST_KAFKA_DIR", &self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
