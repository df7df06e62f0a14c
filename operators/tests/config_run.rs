//! Goal: a pipeline file runs end to end under the exactly-once epoch
//! protocol: `build_graph` wires generator → (window →) file sink, and the
//! published output holds every record's effect exactly once; a completed
//! run, started again on its data directory, publishes nothing new; what
//! this version cannot run is refused with an error naming the component.
//!
//! Method:
//! - Parse TOML text, `build_graph`, run on a 2-shard runtime with a data
//!   directory and 10 ms epochs.
//! - Passthrough: read the published NDJSON files (not `.staging/`) and
//!   check every id `0..COUNT` appears exactly once, with the generator's key
//!   and time.
//! - Windowed: compare the published rows with a direct computation from the
//!   generator's rules (`KeyedGenerator::key_of` / `event_time_ms`). The
//!   generator is rate-limited so the run spans many epochs and windows
//!   close in several of them; no assertion depends on timing.
//! - Rerun: a second `run()` on the same data directory reports
//!   `already_complete` and leaves the published files byte for byte.
//! - Refusals and a sink that cannot create its directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use weir_operators::config::{build_graph, parse, ConfigErrorKind, SourceConfig};
use weir_operators::row::parse_timestamp;
use weir_operators::sinks::file::STAGING_DIRECTORY;
use weir_operators::sources::generator::KeyedGenerator;
use weir_runtime::{RunReport, Runtime};

const COUNT: u64 = 20_000;
const KEYS: &str = r#"["k0", "k1", "k2", "k3", "k4"]"#;

fn run(text: &str, data: &Path) -> Result<RunReport, weir_runtime::Error> {
    let config = parse(text, "pipeline.toml").expect("valid pipeline");
    let graph = build_graph(&config).expect("runnable pipeline");
    let runtime = Runtime::builder()
        .shards(2)
        .data_dir(data)
        .epoch_interval(Duration::from_millis(10))
        .build()
        .expect("runtime starts");
    runtime.run(graph)
}

/// Every published file under `out` (sorted by name) and its contents.
fn published(out: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(out).expect("list output").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == STAGING_DIRECTORY {
            continue;
        }
        assert!(name.ends_with(".ndjson"), "unexpected file {name}");
        files.insert(name, fs::read_to_string(entry.path()).expect("read output"));
    }
    files
}

fn lines(files: &BTreeMap<String, String>) -> Vec<serde_json::Value> {
    files
        .values()
        .flat_map(|text| text.lines())
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn staged_left(out: &Path) -> usize {
    fs::read_dir(out.join(STAGING_DIRECTORY))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

fn generator_text(rate: Option<u64>) -> String {
    let rate = rate.map_or(String::new(), |rate| format!("rate = {rate}\n"));
    format!(
        "[sources.gen]\ntype = \"generator\"\ncount = {COUNT}\nkeys = {KEYS}\n\
         events_per_second = 1000\nseed = 3\n{rate}\n"
    )
}

fn sink_text(input: &str, out: &Path) -> String {
    format!(
        "[sinks.out]\ntype = \"file\"\ninputs = [\"{input}\"]\npath = {:?}\n",
        out.display().to_string()
    )
}

/// A generator equal to the configured one, for its key and time rules.
fn rules(text: &str) -> KeyedGenerator {
    let config = parse(text, "pipeline.toml").expect("valid pipeline");
    let SourceConfig::Generator(generator) = &config.sources["gen"] else {
        panic!("`gen` is a generator");
    };
    KeyedGenerator::resume(generator, 0, 1, 0)
}

#[test]
fn passthrough_publishes_every_id_once_and_a_rerun_nothing_new() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = out.path().join("out");
    let text = generator_text(None) + &sink_text("gen", &out);
    let report = run(&text, data.path()).expect("run succeeds");
    assert!(!report.already_complete);
    assert!(report.last_committed_epoch >= 1);

    let files = published(&out);
    let rules = rules(&text);
    let mut seen = vec![false; COUNT as usize];
    for line in lines(&files) {
        let id = line["id"].as_u64().expect("id");
        assert!(id < COUNT, "id {id} out of range");
        assert!(!seen[id as usize], "id {id} published twice");
        seen[id as usize] = true;
        assert_eq!(line["key"].as_str(), Some(rules.key_of(id)));
        let time = line["timestamp"].as_str().and_then(parse_timestamp);
        assert_eq!(time, Some(rules.event_time_ms(id) as i64), "{line}");
    }
    let missing = seen.iter().filter(|seen| !**seen).count();
    assert_eq!(missing, 0, "{missing} ids not published");
    assert_eq!(staged_left(&out), 0, "staged files left behind");

    let again = run(&text, data.path()).expect("a completed run restarts cleanly");
    assert!(again.already_complete);
    assert_eq!(again.last_committed_epoch, report.last_committed_epoch);
    assert_eq!(published(&out), files, "the rerun changed the output");
}

#[test]
fn generator_events_reach_row_processors_through_the_adapter() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = out.path().join("out");
    let filter = "[processors.k1]\ntype = \"filter\"\ninputs = [\"gen\"]\n\
                  condition = 'key == \"k1\" and id % 2 == 0'\n\n";
    let text = generator_text(None) + filter + &sink_text("k1", &out);
    run(&text, data.path()).expect("run succeeds");
    let rules = rules(&text);
    let mut got: Vec<(u64, i64)> = lines(&published(&out))
        .iter()
        .map(|line| {
            assert!(line.get("body").is_none(), "generated events have no body");
            assert_eq!(line["key"].as_str(), Some("k1"));
            let at = weir_operators::row::parse_timestamp(line["timestamp"].as_str().unwrap());
            (line["id"].as_u64().expect("id"), at.expect("timestamp"))
        })
        .collect();
    got.sort_unstable();
    let expected: Vec<(u64, i64)> = (0..COUNT)
        .filter(|&id| rules.key_of(id) == "k1" && id % 2 == 0)
        .map(|id| (id, rules.event_time_ms(id) as i64))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn windowed_rows_equal_a_direct_computation() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = out.path().join("out");
    // 20 000 events at 40 000/s: about half a second, ~50 epochs; event
    // time spans 20 s, so 40 windows of 500 ms.
    let text = generator_text(Some(40_000))
        + "[processors.counts]\ntype = \"window\"\ninputs = [\"gen\"]\nsize_ms = 500\n\
           group_by = \"key\"\naggregates = [\"count\", \"sum:id\"]\n\n"
        + &sink_text("counts", &out);
    let report = run(&text, data.path()).expect("run succeeds");
    eprintln!("committed epochs: {}", report.last_committed_epoch);

    let rules = rules(&text);
    let mut expected: BTreeMap<(u64, String), (u64, u64)> = BTreeMap::new();
    for id in 0..COUNT {
        let start = rules.event_time_ms(id) / 500 * 500;
        let row = expected
            .entry((start, rules.key_of(id).to_owned()))
            .or_default();
        row.0 += 1;
        row.1 += id;
    }
    let files = published(&out);
    let mut got = BTreeMap::new();
    for line in lines(&files) {
        let start = line["window_start_ms"].as_u64().expect("start");
        assert_eq!(line["window_end_ms"].as_u64(), Some(start + 500));
        let key = line["key"].as_str().expect("key").to_owned();
        let row = (
            line["count"].as_u64().expect("count"),
            line["sum"].as_u64().expect("sum"),
        );
        let previous = got.insert((start, key.clone()), row);
        assert!(previous.is_none(), "row ({start}, {key}) published twice");
    }
    assert_eq!(got, expected);
    assert_eq!(staged_left(&out), 0, "staged files left behind");

    let again = run(&text, data.path()).expect("a completed run restarts cleanly");
    assert!(again.already_complete);
    assert_eq!(again.last_committed_epoch, report.last_committed_epoch);
    assert_eq!(published(&out), files, "the rerun changed the output");
}

#[test]
fn combinations_this_version_cannot_run_are_refused_where_written() {
    let out = Path::new("/nonexistent/out");
    let window = |name: &str, input: &str| {
        format!(
            "[processors.{name}]\ntype = \"window\"\ninputs = [\"{input}\"]\nsize_ms = 10\n\
             group_by = \"key\"\naggregates = [\"count\"]\n\n"
        )
    };
    // A `size_ms` window's rows have no `timestamp`: refused when the file
    // is checked, at the window's inputs.
    let window_of_window =
        generator_text(None) + &window("a", "gen") + &window("b", "a") + &sink_text("b", out);
    let error = parse(&window_of_window, "pipeline.toml").expect_err("refused");
    assert!(error.location.is_some(), "{error}");
    assert_eq!(error.kind, ConfigErrorKind::Invalid);
    assert_eq!(error.component.as_deref(), Some("processors.b"));
    let shown = error.to_string();
    assert!(
        shown.contains("processors.b") && shown.contains("inputs") && shown.contains("timestamp"),
        "{shown}"
    );

    let mixed = generator_text(None)
        + &window("a", "gen")
        + &format!(
            "[sinks.out]\ntype = \"file\"\ninputs = [\"gen\", \"a\"]\npath = {:?}\n",
            out.display().to_string()
        );
    // Refused when the file is checked, at the offending input.
    let error = parse(&mixed, "pipeline.toml").expect_err("refused");
    assert!(error.location.is_some(), "{error}");
    assert_eq!(error.kind, ConfigErrorKind::Unsupported);
    assert_eq!(error.component.as_deref(), Some("sinks.out"));
}

#[test]
fn a_sink_that_cannot_open_its_directory_fails_the_run_naming_the_path() {
    let (data, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blocker = scratch.path().join("blocker");
    fs::write(&blocker, b"a file, not a directory").unwrap();
    let out = blocker.join("out");
    let text = generator_text(None) + &sink_text("gen", &out);
    let error = run(&text, data.path()).expect_err("the sink cannot start");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains(&out.display().to_string()), "{message}");
}
