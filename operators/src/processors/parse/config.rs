//! The `parse` options as a pipeline file gives them: [`ParseConfig`], the
//! format and the ordered schema table ([`FieldTypes`]).

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;

/// How the field's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseFormat {
    /// One JSON object.
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// A regular expression with named captures (`pattern`).
    Regex,
}

/// An ordered table of field name → type name (`{ status = "int" }`), kept
/// in the order the deserializer presents it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldTypes(pub Vec<(String, String)>);

impl serde::Serialize for FieldTypes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, ty) in &self.0 {
            map.serialize_entry(name, ty)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for FieldTypes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = FieldTypes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of field name = type name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldTypes, A::Error> {
                let mut fields: Vec<(String, String)> = Vec::new();
                while let Some((name, ty)) = map.next_entry::<String, String>()? {
                    if fields.iter().any(|(seen, _)| *seen == name) {
                        return Err(de::Error::custom(format!("field `{name}` given twice")));
                    }
                    fields.push((name, ty));
                }
                Ok(FieldTypes(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// The `parse` processor's options; see the module docs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    /// Upstream components (wired by the pipeline builder).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The string field to parse (`line`, `message`).
    pub field: String,
    /// `json`, `logfmt` or `regex`.
    pub format: ParseFormat,
    /// For `format = "regex"`: a regex with named captures, or `combined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Output fields and their types, in order: `{ ts = "timestamp" }`.
    pub schema: FieldTypes,
    /// Leave the parsed field out of the output (default: keep it).
    #[serde(default)]
    pub drop_source: bool,
}

pub(super) fn format_name(format: ParseFormat) -> &'static str {
    match format {
        ParseFormat::Json => "json",
        ParseFormat::Logfmt => "logfmt",
        ParseFormat::Regex => "regex",
    }
}
