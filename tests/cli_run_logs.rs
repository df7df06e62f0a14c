//! Goal: `weir run` logs its lifecycle to standard error (filtered by
//! `WEIR_LOG`) and keeps its report on standard output; with
//! `[runtime] metrics_listen` it serves metrics while it runs.
//!
//! Method: run a small bounded pipeline with a data directory and a metrics
//! address of port 0 through the `weir` binary; check the exit status, the
//! report line on stdout, and the log lines on stderr; run it again with
//! `WEIR_LOG=off` and check stderr is empty.

use std::process::Command;

fn run(dir: &std::path::Path, log: Option<&str>) -> (Option<i32>, String, String) {
    let config = format!(
        r#"
[runtime]
shards = 1
data_dir = "{data}"
epoch_interval_ms = 10
metrics_listen = "127.0.0.1:0"

[sources.gen]
type = "generator"
count = 1000
keys = ["a", "b"]
events_per_second = 1000

[sinks.out]
type = "file"
inputs = ["gen"]
path = "{out}"
"#,
        data = dir.join("data").display(),
        out = dir.join("out").display(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, config).expect("write config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.arg("run").arg(&path).env_remove("WEIR_LOG");
    if let Some(log) = log {
        command.env("WEIR_LOG", log);
    }
    let output = command.output().expect("run weir");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn run_logs_lifecycle_to_stderr_and_reports_on_stdout() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (status, stdout, stderr) = run(dir.path(), None);
    assert_eq!(status, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("weir: finished at epoch "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    for event in [
        "serving metrics at /metrics",
        "starting the pipeline",
        "recovered the data directory",
        "committed the final epoch",
        "the run finished",
    ] {
        assert!(stderr.contains(event), "no `{event}` in:\n{stderr}");
    }
    assert!(stderr.contains(" INFO "), "{stderr}");

    // The same directory again: the run is complete; logs can be off.
    let (status, stdout, stderr) = run(dir.path(), Some("off"));
    assert_eq!(status, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("already completed"), "{stdout}");
    assert_eq!(stderr, "", "WEIR_LOG=off logs nothing");
}
