//! Unit tests of the `file` source: formats, dead letters, following a
//! growing file, positions and configuration errors.

use std::io::Write;

use super::*;
use crate::row::{parse_timestamp, Ip, Schema, Type, Value};

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Row(Row),
    Dead(String, String, i64),
    Watermark(u64),
}

fn config(path: &std::path::Path) -> FileSourceConfig {
    FileSourceConfig {
        path: path.display().to_string(),
        format: FileFormat::Ndjson,
        schema: Some(FieldTypes(vec![
            ("timestamp".into(), "timestamp".into()),
            ("ip".into(), "ip".into()),
            ("n".into(), "int".into()),
        ])),
        time_field: Some("timestamp".into()),
        watermark_delay: None,
        follow: false,
    }
}

fn source(config: &FileSourceConfig) -> FileSource {
    FileSource::detached(build(config).expect("valid").0, 0)
}

/// Calls `read(max)` until it is not `Ready`, at most `calls` times.
fn drain(source: &mut FileSource, max: usize, calls: usize) -> (Vec<Item>, ReadStatus) {
    let mut items = Vec::new();
    let mut status = ReadStatus::Ready;
    for _ in 0..calls {
        status = source
            .read(max, |item| {
                items.push(match item {
                    FileItem::Row(row) => Item::Row(row.clone()),
                    FileItem::DeadLetter(row) => match &row.values[..] {
                        [Value::String(line), Value::String(error), Value::Int(offset)] => {
                            Item::Dead(line.clone(), error.clone(), *offset)
                        }
                        other => panic!("dead letter {other:?}"),
                    },
                    FileItem::Watermark(watermark) => Item::Watermark(watermark),
                })
            })
            .expect("reads");
        if status != ReadStatus::Ready {
            break;
        }
    }
    (items, status)
}

fn line(n: i64) -> String {
    format!(
        "{{\"timestamp\": {}, \"ip\": \"10.0.{}.{}\", \"n\": {n}, \"extra\": [1, {{\"a\": 2}}]}}\n",
        1_000 + n * 10,
        n / 256 % 256,
        n % 256
    )
}

fn row(n: i64) -> Row {
    let addr: std::net::IpAddr = format!("10.0.{}.{}", n / 256 % 256, n % 256)
        .parse()
        .unwrap();
    Row {
        values: vec![
            Value::Timestamp(1_000 + n * 10),
            Value::Ip(Ip::from(addr)),
            Value::Int(n),
        ],
    }
}

fn only_rows(items: &[Item]) -> Vec<Row> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Row(row) => Some(row.clone()),
            _ => None,
        })
        .collect()
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

fn append(path: &std::path::Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn reads_every_line_once_including_a_last_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    let mut text: String = (0..5_000).map(line).collect();
    text.push_str(line(5_000).trim_end());
    write(&path, &text);
    let config = config(&path);
    for max in [1, 7, 1024, 100_000] {
        let mut source = source(&config);
        let (items, status) = drain(&mut source, max, usize::MAX);
        assert_eq!(status, ReadStatus::Exhausted);
        assert_eq!(only_rows(&items), (0..=5_000).map(row).collect::<Vec<_>>());
        assert_eq!(source.offset(), text.len() as u64);
        assert_eq!(source.dead_letters(), 0);
        assert_eq!(items.last(), Some(&Item::Watermark(1_000 + 5_000 * 10)));
        let (again, status) = drain(&mut source, max, 3);
        assert!(again.is_empty() && status == ReadStatus::Exhausted);
    }
}

#[test]
fn restore_from_a_mid_file_position_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    let text: String = (0..3_000).map(line).collect();
    write(&path, &text);
    let config = config(&path);
    let (whole, _) = drain(&mut source(&config), 100, usize::MAX);
    let whole = only_rows(&whole);
    for calls in [1, 2, 13, 29] {
        let mut first = source(&config);
        let (prefix, _) = drain(&mut first, 100, calls);
        let position = Source::position(&first);
        assert_eq!(position.len(), 16);
        let mut restored = source(&config);
        Source::restore(&mut restored, &position).expect("restores");
        assert_eq!(restored.offset(), first.offset());
        let (suffix, status) = drain(&mut restored, 64, usize::MAX);
        assert_eq!(status, ReadStatus::Exhausted);
        let mut rows = only_rows(&prefix);
        rows.extend(only_rows(&suffix));
        assert_eq!(rows, whole, "cut after {calls} calls");
        // The watermark continues from the prefix's largest time.
        let first_watermark = suffix.iter().find_map(|item| match item {
            Item::Watermark(w) => Some(*w),
            _ => None,
        });
        let Value::Timestamp(last) = only_rows(&prefix).last().unwrap().values[0] else {
            panic!()
        };
        assert!(first_watermark.unwrap() > last as u64);
    }
    assert!(Source::restore(&mut source(&config), &[0; 8]).is_err());
}

#[test]
fn follow_waits_for_complete_lines_and_picks_up_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    let config = FileSourceConfig {
        follow: true,
        ..config(&path)
    };
    let mut source = source(&config);
    // No file yet: idle, not an error.
    assert_eq!(drain(&mut source, 100, 5).1, ReadStatus::Idle);
    let partial = line(3);
    write(&path, &format!("{}{}{}", line(1), line(2), &partial[..10]));
    let (items, status) = drain(&mut source, 100, usize::MAX);
    assert_eq!(status, ReadStatus::Idle);
    assert_eq!(only_rows(&items), vec![row(1), row(2)]);
    assert_eq!(source.offset(), (line(1).len() + line(2).len()) as u64);
    let position = Source::position(&source);
    append(&path, &partial[10..]);
    append(&path, &(4..500).map(line).collect::<String>());
    let (items, status) = drain(&mut source, 100, usize::MAX);
    assert_eq!(status, ReadStatus::Idle);
    assert_eq!(only_rows(&items), (3..500).map(row).collect::<Vec<_>>());
    // A restored follower re-reads from the position, not from the end.
    let mut restored = self::source(&config);
    Source::restore(&mut restored, &position).unwrap();
    let (items, _) = drain(&mut restored, 1000, usize::MAX);
    assert_eq!(only_rows(&items), (3..500).map(row).collect::<Vec<_>>());
    // Truncation is refused.
    write(&path, "{}\n");
    let error = restored.read(100, |_| {}).expect_err("shrunk");
    assert!(error.contains("shrank"), "{error}");
}

#[test]
fn bad_lines_become_dead_letters_with_reason_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    let lines = [
        line(0),
        "not json\n".to_owned(),
        "{\"timestamp\": \"yesterday\", \"n\": 1}\n".to_owned(),
        "\n".to_owned(),
        "[1, 2]\n".to_owned(),
        "{\"n\": 1.5}\r\n".to_owned(),
        "{\"n\": 2} trailing\n".to_owned(),
        b"{\"n\": \"\xff\"}\n"
            .iter()
            .map(|&b| b as char)
            .collect::<String>(),
        "{\"timestamp\": \"2026-01-01T00:00:00Z\", \"n\": null}\n".to_owned(),
        line(1),
    ];
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for (i, text) in lines.iter().enumerate() {
        offsets.push(bytes.len() as i64);
        if i == 7 {
            bytes.extend_from_slice(b"{\"n\": \"\xff\"}\n");
        } else {
            bytes.extend_from_slice(text.as_bytes());
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let mut source = source(&config(&path));
    let (items, _) = drain(&mut source, 1024, usize::MAX);
    let dead: Vec<(String, String, i64)> = items
        .iter()
        .filter_map(|item| match item {
            Item::Dead(line, error, offset) => Some((line.clone(), error.clone(), *offset)),
            _ => None,
        })
        .collect();
    let reasons: Vec<(&str, i64)> = dead.iter().map(|d| (&d.1[..], d.2)).collect();
    assert_eq!(dead.len(), 6, "{reasons:?}");
    assert_eq!(source.dead_letters(), 6);
    assert_eq!(dead[0].0, "not json");
    assert!(dead[0].1.starts_with("invalid JSON"), "{}", dead[0].1);
    assert_eq!(dead[0].2, offsets[1]);
    assert!(dead[1].1.contains("field `timestamp`") && dead[1].1.contains("not a timestamp"));
    assert_eq!(dead[1].2, offsets[2]);
    assert!(dead[2].1.contains("a JSON object"), "{}", dead[2].1);
    assert!(dead[3].1.contains("field `n`"), "{}", dead[3].1);
    assert_eq!(dead[3].0, "{\"n\": 1.5}", "the \\r is dropped");
    assert!(dead[4].1.contains("trailing"), "{}", dead[4].1);
    assert!(dead[5].1.contains("invalid JSON"), "{}", dead[5].1);
    assert_eq!(dead[5].2, offsets[7]);
    let ts = parse_timestamp("2026-01-01T00:00:00Z").unwrap();
    assert_eq!(
        only_rows(&items),
        vec![
            row(0),
            Row {
                values: vec![Value::Timestamp(ts), Value::Null, Value::Null]
            },
            row(1)
        ]
    );
}

#[test]
fn lines_format_and_watermark_delay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.log");
    write(&path, "\u{feff}first line\n\nthird \"line\"\r\nlast");
    let config = FileSourceConfig {
        format: FileFormat::Lines,
        schema: None,
        time_field: None,
        ..config(&path)
    };
    let (items, status) = drain(&mut source(&config), 2, usize::MAX);
    assert_eq!(status, ReadStatus::Exhausted);
    let messages: Vec<Item> = ["first line", "", "third \"line\"", "last"]
        .iter()
        .map(|m| {
            Item::Row(Row {
                values: vec![Value::String((*m).into())],
            })
        })
        .collect();
    assert_eq!(items, messages, "no watermarks without a time field");

    let path = dir.path().join("in.ndjson");
    write(&path, &[line(10), line(5), line(20)].concat());
    let config = FileSourceConfig {
        watermark_delay: Some("50ms".into()),
        ..self::config(&path)
    };
    let (items, _) = drain(&mut source(&config), 1, usize::MAX);
    let watermarks: Vec<u64> = items
        .iter()
        .filter_map(|item| match item {
            Item::Watermark(w) => Some(*w),
            _ => None,
        })
        .collect();
    assert_eq!(watermarks, vec![1_100 - 50, 1_200 - 50]);
}

#[test]
fn other_instances_read_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    write(&path, &line(1));
    let mut other = FileSource::detached(build(&config(&path)).unwrap().0, 1);
    assert_eq!(
        drain(&mut other, 10, 3),
        (Vec::new(), ReadStatus::Exhausted)
    );
}

#[test]
fn bad_configs_name_the_option() {
    let path = std::path::Path::new("/tmp/x.ndjson");
    let check = |config: FileSourceConfig, option: &str| {
        let error = build(&config).expect_err("refused");
        assert_eq!(error.option, option, "{error}");
    };
    check(
        FileSourceConfig {
            schema: None,
            ..config(path)
        },
        "schema",
    );
    check(
        FileSourceConfig {
            schema: Some(FieldTypes(vec![("a".into(), "integer".into())])),
            time_field: None,
            ..config(path)
        },
        "schema",
    );
    check(
        FileSourceConfig {
            time_field: Some("n".into()),
            ..config(path)
        },
        "time_field",
    );
    check(
        FileSourceConfig {
            time_field: Some("when".into()),
            ..config(path)
        },
        "time_field",
    );
    check(
        FileSourceConfig {
            watermark_delay: Some("5".into()),
            ..config(path)
        },
        "watermark_delay",
    );
    check(
        FileSourceConfig {
            format: FileFormat::Lines,
            time_field: None,
            ..config(path)
        },
        "schema",
    );
    check(
        FileSourceConfig {
            path: " ".into(),
            ..config(path)
        },
        "path",
    );
    let lines = FileSourceConfig {
        format: FileFormat::Lines,
        schema: Some(FieldTypes(vec![("message".into(), "string".into())])),
        time_field: None,
        ..config(path)
    };
    assert_eq!(
        build(&lines).unwrap().1,
        Schema::new([("message", Type::String)])
    );
}

#[test]
fn toml_schema_keeps_the_written_order() {
    let text = r#"
        path = "/var/log/app.ndjson"
        schema = { zeta = "string", timestamp = "timestamp", alpha = "ip", mid = "int" }
        time_field = "timestamp"
        follow = true
    "#;
    let config: FileSourceConfig = toml::from_str(text).expect("parses");
    let (spec, schema) = build(&config).expect("valid");
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["zeta", "timestamp", "alpha", "mid"]);
    assert_eq!(spec.time_index, Some(1));
    assert!(spec.follow);
    let round_trip: FileSourceConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(round_trip, config);
    let json: FileSourceConfig = serde_json::from_str(
        r#"{"path": "x", "schema": {"b": "int", "a": "string"}, "format": "ndjson"}"#,
    )
    .unwrap();
    assert_eq!(
        json.schema.unwrap().0,
        vec![("b".into(), "int".into()), ("a".into(), "string".into())]
    );
    assert!(toml::from_str::<FileSourceConfig>("path = \"x\"\nfollw = true").is_err());
    assert_eq!(
        dead_letter_schema(),
        Schema::new([
            ("line", Type::String),
            ("error", Type::String),
            ("offset", Type::Int)
        ])
    );
}
