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
//! | 413 | `Content-Length` over `body_limit_bytes`: refused before reading the body |
//! | 415 | a `Content-Type` other than NDJSON, JSON or plain text |
//! | 400 | a line (NDJSON) or element (array) that is not an event object, naming it |
//! | 429 | the source's queue is full; `Retry-After` says when to retry |
//! | 503 | the source is not taking input (starting or stopping); `Retry-After` |
//! | 200 | `{"accepted":N}` once the events are durable, or `{"accepted":0,"duplicate":true}` |
//!
//! An event is a JSON object with a string `key`, and optionally `ts`
//! (event time, ms since the Unix epoch; default: when it was accepted) and
//! `sent_ns` (when the client meant to send it); the whole object is kept
//! as the event's `body`.

use std::borrow::Cow;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use serde::Deserialize;

use super::{
    batch_id_hash, enqueue, Encoding, EventRef, IngestQueue, Payload, Refused, ServeFn, Settled,
    Tasks,
};

/// Settings of the `http` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The path requests are posted to.
    pub path: String,
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The largest body accepted.
    pub body_limit_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            path: "/events".into(),
            token: None,
            body_limit_bytes: 10 << 20,
        }
    }
}

/// The largest request head (request line and headers).
const HEAD_LIMIT_BYTES: usize = 16 << 10;
/// Headers a request may carry.
const HEADERS_MAX: usize = 64;

#[derive(Deserialize)]
struct EventFields<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default)]
    ts: Option<u64>,
    #[serde(default)]
    sent_ns: Option<u64>,
}

/// Where the first bad event of a body is, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEvent {
    /// 1-based line (NDJSON) or element (array) number; 0: the body as a
    /// whole.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

fn object_fields<'a>(text: &'a str) -> Result<EventFields<'a>, String> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Err("expected a JSON object".into());
    }
    serde_json::from_str::<EventFields<'a>>(text).map_err(|error| error.to_string())
}

/// Checks every event of a body; returns how many there are.
pub fn parse_events(encoding_is_array: bool, body: &[u8]) -> Result<usize, BadEvent> {
    index_events(encoding_is_array, body).map(|index| index.len())
}

/// One checked event of a body: where its fields are, so the source can
/// emit it without parsing the JSON again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Indexed {
    /// The key's byte range in the body, or the key itself when it had
    /// escapes.
    key: Result<(u32, u32), String>,
    ts: Option<u64>,
    sent_ns: u64,
    /// The event object's byte range in the body.
    body: (u32, u32),
}

/// Checks every event of a body and returns where each one is.
pub(crate) fn index_events(encoding_is_array: bool, body: &[u8]) -> Result<Vec<Indexed>, BadEvent> {
    let encoding = if encoding_is_array {
        Encoding::JsonArray
    } else {
        Encoding::Ndjson
    };
    let base = body.as_ptr() as usize;
    let range = |text: &str| {
        let start = text.as_ptr() as usize - base;
        (start as u32, (start + text.len()) as u32)
    };
    let mut index = Vec::new();
    visit(encoding, body, &mut |fields, text| {
        let key = match &fields.key {
            Cow::Borrowed(key) => Ok(range(key)),
            Cow::Owned(key) => Err(key.clone()),
        };
        index.push(Indexed {
            key,
            ts: fields.ts,
            sent_ns: fields.sent_ns.unwrap_or(0),
            body: range(text),
        });
    })?;
    if index.is_empty() {
        return Err(BadEvent {
            at: 0,
            message: "the body holds no events".into(),
        });
    }
    Ok(index)
}

fn visit(
    encoding: Encoding,
    body: &[u8],
    each: &mut dyn FnMut(EventFields<'_>, &str),
) -> Result<(), BadEvent> {
    let text = std::str::from_utf8(body).map_err(|error| BadEvent {
        at: 0,
        message: format!("the body is not UTF-8: {error}"),
    })?;
    match encoding {
        Encoding::JsonArray => {
            let elements: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).map_err(|error| BadEvent {
                    at: 0,
                    message: format!("the body is not a JSON array of events: {error}"),
                })?;
            for (index, element) in elements.iter().enumerate() {
                let fields = object_fields(element.get()).map_err(|message| BadEvent {
                    at: index + 1,
                    message,
                })?;
                each(fields, element.get());
            }
        }
        _ => {
            for (index, line) in text.split('\n').enumerate() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.trim().is_empty() {
                    continue;
                }
                let fields = object_fields(line).map_err(|message| BadEvent {
                    at: index + 1,
                    message,
                })?;
                each(fields, line);
            }
        }
    }
    Ok(())
}

pub(crate) fn for_each_event(
    encoding: Encoding,
    payload: &[u8],
    index: Option<&[Indexed]>,
    each: &mut impl FnMut(EventRef<'_>),
) -> Result<(), String> {
    if let Some(index) = index {
        // SAFETY: `index_events` checked that these very bytes are UTF-8
        // (they are owned by the queued batch and were not changed since).
        let text = unsafe { std::str::from_utf8_unchecked(payload) };
        for event in index {
            let key = match &event.key {
                Ok((start, end)) => &text[*start as usize..*end as usize],
                Err(key) => key.as_str(),
            };
            each(EventRef {
                key,
                ts_ms: event.ts,
                sent_ns: event.sent_ns,
                body: &text[event.body.0 as usize..event.body.1 as usize],
            });
        }
        return Ok(());
    }
    visit(encoding, payload, &mut |fields, text| {
        each(EventRef {
            key: &fields.key,
            ts_ms: fields.ts,
            sent_ns: fields.sent_ns.unwrap_or(0),
            body: text,
        })
    })
    .map_err(|bad| format!("event {}: {}", bad.at, bad.message))
}

/// Serves one connection on this shard.
pub(crate) fn serve_on(
    queue: Rc<IngestQueue>,
    tasks: Rc<Tasks>,
    options: HttpOptions,
    retry_after_ms: u64,
) -> ServeFn {
    let options = Rc::new(options);
    Rc::new(move |stream: TcpStream| {
        let _ = stream.set_nodelay(true);
        let (queue, options) = (queue.clone(), options.clone());
        tasks.spawn_connection(async move {
            let _ = serve(stream, &queue, &options, retry_after_ms).await;
        });
    })
}

/// A response: status, extra headers, JSON body.
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    close: bool,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
            close: false,
        }
    }

    fn error(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "error": message }).to_string();
        Response::json(status, body)
    }

    fn header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    fn encode(&self) -> Vec<u8> {
        let reason = match self.status {
            100 => "Continue",
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            411 => "Length Required",
            413 => "Content Too Large",
            415 => "Unsupported Media Type",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.status,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

/// What a request head says, once checked.
struct Head {
    content_length: usize,
    array: bool,
    batch_id: Option<u64>,
    expect_continue: bool,
    close: bool,
}

fn retry_after_seconds(retry_after_ms: u64) -> String {
    retry_after_ms.div_ceil(1000).max(1).to_string()
}

/// Checks a parsed request head.
fn check_head(
    request: &httparse::Request<'_, '_>,
    options: &HttpOptions,
) -> Result<Head, Response> {
    let path = request.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    if path != options.path {
        return Err(Response::error(
            404,
            &format!(
                "no such path `{path}`: events are posted to `{}`",
                options.path
            ),
        ));
    }
    if request.method != Some("POST") {
        return Err(Response::error(405, "only POST is accepted").header("allow", "POST".into()));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| String::from_utf8_lossy(header.value).trim().to_string())
    };
    if let Some(token) = &options.token {
        let given = header("authorization");
        let ok = given
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()));
        if !ok {
            let message = if given.is_none() {
                "missing `Authorization: Bearer <token>`"
            } else {
                "wrong bearer token"
            };
            return Err(Response::error(401, message).header("www-authenticate", "Bearer".into()));
        }
    }
    let close = header("connection").is_some_and(|value| value.eq_ignore_ascii_case("close"));
    if header("transfer-encoding").is_some() {
        return Err(
            Response::error(411, "chunked bodies are not accepted: send Content-Length").closing(),
        );
    }
    let Some(length) = header("content-length") else {
        return Err(Response::error(411, "a Content-Length header is required").closing());
    };
    let content_length: usize = length.parse().map_err(|_| {
        Response::error(400, &format!("Content-Length `{length}` is not a number")).closing()
    })?;
    if content_length > options.body_limit_bytes {
        return Err(Response::error(
            413,
            &format!(
                "the body of {content_length} bytes exceeds the limit of {} bytes",
                options.body_limit_bytes
            ),
        )
        .closing());
    }
    let content_type = header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let array = match media.as_str() {
        "application/json" => true,
        "" | "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "text/plain" => {
            false
        }
        other => {
            return Err(Response::error(
                415,
                &format!("content type `{other}`: send application/x-ndjson or application/json"),
            ))
        }
    };
    let batch_id = match header("weir-batch-id") {
        Some(id) if id.is_empty() || id.len() > 256 => {
            return Err(Response::error(400, "Weir-Batch-Id must be 1 to 256 bytes"))
        }
        Some(id) => Some(batch_id_hash(id.as_bytes())),
        None => None,
    };
    let expect_continue =
        header("expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
    Ok(Head {
        content_length,
        array,
        batch_id,
        expect_continue,
        close,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads more bytes into `buffer`; `false` at end of stream.
async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
    let start = buffer.len();
    buffer.resize(start + (16 << 10), 0);
    let read = stream.read(&mut buffer[start..]).await;
    let read = match read {
        Ok(read) => read,
        Err(error) => {
            buffer.truncate(start);
            return Err(error);
        }
    };
    buffer.truncate(start + read);
    Ok(read > 0)
}

/// Writes `response` and counts it.
async fn respond(
    stream: &mut TcpStream,
    queue: &IngestQueue,
    response: &Response,
) -> std::io::Result<()> {
    queue.metrics.response(&response.status.to_string());
    stream.write_all(&response.encode()).await
}

async fn serve(
    mut stream: TcpStream,
    queue: &IngestQueue,
    options: &HttpOptions,
    retry_after_ms: u64,
) -> std::io::Result<()> {
    let mut buffer: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        // The head.
        let (head_len, head) = loop {
            let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buffer) {
                Ok(httparse::Status::Complete(len)) => {
                    let declared = request
                        .headers
                        .iter()
                        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|header| std::str::from_utf8(header.value).ok())
                        .and_then(|value| value.trim().parse::<usize>().ok());
                    break (len, (declared, check_head(&request, options)));
                }
                Ok(httparse::Status::Partial) if buffer.len() < HEAD_LIMIT_BYTES => {
                    if !fill(&mut stream, &mut buffer).await? {
                        return Ok(());
                    }
                }
                Ok(httparse::Status::Partial) => {
                    let response = Response::error(431, "the request head is too large").closing();
                    return respond(&mut stream, queue, &response).await;
                }
                Err(error) => {
                    let response =
                        Response::error(400, &format!("malformed request: {error}")).closing();
                    return respond(&mut stream, queue, &response).await;
                }
            }
        };
        let (declared, head) = head;
        let head = match head {
            Ok(head) => head,
            Err(response) => {
                // The refused request's body is skipped unread if it is
                // small enough; otherwise the connection closes.
                let skip = declared.filter(|&len| len <= options.body_limit_bytes);
                let response = match skip {
                    Some(_) => response,
                    None => response.closing(),
                };
                respond(&mut stream, queue, &response).await?;
                let Some(skip) = skip.filter(|_| !response.close) else {
                    return Ok(());
                };
                buffer.drain(..head_len);
                while buffer.len() < skip {
                    if !fill(&mut stream, &mut buffer).await? {
                        return Ok(());
                    }
                }
                buffer.drain(..skip);
                continue;
            }
        };
        buffer.drain(..head_len);
        if head.expect_continue && buffer.len() < head.content_length {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        while buffer.len() < head.content_length {
            if !fill(&mut stream, &mut buffer).await? {
                return Ok(()); // the client left mid-body: nothing accepted
            }
        }
        let mut body = Payload::with_capacity(head.content_length);
        body.extend_from_slice(&buffer[..head.content_length]);
        buffer.drain(..head.content_length);
        let response = handle(head.array, head.batch_id, body, queue, retry_after_ms).await;
        let close = head.close || response.close;
        let response = if head.close {
            response.closing()
        } else {
            response
        };
        respond(&mut stream, queue, &response).await?;
        if close {
            return Ok(());
        }
    }
}

async fn handle(
    array: bool,
    batch_id: Option<u64>,
    body: Payload,
    queue: &IngestQueue,
    retry_after_ms: u64,
) -> Response {
    let index = match index_events(array, &body) {
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
    let reply = match enqueue(queue, encoding, batch_id, index.len(), body, index) {
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
        Ok(Settled::Accepted(events)) => Response::json(200, format!("{{\"accepted\":{events}}}")),
        Ok(Settled::Duplicate) => Response::json(200, "{\"accepted\":0,\"duplicate\":true}".into()),
        Err(error) => Response::error(503, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_events_are_named_by_line_and_element() {
        assert_eq!(
            parse_events(false, b"{\"key\":\"a\"}\n\n{\"key\":\"b\",\"ts\":5}\n"),
            Ok(2)
        );
        let bad = parse_events(false, b"{\"key\":\"a\"}\n{\"ts\":1}\n").unwrap_err();
        assert_eq!(bad.at, 2);
        assert!(
            bad.message.contains("missing field `key`"),
            "{}",
            bad.message
        );
        let bad = parse_events(false, b"{\"key\":\"a\"}\n[1]\n").unwrap_err();
        assert_eq!(
            (bad.at, bad.message.as_str()),
            (2, "expected a JSON object")
        );
        assert_eq!(
            parse_events(true, b"[{\"key\":\"a\"},{\"key\":\"b\"}]"),
            Ok(2)
        );
        let bad = parse_events(true, b"[{\"key\":\"a\"},{\"key\":3}]").unwrap_err();
        assert_eq!(bad.at, 2);
        assert_eq!(parse_events(false, b"\n").unwrap_err().at, 0);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
