//! Shared by the ingest tests: a pipeline of one network source into a
//! file sink, a plain HTTP/1.1 client and
//! a TCP frame client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use weir_operators::config::{build_graph, parse};
use weir_protocol::{AckHeader, ACK_HEADER_BYTES};
use weir_runtime::{Running, Runtime};

use super::http::read_headers_and_body;

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A 2-shard runtime on `data`, epochs every 20 ms.
pub fn runtime(data: &Path) -> Runtime {
    Runtime::builder()
        .shards(2)
        .data_dir(data)
        .epoch_interval(Duration::from_millis(20))
        .build()
        .expect("runtime starts")
}

/// Runs `source` (a `[sources.in]` table) into an NDJSON file sink at `out`.
pub fn start(source: &str, data: &Path, out: &Path) -> Running {
    let text = format!(
        "[runtime]\nepoch_interval_ms = 20\n\n{source}\n\n[sinks.raw]\ntype = \"file\"\n\
         inputs = [\"in\"]\npath = \"{}\"\nformat = \"ndjson\"\n",
        out.display()
    );
    let config = parse(&text, "ingest.toml").expect("valid pipeline");
    let graph = build_graph(&config).expect("runnable pipeline");
    runtime(data).start(graph).expect("pipeline starts")
}

/// Connects to `addr`, retrying for 20 s while the source starts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                return stream;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("cannot connect to {addr}: {error}"),
        }
    }
}

/// A response: status, headers (lower-case names), body.
pub type Response = (u16, BTreeMap<String, String>, String);

/// Reads one response (with a `Content-Length`).
pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let (headers, body) = read_headers_and_body(&mut reader);
    (status, headers, body)
}

/// Sends one TCP frame and reads its acknowledgement.
pub fn send_frame(stream: &mut TcpStream, frame: &[u8]) -> (AckHeader, String) {
    stream.write_all(frame).expect("send frame");
    read_ack(stream)
}

/// Reads one acknowledgement: its header and its detail.
pub fn read_ack(stream: &mut TcpStream) -> (AckHeader, String) {
    let mut header = [0u8; ACK_HEADER_BYTES];
    stream.read_exact(&mut header).expect("ack header");
    let ack = AckHeader::decode(&header).expect("an ack");
    let mut detail = vec![0; ack.detail_len as usize];
    stream.read_exact(&mut detail).expect("ack detail");
    (ack, String::from_utf8(detail).expect("utf-8 detail"))
}
