//! Checking an HTTP request head before a byte of its body is read.
//!
//! The checks, in order, and the answer to the first that fails:
//! 1. the path (404) and the method (405);
//! 2. with a token configured, `Authorization: Bearer <token>`, the scheme
//!    in any case (RFC 9110 §11.1), the token compared in constant time
//!    (401);
//! 3. the body's length: `Transfer-Encoding` is refused (411, chunked
//!    bodies are not accepted); `Content-Length` must be present (411),
//!    once (400: two of them are how request smuggling starts), and plain
//!    digits (400: no sign, no inner spaces, no list), and at most
//!    `body_limit_bytes` (413);
//! 4. the media type (415: NDJSON, JSON or plain text; with
//!    `format = "json"` also `+json` types and curl's default
//!    `application/x-www-form-urlencoded`; an `otlp` source takes
//!    `application/x-protobuf` and `application/json` only), `Content-Encoding` (415: `gzip`, `x-gzip`,
//!    `zstd` and `identity` are read) and `Weir-Batch-Id` (400).
//!
//! A refused request's body is never read: when the request declares one,
//! the answer says `Connection: close` and the connection closes after it
//! (its unread body would otherwise be taken for the next request).
//!
//! Whether the connection stays open after the request follows RFC 9112
//! §9.3: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
//! `Connection: keep-alive`.

use super::super::batch_id_hash;
use super::response::Response;
use super::HttpOptions;

/// What a checked request head says.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) content_length: usize,
    pub(super) array: bool,
    /// An OTLP request in protobuf (`application/x-protobuf`), not JSON.
    pub(super) protobuf: bool,
    pub(super) content_encoding: ContentEncoding,
    pub(super) batch_id: Option<u64>,
    pub(super) expect_continue: bool,
}

/// How a body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContentEncoding {
    Identity,
    Gzip,
    Zstd,
}

/// A request head's verdict, and what becomes of the connection.
#[derive(Debug)]
pub(super) struct Verdict {
    /// The head, or the answer refusing it (closing when the request
    /// declared a body).
    pub(super) head: Result<Head, Response>,
    /// The client asked to keep the connection open after this request.
    pub(super) keep_alive: bool,
    /// An HTTP/1.0 request: an open connection is confirmed with
    /// `Connection: keep-alive`.
    pub(super) http_1_0: bool,
}

/// Checks a parsed request head.
pub(super) fn check(request: &httparse::Request<'_, '_>, options: &HttpOptions) -> Verdict {
    let head = check_head(request, options).map_err(|response| {
        if declares_body(request) {
            response.closing()
        } else {
            response
        }
    });
    Verdict {
        head,
        keep_alive: keep_alive(request),
        http_1_0: request.version == Some(0),
    }
}

fn check_head(
    request: &httparse::Request<'_, '_>,
    options: &HttpOptions,
) -> Result<Head, Response> {
    route(request, options)?;
    if let Some(token) = &options.token {
        authorize(request, token)?;
    }
    let content_length = body_length(request, options.body_limit_bytes)?;
    let content_type = header(request, "content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or("").trim();
    // `format = "json"` tells an array from NDJSON by the body, and takes
    // what `curl -d` sends by default too.
    let json = options.json.is_some();
    let protobuf = media == "application/x-protobuf";
    let array = match media {
        _ if options.otlp => {
            if !protobuf && media != "application/json" {
                return Err(Response::error(
                    415,
                    &format!(
                        "content type `{media}`: send application/x-protobuf or application/json"
                    ),
                ));
            }
            false
        }
        "application/json" => true,
        "" | "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "text/plain" => {
            false
        }
        "application/x-www-form-urlencoded" | "application/x-jsonlines" if json => false,
        other if json && other.ends_with("+json") => false,
        other => {
            return Err(Response::error(
                415,
                &format!("content type `{other}`: send application/x-ndjson or application/json"),
            ))
        }
    };
    let content_encoding = match header(request, "content-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "identity" => ContentEncoding::Identity,
        "gzip" | "x-gzip" => ContentEncoding::Gzip,
        "zstd" => ContentEncoding::Zstd,
        other => {
            return Err(Response::error(
                415,
                &format!("content encoding `{other}`: send gzip, zstd or none"),
            ))
        }
    };
    let batch_id = match header(request, "weir-batch-id") {
        Some(id) if id.is_empty() || id.len() > 256 => {
            return Err(Response::error(400, "Weir-Batch-Id must be 1 to 256 bytes"))
        }
        Some(id) => Some(batch_id_hash(id.as_bytes())),
        None => None,
    };
    let expect_continue =
        header(request, "expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
    Ok(Head {
        content_length,
        array,
        protobuf,
        content_encoding,
        batch_id,
        expect_continue,
    })
}

/// 404 for another path, 405 for another method.
fn route(request: &httparse::Request<'_, '_>, options: &HttpOptions) -> Result<(), Response> {
    let path = request.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    if path != options.path {
        let message = format!(
            "no such path `{path}`: {} are posted to `{}`",
            if options.otlp { "logs" } else { "events" },
            options.path
        );
        return Err(Response::error(404, &message));
    }
    if request.method != Some("POST") {
        return Err(Response::error(405, "only POST is accepted").header("allow", "POST".into()));
    }
    Ok(())
}

/// 401 unless the request carries `Authorization: Bearer <token>`.
fn authorize(request: &httparse::Request<'_, '_>, token: &str) -> Result<(), Response> {
    let given = header(request, "authorization");
    let ok = given
        .as_deref()
        .and_then(bearer_token)
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()));
    if ok {
        return Ok(());
    }
    let message = if given.is_none() {
        "missing `Authorization: Bearer <token>`"
    } else {
        "wrong bearer token"
    };
    Err(Response::error(401, message).header("www-authenticate", "Bearer".into()))
}

/// The token of an `Authorization` value with the `Bearer` scheme, in
/// whatever case.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches([' ', '\t']))
}

/// The body's length from `Content-Length`, checked as the module says.
fn body_length(request: &httparse::Request<'_, '_>, limit_bytes: usize) -> Result<usize, Response> {
    if header(request, "transfer-encoding").is_some() {
        let message = "chunked bodies are not accepted: send Content-Length";
        return Err(Response::error(411, message));
    }
    let mut lengths = values(request, "content-length");
    let Some(length) = lengths.next() else {
        return Err(Response::error(411, "a Content-Length header is required"));
    };
    if lengths.next().is_some() {
        return Err(Response::error(400, "more than one Content-Length header"));
    }
    let length = trim_whitespace(length);
    if length.is_empty() || !length.iter().all(u8::is_ascii_digit) {
        let shown = String::from_utf8_lossy(length);
        let message = format!("Content-Length `{shown}` is not a length: send plain digits");
        return Err(Response::error(400, &message));
    }
    // Only digits: a value too large for `usize` is above any limit.
    let length = std::str::from_utf8(length)
        .ok()
        .and_then(|digits| digits.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    if length > limit_bytes {
        let message =
            format!("the body of {length} bytes exceeds the limit of {limit_bytes} bytes");
        return Err(Response::error(413, &message));
    }
    Ok(length)
}

/// Whether the request declares a body (that a refusal leaves unread).
fn declares_body(request: &httparse::Request<'_, '_>) -> bool {
    header(request, "transfer-encoding").is_some()
        || values(request, "content-length").any(|length| trim_whitespace(length) != b"0")
}

/// Whether the connection stays open after this request (RFC 9112 §9.3).
fn keep_alive(request: &httparse::Request<'_, '_>) -> bool {
    let mut options = values(request, "connection")
        .flat_map(|value| value.split(|&byte| byte == b','))
        .map(trim_whitespace);
    let (mut close, mut keep_alive) = (false, false);
    for option in &mut options {
        close |= option.eq_ignore_ascii_case(b"close");
        keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
    }
    !close && (request.version != Some(0) || keep_alive)
}

/// Every value of header `name`, raw.
fn values<'a>(
    request: &'a httparse::Request<'_, '_>,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    request
        .headers
        .iter()
        .filter(move |header| header.name.eq_ignore_ascii_case(name))
        .map(|header| header.value)
}

/// The first value of header `name`, as trimmed text.
fn header(request: &httparse::Request<'_, '_>, name: &str) -> Option<String> {
    let value = values(request, name).next()?;
    Some(String::from_utf8_lossy(trim_whitespace(value)).into_owned())
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |end| end + 1);
    &bytes[start..end]
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> Verdict {
        let text = head.replace('\n', "\r\n") + "\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(text.as_bytes()).unwrap().is_complete());
        let options = HttpOptions {
            token: Some("s3cret".into()),
            body_limit_bytes: 100,
            ..HttpOptions::default()
        };
        check(&request, &options)
    }

    fn status(head: &str) -> u16 {
        match verdict(head).head {
            Ok(_) => 200,
            Err(response) => response.status,
        }
    }

    const POST: &str = "POST /events HTTP/1.1\nAuthorization: Bearer s3cret\n";

    #[test]
    fn content_length_is_one_header_of_plain_digits() {
        assert_eq!(status(&format!("{POST}Content-Length: 12\n")), 200);
        assert_eq!(status(&format!("{POST}Content-Length:  12 \n")), 200);
        for bad in ["+12", "-1", "1 2", "12,12", "0x10", ""] {
            let head = format!("{POST}Content-Length: {bad}\n");
            assert_eq!(status(&head), 400, "{bad:?}");
            assert!(verdict(&head).head.unwrap_err().close, "{bad:?}");
        }
        let twice = format!("{POST}Content-Length: 12\nContent-Length: 12\n");
        assert_eq!(status(&twice), 400);
        assert_eq!(status(&format!("{POST}Content-Length: 101\n")), 413);
        let huge = format!("{POST}Content-Length: 99999999999999999999999\n");
        assert_eq!(status(&huge), 413);
        assert_eq!(status(POST), 411);
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let head = format!(
                "POST /events HTTP/1.1\nAuthorization: {scheme} s3cret\nContent-Length: 1\n"
            );
            assert_eq!(status(&head), 200, "{scheme}");
        }
        let head = "POST /events HTTP/1.1\nAuthorization: Bearer S3CRET\nContent-Length: 1\n";
        assert_eq!(status(head), 401);
        let head = "POST /events HTTP/1.1\nAuthorization: Basic s3cret\nContent-Length: 1\n";
        assert_eq!(status(head), 401);
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_options() {
        let length = "Content-Length: 1\n";
        assert!(verdict(&format!("{POST}{length}")).keep_alive);
        assert!(!verdict(&format!("{POST}Connection: close\n{length}")).keep_alive);
        let old = "POST /events HTTP/1.0\nAuthorization: Bearer s3cret\n";
        assert!(!verdict(&format!("{old}{length}")).keep_alive);
        assert!(verdict(&format!("{old}Connection: Keep-Alive\n{length}")).keep_alive);
        assert!(!verdict(&format!("{POST}Connection: keep-alive, close\n{length}")).keep_alive);
    }

    #[test]
    fn a_refusal_closes_only_when_a_body_is_left_unread() {
        let refused = verdict("GET /events HTTP/1.1\n").head.unwrap_err();
        assert_eq!((refused.status, refused.close), (405, false));
        let refused = verdict("POST /events HTTP/1.1\nContent-Length: 5\n")
            .head
            .unwrap_err();
        assert_eq!((refused.status, refused.close), (401, true));
    }
}
