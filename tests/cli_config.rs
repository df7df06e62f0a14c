//! Goal: `weir run` on an invalid config file exits with status 2 and a
//! message naming the file, the line and the component at fault; on a
//! missing file it names the file.
//!
//! Method: write faulty config files, run the `weir` binary on them, check
//! the exit status and standard error.

use std::process::Command;

fn run(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, config).expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .arg(&path)
        .output()
        .expect("run weir");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_field_names_file_line_and_component() {
    let (status, stderr) = run(r#"
[sources.gen]
type = "generator"
count = 10
keys = ["a"]
events_per_second = 10

[sinks.out]
type = "file"
inputs = ["gen"]
pth = "./out"
"#);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("pipeline.toml:11:"), "{stderr}");
    assert!(stderr.contains("sinks.out"), "{stderr}");
    assert!(stderr.contains("pth"), "{stderr}");
}

#[test]
fn an_input_naming_nothing_names_the_component() {
    let (status, stderr) = run(r#"
[sources.gen]
type = "generator"
keys = ["a"]
events_per_second = 10

[sinks.out]
type = "file"
inputs = ["missing"]
path = "./out"
"#);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("pipeline.toml:"), "{stderr}");
    assert!(stderr.contains("sinks.out"), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

#[test]
fn a_missing_file_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "/nonexistent/pipeline.toml"])
        .output()
        .expect("run weir");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/pipeline.toml"), "{stderr}");
}

#[test]
fn an_invalid_metrics_listen_names_the_key() {
    let (status, stderr) = run(r#"
[runtime]
metrics_listen = "localhost"

[sources.gen]
type = "generator"
count = 10
keys = ["a"]
events_per_second = 10

[sinks.out]
type = "file"
inputs = ["gen"]
path = "./out"
"#);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("pipeline.toml:3:"), "{stderr}");
    assert!(stderr.contains("runtime"), "{stderr}");
    assert!(stderr.contains("metrics_listen"), "{stderr}");
}
