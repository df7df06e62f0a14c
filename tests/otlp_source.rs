//! Goal: the `otlp` source takes OTLP/HTTP log exports (issue 21) the way
//! OpenTelemetry SDKs and collectors send them: protobuf and JSON bodies
//! of `ExportLogsServiceRequest` on `/v1/logs`, answered per the OTLP/HTTP
//! specification; records ten minutes old land in their own windows; the
//! OpenTelemetry Python SDK's exporter (PyPI) delivers through it; a
//! SIGKILL loses nothing acknowledged.
//!
//! Method: the `weir` binary runs pipeline files as child processes;
//! requests are built with the OpenTelemetry project's own protobuf types
//! (`opentelemetry-proto`) or written as the specification's JSON, posted
//! with `curl`, and the committed NDJSON files are read back.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use support::{
    assert_each_once, free_port, kill_kill_stop, now_ms, published_lines, published_rows, rfc3339,
    scratch, wait_for, wait_listening, Weir,
};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const MINUTE_MS: u64 = 60_000;
const PROTOBUF: &str = "Content-Type: application/x-protobuf";

/// What `curl` got back: status, content type and body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// POSTs `body` to `http://addr/v1/logs` with `curl` and `headers`.
fn curl(addr: SocketAddr, path: &str, body: &[u8], headers: &[&str]) -> Answer {
    let dir = scratch();
    let (request, response) = (dir.path().join("request"), dir.path().join("response"));
    std::fs::write(&request, body).expect("body file");
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--max-time",
        "30",
        "-w",
        "%{http_code} %{content_type}",
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    command
        .arg("-o")
        .arg(&response)
        .arg("--data-binary")
        .arg(format!("@{}", request.display()))
        .arg(format!("http://{addr}{path}"));
    let output = command
        .output()
        .expect("curl (scripts/install-build-deps.sh)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, content_type) = text.split_once(' ').unwrap_or((&text, ""));
    let status = status
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl: {text:?} {:?}", output.stderr));
    Answer {
        status,
        content_type: content_type.to_owned(),
        body: std::fs::read(&response).unwrap_or_default(),
    }
}

fn string(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.into())),
    })
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// A log record at `ms` with `severity`, `message` and `attributes`.
fn record(ms: u64, severity: (i32, &str), message: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: ms * 1_000_000,
        observed_time_unix_nano: ms * 1_000_000 + 5_000_000,
        severity_number: severity.0,
        severity_text: severity.1.into(),
        body: string(message),
        attributes,
        ..LogRecord::default()
    }
}

/// One export request from service `service` holding `records`.
fn export(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute(
                        "service.name",
                        any_value::Value::StringValue(service.into()),
                    ),
                    attribute("host.name", any_value::Value::StringValue("web-1".into())),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "shop.payments".into(),
                    version: "2.1.0".into(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// An `otlp` source on `port`, its rows into a file and into per-minute
/// counts by service and severity.
fn pipeline(port: u16, out: &Path) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 50

[sources.logs]
type = "otlp"
listen = "127.0.0.1:{port}"
max_out_of_orderness = "1s"
watermark_idle_timeout = "1s"

[processors.minutes]
type = "window"
inputs = ["logs"]
size = "1m"
group_by = ["key", "severity_text"]
aggregates = ["count"]

[sinks.counts]
type = "file"
inputs = ["minutes"]
path = "{counts}"
roll_interval = "0s"
format = "ndjson"

[sinks.late]
type = "file"
inputs = ["minutes.late"]
path = "{late}"
roll_interval = "0s"
format = "ndjson"

[sinks.rows]
type = "file"
inputs = ["logs"]
path = "{rows}"
roll_interval = "0s"
format = "ndjson"
"#,
        counts = out.join("counts").display(),
        late = out.join("late").display(),
        rows = out.join("rows").display(),
    )
}

/// The committed `(window_start, service, severity) -> count` rows.
fn counts(dir: &Path) -> BTreeMap<(String, String, String), i64> {
    let mut counts = BTreeMap::new();
    for row in published_rows(dir) {
        let text = |field: &str| row[field].as_str().unwrap_or_default().to_owned();
        let key = (text("window_start"), text("key"), text("severity_text"));
        let count = row["count"].as_i64().expect("count");
        assert!(
            counts.insert(key.clone(), count).is_none(),
            "window {key:?} published twice"
        );
    }
    counts
}

/// Protobuf and JSON exports ten minutes old land in their windows with
/// exact counts, every column as sent; bad requests get the
/// specification's answers and add nothing.
#[test]
fn protobuf_and_json_exports_land_in_their_windows() {
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, pipeline(port, &out)).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(addr, Duration::from_secs(10));

    let t0 = (now_ms() - 10 * MINUTE_MS) / MINUTE_MS * MINUTE_MS;
    let minute = |n: u64| rfc3339(t0 + n * MINUTE_MS);
    // Protobuf: three errors in the first minute (one with a trace), two
    // infos in the second.
    let mut records: Vec<LogRecord> = (0..3)
        .map(|i| {
            let user = attribute("user", any_value::Value::StringValue(format!("u{i}")));
            let amount = attribute("amount", any_value::Value::DoubleValue(9.5));
            record(
                t0 + 1_000 * i,
                (17, "ERROR"),
                "card declined",
                vec![user, amount],
            )
        })
        .collect();
    records[0].trace_id = (1..=16).collect();
    records[0].span_id = (1..=8).collect();
    records[0].flags = 1;
    records.extend((0..2).map(|i| record(t0 + MINUTE_MS + i, (9, "INFO"), "paid", vec![])));
    let body = export("checkout", records).encode_to_vec();
    let answer = curl(addr, "/v1/logs", &body, &[PROTOBUF]);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.content_type, "application/x-protobuf");
    assert!(answer.body.is_empty(), "an empty ExportLogsServiceResponse");

    // JSON, as the OTLP specification writes it (gzip-compressed, as
    // exporters send with `compression = gzip`).
    let json = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[
        {{"key":"service.name","value":{{"stringValue":"search"}}}}]}},
        "scopeLogs":[{{"scope":{{"name":"search.api"}},"logRecords":[
        {{"timeUnixNano":"{a}","severityNumber":13,"severityText":"WARN",
          "body":{{"stringValue":"slow query"}},
          "attributes":[{{"key":"ms","value":{{"intValue":"1200"}}}}]}},
        {{"observedTimeUnixNano":"{b}","severityNumber":13,"severityText":"WARN",
          "body":{{"kvlistValue":{{"values":[{{"key":"q","value":{{"stringValue":"shoes"}}}}]}}}}}}
        ]}}]}}]}}"#,
        a = (t0 + MINUTE_MS + 10) * 1_000_000,
        b = (t0 + MINUTE_MS + 20) * 1_000_000,
    );
    let body = compress_gzip(json.as_bytes());
    let headers = ["Content-Type: application/json", "Content-Encoding: gzip"];
    let answer = curl(addr, "/v1/logs", &body, &headers);
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (200, b"{}".as_slice())
    );

    // Refused, adding nothing: not a request (400 with a google.rpc.Status
    // in the request's encoding), another media type (415), another path
    // (404).
    let answer = curl(addr, "/v1/logs", b"\xff\xff\xff\xff", &[PROTOBUF]);
    assert_eq!(answer.status, 400);
    let status = Status::decode(answer.body.as_slice()).expect("a google.rpc.Status");
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(
        status.message.contains("not an ExportLogsServiceRequest"),
        "{}",
        status.message
    );
    let answer = curl(
        addr,
        "/v1/logs",
        br#"{"resourceLogs":"x"}"#,
        &["Content-Type: application/json"],
    );
    assert_eq!(answer.status, 400);
    let status: serde_json::Value = serde_json::from_slice(&answer.body).expect("json status");
    assert_eq!(status["code"], 3);
    let answer = curl(addr, "/v1/logs", b"hello", &["Content-Type: text/plain"]);
    assert_eq!(answer.status, 415);
    let answer = curl(addr, "/v1/traces", b"", &[PROTOBUF]);
    assert_eq!(answer.status, 404);

    // A current record moves the watermark past the old windows.
    let now = export(
        "checkout",
        vec![record(now_ms(), (9, "INFO"), "now", vec![])],
    );
    assert_eq!(
        curl(addr, "/v1/logs", &now.encode_to_vec(), &[PROTOBUF]).status,
        200
    );
    wait_for("the old windows", Duration::from_secs(30), || {
        counts(&out.join("counts")).len() == 3
    });
    std::thread::sleep(Duration::from_millis(1_500));
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");

    let key = |n: u64, service: &str, level: &str| (minute(n), service.into(), level.into());
    assert_eq!(
        counts(&out.join("counts")),
        BTreeMap::from([
            (key(0, "checkout", "ERROR"), 3),
            (key(1, "checkout", "INFO"), 2),
            (key(1, "search", "WARN"), 2),
        ])
    );
    assert!(published_lines(&out.join("late")).is_empty());

    let rows = published_rows(&out.join("rows"));
    assert_eq!(rows.len(), 8, "{rows:?}");
    let traced: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|row| !row["trace_id"].is_null())
        .collect();
    assert_eq!(traced.len(), 1, "{rows:?}");
    let mut traced = traced[0].clone();
    // The file sink leaves null columns out.
    traced.as_object_mut().expect("object").remove("id");
    assert_eq!(
        traced,
        serde_json::json!({
            "key": "checkout",
            "timestamp": rfc3339(t0),
            "observed_timestamp": rfc3339(t0 + 5),
            "severity_number": 17,
            "severity_text": "ERROR",
            "body": "card declined",
            "attributes": {"user": "u0", "amount": 9.5},
            "resource": {"service.name": "checkout", "host.name": "web-1"},
            "scope_name": "shop.payments",
            "scope_version": "2.1.0",
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
            "span_id": "0102030405060708",
            "flags": 1,
        })
    );
    let structured = rows
        .iter()
        .find(|row| row["body"] == r#"{"q":"shoes"}"#)
        .expect("the kvlist body, as JSON text");
    // No time: the observed time stands in.
    assert_eq!(structured["timestamp"], rfc3339(t0 + MINUTE_MS + 20));
    let slow = rows
        .iter()
        .find(|row| row["body"] == "slow query")
        .expect("the JSON record");
    assert_eq!(slow["attributes"], serde_json::json!({"ms": 1200}));
    assert_eq!(slow["scope_name"], "search.api");
}

/// `google.rpc.Status`, as OTLP error answers carry it.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn compress_gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip (scripts/install-build-deps.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write");
    let output = child.wait_with_output().expect("gzip");
    assert!(output.status.success(), "gzip failed");
    output.stdout
}

/// What a Python service instrumented with the OpenTelemetry SDK logs
/// reaches weir's rows through the SDK's own OTLP/HTTP exporter.
const PYTHON_SERVICE: &str = r#"
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.resources import Resource

endpoint, count = sys.argv[1], int(sys.argv[2])
provider = LoggerProvider(resource=Resource.create({"service.name": "payments"}))
provider.add_log_record_processor(
    BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint), max_export_batch_size=64))
log = logging.getLogger("payments")
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
log.setLevel(logging.INFO)
log.propagate = False
for i in range(count):
    log.error("payment %d failed", i, extra={"order": i})
ok = provider.force_flush(30000)
provider.shutdown()
sys.exit(0 if ok else 1)
"#;

#[test]
fn the_python_sdk_exports_through_the_source() {
    const COUNT: u64 = 300;
    let python = support::tool_python("scripts/install-otel-python.sh");
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, pipeline(port, &out)).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(addr, Duration::from_secs(10));

    let script = root.path().join("service.py");
    std::fs::write(&script, PYTHON_SERVICE).expect("script");
    let run = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}/v1/logs"))
        .arg(COUNT.to_string())
        .output()
        .expect("python");
    assert!(
        run.status.success(),
        "the Python service: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    wait_for("the exported rows", RUN_TIMEOUT, || {
        published_lines(&out.join("rows")).len() as u64 >= COUNT
    });
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");

    let rows = published_rows(&out.join("rows"));
    assert_eq!(rows.len() as u64, COUNT);
    let mut orders: Vec<u64> = rows
        .iter()
        .map(|row| {
            assert_eq!(row["key"], "payments");
            assert_eq!(row["severity_text"], "ERROR");
            assert_eq!(row["severity_number"], 17);
            assert_eq!(row["scope_name"], "payments");
            let order = row["attributes"]["order"].as_u64().expect("order");
            assert_eq!(row["body"], format!("payment {order} failed"));
            order
        })
        .collect();
    orders.sort_unstable();
    assert_eq!(orders, (0..COUNT).collect::<Vec<_>>());
}

#[test]
fn kills_and_a_stop_lose_nothing_acknowledged() {
    const BATCHES: u64 = 120;
    const RECORDS: u64 = 20;
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, pipeline(port, &out)).expect("config");
    let data = root.path().join("data");
    let weir = Weir::start(&config, &data, &[], &[]);
    wait_listening(addr, Duration::from_secs(10));

    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            for batch in 0..BATCHES {
                let records = (0..RECORDS)
                    .map(|seq| {
                        let attributes = vec![
                            attribute("batch", any_value::Value::IntValue(batch as i64)),
                            attribute("seq", any_value::Value::IntValue(seq as i64)),
                        ];
                        record(now_ms(), (9, "INFO"), "m", attributes)
                    })
                    .collect();
                let body = export("checkout", records).encode_to_vec();
                // A batch id makes a retried export count once.
                let id = format!("Weir-Batch-Id: otlp-{batch}");
                let deadline = Instant::now() + Duration::from_secs(60);
                while curl(addr, "/v1/logs", &body, &[PROTOBUF, &id]).status != 200 {
                    assert!(Instant::now() < deadline, "batch {batch} never accepted");
                    std::thread::sleep(Duration::from_millis(50));
                }
                acked.store(batch + 1, std::sync::atomic::Ordering::Release);
            }
        })
    };
    kill_kill_stop(weir, &config, &data, &acked, BATCHES, client);

    let rows = published_rows(&out.join("rows"));
    let indices = rows.iter().map(|row| {
        let batch = row["attributes"]["batch"].as_u64().expect("batch");
        let seq = row["attributes"]["seq"].as_u64().expect("seq");
        (batch * RECORDS + seq) as usize
    });
    assert_each_once(indices, (BATCHES * RECORDS) as usize, "records");
}
