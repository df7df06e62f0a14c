//! Unit tests of `parse`: each format, the combined preset, dead letters
//! and configuration errors.

use super::*;
use crate::row::{Ip, MapEntry, Schema, Type};

fn input() -> Schema {
    Schema::new([("host", Type::String), ("line", Type::String)])
}

fn config(format: ParseFormat, pattern: Option<&str>, schema: &[(&str, &str)]) -> ParseConfig {
    ParseConfig {
        inputs: vec!["src".into()],
        field: "line".into(),
        format,
        pattern: pattern.map(str::to_owned),
        schema: FieldTypes(
            schema
                .iter()
                .map(|(name, ty)| (name.to_string(), ty.to_string()))
                .collect(),
        ),
        drop_source: false,
    }
}

fn archive(values: Vec<Value>) -> rkyv::util::AlignedVec {
    rkyv::to_bytes::<rkyv::rancor::Error>(&Row { values }).unwrap()
}

/// Parses `line` (with host "h"): the output row or the reason.
fn run(parse: &mut Parse, line: Value) -> Result<Vec<Value>, String> {
    let bytes = archive(vec![Value::String("h".into()), line]);
    let row = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes).unwrap();
    match parse.apply(row) {
        Ok(()) => Ok(parse.out.values.clone()),
        Err(reason) => {
            parse.dead_letter(row, &reason);
            assert_eq!(parse.dead.values[2], Value::String(reason.clone()));
            assert_eq!(parse.dead.values[..2], row.to_row().values[..]);
            Err(reason)
        }
    }
}

fn text(line: &str) -> Value {
    Value::String(line.into())
}

fn ip(text: &str) -> Value {
    Value::Ip(Ip::from(text.parse::<std::net::IpAddr>().unwrap()))
}

fn combined() -> Parse {
    let config = config(
        ParseFormat::Regex,
        Some("combined"),
        &[
            ("client_ip", "ip"),
            ("ts", "timestamp"),
            ("method", "string"),
            ("path", "string"),
            ("request", "string"),
            ("status", "int"),
            ("bytes", "int"),
            ("user_agent", "string"),
        ],
    );
    let (spec, output) = build(&config, &input()).unwrap();
    assert_eq!(
        output.describe(),
        "`host: string`, `line: string`, `client_ip: ip`, `ts: timestamp`, \
         `method: string`, `path: string`, `request: string`, `status: int`, \
         `bytes: int`, `user_agent: string`"
    );
    Parse::bare(spec)
}

#[test]
fn combined_log_lines_parse_including_odd_ones() {
    let mut parse = combined();
    let ts = crate::row::parse_timestamp("10/Oct/2000:13:55:36 -0700").unwrap();
    let line = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
    let row = run(&mut parse, text(line)).unwrap();
    assert_eq!(
        row[2..],
        [
            ip("127.0.0.1"),
            Value::Timestamp(ts),
            text("GET"),
            text("/apache_pb.gif"),
            text("GET /apache_pb.gif HTTP/1.0"),
            Value::Int(200),
            Value::Int(2326),
            text("Mozilla/4.08 [en] (Win98; I ;Nav)"),
        ]
    );
    assert_eq!(row[..2], [text("h"), text(line)]);

    // IPv6 client, `-` bytes, escaped quotes in the agent, no protocol.
    let line = r#"2001:db8::7 - - [10/Oct/2000:13:55:36 +0000] "GET /x" 304 - "-" "say \"hi\"""#;
    let row = run(&mut parse, text(line)).unwrap();
    assert_eq!(row[2], ip("2001:db8::7"));
    assert_eq!(row[5], text("/x"));
    assert_eq!(row[8], Value::Null, "bytes `-` is null");
    assert_eq!(row[9], text(r#"say \"hi\""#));

    // A request line that is not METHOD PATH: only `request` is set.
    for request in ["-", "", r"\x16\x03\x01\x00\xa5", "GARBAGE"] {
        let line =
            format!(r#"10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "{request}" 400 0 "-" "-""#);
        let row = run(&mut parse, text(&line)).unwrap();
        assert_eq!(row[4], Value::Null, "{line}");
        assert_eq!(row[5], Value::Null, "{line}");
        assert_eq!(row[6], text(request), "{line}");
        assert_eq!(row[7], Value::Int(400));
    }

    // Common log format: no referer, no agent.
    let line = r#"10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "POST /login HTTP/1.1" 302 0"#;
    let row = run(&mut parse, text(line)).unwrap();
    assert_eq!(row[4], text("POST"));
    assert_eq!(row[9], Value::Null);

    // A host name where an address goes, a bad date: dead letters.
    let line = r#"example.com - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1"#;
    assert_eq!(
        run(&mut parse, text(line)).unwrap_err(),
        "client_ip: \"example.com\" is not a ip"
    );
    let line = r#"10.0.0.1 - - [yesterday] "GET / HTTP/1.1" 200 1"#;
    assert_eq!(
        run(&mut parse, text(line)).unwrap_err(),
        "ts: \"yesterday\" is not a timestamp"
    );
    assert_eq!(
        run(&mut parse, text("not a log line")).unwrap_err(),
        "line does not match the pattern"
    );
    assert_eq!(run(&mut parse, Value::Null).unwrap_err(), "line is null");
    assert_eq!(
        run(&mut parse, Value::Int(3)).unwrap_err(),
        "line is not a string"
    );
    // The parser recovers after a dead letter.
    let line = r#"10.0.0.2 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5"#;
    assert_eq!(run(&mut parse, text(line)).unwrap()[8], Value::Int(5));
}

#[test]
fn custom_patterns_convert_captures_and_missing_ones_are_null() {
    let config = config(
        ParseFormat::Regex,
        Some(r"^(?P<level>\w+)(?: code=(?P<code>\S+))?(?: (?P<rest>.*))?$"),
        &[("code", "int"), ("level", "string")],
    );
    let (spec, output) = build(&config, &input()).unwrap();
    assert_eq!(output.index("code"), Some(2));
    let mut parse = Parse::bare(spec);
    assert_eq!(
        run(&mut parse, text("WARN code=42 disk")).unwrap(),
        [
            text("h"),
            text("WARN code=42 disk"),
            Value::Int(42),
            text("WARN")
        ]
    );
    assert_eq!(
        run(&mut parse, text("INFO")).unwrap()[2..],
        [Value::Null, text("INFO")]
    );
    assert_eq!(
        run(&mut parse, text("WARN code=abc")).unwrap_err(),
        "code: \"abc\" is not a int"
    );
}

#[test]
fn logfmt_reads_quoted_values_escapes_and_flags() {
    let mut pairs = Vec::new();
    let mut scratch = String::new();
    logfmt(
        r#"a=1 msg="hello \"world\" \\ \n" empty= q="" debug b=x=y path="C:\dir""#,
        &mut scratch,
        |key, value| pairs.push((key.to_owned(), value.to_owned())),
    )
    .unwrap();
    let expected: Vec<(String, String)> = [
        ("a", "1"),
        ("msg", "hello \"world\" \\ \n"),
        ("empty", ""),
        ("q", ""),
        ("debug", "true"),
        ("b", "x=y"),
        ("path", "C:\\dir"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(pairs, expected);
    for (bad, reason) in [
        (r#"a="open"#, "unterminated quote at byte 2"),
        (r#"a="x\"#, "unterminated quote at byte 2"),
        ("=1", "empty key at byte 0"),
        (r#"a="x"b=1"#, "no space after the quoted value at byte 5"),
        (r#"a=x"y"#, "unexpected quote at byte 3"),
    ] {
        assert_eq!(
            logfmt(bad, &mut scratch, |_, _| {}),
            Err(reason.into()),
            "{bad}"
        );
    }

    let config = config(
        ParseFormat::Logfmt,
        None,
        &[
            ("level", "string"),
            ("took", "float"),
            ("ok", "bool"),
            ("n", "int"),
        ],
    );
    let (spec, _) = build(&config, &input()).unwrap();
    let mut parse = Parse::bare(spec);
    let row = run(
        &mut parse,
        text(r#"level=info msg="a b" took=1.5 ok n=1 n=2"#),
    )
    .unwrap();
    assert_eq!(
        row[2..],
        [
            text("info"),
            Value::Float(1.5),
            Value::Bool(true),
            Value::Int(2)
        ]
    );
    let row = run(&mut parse, text("level=\"x y\"")).unwrap();
    assert_eq!(
        row[2..],
        [text("x y"), Value::Null, Value::Null, Value::Null]
    );
    assert_eq!(
        run(&mut parse, text("level=info ok=maybe")).unwrap_err(),
        "ok: \"maybe\" is not a bool"
    );
    assert_eq!(
        run(&mut parse, text("level=\"oops")).unwrap_err(),
        "line is not valid logfmt: unterminated quote at byte 6"
    );
}

#[test]
fn json_members_convert_by_type_with_nested_values() {
    let config = config(
        ParseFormat::Json,
        None,
        &[
            ("status", "int"),
            ("ip", "ip"),
            ("at", "timestamp"),
            ("tags", "list"),
            ("meta", "map"),
            ("ratio", "float"),
            ("ok", "bool"),
            ("host", "string"),
        ],
    );
    let (spec, output) = build(&config, &input()).unwrap();
    // `host` replaces the input's field in place.
    assert_eq!(output.index("host"), Some(0));
    assert_eq!(output.len(), 9);
    let mut parse = Parse::bare(spec);
    let line = r#"{"status":"200","ip":"::1","at":1000,"tags":[1,"a"],"meta":{"k":{"x":true}},
                   "ratio":2,"ok":false,"host":"json-host","other":[{"deep":1}],"na\u006de":1}"#;
    let row = run(&mut parse, text(line)).unwrap();
    assert_eq!(row[0], text("json-host"));
    assert_eq!(
        row[2..],
        [
            Value::Int(200),
            ip("::1"),
            Value::Timestamp(1000),
            Value::List(vec![Value::Int(1), text("a")]),
            Value::Map(vec![MapEntry {
                key: "k".into(),
                value: Value::Map(vec![MapEntry {
                    key: "x".into(),
                    value: Value::Bool(true),
                }]),
            }]),
            Value::Float(2.0),
            Value::Bool(false),
        ]
    );
    let row = run(&mut parse, text(r#"{"status":null}"#)).unwrap();
    assert!(row[2..].iter().all(|value| *value == Value::Null));
    assert_eq!(row[0], Value::Null, "an absent `host` member is null too");
    assert_eq!(
        run(&mut parse, text(r#"{"status":"abc"}"#)).unwrap_err(),
        "status: \"abc\" is not a int"
    );
    assert_eq!(
        run(&mut parse, text(r#"{"status":1.5}"#)).unwrap_err(),
        "status: 1.5 is not a int"
    );
    assert_eq!(
        run(&mut parse, text(r#"{"tags":{"a":1}}"#)).unwrap_err(),
        "tags: {\"a\":1} is not a list"
    );
    let error = run(&mut parse, text(r#"[1,2]"#)).unwrap_err();
    assert!(
        error.starts_with("line is not valid JSON: invalid type"),
        "{error}"
    );
    let error = run(&mut parse, text(r#"{"status":1} trailing"#)).unwrap_err();
    assert!(
        error.starts_with("line is not valid JSON: trailing"),
        "{error}"
    );
    let error = run(&mut parse, text(r#"{"status":"#)).unwrap_err();
    assert!(error.starts_with("line is not valid JSON"), "{error}");
}

#[test]
fn drop_source_leaves_the_field_out() {
    let mut config = config(ParseFormat::Logfmt, None, &[("a", "int")]);
    config.drop_source = true;
    let (spec, output) = build(&config, &input()).unwrap();
    assert_eq!(output.describe(), "`host: string`, `a: int`");
    let mut parse = Parse::bare(spec);
    assert_eq!(
        run(&mut parse, text("a=7")).unwrap(),
        [text("h"), Value::Int(7)]
    );
    // Parsing a field into itself keeps the name, with the new type.
    config.schema = FieldTypes(vec![("line".into(), "int".into())]);
    let (spec, output) = build(&config, &input()).unwrap();
    assert_eq!(output.describe(), "`host: string`, `line: int`");
    let mut parse = Parse::bare(spec);
    assert_eq!(
        run(&mut parse, text("line=9")).unwrap(),
        [text("h"), Value::Int(9)]
    );
    assert_eq!(
        dead_letter_schema(&input()).describe(),
        "`host: string`, `line: string`, `error: string`"
    );
}

#[test]
fn config_errors_name_the_option() {
    let option = |config: ParseConfig| build(&config, &input()).unwrap_err();
    let error = option(config(
        ParseFormat::Regex,
        Some(r"(?P<a>\d+)"),
        &[("b", "int")],
    ));
    assert_eq!(error.option, "schema");
    assert!(
        error.message.contains("`b` is not a named capture"),
        "{error}"
    );
    assert!(error.message.contains("`a`"), "{error}");
    assert_eq!(
        option(config(ParseFormat::Regex, None, &[("a", "int")])).option,
        "pattern"
    );
    assert_eq!(
        option(config(ParseFormat::Regex, Some("(?P<a>"), &[("a", "int")])).option,
        "pattern"
    );
    assert_eq!(
        option(config(ParseFormat::Json, Some("x"), &[("a", "int")])).option,
        "pattern"
    );
    let error = option(config(ParseFormat::Json, None, &[("a", "integer")]));
    assert_eq!(error.option, "schema");
    assert!(error.message.contains("unknown type `integer`"), "{error}");
    assert_eq!(
        option(config(ParseFormat::Logfmt, None, &[("a", "map")])).option,
        "schema"
    );
    assert_eq!(
        option(config(ParseFormat::Json, None, &[])).option,
        "schema"
    );
    let mut bad_field = config(ParseFormat::Json, None, &[("a", "int")]);
    bad_field.field = "lien".into();
    let error = option(bad_field.clone());
    assert_eq!(error.option, "field");
    assert!(error.message.contains("no field `lien`"), "{error}");
    bad_field.field = "host".into();
    let numeric = Schema::new([("host", Type::Int)]);
    assert_eq!(build(&bad_field, &numeric).unwrap_err().option, "field");
}

#[test]
fn config_reads_from_toml_and_json_in_order() {
    let text = r#"
        inputs = ["lines"]
        field = "line"
        format = "regex"
        pattern = "combined"
        schema = { ts = "timestamp", client_ip = "ip" }
    "#;
    let config: ParseConfig = toml::from_str(text).unwrap();
    assert_eq!(config.format, ParseFormat::Regex);
    assert!(!config.drop_source);
    let mut names: Vec<&str> = config.schema.0.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["client_ip", "ts"]);
    let json = r#"{"field":"m","format":"json","schema":{"z":"int","a":"ip"}}"#;
    let config: ParseConfig = serde_json::from_str(json).unwrap();
    assert_eq!(
        config.schema,
        FieldTypes(vec![("z".into(), "int".into()), ("a".into(), "ip".into())])
    );
    let back: ParseConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    assert!(toml::from_str::<ParseConfig>(
        "field = \"l\"\nformat = \"json\"\nschema = {}\nbogus = 1"
    )
    .is_err());
    assert!(serde_json::from_str::<ParseConfig>(
        r#"{"field":"m","format":"json","schema":{"a":"int","a":"ip"}}"#
    )
    .is_err());
}
