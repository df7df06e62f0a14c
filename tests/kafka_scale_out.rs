//! Goal: scale-out over Kafka (milestone 1): several `weir run` processes
//! with the same pipeline file and `[runtime] group` share the input
//! topic's partitions through Kafka's consumer-group protocol, and each
//! event is published exactly once however processes die, join and leave,
//! checked by Kafka's own `read_committed` console consumer.
//!
//! Method: a 12-partition topic holds 600 k JSON events (`id`, `user`,
//! `host`, `at`, `status`), dealt evenly over its partitions (so that B,
//! whichever partitions it gets, has work left when it must die). Processes A, B and C (one data directory each)
//! run `kafka` → `parse` → `kafka` (the passthrough, 12 partitions) and
//! `parse` → `filter` (`status >= 400`) → `kafka` (the errors, 3
//! partitions), with `shards = 1`, an unbounded source and a 6 s consumer
//! session timeout; A starts first and owns every partition before B and C
//! join (so it must give some up). Once all three own partitions
//! (`kafka-consumer-groups --describe`), B dies: SIGKILLed once committed output shows (the
//! passthrough's `read_committed` end offsets), or, in the second test,
//! aborting itself inside an epoch's transaction after its records and
//! offsets were sent (`WEIR_CRASH_AT=kafka-before-commit`), so the offsets
//! of its partitions stay pending until the brokers abort the transaction
//! and their next owner must wait for that (it must log so). D joins on a
//! fresh data directory; once D owns partitions A is stopped with SIGTERM
//! (it must commit its last epoch, leave, and exit 0), and B starts again
//! on its own data directory (a new run: what its log holds of the dead
//! run is not published). When the console consumer finds all 600 k events
//! in the passthrough, the others are stopped the same way. Then the
//! passthrough must hold every event exactly once and the errors topic
//! exactly the events with status 400 and up, each once; every process
//! must have read partitions, and one must have given partitions up in a
//! rebalance after their last epoch committed.

#[path = "../runtime/tests/promtool/mod.rs"]
mod promtool;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use support::kafka;
use support::{scratch, Weir};

const EVENTS: u64 = 600_000;
const INPUT_PARTITIONS: u32 = 12;
const PASSTHROUGH_PARTITIONS: u32 = 12;
const ERRORS_PARTITIONS: u32 = 3;
/// What a process logs each time its set of partitions changes, before
/// their number.
const ASSIGNMENT_LOG: &str = "kafka: now reading ";
/// What a process logs when it gave partitions up to a rebalance after
/// their last epoch committed.
const GAVE_UP_LOG: &str = "kafka: gave up ";
/// From the start of A, B and C to the first committed output.
const FIRST_OUTPUT_TIMEOUT: Duration = Duration::from_secs(60);
/// From B's SIGKILL to D's start.
const JOIN_DELAY: Duration = Duration::from_millis(1500);
/// From a SIGTERM to the exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// From B's SIGKILL to the whole passthrough being readable: the session
/// timeout (6 s) and the transaction timeout of B's open transaction
/// (10 s) pass before its partitions move on, and each poll reads
/// everything again.
const ALL_OUTPUT_TIMEOUT: Duration = Duration::from_secs(240);
/// The console consumer of the final check stops after nothing came for
/// this long (no process runs then; the polls before it found everything
/// readable).
const CHECK_QUIET: Duration = Duration::from_secs(5);

/// What both pipelines share: the group's runtime, the `kafka` source
/// (raw records, a 6 s session timeout), `parse` into `events`, and the
/// passthrough sink `copy`.
fn pipeline_head(bootstrap: &str, group: &str, input: &str, passthrough: &str) -> String {
    head_keyed(bootstrap, group, input, passthrough, "")
}

/// [`pipeline_head`], with `source` added to the source's table.
fn head_keyed(
    bootstrap: &str,
    group: &str,
    input: &str,
    passthrough: &str,
    source: &str,
) -> String {
    format!(
        r#"
[runtime]
shards = 1
group = "{group}"
epoch_interval_ms = 100

[sources.in]
type = "kafka"
brokers = "{bootstrap}"
topics = ["{input}"]
format = "raw"
start = "earliest"
options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}
{source}
[processors.events]
type = "parse"
inputs = ["in"]
field = "message"
format = "json"
schema = {{ id = "int", user = "string", host = "string", at = "timestamp", status = "int" }}
drop_source = true

[sinks.copy]
type = "kafka"
inputs = ["events"]
brokers = "{bootstrap}"
topic = "{passthrough}"
"#
    )
}

/// The stateless pipeline: [`pipeline_head`], and `filter` (`status >=
/// 400`) → `kafka` (the errors).
fn pipeline(bootstrap: &str, group: &str, input: &str, passthrough: &str, errors: &str) -> String {
    let head = pipeline_head(bootstrap, group, input, passthrough);
    format!(
        r#"{head}
[processors.errors]
type = "filter"
inputs = ["events"]
condition = "status >= 400"

[sinks.errors_out]
type = "kafka"
inputs = ["errors"]
brokers = "{bootstrap}"
topic = "{errors}"
"#
    )
}

/// The stateful pipeline: [`pipeline_head`] over an input keyed by host
/// (`keyed_by = ["host"]`), and 1-minute tumbling counts by the event
/// time `at`: per user → `kafka` (`counts`, keyed by user), which
/// repartitions through `GROUP-per_user-repartition`, and per host →
/// `kafka` (`hosts`, keyed by host), whose tasks are the input's
/// partitions. A per-user task's stream time mixes the progress of every
/// input partition (each holds rows of every user), and one partition's
/// rows can come long after the others' (its owner died, or reads
/// slower): `allowed_lateness = "90m"` (Kafka Streams' grace) covers the
/// whole run's event times (an hour), so no event is late and no window
/// fires before the closing events.
fn window_pipeline(
    bootstrap: &str,
    group: &str,
    input: &str,
    passthrough: &str,
    counts: &str,
    hosts: &str,
) -> String {
    let head = head_keyed(
        bootstrap,
        group,
        input,
        passthrough,
        "keyed_by = [\"host\"]\n",
    );
    format!(
        r#"{head}
[processors.per_user]
type = "window"
inputs = ["events"]
size = "1m"
time_field = "at"
group_by = ["user"]
aggregates = [{{ fn = "count" }}]
allowed_lateness = "90m"

[sinks.counts]
type = "kafka"
inputs = ["per_user"]
brokers = "{bootstrap}"
topic = "{counts}"
key = ["user"]

[processors.per_host]
type = "window"
inputs = ["events"]
size = "1m"
time_field = "at"
group_by = ["host"]
aggregates = [{{ fn = "count" }}]
allowed_lateness = "90m"

[sinks.hosts]
type = "kafka"
inputs = ["per_host"]
brokers = "{bootstrap}"
topic = "{hosts}"
key = ["host"]
"#
    )
}

/// The operators a case with extras ([`Case::extras`]) adds to
/// [`window_pipeline`]: the per-host rows go through a `threshold` keyed
/// by host (so its tasks are the input's partitions too): an alert for a
/// minute of [`ALERT_AT`] events or more, at most one per host per
/// [`COOLDOWN_MS`], → `kafka` (`alerts`, keyed by host); the per-user rows
/// through a `threshold` keyed by user ([`USER_ALERT_AT`]), whose tasks
/// are then the per-user window's (no repartition topic of its own) →
/// `kafka` (`user_alerts`); per host, a session window (gap
/// [`SESSION_GAP_MS`]): one session a host for the whole run, its state
/// moving with its task every time the task does → `kafka` (`sessions`);
/// and a `dedup` by host (window [`FIRSTS_MS`]): the first event of each
/// host, then the next one at least that long after it, and so on →
/// `kafka` (`firsts`).
fn window_extras(bootstrap: &str, counts: &str, hosts: &str) -> String {
    let alerts = format!("{hosts}-alerts");
    let sessions = format!("{hosts}-sessions");
    let firsts = format!("{hosts}-firsts");
    let user_alerts = format!("{counts}-alerts");
    format!(
        r#"
[processors.busy_host]
type = "threshold"
inputs = ["per_host"]
condition = "count >= {ALERT_AT}"
key = ["host"]
cooldown = "{COOLDOWN_MS}ms"

[sinks.alerts]
type = "kafka"
inputs = ["busy_host"]
brokers = "{bootstrap}"
topic = "{alerts}"
key = ["host"]

[processors.host_sessions]
type = "window"
inputs = ["events"]
kind = "session"
gap = "{SESSION_GAP_MS}ms"
time_field = "at"
group_by = ["host"]
aggregates = [{{ fn = "count" }}]
allowed_lateness = "90m"

[sinks.sessions]
type = "kafka"
inputs = ["host_sessions"]
brokers = "{bootstrap}"
topic = "{sessions}"
key = ["host"]

[processors.busy_user]
type = "threshold"
inputs = ["per_user"]
condition = "count >= {USER_ALERT_AT}"
key = ["user"]
cooldown = "{COOLDOWN_MS}ms"

[sinks.user_alerts]
type = "kafka"
inputs = ["busy_user"]
brokers = "{bootstrap}"
topic = "{user_alerts}"
key = ["user"]

[processors.host_firsts]
type = "dedup"
inputs = ["events"]
fields = ["host"]
window = "{FIRSTS_MS}ms"
time_field = "at"

[sinks.firsts]
type = "kafka"
inputs = ["host_firsts"]
brokers = "{bootstrap}"
topic = "{firsts}"
key = ["host"]
"#
    )
}

/// The per-host count from which a minute alerts ([`window_pipeline`]):
/// about the mean (600 k events over an hour and 8 hosts).
const ALERT_AT: u64 = 1_250;
/// The alerts' cooldown per host.
const COOLDOWN_MS: i64 = 180_000;
/// The per-host session windows' gap: far more than between two events of
/// a host, far less than up to the closing events.
const SESSION_GAP_MS: i64 = 60_000;

/// The `dedup` window of [`window_pipeline`].
const FIRSTS_MS: i64 = 10_000;

/// The events the per-host `dedup` keeps, by its rule (each input
/// partition holds its hosts' events in time order, so the rule's
/// event-time order is the order they are read in): per host, the first
/// event, then the first at least [`FIRSTS_MS`] after the last kept.
fn expected_firsts() -> HashSet<u64> {
    let mut first: BTreeMap<String, i64> = BTreeMap::new();
    let mut kept = HashSet::new();
    for id in 0..EVENTS {
        let (line, _, at, _) = kafka::event(id);
        let host = host_of(&line);
        if first
            .get(&host)
            .is_none_or(|&since| at >= since + FIRSTS_MS)
        {
            first.insert(host, at);
            kept.insert(id);
        }
    }
    kept
}

/// (session start, host) → events `0..EVENTS` of the host: one session a
/// host ([`SESSION_GAP_MS`]), computed directly.
fn expected_sessions() -> BTreeMap<(i64, String), u64> {
    let mut hosts: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for id in 0..EVENTS {
        let (line, _, at, _) = kafka::event(id);
        let host = hosts.entry(host_of(&line)).or_insert((at, 0));
        host.0 = host.0.min(at);
        host.1 += 1;
    }
    hosts
        .into_iter()
        .map(|(host, (start, events))| ((start, host), events))
        .collect()
}

/// The per-user count from which a minute alerts: about the mean plus
/// 1.8 standard deviations (600 k events over an hour and 500 users).
const USER_ALERT_AT: u64 = 28;

/// The alerts of [`window_pipeline`]'s per-host threshold.
fn expected_alerts() -> BTreeMap<(i64, String), u64> {
    alerts_of(expected_host_counts(), ALERT_AT)
}

/// The alerts of [`window_pipeline`]'s per-user threshold.
fn expected_user_alerts() -> BTreeMap<(i64, String), u64> {
    alerts_of(expected_user_counts(), USER_ALERT_AT)
}

/// The alerts a threshold on `counts` gives by the rule its docs give:
/// per key in time order, a minute of `at` events or more alerts unless
/// the key alerted less than [`COOLDOWN_MS`] before (times are the
/// windows' ends).
fn alerts_of(counts: BTreeMap<(i64, String), u64>, at: u64) -> BTreeMap<(i64, String), u64> {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut alerts = BTreeMap::new();
    for ((start, key), count) in counts {
        let end = start + 60_000;
        let cooling = last
            .get(&key)
            .is_some_and(|&since| end < since + COOLDOWN_MS);
        if count >= at && !cooling {
            last.insert(key.clone(), end);
            alerts.insert((start, key), count);
        }
    }
    alerts
}

/// What a case's pipeline keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// [`pipeline`]: no state; the input dealt evenly.
    Stateless,
    /// [`window_pipeline`]: windows whose state moves with their tasks;
    /// the input keyed by host, then, once every event's output is
    /// visible, one closing event per user (which also reaches every
    /// host): so that every row sent to a repartition topic comes there
    /// before any closing event's.
    Window,
}

/// The event time of the closing events of [`Shape::Window`]: two hours
/// after the last event, so that every task's stream time passes every
/// window of the events and its 90 minutes of allowed lateness (the
/// closing events' own windows never fire).
const CLOSING_AT: i64 = kafka::BASE_MS + EVENTS as i64 * kafka::STEP_MS + 2 * 3_600_000;

/// The closing event of `user` ([`CLOSING_AT`]), id `EVENTS + user`, and
/// its host (the users' closing events reach every host).
fn closing_event(user: u64) -> (String, String) {
    let host = format!("h{}", user % 8);
    let line = format!(
        r#"{{"id":{},"user":"u{user}","host":"{host}","at":{CLOSING_AT},"status":200}}"#,
        EVENTS + user
    );
    (host, line)
}

/// The host of test event `line`.
fn host_of(line: &str) -> String {
    let event: serde_json::Value = serde_json::from_str(line).expect("a JSON event");
    event["host"].as_str().expect("a host").to_owned()
}

/// (window start, host) → events `0..EVENTS` in it, computed directly.
fn expected_host_counts() -> BTreeMap<(i64, String), u64> {
    expected_counts(|line, _| host_of(line))
}

/// (window start, user) → events `0..EVENTS` in it, computed directly.
fn expected_user_counts() -> BTreeMap<(i64, String), u64> {
    expected_counts(|_, user| format!("u{user}"))
}

/// (window start, `group` of an event's line and user) → events
/// `0..EVENTS` in it, computed directly.
fn expected_counts(group: impl Fn(&str, u64) -> String) -> BTreeMap<(i64, String), u64> {
    let mut counts = BTreeMap::new();
    for id in 0..EVENTS {
        let (line, user, at, _) = kafka::event(id);
        let start = at - at.rem_euclid(60_000);
        *counts.entry((start, group(&line, user))).or_insert(0) += 1;
    }
    counts
}

/// The `weir run` processes of the test, by name; those still running are
/// SIGKILLed when it is dropped (a failed assertion leaves none behind).
struct Fleet {
    live: Vec<(&'static str, Weir)>,
    logs: Vec<(&'static str, String)>,
    /// A process expected to exit by itself (a fail-point).
    crashing: Option<&'static str>,
    /// Each process's metrics endpoint, by name.
    endpoints: Vec<(&'static str, SocketAddr)>,
}

impl Fleet {
    fn new(crashing: Option<&'static str>) -> Fleet {
        Fleet {
            live: Vec::new(),
            logs: Vec::new(),
            crashing,
            endpoints: Vec::new(),
        }
    }

    /// Starts process `name` on `case`'s pipeline with its own metrics
    /// endpoint (a copy of the file with `metrics_listen`, same stem) and
    /// the data directory `data`.
    fn start(&mut self, name: &'static str, case: &Case, data: &str, env: &[(&str, &str)]) {
        self.start_sharded(name, case, data, env, 1);
    }

    /// [`Fleet::start`], the process running `shards` shards.
    fn start_sharded(
        &mut self,
        name: &'static str,
        case: &Case,
        data: &str,
        env: &[(&str, &str)],
        shards: usize,
    ) {
        let port = support::free_port();
        let text = case
            .text
            .replacen(
                "[runtime]\n",
                &format!("[runtime]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
                1,
            )
            .replacen("shards = 1\n", &format!("shards = {shards}\n"), 1);
        let home = case.dir.path().join(format!("config-{name}"));
        std::fs::create_dir_all(&home).expect("a directory");
        let config = home.join(&case.file_name);
        std::fs::write(&config, text).expect("write the pipeline");
        self.live
            .push((name, Weir::start(&config, &case.data(data), &[], env)));
        let address = format!("127.0.0.1:{port}").parse().expect("an address");
        self.endpoints.push((name, address));
    }

    /// The metrics endpoint of the last process started as `name`.
    fn endpoint(&self, name: &str) -> SocketAddr {
        self.endpoints
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, address)| *address)
            .expect("a started process")
    }

    /// The partitions of `case`'s task topics that `name` holds (its
    /// tasks), by its `weir_kafka_source_partition_assigned` gauges (none
    /// while its endpoint does not answer yet).
    fn held(&self, name: &str, case: &Case) -> Vec<(String, u32)> {
        case.task_topics()
            .into_iter()
            .flat_map(|topic| {
                self.held_of(name, &topic)
                    .into_iter()
                    .map(move |partition| (topic.clone(), partition))
            })
            .collect()
    }

    /// The partitions of `topic` that `name` holds.
    fn held_of(&self, name: &str, topic: &str) -> Vec<u32> {
        let address = self.endpoint(name);
        if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            return Vec::new();
        }
        task_gauges(&promtool::fetch_metrics(address), topic)
            .into_iter()
            .filter(|(_, (held, _))| *held == 1)
            .map(|(partition, _)| partition)
            .collect()
    }

    /// Waits until each of `names` holds partitions (or fails
    /// [`FIRST_OUTPUT_TIMEOUT`] after `since`).
    fn wait_holding(&mut self, names: &[&str], case: &Case, since: Instant) {
        loop {
            self.check_running();
            let idle: Vec<&str> = names
                .iter()
                .copied()
                .filter(|name| self.held(name, case).is_empty())
                .collect();
            if idle.is_empty() {
                return;
            }
            if since.elapsed() > FIRST_OUTPUT_TIMEOUT {
                self.give_up(&format!(
                    "{idle:?} held no partition of {} within {FIRST_OUTPUT_TIMEOUT:?}",
                    case.input
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `name` exits by itself, and keeps what it logged.
    fn wait_crash(&mut self, name: &'static str, timeout: Duration) {
        let mut weir = self.take(name);
        if weir.wait_for(timeout).is_none() {
            self.live.push((name, weir));
            self.give_up(&format!("{name} did not crash within {timeout:?}"));
        }
        self.logs.push((name, weir.stderr()));
    }

    fn take(&mut self, name: &str) -> Weir {
        let at = self.live.iter().position(|(n, _)| *n == name);
        self.live.remove(at.expect("a live process")).1
    }

    /// SIGKILLs `name`, keeping what it logged.
    fn sigkill(&mut self, name: &'static str) {
        let mut weir = self.take(name);
        weir.child.kill().expect("SIGKILL");
        self.logs.push((name, weir.stderr()));
    }

    /// SIGTERMs `name`; it must exit 0 within [`STOP_TIMEOUT`].
    fn stop(&mut self, name: &'static str) {
        let weir = self.take(name);
        weir.terminate();
        let (status, log) =
            weir.exit_within_explained(STOP_TIMEOUT, || format!("(the graceful stop of {name})"));
        self.logs.push((name, log));
        if !status.success() {
            self.give_up(&format!("{name} failed to stop gracefully ({status})"));
        }
    }

    /// Panics if a process that should run has exited.
    fn check_running(&mut self) {
        for at in 0..self.live.len() {
            if Some(self.live[at].0) == self.crashing {
                continue;
            }
            if let Some(status) = self.live[at].1.child.try_wait().expect("poll child") {
                let name = self.live[at].0;
                let weir = self.live.remove(at).1;
                self.logs.push((name, weir.stderr()));
                self.give_up(&format!("{name} exited by itself ({status})"));
            }
        }
    }

    fn log(&self, name: &str) -> &str {
        let log = self.logs.iter().find(|(n, _)| *n == name);
        log.map_or("", |(_, log)| log.as_str())
    }

    /// SIGKILLs every running process and panics with `why` and every log.
    fn give_up(&mut self, why: &str) -> ! {
        for (name, mut weir) in std::mem::take(&mut self.live) {
            let _ = weir.child.kill();
            self.logs.push((name, weir.stderr()));
        }
        let mut message = format!("{why}\n");
        for (name, log) in &self.logs {
            message.push_str(&format!("--- {name} logged:\n{log}\n"));
        }
        panic!("{message}");
    }
}

/// One scenario's topics (fresh names), pipeline file and directories.
struct Case {
    bootstrap: String,
    run: String,
    input: String,
    passthrough: String,
    /// The errors topic ([`Shape::Stateless`]) or the per-user counts
    /// topic ([`Shape::Window`]).
    errors: String,
    /// The per-host counts topic ([`Shape::Window`]).
    hosts: String,
    /// The per-host alerts topic ([`Shape::Window`]).
    alerts: String,
    /// The per-host sessions topic ([`Shape::Window`]).
    sessions: String,
    /// The per-host dedup's topic ([`Shape::Window`]).
    firsts: String,
    /// The per-user alerts topic ([`Shape::Window`]).
    user_alerts: String,
    /// The closing events were written ([`Shape::Window`]).
    closed: std::cell::Cell<bool>,
    /// [`Shape::Window`] with the operators of [`window_extras`] too.
    extras: bool,
    /// The second half of the events was written ([`Shape::Stateless`]).
    rest_produced: std::cell::Cell<bool>,
    shape: Shape,
    /// The pipeline ([`pipeline`]).
    text: String,
    /// Its file name: the stem is the pipeline's name, in the
    /// transactional ids.
    file_name: String,
    dir: tempfile::TempDir,
}

impl Case {
    /// Creates the topics and writes [`EVENTS`] events dealt evenly over
    /// the input's partitions.
    fn new(prefix: &str) -> Case {
        Case::with(prefix, Shape::Stateless)
    }

    /// [`Case::new`] for `shape`: for [`Shape::Window`], the events are
    /// keyed by user (Kafka's console producer: Java's partitioner) and
    /// followed by one closing event per user.
    fn with(prefix: &str, shape: Shape) -> Case {
        Case::with_extras(prefix, shape, true)
    }

    /// [`Case::with`], [`Shape::Window`] with the operators of
    /// [`window_extras`] only if `extras`.
    fn with_extras(prefix: &str, shape: Shape, extras: bool) -> Case {
        let bootstrap = kafka::bootstrap();
        let run = kafka::unique(prefix);
        let (input, passthrough, errors) = (
            format!("{run}-in"),
            format!("{run}-passthrough"),
            format!("{run}-errors"),
        );
        kafka::create_topic(&bootstrap, &input, INPUT_PARTITIONS);
        kafka::create_topic(&bootstrap, &passthrough, PASSTHROUGH_PARTITIONS);
        kafka::create_topic(&bootstrap, &errors, ERRORS_PARTITIONS);
        let hosts = format!("{run}-hosts");
        let alerts = format!("{hosts}-alerts");
        let sessions = format!("{hosts}-sessions");
        let firsts = format!("{hosts}-firsts");
        let user_alerts = format!("{errors}-alerts");
        let group = format!("{run}-group");
        let text = match shape {
            Shape::Stateless => {
                // The second half: `Case::produce_rest`.
                let first = 0..EVENTS / 2;
                kafka::produce_range_evenly(&bootstrap, &input, first, INPUT_PARTITIONS);
                pipeline(&bootstrap, &group, &input, &passthrough, &errors)
            }
            Shape::Window => {
                kafka::create_topic(&bootstrap, &hosts, ERRORS_PARTITIONS);
                kafka::create_topic(&bootstrap, &alerts, ERRORS_PARTITIONS);
                kafka::create_topic(&bootstrap, &sessions, ERRORS_PARTITIONS);
                kafka::create_topic(&bootstrap, &firsts, ERRORS_PARTITIONS);
                kafka::create_topic(&bootstrap, &user_alerts, ERRORS_PARTITIONS);
                let records: Vec<(String, String)> = (0..EVENTS)
                    .map(|id| {
                        let (line, _, _, _) = kafka::event(id);
                        (host_of(&line), line)
                    })
                    .collect();
                kafka::produce_keyed(&bootstrap, &input, &records);
                let mut text =
                    window_pipeline(&bootstrap, &group, &input, &passthrough, &errors, &hosts);
                if extras {
                    text.push_str(&window_extras(&bootstrap, &errors, &hosts));
                }
                text
            }
        };
        Case {
            file_name: format!("{}.toml", run.replace('-', "_")),
            text,
            dir: scratch(),
            bootstrap,
            run,
            input,
            passthrough,
            errors,
            hosts,
            alerts,
            sessions,
            firsts,
            user_alerts,
            extras: extras && shape == Shape::Window,
            closed: std::cell::Cell::new(false),
            rest_produced: std::cell::Cell::new(false),
            shape,
        }
    }

    /// Writes the second half of the events ([`Shape::Stateless`]), once:
    /// the first half alone was read before the processes that join got
    /// partitions, in one CI run.
    fn produce_rest(&self) {
        if self.shape == Shape::Stateless && !self.rest_produced.replace(true) {
            let rest = EVENTS / 2..EVENTS;
            kafka::produce_range_evenly(&self.bootstrap, &self.input, rest, INPUT_PARTITIONS);
        }
    }

    /// Writes the closing events ([`Shape::Window`]), once.
    fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let records: Vec<(String, String)> = (0..kafka::USERS).map(closing_event).collect();
        kafka::produce_keyed(&self.bootstrap, &self.input, &records);
    }

    /// The topics whose partitions are tasks: the input's, and with
    /// windows the per-user window's repartition topic.
    fn task_topics(&self) -> Vec<String> {
        let mut topics = vec![self.input.clone()];
        if self.shape == Shape::Window {
            topics.push(format!("{}-group-per_user-repartition", self.run));
        }
        topics
    }

    /// The topics of the windows' (and [`window_extras`]') rows
    /// ([`Shape::Window`]).
    fn row_topics(&self) -> Vec<&String> {
        let mut topics = vec![&self.errors, &self.hosts];
        if self.extras {
            topics.extend([
                &self.alerts,
                &self.sessions,
                &self.firsts,
                &self.user_alerts,
            ]);
        }
        topics
    }

    /// The events the passthrough must hold.
    fn events(&self) -> u64 {
        match self.shape {
            Shape::Stateless => EVENTS,
            Shape::Window => EVENTS + kafka::USERS,
        }
    }

    /// The data directory of process `name`.
    fn data(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("data-{name}"))
    }
}

impl Fleet {
    /// Polls the passthrough until it holds [`EVENTS`] records (or fails
    /// [`ALL_OUTPUT_TIMEOUT`] after `since`, `what`).
    fn wait_all_published(&mut self, case: &Case, since: Instant, what: &str) {
        let want_rows = match case.shape {
            Shape::Stateless => 0,
            Shape::Window => {
                let extras = if case.extras {
                    expected_alerts().len()
                        + expected_sessions().len()
                        + expected_firsts().len()
                        + expected_user_alerts().len()
                } else {
                    0
                };
                expected_user_counts().len() + expected_host_counts().len() + extras
            }
        };
        loop {
            self.check_running();
            // Counted in process (a console consumer per poll took tens of
            // seconds a round); the check reads with Kafka's own reader.
            let lines = kafka::count_committed(&case.bootstrap, &case.passthrough);
            let events = case.events();
            if case.shape == Shape::Window && lines >= EVENTS as usize {
                // Every event's output is visible, and with it every row it
                // sent to a repartition topic: the closing events' rows come
                // after them.
                case.close();
            }
            // The windows' rows come after the closing events.
            let rows = match case.shape {
                Shape::Window if lines >= events as usize => case
                    .row_topics()
                    .into_iter()
                    .map(|topic| kafka::count_committed(&case.bootstrap, topic))
                    .sum(),
                _ => 0,
            };
            if lines >= events as usize && rows >= want_rows {
                eprintln!(
                    "{lines} passthrough records and {rows} window rows readable {:?} after \
                     {what}",
                    since.elapsed()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
            if since.elapsed() > ALL_OUTPUT_TIMEOUT {
                self.give_up(&format!(
                    "only {lines} of {events} events in {} and {rows} of {want_rows} window \
                     rows within {ALL_OUTPUT_TIMEOUT:?} of {what}",
                    case.passthrough
                ));
            }
        }
    }

    /// Keeps the logs where `WEIR_TEST_LOG_DIR` says, then checks with
    /// Kafka's own `read_committed` reader that the passthrough holds
    /// every event once and the errors topic every event with status 400
    /// and up once. A failed check prints every process's log.
    fn check_published_once(&self, case: &Case) {
        if let Some(dir) = std::env::var_os("WEIR_TEST_LOG_DIR") {
            for (name, log) in &self.logs {
                std::fs::write(Path::new(&dir).join(format!("{name}.log")), log).expect("a log");
            }
        }
        let _logs = LogsOnPanic(&self.logs);
        // Every topic read at once (one console consumer each, each
        // waiting out its quiet period), then checked.
        let mut topics = vec![&case.passthrough];
        match case.shape {
            Shape::Window => topics.extend(case.row_topics()),
            Shape::Stateless => topics.push(&case.errors),
        }
        let read: HashMap<&String, Vec<String>> = std::thread::scope(|scope| {
            let readers: Vec<_> = topics
                .iter()
                .map(|&topic| {
                    let bootstrap = &case.bootstrap;
                    scope.spawn(move || {
                        (topic, kafka::consume(bootstrap, topic, false, CHECK_QUIET))
                    })
                })
                .collect();
            readers
                .into_iter()
                .map(|reader| reader.join().expect("a console consumer"))
                .collect()
        });
        let rows = |topic: &String| -> Vec<serde_json::Value> {
            read[topic]
                .iter()
                .map(|line| serde_json::from_str(line).expect("a JSON row"))
                .collect()
        };
        kafka::check_ids_once(&read[&case.passthrough], case.events(), "passthrough topic");
        if case.shape == Shape::Window {
            kafka::check_counts(&rows(&case.errors), &expected_user_counts(), "counts topic");
            let hosts = rows(&case.hosts);
            kafka::check_counts_by(&hosts, "host", &expected_host_counts(), "hosts topic");
            if !case.extras {
                return;
            }
            let alerts = rows(&case.alerts);
            assert!(
                alerts.iter().all(|row| row["alert"] == "busy_host"),
                "alerts topic: {:?}",
                alerts.first()
            );
            kafka::check_counts_by(&alerts, "host", &expected_alerts(), "alerts topic");
            let sessions = rows(&case.sessions);
            kafka::check_counts_by(&sessions, "host", &expected_sessions(), "sessions topic");
            kafka::check_set_once(&read[&case.firsts], &expected_firsts(), "firsts topic");
            let user_alerts = rows(&case.user_alerts);
            kafka::check_counts_by(
                &user_alerts,
                "user",
                &expected_user_alerts(),
                "user alerts topic",
            );
            return;
        }
        let expected: HashSet<u64> = (0..EVENTS)
            .filter(|&id| kafka::event(id).3 >= 400)
            .collect();
        kafka::check_set_once(&read[&case.errors], &expected, "errors topic");
    }
}

/// Prints the logs it holds if the test panics while it lives.
struct LogsOnPanic<'a>(&'a [(&'static str, String)]);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, log) in self.0 {
                eprintln!("--- {name} logged:\n{log}");
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, weir) in &mut self.live {
            let _ = weir.child.kill();
            let _ = weir.child.wait();
        }
    }
}

impl Fleet {
    /// `name` shows, for every task it holds, the records left of its
    /// restore (`weir_kafka_state_restore_remaining` of the window's
    /// changelog partition): 0, the restore done before the task was read.
    /// The per-host window's tasks are the input's partitions, the per-user
    /// window's its repartition topic's.
    fn check_restored_gauges(&mut self, name: &str, case: &Case) {
        let [input, repartition] = &case.task_topics()[..] else {
            panic!("a window case has two task topics");
        };
        self.check_restored_gauges_of(name, case, input, "per_host");
        self.check_restored_gauges_of(name, case, repartition, "per_user");
    }

    fn check_restored_gauges_of(&mut self, name: &str, case: &Case, topic: &str, window: &str) {
        let held = self.held_of(name, topic);
        let text = promtool::fetch_metrics(self.endpoint(name));
        let changelog = format!("topic=\"{}-group-{window}-changelog\"", case.run);
        for task in &held {
            let label = format!("partition=\"{task}\"");
            let value = text.lines().find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                (series.starts_with("weir_kafka_state_restore_remaining{")
                    && series.contains(&changelog)
                    && series.contains(&label))
                .then(|| value.to_owned())
            });
            if value.as_deref() != Some("0") {
                self.give_up(&format!(
                    "{name} holds task {task} of `{window}` but shows {value:?} records left \
                     of its restore (weir_kafka_state_restore_remaining)"
                ));
            }
        }
        promtool::promtool_check(&text);
    }
}

/// The most partitions `log` says its process read at once.
fn most_partitions(log: &str) -> usize {
    log.match_indices(ASSIGNMENT_LOG)
        .filter_map(|(at, _)| {
            let rest = &log[at + ASSIGNMENT_LOG.len()..];
            rest.split_whitespace().next()?.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// The records (and transaction markers) of `topic` that a
/// `read_committed` reader can see, from its end offsets.
fn visible(probe: &BaseConsumer, topic: &str, partitions: u32) -> i64 {
    (0..partitions as i32)
        .map(|partition| {
            let (low, high) = probe
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("the end offsets of {topic}/{partition}: {e}"));
            high - low
        })
        .sum()
}

/// Goal: a process that dies in the middle of a rebalance, on either
/// side of it, or in the middle of restoring a window's state, leaves
/// every event published exactly once and every window row once with its
/// exact count.
///
/// Method: five seeded variants on [`Shape::Window`]'s topics and pipeline
/// (the passthrough, a per-user window that repartitions and a per-host
/// one that does not, whose state moves with their tasks). In each, A starts alone and owns every partition, then aborts
/// (as `kill -9` would: `WEIR_CRASH_AT`) at one step:
/// - `kafka-revoking`: B joined, A's shard stopped emitting the partitions
///   the group takes from it, and their last epoch has not committed;
/// - `kafka-revoked`: that epoch committed, A has not given them up yet;
/// - `kafka-assigned` (its second assignment): B joined and then stopped
///   gracefully, and A was just given B's partitions at their offsets;
/// - `kafka-restoring` (two of the five): B joined and stopped as above,
///   and A, restoring B's tasks, read their first changelog record and
///   handed nothing on yet.
///
/// The seed picks the step and how long B waits to join (0.3–3 s after A
/// owns partitions: A has read less or more of the topic). After A's
/// death C joins (also after a seeded wait) and restores every task; the
/// survivors finish the topic, stop gracefully, and Kafka's console
/// consumer (`read_committed`) must find each event once in the
/// passthrough and each (minute, user) and (minute, host) once in the
/// counts, with its count.
#[test]
fn a_member_dying_inside_a_rebalance_or_a_restore_leaves_each_event_and_window_once() {
    let steps = [
        RebalanceStep::Restoring,
        RebalanceStep::Revoking,
        RebalanceStep::Revoked,
        RebalanceStep::Assigned,
        RebalanceStep::Restoring,
    ];
    for (seed, step) in (1..).zip(steps) {
        rebalance_death(seed, step);
    }
}

/// The step of a rebalance A dies at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RebalanceStep {
    Revoking,
    Revoked,
    Assigned,
    Restoring,
}

fn rebalance_death(seed: u64, step: RebalanceStep) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rng = support::Rng(seed.wrapping_mul(0x5851_f42d));
    let join_wait = Duration::from_millis(300 + rng.next() % 2700);
    let rejoin_wait = Duration::from_millis(rng.next() % 3000);
    eprintln!("seed {seed}: A dies at {step:?}; B joins {join_wait:?} after A owns partitions");
    // The windows only: the other keyed operators move the same way, and
    // the scenario tests them (this keeps five runs within CI's time).
    let case = Case::with_extras("weir-scale-out-rebalance", Shape::Window, false);
    let crash = match step {
        RebalanceStep::Revoking => "kafka-revoking:0",
        RebalanceStep::Revoked => "kafka-revoked:0",
        RebalanceStep::Assigned => "kafka-assigned:2",
        RebalanceStep::Restoring => "kafka-restoring:1",
    };
    let gives_back = matches!(step, RebalanceStep::Assigned | RebalanceStep::Restoring);
    let mut fleet = Fleet::new(Some("A"));
    let started = Instant::now();
    fleet.start("A", &case, "A", &[("WEIR_CRASH_AT", crash)]);
    fleet.wait_holding(&["A"], &case, started);
    std::thread::sleep(join_wait);
    fleet.start("B", &case, "B", &[]);
    if gives_back {
        // B must own partitions before it leaves, so that A is given
        // them back (and restores the state B built of them).
        fleet.wait_holding(&["B"], &case, started);
        std::thread::sleep(rejoin_wait);
        fleet.stop("B");
    }
    fleet.wait_crash("A", FIRST_OUTPUT_TIMEOUT);
    let died = Instant::now();
    if !fleet.log("A").contains(&format!("WEIR_CRASH_AT={crash}")) {
        fleet.give_up(&format!("seed {seed}: A did not die at {crash}"));
    }
    std::thread::sleep(rejoin_wait);
    fleet.start("C", &case, "C", &[]);
    fleet.wait_all_published(&case, died, "A's death");
    fleet.stop("C");
    if !gives_back {
        fleet.stop("B");
    }
    fleet.check_published_once(&case);
    eprintln!(
        "seed {seed} ({step:?}, run {}): {:.1} s",
        case.run,
        started.elapsed().as_secs_f64()
    );
}

/// How B dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// SIGKILLed from outside, mid-run.
    Sigkill,
    /// Aborts itself inside an epoch's transaction, after the records and
    /// offsets were sent and before the commit (`WEIR_CRASH_AT =
    /// kafka-before-commit`): the offsets of its partitions stay pending
    /// until the brokers abort the transaction, and their next owners must
    /// wait for that rather than read older offsets.
    InsideTransaction,
}

#[test]
fn processes_share_partitions_and_publish_each_event_once_across_kill_join_and_stop() {
    scenario(Death::Sigkill, Shape::Stateless);
}

#[test]
fn a_member_that_dies_inside_its_transaction_holds_its_partitions_until_the_abort() {
    scenario(Death::InsideTransaction, Shape::Stateless);
}

/// Goal: windows' state moves with their tasks, through a repartition
/// topic where the window's key is not the input's: each (minute, user)
/// and (minute, host) row is published once, with the count of a direct
/// computation, however processes die, join and stop.
///
/// Method: [`scenario`] on [`Shape::Window`]: the 600 k events keyed by
/// host (12 partitions, Kafka's console producer), a per-user 1-minute
/// count (which repartitions: its rows go through
/// `GROUP-per_user-repartition`) and a per-host one (whose tasks are the
/// input's partitions, `keyed_by = ["host"]`), and the passthrough; A, B
/// and C start together, B is SIGKILLed mid-run, D joins, A stops
/// gracefully, B restarts. B (both runs) and D run two shards each, A and
/// C one: each process is one member of the group, whatever its shards,
/// and tasks move between processes of either kind. The tasks B and A held are restored from the
/// windows' changelog topics by their next owners (one must log a restore
/// of more than 0 keys, and D's gauges show its restores done), and Kafka's
/// console consumer (`read_committed`) must find each (minute, user) and
/// each (minute, host) exactly once with its exact count, and each event
/// once in the passthrough.
#[test]
fn windows_per_user_and_per_host_count_each_minute_once_as_tasks_move() {
    scenario(Death::Sigkill, Shape::Window);
}

/// The epoch from which B aborts itself in its transaction
/// ([`Death::InsideTransaction`]): about 2 s into its run.
const CRASH_EPOCH: &str = "kafka-before-commit:20";
/// What a member logs while a dead member's transaction holds the offsets
/// of partitions it was given.
const UNSTABLE_LOG: &str = "are not readable yet";

/// One scenario at a time: each runs four processes on a 2-core machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scenario(death: Death, shape: Shape) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let case = Case::with("weir-scale-out", shape);
    let (bootstrap, run, passthrough) = (&case.bootstrap, &case.run, &case.passthrough);
    let probe: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap.as_str())
        .set("isolation.level", "read_committed")
        .create()
        .expect("a probe consumer");

    let mut fleet = Fleet::new((death == Death::InsideTransaction).then_some("B"));
    let started = Instant::now();
    // Without state, A first, alone with every partition, so that B's and
    // C's joining makes it give partitions up (the revocation steps). With
    // a window the three start together, as the issue has them: A alone
    // could finish the topic before B and C are given tasks (it reads
    // faster than they restore and join); D's join and A's stop still
    // revoke tasks.
    fleet.start("A", &case, "A", &[]);
    if shape == Shape::Stateless {
        fleet.wait_holding(&["A"], &case, started);
    }
    for name in ["B", "C"] {
        let env: &[(&str, &str)] = match (name, death) {
            ("B", Death::InsideTransaction) => &[("WEIR_CRASH_AT", CRASH_EPOCH)],
            _ => &[],
        };
        fleet.start_sharded(name, &case, name, env, shards_of(name, shape));
    }

    // B and C read partitions (by their gauges), and committed output
    // shows, but not all of it: B dies mid-run.
    fleet.wait_holding(&["B", "C"], &case, started);
    // With B and C holding partitions, the rest of the input: B dies with
    // records of its own to read.
    case.produce_rest();
    loop {
        fleet.check_running();
        if death == Death::InsideTransaction {
            // B aborts itself in its transaction, about now.
            break;
        }
        let shown = visible(&probe, passthrough, PASSTHROUGH_PARTITIONS);
        if shown >= case.events() as i64 {
            fleet.give_up(&format!(
                "{shown} records were readable before B's kill: the run was over; \
                 produce more events"
            ));
        }
        if shown > 0 {
            eprintln!("{shown} records readable after {:?}", started.elapsed());
            break;
        }
        if started.elapsed() > FIRST_OUTPUT_TIMEOUT {
            fleet.give_up(&format!(
                "no committed output in {passthrough} within {FIRST_OUTPUT_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match death {
        Death::Sigkill => fleet.sigkill("B"),
        Death::InsideTransaction => fleet.wait_crash("B", FIRST_OUTPUT_TIMEOUT),
    }
    let killed = Instant::now();
    std::thread::sleep(JOIN_DELAY);
    fleet.check_running();
    fleet.start_sharded("D", &case, "D", &[], shards_of("D", shape));
    // D owns partitions (B's, once the group gave up on B, or some of
    // A's and C's) before A stops.
    fleet.wait_holding(&["D"], &case, killed);
    if shape == Shape::Window {
        fleet.check_restored_gauges("D", &case);
    }
    fleet.stop("A");
    eprintln!("A stopped {:?} after B's kill", killed.elapsed());
    // B starts again on its data directory (a new run: it resumes from the
    // group's offsets, and what its log holds of the dead run is not
    // published).
    fleet.start_sharded("B2", &case, "B", &[], shards_of("B2", shape));

    // C and D take over B's and A's partitions and finish the topic.
    fleet.wait_all_published(&case, killed, "B's kill");
    fleet.stop("C");
    fleet.stop("D");
    fleet.stop("B2");
    fleet.check_published_once(&case);

    // The work was shared: every process read partitions at some point
    // (D only after it joined), and D's join took partitions from the
    // others through the revocation handshake (a process gave partitions
    // up once their last epoch committed).
    for name in ["A", "B", "C", "D"] {
        let most = most_partitions(fleet.log(name));
        eprintln!(
            "{name}: read at most {most} partitions at once; gave partitions up {} times",
            fleet.log(name).matches(GAVE_UP_LOG).count()
        );
        if most == 0 {
            fleet.give_up(&format!("{name} never read a partition"));
        }
    }
    if death == Death::InsideTransaction {
        if !fleet.log("B").contains("WEIR_CRASH_AT") {
            fleet.give_up("B did not crash at its fail-point");
        }
        if !["A", "C", "D", "B2"]
            .iter()
            .any(|name| fleet.log(name).contains(UNSTABLE_LOG))
        {
            fleet.give_up(&format!(
                "nobody logged {UNSTABLE_LOG:?}: B's partitions were taken over without \
                 waiting for its open transaction"
            ));
        }
    }
    if !["A", "B", "C"]
        .iter()
        .any(|name| fleet.log(name).contains(GAVE_UP_LOG))
    {
        fleet.give_up(&format!(
            "no process logged {GAVE_UP_LOG:?}: D's join moved no partition"
        ));
    }
    if shape == Shape::Window {
        let restores: Vec<usize> = ["A", "B", "C", "D", "B2"]
            .iter()
            .flat_map(|name| restored_keys(fleet.log(name)))
            .collect();
        eprintln!("restores (keys): {restores:?}");
        if !restores.iter().any(|&keys| keys > 0) {
            fleet.give_up("no process restored any window state from the changelog");
        }
    }
    eprintln!("run {run}: {:.1} s", started.elapsed().as_secs_f64());
}

/// What a restore logs when it read tasks over the local log's state.
const LOCAL_RESTORE_LOG: &str = "from the local log";

/// Goal: a process stopped gracefully and started again on its data
/// directory restores its tasks from its local log, reading its changelog
/// partitions only from the checkpoint its last run left (nothing, when
/// nobody wrote since; what another member wrote meanwhile, when the tasks
/// moved away and back), and every event and window row is still
/// published once with its exact count.
///
/// Method: [`Shape::Window`]'s topics and pipeline with every keyed
/// operator (two windows, one repartitioned, two thresholds, a session
/// window, a dedup). A runs alone until output is committed and is stopped
/// with SIGTERM: it must leave `scale-out.checkpoint` in its data
/// directory. A2 (A's data directory) starts alone: it must take the
/// checkpoint out and restore every task of every operator from the local
/// log, reading 0 changelog records; once it committed more output it
/// stops. B (a fresh directory) starts alone, restores every task from the
/// changelogs (keys, no local log) and commits more output, then stops.
/// A3 (A's directory) starts alone: its tasks come from the local log of
/// A2's final epoch plus what B wrote to the changelogs after A2's
/// checkpoint (records read > 0), and it finishes the topic. Kafka's
/// console consumer (`read_committed`) then checks every output topic as
/// in [`scenario`].
#[test]
fn a_process_restarted_on_its_data_directory_restores_its_tasks_from_the_local_log() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let case = Case::with("weir-local-restore", Shape::Window);
    let probe: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", case.bootstrap.as_str())
        .set("isolation.level", "read_committed")
        .create()
        .expect("a probe consumer");
    let checkpoint = case.data("A").join("scale-out.checkpoint");
    let mut fleet = Fleet::new(None);
    let started = Instant::now();
    let mut shown = 0;
    for (name, data) in [("A", "A"), ("A2", "A"), ("B", "B")] {
        let since = Instant::now();
        fleet.start(name, &case, data, &[]);
        fleet.wait_holding(&[name], &case, since);
        if name == "A2" && checkpoint.exists() {
            fleet.give_up("A2 holds tasks and A's checkpoint is still there");
        }
        shown = fleet.wait_visible_beyond(&probe, &case, shown, since, name);
        fleet.stop(name);
        if !checkpoint.exists() {
            fleet.give_up(&format!("{name} stopped gracefully and left no checkpoint"));
        }
    }
    let since = Instant::now();
    fleet.start("A3", &case, "A", &[]);
    fleet.wait_all_published(&case, since, "A3's start");
    fleet.stop("A3");
    fleet.check_published_once(&case);

    // Every restore of A2 and A3 read over the local log; B's read the
    // changelogs whole.
    let operators = 6;
    for name in ["A2", "A3", "B"] {
        let restores: Vec<&str> = fleet
            .log(name)
            .lines()
            .filter(|line| line.contains("kafka: restored `"))
            .collect();
        eprintln!("{name}: {restores:#?}");
        if restores.len() < operators {
            fleet.give_up(&format!(
                "{name} logged {} restores, not one per keyed operator ({operators})",
                restores.len()
            ));
        }
        let local = restores
            .iter()
            .filter(|line| line.contains(LOCAL_RESTORE_LOG))
            .count();
        let wanted = if name == "B" { 0 } else { restores.len() };
        if local != wanted {
            fleet.give_up(&format!(
                "{name}: {local} of {} restores read over the local log, not {wanted}",
                restores.len()
            ));
        }
    }
    let read = |name: &str| -> u64 {
        fleet
            .log(name)
            .lines()
            .filter(|line| line.contains("kafka: restored `"))
            .filter_map(|line| {
                let (_, rest) = line.split_once(" keys from ")?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    };
    if read("A2") != 0 {
        fleet.give_up(&format!(
            "A2 read {} changelog records; nobody wrote after A's checkpoint",
            read("A2")
        ));
    }
    if read("A3") == 0 {
        fleet.give_up(
            "A3 read no changelog record: what B wrote after A2's checkpoint was not read",
        );
    }
    if restored_keys(fleet.log("B")).iter().sum::<usize>() == 0 {
        fleet.give_up("B restored no key from the changelogs");
    }
    eprintln!(
        "changelog records read: A2 {}, B {}, A3 {}; {:.1} s",
        read("A2"),
        read("B"),
        read("A3"),
        started.elapsed().as_secs_f64()
    );
}

impl Fleet {
    /// Waits until the passthrough shows more than `shown` records (or
    /// fails [`FIRST_OUTPUT_TIMEOUT`] after `since`): `name` committed
    /// output. Returns what it shows.
    fn wait_visible_beyond(
        &mut self,
        probe: &BaseConsumer,
        case: &Case,
        shown: i64,
        since: Instant,
        name: &str,
    ) -> i64 {
        loop {
            self.check_running();
            let now = visible(probe, &case.passthrough, PASSTHROUGH_PARTITIONS);
            if now >= case.events() as i64 {
                self.give_up(&format!(
                    "{name} finished the topic before it was stopped: produce more events"
                ));
            }
            if now > shown {
                return now;
            }
            if since.elapsed() > FIRST_OUTPUT_TIMEOUT {
                self.give_up(&format!(
                    "{name} committed no output within {FIRST_OUTPUT_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The shards process `name` runs in [`scenario`]: with windows, two for
/// B (both runs) and D, so that tasks move between processes of one and of
/// two shards; one otherwise.
fn shards_of(name: &str, shape: Shape) -> usize {
    match (shape, name) {
        (Shape::Window, "B" | "B2" | "D") => 2,
        _ => 1,
    }
}

/// The keys of each restore `log` shows (`kafka: restored ... : N keys`).
fn restored_keys(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|line| line.contains("kafka: restored `"))
        .filter_map(|line| {
            let (_, rest) = line.split_once("]: ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Goal: a scaled-out source shows, on `/metrics`, each partition (task)
/// it holds and how far behind it reads, and the gauges follow a
/// rebalance.
///
/// Method: [`Case`]'s 12-partition topic of 600 k events; process A
/// (with `metrics_listen`, as every process of these tests) reads it
/// alone: its scrapes must show lag above 0 while it works through the
/// topic, then every partition `weir_kafka_source_partition_assigned 1`
/// and lag 0, in text that `promtool check metrics` accepts. B joins: the
/// two processes' gauges must then split the 12 partitions (each holds
/// one or more, none is held twice), A showing 0 for those it gave up.
#[test]
fn each_member_shows_the_partitions_it_reads_and_their_lag() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let case = Case::new("weir-scale-out-lag");
    case.produce_rest();
    let input = &case.input;
    let mut fleet = Fleet::new(None);
    let start = |fleet: &mut Fleet, name: &'static str| {
        fleet.start(name, &case, name, &[]);
        let address = fleet.endpoint(name);
        support::wait_listening(address, FIRST_OUTPUT_TIMEOUT);
        address
    };
    let a = start(&mut fleet, "A");
    let started = Instant::now();
    let mut behind = 0;
    let text = loop {
        fleet.check_running();
        let text = promtool::fetch_metrics(a);
        let tasks = task_gauges(&text, input);
        let lag: i64 = tasks.values().filter_map(|(_, lag)| *lag).sum();
        behind = behind.max(lag);
        if tasks.len() == INPUT_PARTITIONS as usize
            && tasks
                .values()
                .all(|&(held, lag)| held == 1 && lag == Some(0))
        {
            break text;
        }
        if started.elapsed() > ALL_OUTPUT_TIMEOUT {
            fleet.give_up(&format!(
                "A's gauges after {ALL_OUTPUT_TIMEOUT:?}: {tasks:?}, not every partition held \
                 and read to its end"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "A read the topic in {:?}; the most lag shown: {behind}",
        started.elapsed()
    );
    if behind <= 0 || behind > EVENTS as i64 {
        fleet.give_up(&format!(
            "A showed a lag of {behind} at most while it read {EVENTS} events: not above 0 \
             and at most the topic"
        ));
    }
    let (ok, printed) = promtool::promtool_output(&text);
    if !ok {
        fleet.give_up(&format!(
            "promtool check metrics failed:\n{printed}\n{text}"
        ));
    }

    let b = start(&mut fleet, "B");
    let joined = Instant::now();
    loop {
        fleet.check_running();
        let on_a = task_gauges(&promtool::fetch_metrics(a), input);
        let on_b = task_gauges(&promtool::fetch_metrics(b), input);
        let held = |tasks: &BTreeMap<u32, (i64, Option<i64>)>| -> Vec<u32> {
            tasks
                .iter()
                .filter(|(_, &(held, _))| held == 1)
                .map(|(&partition, _)| partition)
                .collect()
        };
        let (mine, theirs) = (held(&on_a), held(&on_b));
        let mut all: Vec<u32> = mine.iter().chain(&theirs).copied().collect();
        all.sort_unstable();
        if !mine.is_empty()
            && !theirs.is_empty()
            && all == (0..INPUT_PARTITIONS).collect::<Vec<_>>()
        {
            let given_up: Vec<u32> = on_a
                .iter()
                .filter(|(_, &(held, lag))| held == 0 && lag == Some(0))
                .map(|(&partition, _)| partition)
                .collect();
            if given_up != theirs {
                fleet.give_up(&format!(
                    "B holds {theirs:?}, but A shows {given_up:?} given up: {on_a:?}"
                ));
            }
            eprintln!("after B joined: A holds {mine:?}, B {theirs:?}");
            break;
        }
        if joined.elapsed() > FIRST_OUTPUT_TIMEOUT {
            fleet.give_up(&format!(
                "{FIRST_OUTPUT_TIMEOUT:?} after B started: A shows {on_a:?}, B {on_b:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    fleet.stop("B");
    fleet.stop("A");
}

/// The `weir_kafka_source_partition_assigned` and `_lag` gauges of
/// `topic` in a scrape, by partition: (assigned, lag), each summed over
/// the process's shards, the lag `None` while it has no series (before
/// the partition's first statistics).
fn task_gauges(text: &str, topic: &str) -> BTreeMap<u32, (i64, Option<i64>)> {
    let mut tasks: BTreeMap<u32, (i64, Option<i64>)> = BTreeMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let assigned = if series.starts_with("weir_kafka_source_partition_assigned{") {
            true
        } else if series.starts_with("weir_kafka_source_partition_lag{") {
            false
        } else {
            continue;
        };
        if !series.contains(&format!("topic=\"{topic}\"")) {
            continue;
        }
        let partition = series
            .split("partition=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no partition label in {line:?}"));
        let value: i64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {line:?}"));
        let task = tasks.entry(partition).or_default();
        if assigned {
            // A per-shard gauge: the shard reading the partition sets
            // it, the process's other shards show 0.
            task.0 += value;
        } else {
            task.1 = Some(task.1.unwrap_or(0) + value);
        }
    }
    tasks
}

/// The threshold's expected alerts are a real test: some minutes alert,
/// some do not reach [`ALERT_AT`], and the cooldown holds some back.
#[test]
fn the_expected_alerts_leave_minutes_out_both_ways() {
    let counts = expected_host_counts();
    let alerts = expected_alerts();
    let busy = counts.values().filter(|&&count| count >= ALERT_AT).count();
    eprintln!(
        "{} host minutes, {busy} at {ALERT_AT} events or more, {} alerts",
        counts.len(),
        alerts.len()
    );
    assert!(!alerts.is_empty() && busy < counts.len(), "{busy} busy");
    assert!(alerts.len() < busy, "the cooldown holds none back");
    let users = expected_user_counts();
    let busy = users
        .values()
        .filter(|&&count| count >= USER_ALERT_AT)
        .count();
    let alerts = expected_user_alerts();
    eprintln!(
        "{} user minutes, {busy} at {USER_ALERT_AT} events or more, {} alerts",
        users.len(),
        alerts.len()
    );
    assert!(!alerts.is_empty() && alerts.len() < busy, "{busy} busy");
}

/// Goal: a task's state restored from its changelog holds every record
/// committed to it, also those behind a transaction left open by a member
/// that died inside it (seen in `windows_per_user_and_per_host_...`: B
/// killed mid-transaction, A owning the task for 2 s, D restoring it before
/// the brokers aborted B's transaction, and 16 minutes of a host's counts
/// gone).
///
/// Method: in a task's changelog partition, a committed record (`k1`), then
/// a transaction that stays open (`k2`, its producer alive, as a member
/// that died leaves it until the transaction timeout), then a committed
/// record of another producer (`k3`). The open transaction is aborted
/// 2 s later (as the brokers would). The restore must hand the operator
/// `k1` and `k3` (not `k2`), and must have waited for the abort to do so.
#[test]
fn a_restore_reads_past_a_transaction_a_dead_member_left_open() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use weir::operators::scale_out::{GroupPlan, Handoff};

    let bootstrap = kafka::bootstrap();
    let run = GroupPlan::new(&kafka::unique("weir-restore-open")).run();
    let changelog = run.add_state("op", &[], None);
    kafka::create_topic(&bootstrap, &changelog, 1);
    let producer = |id: &str| -> BaseProducer {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap.as_str())
            .set("transactional.id", format!("{changelog}-{id}"))
            .set("transaction.timeout.ms", "60000")
            .create()
            .expect("a producer");
        producer
            .init_transactions(Duration::from_secs(10))
            .expect("init_transactions");
        producer
    };
    let send = |producer: &BaseProducer, key: &str| {
        producer
            .send(
                BaseRecord::to(&changelog)
                    .partition(0)
                    .key(key)
                    .payload(key),
            )
            .expect("send");
        producer.flush(Duration::from_secs(10)).expect("flush");
    };
    let committed = |producer: BaseProducer, key: &str| {
        producer.begin_transaction().expect("begin");
        send(&producer, key);
        producer
            .commit_transaction(Duration::from_secs(10))
            .expect("commit");
    };
    committed(producer("p1"), "k1");
    let open = producer("p2");
    open.begin_transaction().expect("begin");
    send(&open, "k2");
    committed(producer("p3"), "k3");
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        open.abort_transaction(Duration::from_secs(10))
            .expect("abort");
    });

    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap.as_str());
    let started = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let registry = weir::runtime::metrics::Registry::new(1);
    weir::operators::sources::kafka::restore::restore(
        &run,
        &config,
        &[("input".to_owned(), 0)],
        "in",
        &|_, _, _| registry.gauge("restore_left", "test", &[]).for_shard(0),
        &stop,
    )
    .expect("restored");
    let waited = started.elapsed();
    aborter.join().expect("aborted");
    let handoffs = run.take_handoffs("op", 0);
    let [Handoff::Restore { task: 0, entries }] = &handoffs[..] else {
        panic!("one restore of task 0: {handoffs:?}");
    };
    let mut keys: Vec<String> = entries
        .iter()
        .map(|(key, _)| String::from_utf8_lossy(key).into_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["k1", "k3"], "committed records only, all of them");
    assert!(
        waited >= Duration::from_millis(1_500),
        "the restore returned after {waited:?}, before the open transaction was aborted"
    );
}
