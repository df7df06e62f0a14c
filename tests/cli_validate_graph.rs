//! Goal: `weir validate` makes every check `weir run` makes before starting,
//! without running anything, and `weir graph` prints a pipeline's components
//! and edges as text and as Graphviz DOT.
//!
//! Method: run the `weir` binary on the example pipeline and on a faulty
//! copy of it; check the exit status and the output exactly.

use std::process::Command;

fn weir(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run weir");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_the_example_and_names_the_fault_in_a_bad_file() {
    let (status, stdout, stderr) = weir(&["validate", "examples/logins.toml"]);
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "examples/logins.toml: valid: 1 sources, 2 processors, 2 sinks\n"
    );

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string("examples/logins.toml")
        .expect("example")
        .replace("inputs = [\"per_second\"]", "inputs = [\"per_minute\"]");
    std::fs::write(&bad, text).expect("write");
    let (status, stdout, stderr) = weir(&["validate", bad.to_str().unwrap()]);
    assert_eq!(status, Some(2), "{stdout}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("sinks.counts") && stderr.contains("per_minute"),
        "{stderr}"
    );
}

#[test]
fn graph_prints_text_and_dot() {
    let (status, stdout, stderr) = weir(&["graph", "examples/logins.toml"]);
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "source    logins (generator)\n\
         processor per_second (window) <- logins\n\
         processor raw_events (map) <- logins\n\
         sink      counts (file) <- per_second\n\
         sink      raw (file) <- raw_events\n"
    );
    let (status, stdout, stderr) = weir(&["graph", "examples/logins.toml", "--format", "dot"]);
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "digraph pipeline {\n  rankdir=LR;\n\
         \x20 \"logins\" [shape=invhouse, label=\"logins\\ngenerator\"];\n\
         \x20 \"per_second\" [shape=box, label=\"per_second\\nwindow\"];\n\
         \x20 \"raw_events\" [shape=box, label=\"raw_events\\nmap\"];\n\
         \x20 \"counts\" [shape=house, label=\"counts\\nfile\"];\n\
         \x20 \"raw\" [shape=house, label=\"raw\\nfile\"];\n\
         \x20 \"logins\" -> \"per_second\";\n\
         \x20 \"logins\" -> \"raw_events\";\n\
         \x20 \"per_second\" -> \"counts\";\n\
         \x20 \"raw_events\" -> \"raw\";\n}\n"
    );
}

/// A scaled-out pipeline's graph shows the Kafka topics it keeps for
/// itself: the repartition topic of the window keyed otherwise than the
/// input, and each window's changelog.
#[test]
fn graph_shows_a_scaled_out_pipelines_repartition_and_changelog_topics() {
    let example = "examples/pipelines/scale-out.toml";
    let (status, stdout, stderr) = weir(&["graph", example]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        stdout.ends_with(
            "topic     logins-counts-per_user-repartition (kafka, repartition of per_user)\n\
             topic     logins-counts-per_host-changelog (kafka, changelog of per_host)\n\
             topic     logins-counts-per_user-changelog (kafka, changelog of per_user)\n"
        ),
        "{stdout}"
    );
    let (status, stdout, stderr) = weir(&["graph", example, "--format", "dot"]);
    assert_eq!(status, Some(0), "{stderr}");
    for line in [
        "\"logins-counts-per_user-repartition\" [shape=cylinder, \
         label=\"logins-counts-per_user-repartition\\nkafka repartition\"];",
        "\"per_user\" -> \"logins-counts-per_user-repartition\" [style=dashed];",
        "\"logins-counts-per_user-repartition\" -> \"per_user\" [style=dashed];",
        "\"per_host\" -> \"logins-counts-per_host-changelog\" [style=dotted];",
    ] {
        assert!(stdout.contains(line), "{line} not in:\n{stdout}");
    }
    assert!(!stdout.contains("per_host-repartition"), "{stdout}");
}

#[test]
fn validate_reports_every_error_of_a_yaml_file_and_the_examples_are_valid() {
    for example in [
        "examples/pipelines/logging.toml",
        "examples/pipelines/analytics.yaml",
        "examples/pipelines/security.toml",
        // Validation makes no connection: no broker needed.
        "examples/pipelines/kafka.toml",
        "examples/pipelines/scale-out.toml",
    ] {
        let (status, stdout, stderr) = weir(&["validate", example]);
        assert_eq!(status, Some(0), "{example}: {stderr}");
        assert!(
            stdout.starts_with(&format!("{example}: valid: ")),
            "{stdout}"
        );
    }

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string("examples/pipelines/analytics.yaml")
        .expect("example")
        .replace(
            "condition: 'path != \"/health\"'",
            "condition: 'path != 404'",
        )
        .replace("size: 1m", "size: 1 parsec")
        .replace("field: user_id", "field: user");
    std::fs::write(&bad, text).expect("write");
    let (status, stdout, stderr) = weir(&["validate", bad.to_str().unwrap()]);
    assert_eq!(status, Some(2), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    let name = bad.display().to_string();
    // In file order, each at its line and column, naming the component.
    assert!(
        lines[0].starts_with(&format!(
            "weir: {name}:24:16: processors.visits: `condition`: "
        )),
        "{stderr}"
    );
    assert!(
        lines[0].contains("string") && lines[0].contains("int"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("weir: {name}:31:"))
            && lines[1].contains("processors.distinct_users"),
        "{stderr}"
    );
    assert!(lines[1].contains("no field `user`"), "{stderr}");
    assert!(
        lines[2].starts_with(&format!("weir: {name}:37:"))
            && lines[2].contains("processors.top_pages"),
        "{stderr}"
    );
    assert_eq!(lines[3], "weir: 3 errors");
}
