//! Values to and from JSON: how rows enter from NDJSON and leave as NDJSON.
//!
//! Timestamps are written as RFC 3339 in UTC with milliseconds
//! (`2026-11-26T14:00:00.000Z`) and read from RFC 3339, from the access-log
//! form (`10/Oct/2000:13:55:36 -0700`), or from an integer of milliseconds.
//! IP addresses are written and read as text. A JSON value that does not fit
//! the field's type is an error naming both.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use chrono::{DateTime, SecondsFormat, Utc};

use super::{ArchivedRow, ArchivedValue, Ip, MapEntry, Schema, Type, Value};

/// The milliseconds since the Unix epoch of `text` in RFC 3339 or the
/// access-log form.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    DateTime::parse_from_str(text, "%d/%b/%Y:%H:%M:%S %z")
        .ok()
        .map(|time| time.timestamp_millis())
}

/// Converts `json` to a value of type `ty`; `null` is `Null` for every
/// type.
pub fn value_from_json(json: &serde_json::Value, ty: Type) -> Result<Value, String> {
    use serde_json::Value as Json;
    let mismatch = || {
        let mut shown = json.to_string();
        if shown.len() > 64 {
            let mut cut = 61;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push_str("...");
        }
        format!("{shown} is not a {ty}")
    };
    Ok(match (ty, json) {
        (_, Json::Null) => Value::Null,
        (Type::Bool, Json::Bool(value)) => Value::Bool(*value),
        (Type::Int, Json::Number(number)) => Value::Int(number.as_i64().ok_or_else(mismatch)?),
        (Type::Float, Json::Number(number)) => Value::Float(number.as_f64().ok_or_else(mismatch)?),
        (Type::String, Json::String(text)) => Value::String(text.clone()),
        (Type::Timestamp, Json::String(text)) => {
            Value::Timestamp(parse_timestamp(text).ok_or_else(mismatch)?)
        }
        (Type::Timestamp, Json::Number(number)) => {
            Value::Timestamp(number.as_i64().ok_or_else(mismatch)?)
        }
        (Type::Ip, Json::String(text)) => {
            let addr: IpAddr = text.parse().map_err(|_| mismatch())?;
            Value::Ip(Ip::from(addr))
        }
        (Type::List, Json::Array(values)) => Value::List(values.iter().map(any_value).collect()),
        (Type::Map, Json::Object(entries)) => Value::Map(
            entries
                .iter()
                .map(|(key, value)| MapEntry {
                    key: key.clone(),
                    value: any_value(value),
                })
                .collect(),
        ),
        _ => return Err(mismatch()),
    })
}

/// A JSON value inside a list or map, typed by its JSON form.
fn any_value(json: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match json {
        Json::Null => Value::Null,
        Json::Bool(value) => Value::Bool(*value),
        Json::Number(number) => match number.as_i64() {
            Some(value) => Value::Int(value),
            None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(text) => Value::String(text.clone()),
        Json::Array(values) => Value::List(values.iter().map(any_value).collect()),
        Json::Object(entries) => Value::Map(
            entries
                .iter()
                .map(|(key, value)| MapEntry {
                    key: key.clone(),
                    value: any_value(value),
                })
                .collect(),
        ),
    }
}

/// Appends `value` as JSON to `out`.
pub fn write_json_value(value: &ArchivedValue, out: &mut String) {
    match value {
        ArchivedValue::Null => out.push_str("null"),
        ArchivedValue::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        ArchivedValue::Int(value) => {
            let _ = write!(out, "{}", value.to_native());
        }
        ArchivedValue::Float(value) => {
            let value = value.to_native();
            if value.is_finite() {
                let _ = write!(out, "{value:?}");
            } else {
                out.push_str("null");
            }
        }
        ArchivedValue::String(text) => write_json_string(text, out),
        ArchivedValue::Timestamp(ms) => {
            out.push('"');
            write_timestamp(ms.to_native(), out);
            out.push('"');
        }
        ArchivedValue::Ip(ip) => {
            let _ = write!(out, "\"{}\"", ip.to_ip());
        }
        ArchivedValue::List(values) => {
            out.push('[');
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_json_value(value, out);
            }
            out.push(']');
        }
        ArchivedValue::Map(entries) => {
            out.push('{');
            for (index, entry) in entries.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_json_string(&entry.key, out);
                out.push(':');
                write_json_value(&entry.value, out);
            }
            out.push('}');
        }
    }
}

/// Appends `ms` as RFC 3339 UTC with milliseconds.
pub(crate) fn write_timestamp(ms: i64, out: &mut String) {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(time) => out.push_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => {
            let _ = write!(out, "{ms}");
        }
    }
}

fn write_json_string(text: &str, out: &mut String) {
    // serde_json's escaping, without building a `serde_json::Value`.
    let escaped = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    out.push_str(&escaped);
}

/// Appends `row` as one JSON object (no newline), fields named by `schema`;
/// null fields are left out.
pub fn write_row_json(row: &ArchivedRow, schema: &Schema, out: &mut String) {
    out.push('{');
    let mut first = true;
    for (index, field) in schema.fields().iter().enumerate() {
        let value = row.get(index);
        if value.is_null() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_json_string(&field.name, out);
        out.push(':');
        write_json_value(value, out);
    }
    out.push('}');
}

/// How `weir tap` shows rows of `schema`: one JSON object per row, as
/// [`write_row_json`] writes it.
pub fn tap_format(schema: super::SchemaRef) -> weir_runtime::tap::TapFormat<super::Row> {
    std::sync::Arc::new(move |row: &super::Row, out: &mut Vec<u8>| {
        let mut text = String::with_capacity(128);
        match rkyv::to_bytes::<rkyv::rancor::Error>(row) {
            Ok(bytes) => match rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes) {
                Ok(archived) => write_row_json(archived, &schema, &mut text),
                Err(error) => text = format!("{{\"tap_error\":{:?}}}", error.to_string()),
            },
            Err(error) => text = format!("{{\"tap_error\":{:?}}}", error.to_string()),
        }
        out.extend_from_slice(text.as_bytes());
    })
}

/// Fills `values` (one per field of `fields`, in order) from the JSON object
/// `text`, by member name: a member `fields` does not name is skipped, a
/// field without a member (or with `null`) is `Null`, and a member that
/// does not fit its field's type (as [`value_from_json`] converts) is an
/// error naming the field. Invalid JSON, or JSON that is not one object, is
/// an error too.
pub fn json_object_into(
    text: &[u8],
    fields: &[(String, Type)],
    values: &mut [Value],
) -> Result<(), String> {
    values.fill(Value::Null);
    let mut mismatch = None;
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let seed = RowSeed {
        fields,
        values,
        mismatch: &mut mismatch,
    };
    seed.deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|error| match error.classify() {
            serde_json::error::Category::Data => error.to_string(),
            _ => format!("invalid JSON: {error}"),
        })?;
    match mismatch {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Reads one JSON object into `values`, by field name.
struct RowSeed<'a> {
    fields: &'a [(String, Type)],
    values: &'a mut [Value],
    /// The first member that did not fit its type.
    mismatch: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.fields.iter().position(|(name, _)| *name == key) {
                Some(index) => {
                    let json: serde_json::Value = map.next_value()?;
                    let (name, ty) = &self.fields[index];
                    match value_from_json(&json, *ty) {
                        Ok(value) => self.values[index] = value,
                        Err(error) => {
                            self.values[index] = Value::Null;
                            if self.mismatch.is_none() {
                                *self.mismatch = Some(format!("field `{name}`: {error}"));
                            }
                        }
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A map key, borrowed from the line when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Row;

    #[test]
    fn rows_write_as_json_objects_and_read_back() {
        let schema = Schema::new([
            ("at", Type::Timestamp),
            ("ip", Type::Ip),
            ("path", Type::String),
            ("bytes", Type::Int),
            ("ratio", Type::Float),
            ("gone", Type::Bool),
        ]);
        let json: serde_json::Value = serde_json::json!({
            "at": "2026-11-26T14:00:00.250Z",
            "ip": "2001:db8::1",
            "path": "/a\"b",
            "bytes": 512,
            "ratio": 0.5,
        });
        let row = Row {
            values: schema
                .fields()
                .iter()
                .map(|field| value_from_json(&json[&field.name], field.ty).unwrap())
                .collect(),
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&row).unwrap();
        let archived = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes).unwrap();
        let mut out = String::new();
        write_row_json(archived, &schema, &mut out);
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn timestamps_parse_in_both_forms_and_mismatches_are_named() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(
            parse_timestamp("10/Oct/2000:13:55:36 -0700"),
            parse_timestamp("2000-10-10T20:55:36Z")
        );
        let error = value_from_json(&serde_json::json!("nope"), Type::Ip).unwrap_err();
        assert_eq!(error, "\"nope\" is not a ip");
        assert!(value_from_json(&serde_json::json!(1.5), Type::Int).is_err());
    }
}
