//! Turning one line into a row or a dead letter: the [`Decoder`] and the
//! JSON object reader that fills a row by field name.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::config::FileFormat;
use super::FileItem;
#[cfg(doc)]
use super::FileSource;
use crate::row::{value_from_json, Row, Type, Value};

/// Turns lines into rows: everything [`FileSource::read`] changes besides
/// the buffer, so both can be borrowed at once.
#[derive(Debug)]
pub(super) struct Decoder {
    pub(super) format: FileFormat,
    pub(super) fields: Vec<(String, Type)>,
    pub(super) time_index: Option<usize>,
    pub(super) row: Row,
    pub(super) dead: Row,
    pub(super) max_ts: Option<i64>,
    pub(super) dead_letters: u64,
}

impl Decoder {
    /// Decodes `line` (without its line break) that starts at `offset`.
    pub(super) fn line(&mut self, line: &[u8], offset: u64, emit: &mut impl FnMut(FileItem<'_>)) {
        let mut line = line.strip_suffix(b"\r").unwrap_or(line);
        if offset == 0 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        let result = match self.format {
            FileFormat::Lines => match std::str::from_utf8(line) {
                Ok(text) => {
                    set_str(&mut self.row.values[0], text);
                    Ok(())
                }
                Err(_) => Err("not valid UTF-8".to_owned()),
            },
            FileFormat::Ndjson => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return;
                }
                self.json(line)
            }
        };
        match result {
            Ok(()) => {
                if let Some(Value::Timestamp(ts)) = self.time_index.map(|i| &self.row.values[i]) {
                    self.max_ts = Some(self.max_ts.map_or(*ts, |max| max.max(*ts)));
                }
                emit(FileItem::Row(&self.row));
            }
            Err(error) => {
                self.dead_letters += 1;
                let text = String::from_utf8_lossy(line);
                set_str(&mut self.dead.values[0], &text);
                set_str(&mut self.dead.values[1], &error);
                self.dead.values[2] = Value::Int(i64::try_from(offset).unwrap_or(i64::MAX));
                emit(FileItem::DeadLetter(&self.dead));
            }
        }
    }

    /// Fills the row from a JSON object line.
    fn json(&mut self, line: &[u8]) -> Result<(), String> {
        self.row.values.fill(Value::Null);
        let mut mismatch = None;
        let mut deserializer = serde_json::Deserializer::from_slice(line);
        let seed = RowSeed {
            fields: &self.fields,
            values: &mut self.row.values,
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

fn set_str(value: &mut Value, text: &str) {
    match value {
        Value::String(target) => {
            target.clear();
            target.push_str(text);
        }
        other => *other = Value::String(text.to_owned()),
    }
}
