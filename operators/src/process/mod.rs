//! Record-level processors of config-driven pipelines, over [`Row`]s:
//!
//! - [`parse`]: turns a text field (a log line) into typed fields, by JSON,
//!   logfmt or a regular expression (with a preset for the combined
//!   access-log format); records that do not parse go to output port 1 as
//!   dead letters.
//! - [`enrich`]: adds columns from a CSV or JSON table loaded once at build
//!   time, joined on a field by exact value or by longest-prefix CIDR match.
//! - [`dedup`]: lets through the first record of each identity per time
//!   window.
//!
//! Each has a config struct (`XConfig`), a pure `build(config, input) ->
//! (XSpec, output schema)` that checks the config against the input schema
//! and fails with an [`OptionError`](crate::row::OptionError) naming the
//! option, and an operator `X::new(spec, context)`.

pub mod dedup;
pub mod enrich;
pub mod parse;

use std::net::IpAddr;

use crate::row::{parse_timestamp, ArchivedRow, ArchivedValue, Ip, Type, Value};

/// Sets `dst` to a copy of `src`, reusing `dst`'s string buffer when both
/// are strings (so copying a row into a reused row does not allocate for
/// its strings once the buffers have grown).
#[inline]
pub(crate) fn assign_archived(dst: &mut Value, src: &ArchivedValue) {
    match (&mut *dst, src) {
        (Value::String(text), ArchivedValue::String(from)) => {
            text.clear();
            text.push_str(from.as_str());
        }
        (_, ArchivedValue::Null) => *dst = Value::Null,
        (_, ArchivedValue::Int(value)) => *dst = Value::Int(value.to_native()),
        (_, ArchivedValue::Timestamp(value)) => *dst = Value::Timestamp(value.to_native()),
        (_, ArchivedValue::Ip(value)) => *dst = Value::Ip(value.to_ip()),
        (_, ArchivedValue::Bool(value)) => *dst = Value::Bool(*value),
        (_, ArchivedValue::Float(value)) => *dst = Value::Float(value.to_native()),
        _ => *dst = src.to_value(),
    }
}

/// Sets `dst` to a copy of `src`, reusing `dst`'s string buffer when both
/// are strings.
#[inline]
pub(crate) fn assign_value(dst: &mut Value, src: &Value) {
    match (&mut *dst, src) {
        (Value::String(text), Value::String(from)) => {
            text.clear();
            text.push_str(from);
        }
        _ => dst.clone_from(src),
    }
}

/// Sets `dst` to the string `text`, reusing its buffer.
#[inline]
pub(crate) fn assign_str(dst: &mut Value, text: &str) {
    match dst {
        Value::String(buffer) => {
            buffer.clear();
            buffer.push_str(text);
        }
        _ => *dst = Value::String(text.to_owned()),
    }
}

/// Makes `dst` an owned copy of the first `width` fields of `src` (null
/// past its end), reusing its values' buffers.
pub(crate) fn copy_row(dst: &mut Vec<Value>, src: &ArchivedRow, width: usize) {
    dst.resize(width, Value::Null);
    for (index, to) in dst.iter_mut().enumerate() {
        assign_archived(to, src.get(index));
    }
}

/// Converts the text `text` to a value of `ty` into `dst` (reusing a string
/// buffer); `false` when it is not one. `list` and `map` never convert
/// from text (builds refuse them).
pub(crate) fn convert_text(text: &str, ty: Type, dst: &mut Value) -> bool {
    *dst = match ty {
        Type::String => {
            assign_str(dst, text);
            return true;
        }
        Type::Int => match text.parse::<i64>() {
            Ok(value) => Value::Int(value),
            Err(_) => return false,
        },
        Type::Float => match text.parse::<f64>() {
            Ok(value) => Value::Float(value),
            Err(_) => return false,
        },
        Type::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return false,
        },
        Type::Timestamp => match parse_timestamp(text) {
            Some(ms) => Value::Timestamp(ms),
            None => return false,
        },
        Type::Ip => match text.parse::<IpAddr>() {
            Ok(addr) => Value::Ip(Ip::from(addr)),
            Err(_) => return false,
        },
        Type::List | Type::Map => return false,
    };
    true
}

/// `name: "text" is not a ty`, the text quoted as JSON and cut to about 64
/// characters: the reason a conversion failed.
pub(crate) fn not_a(name: &str, text: &str, ty: Type) -> String {
    let mut shown = serde_json::to_string(text).unwrap_or_default();
    if shown.len() > 64 {
        let mut cut = 61;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str("...");
    }
    format!("{name}: {shown} is not a {ty}")
}

/// Parses a duration: a positive whole number followed by a unit, `ms`,
/// `s`, `m`, `h` or `d` (`10m`, `500ms`, `1h`); returns milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let bad = || format!("{text:?} is not a duration (try \"500ms\", \"30s\", \"10m\", \"1h\")");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let ms = number
        .checked_mul(scale)
        .filter(|ms| *ms <= i64::MAX as u64)
        .ok_or_else(bad)?;
    if ms == 0 {
        return Err(format!("the duration must be positive, not {text:?}"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms(" 2h "), Ok(7_200_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("ten minutes").is_err());
        assert!(parse_duration_ms("-1s").is_err());
        assert!(parse_duration_ms("99999999999999999d").is_err());
    }

    #[test]
    fn text_converts_by_type_and_reuses_buffers() {
        let mut value = Value::String(String::with_capacity(32));
        assert!(convert_text("abc", Type::String, &mut value));
        assert_eq!(value, Value::String("abc".into()));
        assert!(convert_text("-12", Type::Int, &mut value));
        assert_eq!(value, Value::Int(-12));
        assert!(!convert_text("12x", Type::Int, &mut value));
        assert!(convert_text("1.5", Type::Float, &mut value));
        assert!(convert_text("true", Type::Bool, &mut value));
        assert!(!convert_text("yes", Type::Bool, &mut value));
        assert!(convert_text("::1", Type::Ip, &mut value));
        assert!(convert_text(
            "1970-01-01T00:00:01Z",
            Type::Timestamp,
            &mut value
        ));
        assert_eq!(value, Value::Timestamp(1000));
        assert_eq!(
            not_a("status", "abc", Type::Int),
            "status: \"abc\" is not a int"
        );
    }
}
