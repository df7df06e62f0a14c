//! The `parse` options as a pipeline file gives them: [`ParseConfig`], the
//! format and the ordered schema table ([`FieldTypes`]).

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

pub use crate::row::FieldTypes;

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
