//! The `http` source's `format = "json"`: events as log shippers send them
//! (Vector's `http` sink, Fluent Bit's `http` output, `curl`): any JSON
//! object per event, NDJSON or one JSON array.
//!
//! [`JsonFormat::decode`] reads one event in one pass over its members:
//! the key from `key_field` (a string or number; none without the option),
//! the event time from `timestamp_field` ([`TimestampFormat`]), and the
//! `schema` fields as typed values (by [`value_from_json`]: a member that
//! does not fit its field's type is an error naming the field). Members no
//! option names are skipped; a field without a member is null. An event
//! that does not decode is not refused: it becomes a dead letter with the
//! reason, so one bad line never costs the rest of its batch.
//!
//! The connection decodes every event before it queues the batch (to
//! answer how many were accepted and how many dead-lettered), and the
//! source's rows node decodes it again into its row: the same function
//! on the same bytes, so both reach the same verdict, on replay too.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::row::convert::convert_text;
use crate::row::{parse_timestamp, value_from_json, Type, Value};

/// How `timestamp_field` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// A string is RFC 3339 (Vector, Fluent Bit `iso8601`); a number is
    /// seconds since the Unix epoch, with a fraction (Fluent Bit's default
    /// `double`).
    #[default]
    Auto,
    /// RFC 3339 text only.
    Rfc3339,
    /// Seconds since the Unix epoch (a number, fraction allowed).
    UnixS,
    /// Milliseconds since the Unix epoch.
    UnixMs,
    /// Nanoseconds since the Unix epoch.
    UnixNs,
}

impl TimestampFormat {
    /// The option's value as a pipeline file writes it.
    pub fn name(self) -> &'static str {
        match self {
            TimestampFormat::Auto => "auto",
            TimestampFormat::Rfc3339 => "rfc3339",
            TimestampFormat::UnixS => "unix_s",
            TimestampFormat::UnixMs => "unix_ms",
            TimestampFormat::UnixNs => "unix_ns",
        }
    }

    /// Milliseconds since the Unix epoch of `json`; `Ok(None)` for null.
    fn millis(self, json: &serde_json::Value) -> Result<Option<u64>, String> {
        use serde_json::Value as Json;
        let scale = match (self, json) {
            (_, Json::Null) => return Ok(None),
            (TimestampFormat::Auto | TimestampFormat::Rfc3339, Json::String(text)) => {
                return match parse_timestamp(text) {
                    Some(ms) if ms >= 0 => Ok(Some(ms as u64)),
                    Some(_) => Err(format!("{} is before 1970", shown(json))),
                    None => Err(format!("{} is not an RFC 3339 time", shown(json))),
                };
            }
            (TimestampFormat::Auto | TimestampFormat::UnixS, Json::Number(_)) => 1e3,
            (TimestampFormat::UnixMs, Json::Number(_)) => 1.0,
            (TimestampFormat::UnixNs, Json::Number(_)) => 1e-6,
            (format, _) => {
                let expected = match format {
                    TimestampFormat::Rfc3339 => "RFC 3339 text",
                    TimestampFormat::Auto => "RFC 3339 text or seconds since the epoch",
                    _ => "a number",
                };
                return Err(format!("{} is not {expected}", shown(json)));
            }
        };
        let Json::Number(number) = json else {
            unreachable!("only numbers are scaled")
        };
        // Integers exactly (nanoseconds do not fit an f64's 53 bits).
        let ms = match (number.as_u64(), self) {
            (Some(ns), TimestampFormat::UnixNs) => Some(ns / 1_000_000),
            (Some(ms), TimestampFormat::UnixMs) => Some(ms),
            (Some(s), _) => s.checked_mul(1_000),
            (None, _) => number
                .as_f64()
                .map(|value| value * scale)
                .filter(|ms| *ms >= 0.0 && *ms < 9.0e15)
                .map(|ms| ms as u64),
        };
        ms.filter(|ms| *ms <= i64::MAX as u64)
            .map(Some)
            .ok_or_else(|| format!("{} is not a time after 1970", shown(json)))
    }
}

/// What an event's options read from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The key (`key_field`), if the option is set and the member present.
    pub key: Option<String>,
    /// The event time, if `timestamp_field` is set and the member present.
    pub ts_ms: Option<u64>,
}

/// The options of `format = "json"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonFormat {
    /// The member that is the event's key.
    pub key_field: Option<String>,
    /// The member that is the event's time.
    pub timestamp_field: Option<String>,
    /// How the time is written.
    pub timestamp_format: TimestampFormat,
    /// The typed fields read into the row, in order.
    pub fields: Vec<(String, Type)>,
}

impl JsonFormat {
    /// Decodes one event (the text of one line or array element) into its
    /// key and time, and into `values` (one per schema field, in order)
    /// when given. The error is the reason for the dead letter.
    pub fn decode(&self, text: &str, values: Option<&mut [Value]>) -> Result<Decoded, String> {
        if !text.trim_start().starts_with('{') {
            return Err("expected a JSON object".into());
        }
        let mut values = values;
        if let Some(values) = values.as_deref_mut() {
            values.fill(Value::Null);
        }
        let mut decoded = Decoded::default();
        let mut failure = None;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let seed = Members {
            format: self,
            values,
            decoded: &mut decoded,
            failure: &mut failure,
        };
        seed.deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
            .map_err(|error| format!("invalid JSON: {error}"))?;
        match failure {
            Some(reason) => Err(reason),
            None => Ok(decoded),
        }
    }
}

/// Reads an object's members into what the options name.
struct Members<'a> {
    format: &'a JsonFormat,
    values: Option<&'a mut [Value]>,
    decoded: &'a mut Decoded,
    /// The first member that did not fit.
    failure: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Members<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(roles) = map.next_key_seed(RolesOf(self.format))? {
            if roles.is_none() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if let (Some(index), false, false) = (roles.field, roles.key, roles.timestamp) {
                // The common case: straight into the field's type, with no
                // `serde_json::Value` in between.
                let (name, ty) = &self.format.fields[index];
                let keep = self.values.is_some();
                let typed = map.next_value_seed(Typed { ty: *ty, keep })?;
                match (typed, self.values.as_deref_mut()) {
                    _ if self.failure.is_some() => {}
                    (Ok(value), Some(values)) => values[index] = value,
                    (Ok(_), None) => {}
                    (Err(reason), _) => *self.failure = Some(format!("field `{name}`: {reason}")),
                }
                continue;
            }
            let json: serde_json::Value = map.next_value()?;
            if self.failure.is_none() {
                if let Err(reason) = self.take(roles, &json) {
                    *self.failure = Some(reason);
                }
            }
        }
        Ok(())
    }
}

/// A member's value read straight into a [`Value`] of type `ty` (for
/// scalar types; `list` and `map` go through [`value_from_json`]), with
/// [`typed`]'s conversions and messages. `keep: false` only checks: a
/// string is not copied.
struct Typed {
    ty: Type,
    keep: bool,
}

impl Typed {
    fn mismatch(&self, shown: impl fmt::Display) -> Result<Value, String> {
        Err(format!("{} is not a {}", cut(shown.to_string()), self.ty))
    }

    fn text(&self, text: &str) -> Result<Value, String> {
        if self.ty == Type::String {
            return Ok(if self.keep {
                Value::String(text.to_owned())
            } else {
                Value::Null
            });
        }
        let mut value = Value::Null;
        if convert_text(text, self.ty, &mut value) {
            Ok(value)
        } else {
            self.mismatch(serde_json::Value::from(text))
        }
    }
}

impl<'de> DeserializeSeed<'de> for Typed {
    type Value = Result<Value, String>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        if matches!(self.ty, Type::List | Type::Map) {
            let json = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
            return Ok(typed(&json, self.ty));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Typed {
    type Value = Result<Value, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {}", self.ty)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Value::Null))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(match self.ty {
            Type::Bool => Ok(Value::Bool(value)),
            _ => self.mismatch(value),
        })
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(match self.ty {
            Type::Int => Ok(Value::Int(value)),
            Type::Float => Ok(Value::Float(value as f64)),
            Type::Timestamp => Ok(Value::Timestamp(value)),
            _ => self.mismatch(value),
        })
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        match i64::try_from(value) {
            Ok(value) => self.visit_i64(value),
            Err(_) if self.ty == Type::Float => Ok(Ok(Value::Float(value as f64))),
            Err(_) => Ok(self.mismatch(value)),
        }
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Ok(match self.ty {
            Type::Float => Ok(Value::Float(value)),
            _ => self.mismatch(serde_json::Value::from(value)),
        })
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(self.text(text))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        if self.ty == Type::String && self.keep {
            return Ok(Ok(Value::String(text)));
        }
        Ok(self.text(&text))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let json = <serde_json::Value as serde::Deserialize>::deserialize(
            de::value::SeqAccessDeserializer::new(seq),
        )?;
        Ok(self.mismatch(json))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let json = <serde_json::Value as serde::Deserialize>::deserialize(
            de::value::MapAccessDeserializer::new(map),
        )?;
        Ok(self.mismatch(json))
    }
}

impl Members<'_> {
    /// Stores one member's value wherever the options want it.
    fn take(&mut self, roles: Roles, json: &serde_json::Value) -> Result<(), String> {
        let format = self.format;
        if roles.key {
            let name = format.key_field.as_deref().unwrap_or_default();
            self.decoded.key = match json {
                serde_json::Value::Null => None,
                serde_json::Value::String(text) => Some(text.clone()),
                serde_json::Value::Number(number) => Some(number.to_string()),
                other => {
                    return Err(format!(
                        "key field `{name}`: {} is not a string or number",
                        shown(other)
                    ))
                }
            };
        }
        if roles.timestamp {
            let name = format.timestamp_field.as_deref().unwrap_or_default();
            self.decoded.ts_ms = format
                .timestamp_format
                .millis(json)
                .map_err(|reason| format!("timestamp field `{name}`: {reason}"))?;
        }
        if let Some(index) = roles.field {
            let (name, ty) = &format.fields[index];
            let value = typed(json, *ty).map_err(|reason| format!("field `{name}`: {reason}"))?;
            if let Some(values) = self.values.as_deref_mut() {
                values[index] = value;
            }
        }
        Ok(())
    }
}

/// `json` as a value of type `ty`: as [`value_from_json`] converts it, and
/// a string converts to a number, boolean, time or address by its text
/// (shippers often send `"status":"502"`), as `parse` reads JSON.
fn typed(json: &serde_json::Value, ty: Type) -> Result<Value, String> {
    match json {
        serde_json::Value::String(text) if !matches!(ty, Type::String | Type::List | Type::Map) => {
            let mut value = Value::Null;
            if convert_text(text, ty, &mut value) {
                Ok(value)
            } else {
                Err(format!("{} is not a {ty}", shown(json)))
            }
        }
        _ => value_from_json(json, ty),
    }
}

/// A value as an error shows it: at most 64 bytes of its JSON.
fn shown(json: &serde_json::Value) -> String {
    cut(json.to_string())
}

/// `text` cut to at most 64 bytes, as `value_from_json` shows values.
fn cut(mut text: String) -> String {
    if text.len() > 64 {
        let mut end = 61;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// Which options a member name serves.
#[derive(Debug, Clone, Copy, Default)]
struct Roles {
    key: bool,
    timestamp: bool,
    field: Option<usize>,
}

impl Roles {
    fn is_none(self) -> bool {
        !self.key && !self.timestamp && self.field.is_none()
    }
}

/// A member name, read as the options it serves.
struct RolesOf<'a>(&'a JsonFormat);

impl<'de> DeserializeSeed<'de> for RolesOf<'_> {
    type Value = Roles;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Roles, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for RolesOf<'_> {
    type Value = Roles;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Roles, E> {
        let format = self.0;
        Ok(Roles {
            key: format.key_field.as_deref() == Some(name),
            timestamp: format.timestamp_field.as_deref() == Some(name),
            field: format.fields.iter().position(|(field, _)| field == name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_like() -> JsonFormat {
        JsonFormat {
            key_field: Some("service".into()),
            timestamp_field: Some("timestamp".into()),
            timestamp_format: TimestampFormat::Auto,
            fields: vec![
                ("level".into(), Type::String),
                ("status".into(), Type::Int),
                ("message".into(), Type::String),
            ],
        }
    }

    #[test]
    fn a_shipper_event_decodes_into_key_time_and_fields() {
        let format = vector_like();
        let mut values = vec![Value::Null; 3];
        let decoded = format
            .decode(
                r#"{"timestamp":"2026-12-05T10:00:00.250Z","level":"error","service":"checkout","status":502,"host":{"name":"a"}}"#,
                Some(&mut values),
            )
            .unwrap();
        assert_eq!(decoded.key.as_deref(), Some("checkout"));
        assert_eq!(decoded.ts_ms, Some(1_796_464_800_250));
        assert_eq!(
            values,
            vec![Value::String("error".into()), Value::Int(502), Value::Null]
        );
    }

    #[test]
    fn every_timestamp_format_reads_its_own_form() {
        let at = |format: TimestampFormat, member: &str| {
            JsonFormat {
                timestamp_field: Some("t".into()),
                timestamp_format: format,
                ..JsonFormat::default()
            }
            .decode(&format!("{{\"t\":{member}}}"), None)
            .map(|decoded| decoded.ts_ms)
        };
        use TimestampFormat::*;
        assert_eq!(at(Auto, "1599838431.123"), Ok(Some(1_599_838_431_123)));
        assert_eq!(at(Auto, "1599838431"), Ok(Some(1_599_838_431_000)));
        assert_eq!(
            at(Auto, "\"2020-09-11T15:33:51Z\""),
            Ok(Some(1_599_838_431_000))
        );
        assert_eq!(at(UnixMs, "1599838431123"), Ok(Some(1_599_838_431_123)));
        assert_eq!(
            at(UnixNs, "1599838431123456789"),
            Ok(Some(1_599_838_431_123))
        );
        assert_eq!(at(UnixS, "null"), Ok(None));
        assert!(at(Rfc3339, "1599838431").unwrap_err().contains("RFC 3339"));
        assert!(at(UnixMs, "\"x\"").unwrap_err().contains("not a number"));
        assert!(at(Auto, "\"yesterday\"")
            .unwrap_err()
            .contains("timestamp field `t`: \"yesterday\" is not an RFC 3339 time"));
        assert!(at(Auto, "-5").unwrap_err().contains("after 1970"));
    }

    #[test]
    fn what_does_not_decode_says_why() {
        let format = vector_like();
        let reason = |text: &str| format.decode(text, None).unwrap_err();
        assert_eq!(reason("[1]"), "expected a JSON object");
        assert!(reason("{\"level\":").starts_with("invalid JSON"));
        assert!(reason("{} x").starts_with("invalid JSON"));
        assert_eq!(
            reason(r#"{"status":"many"}"#),
            "field `status`: \"many\" is not a int"
        );
        assert_eq!(
            reason(r#"{"status":[1]}"#),
            "field `status`: [1] is not a int"
        );
        assert_eq!(
            reason(r#"{"status":{"a":"b"}}"#),
            "field `status`: {\"a\":\"b\"} is not a int"
        );
        assert_eq!(
            reason(r#"{"status":1.5}"#),
            "field `status`: 1.5 is not a int"
        );
        assert_eq!(
            reason(r#"{"status":true}"#),
            "field `status`: true is not a int"
        );
        assert_eq!(reason(r#"{"level":7}"#), "field `level`: 7 is not a string");
        let mut values = vec![Value::Null; 3];
        format
            .decode(r#"{"status":"404"}"#, Some(&mut values))
            .unwrap();
        assert_eq!(values[1], Value::Int(404));
        assert!(reason(r#"{"service":{"a":1}}"#).starts_with("key field `service`"));
        // No options: any object is an event.
        assert_eq!(
            JsonFormat::default().decode("{\"a\":[1,{}]}", None),
            Ok(Decoded::default())
        );
    }
}
