//! Unit tests of `enrich`: CIDR and exact matches, and the errors a table
//! or a configuration gets.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::*;
use crate::row::{Ip, Schema, Type};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn config(table: PathBuf, field: &str, key: &str, match_kind: MatchKind) -> EnrichConfig {
    EnrichConfig {
        inputs: vec![],
        field: field.into(),
        table,
        format: None,
        key: key.into(),
        match_kind,
        columns: vec![],
        prefix: None,
    }
}

fn ip(text: &str) -> Value {
    Value::Ip(Ip::from(text.parse::<std::net::IpAddr>().unwrap()))
}

fn text(text: &str) -> Value {
    Value::String(text.into())
}

fn apply(enrich: &mut Enrich, values: Vec<Value>) -> Vec<Value> {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&Row { values }).unwrap();
    let row = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes).unwrap();
    enrich.apply(row);
    enrich.out.values.clone()
}

const NETWORKS: &str = "network,country,asn\n\
    0.0.0.0/0,ZZ,\n\
    10.0.0.0/8,AA,1\n\
    10.1.0.0/16,BB,2\n\
    10.1.2.0/24,CC,3\n\
    10.1.2.3,DD,4\n\
    2001:db8::/32,EE,5\n\
    2001:db8:1::/48,FF,6\n";

#[test]
fn cidr_matches_the_longest_prefix_for_v4_and_v6() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(
        write(&dir, "nets.csv", NETWORKS),
        "ip",
        "network",
        MatchKind::Cidr,
    );
    config.columns = vec![
        ColumnConfig::Name("country".into()),
        ColumnConfig::Typed(TypedColumn {
            name: "asn".into(),
            ty: "int".into(),
        }),
    ];
    config.prefix = Some("geo_".into());
    let input = Schema::new([("ip", Type::Ip)]);
    let (spec, output) = build(&config, &input).unwrap();
    assert_eq!(
        output.describe(),
        "`ip: ip`, `geo_country: string`, `geo_asn: int`"
    );
    assert_eq!(spec.table_rows(), 7);
    let mut enrich = Enrich::bare(spec);
    for (address, country, asn) in [
        ("10.1.2.3", "DD", Some(4)),
        ("10.1.2.4", "CC", Some(3)),
        ("10.1.3.1", "BB", Some(2)),
        ("10.200.0.1", "AA", Some(1)),
        ("192.168.0.1", "ZZ", None),
        ("2001:db8:1:2::9", "FF", Some(6)),
        ("2001:db8:2::1", "EE", Some(5)),
    ] {
        let row = apply(&mut enrich, vec![ip(address)]);
        let asn = asn.map_or(Value::Null, Value::Int);
        assert_eq!(row, [ip(address), text(country), asn], "{address}");
    }
    // `0.0.0.0/0` is IPv4 only: an IPv6 address outside 2001:db8::/32
    // matches nothing; a null key matches nothing.
    assert_eq!(
        apply(&mut enrich, vec![ip("2002::1")]),
        [ip("2002::1"), Value::Null, Value::Null]
    );
    assert_eq!(
        apply(&mut enrich, vec![Value::Null]),
        [Value::Null, Value::Null, Value::Null]
    );
}

#[test]
fn cidr_agrees_with_a_linear_scan() {
    // Nested random networks; compare with the longest containing one.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut networks: Vec<(u32, u8)> = Vec::new();
    let mut csv = String::from("net,id\n");
    while networks.len() < 300 {
        let length = (next() % 33) as u8;
        let address = (next() as u32) & 0x0a0f_ffff | 0x0a00_0000;
        let network = if length == 0 {
            0
        } else {
            address & (u32::MAX << (32 - length))
        };
        if networks.contains(&(network, length)) {
            continue;
        }
        let _ = writeln!(
            csv,
            "{}/{length},{}",
            std::net::Ipv4Addr::from(network),
            networks.len()
        );
        networks.push((network, length));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config(write(&dir, "nets.csv", &csv), "ip", "net", MatchKind::Cidr);
    let (spec, _) = build(&config, &Schema::new([("ip", Type::Ip)])).unwrap();
    let mut enrich = Enrich::bare(spec);
    for _ in 0..5_000 {
        let address = (next() as u32) & 0x0a0f_ffff | 0x0a00_0000;
        let expected = networks
            .iter()
            .enumerate()
            .filter(|(_, (network, length))| {
                *length == 0 || address & (u32::MAX << (32 - length)) == *network
            })
            .max_by_key(|(_, (_, length))| *length)
            .map_or(Value::Null, |(id, _)| text(&id.to_string()));
        let address = ip(&std::net::Ipv4Addr::from(address).to_string());
        assert_eq!(
            apply(&mut enrich, vec![address.clone()])[1],
            expected,
            "{address:?}"
        );
    }
}

#[test]
fn exact_matches_by_the_input_type_from_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let users = write(
        &dir,
        "users.csv",
        "id,name,admin\n7,ann,true\n8,\"bo, jr\",false\n9,,\n",
    );
    let mut config = config(users, "user", "id", MatchKind::Exact);
    let input = Schema::new([("user", Type::Int), ("name", Type::String)]);
    // `name` collides with the input.
    let error = build(&config, &input).unwrap_err();
    assert_eq!(error.option, "columns");
    assert!(
        error.message.contains("`name` is a field of the input"),
        "{error}"
    );
    config.prefix = Some("u_".into());
    let (spec, output) = build(&config, &input).unwrap();
    assert_eq!(
        output.describe(),
        "`user: int`, `name: string`, `u_name: string`, `u_admin: string`"
    );
    let mut enrich = Enrich::bare(spec);
    let row = apply(&mut enrich, vec![Value::Int(8), text("x")]);
    assert_eq!(row[2..], [text("bo, jr"), text("false")]);
    let row = apply(&mut enrich, vec![Value::Int(9), Value::Null]);
    assert_eq!(row[2..], [Value::Null, Value::Null]);
    let row = apply(&mut enrich, vec![Value::Int(10), Value::Null]);
    assert_eq!(row[2..], [Value::Null, Value::Null]);
    let row = apply(&mut enrich, vec![Value::Int(7), Value::Null]);
    assert_eq!(row[2..], [text("ann"), text("true")]);

    // The same from NDJSON and a JSON array, with typed columns.
    let ndjson =
        "{\"id\":7,\"tags\":[\"a\"],\"admin\":true}\n\n{\"id\":\"8\",\"admin\":\"false\"}\n";
    let array = "[{\"id\":7,\"tags\":[\"a\"],\"admin\":true},{\"id\":\"8\",\"admin\":\"false\"}]";
    for path in [
        write(&dir, "u.ndjson", ndjson),
        write(&dir, "u.json", array),
    ] {
        let mut config = config.clone();
        config.table = path;
        config.columns = vec![
            ColumnConfig::Typed(TypedColumn {
                name: "admin".into(),
                ty: "bool".into(),
            }),
            ColumnConfig::Typed(TypedColumn {
                name: "tags".into(),
                ty: "list".into(),
            }),
        ];
        let (spec, _) = build(&config, &input).unwrap();
        let mut enrich = Enrich::bare(spec);
        let row = apply(&mut enrich, vec![Value::Int(7), Value::Null]);
        assert_eq!(row[2..], [Value::Bool(true), Value::List(vec![text("a")])]);
        let row = apply(&mut enrich, vec![Value::Int(8), Value::Null]);
        assert_eq!(row[2..], [Value::Bool(false), Value::Null]);
    }

    // String and ip keys.
    let hosts = write(&dir, "hosts.csv", "addr,role\n::1,local\n10.0.0.1,db\n");
    let config = EnrichConfig {
        columns: vec![ColumnConfig::Name("role".into())],
        ..config_for(hosts, "addr")
    };
    let (spec, _) = build(&config, &Schema::new([("ip", Type::Ip)])).unwrap();
    let mut enrich = Enrich::bare(spec);
    assert_eq!(apply(&mut enrich, vec![ip("10.0.0.1")])[1], text("db"));
    assert_eq!(apply(&mut enrich, vec![ip("10.0.0.2")])[1], Value::Null);
    let (spec, _) = build(&config, &Schema::new([("ip", Type::String)])).unwrap();
    let mut enrich = Enrich::bare(spec);
    assert_eq!(apply(&mut enrich, vec![text("::1")])[1], text("local"));
}

fn config_for(table: PathBuf, key: &str) -> EnrichConfig {
    config(table, "ip", key, MatchKind::Exact)
}

/// The build error for a table with `text` (a CSV file unless `name`
/// says otherwise), enriching `ip: ip` by `match_kind`.
fn table_error(name: &str, text: &str, match_kind: MatchKind, typed: bool) -> OptionError {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(write(&dir, name, text), "ip", "net", match_kind);
    if typed {
        config.columns = vec![ColumnConfig::Typed(TypedColumn {
            name: "asn".into(),
            ty: "int".into(),
        })];
    }
    let error = build(&config, &Schema::new([("ip", Type::Ip)])).unwrap_err();
    let path = dir.path().join(name).display().to_string();
    assert!(error.message.contains(&path), "{error} names {path}");
    error
}

#[test]
fn table_errors_name_the_file_and_line() {
    let cidr = MatchKind::Cidr;
    let error = table_error(
        "t.csv",
        "net,asn\n10.0.0.0/8,1\n10.0.0.0/33,2\n",
        cidr,
        true,
    );
    assert_eq!(error.option, "table");
    assert!(
        error
            .message
            .contains("t.csv:3: key: \"10.0.0.0/33\" has a bad prefix"),
        "{error}"
    );
    let error = table_error(
        "t.csv",
        "net,asn\n10.0.0.0/8,1\n\n10.0.0.1/8,2\n",
        cidr,
        true,
    );
    assert!(
        error
            .message
            .contains("t.csv:4: key: \"10.0.0.1/8\" has host bits set (the network is 10.0.0.0/8)"),
        "{error}"
    );
    let error = table_error("t.csv", "net,asn\n10.0.0.0/8,1\n10.0.0.0/8,2\n", cidr, true);
    assert!(
        error
            .message
            .contains("t.csv:3: key given twice (first at 2)"),
        "{error}"
    );
    let error = table_error("t.csv", "net,asn\n10.0.0.0/8,x1\n", cidr, true);
    assert!(
        error.message.contains("t.csv:2: asn: \"x1\" is not a int"),
        "{error}"
    );
    let error = table_error("t.csv", "net,asn\n10.0.0.0/8,1\n10.1.0.0/16\n", cidr, true);
    assert!(
        error
            .message
            .contains("t.csv:3: a row of 1 fields where the header has 2"),
        "{error}"
    );
    let error = table_error("t.csv", "net,asn\nmars,1\n", cidr, true);
    assert!(
        error
            .message
            .contains("t.csv:2: key: \"mars\" is not a network"),
        "{error}"
    );
    let error = table_error("t.csv", "net,asn\n10.0.0.300,1\n", MatchKind::Exact, true);
    assert!(
        error
            .message
            .contains("t.csv:2: key: \"10.0.0.300\" is not a ip"),
        "{error}"
    );
    let error = table_error("t.csv", "net,asn\n,1\n", MatchKind::Exact, true);
    assert!(
        error.message.contains("t.csv:2: the key is empty"),
        "{error}"
    );
    let error = table_error(
        "t.ndjson",
        "{\"net\":\"::1\",\"asn\":1}\n{\"net\":\"::2\",\"asn\":\n",
        cidr,
        true,
    );
    assert!(
        error.message.contains("t.ndjson:2: not a JSON object"),
        "{error}"
    );
    let error = table_error(
        "t.ndjson",
        "{\"net\":\"::1\",\"asn\":1}\n{\"asn\":2}\n",
        cidr,
        true,
    );
    assert!(
        error.message.contains("t.ndjson:2: no key `net`"),
        "{error}"
    );
    let error = table_error(
        "t.json",
        "[{\"net\":\"::1\",\"asn\":1},{\"net\":\"::2\",\"asn\":\"two\"}]",
        cidr,
        true,
    );
    assert!(
        error
            .message
            .contains("t.json:element 1: asn: \"two\" is not a int"),
        "{error}"
    );

    let error = table_error("t.csv", "network,asn\n", cidr, true);
    assert_eq!(error.option, "key");
    assert!(
        error
            .message
            .contains("has no column `net`; its columns: `network`, `asn`"),
        "{error}"
    );
    let error = table_error("t.csv", "net,as\n", cidr, true);
    assert_eq!(error.option, "columns");
    let error = table_error("t.txt", "net,asn\n", cidr, true);
    assert_eq!(error.option, "format");
    let dir = tempfile::tempdir().unwrap();
    let missing = config_for(dir.path().join("gone.csv"), "net");
    let error = build(&missing, &Schema::new([("ip", Type::Ip)])).unwrap_err();
    assert_eq!(error.option, "table");
    assert!(error.message.contains("gone.csv"), "{error}");
}

#[test]
fn config_errors_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(&dir, "t.csv", "k,v\n1,2\n");
    let input = Schema::new([("s", Type::String), ("f", Type::Float)]);
    let mut config = config(table, "s", "k", MatchKind::Cidr);
    assert_eq!(build(&config, &input).unwrap_err().option, "match");
    config.match_kind = MatchKind::Exact;
    config.field = "f".into();
    assert_eq!(build(&config, &input).unwrap_err().option, "field");
    config.field = "nope".into();
    assert_eq!(build(&config, &input).unwrap_err().option, "field");
    config.field = "s".into();
    config.columns = vec![ColumnConfig::Typed(TypedColumn {
        name: "v".into(),
        ty: "map".into(),
    })];
    assert_eq!(build(&config, &input).unwrap_err().option, "columns");
    config.columns = vec![ColumnConfig::Typed(TypedColumn {
        name: "v".into(),
        ty: "number".into(),
    })];
    assert_eq!(build(&config, &input).unwrap_err().option, "columns");
    config.columns = vec![];
    let (spec, output) = build(&config, &input).unwrap();
    assert_eq!(output.describe(), "`s: string`, `f: float`, `v: string`");
    assert_eq!(spec.table_rows(), 1);

    let parsed: EnrichConfig = toml::from_str(
        "field = \"ip\"\ntable = \"n.csv\"\nkey = \"net\"\nmatch = \"cidr\"\n\
         columns = [\"country\", { name = \"asn\", type = \"int\" }]\n",
    )
    .unwrap();
    assert_eq!(parsed.match_kind, MatchKind::Cidr);
    assert_eq!(parsed.columns[0], ColumnConfig::Name("country".into()));
    assert_eq!(parsed.columns[1].name(), "asn");
    assert!(toml::from_str::<EnrichConfig>(
        "field = \"ip\"\ntable = \"n.csv\"\nkey = \"net\"\ncolumns = [{ name = \"a\", typ = \"int\" }]\n"
    )
    .is_err());
}
