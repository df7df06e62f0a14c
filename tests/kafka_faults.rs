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

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::kafka::{self, OwnBroker};
use support::{free_port, scratch, Weir};

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
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
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
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the restart failed ({status}):\n{log}");
    check_output(&bootstrap, &run);
}
