//! The `enrich` options as a pipeline file gives them: [`EnrichConfig`],
//! the table's format, the match kind and the columns to add.

use std::path::PathBuf;

/// The table file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects, or NDJSON.
    Json,
}

/// How the input field is matched against the table's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// Equal values.
    #[default]
    Exact,
    /// The longest network (CIDR range) containing the address.
    Cidr,
}

/// A table column to add: its name (a string column) or name and type.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ColumnConfig {
    /// A string column.
    Name(String),
    /// A column of the given type.
    Typed(TypedColumn),
}

/// A typed table column: `{ name = "asn", type = "int" }`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypedColumn {
    /// The column's name in the table.
    pub name: String,
    /// Its type name (`int`, `ip`, ...).
    #[serde(rename = "type")]
    pub ty: String,
}

impl ColumnConfig {
    /// The column's name in the table.
    pub fn name(&self) -> &str {
        match self {
            ColumnConfig::Name(name) => name,
            ColumnConfig::Typed(column) => &column.name,
        }
    }
}

/// The `enrich` processor's options; see the module docs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Upstream components (wired by the pipeline builder).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The input field joined on.
    pub field: String,
    /// The table file.
    pub table: PathBuf,
    /// `csv` or `json`; default from the file's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TableFormat>,
    /// The table's key column.
    pub key: String,
    /// `exact` (default) or `cidr`.
    #[serde(default, rename = "match")]
    pub match_kind: MatchKind,
    /// Columns to add; default every column but the key, as strings.
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// Prefix of the added fields' names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}
