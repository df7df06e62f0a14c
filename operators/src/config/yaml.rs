//! YAML pipeline files: the same document as TOML, written in YAML.
//!
//! The YAML text is parsed with `saphyr`, which keeps each node's position,
//! and turned into the spanned tree toml's own parser makes
//! ([`DeTable`]), with every span pointing into the YAML text. From there
//! the file is read exactly as a TOML file is, so both formats give the same
//! components, the same checks and errors at the right YAML line and
//! column.
//!
//! YAML's extras with no TOML equivalent are refused with an error at the
//! node: `null` values (leave the key out instead), aliases, tags, non-string
//! keys, and more than one document in a file.

use std::borrow::Cow;
use std::ops::Range;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};

/// Parses `source` as YAML into the tree the TOML reader takes. Numbers
/// are kept as text in `numbers` (toml's tree borrows them).
pub(crate) fn parse<'t>(
    source: &Source<'_>,
    numbers: &'t mut Vec<String>,
) -> Result<Spanned<DeTable<'t>>, ConfigError> {
    // saphyr counts positions in characters; spans here are bytes.
    let bytes_of: Vec<usize> = source
        .text
        .char_indices()
        .map(|(byte, _)| byte)
        .chain(std::iter::once(source.text.len()))
        .collect();
    let byte = |chars: usize| bytes_of[chars.min(bytes_of.len() - 1)];
    let documents = MarkedYaml::load_from_str(source.text).map_err(|error| {
        let at = byte(error.marker().index());
        ConfigError::at(
            ConfigErrorKind::Syntax,
            source,
            at..at,
            None,
            format!("invalid YAML: {}", error.info()),
        )
    })?;
    for document in &documents {
        collect_numbers(document, numbers);
    }
    let numbers: &'t Vec<String> = numbers;
    let converter = Converter {
        source,
        byte: &byte,
        numbers,
        next_number: std::cell::Cell::new(0),
    };
    match documents.as_slice() {
        [] => Ok(Spanned::new(0..0, DeTable::new())),
        [document] => {
            let span = converter.span(document);
            match converter.value(document)? {
                DeValue::Table(table) => Ok(Spanned::new(span, table)),
                _ => Err(converter.error(span, "the document must be a mapping of sections")),
            }
        }
        [_, second, ..] => Err(converter.error(
            converter.span(second),
            "a pipeline file holds one YAML document",
        )),
    }
}

/// The TOML text of every number in `node`, in the order [`Converter`]
/// meets them.
fn collect_numbers(node: &MarkedYaml<'_>, numbers: &mut Vec<String>) {
    match &node.data {
        YamlData::Value(Scalar::Integer(value)) => numbers.push(value.to_string()),
        YamlData::Value(Scalar::FloatingPoint(value)) => {
            let value = value.into_inner();
            numbers.push(if value.is_nan() {
                "nan".to_owned()
            } else if value.is_infinite() {
                if value > 0.0 { "inf" } else { "-inf" }.to_owned()
            } else {
                format!("{value:?}")
            });
        }
        YamlData::Sequence(items) => items.iter().for_each(|item| collect_numbers(item, numbers)),
        YamlData::Mapping(entries) => entries
            .iter()
            .for_each(|(_, value)| collect_numbers(value, numbers)),
        _ => {}
    }
}

struct Converter<'a, 'b, 't> {
    source: &'a Source<'b>,
    byte: &'a dyn Fn(usize) -> usize,
    numbers: &'t [String],
    next_number: std::cell::Cell<usize>,
}

impl<'t> Converter<'_, '_, 't> {
    fn number(&self) -> DeValue<'t> {
        let index = self.next_number.get();
        self.next_number.set(index + 1);
        let text = self.numbers[index].as_str();
        match DeValue::parse(text) {
            Ok(value) => value.into_inner(),
            Err(_) => DeValue::String(Cow::Borrowed(text)),
        }
    }

    fn span(&self, node: &MarkedYaml<'_>) -> Range<usize> {
        let start = (self.byte)(node.span.start.index());
        let end = (self.byte)(node.span.end.index()).max(start);
        start..end
    }

    fn error(&self, span: Range<usize>, message: &str) -> ConfigError {
        ConfigError::at(
            ConfigErrorKind::Syntax,
            self.source,
            span,
            None,
            message.to_owned(),
        )
    }

    fn value(&self, node: &MarkedYaml<'_>) -> Result<DeValue<'t>, ConfigError> {
        let span = self.span(node);
        Ok(match &node.data {
            YamlData::Value(scalar) => match scalar {
                Scalar::Null => {
                    return Err(self.error(
                        span,
                        "null values are not allowed here: leave the key out instead",
                    ))
                }
                Scalar::Boolean(value) => DeValue::Boolean(*value),
                Scalar::Integer(_) | Scalar::FloatingPoint(_) => self.number(),
                Scalar::String(text) => DeValue::String(Cow::Owned(text.to_string())),
            },
            YamlData::Representation(text, _, _) => DeValue::String(Cow::Owned(text.to_string())),
            YamlData::Sequence(items) => {
                let mut array = DeArray::new();
                for item in items {
                    array.push(Spanned::new(self.span(item), self.value(item)?));
                }
                DeValue::Array(array)
            }
            YamlData::Mapping(entries) => {
                let mut table = DeTable::new();
                for (key, value) in entries {
                    let key_span = self.span(key);
                    let name = match &key.data {
                        YamlData::Value(Scalar::String(text)) => text.to_string(),
                        YamlData::Representation(text, _, _) => text.to_string(),
                        _ => return Err(self.error(key_span, "a key must be a string")),
                    };
                    let value = Spanned::new(self.span(value), self.value(value)?);
                    if table
                        .insert(
                            Spanned::new(key_span.clone(), Cow::Owned(name.clone())),
                            value,
                        )
                        .is_some()
                    {
                        return Err(self.error(key_span, &format!("duplicate key `{name}`")));
                    }
                }
                DeValue::Table(table)
            }
            YamlData::Tagged(..) => return Err(self.error(span, "YAML tags are not supported")),
            YamlData::Alias(_) => return Err(self.error(span, "YAML aliases are not supported")),
            YamlData::BadValue => return Err(self.error(span, "invalid YAML value")),
        })
    }
}
