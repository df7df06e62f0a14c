//! Goal: network ingest is exactly-once across SIGKILL: every batch the
//! server acknowledged, and every batch it logged before dying, takes
//! effect exactly once in committed output — and a client that retries its
//! unacknowledged batches with their batch ids (`DEDUP`) ends with each of
//! its events counted exactly once.
//!
//! Method: the `weir` binary runs a pipeline (tcp source → NDJSON file sink,
//! 2 shards, 20 ms epochs) as a child process with a data directory. A
//! client sends frames of 50 events, each with a unique batch id and
//! `DEDUP`, several pipelined at once, on a few connections. The test kills
//! the child with SIGKILL at points drawn from a seeded generator — while
//! frames are in flight, so some are logged but not acknowledged, and some
//! are acknowledged in epochs that never committed — restarts it on the
//! same directory and resends every frame not yet acknowledged. After the
//! last round it stops the child with SIGTERM (a graceful drain) and reads
//! the published files: every event of every frame appears exactly once.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Rng;
use weir::protocol::{encode_frame, AckHeader, AckStatus, WireEvent, ACK_HEADER_BYTES, FLAG_DEDUP};

const FRAMES: u64 = 2_000;
const EVENTS_PER_FRAME: usize = 50;
const KILLS: usize = 8;
/// Times the last round sends refused frames again before giving up.
const LAST_ROUND_RETRIES: usize = 100;

fn pipeline(port: u16, out: &Path) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 20

[sources.in]
type = "tcp"
listen = "127.0.0.1:{port}"

[sinks.raw]
type = "file"
inputs = ["in"]
path = "{}"
format = "ndjson"
"#,
        out.display()
    )
}

fn spawn(config: &Path, data: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir")
}

/// Connects, retrying while the server starts; `None` once `killed`.
fn connect(addr: SocketAddr, killed: &AtomicBool) -> Option<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if killed.load(Ordering::Acquire) {
            return None;
        }
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                return Some(stream);
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "cannot connect: {error}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn frame(batch: u64) -> Vec<u8> {
    let events: Vec<WireEvent> = (0..EVENTS_PER_FRAME)
        .map(|i| WireEvent {
            key: format!("b{batch}-e{i}"),
            ts_ms: 1_000,
            sent_ns: 0,
            body: b"{}".to_vec(),
        })
        .collect();
    encode_frame(FLAG_DEDUP, batch, &events)
}

/// Sends `batches` pipelined on one connection and returns those
/// acknowledged (`Durable` or `Duplicate`) before the connection broke.
fn send(
    addr: SocketAddr,
    batches: &[u64],
    killed: &AtomicBool,
    connected: &AtomicBool,
) -> Vec<u64> {
    let Some(mut stream) = connect(addr, killed) else {
        return Vec::new();
    };
    connected.store(true, Ordering::Release);
    let mut bytes = Vec::new();
    for &batch in batches {
        bytes.extend(frame(batch));
    }
    if stream.write_all(&bytes).is_err() {
        return Vec::new();
    }
    let mut acked = Vec::new();
    for _ in batches {
        let mut header = [0u8; ACK_HEADER_BYTES];
        if stream.read_exact(&mut header).is_err() {
            break;
        }
        let ack = AckHeader::decode(&header).expect("an ack");
        let mut detail = vec![0; ack.detail_len as usize];
        if stream.read_exact(&mut detail).is_err() {
            break;
        }
        match ack.status {
            AckStatus::Durable => assert_eq!(ack.events as usize, EVENTS_PER_FRAME),
            AckStatus::Duplicate => assert_eq!(ack.events, 0),
            // Refused: not accepted; sent again in a later round.
            AckStatus::Overloaded | AckStatus::Unavailable => continue,
            AckStatus::Rejected => panic!("frame rejected: {}", String::from_utf8_lossy(&detail)),
        }
        acked.push(ack.batch_id);
    }
    acked
}

/// Sends `signal` to process `pid` (the child this test started).
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers; the pid is our own child's.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert!(
        sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH),
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn sigkill_loses_and_duplicates_no_ingested_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.path().join("ingest.toml");
    std::fs::write(&config, pipeline(port, &out)).expect("write config");

    let mut rng = Rng(0x5eed);
    let mut unacked: Vec<u64> = (0..FRAMES).collect();
    let mut acked_total = 0usize;
    for round in 0..=KILLS {
        let mut child = spawn(&config, &data);
        let last = round == KILLS;
        // Send up to a third of what is left this round, over 3 connections
        // at once; a killer fires after a random delay unless this is the
        // last round.
        let take = if last {
            unacked.len()
        } else {
            unacked.len().div_ceil(2).max(1)
        };
        let sending: Vec<u64> = unacked[..take.min(unacked.len())].to_vec();
        let chunks: Vec<Vec<u64>> = sending.chunks(20).map(<[u64]>::to_vec).collect();
        // The delay counts from the first connection the server accepted,
        // so kills land while frames flow, not during start-up.
        let killer_delay = Duration::from_micros(rng.next() % 40_000);
        let connected = Arc::new(AtomicBool::new(false));
        let pid = child.id();
        let killed = Arc::new(AtomicBool::new(false));
        let killer = (!last).then(|| {
            let (killed, connected) = (killed.clone(), connected.clone());
            std::thread::spawn(move || {
                while !connected.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                std::thread::sleep(killer_delay);
                // SIGKILL: no chance to flush or commit anything.
                signal(pid, libc::SIGKILL);
                killed.store(true, Ordering::Release);
            })
        });
        let mut acked = Vec::new();
        let mut chunks = chunks;
        // In the last round a refused frame (`Overloaded`, `Unavailable`)
        // has no later round: it is sent again, as a client would, until
        // the server takes it.
        for attempt in 0.. {
            for group in chunks.chunks(3) {
                let senders: Vec<_> = group
                    .iter()
                    .cloned()
                    .map(|chunk| {
                        let (killed, connected) = (killed.clone(), connected.clone());
                        std::thread::spawn(move || send(addr, &chunk, &killed, &connected))
                    })
                    .collect();
                for sender in senders {
                    acked.extend(sender.join().expect("sender"));
                }
            }
            let refused: Vec<u64> = sending
                .iter()
                .copied()
                .filter(|batch| !acked.contains(batch))
                .collect();
            if !last || refused.is_empty() || attempt == LAST_ROUND_RETRIES {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            chunks = refused.chunks(20).map(<[u64]>::to_vec).collect();
        }
        if let Some(killer) = killer {
            killer.join().expect("killer");
            child.wait().expect("wait for weir");
        } else {
            signal(pid, libc::SIGTERM);
            let status = child.wait().expect("wait for weir");
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            assert!(status.success(), "final run failed: {status:?}\n{stderr}");
        }
        eprintln!(
            "round {round}: sent {} frames, {} acknowledged, killed after {killer_delay:?}",
            sending.len(),
            acked.len()
        );
        acked_total += acked.len();
        unacked.retain(|batch| !acked.contains(batch));
        if last {
            assert!(unacked.is_empty(), "frames never acknowledged: {unacked:?}");
        }
    }
    assert!(acked_total >= FRAMES as usize);

    // Every event of every frame, exactly once.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(&out).expect("output").flatten() {
        if !entry.file_name().to_string_lossy().ends_with(".ndjson") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read output");
        for line in text.lines() {
            let event: serde_json::Value = serde_json::from_str(line).expect("json");
            *seen
                .entry(event["key"].as_str().expect("key").to_string())
                .or_default() += 1;
        }
    }
    let duplicated: Vec<_> = seen
        .iter()
        .filter(|(_, &count)| count > 1)
        .take(5)
        .collect();
    assert!(
        duplicated.is_empty(),
        "events published twice: {duplicated:?}"
    );
    let expected = FRAMES as usize * EVENTS_PER_FRAME;
    assert_eq!(seen.len(), expected, "events lost");
}
