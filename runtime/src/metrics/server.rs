//! A minimal HTTP/1.1 server for `GET /metrics`, `/health`, `/ready` and
//! `/tap`, on its own thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{Registry, CONTENT_TYPE};
use crate::limits::{METRICS_IO_TIMEOUT_MS, METRICS_REQUEST_HEAD_MAX_BYTES};
use crate::tap::{TapError, Taps};

/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_millis(METRICS_IO_TIMEOUT_MS);

/// Serves `registry` over HTTP at `addr` from a new thread (not a shard):
/// `GET /metrics` (or `HEAD`) answers `200` with [`Registry::render`] as
/// [`CONTENT_TYPE`]; `GET /health` answers `200 ok` while the process
/// serves (a liveness probe); `GET /ready` answers `200 ready` when
/// [`Registry::ready`] says so, else `503` with `starting` or `stopping` (a
/// readiness probe); other paths answer `404`, other methods `405`. Each connection gets one answer and is closed
/// (`Connection: close`); connections are served one at a time.
///
/// Bind port 0 to get a free port, then ask [`MetricsServer::local_addr`].
/// Dropping the returned server stops it.
///
/// # Errors
/// If the address cannot be bound or the thread cannot be started.
pub fn serve(addr: SocketAddr, registry: Registry) -> io::Result<MetricsServer> {
    serve_admin(addr, registry, Admin::default())
}

/// What the endpoint serves besides metrics and probes.
#[derive(Debug, Clone, Default)]
pub struct Admin {
    /// `GET /tap?output=NAME&limit=N&wait_ms=MS` answers a sample of what
    /// output `NAME` emits, as NDJSON ([`Taps::sample`]; `limit` defaults
    /// to 10, at most 10 000; `wait_ms` to 5 000, at most 60 000). `None`:
    /// `/tap` answers `403`. The flag lets clients other than loopback
    /// tap; without it they get `403`.
    pub taps: Option<(Taps, bool)>,
}

/// [`serve`], with the [`Admin`] routes: each `/tap` is answered from a
/// thread of its own, so a tap waiting for records holds back no scrape.
///
/// # Errors
/// If the address cannot be bound or the thread cannot be started.
pub fn serve_admin(
    addr: SocketAddr,
    registry: Registry,
    admin: Admin,
) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let local_addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = thread::Builder::new().name("weir-metrics".into()).spawn({
        let stop = Arc::clone(&stop);
        move || accept_loop(&listener, &registry, &admin, &stop)
    })?;
    Ok(MetricsServer {
        local_addr,
        stop,
        thread: Some(thread),
    })
}

/// A running metrics endpoint (see [`serve`]); dropping it stops the server
/// thread and waits for it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address the server listens on (with the real port if port 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server and waits for its thread; the same as dropping it.
    pub fn shutdown(self) {}
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking `accept` with a connection of our own. If that
        // fails, the thread may stay blocked; leave it detached rather than
        // hang here.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => [127, 0, 0, 1].into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let woken = TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok();
        if let Some(thread) = self.thread.take() {
            if woken {
                let _ = thread.join();
            }
        }
    }
}

fn accept_loop(listener: &TcpListener, registry: &Registry, admin: &Admin, stop: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            // A failed exchange concerns only that client.
            Ok((stream, peer)) => drop(handle(stream, peer, registry, admin)),
            // E.g. out of file descriptors: back off instead of spinning.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads one request head from `stream` and answers it.
fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    registry: &Registry,
    admin: &Admin,
) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.split_ascii_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let text = "text/plain; charset=utf-8";
    if path == "/tap" && method == "GET" {
        let taps = match &admin.taps {
            None => None,
            Some((_, false)) if !peer.ip().is_loopback() => None,
            Some((taps, _)) => Some(taps.clone()),
        };
        let Some(taps) = taps else {
            let message = if admin.taps.is_none() {
                "tapping is off: start the pipeline with `[runtime] tap = true`\n"
            } else {
                "tapping is allowed from loopback only: set `[runtime] tap_remote = true`\n"
            };
            return respond(&mut stream, method, "403 Forbidden", text, message, "");
        };
        let query = query.to_owned();
        // Its own thread: a tap may wait seconds for records.
        thread::Builder::new()
            .name("weir-tap".into())
            .spawn(move || drop(answer_tap(stream, &taps, &query)))?;
        return Ok(());
    }
    let known = matches!(path, "/metrics" | "/health" | "/ready" | "/tap");
    let (status, content_type, body, extra) = if !known {
        ("404 Not Found", text, "not found\n".to_owned(), "")
    } else if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            text,
            "method not allowed\n".to_owned(),
            "Allow: GET, HEAD\r\n",
        )
    } else if path == "/health" {
        ("200 OK", text, "ok\n".to_owned(), "")
    } else if path == "/ready" {
        match registry.ready() {
            super::Readiness::Ready => ("200 OK", text, "ready\n".to_owned(), ""),
            super::Readiness::Starting => {
                ("503 Service Unavailable", text, "starting\n".to_owned(), "")
            }
            super::Readiness::Stopping => {
                ("503 Service Unavailable", text, "stopping\n".to_owned(), "")
            }
        }
    } else if path == "/tap" {
        (
            "405 Method Not Allowed",
            text,
            "method not allowed\n".to_owned(),
            "Allow: GET\r\n",
        )
    } else {
        ("200 OK", CONTENT_TYPE, registry.render(), "")
    };
    respond(&mut stream, method, status, content_type, &body, extra)
}

/// Writes one whole answer and closes the writing side.
fn respond(
    stream: &mut TcpStream,
    method: &str,
    status: &str,
    content_type: &str,
    body: &str,
    extra: &str,
) -> io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    stream.shutdown(Shutdown::Write)
}

/// The most records one `/tap` returns.
const TAP_LIMIT_MAX: usize = 10_000;
/// The longest one `/tap` waits, in milliseconds.
const TAP_WAIT_MAX_MS: u64 = 60_000;

/// Answers `GET /tap?QUERY`: parses `output`, `limit` and `wait_ms`, takes
/// the sample and writes it as NDJSON.
fn answer_tap(mut stream: TcpStream, taps: &Taps, query: &str) -> io::Result<()> {
    let text = "text/plain; charset=utf-8";
    let bad = |stream: &mut TcpStream, message: String| {
        respond(stream, "GET", "400 Bad Request", text, &message, "")
    };
    let (mut output, mut limit, mut wait_ms) = (None, 10usize, 5_000u64);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "output" => output = Some(value.to_owned()),
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=TAP_LIMIT_MAX).contains(&n) => limit = n,
                _ => {
                    let message = format!("`limit` must be 1 to {TAP_LIMIT_MAX}, not {value:?}\n");
                    return bad(&mut stream, message);
                }
            },
            "wait_ms" => match value.parse::<u64>() {
                Ok(n) if n <= TAP_WAIT_MAX_MS => wait_ms = n,
                _ => {
                    let message =
                        format!("`wait_ms` must be 0 to {TAP_WAIT_MAX_MS}, not {value:?}\n");
                    return bad(&mut stream, message);
                }
            },
            other => {
                let message = format!(
                    "unknown parameter `{other}`: `/tap` takes `output`, `limit` and `wait_ms`\n"
                );
                return bad(&mut stream, message);
            }
        }
    }
    let Some(output) = output.filter(|name| !name.is_empty()) else {
        let message = format!(
            "`output` is missing: `/tap?output=NAME`; tappable outputs: {}\n",
            taps.names().join(", ")
        );
        return bad(&mut stream, message);
    };
    match taps.sample(&output, limit, Duration::from_millis(wait_ms)) {
        Ok(lines) => {
            let mut body = String::new();
            for line in lines {
                body.push_str(&String::from_utf8_lossy(&line));
                body.push('\n');
            }
            respond(
                &mut stream,
                "GET",
                "200 OK",
                "application/x-ndjson",
                &body,
                "",
            )
        }
        Err(error @ TapError::Unknown { .. }) => respond(
            &mut stream,
            "GET",
            "404 Not Found",
            text,
            &format!("{error}\n"),
            "",
        ),
        Err(error @ TapError::Busy(_)) => respond(
            &mut stream,
            "GET",
            "409 Conflict",
            text,
            &format!("{error}\n"),
            "",
        ),
    }
}

/// Reads until the blank line that ends a request head, end of stream, or
/// [`METRICS_REQUEST_HEAD_MAX_BYTES`].
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while head.len() < METRICS_REQUEST_HEAD_MAX_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n")
    {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn health_answers_while_serving_and_ready_follows_the_run() {
        let registry = Registry::new(2);
        let server = serve("127.0.0.1:0".parse().unwrap(), registry.clone()).unwrap();
        let addr = server.local_addr();
        let get = |path: &str| request(addr, &format!("GET {path} HTTP/1.1\r\n\r\n"));
        assert!(get("/health").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get("/health").ends_with("\r\n\r\nok\n"));
        // No run yet, then a run whose shards start one by one.
        assert!(get("/ready").starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        let stop = Arc::new(AtomicBool::new(false));
        registry.run_starting(stop.clone());
        registry.shard_started();
        assert!(get("/ready").ends_with("starting\n"));
        registry.shard_started();
        assert!(get("/ready").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get("/ready").ends_with("ready\n"));
        // Asked to stop: not ready, while the shards still run.
        stop.store(true, Ordering::SeqCst);
        let stopping = get("/ready");
        assert!(stopping.starts_with("HTTP/1.1 503 "), "{stopping}");
        assert!(stopping.ends_with("stopping\n"), "{stopping}");
        // A new run on the same runtime starts over.
        registry.shard_ended();
        registry.shard_ended();
        registry.run_starting(Arc::new(AtomicBool::new(false)));
        assert!(get("/ready").ends_with("starting\n"));
        let post = request(addr, "POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    }

    #[test]
    fn answers_metrics_404_and_405() {
        let registry = Registry::new(1);
        registry.counter("weir_test_hits", "Hits.", &[]).add(0, 3);
        let server = serve("127.0.0.1:0".parse().unwrap(), registry.clone()).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let ok = request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.contains("\r\nConnection: close"));
        assert_eq!(body, registry.render());

        let head_only = request(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head_only.ends_with("\r\n\r\n"));

        let missing = request(addr, "GET /other HTTP/1.1\r\n\r\n");
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        let post = request(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
    }

    #[test]
    fn drop_stops_the_server() {
        let server = serve("127.0.0.1:0".parse().unwrap(), Registry::new(1)).unwrap();
        let addr = server.local_addr();
        drop(server);
        // The listener is closed once the thread has returned.
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn unspecified_address_shuts_down() {
        let server = serve("0.0.0.0:0".parse().unwrap(), Registry::new(1)).unwrap();
        assert!(server.local_addr().ip().is_unspecified());
        server.shutdown();
    }
}
