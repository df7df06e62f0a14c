//! Goal: pipeline files parse into the documented types, and every class of
//! mistake is reported as `FILE:LINE:COLUMN: COMPONENT: MESSAGE` pointing
//! at the right line and component.
//!
//! Method: a valid file is parsed, written back with `toml` and parsed
//! again; then each error class is provoked by a small edit of that file
//! (or a tailored file) and the error's kind, line, column and component
//! are compared with what a reader of the file would point at.

use weir_operators::config::{
    parse, Aggregate, ConfigError, ConfigErrorKind, FileFormat, Location, ProcessorConfig,
    SinkConfig, SourceConfig,
};

const VALID: &str = r#"[runtime]
shards = 2
data_dir = "./data"
epoch_interval_ms = 100

[sources.gen]
type = "generator"
count = 100000
keys = ["alice", "bob", "carol"]
events_per_second = 1000
start_ms = 0
seed = 7
rate = 50000

[processors.counts]
type = "window"
inputs = ["gen"]
size_ms = 1000
group_by = "key"
aggregates = ["count", "sum:id"]

[sinks.out]
type = "file"
inputs = ["counts"]
path = "./out"
format = "ndjson"
"#;

/// Parses `text` and expects an error of `kind` at `line:column` in
/// `component`; returns it for further checks.
fn error_at(
    text: &str,
    kind: ConfigErrorKind,
    line: usize,
    column: usize,
    component: Option<&str>,
) -> ConfigError {
    let error = match parse(text, "pipeline.toml") {
        Ok(config) => panic!("expected {kind:?}, parsed {config:?}"),
        Err(error) => error,
    };
    assert_eq!(error.kind, kind, "{error}");
    assert_eq!(error.file, "pipeline.toml", "{error}");
    assert_eq!(error.location, Some(Location { line, column }), "{error}");
    assert_eq!(error.component.as_deref(), component, "{error}");
    error
}

/// `VALID` with the first `from` replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from:?} not in the valid file");
    VALID.replacen(from, to, 1)
}

#[test]
fn valid_file_parses_and_round_trips() {
    let config = parse(VALID, "pipeline.toml").expect("valid");
    assert_eq!(config.runtime.shards, Some(2));
    assert_eq!(config.runtime.epoch_interval_ms, 100);
    let SourceConfig::Generator(generator) = &config.sources["gen"] else {
        panic!("`gen` is a generator");
    };
    assert_eq!(generator.count, Some(100_000));
    assert_eq!(generator.keys, ["alice", "bob", "carol"]);
    assert_eq!((generator.seed, generator.rate), (7, Some(50_000)));
    let ProcessorConfig::Window(window) = &config.processors["counts"] else {
        panic!("a window");
    };
    assert_eq!(window.inputs, ["gen"]);
    assert_eq!(
        window.aggregates,
        [Aggregate::Count, Aggregate::Sum("id".into())]
    );
    let SinkConfig::File(file) = &config.sinks["out"] else {
        panic!("`out` is a file sink");
    };
    assert_eq!(file.format, FileFormat::Ndjson);

    let written = toml::to_string(&config).expect("serializes");
    let again = parse(&written, "written.toml").expect("written form parses");
    assert_eq!(again, config);
}

#[test]
fn defaults_apply_when_optional_fields_are_absent() {
    let text = r#"
[sources.gen]
type = "generator"
keys = ["a"]
events_per_second = 10
[sinks.out]
type = "file"
inputs = ["gen"]
path = "out"
"#;
    let config = parse(text, "small.toml").expect("valid");
    assert_eq!(config.runtime.shards, None);
    assert_eq!(config.runtime.epoch_interval_ms, 100);
    let SourceConfig::Generator(generator) = &config.sources["gen"] else {
        panic!("`gen` is a generator");
    };
    assert_eq!(
        (generator.count, generator.rate, generator.seed),
        (None, None, 0)
    );
}

#[test]
fn syntax_error_names_line_and_column() {
    let text = edit("size_ms = 1000", "size_ms = = 1000");
    let error = error_at(&text, ConfigErrorKind::Syntax, 18, 11, None);
    assert!(
        error.to_string().starts_with("pipeline.toml:18:11: "),
        "{error}"
    );
}

#[test]
fn unknown_field_names_the_field_line_and_component() {
    let text = edit("path = \"./out\"", "pth = \"./out\"");
    let error = error_at(&text, ConfigErrorKind::Schema, 25, 1, Some("sinks.out"));
    assert_eq!(
        error.to_string(),
        "pipeline.toml:25:1: sinks.out: unknown field `pth`, expected one of `inputs`, \
         `path`, `format`, `compression`, `row_group_rows`, `roll_interval`, `roll_size`"
    );
}

#[test]
fn wrong_type_points_at_the_value() {
    let text = edit("size_ms = 1000", "size_ms = \"1s\"");
    let error = error_at(
        &text,
        ConfigErrorKind::Schema,
        18,
        11,
        Some("processors.counts"),
    );
    assert!(error.message.contains("u64"), "{error}");
}

#[test]
fn negative_size_is_a_type_error_at_the_value() {
    let text = edit("size_ms = 1000", "size_ms = -5");
    error_at(
        &text,
        ConfigErrorKind::Schema,
        18,
        11,
        Some("processors.counts"),
    );
}

#[test]
fn unknown_type_points_at_the_type() {
    let text = edit("type = \"window\"", "type = \"windw\"");
    let error = error_at(
        &text,
        ConfigErrorKind::Schema,
        16,
        8,
        Some("processors.counts"),
    );
    assert!(error.message.contains("`window`"), "{error}");
}

#[test]
fn unknown_aggregate_points_at_the_list() {
    let text = edit("\"sum:id\"", "\"avg:id\"");
    let error = error_at(
        &text,
        ConfigErrorKind::Schema,
        20,
        14,
        Some("processors.counts"),
    );
    assert!(error.message.contains("`avg:id`"), "{error}");
}

#[test]
fn unknown_section_is_reported() {
    let text = format!("{VALID}\n[transforms.x]\ntype = \"window\"\n");
    error_at(&text, ConfigErrorKind::Schema, 28, 2, None);
}

/// A name used twice is one error, not also a cycle through itself.
#[test]
fn a_duplicate_name_is_reported_once() {
    let text = r#"
[sources.a]
type = "generator"
keys = ["x"]
events_per_second = 10

[processors.a]
type = "filter"
inputs = ["a"]
condition = "true"

[sinks.out]
type = "stdout"
inputs = ["a"]
"#;
    let errors = weir_operators::config::parse_all(text, "pipeline.toml").unwrap_err();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].contains("the name `a` is already used by `sources.a`"),
        "{messages:#?}"
    );
}

#[test]
fn runtime_errors_name_the_runtime() {
    let text = edit("shards = 2", "shards = 0");
    error_at(&text, ConfigErrorKind::Invalid, 2, 10, Some("runtime"));
    // What validation accepts, the runtime runs: its limit is the one.
    let text = edit("shards = 2", "shards = 1000");
    let error = error_at(&text, ConfigErrorKind::Invalid, 2, 10, Some("runtime"));
    assert!(error.message.contains("1 to 256"), "{error}");
    let text = edit("shards = 2", "shards = 2\nstop_timeout = \"soon\"");
    error_at(&text, ConfigErrorKind::Invalid, 3, 16, Some("runtime"));
    let text = edit("epoch_interval_ms = 100", "epoch_interval = 100");
    error_at(&text, ConfigErrorKind::Schema, 4, 1, Some("runtime"));
}

#[test]
fn input_naming_no_component_points_at_the_entry() {
    let text = edit("inputs = [\"counts\"]", "inputs = [\"counts\", \"cuonts\"]");
    let error = error_at(
        &text,
        ConfigErrorKind::UnknownInput,
        24,
        21,
        Some("sinks.out"),
    );
    assert!(error.message.contains("`cuonts`"), "{error}");
}

#[test]
fn input_naming_a_sink_is_refused() {
    let text = edit("inputs = [\"gen\"]", "inputs = [\"gen\", \"out\"]");
    error_at(
        &text,
        ConfigErrorKind::UnknownInput,
        17,
        18,
        Some("processors.counts"),
    );
}

#[test]
fn source_with_inputs_is_refused() {
    let text = edit(
        "type = \"generator\"",
        "type = \"generator\"\ninputs = [\"x\"]",
    );
    error_at(
        &text,
        ConfigErrorKind::SourceWithInputs,
        8,
        1,
        Some("sources.gen"),
    );
}

#[test]
fn processor_or_sink_without_inputs_is_refused() {
    let text = edit("inputs = [\"gen\"]\n", "");
    error_at(
        &text,
        ConfigErrorKind::MissingInputs,
        15,
        13,
        Some("processors.counts"),
    );
    let text = edit("inputs = [\"counts\"]", "inputs = []");
    error_at(
        &text,
        ConfigErrorKind::MissingInputs,
        24,
        10,
        Some("sinks.out"),
    );
}

#[test]
fn group_by_a_missing_field_points_at_the_value() {
    // As every component reading rows: the option, and the input's fields.
    let text = edit("group_by = \"key\"", "group_by = \"user\"");
    let error = error_at(
        &text,
        ConfigErrorKind::Invalid,
        19,
        12,
        Some("processors.counts"),
    );
    assert!(
        error.message.contains("no field `user`")
            && error
                .message
                .contains("`id: int`, `key: string`, `timestamp: timestamp`"),
        "{error}"
    );
    let text = edit("\"sum:id\"", "\"sum:key\"");
    error_at(
        &text,
        ConfigErrorKind::Invalid,
        20,
        14,
        Some("processors.counts"),
    );
}

#[test]
fn zero_sizes_and_empty_keys_are_refused() {
    let cases = [
        ("size_ms = 1000", "size_ms = 0", 18, 11, "processors.counts"),
        (
            "events_per_second = 1000",
            "events_per_second = 0",
            10,
            21,
            "sources.gen",
        ),
        (
            "keys = [\"alice\", \"bob\", \"carol\"]",
            "keys = []",
            9,
            8,
            "sources.gen",
        ),
        ("rate = 50000", "rate = 0", 13, 8, "sources.gen"),
        ("count = 100000", "count = 0", 8, 9, "sources.gen"),
    ];
    for (from, to, line, column, component) in cases {
        let text = edit(from, to);
        error_at(
            &text,
            ConfigErrorKind::Invalid,
            line,
            column,
            Some(component),
        );
    }
}

#[test]
fn duplicate_names_across_sections_are_refused() {
    let text = edit("[sinks.out]", "[sinks.gen]");
    let error = error_at(&text, ConfigErrorKind::Name, 22, 8, Some("sinks.gen"));
    assert!(error.message.contains("`sources.gen`"), "{error}");
}

#[test]
fn unread_output_is_refused() {
    let text = format!(
        "{VALID}\n[sources.spare]\ntype = \"generator\"\nkeys = [\"a\"]\nevents_per_second = 1\n"
    );
    error_at(
        &text,
        ConfigErrorKind::UnusedOutput,
        28,
        10,
        Some("sources.spare"),
    );
}

#[test]
fn cycle_among_processors_lists_the_cycle() {
    let text = edit("inputs = [\"gen\"]", "inputs = [\"gen\", \"later\"]")
        + "\n[processors.later]\ntype = \"window\"\ninputs = [\"counts\"]\nsize_ms = 10\n\
           group_by = \"key\"\naggregates = [\"count\"]\n";
    let error = error_at(
        &text,
        ConfigErrorKind::Cycle,
        15,
        13,
        Some("processors.counts"),
    );
    assert!(
        error.message.contains("counts -> later -> counts"),
        "{error}"
    );
}

#[test]
fn load_names_the_file_and_reports_io_errors() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("pipeline.toml");
    std::fs::write(&path, VALID).expect("write");
    weir_operators::config::load(&path).expect("valid file loads");
    let missing = directory.path().join("missing.toml");
    let error = weir_operators::config::load(&missing).expect_err("missing file");
    assert_eq!(error.kind, ConfigErrorKind::Io);
    assert!(
        error
            .to_string()
            .starts_with(&missing.display().to_string()),
        "{error}"
    );
}

#[test]
fn arbitrary_text_gives_errors_not_panics() {
    let mut text = String::new();
    for line in VALID.lines() {
        text.push_str(line);
        text.push('\n');
        let _ = parse(&text, "prefix.toml");
        let _ = parse(&text[..text.len() / 2], "half.toml");
    }
}

#[test]
fn yaml_files_read_like_toml_and_errors_point_into_the_yaml() {
    let yaml = r#"runtime:
  shards: 2
  data_dir: ./data
  epoch_interval_ms: 100
sources:
  gen:
    type: generator
    count: 100000
    keys: [alice, bob, carol]
    events_per_second: 1000
    start_ms: 0
    seed: 7
    rate: 50000
processors:
  counts:
    type: window
    inputs: [gen]
    size_ms: 1000
    group_by: key
    aggregates: [count, "sum:id"]
sinks:
  out:
    type: file
    inputs: [counts]
    path: ./out
    format: ndjson
"#;
    let from_yaml = parse(yaml, "pipeline.yaml").unwrap();
    let from_toml = parse(VALID, "pipeline.toml").unwrap();
    assert_eq!(from_yaml, from_toml);

    let broken = yaml.replace("group_by: key", "group_by: kye");
    let error = parse(&broken, "pipeline.yml").unwrap_err();
    assert_eq!(error.kind, ConfigErrorKind::Invalid, "{error}");
    assert!(error.message.contains("no field `kye`"), "{error}");
    assert_eq!(
        error.location,
        Some(Location {
            line: 19,
            column: 15
        })
    );
    assert_eq!(error.component.as_deref(), Some("processors.counts"));

    let error = parse("sources: [unclosed\n", "p.yaml").unwrap_err();
    assert_eq!(error.kind, ConfigErrorKind::Syntax, "{error}");
    assert!(error.to_string().starts_with("p.yaml:"), "{error}");
}

#[test]
fn every_error_is_reported_in_file_order() {
    let text = edit("count = 100000", "count = \"many\"")
        .replace("inputs = [\"gen\"]", "inputs = [\"gen\", \"nope\"]")
        .replace("path = \"./out\"", "pth = \"./out\"");
    let errors = weir_operators::config::parse_all(&text, "pipeline.toml").unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 3, "{shown:#?}");
    assert!(shown[0].starts_with("pipeline.toml:8:9: sources.gen: invalid type"));
    assert!(shown[1].starts_with("pipeline.toml:17:18: processors.counts: input `nope`"));
    assert!(shown[2].starts_with("pipeline.toml:25:1: sinks.out: unknown field `pth`"));
}

#[test]
fn environment_variables_fill_the_file_and_unset_ones_are_errors() {
    std::env::set_var("WEIR_TEST_CONFIG_RATE", "1234");
    let text = edit("rate = 50000", "rate = ${WEIR_TEST_CONFIG_RATE}");
    let config = parse(&text, "pipeline.toml").unwrap();
    let SourceConfig::Generator(generator) = &config.sources["gen"] else {
        panic!("a generator");
    };
    assert_eq!(generator.rate, Some(1234));
    let text = edit("seed = 7", "seed = ${WEIR_TEST_CONFIG_UNSET:-9}");
    assert!(parse(&text, "pipeline.toml").is_ok());
    let text = edit("seed = 7", "seed = ${WEIR_TEST_CONFIG_UNSET}");
    let error = parse(&text, "pipeline.toml").unwrap_err();
    assert_eq!(
        error.location,
        Some(Location {
            line: 12,
            column: 8
        })
    );
    assert!(error.message.contains("WEIR_TEST_CONFIG_UNSET"), "{error}");
}

#[test]
fn a_size_ms_windows_rows_are_rows_that_any_component_reads() {
    // A filter and a second window read them as any rows: `count` is an
    // int, `key` a string.
    let text = edit(
        "[sinks.out]\ntype = \"file\"\ninputs = [\"counts\"]",
        "[processors.busy]\ntype = \"filter\"\ninputs = [\"counts\"]\n\
         condition = 'count > 10 and starts_with(key, \"a\")'\n\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"busy\"]",
    );
    parse(&text, "pipeline.toml").expect("a filter reads the window's rows");

    // Event times are not summed: refused where written, with the way on.
    let text = edit("\"sum:id\"", "\"sum:ts\"");
    let error = error_at(
        &text,
        ConfigErrorKind::Invalid,
        20,
        14,
        Some("processors.counts"),
    );
    assert!(
        error.message.contains("event times are not summed")
            && error.message.contains("to_int(timestamp)"),
        "{error}"
    );
}
