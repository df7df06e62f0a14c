//! The events of an HTTP body: NDJSON (one object per line, blank lines
//! skipped) or one JSON array of objects. Every event is checked before
//! any is queued ([`index_events`]), and where each one is is kept, so the
//! source emits them without parsing the JSON again.
//!
//! An event is a JSON object with a string `key`, and optionally `ts`
//! (event time, ms since the Unix epoch; default: when it was accepted) and
//! `sent_ns` (when the client meant to send it); the whole object is kept
//! as the event's `body`.

use std::borrow::Cow;

use serde::Deserialize;

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
