//! Goal: running as a service (issue 22): the admin endpoint (`[runtime]
//! metrics_listen`) answers Kubernetes-style probes: `/health` 200 while
//! the process serves, `/ready` 200 once the data directory is recovered
//! and every shard has started its nodes, and the source then takes input;
//! SIGHUP (`systemctl reload`, a closed terminal) neither ends the run nor
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
        log.contains("SIGHUP: reloading the pipeline file is not supported yet"),
        "{log}"
    );
}
