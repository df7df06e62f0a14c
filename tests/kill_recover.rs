//! Goal: after any crash — SIGKILL at any moment, or an abort at a chosen
//! step of the epoch protocol, including during recovery — restarting on
//! the same data directory until the run exits 0 yields committed output
//! where every input event's effect appears exactly once.
//!
//! Method: the `weir` binary runs a pipeline from a config file (a bounded,
//! rate-limited generator feeding a passthrough file sink and a keyed
//! tumbling count with its own file sink) as a child process.
//! - Random kills: the test kills the child with SIGKILL after a delay drawn
//!   from a seeded generator and restarts it, until it exits 0 or has been
//!   killed `KILLS_PER_SCENARIO_MAX` times, after which it runs to the end.
//!   Then a fresh scenario starts, until at least `KILLS_MIN` kills in all;
//!   `WEIR_KILL_TEST_KILLS=N` asks for more and `WEIR_KILL_TEST_SEED`
//!   changes the seed.
//! - Protocol steps: `WEIR_CRASH_AT=STEP:EPOCH` makes the child abort after
//!   a sink pre-commit, after a commit record, during sink commits, or
//!   inside recovery.
//! - Check: the published NDJSON files (never the staging directory) hold
//!   every generated id exactly once, and every (window, key) row exactly
//!   once with the count and sum computed directly from the generator.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{published_rows, Rng};
use weir::operators::config::{parse, SourceConfig};
use weir::operators::sources::generator::KeyedGenerator;
use weir::runtime::ShardContext;

/// What a scenario's generator and window are.
#[derive(Clone)]
struct Shape {
    events: u64,
    /// Events a second the generator emits at most.
    rate: u64,
    keys: Vec<String>,
    window_ms: u64,
}

impl Shape {
    /// 120 k events over 7 keys in 1 s windows, in about 1.2 s.
    fn default() -> Shape {
        Shape {
            events: 120_000,
            rate: 100_000,
            keys: ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
                .map(String::from)
                .to_vec(),
            window_ms: 1_000,
        }
    }
}
/// Kills per random-kill test in CI.
const KILLS_MIN: usize = 30;
/// Kills per scenario at most; then the run is left to finish. This bounds
/// the test even if, on a loaded machine, restarts make little progress
/// between kills.
const KILLS_PER_SCENARIO_MAX: usize = 20;
/// A single run that takes longer than this is stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn pipeline(out: &Path, shape: &Shape) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 20

[sources.gen]
type = "generator"
count = {events}
keys = {keys:?}
events_per_second = 10000
rate = {rate}
seed = 11

[processors.counts]
type = "window"
inputs = ["gen"]
size_ms = {window_ms}
group_by = "key"
aggregates = ["count", "sum:id"]

[sinks.raw]
type = "file"
inputs = ["gen"]
path = "{raw}"
format = "ndjson"

[sinks.windows]
type = "file"
inputs = ["counts"]
path = "{windows}"
format = "ndjson"
"#,
        raw = out.join("raw").display(),
        windows = out.join("windows").display(),
        events = shape.events,
        keys = shape.keys,
        rate = shape.rate,
        window_ms = shape.window_ms,
    )
}

/// One scenario's directories and config file.
struct Scenario {
    _root: tempfile::TempDir,
    shape: Shape,
    config: PathBuf,
    data: PathBuf,
    out: PathBuf,
}

impl Scenario {
    fn new() -> Scenario {
        Scenario::with_shape(Shape::default())
    }

    fn with_shape(shape: Shape) -> Scenario {
        let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let (data, out) = (root.path().join("data"), root.path().join("out"));
        let config = root.path().join("pipeline.toml");
        std::fs::write(&config, pipeline(&out, &shape)).expect("write config");
        Scenario {
            _root: root,
            shape,
            config,
            data,
            out,
        }
    }

    fn spawn(&self, crash_at: Option<&str>) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .arg("run")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match crash_at {
            Some(step) => command.env("WEIR_CRASH_AT", step),
            None => command.env_remove("WEIR_CRASH_AT"),
        };
        command.spawn().expect("start weir")
    }

    /// Runs to completion (no crash): must exit 0.
    fn run_to_end(&self) {
        let mut child = self.spawn(None);
        let Some(status) = wait_with_timeout(&mut child, RUN_TIMEOUT) else {
            // Killed by the timeout: what it logged says where it stood.
            panic!("weir did not finish in time; it logged:\n{}", stderr(child));
        };
        assert!(status.success(), "weir failed: {}", stderr(child));
    }

    /// Runs with a fail-point: must die by abort, not finish or fail.
    fn run_crashing_at(&self, step: &str) {
        let mut child = self.spawn(Some(step));
        let Some(status) = wait_with_timeout(&mut child, RUN_TIMEOUT) else {
            panic!(
                "weir did not stop in time at {step}; it logged:\n{}",
                stderr(child)
            );
        };
        let text = stderr(child);
        assert!(!status.success(), "weir did not crash at {step}");
        assert!(
            text.contains("WEIR_CRASH_AT"),
            "weir failed at {step} for another reason: {text}"
        );
    }

    fn check(&self) {
        check_output(&self.config, &self.out, &self.shape);
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll child") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    None
}

fn stderr(child: Child) -> String {
    let output = child.wait_with_output().expect("collect output");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Compares the committed output with a direct computation.
fn check_output(config_path: &Path, out: &Path, shape: &Shape) {
    let text = std::fs::read_to_string(config_path).expect("config");
    let config = parse(&text, "pipeline.toml").expect("valid config");
    let SourceConfig::Generator(generator) = &config.sources["gen"] else {
        panic!("the kill test's pipeline reads a generator");
    };
    let context = ShardContext {
        shard: 0,
        shards: 1,
        instance: 0,
        instances: 1,
        node: "gen".into(),
        committed_epoch: 0,
        snapshots: true,
        metrics: weir::runtime::metrics::Registry::new(1),
    };
    let events = KeyedGenerator::new(generator, &context);

    let mut seen = vec![0u32; shape.events as usize];
    for line in published_rows(&out.join("raw")) {
        let id = line["id"].as_u64().expect("id");
        seen[id as usize] += 1;
    }
    let lost = seen.iter().filter(|&&n| n == 0).count();
    let duplicated = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!(
        (lost, duplicated),
        (0, 0),
        "passthrough: {lost} ids lost, {duplicated} duplicated"
    );

    let mut expected: BTreeMap<(u64, String), (u64, u64)> = BTreeMap::new();
    for id in 0..shape.events {
        let start = events.event_time_ms(id) / shape.window_ms * shape.window_ms;
        let entry = expected
            .entry((start, events.key_of(id).to_string()))
            .or_default();
        entry.0 += 1;
        entry.1 += id;
    }
    let mut actual: BTreeMap<(u64, String), (u64, u64)> = BTreeMap::new();
    for row in published_rows(&out.join("windows")) {
        let key = (
            row["window_start_ms"].as_u64().expect("window_start_ms"),
            row["key"].as_str().expect("key").to_string(),
        );
        let value = (
            row["count"].as_u64().expect("count"),
            row["sum"].as_u64().expect("sum"),
        );
        assert!(
            actual.insert(key.clone(), value).is_none(),
            "window row {key:?} published twice"
        );
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "window rows: {} published, {} expected",
        actual.len(),
        expected.len()
    );
    assert_eq!(
        actual, expected,
        "window counts or sums differ from a direct computation"
    );
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_kills_lose_and_duplicate_nothing() {
    let kills_wanted = env_number("WEIR_KILL_TEST_KILLS", KILLS_MIN as u64) as usize;
    let mut rng = Rng(env_number("WEIR_KILL_TEST_SEED", 20261126));
    let (mut kills, mut scenarios) = (0usize, 0usize);
    while kills < kills_wanted {
        let scenario = Scenario::new();
        scenarios += 1;
        for _ in 0..KILLS_PER_SCENARIO_MAX {
            let mut child = scenario.spawn(None);
            // Up to ~0.3 s: from before recovery finishes to mid-run.
            let delay = Duration::from_millis(10 + rng.next() % 290);
            if let Some(status) = wait_with_timeout_or(&mut child, delay) {
                assert!(status.success(), "weir failed: {}", stderr(child));
                break;
            }
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            kills += 1;
        }
        // Finish the scenario (a no-op if the last run already completed).
        scenario.run_to_end();
        scenario.check();
    }
    eprintln!("{kills} kills over {scenarios} scenarios; every scenario's output exact");
}

/// Waits up to `delay`; `Some` if the child exited by itself.
fn wait_with_timeout_or(child: &mut Child, delay: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn crash_between_precommit_and_commit_record() {
    let scenario = Scenario::new();
    scenario.run_crashing_at("after-precommit:3");
    scenario.run_to_end();
    scenario.check();
}

#[test]
fn crash_after_the_commit_record_before_sinks_commit() {
    let scenario = Scenario::new();
    scenario.run_crashing_at("after-commit-record:3");
    scenario.run_to_end();
    scenario.check();
}

#[test]
fn crash_during_sink_commits() {
    let scenario = Scenario::new();
    scenario.run_crashing_at("during-commit:4");
    scenario.run_to_end();
    scenario.check();
}

#[test]
fn crash_inside_recovery() {
    let scenario = Scenario::new();
    scenario.run_crashing_at("after-commit-record:3");
    scenario.run_crashing_at("recovery:3");
    scenario.run_to_end();
    scenario.check();
}

#[test]
fn a_completed_run_restarts_as_a_no_op() {
    let scenario = Scenario::new();
    scenario.run_to_end();
    scenario.run_to_end();
    scenario.check();
}

/// Swept bases (issue 26): the window's bases after a run's first are
/// written a slice per epoch over the epochs after each base epoch. A run
/// of about 150 epochs of 20 ms (1 500 events at 500 a second) aborted
/// after epoch 82 has a complete sweep (begun at epoch 64, complete by 79)
/// newer than its first base, so the restart rebuilds the window from the
/// sweep's records on. 400 keys in one window, about 10 events an epoch:
/// most groups change in no epoch from their slice to the crash, so only
/// the slices bring them back. The output is exact.
#[test]
fn a_crash_after_a_swept_base_recovers_from_the_sweep() {
    let scenario = Scenario::with_shape(Shape {
        events: 1_500,
        rate: 500,
        keys: (0..400).map(|key| format!("k{key}")).collect(),
        window_ms: 3_600_000,
    });
    scenario.run_crashing_at("after-commit-record:82");
    let (mut begun, mut complete) = (Vec::new(), Vec::new());
    for shard in 0..2 {
        let dir = scenario.data.join(format!("shard-{shard}"));
        for record in weir::wal::inspect_records(&dir).expect("the shard's log reads") {
            let record = record.expect("a record");
            if record.kind != weir::wal::RecordType::OPERATOR_SWEEP {
                continue;
            }
            // After the node's name and instance (the runtime's record
            // header), the sweep flags: 1 = begins, 2 = complete.
            let name = u32::from_le_bytes(record.payload[..4].try_into().unwrap()) as usize;
            assert_eq!(&record.payload[4..4 + name], b"counts");
            let flags = record.payload[4 + name + 4];
            if flags & 1 != 0 {
                begun.push(record.epoch);
            }
            if flags & 2 != 0 {
                complete.push(record.epoch);
            }
        }
    }
    assert!(
        begun.contains(&64) && complete.iter().any(|&epoch| epoch < 82),
        "no sweep of the window's base completed before the crash: begun at {begun:?}, \
         complete at {complete:?}"
    );
    scenario.run_to_end();
    scenario.check();
}
