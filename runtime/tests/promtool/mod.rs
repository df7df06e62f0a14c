//! Scraping a metrics endpoint and linting what it serves with `promtool
//! check metrics`, shared by the tests that check the Prometheus output
//! (also `operators/tests/prometheus_sink.rs`, through `#[path]`).
//! promtool is required: `scripts/install-promtool.sh` installs it, and a
//! test that needs it fails, never skips, when it is missing.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

/// GETs `path` from the HTTP server at `addr`: (head, body).
pub fn fetch(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete HTTP response");
    (head.to_owned(), body.to_owned())
}

/// The body of `/metrics` at `addr`, which must answer 200.
pub fn fetch_metrics(addr: SocketAddr) -> String {
    let (head, body) = fetch(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    body
}

/// Runs `promtool check metrics` on `text`; returns whether it succeeded
/// and everything it printed.
pub fn promtool_output(text: &str) -> (bool, String) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "promtool is not installed (not on PATH); run scripts/install-promtool.sh to install it"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// Fails the test, with what promtool printed, unless `promtool check
/// metrics` accepts `text` without a single lint.
pub fn promtool_check(text: &str) {
    let (ok, printed) = promtool_output(text);
    assert!(
        ok,
        "promtool check metrics failed:\n{printed}\n--- input ---\n{text}"
    );
    assert!(
        printed.trim().is_empty(),
        "promtool check metrics printed lints:\n{printed}\n--- input ---\n{text}"
    );
}
