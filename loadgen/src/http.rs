//! The HTTP ingest client: `POST` NDJSON batches over a keep-alive
//! HTTP/1.1 connection, one request at a time per connection.
//!
//! In open-loop mode a request that cannot start on time (the previous one
//! is still waiting for its response) starts as soon as the connection is
//! free, and its latency still runs from its intended send time.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ConnConfig, Mode};
use crate::limits::{
    HTTP_RETRY_AFTER_MS_DEFAULT, HTTP_RETRY_AFTER_MS_MIN, RECONNECT_INTERVAL_MS,
    RESPONSE_BODY_BYTES_MAX, RESPONSE_TIMEOUT_MS, WRITE_TIMEOUT_MS,
};
use crate::pool::BodyPool;
use crate::stats::{wait_until, Shared};

/// How long to wait for a response before giving up on the connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(RESPONSE_TIMEOUT_MS);
/// How long a write may block before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_millis(WRITE_TIMEOUT_MS);

/// An HTTP response, as much of it as the client needs.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub close: bool,
    pub body: Vec<u8>,
}

#[derive(Debug)]
struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(addr: &str) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        // A server that stops reading must not block the writer forever.
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
        Ok(Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends one request and reads its response, waiting for it until
    /// `answer_by` at most (the run's drain deadline), and never longer
    /// than [`RESPONSE_TIMEOUT`].
    fn exchange(&mut self, head: &[u8], body: &[u8], answer_by: Instant) -> io::Result<Response> {
        self.writer.write_all(head)?;
        self.writer.write_all(body)?;
        let wait = answer_by
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), RESPONSE_TIMEOUT);
        self.writer.set_read_timeout(Some(wait))?;
        read_response(&mut self.reader)
    }
}

/// Runs one connection until the end of the run.
pub(crate) fn run_connection(
    config: Arc<ConnConfig>,
    shared: Arc<Shared>,
    conn: usize,
    mut pool: BodyPool,
) {
    let mut client = Client {
        config,
        shared,
        conn,
        connection: None,
    };
    let (config, shared) = (client.config.clone(), client.shared.clone());
    let mut seq = 0u64;
    let end = shared.start + shared.end;
    wait_until(shared.start);
    while let Some(intended) = client.next_due(seq, end) {
        let batch_id = config.batch_id(conn, seq);
        seq += 1;
        if shared.past_drain(Instant::now()) {
            // So far behind schedule that the run is over.
            shared.error(intended, "backlogged");
            continue;
        }
        let (head, body) = pool.next(batch_id, shared.unix_ns(intended));
        wait_until(intended);
        // In closed-loop mode latency runs from the actual send.
        let intended = match config.mode {
            Mode::Open { .. } => intended,
            Mode::Max { .. } => Instant::now(),
        };
        shared.sent(intended, config.batch as u64);
        client.deliver(head, body, intended, end);
    }
}

/// One connection's client: its connection, opened again when it fails.
#[derive(Debug)]
struct Client {
    config: Arc<ConnConfig>,
    shared: Arc<Shared>,
    conn: usize,
    connection: Option<Connection>,
}

impl Client {
    /// When batch `seq` is meant to be sent: its place in the schedule in
    /// open-loop mode, now in closed-loop mode. `None` once the run is
    /// over (`end` in closed-loop mode), with every batch still due in the
    /// schedule counted as `unsent`.
    fn next_due(&self, seq: u64, end: Instant) -> Option<Instant> {
        let (config, shared) = (&self.config, &self.shared);
        match config.mode {
            Mode::Open { .. } => {
                let offset = config.due(self.conn, seq)?;
                if shared.past_end(Instant::now()) {
                    config.skip_rest(shared, self.conn, seq);
                    return None;
                }
                Some(shared.start + offset)
            }
            Mode::Max { .. } => Some(Instant::now()).filter(|&now| now < end),
        }
    }

    /// Sends one request and records its outcome; in closed-loop mode
    /// sends it again while the server is overloaded, until `end`.
    fn deliver(&mut self, head: &[u8], body: &[u8], intended: Instant, end: Instant) {
        loop {
            if !self.connect(intended) {
                return;
            }
            let open = self.connection.as_mut().expect("connected");
            let response = match open.exchange(head, body, self.shared.drain_deadline()) {
                Ok(response) => response,
                Err(error) => {
                    let kind = if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) {
                        "timeout"
                    } else {
                        "io"
                    };
                    self.shared.error(intended, kind);
                    self.connection = None;
                    return;
                }
            };
            let now = Instant::now();
            if response.close {
                self.connection = None;
            }
            match self.settle(&response, intended, now, end) {
                Some(wait) => std::thread::sleep(wait),
                None => return,
            }
        }
    }

    /// Opens a connection if there is none. If that fails, counts the
    /// request meant for `intended` as `io` (pausing [`RECONNECT_INTERVAL_MS`]
    /// in closed-loop mode, so as not to hammer a server that is down) and
    /// returns `false`.
    fn connect(&mut self, intended: Instant) -> bool {
        if self.connection.is_some() {
            return true;
        }
        match Connection::open(&self.config.addr) {
            Ok(open) => {
                self.connection = Some(open);
                true
            }
            Err(error) => {
                if self.config.verbose {
                    eprintln!(
                        "loadgen: connection {}: cannot connect to {}: {error}",
                        self.conn, self.config.addr
                    );
                }
                self.shared.error(intended, "io");
                if matches!(self.config.mode, Mode::Max { .. }) {
                    std::thread::sleep(Duration::from_millis(RECONNECT_INTERVAL_MS));
                }
                false
            }
        }
    }

    /// Records what `response` (received at `now`) says of the request
    /// meant for `intended`. Returns how long to wait before sending it
    /// again: only in closed-loop mode, after a 429 or 503, and only if
    /// the retry can start before `end`.
    fn settle(
        &self,
        response: &Response,
        intended: Instant,
        now: Instant,
        end: Instant,
    ) -> Option<Duration> {
        let (config, shared) = (&self.config, &self.shared);
        match response.status {
            200 => {
                let accepted = match config.http_body {
                    crate::cli::HttpBody::Otlp => otlp_accepted(&response.body, config.batch),
                    _ => accepted(&response.body),
                };
                match accepted {
                    Some((_, true)) => shared.error(intended, "duplicate"),
                    Some((count, false)) if count == config.batch as u64 => {
                        shared.accepted(intended, now, count)
                    }
                    Some((count, false)) => {
                        // Partly accepted: count what was, and flag it.
                        shared.accepted(intended, now, count);
                        shared.error(intended, "partial");
                    }
                    None => shared.error(intended, "bad_response"),
                }
                None
            }
            status @ (429 | 503) => {
                shared.error(intended, &format!("http_{status}"));
                let Mode::Max { .. } = config.mode else {
                    return None;
                };
                let wait = response
                    .retry_after
                    .unwrap_or(Duration::from_millis(HTTP_RETRY_AFTER_MS_DEFAULT))
                    .max(Duration::from_millis(HTTP_RETRY_AFTER_MS_MIN));
                (now + wait < end).then_some(wait)
            }
            status => {
                if config.verbose {
                    eprintln!(
                        "loadgen: {} answered {status}: {}",
                        config.addr,
                        String::from_utf8_lossy(&response.body)
                    );
                }
                shared.error(intended, &format!("http_{status}"));
                None
            }
        }
    }
}

/// `{"accepted":N}` or `{"accepted":0,"duplicate":true}`.
fn accepted(body: &[u8]) -> Option<(u64, bool)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let accepted = value.get("accepted")?.as_u64()?;
    let duplicate = value
        .get("duplicate")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Some((accepted, duplicate))
}

/// The records an OTLP `ExportLogsServiceResponse` accepted of `batch`:
/// all but its partial success's rejected ones.
fn otlp_accepted(body: &[u8], batch: usize) -> Option<(u64, bool)> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use prost::Message;
    let response = ExportLogsServiceResponse::decode(body).ok()?;
    let rejected = response
        .partial_success
        .map_or(0, |partial| partial.rejected_log_records.max(0) as u64);
    Some(((batch as u64).saturating_sub(rejected), false))
}

/// Reads one response: status line, headers, and a body framed by
/// `Content-Length`, chunked encoding, or the connection closing.
pub(crate) fn read_response<R: BufRead>(reader: &mut R) -> io::Result<Response> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let mut parts = line.split_whitespace();
    let version = parts.next().ok_or_else(|| invalid("empty status line"))?;
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not an HTTP/1.x response"));
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status code"))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    let mut retry_after = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "headers cut short",
            ));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid("bad header line"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| invalid("bad Content-Length"))?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "retry-after" => retry_after = value.parse::<u64>().ok().map(Duration::from_secs),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            if body.len() + size > RESPONSE_BODY_BYTES_MAX {
                return Err(invalid("response body too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = content_length {
        if length > RESPONSE_BODY_BYTES_MAX {
            return Err(invalid("response body too large"));
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        reader
            .take(RESPONSE_BODY_BYTES_MAX as u64)
            .read_to_end(&mut body)?;
        close = true;
    }
    Ok(Response {
        status,
        retry_after,
        close,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_responses() {
        let text = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 22\r\n\r\n{\"error\":\"overloaded\"}HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n{\"ac\r\nb\r\ncepted\":3}\r\n0\r\n\r\n";
        let mut reader = BufReader::new(&text[..]);
        let first = read_response(&mut reader).unwrap();
        assert_eq!(first.status, 429);
        assert_eq!(first.retry_after, Some(Duration::from_secs(2)));
        assert!(!first.close);
        let second = read_response(&mut reader).unwrap();
        assert_eq!(second.status, 200);
        assert!(second.close);
        assert_eq!(accepted(&second.body), Some((3, false)));
        assert_eq!(
            accepted(br#"{"accepted":0,"duplicate":true}"#),
            Some((0, true))
        );
    }
}
