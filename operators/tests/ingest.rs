//! Goal: the `http` and `tcp` ingest sources answer every request as
//! `docs/protocol.md` says, a refused request adds no event, acknowledged
//! events reach committed output exactly once, and a batch id is
//! deduplicated across a restart.
//!
//! Method: a pipeline file (ingest source → NDJSON file sink) runs on a
//! 2-shard runtime with a data directory. Real requests go over loopback
//! TCP from the test thread. After a graceful shutdown the published files
//! are read back: the events in them must be exactly the events of the
//! requests that got 200 / `Durable`, each once.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use support::ingest::{connect, free_port, read_ack, read_response, send_frame, start, Response};
use weir_operators::sinks::file::STAGING_DIRECTORY;
use weir_protocol::{self as wire, AckStatus, WireEvent};

fn request(stream: &mut TcpStream, head: &str, body: &[u8]) -> Response {
    let mut bytes = head.replace('\n', "\r\n").into_bytes();
    if !head.contains("Content-Length") && !head.contains("Transfer-Encoding") {
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).expect("send request");
    read_response(stream)
}

fn post(addr: SocketAddr, extra_headers: &str, body: &str) -> Response {
    let mut stream = connect(addr);
    let head = format!(
        "POST /events HTTP/1.1\nHost: test\nContent-Type: application/x-ndjson\n{extra_headers}"
    );
    request(&mut stream, &head, body.as_bytes())
}

fn ndjson(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("{{\"key\":\"{key}\",\"ts\":1000,\"note\":\"x\"}}\n"))
        .collect()
}

/// Keys of every published event, with how often each was published.
fn published_keys(out: &Path) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return keys;
    };
    for entry in entries.flatten() {
        if entry.file_name() == STAGING_DIRECTORY {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read output");
        for line in text.lines() {
            let event: serde_json::Value = serde_json::from_str(line).expect("json line");
            let key = event["key"].as_str().expect("key").to_string();
            *keys.entry(key).or_default() += 1;
        }
    }
    keys
}

fn http_source(port: u16, extra: &str) -> String {
    format!(
        r#"[sources.in]
type = "http"
format = "weir"
listen = "127.0.0.1:{port}"
token = "s3cret"
body_limit_bytes = 4096
{extra}"#
    )
}

const AUTH: &str = "Authorization: Bearer s3cret\n";

#[test]
fn http_answers_every_error_and_refused_requests_add_nothing() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let running = start(&http_source(port, ""), data.path(), out.path());

    let (status, _, body) = post(addr, AUTH, &ndjson(&["ok-1", "ok-2"]));
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":2}"#));

    // 400 names the first bad line; the good line before it is not kept.
    let bad = "{\"key\":\"bad-1\"}\n{\"ts\":5}\n{\"key\":\"bad-3\"}\n";
    let (status, _, body) = post(addr, AUTH, bad);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("line 2") && body.contains("missing field `key`"),
        "{body}"
    );
    let (status, _, body) = post(addr, AUTH, "{\"key\":\"bad-4\"}\nnot json\n");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line 2"), "{body}");

    // 401: no token, wrong token.
    let (status, headers, body) = post(addr, "", &ndjson(&["noauth"]));
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = post(addr, "Authorization: Bearer nope\n", &ndjson(&["badauth"]));
    assert_eq!(status, 401);

    // 413: refused from Content-Length, before the body is read.
    let big = ndjson(&["big"; 200]);
    assert!(big.len() > 4096);
    let (status, headers, body) = post(addr, AUTH, &big);
    assert_eq!(status, 413, "{body}");
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    assert!(body.contains("4096"), "{body}");

    // 404, 405, 411, 415. A refusal without a body keeps the connection;
    // one with a body closes it (the body is never read).
    let mut stream = connect(addr);
    let (status, headers, _) = request(&mut stream, "GET /events HTTP/1.1\nHost: t\n", b"");
    assert_eq!((status, headers["allow"].as_str()), (405, "POST"));
    assert_eq!(headers.get("connection"), None);
    let (status, headers, _) = request(&mut stream, "POST /other HTTP/1.1\nHost: t\n", b"{}");
    assert_eq!(status, 404);
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    let (status, headers, _) = request(
        &mut connect(addr),
        "POST /events HTTP/1.1\nHost: t\nAuthorization: Bearer s3cret\nContent-Type: text/csv\n",
        b"a,b",
    );
    assert_eq!(status, 415);
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    let (status, _, _) = request(
        &mut connect(addr),
        "POST /events HTTP/1.1\nHost: t\nAuthorization: Bearer s3cret\nTransfer-Encoding: chunked\n",
        b"0\r\n\r\n",
    );
    assert_eq!(status, 411);

    // A JSON array, and keep-alive across requests on one connection.
    let mut stream = connect(addr);
    let head = "POST /events HTTP/1.1\nHost: t\nAuthorization: Bearer s3cret\nContent-Type: application/json\n";
    let (status, _, body) = request(&mut stream, head, br#"[{"key":"arr-1"},{"key":"arr-2"}]"#);
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":2}"#));
    let (status, _, body) = request(&mut stream, head, br#"[{"key":"arr-3"}, 7]"#);
    assert_eq!(status, 400);
    assert!(body.contains("element 2"), "{body}");

    running.handle().shutdown();
    running.wait().expect("clean run");
    let keys = published_keys(out.path());
    let expected: BTreeMap<String, usize> = ["ok-1", "ok-2", "arr-1", "arr-2"]
        .iter()
        .map(|key| (key.to_string(), 1))
        .collect();
    assert_eq!(keys, expected, "exactly the accepted events, once each");
}

#[test]
fn http_refuses_with_429_when_backed_up_and_counts_only_accepted() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // A queue of one event: any request that finds another one queued is
    // refused. Eight clients posting at once make that happen quickly.
    let running = start(
        &http_source(port, "queue_events = 1\nretry_after_ms = 2000\n"),
        data.path(),
        out.path(),
    );
    let clients: Vec<_> = (0..8)
        .map(|client| {
            std::thread::spawn(move || {
                let (mut accepted, mut refused) = (Vec::new(), 0usize);
                let mut stream = connect(addr);
                let head = format!(
                    "POST /events HTTP/1.1\nHost: t\nContent-Type: application/x-ndjson\n{AUTH}"
                );
                for request_index in 0..400 {
                    let keys: Vec<String> = (0..5)
                        .map(|i| format!("c{client}-r{request_index}-e{i}"))
                        .collect();
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    let (status, headers, body) =
                        request(&mut stream, &head, ndjson(&keys).as_bytes());
                    match status {
                        200 => accepted.extend(keys.iter().map(|key| key.to_string())),
                        429 => {
                            assert_eq!(headers["retry-after"], "2");
                            assert!(body.contains("backed up"), "{body}");
                            refused += 1;
                        }
                        other => panic!("unexpected status {other}: {body}"),
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for client in clients {
        let (keys, count) = client.join().expect("client");
        accepted.extend(keys);
        refused += count;
    }
    running.handle().shutdown();
    running.wait().expect("clean run");
    assert!(refused > 0, "no request was refused with 429");
    let keys = published_keys(out.path());
    let expected: BTreeMap<String, usize> = accepted.into_iter().map(|key| (key, 1)).collect();
    assert_eq!(keys.len(), expected.len());
    assert_eq!(keys, expected, "exactly the accepted events, once each");
}

#[test]
fn a_batch_id_is_deduplicated_across_a_restart() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let source = http_source(port, "");
    let running = start(&source, data.path(), out.path());
    let with_id = |id: &str| format!("{AUTH}Weir-Batch-Id: {id}\n");
    let (status, _, body) = post(addr, &with_id("batch-a"), &ndjson(&["a-1", "a-2"]));
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":2}"#));
    let mut stream = connect(addr);
    let head = format!(
        "POST /events HTTP/1.1\nHost: t\nContent-Type: application/x-ndjson\n{}",
        with_id("batch-b")
    );
    let (status, _, body) = request(&mut stream, &head, ndjson(&["b-1"]).as_bytes());
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":1}"#));
    let (status, _, body) = request(&mut stream, &head, ndjson(&["b-1"]).as_bytes());
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"accepted":0,"duplicate":true}"#)
    );
    running.handle().shutdown();
    running.wait().expect("clean run");

    // The restarted run knows both ids from the logged position. Each new
    // connection may reach either shard; the id's owner answers wherever
    // the connection lands.
    let running = start(&source, data.path(), out.path());
    for attempt in 0..8 {
        let (status, _, body) = post(addr, &with_id("batch-a"), &ndjson(&["a-1", "a-2"]));
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"accepted":0,"duplicate":true}"#),
            "retry {attempt} of batch-a"
        );
        let (status, _, body) = post(addr, &with_id("batch-b"), &ndjson(&["b-1"]));
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"accepted":0,"duplicate":true}"#),
            "retry {attempt} of batch-b"
        );
    }
    let (status, _, body) = post(addr, &with_id("batch-c"), &ndjson(&["c-1"]));
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":1}"#));
    running.handle().shutdown();
    running.wait().expect("clean run");
    let keys = published_keys(out.path());
    let expected: BTreeMap<String, usize> = ["a-1", "a-2", "b-1", "c-1"]
        .iter()
        .map(|key| (key.to_string(), 1))
        .collect();
    assert_eq!(keys, expected);
}

fn events(prefix: &str, count: usize) -> Vec<WireEvent> {
    (0..count)
        .map(|i| WireEvent {
            key: format!("{prefix}-{i}"),
            ts_ms: 1_000,
            sent_ns: 0,
            body: b"{\"payload\":1}".to_vec(),
        })
        .collect()
}

#[test]
fn tcp_acknowledges_durable_frames_and_rejects_bad_ones() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let source = format!(
        "[sources.in]\ntype = \"tcp\"\nlisten = \"127.0.0.1:{port}\"\nmax_frame_bytes = 65536\n"
    );
    let running = start(&source, data.path(), out.path());

    // Pipelined frames are acknowledged in order.
    let mut stream = connect(addr);
    let mut frames = Vec::new();
    for batch in 0..5u64 {
        frames.extend(wire::encode_frame(
            0,
            batch,
            &events(&format!("f{batch}"), 100),
        ));
    }
    stream.write_all(&frames).expect("send frames");
    for batch in 0..5u64 {
        let (ack, detail) = read_ack(&mut stream);
        assert_eq!(
            (ack.status, ack.batch_id, ack.events),
            (AckStatus::Durable, batch, 100),
            "{detail}"
        );
    }
    // Dedup on the same connection.
    let frame = wire::encode_frame(wire::FLAG_DEDUP, 77, &events("d", 3));
    let (ack, _) = send_frame(&mut stream, &frame);
    assert_eq!((ack.status, ack.events), (AckStatus::Durable, 3));
    let (ack, _) = send_frame(&mut stream, &frame);
    assert_eq!((ack.status, ack.events), (AckStatus::Duplicate, 0));

    // A corrupted payload: rejected with the CRCs, connection closed.
    let mut bad = wire::encode_frame(0, 9, &events("crc", 2));
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let (ack, detail) = send_frame(&mut stream, &bad);
    assert_eq!(
        (ack.status, ack.batch_id, ack.events),
        (AckStatus::Rejected, 9, 0)
    );
    assert!(detail.contains("CRC32C"), "{detail}");
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).expect("closed"), 0);

    // Too large: refused from the header.
    let mut stream = connect(addr);
    let big = wire::encode_frame(0, 10, &events("big", 2000));
    let (ack, detail) = send_frame(&mut stream, &big[..wire::FRAME_HEADER_BYTES]);
    assert_eq!(ack.status, AckStatus::Rejected);
    assert!(detail.contains("exceeds the limit of 65536"), "{detail}");

    // Bad magic; a payload that is not an event batch (right CRC).
    let mut stream = connect(addr);
    let (ack, detail) = send_frame(&mut stream, b"HTTP/1.1 200 OK\r\n\r\n.....");
    assert_eq!(ack.status, AckStatus::Rejected);
    assert!(detail.contains("magic"), "{detail}");
    let mut stream = connect(addr);
    let junk = [7u8; 40];
    let header = wire::FrameHeader {
        flags: 0,
        batch_id: 11,
        len: junk.len() as u32,
        crc: crc32c::crc32c(&junk),
    };
    let mut frame = header.encode().to_vec();
    frame.extend_from_slice(&junk);
    let (ack, detail) = send_frame(&mut stream, &frame);
    assert_eq!(ack.status, AckStatus::Rejected);
    assert!(detail.contains("not an archived event batch"), "{detail}");

    running.handle().shutdown();
    running.wait().expect("clean run");
    let keys = published_keys(out.path());
    assert_eq!(keys.len(), 503);
    assert!(keys.values().all(|&count| count == 1));
    assert!(keys
        .keys()
        .all(|key| key.starts_with('f') || key.starts_with("d-")));
}
