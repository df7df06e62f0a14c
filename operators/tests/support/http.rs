//! Reading HTTP/1.1 messages in tests: what follows a request or status
//! line.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::BufRead;

/// Reads the header lines up to the blank line (names lower-case) and then
/// a body of the `Content-Length` they give.
pub fn read_headers_and_body(reader: &mut impl BufRead) -> (BTreeMap<String, String>, String) {
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers["content-length"].parse().expect("length");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (headers, String::from_utf8(body).expect("UTF-8 body"))
}
