//! The `file` source's options as a pipeline file gives them:
//! [`FileSourceConfig`], the line format and the ordered schema table
//! ([`FieldTypes`], shared with the other sources).

use serde::{Deserialize, Serialize};

pub use crate::row::FieldTypes;

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
