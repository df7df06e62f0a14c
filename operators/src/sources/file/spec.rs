//! [`build`]: checks a [`FileSourceConfig`] into a [`FileSpec`] with the
//! output schema, and the schema of dead letters.

use std::path::PathBuf;

use super::config::{FileFormat, FileSourceConfig};
use crate::row::{OptionError, Schema, Type};

/// A checked [`FileSourceConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The file.
    pub path: PathBuf,
    /// How lines are read.
    pub format: FileFormat,
    /// The output fields, in order.
    pub fields: Vec<(String, Type)>,
    /// The index of the time field.
    pub time_index: Option<usize>,
    /// Watermark delay, in milliseconds.
    pub watermark_delay_ms: u64,
    /// Tail the file.
    pub follow: bool,
}

/// The schema of dead letters (output port 1): `line: string,
/// error: string, offset: int`.
pub fn dead_letter_schema() -> Schema {
    Schema::new([
        ("line", Type::String),
        ("error", Type::String),
        ("offset", Type::Int),
    ])
}

/// Checks `config`; returns the spec and the output schema (port 0).
pub fn build(config: &FileSourceConfig) -> Result<(FileSpec, Schema), OptionError> {
    if config.path.trim().is_empty() {
        return Err(OptionError::new("path", "must name a file"));
    }
    let fields: Vec<(String, Type)> = match config.format {
        FileFormat::Lines => {
            if let Some(schema) = &config.schema {
                let only_message =
                    schema.0.len() == 1 && schema.0[0].0 == "message" && schema.0[0].1 == "string";
                if !only_message {
                    return Err(OptionError::new(
                        "schema",
                        "a `lines` file has the single field `message: string`; \
                         leave `schema` out",
                    ));
                }
            }
            if config.time_field.is_some() {
                return Err(OptionError::new(
                    "time_field",
                    "a `lines` file has no timestamp field",
                ));
            }
            vec![("message".to_owned(), Type::String)]
        }
        FileFormat::Ndjson => {
            let Some(schema) = config.schema.as_ref().filter(|schema| !schema.0.is_empty()) else {
                return Err(OptionError::new(
                    "schema",
                    "an ndjson file needs a schema such as \
                     { timestamp = \"timestamp\", msg = \"string\" }",
                ));
            };
            schema
                .typed()
                .map_err(|message| OptionError::new("schema", message))?
        }
    };
    let schema = Schema::new(fields.iter().map(|(name, ty)| (name.clone(), *ty)));
    let time_index = match &config.time_field {
        None => None,
        Some(name) => {
            let (index, ty) = schema
                .lookup(name)
                .map_err(|message| OptionError::new("time_field", message))?;
            if ty != Type::Timestamp {
                return Err(OptionError::new(
                    "time_field",
                    format!("field `{name}` is a {ty}, not a timestamp"),
                ));
            }
            Some(index)
        }
    };
    let watermark_delay_ms = match &config.watermark_delay {
        None => 0,
        Some(text) => crate::duration::parse_ms(text)
            .map_err(|message| OptionError::new("watermark_delay", message))?,
    };
    let spec = FileSpec {
        path: PathBuf::from(&config.path),
        format: config.format,
        fields,
        time_index,
        watermark_delay_ms,
        follow: config.follow,
    };
    Ok((spec, schema))
}
