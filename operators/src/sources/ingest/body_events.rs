//! The events of an HTTP body: NDJSON (one object per line, blank lines
//! skipped) or one JSON array of objects. Every event is checked before
//! any is queued ([`index_events`]), and where each one is is kept, so the
//! source emits them without parsing the JSON again.
//!
//! In the weir format (`format = "weir"`) an event is a JSON object with a
//! string `key`, and optionally `ts` (event time, ms since the Unix epoch;
//! default: when it was accepted) and `sent_ns` (when the client meant to
//! send it); the whole object is kept as the event's `body`, and one bad
//! event refuses the body. With `format = "json"` an event is any JSON
//! object, read by [`JsonFormat`]; one that is not (or a line that is not
//! UTF-8) is kept as a dead letter with the reason.

use std::borrow::Cow;

use serde::Deserialize;

use super::json_events::JsonFormat;
use super::{Encoding, EventRef};

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

/// Checks every event of a body in the weir format; returns how many there
/// are.
pub fn parse_events(encoding_is_array: bool, body: &[u8]) -> Result<usize, BadEvent> {
    index_events(encoding_is_array, body, None).map(|index| index.len())
}

/// One checked event of a body: where its fields are, so the source can
/// emit it without parsing the JSON again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Indexed {
    /// The key's byte range in the body, or the key itself when it had
    /// escapes or came from `key_field` (empty: none).
    key: Result<(u32, u32), String>,
    ts: Option<u64>,
    sent_ns: u64,
    /// The event object's byte range in the body.
    body: (u32, u32),
    /// Why the event is a dead letter (`format = "json"` only).
    error: Option<Box<str>>,
}

impl Indexed {
    /// Whether the event goes to the dead letters.
    pub(crate) fn is_dead(&self) -> bool {
        self.error.is_some()
    }
}

/// Checks every event of a body and returns where each one is. In the
/// weir format (`json` is `None`) the first bad event refuses the body; in
/// `format = "json"` a bad event is indexed as a dead letter, and only a
/// body that cannot be split into events (an array that is not JSON) is
/// refused.
pub(crate) fn index_events(
    encoding_is_array: bool,
    body: &[u8],
    json: Option<&JsonFormat>,
) -> Result<Vec<Indexed>, BadEvent> {
    let encoding = if encoding_is_array {
        Encoding::JsonArray
    } else {
        Encoding::Ndjson
    };
    let base = body.as_ptr() as usize;
    let range = |text: &[u8]| {
        let start = text.as_ptr() as usize - base;
        (start as u32, (start + text.len()) as u32)
    };
    let mut index = Vec::new();
    visit(encoding, body, json, &mut |event| {
        let key = match event.key {
            Cow::Borrowed(key) => Ok(range(key.as_bytes())),
            Cow::Owned(key) => Err(key),
        };
        index.push(Indexed {
            key,
            ts: event.ts_ms,
            sent_ns: event.sent_ns,
            body: range(event.raw),
            error: event.error.map(String::into_boxed_str),
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

/// One event as [`visit`] finds it.
struct Found<'a> {
    key: Cow<'a, str>,
    ts_ms: Option<u64>,
    sent_ns: u64,
    /// Its bytes in the body.
    raw: &'a [u8],
    /// Its text (lossy when a line is not UTF-8, which makes it a dead
    /// letter).
    text: Cow<'a, str>,
    error: Option<String>,
}

/// Splits a body into its events and reads each one: by the weir format,
/// or by `json`.
fn visit<'a>(
    encoding: Encoding,
    body: &'a [u8],
    json: Option<&JsonFormat>,
    each: &mut dyn FnMut(Found<'a>),
) -> Result<(), BadEvent> {
    let read = |at: usize, raw: &'a [u8]| -> Result<Found<'a>, BadEvent> {
        let utf8 = match json {
            // SAFETY: the weir format checked the whole body below, and
            // `raw` is a line of it (split at ASCII bytes) or an element
            // of it as a JSON parser found it: UTF-8 too.
            None => Ok(unsafe { std::str::from_utf8_unchecked(raw) }),
            Some(_) => std::str::from_utf8(raw),
        };
        let text = match utf8 {
            Ok(text) => text,
            Err(error) => {
                // An owned key: a borrowed one must lie in the body.
                return Ok(Found {
                    key: Cow::Owned(String::new()),
                    ts_ms: None,
                    sent_ns: 0,
                    raw,
                    text: String::from_utf8_lossy(raw),
                    error: Some(format!("not UTF-8: {error}")),
                });
            }
        };
        let Some(json) = json else {
            let fields = object_fields(text).map_err(|message| BadEvent { at, message })?;
            return Ok(Found {
                key: fields.key,
                ts_ms: fields.ts,
                sent_ns: fields.sent_ns.unwrap_or(0),
                raw,
                text: Cow::Borrowed(text),
                error: None,
            });
        };
        let (decoded, error) = match json.decode(text, None) {
            Ok(decoded) => (decoded, None),
            Err(reason) => (Default::default(), Some(reason)),
        };
        Ok(Found {
            key: Cow::Owned(decoded.key.unwrap_or_default()),
            ts_ms: decoded.ts_ms,
            sent_ns: 0,
            raw,
            text: Cow::Borrowed(text),
            error,
        })
    };
    if json.is_none() {
        std::str::from_utf8(body).map_err(|error| BadEvent {
            at: 0,
            message: format!("the body is not UTF-8: {error}"),
        })?;
    }
    match encoding {
        Encoding::JsonArray => {
            let text = std::str::from_utf8(body).map_err(|error| BadEvent {
                at: 0,
                message: format!("the body is not UTF-8: {error}"),
            })?;
            let elements: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).map_err(|error| BadEvent {
                    at: 0,
                    message: format!("the body is not a JSON array of events: {error}"),
                })?;
            for (index, element) in elements.iter().enumerate() {
                each(read(index + 1, element.get().as_bytes())?);
            }
        }
        _ => {
            for (index, line) in body.split(|&byte| byte == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                each(read(index + 1, line)?);
            }
        }
    }
    Ok(())
}

pub(crate) fn for_each_event(
    encoding: Encoding,
    payload: &[u8],
    index: Option<&[Indexed]>,
    json: Option<&JsonFormat>,
    each: &mut impl FnMut(EventRef<'_>),
) -> Result<(), String> {
    if let Some(index) = index {
        let bytes = |(start, end): (u32, u32)| &payload[start as usize..end as usize];
        // SAFETY: `index_events` checked that the ranges of keys and of
        // events that are not dead letters are UTF-8 (the bytes are owned
        // by the queued batch and were not changed since).
        let text = |range| unsafe { std::str::from_utf8_unchecked(bytes(range)) };
        for event in index {
            let key = match &event.key {
                Ok(range) => text(*range),
                Err(key) => key.as_str(),
            };
            let body = match event.error {
                // A dead letter's line may not be UTF-8.
                Some(_) => String::from_utf8_lossy(bytes(event.body)),
                None => Cow::Borrowed(text(event.body)),
            };
            each(EventRef {
                key,
                ts_ms: event.ts,
                sent_ns: event.sent_ns,
                body: &body,
                error: event.error.as_deref(),
            });
        }
        return Ok(());
    }
    visit(encoding, payload, json, &mut |found| {
        each(EventRef {
            key: &found.key,
            ts_ms: found.ts_ms,
            sent_ns: found.sent_ns,
            body: &found.text,
            error: found.error.as_deref(),
        })
    })
    .map_err(|bad| format!("event {}: {}", bad.at, bad.message))
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
}
