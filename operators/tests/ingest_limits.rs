//! Goal: the `http` and `tcp` sources hold their listener limits
//! (`docs/protocol.md`, "Limits"): strict request heads, a header timeout
//! against slow heads, a read timeout against stalled bodies and payloads,
//! an idle timeout, a read budget that refuses what it cannot hold and
//! recovers, and request limits no larger than one write-ahead log record.
//!
//! Method: a pipeline (ingest source → file sink, or a programmatic
//! source → counting sink) runs on a 2-shard runtime with a data
//! directory; raw requests go over loopback TCP from the test thread, with
//! short timeouts configured (500 ms) and generous bounds on how long the
//! server may take to act (10 s), so a loaded machine slows the test down
//! but does not fail it. The connection cap, descriptors and memory are
//! checked on the `weir` binary (`tests/ingest_limits.rs` at the top).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use support::ingest::{connect, free_port, read_ack, read_response, runtime, send_frame, start};
use weir_operators::config::{parse, ConfigErrorKind};
use weir_operators::sinks::ForEach;
use weir_operators::sources::ingest::event::IngestEvent;
use weir_operators::sources::ingest::http::HttpOptions;
use weir_operators::sources::ingest::limits::payload_bytes_max;
use weir_operators::sources::ingest::{IngestOptions, IngestSource, Mesh, Protocol};
use weir_protocol::{self as wire, AckStatus, WireEvent};
use weir_runtime::{ArchivedRecord, GraphBuilder, Partition, Running};

/// How long the server may take to do what a test waits for.
const ACT_WITHIN: Duration = Duration::from_secs(10);

/// Sends `head` (lines joined by `\n`, without the blank line) and `body`.
fn send(stream: &mut TcpStream, head: &str, body: &[u8]) {
    let mut bytes = head.replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).expect("send request");
}

/// Waits for the server to close `stream` (whatever it sends first is
/// dropped); returns how long that took. Fails after [`ACT_WITHIN`].
fn closed_within(stream: &mut TcpStream, started: Instant) -> Duration {
    stream.set_read_timeout(Some(ACT_WITHIN)).expect("timeout");
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return started.elapsed(),
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return started.elapsed()
            }
            Err(error) => {
                panic!("the server did not close the connection within {ACT_WITHIN:?} ({error})")
            }
        }
    }
}

fn ndjson(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("{{\"key\":\"{key}\",\"ts\":1000}}\n"))
        .collect()
}

/// A POST head for `body_len` bytes with `extra` header lines.
fn post_head(extra: &str, body_len: usize) -> String {
    format!(
        "POST /events HTTP/1.1\nHost: t\nContent-Type: application/x-ndjson\n\
         {extra}Content-Length: {body_len}\n"
    )
}

fn http_source(port: u16, extra: &str) -> String {
    format!(
        "[sources.in]\ntype = \"http\"\nformat = \"weir\"\nlisten = \"127.0.0.1:{port}\"\ntoken = \"s3cret\"\n\
         body_limit_bytes = 4096\n{extra}"
    )
}

fn tcp_source(port: u16, extra: &str) -> String {
    format!(
        "[sources.in]\ntype = \"tcp\"\nlisten = \"127.0.0.1:{port}\"\nmax_frame_bytes = 4096\n{extra}"
    )
}

const AUTH: &str = "Authorization: Bearer s3cret\n";

fn started(source: impl Fn(u16) -> String) -> (SocketAddr, Running, [tempfile::TempDir; 2]) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let running = start(&source(port), dirs[0].path(), dirs[1].path());
    (addr, running, dirs)
}

fn stop(running: Running) {
    running.handle().shutdown();
    running.wait().expect("clean run");
}

#[test]
fn http_heads_are_parsed_strictly() {
    let (addr, running, _dirs) = started(|port| http_source(port, ""));
    let body = ndjson(&["a"]);

    // Two Content-Length headers (even equal ones), or one that is not
    // plain digits: 400, and the connection closes.
    for lengths in [
        format!("Content-Length: {0}\nContent-Length: {0}\n", body.len()),
        format!("Content-Length: +{}\n", body.len()),
        "Content-Length: -1\n".to_string(),
        format!("Content-Length: {} 0\n", body.len()),
    ] {
        let mut stream = connect(addr);
        let head = format!("POST /events HTTP/1.1\nHost: t\n{AUTH}{lengths}");
        send(&mut stream, &head, body.as_bytes());
        let (status, headers, text) = read_response(&mut stream);
        assert_eq!(status, 400, "{lengths:?}: {text}");
        assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
        closed_within(&mut stream, Instant::now());
    }

    // The Bearer scheme in any case.
    let mut stream = connect(addr);
    let head = post_head("Authorization: bearer s3cret\n", body.len());
    send(&mut stream, &head, body.as_bytes());
    let (status, _, text) = read_response(&mut stream);
    assert_eq!((status, text.as_str()), (200, r#"{"accepted":1}"#));

    // HTTP/1.0 closes after the answer unless it asks for keep-alive.
    let mut stream = connect(addr);
    let head = post_head(AUTH, body.len()).replace("HTTP/1.1", "HTTP/1.0");
    send(&mut stream, &head, body.as_bytes());
    let (status, headers, _) = read_response(&mut stream);
    assert_eq!(status, 200);
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    closed_within(&mut stream, Instant::now());
    let mut stream = connect(addr);
    let head = format!("{}Connection: keep-alive\n", post_head(AUTH, body.len()))
        .replace("HTTP/1.1", "HTTP/1.0");
    for _ in 0..2 {
        send(&mut stream, &head, body.as_bytes());
        let (status, headers, _) = read_response(&mut stream);
        assert_eq!(status, 200);
        assert_eq!(headers["connection"], "keep-alive");
    }

    // HTTP/1.1 with `Connection: close`.
    let mut stream = connect(addr);
    let head = format!("{}Connection: close\n", post_head(AUTH, body.len()));
    send(&mut stream, &head, body.as_bytes());
    let (status, headers, _) = read_response(&mut stream);
    assert_eq!(status, 200);
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    closed_within(&mut stream, Instant::now());
    stop(running);
}

#[test]
fn a_refused_request_is_answered_before_its_body_and_closed() {
    let (addr, running, _dirs) = started(|port| http_source(port, ""));
    // Only the head and a little of the 4 KiB body are sent: the answer
    // comes without the rest, and the connection closes.
    let mut stream = connect(addr);
    send(
        &mut stream,
        &post_head("Authorization: Bearer nope\n", 4000),
        b"{\"key\"",
    );
    let (status, headers, _) = read_response(&mut stream);
    assert_eq!(status, 401);
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    closed_within(&mut stream, Instant::now());
    stop(running);
}

#[test]
fn a_slow_request_head_is_closed_by_the_header_timeout() {
    let (addr, running, _dirs) = started(|port| http_source(port, "header_timeout_ms = 500\n"));
    // A connection that says nothing is closed, without an answer.
    let mut silent = connect(addr);
    let opened = Instant::now();
    let elapsed = closed_within(&mut silent, opened);
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed after {elapsed:?}"
    );

    // Slowloris: a head that keeps coming, a header line every 100 ms.
    let mut slow = connect(addr);
    let slow_opened = Instant::now();
    slow.write_all(b"POST /events HTTP/1.1\r\nHost: t\r\n")
        .expect("send");
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut answer = Vec::new();
    let closed = loop {
        assert!(
            slow_opened.elapsed() < ACT_WITHIN,
            "the slow head was not cut off within {ACT_WITHIN:?}"
        );
        let mut buf = [0u8; 1024];
        match slow.read(&mut buf) {
            Ok(0) => break slow_opened.elapsed(),
            Ok(read) => answer.extend_from_slice(&buf[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                break slow_opened.elapsed()
            }
            Err(_) => {}
        }
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break closed_within(&mut slow, slow_opened);
        }
    };
    assert!(
        closed >= Duration::from_millis(400),
        "closed after {closed:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    stop(running);
}

fn events(prefix: &str, count: usize) -> Vec<WireEvent> {
    (0..count)
        .map(|i| WireEvent {
            key: format!("{prefix}-{i}"),
            ts_ms: 1_000,
            sent_ns: 0,
            body: b"{}".to_vec(),
        })
        .collect()
}

#[test]
fn tcp_frame_headers_and_payloads_time_out() {
    let limits = "header_timeout_ms = 500\nread_timeout_ms = 500\n";
    let (addr, running, _dirs) = started(|port| tcp_source(port, limits));
    let frame = wire::encode_frame(0, 7, &events("t", 3));

    // Part of a header, then nothing.
    let mut stream = connect(addr);
    let sent = Instant::now();
    stream.write_all(&frame[..10]).expect("send");
    let (ack, detail) = read_ack(&mut stream);
    assert_eq!(ack.status, AckStatus::Rejected);
    assert!(detail.contains("within 500 ms"), "{detail}");
    assert!(closed_within(&mut stream, sent) >= Duration::from_millis(400));

    // A whole header and part of the payload, then nothing.
    let mut stream = connect(addr);
    let sent = Instant::now();
    stream.write_all(&frame[..frame.len() - 5]).expect("send");
    let (ack, detail) = read_ack(&mut stream);
    assert_eq!((ack.status, ack.batch_id), (AckStatus::Rejected, 7));
    assert!(detail.contains("stalled"), "{detail}");
    assert!(closed_within(&mut stream, sent) >= Duration::from_millis(400));
    stop(running);
}

#[test]
fn idle_connections_are_closed_by_the_idle_timeout() {
    let (addr, running, _dirs) = started(|port| tcp_source(port, "idle_timeout_ms = 500\n"));
    let mut stream = connect(addr);
    let (ack, _) = send_frame(&mut stream, &wire::encode_frame(0, 1, &events("i", 2)));
    assert_eq!(ack.status, AckStatus::Durable);
    let idle = closed_within(&mut stream, Instant::now());
    assert!(idle >= Duration::from_millis(400), "closed after {idle:?}");
    stop(running);

    let (addr, running, _dirs) = started(|port| http_source(port, "idle_timeout_ms = 500\n"));
    let mut stream = connect(addr);
    let body = ndjson(&["h"]);
    send(&mut stream, &post_head(AUTH, body.len()), body.as_bytes());
    assert_eq!(read_response(&mut stream).0, 200);
    let idle = closed_within(&mut stream, Instant::now());
    assert!(idle >= Duration::from_millis(400), "closed after {idle:?}");
    stop(running);
}

/// NDJSON of exactly `len` bytes: one event padded with spaces.
fn padded_event(key: &str, len: usize) -> Vec<u8> {
    let mut body = format!("{{\"key\":\"{key}\"}}").into_bytes();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

#[test]
fn the_read_budget_refuses_what_it_cannot_hold_and_recovers() {
    let (addr, running, _dirs) = started(|port| http_source(port, "read_budget_bytes = 4096\n"));
    // A holds the whole budget with a body in progress.
    let full = padded_event("held", 4096);
    let mut holder = connect(addr);
    send(&mut holder, &post_head(AUTH, full.len()), &full[..100]);
    std::thread::sleep(Duration::from_millis(200));
    // B does not fit: 429 with Retry-After, before its body, and closed.
    let small = ndjson(&["refused"]);
    let mut refused = connect(addr);
    send(&mut refused, &post_head(AUTH, small.len()), b"");
    let (status, headers, text) = read_response(&mut refused);
    assert_eq!(status, 429, "{text}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    // A finishes; its share comes back, and C fits.
    holder.write_all(&full[100..]).expect("rest of the body");
    assert_eq!(read_response(&mut holder).0, 200);
    let mut later = connect(addr);
    send(&mut later, &post_head(AUTH, small.len()), small.as_bytes());
    assert_eq!(read_response(&mut later).0, 200);
    stop(running);

    let (addr, running, _dirs) = started(|port| tcp_source(port, "read_budget_bytes = 4096\n"));
    let mut holder = connect(addr);
    let big = wire::FrameHeader {
        flags: 0,
        batch_id: 1,
        len: 4096,
        crc: 0,
    };
    holder.write_all(&big.encode()).expect("header");
    std::thread::sleep(Duration::from_millis(200));
    let mut other = connect(addr);
    let (ack, detail) = send_frame(&mut other, &wire::encode_frame(0, 2, &events("o", 2)));
    assert_eq!(ack.status, AckStatus::Overloaded, "{detail}");
    assert!(detail.contains("read budget"), "{detail}");
    drop(holder); // the reservation returns with the connection
    let deadline = Instant::now() + ACT_WITHIN;
    loop {
        let (ack, _) = send_frame(&mut other, &wire::encode_frame(0, 3, &events("o", 2)));
        if ack.status == AckStatus::Durable {
            break;
        }
        assert!(Instant::now() < deadline, "the budget never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(running);
}

#[test]
fn request_limits_above_one_log_record_are_refused_by_validation() {
    let max = payload_bytes_max("in");
    assert_eq!(max, (16 << 20) - 36, "16 MiB less 34 bytes and the name");
    let config = |source: &str| {
        format!("{source}\n[sinks.raw]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out\"\n")
    };
    let http = |limit: usize| {
        config(&format!(
            "[sources.in]\ntype = \"http\"\nlisten = \"127.0.0.1:1\"\nbody_limit_bytes = {limit}\n\
             read_budget_bytes = 1073741824\nformat = \"weir\""
        ))
    };
    let tcp = |limit: usize| {
        config(&format!(
            "[sources.in]\ntype = \"tcp\"\nlisten = \"127.0.0.1:1\"\nmax_frame_bytes = {limit}\n\
             read_budget_bytes = 1073741824"
        ))
    };
    for (text, option) in [
        (http(100 << 20), "body_limit_bytes"),
        (http(max + 1), "body_limit_bytes"),
        (tcp(16 << 20), "max_frame_bytes"),
    ] {
        let error = parse(&text, "pipeline.toml").expect_err("refused");
        assert_eq!(error.kind, ConfigErrorKind::Invalid, "{error}");
        assert_eq!(error.location.map(|at| at.line), Some(4), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(option)
                && message.contains("write-ahead log record")
                && message.contains(&max.to_string()),
            "{message}"
        );
    }
    parse(&http(max), "pipeline.toml").expect("a limit of one record is valid");
    parse(&tcp(max), "pipeline.toml").expect("a limit of one record is valid");

    // Listener limits are checked too.
    for (extra, option) in [
        ("header_timeout_ms = 0", "header_timeout_ms"),
        ("connections_max = 0", "connections_max"),
        ("read_budget_bytes = 100", "read_budget_bytes"),
    ] {
        let text = config(&format!(
            "[sources.in]\ntype = \"http\"\nlisten = \"127.0.0.1:1\"\n{extra}\nformat = \"weir\""
        ));
        let error = parse(&text, "pipeline.toml").expect_err("refused");
        assert!(error.to_string().contains(option), "{error}");
        assert_eq!(error.location.map(|at| at.line), Some(4), "{error}");
    }
}

#[test]
fn a_body_above_one_log_record_is_413_and_one_at_the_limit_is_logged() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Built without the config file, so that validation cannot refuse the
    // 100 MiB limit: the source lowers it to what one record holds.
    let options = IngestOptions::new(addr);
    let http = HttpOptions {
        body_limit_bytes: 100 << 20,
        ..HttpOptions::default()
    };
    let received = Arc::new(AtomicUsize::new(0));
    let mut graph = GraphBuilder::new();
    let mesh = Arc::new(OnceLock::new());
    let limits = options.limits.clone();
    graph.source("in", move |context| {
        let mesh = mesh.get_or_init(|| Arc::new(Mesh::new(context.instances, &limits)));
        let protocol = Protocol::Http(http.clone());
        IngestSource::new(protocol, options.clone(), context, mesh.clone())
    });
    let counted = received.clone();
    graph.sink("count", move |_| {
        let counted = counted.clone();
        ForEach::<IngestEvent, _, _>::new(
            move |event: &ArchivedRecord<IngestEvent>| {
                counted.fetch_add(event.body.len(), Ordering::Relaxed);
            },
            || {},
        )
    });
    graph.connect::<IngestEvent>("in", "count", Partition::Forward);
    let running = runtime(data.path())
        .start(graph.build().expect("graph"))
        .expect("starts");

    // 17 MiB: 413 from the head alone, and the connection closes.
    let mut stream = connect(addr);
    send(&mut stream, &post_head("", 17 << 20), b"");
    let (status, headers, text) = read_response(&mut stream);
    assert_eq!(status, 413, "{text}");
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    let max = payload_bytes_max("in");
    assert!(text.contains(&max.to_string()), "{text}");

    // Exactly one record's worth: logged and emitted.
    let body = padded_event("big", max);
    let mut stream = connect(addr);
    send(&mut stream, &post_head("", body.len()), &body);
    let (status, _, text) = read_response(&mut stream);
    assert_eq!((status, text.as_str()), (200, r#"{"accepted":1}"#));
    stop(running);
    assert_eq!(received.load(Ordering::Relaxed), max);
}
