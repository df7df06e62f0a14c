//! The `http` source's responses: a status, a few headers and a body (JSON,
//! or an OTLP protobuf message), always with `Content-Length`, and
//! `Connection: close` when the server closes the connection after it.

/// A response: status, extra headers, body.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// The connection closes after this response.
    pub(super) close: bool,
}

impl Response {
    pub(super) fn json(status: u16, body: String) -> Response {
        Response::typed(status, "application/json", body.into_bytes())
    }

    /// A body of media type `content_type`.
    pub(super) fn typed(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
            close: false,
        }
    }

    /// `{"error": message}`.
    pub(super) fn error(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "error": message }).to_string();
        Response::json(status, body)
    }

    pub(super) fn header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    /// The response, closing the connection after it.
    pub(super) fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let reason = match self.status {
            100 => "Continue",
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            411 => "Length Required",
            413 => "Content Too Large",
            415 => "Unsupported Media Type",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub(super) fn retry_after_seconds(retry_after_ms: u64) -> String {
    retry_after_ms.div_ceil(1000).max(1).to_string()
}
