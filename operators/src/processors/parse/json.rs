//! The `json` format: reads one JSON object's members straight into the
//! targets' values, skipping members no target names.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::spec::Target;
use crate::row::convert::{convert_text, not_a};
use crate::row::{value_from_json, Type, Value};

/// Reads a JSON object's members into the targets' values.
pub(super) struct JsonObject<'a> {
    pub(super) targets: &'a [Target],
    pub(super) values: &'a mut [Value],
    pub(super) filled: &'a mut [bool],
    /// The first member that did not convert.
    pub(super) failure: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for JsonObject<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonObject<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(found) = map.next_key_seed(TargetKey(self.targets))? {
            let Some(index) = found else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let json: serde_json::Value = map.next_value()?;
            if self.failure.is_some() {
                continue;
            }
            let target = &self.targets[index];
            let value = &mut self.values[target.out];
            let converted = match &json {
                serde_json::Value::String(text) if !matches!(target.ty, Type::List | Type::Map) => {
                    if convert_text(text, target.ty, value) {
                        Ok(())
                    } else {
                        Err(not_a(&target.name, text, target.ty))
                    }
                }
                _ => value_from_json(&json, target.ty)
                    .map(|converted| *value = converted)
                    .map_err(|reason| format!("{}: {reason}", target.name)),
            };
            match converted {
                Ok(()) => self.filled[index] = true,
                Err(reason) => *self.failure = Some(reason),
            }
        }
        Ok(())
    }
}

/// A JSON member name, read as the index of the target of that name.
struct TargetKey<'a>(&'a [Target]);

impl<'de> DeserializeSeed<'de> for TargetKey<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for TargetKey<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|target| target.name == key))
    }
}
