//! The `http` source's connections: HTTP/1.1 `POST` of NDJSON or a JSON
//! array (`docs/protocol.md`).
//!
//! A connection serves requests one after another (keep-alive; pipelined
//! requests are answered in order). Every check happens before a single
//! event is queued, so a refused request adds nothing:
//!
//! | status | when |
//! |---|---|
//! | 404 | another path |
//! | 405 | another method |
//! | 401 | a token is configured and `Authorization: Bearer <token>` is missing or wrong |
//! | 411 | no `Content-Length` (chunked bodies are not accepted) |
//! | 400 | two `Content-Length` headers, or one that is not plain digits |
//! | 413 | `Content-Length` over `body_limit_bytes`: refused before reading the body |
//! | 415 | a `Content-Type` other than NDJSON, JSON or plain text |
//! | 429 | the source's read budget cannot hold the body (before reading it), or its queue is full; `Retry-After` says when to retry |
//! | 400 | a line (NDJSON) or element (array) that is not an event object, naming it |
//! | 408 | the head (`header_timeout_ms`) or the body (`read_timeout_ms`) was too slow |
//! | 503 | the source is not taking input (starting or stopping); `Retry-After` |
//! | 200 | `{"accepted":N}` once the events are durable, or `{"accepted":0,"duplicate":true}` |
//!
//! A request refused before its body is read ([`head`]) never has its
//! body read: the answer closes the connection.
//!
//! # One request, step by step
//! 1. The first bytes of the request: the connection's first request must
//!    arrive whole within `header_timeout_ms` of the connection's start; a
//!    later one may wait `idle_timeout_ms` for its first byte, then has
//!    `header_timeout_ms` for the whole head. Nothing said in time: closed
//!    silently. A head begun and not finished: 408, closed.
//! 2. The head is checked ([`head`]); it is at most 16 KiB
//!    ([`HEAD_MAX_BYTES`]), in a buffer that is dropped whenever the
//!    connection waits for a new request with nothing read ahead.
//! 3. The body's length is reserved from the source's read budget (429 and
//!    close if it does not fit), then the body is read into a buffer that
//!    grows as bytes arrive, each read waiting at most `read_timeout_ms`.
//! 4. The events are checked and queued (`body_events.rs`); the answer comes once
//!    they are durable. The connection closes after it when the client
//!    asked (`Connection: close`, or HTTP/1.0 without `keep-alive`).

mod head;
pub mod otlp;
mod response;

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;

pub(crate) use super::body_events::{for_each_event, index_events};
pub use super::body_events::{parse_events, BadEvent};
use head::{ContentEncoding, Head, Verdict};
use response::{retry_after_seconds, Response};

use super::budget::Reservation;
use super::json_events::JsonFormat;
use super::limits::ListenerLimits;
use super::listener::Slot;
use super::metrics::Timeout;
use super::socket::{read_growing, Deadline, ReadError, Socket};
use super::{
    enqueue, Encoding, IngestOptions, IngestQueue, Payload, Refused, ServeFn, Settled, Tasks,
};
use crate::limits::{HEAD_MAX_BYTES, HTTP_HEADERS_MAX, READ_CHUNK_BYTES, REQUEST_DEFAULT_BYTES};

/// Settings of the `http` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The path requests are posted to.
    pub path: String,
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The largest body accepted, before and after decompression (at most
    /// [`payload_bytes_max`](super::limits::payload_bytes_max)).
    pub body_limit_bytes: usize,
    /// `format = "json"`: any JSON object per event, read by these
    /// options; `None`: the weir format (`key`, `ts`, `sent_ns`).
    pub json: Option<std::sync::Arc<JsonFormat>>,
    /// An `otlp` source: OTLP/HTTP log exports (`otlp.rs`), flattened into
    /// `json`'s lines.
    pub otlp: bool,
    /// The most bytes one write-ahead log record of the source holds
    /// (what an `otlp` request's lines may take).
    pub record_limit_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            path: "/events".into(),
            token: None,
            body_limit_bytes: REQUEST_DEFAULT_BYTES,
            json: None,
            otlp: false,
            record_limit_bytes: usize::MAX,
        }
    }
}

/// What every connection of an instance is served with.
struct Settings {
    options: HttpOptions,
    retry_after_ms: u64,
    limits: ListenerLimits,
    tls: Option<super::tls::Tls>,
}

/// What a plaintext client of a TLS listener is told before it is closed.
const PLAINTEXT_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
content-length: 65\r\nconnection: close\r\n\r\n\
{\"error\":\"this listener speaks TLS: send the request with https\"}";

/// Serves one connection on this shard.
pub(crate) fn serve_on(
    queue: Rc<IngestQueue>,
    tasks: Rc<Tasks>,
    options: HttpOptions,
    ingest: &IngestOptions,
) -> ServeFn {
    let settings = Rc::new(Settings {
        options,
        retry_after_ms: ingest.retry_after_ms,
        limits: ingest.limits.clone(),
        tls: ingest.tls.clone(),
    });
    Rc::new(move |stream: TcpStream, slot: Slot| {
        let (queue, settings) = (queue.clone(), settings.clone());
        tasks.spawn_connection(async move {
            let mut connection = Connection {
                socket: Socket::new(
                    stream,
                    settings.limits.read_timeout_ms,
                    settings.tls.as_ref(),
                    PLAINTEXT_REFUSAL,
                ),
                buffer: Vec::new(),
                queue,
                settings,
            };
            // The first request's head must be whole within the header
            // timeout of the connection's start.
            let mut first = Some(Deadline::after_ms(
                connection.settings.limits.header_timeout_ms,
            ));
            while let Next::KeepAlive = connection.request(first.take()).await {}
            // The socket closes before the slot frees, so descriptors never
            // outnumber slots.
            drop(connection);
            drop(slot);
        });
    })
}

/// What becomes of a connection after a request.
enum Next {
    KeepAlive,
    Close,
}

/// One connection, between and during requests.
struct Connection {
    socket: Socket,
    /// Bytes read and not yet used: a request head, or the start of a body
    /// or of the next request (at most `HEAD_MAX_BYTES + READ_CHUNK_BYTES`).
    buffer: Vec<u8>,
    queue: Rc<IngestQueue>,
    settings: Rc<Settings>,
}

impl Connection {
    /// Serves one request; `first` is the deadline of the connection's
    /// first request head.
    async fn request(&mut self, first: Option<Deadline>) -> Next {
        let Some((head_len, verdict)) = self.read_head(first).await else {
            return Next::Close;
        };
        self.buffer.drain(..head_len);
        let Verdict {
            head,
            keep_alive,
            http_1_0,
        } = verdict;
        let head = match head {
            Ok(head) => head,
            Err(refused) => return self.finish(refused, keep_alive, http_1_0).await,
        };
        let body = match self.read_body(&head).await {
            Ok(body) => body,
            Err(next) => return next,
        };
        let body = match decode_body(&head, body, &self.queue, &self.settings) {
            Ok(body) => body,
            Err(refusal) => return self.finish(refusal, keep_alive, http_1_0).await,
        };
        if self.settings.options.otlp {
            let response = otlp::handle(&head, body, &self.queue, &self.settings).await;
            return self.finish(response, keep_alive, http_1_0).await;
        }
        let json = self.settings.options.json.as_deref();
        let response = handle(&head, body, json, &self.queue, self.settings.retry_after_ms).await;
        self.finish(response, keep_alive, http_1_0).await
    }

    /// Reads and checks a request head: its length and verdict, or `None`
    /// when the connection ends (the client left, was too slow, or sent
    /// what is not a request head, which is answered).
    async fn read_head(&mut self, first: Option<Deadline>) -> Option<(usize, Verdict)> {
        let limits = self.settings.clone();
        let limits = &limits.limits;
        if self.buffer.is_empty() {
            let (wait, timeout) = match first {
                Some(deadline) => (deadline.left(), Timeout::Header),
                None => (Duration::from_millis(limits.idle_timeout_ms), Timeout::Idle),
            };
            if let Err(error) = self.fill(wait).await {
                if error == ReadError::TimedOut {
                    self.queue.metrics.timed_out(timeout);
                }
                return None;
            }
        }
        let deadline = first.unwrap_or_else(|| Deadline::after_ms(limits.header_timeout_ms));
        loop {
            let mut headers = [httparse::EMPTY_HEADER; HTTP_HEADERS_MAX];
            let mut request = httparse::Request::new(&mut headers);
            let refusal = match request.parse(&self.buffer) {
                Ok(httparse::Status::Complete(len)) => {
                    return Some((len, head::check(&request, &self.settings.options)))
                }
                Ok(httparse::Status::Partial) if self.buffer.len() < HEAD_MAX_BYTES => {
                    match self.fill(deadline.left()).await {
                        Ok(()) => continue,
                        Err(ReadError::TimedOut) => self.timed_out(Timeout::Header),
                        Err(_) => return None,
                    }
                }
                Ok(httparse::Status::Partial) => {
                    Response::error(431, "the request head is too large")
                }
                Err(error) => Response::error(400, &format!("malformed request: {error}")),
            };
            let _ = self.respond(&refusal.closing()).await;
            return None;
        }
    }

    /// Reserves the body's length from the read budget and reads the body;
    /// `Err` when the connection ends instead (answered if need be).
    async fn read_body(&mut self, head: &Head) -> Result<(Payload, Reservation), Next> {
        let len = head.content_length;
        let Some(reservation) = self.queue.mesh.budget.reserve(len) else {
            let retry_after = retry_after_seconds(self.settings.retry_after_ms);
            let refusal = Response::error(429, "the source's read budget is spent; retry later")
                .header("retry-after", retry_after)
                .closing();
            let _ = self.respond(&refusal).await;
            return Err(Next::Close);
        };
        if head.expect_continue && self.buffer.len() < len {
            let proceed = self
                .socket
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await;
            proceed.map_err(|_| Next::Close)?;
        }
        let early = self.buffer.len().min(len);
        let mut body = Payload::with_capacity(early);
        body.extend_from_slice(&self.buffer[..early]);
        self.buffer.drain(..early);
        let read_timeout = Duration::from_millis(self.settings.limits.read_timeout_ms);
        match read_growing(&self.socket, &mut body, len, read_timeout).await {
            Ok(()) => Ok((body, reservation)),
            Err(ReadError::TimedOut) => {
                let _ = self.respond(&self.timed_out(Timeout::Read)).await;
                Err(Next::Close)
            }
            // The client left mid-body: nothing was accepted.
            Err(_) => Err(Next::Close),
        }
    }

    /// Answers 408 for `timeout`, counting it.
    fn timed_out(&self, timeout: Timeout) -> Response {
        self.queue.metrics.timed_out(timeout);
        let (what, ms) = match timeout {
            Timeout::Read => (
                "the body stalled: no byte arrived for",
                self.settings.limits.read_timeout_ms,
            ),
            _ => (
                "the request head did not arrive whole within",
                self.settings.limits.header_timeout_ms,
            ),
        };
        Response::error(408, &format!("{what} {ms} ms")).closing()
    }

    /// Sends the answer to a request, and says whether the connection
    /// stays open.
    async fn finish(&mut self, response: Response, keep_alive: bool, http_1_0: bool) -> Next {
        let response = match (keep_alive, http_1_0) {
            (false, _) => response.closing(),
            (true, true) if !response.close => response.header("connection", "keep-alive".into()),
            (true, _) => response,
        };
        if self.respond(&response).await.is_err() || response.close {
            return Next::Close;
        }
        if self.buffer.is_empty() {
            // Nothing read ahead: give the buffer back while idle.
            self.buffer = Vec::new();
        }
        Next::KeepAlive
    }

    /// Reads what has arrived (at most [`READ_CHUNK_BYTES`]) onto the
    /// buffer, waiting at most `wait`.
    async fn fill(&mut self, wait: Duration) -> Result<(), ReadError> {
        let start = self.buffer.len();
        self.buffer.reserve_exact(READ_CHUNK_BYTES);
        self.buffer.resize(start + READ_CHUNK_BYTES, 0);
        let read = self
            .socket
            .read_within(&mut self.buffer[start..], wait)
            .await;
        self.buffer.truncate(start + read.unwrap_or(0));
        read.map(drop)
    }

    /// Writes `response` and counts it.
    async fn respond(&self, response: &Response) -> std::io::Result<()> {
        self.queue.metrics.response(&response.status.to_string());
        self.socket.write_all(&response.encode()).await
    }
}

/// The body decompressed as its `Content-Encoding` says, its share of the
/// read budget moved to the decompressed bytes; or the refusal: 400 when
/// it does not decompress, 413 when it decompresses to more than
/// `body_limit_bytes`, 429 when the budget cannot hold it.
fn decode_body(
    head: &Head,
    (body, reservation): (Payload, Reservation),
    queue: &IngestQueue,
    settings: &Settings,
) -> Result<(Payload, Reservation), Response> {
    use std::io::Read;
    let limit = settings.options.body_limit_bytes;
    let (name, mut reader): (&str, Box<dyn Read + '_>) = match head.content_encoding {
        ContentEncoding::Identity => return Ok((body, reservation)),
        ContentEncoding::Gzip => (
            "gzip",
            Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        ),
        ContentEncoding::Zstd => match zstd::stream::read::Decoder::with_buffer(&body[..]) {
            Ok(decoder) => ("zstd", Box::new(decoder)),
            Err(error) => {
                let message = format!("the zstd body does not decompress: {error}");
                return Err(Response::error(400, &message));
            }
        },
    };
    let mut decoded = Vec::new();
    let read = (&mut reader)
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded);
    if let Err(error) = read {
        let message = format!("the {name} body does not decompress: {error}");
        return Err(Response::error(400, &message));
    }
    if decoded.len() > limit {
        let message =
            format!("the {name} body decompresses to more than the limit of {limit} bytes");
        return Err(Response::error(413, &message));
    }
    drop(reader);
    drop((body, reservation));
    let Some(reservation) = queue.mesh.budget.reserve(decoded.len()) else {
        let retry_after = retry_after_seconds(settings.retry_after_ms);
        return Err(
            Response::error(429, "the source's read budget is spent; retry later")
                .header("retry-after", retry_after),
        );
    };
    let mut payload = Payload::with_capacity(decoded.len());
    payload.extend_from_slice(&decoded);
    Ok((payload, reservation))
}

/// Checks a body's events, queues them and awaits the log. With
/// `format = "json"` an array is told from NDJSON by its first byte, and
/// events that do not decode are accepted as dead letters.
async fn handle(
    head: &Head,
    (body, reservation): (Payload, Reservation),
    json: Option<&JsonFormat>,
    queue: &IngestQueue,
    retry_after_ms: u64,
) -> Response {
    let array = match json {
        Some(_) => body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'['),
        None => head.array,
    };
    let index = match index_events(array, &body, json) {
        Ok(index) => index,
        Err(bad) => {
            let at = match (bad.at, array) {
                (0, _) => String::new(),
                (at, false) => format!("line {at}: "),
                (at, true) => format!("element {at}: "),
            };
            return Response::error(400, &format!("{at}{}", bad.message));
        }
    };
    let encoding = if array {
        Encoding::JsonArray
    } else {
        Encoding::Ndjson
    };
    let events = index.len();
    let dead = index.iter().filter(|event| event.is_dead()).count();
    let reply = match enqueue(
        queue,
        encoding,
        head.batch_id,
        events,
        (body, reservation),
        index,
    ) {
        Ok(reply) => reply,
        Err(refused) => {
            let (status, message) = match refused {
                Refused::Full => (429, "the pipeline is backed up; retry later"),
                Refused::Unavailable => (503, "the source is not accepting input"),
            };
            return Response::error(status, message)
                .header("retry-after", retry_after_seconds(retry_after_ms));
        }
    };
    match reply.settle().await {
        Ok(Settled::Accepted(events)) if json.is_some() => Response::json(
            200,
            format!("{{\"accepted\":{},\"dead_letter\":{dead}}}", events - dead),
        ),
        Ok(Settled::Accepted(events)) => Response::json(200, format!("{{\"accepted\":{events}}}")),
        Ok(Settled::Duplicate) => Response::json(200, "{\"accepted\":0,\"duplicate\":true}".into()),
        Err(error) => Response::error(503, &error),
    }
}
