//! Runs the load generator against tiny in-test servers: a native-protocol
//! TCP server that checks every frame (header, CRC, payload) and an HTTP
//! server that checks every request, both answering success.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Parser;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use weir_loadgen::{read_hgrm, run, Args};
use weir_protocol::{AckHeader, AckStatus, FrameHeader, WireEvent, FLAG_DEDUP, FRAME_HEADER_BYTES};

/// What a fake server saw.
#[derive(Default)]
struct Seen {
    events: AtomicU64,
    batches: AtomicU64,
    /// Requests or frames that failed a check.
    bad: AtomicU64,
}

/// How the fake TCP server answers.
#[derive(Clone, Copy)]
enum Answer {
    Durable,
    /// `Overloaded` to every frame.
    Overloaded,
    /// `Overloaded` to every other frame (retry after 1 ms), else `Durable`.
    OverloadedEveryOther,
}

fn spawn_tcp_server(answer: Answer) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let server_seen = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let seen = server_seen.clone();
            std::thread::spawn(move || serve_tcp(stream.unwrap(), &seen, answer));
        }
    });
    (format!("tcp://{addr}"), seen)
}

fn serve_tcp(mut stream: TcpStream, seen: &Seen, answer: Answer) {
    let mut writer = stream.try_clone().unwrap();
    let mut frames = 0u64;
    loop {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let header = FrameHeader::decode(&header).expect("a valid frame header");
        let mut payload = rkyv::util::AlignedVec::<16>::new();
        payload.resize(header.len as usize, 0);
        stream.read_exact(&mut payload).unwrap();
        frames += 1;
        let mut ok = crc32c::crc32c(&payload) == header.crc && header.flags & !FLAG_DEDUP == 0;
        let events: Vec<WireEvent> =
            rkyv::from_bytes::<Vec<WireEvent>, rkyv::rancor::Error>(&payload)
                .expect("a valid payload");
        let sent_ns = events[0].sent_ns;
        for event in &events {
            ok &= !event.key.is_empty()
                && event.sent_ns == sent_ns
                && event.ts_ms == sent_ns / 1_000_000
                && serde_json::from_slice::<serde_json::Value>(&event.body)
                    .is_ok_and(|v| v.is_object())
                && event.key.len() + event.body.len() == 300;
        }
        if !ok {
            seen.bad.fetch_add(1, Ordering::Relaxed);
        }
        let (status, retry_after_ms) = match answer {
            Answer::Durable => (AckStatus::Durable, 0),
            Answer::Overloaded => (AckStatus::Overloaded, 5),
            Answer::OverloadedEveryOther if frames % 2 == 1 => (AckStatus::Overloaded, 1),
            Answer::OverloadedEveryOther => (AckStatus::Durable, 0),
        };
        let accepted = if status == AckStatus::Durable {
            seen.events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            seen.batches.fetch_add(1, Ordering::Relaxed);
            events.len() as u32
        } else {
            0
        };
        let detail = b"ok";
        let ack = AckHeader {
            status,
            retry_after_ms,
            batch_id: header.batch_id,
            events: accepted,
            detail_len: detail.len() as u32,
        };
        if writer.write_all(&ack.encode()).is_err() || writer.write_all(detail).is_err() {
            return;
        }
    }
}

fn spawn_http_server() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let server_seen = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let seen = server_seen.clone();
            std::thread::spawn(move || serve_http(stream.unwrap(), &seen));
        }
    });
    (format!("http://{addr}/events"), seen)
}

fn serve_http(stream: TcpStream, seen: &Seen) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut ok = line == "POST /events HTTP/1.1\r\n";
        let mut length = None;
        let mut authorized = false;
        let mut ndjson = false;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.trim().parse::<usize>().unwrap()),
                "authorization" => authorized = value.trim() == "Bearer secret",
                "content-type" => ndjson = value.trim() == "application/x-ndjson",
                _ => {}
            }
        }
        ok &= authorized && ndjson;
        let mut body = vec![0; length.expect("Content-Length")];
        reader.read_exact(&mut body).unwrap();
        let text = String::from_utf8(body).unwrap();
        let mut count = 0u64;
        let mut sent = None;
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let sent_ns = value["sent_ns"].as_u64().unwrap();
            ok &= value["key"].is_string()
                && value["ts"].as_u64() == Some(sent_ns / 1_000_000)
                && *sent.get_or_insert(sent_ns) == sent_ns
                && line.len() == 300;
            count += 1;
        }
        if !ok {
            seen.bad.fetch_add(1, Ordering::Relaxed);
        }
        seen.events.fetch_add(count, Ordering::Relaxed);
        seen.batches.fetch_add(1, Ordering::Relaxed);
        let answer = format!(r#"{{"accepted":{count}}}"#);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn args(target: &str, extra: &[&str]) -> Args {
    let mut argv = vec!["loadgen", "--target", target, "--quiet", "--warmup", "0s"];
    argv.extend_from_slice(extra);
    Args::try_parse_from(argv).unwrap()
}

#[test]
fn open_loop_tcp_every_event_acked() {
    let (target, seen) = spawn_tcp_server(Answer::Durable);
    let dir = std::env::temp_dir().join(format!("weir-loadgen-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hgrm = dir.join("tcp.hgrm");
    let log = dir.join("tcp.hlog");
    let plot = dir.join("tcp.svg");
    let summary = run(args(
        &target,
        &[
            "--rate",
            "2000",
            "--batch",
            "50",
            "--connections",
            "2",
            "--duration",
            "1s",
            "--profile",
            "flow",
            "--dedup",
            "--record-bytes",
            "300",
            "--hgrm",
            hgrm.to_str().unwrap(),
            "--interval-log",
            log.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
    ))
    .unwrap();
    // 2000 events/s for 1 s in batches of 50: 40 batches.
    assert_eq!(summary.errors, Default::default(), "{summary}");
    assert_eq!(summary.sent_batches, 40);
    assert_eq!(summary.sent_events, 2000);
    assert_eq!(summary.acked_events, 2000);
    assert_eq!(summary.acked_batches, 40);
    assert_eq!(summary.histogram.len(), 2000);
    assert_eq!(seen.events.load(Ordering::Relaxed), 2000);
    assert_eq!(seen.batches.load(Ordering::Relaxed), 40);
    assert_eq!(seen.bad.load(Ordering::Relaxed), 0);
    assert!(summary.throughput > 0.0);

    // The files agree with the summary.
    let rows = read_hgrm(&std::fs::read_to_string(&hgrm).unwrap());
    assert_eq!(rows.last().unwrap().2, 2000);
    let log = std::fs::read(&log).unwrap();
    let mut logged = 0;
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(interval) = entry.unwrap() {
            let bytes = base64(interval.encoded_histogram());
            let histogram: Histogram<u64> =
                deserializer.deserialize(&mut bytes.as_slice()).unwrap();
            logged += histogram.len();
        }
    }
    assert_eq!(logged, 2000);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert_eq!(svg.matches("<path ").count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_loop_http_every_event_acked() {
    let (target, seen) = spawn_http_server();
    let summary = run(args(
        &target,
        &[
            "--rate",
            "1000",
            "--batch",
            "25",
            "--connections",
            "2",
            "--duration",
            "1s",
            "--profile",
            "auth",
            "--token",
            "secret",
            "--dedup",
            "--record-bytes",
            "300",
        ],
    ))
    .unwrap();
    assert_eq!(summary.errors, Default::default(), "{summary}");
    assert_eq!(summary.sent_events, 1000);
    assert_eq!(summary.acked_events, 1000);
    assert_eq!(summary.acked_batches, 40);
    assert_eq!(summary.histogram.len(), 1000);
    assert_eq!(seen.events.load(Ordering::Relaxed), 1000);
    assert_eq!(seen.bad.load(Ordering::Relaxed), 0);
}

#[test]
fn open_loop_counts_overloaded_without_retrying() {
    let (target, seen) = spawn_tcp_server(Answer::Overloaded);
    let summary = run(args(
        &target,
        &[
            "--rate",
            "1000",
            "--batch",
            "50",
            "--connections",
            "1",
            "--duration",
            "0.5s",
            "--record-bytes",
            "300",
        ],
    ))
    .unwrap();
    assert_eq!(summary.sent_batches, 10);
    assert_eq!(summary.errors.get("overloaded"), Some(&10), "{summary}");
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(summary.acked_events, 0);
    assert!(summary.histogram.is_empty());
    assert_eq!(seen.events.load(Ordering::Relaxed), 0);
}

#[test]
fn closed_loop_retries_overloaded_frames() {
    let (target, seen) = spawn_tcp_server(Answer::OverloadedEveryOther);
    let summary = run(args(
        &target,
        &[
            "--max",
            "--inflight",
            "2",
            "--batch",
            "20",
            "--connections",
            "2",
            "--duration",
            "0.3s",
            "--record-bytes",
            "300",
        ],
    ))
    .unwrap();
    assert!(summary.acked_events > 0);
    // Every accepted frame was seen by the server and measured once.
    assert_eq!(summary.acked_events, seen.events.load(Ordering::Relaxed));
    assert_eq!(summary.histogram.len(), summary.acked_events);
    assert_eq!(summary.acked_events, summary.acked_batches * 20);
    // The server refuses every other frame it receives.
    let overloaded = summary.errors.get("overloaded").copied().unwrap_or(0);
    assert!(overloaded >= summary.acked_batches, "{summary}");
    assert!(
        summary
            .errors
            .keys()
            .all(|kind| kind == "overloaded" || kind == "timeout"),
        "{summary}"
    );
    assert_eq!(seen.bad.load(Ordering::Relaxed), 0);
}

/// Standard base64, decoded by hand.
fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in text.bytes().filter(|&b| b != b'=') {
        let value = ALPHABET.iter().position(|&c| c == byte).expect("base64") as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// A server that reads a trickle and never answers: an overloaded target.
fn spawn_stalled_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut chunk = [0u8; 1024];
                while stream.read(&mut chunk).is_ok_and(|read| read > 0) {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
        }
    });
    addr.to_string()
}

/// An open-loop run behind its schedule stops sending when its time is
/// over: batches still due then count as `unsent`, and the run returns
/// within its duration plus the drain timeout (and one blocked write),
/// not after sending its whole backlog.
#[test]
fn an_overloaded_open_loop_run_ends_on_time() {
    for scheme in ["tcp", "http"] {
        let target = match scheme {
            "tcp" => format!("tcp://{}", spawn_stalled_server()),
            _ => format!("http://{}/events", spawn_stalled_server()),
        };
        let (done, finished) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        let run_args = args(
            &target,
            &[
                "--rate",
                "200000",
                "--duration",
                "1s",
                "--drain-timeout",
                "1s",
            ],
        );
        std::thread::spawn(move || {
            let _ = done.send(run(run_args));
        });
        let summary = finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{scheme}: the run still sends after 30 s"))
            .expect("the run reports");
        let took = started.elapsed();
        // 1 s of run and 1 s of drain, with room for a loaded machine.
        assert!(
            took < std::time::Duration::from_secs(8),
            "{scheme}: took {took:?}"
        );
        assert!(
            summary.errors.get("unsent").copied().unwrap_or(0) > 0,
            "{scheme}: no batch counted unsent: {:?}",
            summary.errors
        );
        assert_eq!(summary.acked_events, 0, "{scheme}");
        eprintln!("{scheme}: returned after {took:?}: {:?}", summary.errors);
    }
}
