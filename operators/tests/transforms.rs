//! Goal: `filter`, `map`, `route` and `threshold` do what their docs say
//! inside a real runtime: every record reaches exactly the outputs a direct
//! model says, with the model's values, across shards.
//!
//! Method: deterministic rows go through route → (map | filter) and
//! threshold pipelines on two shards; collected outputs are compared with
//! the same logic written out in plain Rust.

mod support;

use std::net::IpAddr;

use support::{collect, row, rows_source, run, sorted};
use weir_operators::processors::{filter, map, route, threshold};
use weir_operators::row::{Ip, Row, Schema, Type, Value};
use weir_runtime::{GraphBuilder, Partition};

fn access_schema() -> Schema {
    Schema::new([
        ("timestamp", Type::Timestamp),
        ("ip", Type::Ip),
        ("path", Type::String),
        ("status", Type::Int),
        ("bytes", Type::Int),
    ])
}

fn ip(text: &str) -> Value {
    Value::Ip(Ip::from(text.parse::<IpAddr>().unwrap()))
}

fn access_rows(schema: &Schema, n: i64) -> Vec<Row> {
    let paths = ["/", "/health", "/login", "/api/a", "/api/b"];
    (0..n)
        .map(|i| {
            let status = [200, 200, 404, 500, 503][(i * 7 % 5) as usize];
            let bytes = if i % 11 == 0 {
                Value::Null
            } else {
                Value::Int(i * 37 % 9000)
            };
            row(
                schema,
                vec![
                    Value::Timestamp(1_000 * i),
                    ip(&format!("10.0.{}.{}", i % 3, i % 7)),
                    Value::String(paths[(i % 5) as usize].into()),
                    Value::Int(status),
                    bytes,
                ],
            )
        })
        .collect()
}

#[test]
fn route_map_and_filter_send_every_record_where_the_model_says() {
    let schema = access_schema();
    let rows = access_rows(&schema, 3_000);
    let route_config: route::RouteConfig =
        toml::from_str(r#"routes = { errors = "status >= 500", health = 'path == "/health"' }"#)
            .unwrap();
    let (route_spec, _) = route::build(&route_config, &schema).unwrap();
    let ports = route_spec.ports();
    let port = |name: &str| ports.iter().find(|(n, _)| n == name).unwrap().1;
    let map_config: map::MapConfig = toml::from_str(
        r#"
        drop = ["path"]
        set = { kb = "bytes / 1024", big = "bytes > 5000" }
        rename = { ip = "client" }
        "#,
    )
    .unwrap();
    let (map_spec, map_schema) = map::build(&map_config, &schema).unwrap();
    let names: Vec<&str> = map_schema
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["timestamp", "client", "status", "bytes", "big", "kb"]
    );
    let filter_config = filter::FilterConfig {
        inputs: vec![],
        condition: r#"contains(path, "api") and cidr_contains("10.0.1.0/24", ip)"#.into(),
    };
    let (filter_spec, _) = filter::build(&filter_config, &schema).unwrap();

    let mut graph = GraphBuilder::new();
    rows_source(&mut graph, "src", rows.clone());
    graph.processor("split", move |_| route::Route::new(route_spec.clone()));
    graph.connect::<Row>("src", "split", Partition::RoundRobin);
    graph.processor("shape", move |_| map::Map::new(map_spec.clone()));
    graph.connect_port::<Row>("split", port("errors"), "shape", Partition::Forward);
    graph.processor("api", move |_| filter::Filter::new(filter_spec.clone()));
    graph.connect_port::<Row>("split", port("_unmatched"), "api", Partition::Forward);
    let errors = collect(&mut graph, "errors_out", "shape", 0);
    let health = collect(&mut graph, "health_out", "split", port("health"));
    let api = collect(&mut graph, "api_out", "api", 0);
    run(graph, 2);

    let mut expected_errors = Vec::new();
    let mut expected_health = Vec::new();
    let mut expected_api = Vec::new();
    for row in &rows {
        let [ts, ip, path, status, bytes] = row.values.as_slice() else {
            unreachable!()
        };
        let (Value::String(path), Value::Int(status)) = (path, status) else {
            unreachable!()
        };
        let is_error = *status >= 500;
        let is_health = path == "/health";
        if is_error {
            let (big, kb) = match bytes {
                Value::Int(b) => (Value::Bool(*b > 5000), Value::Int(b / 1024)),
                _ => (Value::Null, Value::Null),
            };
            expected_errors.push(Row {
                values: vec![
                    ts.clone(),
                    ip.clone(),
                    Value::Int(*status),
                    bytes.clone(),
                    big,
                    kb,
                ],
            });
        }
        if is_health {
            expected_health.push(row.clone());
        }
        let in_net = matches!(ip, Value::Ip(a) if a.to_string().starts_with("10.0.1."));
        if !is_error && !is_health && path.contains("api") && in_net {
            expected_api.push(row.clone());
        }
    }
    let sort = |mut rows: Vec<Row>| {
        rows.sort_by_key(|row| format!("{row:?}"));
        rows
    };
    assert!(!expected_errors.is_empty() && !expected_health.is_empty() && !expected_api.is_empty());
    assert_eq!(sorted(&errors), sort(expected_errors));
    assert_eq!(sorted(&health), sort(expected_health));
    assert_eq!(sorted(&api), sort(expected_api));
}

#[test]
fn threshold_alerts_once_per_key_per_cooldown() {
    let schema = Schema::new([
        ("window_end", Type::Timestamp),
        ("source_ip", Type::Ip),
        ("failures", Type::Int),
    ]);
    // Per minute, per IP, a failure count; IP .7 attacks from minute 10 to
    // 19, IP .9 crosses the threshold once at minute 3.
    let mut rows = Vec::new();
    for minute in 0..30i64 {
        for host in [7, 8, 9] {
            let failures = match host {
                7 if (10..20).contains(&minute) => 50,
                9 if minute == 3 => 10,
                _ => minute % 3,
            };
            rows.push(row(
                &schema,
                vec![
                    Value::Timestamp(60_000 * (minute + 1)),
                    ip(&format!("203.0.113.{host}")),
                    Value::Int(failures),
                ],
            ));
        }
    }
    let config: threshold::ThresholdConfig = toml::from_str(
        r#"
        condition = "failures >= 10"
        key = ["source_ip"]
        cooldown = "5m"
        "#,
    )
    .unwrap();
    let (spec, out_schema) = threshold::build(&config, &schema, "brute_force").unwrap();
    assert_eq!(out_schema.lookup("alert"), Ok((3, Type::String)));

    let mut graph = GraphBuilder::new();
    rows_source(&mut graph, "src", rows);
    let key = spec.clone();
    graph.processor("alert", move |_| threshold::Threshold::new(spec.clone()));
    graph.connect::<Row>(
        "src",
        "alert",
        Partition::hash(move |row: &Row| key.row_key_hash(row)),
    );
    let alerts = collect(&mut graph, "out", "alert", 0);
    run(graph, 2);

    let got: Vec<(String, i64)> = sorted(&alerts)
        .iter()
        .map(|row| {
            assert_eq!(row.values[3], Value::String("brute_force".into()));
            let Value::Timestamp(at) = row.values[0] else {
                unreachable!()
            };
            let Value::Ip(ip) = &row.values[1] else {
                unreachable!()
            };
            (ip.to_string(), at / 60_000)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // .7 alerts at minute-ends 11 and 16 (cooldown 5m), .9 at 4.
    let expected: Vec<(String, i64)> = vec![
        ("203.0.113.7".into(), 11),
        ("203.0.113.7".into(), 16),
        ("203.0.113.9".into(), 4),
    ];
    assert_eq!(got, expected);
    assert_eq!(alerts.lock().unwrap().len(), 3, "each alert once");
}

#[test]
fn bad_options_name_the_option_and_the_field() {
    let schema = access_schema();
    let filter_config = filter::FilterConfig {
        inputs: vec![],
        condition: "stauts >= 500".into(),
    };
    let error = filter::build(&filter_config, &schema).unwrap_err();
    assert_eq!(error.option, "condition");
    assert!(error.message.contains("stauts"), "{error}");
    let error = filter::build(
        &filter::FilterConfig {
            inputs: vec![],
            condition: "path".into(),
        },
        &schema,
    )
    .unwrap_err();
    assert!(error.message.contains("bool"), "{error}");
    let map_config: map::MapConfig = toml::from_str(r#"drop = ["nope"]"#).unwrap();
    let error = map::build(&map_config, &schema).unwrap_err();
    assert_eq!(error.option, "drop");
    let threshold_config: threshold::ThresholdConfig = toml::from_str(
        r#"condition = "status > 1"
time_field = "status""#,
    )
    .unwrap();
    let error = threshold::build(&threshold_config, &schema, "t").unwrap_err();
    assert_eq!(error.option, "time_field");
}
