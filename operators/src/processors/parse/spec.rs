//! [`build`]: checks a `parse` configuration against the input schema and
//! compiles it into a [`ParseSpec`] (the method, the target of each schema
//! field, the fields copied through), with the output and dead-letter
//! schemas.

use regex::Regex;

use super::access_log::{COMBINED_FALLBACK_PATTERN, COMBINED_PATTERN};
use super::config::{format_name, ParseConfig, ParseFormat};
#[cfg(doc)]
use super::Parse;
use crate::row::{OptionError, Schema, Type};

/// How a [`Parse`] reads the text.
#[derive(Debug, Clone)]
pub(super) enum Method {
    Json,
    Logfmt,
    /// The compiled patterns, tried in order (one, or two for the
    /// `combined` preset); cheap to clone: shared.
    Regex(Vec<Regex>),
}

/// One schema field: where its value goes and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) name: String,
    pub(super) ty: Type,
    /// Index in the output row.
    pub(super) out: usize,
    /// Its capture group index in each pattern (`regex` only); `None`
    /// where that pattern lacks it (the value is then null).
    pub(super) groups: Vec<Option<usize>>,
}

/// A checked `parse` configuration (see [`build`]).
#[derive(Debug, Clone)]
pub struct ParseSpec {
    /// The parsed field's index in the input, and its name.
    pub(super) source: usize,
    pub(super) source_name: String,
    pub(super) method: Method,
    pub(super) targets: Vec<Target>,
    /// (input index, output index) of the input fields copied through.
    pub(super) copies: Vec<(usize, usize)>,
    pub(super) output_width: usize,
    /// Where `error` goes in a dead letter; the row is that wide or wider.
    pub(super) error_index: usize,
    pub(super) dead_width: usize,
}

/// The schema of dead letters from a `parse` over `input`: the input fields
/// plus `error: string` (an input field called `error` is replaced).
pub fn dead_letter_schema(input: &Schema) -> Schema {
    let mut schema = input.clone();
    schema.set("error", Type::String);
    schema
}

/// Checks `config` against the `input` schema; returns the spec and the
/// output schema.
pub fn build(config: &ParseConfig, input: &Schema) -> Result<(ParseSpec, Schema), OptionError> {
    let (source, source_ty) = input
        .lookup(&config.field)
        .map_err(|message| OptionError::new("field", message))?;
    if source_ty != Type::String {
        return Err(OptionError::new(
            "field",
            format!(
                "`{}` is a {source_ty}; parse reads a string field",
                config.field
            ),
        ));
    }
    if config.schema.0.is_empty() {
        return Err(OptionError::new(
            "schema",
            "name at least one output field, e.g. { status = \"int\" }",
        ));
    }
    let method = match (config.format, &config.pattern) {
        (ParseFormat::Regex, None) => {
            return Err(OptionError::new(
                "pattern",
                "format = \"regex\" needs a pattern with named captures, or \"combined\"",
            ))
        }
        (ParseFormat::Regex, Some(pattern)) => {
            let texts = if pattern == "combined" {
                vec![COMBINED_PATTERN, COMBINED_FALLBACK_PATTERN]
            } else {
                vec![pattern.as_str()]
            };
            let regexes = texts
                .into_iter()
                .map(Regex::new)
                .collect::<Result<Vec<Regex>, regex::Error>>()
                .map_err(|error| {
                    OptionError::new("pattern", format!("not a valid regex: {error}"))
                })?;
            Method::Regex(regexes)
        }
        (format, Some(_)) => {
            return Err(OptionError::new(
                "pattern",
                format!(
                    "a pattern is only read with format = \"regex\", not {:?}",
                    format_name(format)
                ),
            ))
        }
        (ParseFormat::Json, None) => Method::Json,
        (ParseFormat::Logfmt, None) => Method::Logfmt,
    };

    let mut parsed = Vec::with_capacity(config.schema.0.len());
    for (name, ty_name) in &config.schema.0 {
        if name.is_empty() {
            return Err(OptionError::new("schema", "a field name is empty"));
        }
        let ty = Type::parse(ty_name).ok_or_else(|| {
            OptionError::new(
                "schema",
                format!(
                    "`{name}`: unknown type `{ty_name}`, expected one of bool, int, float, \
                     string, timestamp, ip, list, map"
                ),
            )
        })?;
        if matches!(ty, Type::List | Type::Map) && config.format != ParseFormat::Json {
            return Err(OptionError::new(
                "schema",
                format!("`{name}`: a {ty} is only read with format = \"json\""),
            ));
        }
        let groups: Vec<Option<usize>> = match &method {
            Method::Regex(regexes) => regexes
                .iter()
                .map(|regex| {
                    regex
                        .capture_names()
                        .position(|capture| capture == Some(name.as_str()))
                })
                .collect(),
            _ => Vec::new(),
        };
        if let Method::Regex(regexes) = &method {
            if groups.iter().all(Option::is_none) {
                let captures: Vec<String> = regexes[0]
                    .capture_names()
                    .flatten()
                    .map(|capture| format!("`{capture}`"))
                    .collect();
                let captures = if captures.is_empty() {
                    "none".to_owned()
                } else {
                    captures.join(", ")
                };
                return Err(OptionError::new(
                    "schema",
                    format!(
                        "`{name}` is not a named capture of the pattern; its captures: {captures}"
                    ),
                ));
            }
        }
        parsed.push((name.clone(), ty, groups));
    }

    let defines_source = parsed.iter().any(|(name, _, _)| *name == config.field);
    let drop = config.drop_source && !defines_source;
    let mut output = Schema::new(
        input
            .fields()
            .iter()
            .enumerate()
            .filter(|(index, _)| !(drop && *index == source))
            .map(|(_, field)| (field.name.clone(), field.ty)),
    );
    let targets: Vec<Target> = parsed
        .into_iter()
        .map(|(name, ty, groups)| Target {
            out: output.set(&name, ty),
            name,
            ty,
            groups,
        })
        .collect();
    let copies = input
        .fields()
        .iter()
        .enumerate()
        .filter(|(index, _)| !(drop && *index == source))
        .filter(|(_, field)| !targets.iter().any(|target| target.name == field.name))
        .map(|(index, field)| (index, output.index(&field.name).expect("kept field")))
        .collect();
    let dead = dead_letter_schema(input);
    let spec = ParseSpec {
        source,
        source_name: config.field.clone(),
        method,
        targets,
        copies,
        output_width: output.len(),
        error_index: dead.index("error").expect("dead letters have `error`"),
        dead_width: dead.len(),
    };
    Ok((spec, output))
}
