//! Goal: weir rides out a Kafka broker that goes away (issue 18): an
//! outage mid-run is logged and retried, the run resumes when the broker
//! returns, and the output is still exactly once; a stop while the broker
//! is down exits within the stop bound, and the next start finishes the
//! job, exactly once.
//!
//! Method: a private broker (its own port and directory, started and
//! stopped with `scripts/start-kafka.sh`), so stopping it disturbs no other
//! test. 600 k events in a 3-partition topic; `weir run` (2 shards,
//! `bounded`) copies them to a passthrough topic and counts errors per user
//! per minute into a second topic, both `kafka` sinks, exactly-once.
//! - Outage: 1.5 s into the run the broker is stopped for 20 s, then
//!   started again on the same port and log directory. The run must log
//!   the failed publishes, retry, and finish by itself.
//! - Stop while down: a second pipeline on a fresh data directory; the
//!   broker is stopped 1.5 s in, and SIGTERM must end weir within the stop
//!   bound (10 s) plus a margin; once the broker is back a restart on the
//!   same data directory finishes.
//!
//! Each scenario's topics are then read by Kafka's console consumer
//! (`read_committed`): every event once, every (window, user) count once
//! and right.
//!
//! Records deleted before weir read them (retention, `kafka-delete-records`)
//! are gone for every reader; weir must say so, naming the partition and
//! the offsets, and read on (`records_deleted_before_weir_read_them_are_named`;
//! it also runs a `bounded` copy with more instances than partitions, which
//! must end by itself). A partition nothing was written to gets a group
//! offset too, its end, and a copy that starts at the group's offsets
//! (`start = "committed"`) reads what came after
//! (`an_empty_partition_gets_a_group_offset_too`).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::kafka::{self, OwnBroker};
use support::{free_port, published_lines, scratch, toml_path, Weir};

const EVENTS: u64 = 600_000;
/// weir's default stop bound (`STOP_TIMEOUT_DEFAULT_MS`).
const STOP_BOUND: Duration = Duration::from_secs(10);
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn pipeline(bootstrap: &str, run: &str) -> String {
    format!(
        r#"
[runtime]
shards = 2

[sources.in]
type = "kafka"
brokers = "{bootstrap}"
topics = ["{run}-in"]
format = "json"
schema = {{ id = "int", user = "string", at = "timestamp", status = "int" }}
time_field = "at"
start = "earliest"
bounded = true

{windows}
[sinks.counts]
type = "kafka"
inputs = ["per_user"]
brokers = "{bootstrap}"
topic = "{run}-counts"
key = ["user"]

[sinks.passthrough]
type = "kafka"
inputs = ["in"]
brokers = "{bootstrap}"
topic = "{run}-passthrough"
"#,
        windows = kafka::errors_per_user("in"),
    )
}

fn check_output(bootstrap: &str, run: &str) {
    let quiet = Duration::from_secs(8);
    let events = kafka::consume(bootstrap, &format!("{run}-passthrough"), false, quiet);
    // The passthrough carries the schema's fields only: no `host`.
    kafka::check_ids_once(&events, EVENTS, &format!("{run}: passthrough"));
    let rows: Vec<serde_json::Value> =
        kafka::consume(bootstrap, &format!("{run}-counts"), false, quiet)
            .iter()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
    kafka::check_counts(&rows, &kafka::expected_counts(EVENTS), run);
}

fn setup(bootstrap: &str, dir: &Path, name: &str) -> (String, std::path::PathBuf) {
    let run = kafka::unique(name);
    kafka::create_topic(bootstrap, &format!("{run}-in"), 3);
    kafka::create_topic(bootstrap, &format!("{run}-passthrough"), 3);
    kafka::create_topic(bootstrap, &format!("{run}-counts"), 3);
    kafka::produce_events(bootstrap, &format!("{run}-in"), EVENTS);
    let config = dir.join(format!("{}.toml", run.replace('-', "_")));
    std::fs::write(&config, pipeline(bootstrap, &run)).expect("write the pipeline");
    (run, config)
}

#[test]
fn a_broker_outage_and_a_stop_while_it_is_down_keep_the_output_exactly_once() {
    let dir = scratch();
    let broker = OwnBroker::start(free_port(), &dir.path().join("broker"));
    let bootstrap = broker.bootstrap.clone();

    // An outage of 20 s in the middle of a run.
    let (run, config) = setup(&bootstrap, dir.path(), "weir-outage");
    let data = dir.path().join("data-outage");
    let mut weir = Weir::start(&config, &data, &[], &[]);
    weir.wait_holding(&data);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        weir.wait_for(Duration::ZERO).is_none(),
        "the run ended before the outage"
    );
    broker.script("stop");
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    broker.script("start");
    eprintln!("broker down for {:.1} s", down.elapsed().as_secs_f64());
    let (status, log) = weir.exit_within_explained(RUN_TIMEOUT, || broker.describe(60));
    assert!(
        status.success(),
        "the run failed after the outage ({status}):\n{log}"
    );
    assert!(
        log.contains("retrying") && log.contains("kafka"),
        "the outage was not logged as retried:\n{log}"
    );
    check_output(&bootstrap, &run);

    // A stop while the broker is down.
    let (run, config) = setup(&bootstrap, dir.path(), "weir-stop-down");
    let data = dir.path().join("data-stop-down");
    let mut weir = Weir::start(&config, &data, &[], &[]);
    weir.wait_holding(&data);
    std::thread::sleep(Duration::from_millis(1500));
    broker.script("stop");
    std::thread::sleep(Duration::from_secs(2));
    let stopping = Instant::now();
    weir.terminate();
    let (status, log) = weir.exit_within(STOP_BOUND + Duration::from_secs(5));
    let took = stopping.elapsed();
    eprintln!("stop with the broker down: exit {status} after {took:?}");
    assert!(
        took <= STOP_BOUND + Duration::from_secs(5),
        "the stop took {took:?}:\n{log}"
    );
    broker.script("start");
    let weir = Weir::start(&config, &data, &[], &[]);
    let (status, log) = weir.exit_within_explained(RUN_TIMEOUT, || broker.describe(60));
    assert!(status.success(), "the restart failed ({status}):\n{log}");
    check_output(&bootstrap, &run);
}

/// A copy of `{run}-in` into files under `out`, until stopped.
fn copy_to_files(bootstrap: &str, run: &str, out: &Path) -> String {
    format!(
        r#"
[runtime]
shards = 2

[sources.in]
type = "kafka"
brokers = "{bootstrap}"
topics = ["{run}-in"]
format = "raw"
start = "earliest"

[sinks.out]
type = "file"
inputs = ["in"]
path = "{out}"
roll_interval = "0s"
"#,
        out = toml_path(out),
    )
}

/// [`copy_to_files`], `bounded`: a run ends at the end of the topic.
fn bounded_copy(bootstrap: &str, run: &str, out: &Path) -> String {
    copy_to_files(bootstrap, run, out).replace(
        "start = \"earliest\"",
        "start = \"earliest\"\nbounded = true",
    )
}

/// Writes `pipeline` to `config` and runs it on `data` until it ends by
/// itself (a `bounded` pipeline), successfully.
fn run_to_end(config: &Path, pipeline: &str, data: &Path) {
    std::fs::write(config, pipeline).expect("write the pipeline");
    let (status, log) = Weir::start(config, data, &[], &[]).exit_within(RUN_TIMEOUT);
    assert!(
        status.success(),
        "the run of {} failed ({status}):\n{log}",
        config.display()
    );
}

/// The `id`s of the events in the files under `out`, sorted.
fn copied_ids(out: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = published_lines(out)
        .iter()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let message: serde_json::Value =
                serde_json::from_str(row["message"].as_str().expect("a message")).expect("JSON");
            message["id"].as_u64().expect("an id")
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Runs the copy until the files hold `count` events, then stops it
/// (SIGTERM); returns its log.
fn copy_until(config: &Path, data: &Path, out: &Path, count: usize) -> String {
    let weir = Weir::start(config, data, &[], &[]);
    let deadline = Instant::now() + RUN_TIMEOUT;
    while published_lines(out).len() < count {
        assert!(
            Instant::now() < deadline,
            "the copy did not reach {count} events"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    weir.terminate();
    let (status, log) = weir.exit_within(STOP_BOUND + Duration::from_secs(5));
    assert!(status.success(), "the stop failed ({status}):\n{log}");
    log
}

#[test]
fn records_deleted_before_weir_read_them_are_named() {
    let bootstrap = kafka::bootstrap();
    let dir = scratch();
    let run = kafka::unique("weir-deleted");
    let input = format!("{run}-in");
    kafka::create_topic(&bootstrap, &input, 1);
    let lines =
        |ids: std::ops::Range<u64>| -> Vec<String> { ids.map(|id| kafka::event(id).0).collect() };
    kafka::produce(&bootstrap, &input, &lines(0..1000));
    let config = dir.path().join("copy.toml");
    let out = dir.path().join("out");
    std::fs::write(&config, copy_to_files(&bootstrap, &run, &out)).expect("write the pipeline");
    let data = dir.path().join("data");
    let log = copy_until(&config, &data, &out, 1000);
    assert!(
        !log.contains("never read"),
        "a warning without a cause:\n{log}"
    );

    // 1000 more, of which the broker deletes the first 500 before weir
    // runs again from offset 1000.
    kafka::produce(&bootstrap, &input, &lines(1000..2000));
    let offsets = dir.path().join("delete.json");
    std::fs::write(
        &offsets,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{input}","partition":0,"offset":1500}}]}}"#
        ),
    )
    .expect("write the offsets");
    kafka::tool(
        "delete-records",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--offset-json-file",
            offsets.to_str().expect("a UTF-8 path"),
        ],
        None,
    );
    let log = copy_until(&config, &data, &out, 1500);
    let warning = format!(
        "partition {input}/0 resumes at offset 1000, but the brokers deleted everything below \
         offset 1500 (retention or delete-records): 500 records were never read"
    );
    assert!(
        log.contains(&warning),
        "no warning of the deleted records:\n{log}"
    );
    let expected: Vec<u64> = (0..1000).chain(1500..2000).collect();
    assert_eq!(
        copied_ids(&out),
        expected,
        "the files hold what was left to read, once"
    );

    // A bounded run ends by itself though one of its two instances owns no
    // partition of the one-partition topic.
    let bounded = dir.path().join("bounded.toml");
    let all = dir.path().join("all");
    run_to_end(
        &bounded,
        &bounded_copy(&bootstrap, &run, &all),
        &dir.path().join("data-bounded"),
    );
    assert_eq!(copied_ids(&all), (1500..2000).collect::<Vec<u64>>());
}

/// A partition nothing was written to gets a group offset too (its end,
/// 0), so lag tools show every partition of a finished run, none unknown.
#[test]
fn an_empty_partition_gets_a_group_offset_too() {
    let bootstrap = kafka::bootstrap();
    let dir = scratch();
    let run = kafka::unique("weir-empty");
    let input = format!("{run}-in");
    kafka::create_topic(&bootstrap, &input, 1);
    let lines: Vec<String> = (0..100).map(|id| kafka::event(id).0).collect();
    kafka::produce(&bootstrap, &input, &lines);
    // A second partition, added once the records are in: empty.
    kafka::tool(
        "topics",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--alter",
            "--topic",
            &input,
            "--partitions",
            "2",
        ],
        None,
    );
    let name = run.replace('-', "_");
    let config = dir.path().join(format!("{name}.toml"));
    let out = dir.path().join("out");
    run_to_end(
        &config,
        &bounded_copy(&bootstrap, &run, &out),
        &dir.path().join("data"),
    );
    assert_eq!(copied_ids(&out), (0..100).collect::<Vec<u64>>());

    let described = kafka::group_offsets(&bootstrap, &format!("weir-{name}-in"));
    let mut offsets: Vec<(String, String)> = described
        .lines()
        .filter(|line| line.contains(&input))
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            (columns[2].to_owned(), columns[3].to_owned())
        })
        .collect();
    offsets.sort();
    assert_eq!(
        offsets,
        [("0".into(), "100".into()), ("1".into(), "0".into())],
        "group offsets:\n{described}"
    );

    // A copy that starts at the group's offsets reads what came after.
    let more: Vec<String> = (100..150).map(|id| kafka::event(id).0).collect();
    kafka::produce(&bootstrap, &input, &more);
    let resumed = dir.path().join("resumed.toml");
    let out = dir.path().join("resumed");
    let text = bounded_copy(&bootstrap, &run, &out).replace(
        "start = \"earliest\"",
        &format!("start = \"committed\"\ngroup = \"weir-{name}-in\""),
    );
    run_to_end(&resumed, &text, &dir.path().join("data-resumed"));
    assert_eq!(copied_ids(&out), (100..150).collect::<Vec<u64>>());
}
