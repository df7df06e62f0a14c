//! [`build`]: checks an `enrich` configuration against the input schema,
//! loads the table and returns the shared [`EnrichSpec`] with the output
//! schema.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::config::{ColumnConfig, EnrichConfig, MatchKind, TableFormat, TypedColumn};
use super::load::{load_csv, load_json};
use super::table::{Index, Table};
use crate::row::{OptionError, Schema, Type};

/// A checked `enrich` configuration with its loaded table (see [`build`]);
/// clones share the table.
#[derive(Debug, Clone)]
pub struct EnrichSpec {
    pub(super) field: usize,
    pub(super) table: Arc<Table>,
    pub(super) input_width: usize,
    /// Output index of each added column.
    pub(super) outs: Vec<usize>,
    pub(super) output_width: usize,
}

impl EnrichSpec {
    /// Rows in the loaded table.
    pub fn table_rows(&self) -> usize {
        self.table.rows.len()
    }
}

/// The type of each configured column.
fn column_types(config: &EnrichConfig) -> Result<Vec<(String, Type)>, OptionError> {
    config
        .columns
        .iter()
        .map(|column| match column {
            ColumnConfig::Name(name) => Ok((name.clone(), Type::String)),
            ColumnConfig::Typed(TypedColumn { name, ty }) => {
                Type::parse(ty).map(|ty| (name.clone(), ty)).ok_or_else(|| {
                    OptionError::new(
                        "columns",
                        format!(
                            "`{name}`: unknown type `{ty}`, expected one of bool, int, float, \
                             string, timestamp, ip, list, map"
                        ),
                    )
                })
            }
        })
        .collect()
}

/// Checks `config` against the `input` schema and loads the table; returns
/// the spec and the output schema.
pub fn build(config: &EnrichConfig, input: &Schema) -> Result<(EnrichSpec, Schema), OptionError> {
    let (field, key_ty) = input
        .lookup(&config.field)
        .map_err(|message| OptionError::new("field", message))?;
    match (config.match_kind, key_ty) {
        (MatchKind::Cidr, Type::Ip) => {}
        (MatchKind::Cidr, other) => {
            return Err(OptionError::new(
                "match",
                format!(
                    "match = \"cidr\" needs an ip field; `{}` is a {other}",
                    config.field
                ),
            ))
        }
        (MatchKind::Exact, Type::Float | Type::List | Type::Map) => {
            return Err(OptionError::new(
                "field",
                format!(
                    "`{}` is a {key_ty}, which cannot be a join key",
                    config.field
                ),
            ))
        }
        (MatchKind::Exact, _) => {}
    }
    let format = match config.format {
        Some(format) => format,
        None => match config.table.extension().and_then(|ext| ext.to_str()) {
            Some("csv") => TableFormat::Csv,
            Some("json" | "ndjson" | "jsonl") => TableFormat::Json,
            _ => {
                return Err(OptionError::new(
                    "format",
                    format!(
                        "cannot tell the format of {} from its extension; set format = \
                         \"csv\" or \"json\"",
                        config.table.display()
                    ),
                ))
            }
        },
    };
    let mut columns = column_types(config)?;
    if format == TableFormat::Csv {
        if let Some((name, ty)) = columns
            .iter()
            .find(|(_, ty)| matches!(ty, Type::List | Type::Map))
        {
            return Err(OptionError::new(
                "columns",
                format!("`{name}`: a {ty} column needs a JSON table"),
            ));
        }
    }
    let index = match (config.match_kind, key_ty) {
        (MatchKind::Cidr, _) => Index::Cidr(Vec::new()),
        (_, Type::String) => Index::Str(FxHashMap::default()),
        (_, Type::Int | Type::Timestamp) => Index::Int(FxHashMap::default()),
        (_, Type::Bool) => Index::Bool([None; 2]),
        _ => Index::Ip(FxHashMap::default()),
    };
    let (index, rows) = match format {
        TableFormat::Csv => load_csv(config, &mut columns, key_ty, index)?,
        TableFormat::Json => load_json(config, &mut columns, key_ty, index)?,
    };

    let prefix = config.prefix.as_deref().unwrap_or("");
    let mut output = input.clone();
    let mut outs = Vec::with_capacity(columns.len());
    for (name, ty) in &columns {
        let named = format!("{prefix}{name}");
        if output.index(&named).is_some() {
            let why = if input.index(&named).is_some() {
                "is a field of the input"
            } else {
                "is added twice"
            };
            return Err(OptionError::new(
                "columns",
                format!("`{named}` {why}; set `prefix` or pick other columns"),
            ));
        }
        outs.push(output.set(&named, *ty));
    }
    let spec = EnrichSpec {
        field,
        table: Arc::new(Table { index, rows }),
        input_width: input.len(),
        outs,
        output_width: output.len(),
    };
    Ok((spec, output))
}
