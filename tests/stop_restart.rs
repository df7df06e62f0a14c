//! Goal: a graceful stop (SIGTERM) is a savepoint, not the end of input.
//! Stopping and restarting `weir run`, mixed with SIGKILLs, publishes
//! exactly what an uninterrupted run publishes; a window open at a stop
//! stays open and takes the events sent after the restart; a restart
//! whose stateful component changed is refused unless its state is
//! discarded.
//!
//! Method: the `weir` binary runs pipeline files as child processes on a
//! data directory in a temporary directory.
//! - Chaos: a 2-shard pipeline of two event-time generators (login and web
//!   access profiles, paced by a wall-clock `rate`) through every stateful
//!   operator: tumbling, sliding and session windows, `dedup` and
//!   `threshold`, each into an NDJSON `file` sink. A reference run goes
//!   uninterrupted; then runs on a fresh data directory are interrupted
//!   after a delay drawn from a seeded generator, by SIGTERM (waiting for
//!   the stop to finish, which must exit 0) or SIGKILL, and restarted,
//!   until the run completes. Scenarios repeat until at least
//!   `STOPS_MIN` stops and `KILLS_MIN` kills landed mid-run. Every
//!   scenario's committed output must equal the reference's, sink by sink,
//!   line for line (as sorted multisets: file names carry epochs).
//!   `WEIR_STOP_TEST_SEED` changes the seed.
//! - Determinism: two uninterrupted runs of the same pipeline publish the
//!   same lines (the `dedup` keeps the earliest record by event time, not
//!   whichever shard's record arrives first).
//! - HTTP: the scenario of issue 15, with a 5 s window over `http`
//!   ingest; see the test.
//! - Changed config: see the test.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{
    free_port, post, published_lines, published_rows, scratch, wait_listening, Rng, Weir,
};

/// Stops (SIGTERM) that must land mid-run.
const STOPS_MIN: usize = 20;
/// Kills (SIGKILL) that must land mid-run.
const KILLS_MIN: usize = 10;
/// Interruptions per scenario at most; then the run is left to finish.
const INTERRUPTIONS_PER_SCENARIO_MAX: usize = 24;
/// A run (or a stop) that takes longer than this is stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The sinks of the chaos pipeline: one per stateful operator.
const SINKS: [&str; 5] = [
    "failures_per_ip",
    "brute_force",
    "requests_per_path",
    "sessions",
    "first_requests",
];

fn chaos_pipeline(out: &Path) -> String {
    let sink = |name: &str| {
        format!(
            "[sinks.{name}_out]\ntype = \"file\"\ninputs = [\"{name}\"]\npath = \"{}\"\nformat = \"ndjson\"\n",
            out.join(name).display()
        )
    };
    let sinks: Vec<String> = SINKS.iter().map(|name| sink(name)).collect();
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 20

# 24 000 logins over 240 s of event time, with a brute force from minute 1
# to 3; paced to about 2 s of wall time.
[sources.auth]
type = "generator"
profile = "auth"
count = 24000
events_per_second = 100
rate = 12000
seed = 5
users = 30
ips = 60

[[sources.auth.attacks]]
type = "brute_force"
ip = "203.0.113.7"
from = "1m"
duration = "2m"
per_second = 2

[sources.web]
type = "generator"
profile = "web_access"
count = 24000
events_per_second = 100
rate = 12000
seed = 6
users = 30
ips = 60
paths = 12

[processors.failures]
type = "filter"
inputs = ["auth"]
condition = 'outcome == "failure"'

[processors.failures_per_ip]
type = "window"
inputs = ["failures"]
size = "1m"
group_by = ["source_ip"]
aggregates = ["count", {{ fn = "count_distinct", field = "user", as = "users" }}]

[processors.brute_force]
type = "threshold"
inputs = ["failures_per_ip"]
condition = "count >= 60"
key = ["source_ip"]
cooldown = "2m"

[processors.requests_per_path]
type = "window"
inputs = ["web"]
kind = "sliding"
size = "30s"
slide = "10s"
group_by = ["path"]
aggregates = ["count", {{ fn = "max", field = "bytes" }}, {{ fn = "top_k", field = "status", k = 2 }}]

[processors.sessions]
type = "window"
inputs = ["auth"]
kind = "session"
gap = "20s"
group_by = ["user"]
aggregates = ["count", {{ fn = "min", field = "outcome" }}]

[processors.first_requests]
type = "dedup"
inputs = ["web"]
fields = ["client_ip", "path"]
window = "30s"

{}"#,
        sinks.join("\n")
    )
}

/// A scenario: its config, data directory and outputs, in a temporary
/// directory.
struct Scenario {
    root: tempfile::TempDir,
    config: PathBuf,
}

impl Scenario {
    fn new(pipeline: fn(&Path) -> String) -> Scenario {
        let root = scratch();
        let config = root.path().join("pipeline.toml");
        std::fs::write(&config, pipeline(&root.path().join("out"))).expect("write config");
        Scenario { root, config }
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn out(&self, sink: &str) -> PathBuf {
        self.root.path().join("out").join(sink)
    }

    fn start(&self, args: &[&str]) -> Weir {
        Weir::start(&self.config, &self.data(), args, &[])
    }

    /// Runs until the pipeline completes: must exit 0.
    fn run_to_end(&self) {
        let (status, log) = self.start(&[]).exit_within(RUN_TIMEOUT);
        assert!(status.success(), "weir failed: {log}");
    }

    /// Every sink's published lines, sorted.
    fn output(&self) -> BTreeMap<&'static str, Vec<String>> {
        SINKS
            .iter()
            .map(|&sink| {
                let mut lines = published_lines(&self.out(sink));
                lines.sort();
                (sink, lines)
            })
            .collect()
    }
}

/// Asserts two outputs are equal sink by sink, saying where they differ.
fn assert_same_output(
    actual: &BTreeMap<&'static str, Vec<String>>,
    expected: &BTreeMap<&'static str, Vec<String>>,
    what: &str,
) {
    for sink in SINKS {
        let (actual, expected) = (&actual[sink], &expected[sink]);
        if actual == expected {
            continue;
        }
        let missing: Vec<&String> = expected.iter().filter(|l| !actual.contains(l)).collect();
        let extra: Vec<&String> = actual.iter().filter(|l| !expected.contains(l)).collect();
        panic!(
            "{what}: sink `{sink}` published {} lines, the reference {}; \
             missing {} (first {:?}), unexpected {} (first {:?})",
            actual.len(),
            expected.len(),
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        );
    }
}

#[test]
fn stops_and_kills_at_random_points_publish_what_an_uninterrupted_run_does() {
    let reference = Scenario::new(chaos_pipeline);
    reference.run_to_end();
    let expected = reference.output();
    for sink in SINKS {
        assert!(
            !expected[sink].is_empty(),
            "the reference's `{sink}` is empty"
        );
    }

    let seed = std::env::var("WEIR_STOP_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(20261205);
    let mut rng = Rng(seed);
    let (mut stops, mut kills, mut scenarios) = (0usize, 0usize, 0usize);
    while stops < STOPS_MIN || kills < KILLS_MIN {
        let scenario = Scenario::new(chaos_pipeline);
        scenarios += 1;
        for _ in 0..INTERRUPTIONS_PER_SCENARIO_MAX {
            let mut weir = scenario.start(&[]);
            // From before recovery is done to well into the run.
            let delay = Duration::from_millis(20 + rng.next() % 380);
            if let Some(status) = weir.wait_for(delay) {
                assert!(status.success(), "weir failed: {}", weir.stderr());
                break;
            }
            // Kills until their quota is met, then mostly stops.
            let kill = kills < KILLS_MIN && (stops >= STOPS_MIN || rng.next() % 3 == 0);
            if kill {
                weir.kill();
                kills += 1;
                continue;
            }
            weir.terminate();
            let (status, log) = weir.exit_within(RUN_TIMEOUT);
            // A SIGTERM before weir installed its handler (at its very
            // start) ends it as the default action does: a kill.
            let killed_early = status.signal() == Some(libc::SIGTERM) && log.is_empty();
            assert!(status.success() || killed_early, "a stop failed: {log}");
            // Counted when the stop committed a savepoint (not when it came
            // while starting, or as the input ended anyway).
            if log.contains("savepoint=true") {
                stops += 1;
            }
        }
        scenario.run_to_end();
        assert_same_output(
            &scenario.output(),
            &expected,
            &format!("scenario {scenarios} (seed {seed})"),
        );
    }
    eprintln!(
        "{stops} stops and {kills} kills over {scenarios} scenarios; every output equals \
         the uninterrupted run's"
    );
}

#[test]
fn two_uninterrupted_runs_publish_the_same_output() {
    let (first, second) = (Scenario::new(chaos_pipeline), Scenario::new(chaos_pipeline));
    first.run_to_end();
    second.run_to_end();
    assert_same_output(&second.output(), &first.output(), "the second run");
}

// ---------------------------------------------------------------------------
// A stop mid-window over HTTP ingest

/// Window length of the HTTP scenario, ms.
const HTTP_WINDOW_MS: u64 = 5_000;

fn http_pipeline(port: u16, out: &Path) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 50

[sources.events]
type = "http"
format = "weir"
listen = "127.0.0.1:{port}"
max_out_of_orderness = "500ms"

[processors.parsed]
type = "parse"
inputs = ["events"]
field = "body"
format = "json"
schema = {{ service = "string" }}

[processors.per_window]
type = "window"
inputs = ["parsed"]
size = "{HTTP_WINDOW_MS}ms"
group_by = ["service"]
aggregates = ["count"]

[sinks.rows]
type = "file"
inputs = ["per_window"]
path = "{rows}"
roll_interval = "0s"
format = "ndjson"

[sinks.late]
type = "file"
inputs = ["per_window.late"]
path = "{late}"
roll_interval = "0s"
format = "ndjson"
"#,
        rows = out.join("rows").display(),
        late = out.join("late").display(),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// NDJSON of `count` events of `service` at event time `ts`.
fn events(service: &str, ts: u64, count: usize) -> String {
    (0..count)
        .map(|_| format!("{{\"key\":\"{service}\",\"ts\":{ts},\"service\":\"{service}\"}}\n"))
        .collect()
}

/// Issue 15's trial: events into a window, a stop before it closes, a
/// restart, more events into the same window and the next: both windows
/// fire once with every event counted, and nothing is late.
#[test]
fn a_stop_mid_window_over_http_keeps_the_window_open() {
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, http_pipeline(port, &root.path().join("out"))).expect("config");
    let data = root.path().join("data");

    // Start early in a window, so a stop and a restart fit before it ends.
    let start = loop {
        let now = now_ms();
        if now % HTTP_WINDOW_MS < 300 {
            break now - now % HTTP_WINDOW_MS;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let weir = Weir::start(&config, &data, &[], &[]);
    wait_listening(addr, Duration::from_secs(10));
    let (status, body) = post(addr, "/events", &events("checkout", start + 1_000, 3));
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    assert!(
        published_rows(&root.path().join("out/rows")).is_empty(),
        "the stop published the open window: {:?}",
        published_rows(&root.path().join("out/rows"))
    );

    let weir = Weir::start(&config, &data, &[], &[]);
    wait_listening(addr, Duration::from_secs(10));
    let now = now_ms();
    assert!(
        now + 500 < start + HTTP_WINDOW_MS,
        "the stop and restart took {} ms: too slow for this test's window",
        now - start
    );
    let (status, body) = post(
        addr,
        "/events",
        &events("checkout", now.max(start + 2_000), 3),
    );
    assert_eq!(status, 200, "{body}");
    let next = start + HTTP_WINDOW_MS;
    let (status, body) = post(addr, "/events", &events("checkout", next + 1_000, 2));
    assert_eq!(status, 200, "{body}");

    // Both windows fire once the watermark (wall clock - 0.5 s) passes.
    let rows_dir = root.path().join("out/rows");
    let deadline = Instant::now() + Duration::from_secs(30);
    while published_rows(&rows_dir).len() < 2 {
        assert!(Instant::now() < deadline, "the windows did not fire");
        std::thread::sleep(Duration::from_millis(100));
    }
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the second stop failed: {log}");

    let mut counts: Vec<(String, i64)> = published_rows(&rows_dir)
        .iter()
        .map(|row| {
            (
                row["window_start"]
                    .as_str()
                    .expect("window_start")
                    .to_owned(),
                row["count"].as_i64().expect("count"),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts.iter().map(|(_, count)| *count).collect::<Vec<_>>(),
        [6, 2],
        "window rows: {counts:?}"
    );
    let late = published_lines(&root.path().join("out/late"));
    assert!(late.is_empty(), "late events: {late:?}");
}

// ---------------------------------------------------------------------------
// A changed stateful component

fn counting_pipeline(out: &Path, size: &str, lateness: &str) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 20

[sources.gen]
type = "generator"
profile = "auth"
count = 1000000
events_per_second = 100
rate = 2000
seed = 3

[processors.per_user]
type = "window"
inputs = ["gen"]
size = "{size}"
allowed_lateness = "{lateness}"
group_by = ["user"]
aggregates = ["count"]

[sinks.rows]
type = "file"
inputs = ["per_user"]
path = "{}"
roll_interval = "0s"
format = "ndjson"
"#,
        out.join("rows").display()
    )
}

/// Runs `config` on `data` for a moment and stops it: must exit 0.
fn run_and_stop(config: &Path, data: &Path, args: &[&str]) -> String {
    let mut weir = Weir::start(config, data, args, &[]);
    weir.wait_holding(data);
    std::thread::sleep(Duration::from_millis(300));
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "weir failed: {log}");
    log
}

#[test]
fn a_changed_window_is_refused_unless_its_state_is_discarded() {
    let root = scratch();
    let (config, data, out) = (
        root.path().join("pipeline.toml"),
        root.path().join("data"),
        root.path().join("out"),
    );
    std::fs::write(&config, counting_pipeline(&out, "1m", "0s")).expect("config");
    run_and_stop(&config, &data, &[]);

    // Lateness does not shape the state: accepted.
    std::fs::write(&config, counting_pipeline(&out, "1m", "5s")).expect("config");
    run_and_stop(&config, &data, &[]);

    // A new size does: refused, naming the component and the option.
    std::fs::write(&config, counting_pipeline(&out, "5m", "5s")).expect("config");
    let (status, log) = Weir::start(&config, &data, &[], &[]).exit_within(RUN_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(1),
        "a changed window was accepted: {log}"
    );
    assert!(
        log.contains("`per_user` changed since its state was saved")
            && log.contains("size: \"1m\" → \"5m\"")
            && log.contains("--discard-state per_user"),
        "the refusal does not say what changed: {log}"
    );

    // With the flag it starts, the window empty.
    let log = run_and_stop(&config, &data, &["--discard-state", "per_user"]);
    assert!(
        log.contains("discarding the saved state"),
        "no word of the discarded state: {log}"
    );
    // The new size is now the saved one: a plain restart is accepted.
    run_and_stop(&config, &data, &[]);

    // A name that is nowhere is an error, not ignored.
    let (status, log) =
        Weir::start(&config, &data, &["--discard-state", "per_usr"], &[]).exit_within(RUN_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("`per_usr`"), "{log}");
}
