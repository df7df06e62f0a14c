//! The `file` source's options as a pipeline file gives them:
//! [`FileSourceConfig`], the line format and the ordered schema table
//! ([`FieldTypes`]).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How the file's lines are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One JSON object per line.
    #[default]
    Ndjson,
    /// Each line is the field `message: string`.
    Lines,
}

/// Field names and type names in the order written: deserializes from a
/// map (TOML table, JSON object), keeping the map's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldTypes(pub Vec<(String, String)>);

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

/// Configuration of the `file` source; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file to read.
    pub path: String,
    /// `"ndjson"` (default) or `"lines"`.
    #[serde(default)]
    pub format: FileFormat,
    /// Field name → type name, in output order (`ndjson`: required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<FieldTypes>,
    /// A `timestamp` field whose values drive watermarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// How far the watermark trails the largest time seen (default `"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_delay: Option<String>,
    /// Tail the file as it grows instead of ending at its end.
    #[serde(default)]
    pub follow: bool,
}
