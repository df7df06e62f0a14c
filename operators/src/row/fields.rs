//! [`FieldTypes`]: the ordered `{ name = "type" }` table a pipeline file
//! declares a schema with (the `file` and `kafka` sources, `parse`).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Type;

/// Field names and type names in the order written: deserializes from a
/// map (TOML table, JSON object), keeping the map's order (toml's
/// `preserve_order` feature, which this crate enables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldTypes(pub Vec<(String, String)>);

impl FieldTypes {
    /// The fields with their types, in order; an unknown type name is an
    /// error naming the field.
    pub fn typed(&self) -> Result<Vec<(String, Type)>, String> {
        let mut fields: Vec<(String, Type)> = Vec::with_capacity(self.0.len());
        for (name, type_name) in &self.0 {
            let ty = Type::parse(type_name).ok_or_else(|| {
                format!(
                    "field `{name}`: unknown type `{type_name}`; types are bool, int, \
                     float, string, timestamp, ip, list, map"
                )
            })?;
            if fields.iter().any(|(seen, _)| seen == name) {
                return Err(format!("field `{name}` is given twice"));
            }
            fields.push((name.clone(), ty));
        }
        Ok(fields)
    }
}

impl Serialize for FieldTypes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, ty)| (name, ty)))
    }
}

impl<'de> Deserialize<'de> for FieldTypes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = FieldTypes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of field names to type names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldTypes, A::Error> {
                let mut fields: Vec<(String, String)> = Vec::new();
                while let Some((name, ty)) = map.next_entry::<String, String>()? {
                    if fields.iter().any(|(seen, _)| *seen == name) {
                        return Err(serde::de::Error::custom(format!(
                            "field `{name}` is given twice"
                        )));
                    }
                    fields.push((name, ty));
                }
                Ok(FieldTypes(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}
