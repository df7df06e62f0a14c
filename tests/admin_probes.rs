//! Goal: running as a service (issue 22): the admin endpoint (`[runtime]
//! metrics_listen`) answers Kubernetes-style probes: `/health` 200 while
//! the process serves, `/ready` 200 once the data directory is recovered
//! and every shard has started its nodes, and the source then takes input;
//! SIGHUP (`systemctl reload`, `weir reload`) with an unchanged or bad file
//! neither ends the run nor
//! goes unsaid.
//!
//! Method: the `weir` binary runs a pipeline file as a child process; the
//! probes are read with `curl`, as a kubelet's HTTP probe reads them.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{free_port, post, published_lines, scratch, wait_for, Weir};

/// `curl` of `http://addr/path`: the status and the body.
fn probe(port: u16, path: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl (scripts/install-build-deps.sh)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn health_and_ready_answer_probes() {
    let root = scratch();
    let (admin, port) = (free_port(), free_port());
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 50
metrics_listen = "127.0.0.1:{admin}"

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"

[sinks.rows]
type = "file"
inputs = ["events"]
path = "{}"
format = "ndjson"
roll_interval = "0s"
"#,
        out.display()
    );
    std::fs::write(&config, pipeline).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_for("/ready", Duration::from_secs(30), || {
        probe(admin, "/ready").0 == 200
    });
    assert_eq!(probe(admin, "/ready"), (200, "ready\n".into()));
    assert_eq!(probe(admin, "/health"), (200, "ok\n".into()));
    // Ready means it takes input.
    let addr = ([127, 0, 0, 1], port).into();
    let (status, response) = post(addr, "/events", "{\"a\":1}\n");
    assert_eq!(status, 200, "{response}");
    wait_for("the row", Duration::from_secs(30), || {
        published_lines(&out).len() == 1
    });
    // SIGHUP: logged, and the run goes on taking input.
    let hup = Command::new("kill")
        .arg("-HUP")
        .arg(weir.child.id().to_string())
        .status()
        .expect("kill");
    assert!(hup.success());
    let (status, response) = post(addr, "/events", "{\"a\":2}\n");
    assert_eq!(status, 200, "{response}");
    assert_eq!(probe(admin, "/ready").0, 200);
    wait_for("the second row", Duration::from_secs(30), || {
        published_lines(&out).len() == 2
    });
    weir.terminate();
    let (status, log) = weir.exit_within(Duration::from_secs(60));
    assert!(status.success(), "the stop failed: {log}");
    assert!(
        log.contains("SIGHUP: not reloading") && log.contains("the file did not change"),
        "{log}"
    );
}

/// `weir` with `args`: its exit status, standard output and error.
fn weir_cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("run weir");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Goal: `weir tap` and `weir top` read a running pipeline as an SRE
/// would, and its metrics name user components only, count each event
/// once per component and output, and show each sink's deliveries.
#[test]
fn tap_top_and_metrics_read_a_running_pipeline() {
    let root = scratch();
    let (admin, port) = (free_port(), free_port());
    let out = root.path().join("out");
    let counts = root.path().join("counts");
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 50
metrics_listen = "127.0.0.1:{admin}"
tap = true

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"

[processors.per_key]
type = "window"
inputs = ["events"]
size_ms = 1000
group_by = "key"
aggregates = ["count"]

[sinks.rows]
type = "file"
inputs = ["events"]
path = "{}"
format = "ndjson"
roll_interval = "0s"

[sinks.counts]
type = "file"
inputs = ["per_key"]
path = "{}"
format = "ndjson"
roll_interval = "0s"
"#,
        out.display(),
        counts.display()
    );
    std::fs::write(&config, pipeline).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_for("/ready", Duration::from_secs(30), || {
        probe(admin, "/ready").0 == 200
    });
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let posted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Load while the tap listens: it samples what flows from now on.
    let load = std::thread::spawn({
        let (posted, stop) = (posted.clone(), stop.clone());
        move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let body = format!("{{\"n\":{n}}}\n{{\"n\":{}}}\n", n + 1);
                let (status, response) = post(addr, "/events", &body);
                assert_eq!(status, 200, "{response}");
                n += 2;
                posted.store(n, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });

    let url = format!("http://127.0.0.1:{admin}");
    let config_arg = config.display().to_string();
    let (ok, stdout, stderr) =
        weir_cli(&["tap", "events", "--limit", "5", "--config", &config_arg]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for line in &lines {
        let row: serde_json::Value = serde_json::from_str(line).expect("NDJSON");
        let fields: Vec<&str> = row
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        // The http source's rows: id, key, timestamp, body (a null key,
        // as these have none, is left out).
        assert_eq!(fields, ["body", "id", "timestamp"], "{line}");
        assert!(
            row["body"].as_str().unwrap().starts_with("{\"n\":"),
            "{line}"
        );
    }
    // A window's output once it fires, by --url.
    let (ok, stdout, stderr) = weir_cli(&[
        "tap", "per_key", "--limit", "1", "--wait", "10s", "--url", &url,
    ]);
    assert!(ok, "{stderr}");
    let row: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one row");
    assert!(row["count"].as_i64().unwrap() >= 1, "{stdout}");
    // A bad request is named.
    let (ok, _, stderr) = weir_cli(&["tap", "events", "--limit", "0", "--url", &url]);
    assert!(!ok);
    assert!(
        stderr.contains("400") && stderr.contains("`limit` must be 1 to 10000"),
        "{stderr}"
    );
    // Unknown outputs are named with what exists; internal nodes are not.
    let (ok, _, stderr) = weir_cli(&["tap", "nope", "--url", &url]);
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
    assert!(
        stderr.contains("no output `nope`; tappable outputs: events, events.dead_letter, per_key"),
        "{stderr}"
    );

    let (ok, frame, stderr) = weir_cli(&["top", "--once", "--url", &url]);
    assert!(ok, "{stderr}");
    assert!(frame.starts_with("committed epoch "), "{frame}");
    for component in ["events", "per_key", "rows", "counts"] {
        assert!(
            frame
                .lines()
                .any(|line| line.starts_with(&format!("{component} "))),
            "{component} in:\n{frame}"
        );
    }
    assert!(!frame.contains(":rows"), "{frame}");

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.join().expect("the load");
    let posted = posted.load(std::sync::atomic::Ordering::SeqCst);
    wait_for("every row published", Duration::from_secs(30), || {
        published_lines(&out).len() as u64 == posted
    });
    // Counted once per component and output, though two components read
    // `events`; the internal `events:rows` node is not a component.
    let (_, metrics) = probe(admin, "/metrics");
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    assert_eq!(
        value("weir_component_events_out_total{component=\"events\",output=\"_default\"}"),
        posted as f64
    );
    assert_eq!(
        value("weir_component_events_in_total{component=\"rows\"}"),
        posted as f64
    );
    assert!(!metrics.contains(":rows"), "{metrics}");
    // Each sink's deliveries: commits, none failed, no backlog once idle.
    assert!(value("weir_sink_commits_total{component=\"rows\"}") >= 1.0);
    assert_eq!(
        value("weir_sink_commit_failures_total{component=\"rows\"}"),
        0.0
    );
    assert!(value("weir_sink_delivery_latency_seconds_count{component=\"rows\"}") >= 1.0);
    weir.terminate();
    let (status, log) = weir.exit_within(Duration::from_secs(60));
    assert!(status.success(), "the stop failed: {log}");
}

/// Goal: `/tap` is off unless the pipeline turns it on, and says how.
#[test]
fn tap_is_off_by_default() {
    let root = scratch();
    let (admin, port) = (free_port(), free_port());
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        r#"
[runtime]
shards = 1
metrics_listen = "127.0.0.1:{admin}"

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"

[sinks.rows]
type = "stdout"
inputs = ["events"]
"#
    );
    std::fs::write(&config, pipeline).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_for("/ready", Duration::from_secs(30), || {
        probe(admin, "/ready").0 == 200
    });
    let (status, body) = probe(admin, "/tap?output=events");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("`[runtime] tap = true`"), "{body}");
    let url = format!("http://127.0.0.1:{admin}");
    let (ok, _, stderr) = weir_cli(&["tap", "events", "--url", &url]);
    assert!(!ok);
    assert!(stderr.contains("403"), "{stderr}");
    weir.terminate();
    let (status, log) = weir.exit_within(Duration::from_secs(60));
    assert!(status.success(), "the stop failed: {log}");
}

/// The reload test's pipeline: `events` (a fixed minute's timestamps) into
/// `rows`, and a one-minute count into `counts`; `extra` is more TOML.
fn reload_pipeline(port: u16, out: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 50

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"
timestamp_field = "ts"
schema = {{ n = "int" }}

[processors.per_minute]
type = "window"
inputs = ["events"]
size = "1m"
time_field = "timestamp"
aggregates = ["count"]

[sinks.rows]
type = "file"
inputs = ["events"]
path = "{rows}"
roll_interval = "0s"

[sinks.counts]
type = "file"
inputs = ["per_minute"]
path = "{counts}"
roll_interval = "0s"
{extra}"#,
        rows = out.join("rows").display(),
        counts = out.join("counts").display(),
    )
}

/// Goal: reload (issue 22). SIGHUP with a bad file leaves the running
/// pipeline untouched; with a valid changed file (a sink added) it restarts
/// the pipeline in-process from a savepoint: nothing committed is lost or
/// repeated, the window's state carries over (one count of every event, as
/// an uninterrupted run gives), and the new sink gets what came after.
/// `weir reload` sends the signal.
#[test]
fn sighup_reloads_a_changed_file_and_keeps_a_bad_one_out() {
    const BATCH: u64 = 100;
    let root = scratch();
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, reload_pipeline(port, &out, "")).expect("config");
    let data = root.path().join("data");
    let weir = Weir::start(&config, &data, &["--drain"], &[]);
    support::wait_listening(addr, Duration::from_secs(10));
    // One minute of event time, long past: every event lands in one window.
    let minute = support::now_ms() / 60_000 * 60_000 - 3_600_000;
    let ts = support::rfc3339(minute + 1_000);
    let send = |batch: u64| {
        let body: String = (batch * BATCH..(batch + 1) * BATCH)
            .map(|n| format!("{{\"ts\":\"{ts}\",\"n\":{n}}}\n"))
            .collect();
        // Refused while the pipeline restarts: retried, as a shipper does.
        support::post_until_accepted(addr, body.as_bytes(), &format!("reload-{batch}"));
    };
    let reload = || {
        let (ok, stdout, stderr) = weir_cli(&["reload", "--data-dir", &data.display().to_string()]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("to reload its pipeline file"), "{stdout}");
    };
    send(0);
    wait_for("batch 0", Duration::from_secs(30), || {
        published_lines(&out.join("rows")).len() == BATCH as usize
    });

    // A bad file: refused, the run goes on.
    std::fs::write(&config, "[sources.events\ntype = ").expect("bad config");
    reload();
    std::thread::sleep(Duration::from_millis(500));
    send(1);
    wait_for("batch 1", Duration::from_secs(30), || {
        published_lines(&out.join("rows")).len() == 2 * BATCH as usize
    });

    // A file that would change the window's state: refused too.
    let resized = reload_pipeline(port, &out, "").replace("size = \"1m\"", "size = \"2m\"");
    std::fs::write(&config, resized).expect("config");
    reload();
    std::thread::sleep(Duration::from_millis(500));

    // A valid changed file: one more sink.
    let extra = format!(
        "\n[sinks.copy]\ntype = \"file\"\ninputs = [\"events\"]\npath = \"{}\"\nroll_interval = \"0s\"\n",
        out.join("copy").display()
    );
    std::fs::write(&config, reload_pipeline(port, &out, &extra)).expect("config");
    reload();
    // The restarted pipeline answers (the new sink exists once it runs).
    wait_for("the new sink", Duration::from_secs(30), || {
        out.join("copy").exists()
    });
    send(2);
    wait_for("batch 2 in both", Duration::from_secs(30), || {
        published_lines(&out.join("rows")).len() == 3 * BATCH as usize
            && published_lines(&out.join("copy")).len() == BATCH as usize
    });
    weir.terminate();
    let (status, log) = weir.exit_within(Duration::from_secs(60));
    assert!(status.success(), "the stop failed: {log}");
    assert!(log.contains("SIGHUP: not reloading"), "{log}");
    assert!(
        log.contains("`per_minute` changed an option that shapes its state: size: \"1m\" → \"2m\""),
        "{log}"
    );
    assert!(log.contains("reloading"), "{log}");

    let ids = |dir: &str| -> Vec<u64> {
        let mut ids: Vec<u64> = support::published_rows(&out.join(dir))
            .iter()
            .map(|row| row["n"].as_u64().expect("n"))
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids("rows"), (0..3 * BATCH).collect::<Vec<_>>());
    assert_eq!(ids("copy"), (2 * BATCH..3 * BATCH).collect::<Vec<_>>());
    // The window kept its state across the reload: one row, every event.
    let counts = support::published_rows(&out.join("counts"));
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(counts[0]["count"].as_u64(), Some(3 * BATCH), "{counts:?}");
}
