//! The `otlp` source's requests: OTLP/HTTP log exports (`POST /v1/logs`,
//! an `ExportLogsServiceRequest` in protobuf or in the OTLP JSON mapping),
//! read with the OpenTelemetry project's own types (`opentelemetry-proto`).
//!
//! A request is decoded whole, then flattened: each log record becomes one
//! JSON line carrying its resource's and scope's fields ([`Line`]), and
//! the lines are what the write-ahead log keeps (`Encoding::Ndjson`), so a
//! restart reads them back without the protobuf. The `NAME:rows` node
//! reads the lines with [`format`]: a `format = "json"` layout of fixed
//! fields.
//!
//! Answers follow the OTLP/HTTP specification: 200 with an
//! `ExportLogsServiceResponse` in the request's encoding once the records
//! are durable; 400 (not retryable) with a `google.rpc.Status` when the
//! body does not decode; 429 and 503 (retryable, with `Retry-After`) when
//! the pipeline is backed up or the source is not taking input.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use super::head::Head;
use super::response::{retry_after_seconds, Response};
use super::{index_events, Settings};
use crate::row::Type;
use crate::sources::ingest::budget::Reservation;
use crate::sources::ingest::json_events::{JsonFormat, TimestampFormat};
use crate::sources::ingest::{enqueue, Encoding, IngestQueue, Payload, Refused, Settled};

/// The fields of an `otlp` source's rows after `id`, `key` (the resource's
/// `service.name`) and `timestamp` (the record's time, else its observed
/// time, else when weir accepted it), in order.
pub const FIELDS: [(&str, Type); 14] = [
    ("observed_timestamp", Type::Timestamp),
    ("severity_number", Type::Int),
    ("severity_text", Type::String),
    ("body", Type::String),
    ("attributes", Type::Map),
    ("resource", Type::Map),
    ("scope_name", Type::String),
    ("scope_version", Type::String),
    ("scope_attributes", Type::Map),
    ("trace_id", Type::String),
    ("span_id", Type::String),
    ("flags", Type::Int),
    ("event_name", Type::String),
    ("dropped_attributes_count", Type::Int),
];

/// How the flattened lines are read: `key`, `timestamp` (ms) and
/// [`FIELDS`].
pub fn format() -> JsonFormat {
    JsonFormat {
        key_field: Some("key".into()),
        timestamp_field: Some("timestamp".into()),
        timestamp_format: TimestampFormat::UnixMs,
        fields: FIELDS
            .iter()
            .map(|(name, ty)| ((*name).to_owned(), *ty))
            .collect(),
    }
}

/// Decodes, flattens, queues and awaits one export request.
pub(super) async fn handle(
    head: &Head,
    (body, reservation): (Payload, Reservation),
    queue: &IngestQueue,
    settings: &Settings,
) -> Response {
    let protobuf = head.protobuf;
    let request = match decode(&body, protobuf) {
        Ok(request) => request,
        Err(message) => return status(400, &message, protobuf),
    };
    let mut lines = Payload::with_capacity(body.len() * 2);
    let records = flatten(&request, &mut lines);
    drop(request);
    drop((body, reservation));
    if records == 0 {
        return accepted(protobuf);
    }
    let limit = settings.options.record_limit_bytes;
    if lines.len() > limit {
        let message = format!(
            "the {records} log records take {} bytes as logged, more than one write-ahead log \
             record holds ({limit} bytes): send smaller batches",
            lines.len()
        );
        return status(413, &message, protobuf);
    }
    let retry_after = retry_after_seconds(settings.retry_after_ms);
    let Some(reservation) = queue.mesh.budget.reserve(lines.len()) else {
        return status(
            429,
            "the source's read budget is spent; retry later",
            protobuf,
        )
        .header("retry-after", retry_after);
    };
    let json = settings.options.json.as_deref();
    let index = match index_events(false, &lines, json) {
        Ok(index) => index,
        Err(bad) => return status(400, &bad.message, protobuf),
    };
    let pending = enqueue(
        queue,
        Encoding::Ndjson,
        head.batch_id,
        records,
        (lines, reservation),
        index,
    );
    let pending = match pending {
        Ok(pending) => pending,
        Err(Refused::Full) => {
            return status(429, "the pipeline is backed up; retry later", protobuf)
                .header("retry-after", retry_after)
        }
        Err(Refused::Unavailable) => {
            return status(503, "the source is not accepting input", protobuf)
                .header("retry-after", retry_after)
        }
    };
    match pending.settle().await {
        Ok(Settled::Accepted(_) | Settled::Duplicate) => accepted(protobuf),
        Err(error) => status(503, &error, protobuf).header("retry-after", retry_after),
    }
}

/// The request in `body`, or why it is not one.
pub fn decode(body: &[u8], protobuf: bool) -> Result<ExportLogsServiceRequest, String> {
    if protobuf {
        ExportLogsServiceRequest::decode(body).map_err(|error| {
            format!("the body is not an ExportLogsServiceRequest in protobuf: {error}")
        })
    } else {
        serde_json::from_slice(body).map_err(|error| {
            format!("the body is not an ExportLogsServiceRequest in OTLP JSON: {error}")
        })
    }
}

/// Appends one JSON line per log record of `request` to `out`; returns how
/// many.
pub fn flatten(request: &ExportLogsServiceRequest, out: &mut Payload) -> usize {
    let mut records = 0;
    for resource_logs in &request.resource_logs {
        let resource: &[KeyValue] = resource_logs
            .resource
            .as_ref()
            .map_or(&[], |resource| &resource.attributes);
        let service = resource
            .iter()
            .find(|attribute| attribute.key == "service.name")
            .and_then(
                |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(name) => Some(name.as_str()),
                    _ => None,
                },
            );
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref();
            for record in &scope_logs.log_records {
                let time = match (record.time_unix_nano, record.observed_time_unix_nano) {
                    (0, 0) => None,
                    (0, observed) => Some(observed / 1_000_000),
                    (time, _) => Some(time / 1_000_000),
                };
                // A string body is written as it is (no copy); another is
                // written as JSON text.
                let body = record.body.as_ref().and_then(|body| match &body.value {
                    Some(any_value::Value::StringValue(text)) => Some(Body::Text(text)),
                    Some(_) => Some(Body::Json(Any(body))),
                    None => None,
                });
                let line = Line {
                    key: service,
                    timestamp: time,
                    observed_timestamp: nonzero(record.observed_time_unix_nano / 1_000_000),
                    severity_number: nonzero(u64::try_from(record.severity_number).unwrap_or(0)),
                    severity_text: text(&record.severity_text),
                    body,
                    attributes: attributes(&record.attributes),
                    resource: attributes(resource),
                    scope_name: scope.and_then(|scope| text(&scope.name)),
                    scope_version: scope.and_then(|scope| text(&scope.version)),
                    scope_attributes: scope.and_then(|scope| attributes(&scope.attributes)),
                    trace_id: id(&record.trace_id),
                    span_id: id(&record.span_id),
                    flags: nonzero(u64::from(record.flags)),
                    event_name: text(&record.event_name),
                    dropped_attributes_count: nonzero(u64::from(record.dropped_attributes_count)),
                };
                // Writing to memory fails only on a value serde cannot
                // write, and every value here is plain.
                if serde_json::to_writer(&mut *out, &line).is_ok() {
                    out.extend_from_slice(b"\n");
                    records += 1;
                }
            }
        }
    }
    records
}

/// One log record as the write-ahead log keeps it; absent members are
/// null columns.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Body<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Attributes<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Attributes<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope_attributes: Option<Attributes<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped_attributes_count: Option<u64>,
}

/// A record's body in its line: a string as it is, any other value as
/// the JSON text of its plain JSON.
enum Body<'a> {
    Text(&'a str),
    Json(Any<'a>),
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Body::Text(text) => serializer.serialize_str(text),
            Body::Json(value) => match serde_json::to_string(value) {
                Ok(text) => serializer.serialize_str(&text),
                Err(error) => Err(serde::ser::Error::custom(error)),
            },
        }
    }
}

fn nonzero(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

fn text(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// A trace or span id in lowercase hex; none when empty or all zeros (the
/// specification's invalid ids).
fn id(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|&byte| byte == 0) {
        return None;
    }
    Some(const_hex::encode(bytes))
}

fn attributes(list: &[KeyValue]) -> Option<Attributes<'_>> {
    (!list.is_empty()).then_some(Attributes(list))
}

/// Key-value pairs as a JSON object (a later duplicate key wins when read).
struct Attributes<'a>(&'a [KeyValue]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for attribute in self.0 {
            match &attribute.value {
                Some(value) => map.serialize_entry(&attribute.key, &Any(value))?,
                None => map.serialize_entry(&attribute.key, &())?,
            }
        }
        map.end()
    }
}

/// An `AnyValue` as plain JSON: strings, booleans, numbers, arrays and
/// objects as themselves, bytes as base64 text, an empty value as null.
struct Any<'a>(&'a AnyValue);

impl Serialize for Any<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use any_value::Value;
        match &self.0.value {
            None | Some(Value::StringValueStrindex(_)) => serializer.serialize_unit(),
            Some(Value::StringValue(text)) => serializer.serialize_str(text),
            Some(Value::BoolValue(value)) => serializer.serialize_bool(*value),
            Some(Value::IntValue(value)) => serializer.serialize_i64(*value),
            Some(Value::DoubleValue(value)) => serializer.serialize_f64(*value),
            Some(Value::BytesValue(bytes)) => {
                use base64::Engine;
                serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Some(Value::ArrayValue(array)) => {
                let mut seq = serializer.serialize_seq(Some(array.values.len()))?;
                for value in &array.values {
                    seq.serialize_element(&Any(value))?;
                }
                seq.end()
            }
            Some(Value::KvlistValue(list)) => Attributes(&list.values).serialize(serializer),
        }
    }
}

/// 200: an empty `ExportLogsServiceResponse` (every record accepted).
fn accepted(protobuf: bool) -> Response {
    if protobuf {
        let body = ExportLogsServiceResponse::default().encode_to_vec();
        Response::typed(200, "application/x-protobuf", body)
    } else {
        Response::json(200, "{}".into())
    }
}

/// `google.rpc.Status`, the body of an OTLP error answer.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An error answer with a `google.rpc.Status` in the request's encoding;
/// its gRPC code follows the HTTP status.
fn status(http: u16, message: &str, protobuf: bool) -> Response {
    let code = match http {
        400 => 3,  // INVALID_ARGUMENT
        413 => 11, // OUT_OF_RANGE
        429 => 8,  // RESOURCE_EXHAUSTED
        _ => 14,   // UNAVAILABLE
    };
    if protobuf {
        let status = Status {
            code,
            message: message.to_owned(),
        };
        Response::typed(http, "application/x-protobuf", status.encode_to_vec())
    } else {
        let body = serde_json::json!({ "code": code, "message": message }).to_string();
        Response::json(http, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..KeyValue::default()
        }
    }

    fn lines(request: &ExportLogsServiceRequest) -> Vec<serde_json::Value> {
        let mut out = Payload::new();
        let records = flatten(request, &mut out);
        let lines: Vec<serde_json::Value> = std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), records);
        lines
    }

    #[test]
    fn a_record_flattens_with_its_resource_and_scope() {
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_123_456_789,
            observed_time_unix_nano: 1_700_000_001_000_000_000,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("card declined".into())),
            }),
            attributes: vec![
                string("user", "u1"),
                KeyValue {
                    key: "tries".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(any_value::Value::IntValue(3)),
                            }],
                        })),
                    }),
                    ..KeyValue::default()
                },
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0; 8],
            flags: 1,
            ..LogRecord::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![string("service.name", "checkout")],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app".into(),
                        version: "1.2".into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: vec![record, LogRecord::default()],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let lines = lines(&request);
        assert_eq!(
            lines[0],
            serde_json::json!({
                "key": "checkout",
                "timestamp": 1_700_000_000_123u64,
                "observed_timestamp": 1_700_000_001_000u64,
                "severity_number": 17,
                "severity_text": "ERROR",
                "body": "card declined",
                "attributes": {"user": "u1", "tries": [3]},
                "resource": {"service.name": "checkout"},
                "scope_name": "app",
                "scope_version": "1.2",
                "trace_id": "abababababababababababababababab",
                "flags": 1,
            })
        );
        // An empty record keeps its resource and scope, and nothing else.
        assert_eq!(
            lines[1],
            serde_json::json!({
                "key": "checkout",
                "resource": {"service.name": "checkout"},
                "scope_name": "app",
                "scope_version": "1.2",
            })
        );
    }

    #[test]
    fn otlp_json_decodes_as_the_specification_writes_it() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000",
            "severityNumber":9,"body":{"kvlistValue":{"values":[
            {"key":"n","value":{"intValue":"7"}},{"key":"b","value":{"bytesValue":"AQI="}}]}},
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#;
        let request = decode(body, false).unwrap();
        let lines = lines(&request);
        assert_eq!(lines[0]["timestamp"], 1_700_000_000_000u64);
        assert_eq!(lines[0]["severity_number"], 9);
        assert_eq!(lines[0]["body"], r#"{"n":7,"b":"AQI="}"#);
        assert_eq!(lines[0]["trace_id"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(lines[0]["span_id"], "eee19b7ec3c1b174");
        let error = decode(b"{\"resourceLogs\":7}", false).unwrap_err();
        assert!(error.starts_with("the body is not an ExportLogsServiceRequest in OTLP JSON"));
        let error = decode(b"\xff\xff\xff", true).unwrap_err();
        assert!(error.contains("protobuf"), "{error}");
    }

    #[test]
    fn the_protobuf_round_trips() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        observed_time_unix_nano: 5_000_000,
                        ..LogRecord::default()
                    }],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let decoded = decode(&request.encode_to_vec(), true).unwrap();
        // No time: the observed time stands in.
        assert_eq!(lines(&decoded)[0]["timestamp"], 5);
        assert!(format().decode(r#"{"timestamp":5}"#, None).is_ok());
    }
}
