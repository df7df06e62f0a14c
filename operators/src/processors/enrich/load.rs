//! Reading the table file (CSV, or a JSON array / NDJSON) into the index
//! and rows, with errors that name the file and the line or element.

use std::fmt::Write as _;
use std::path::Path;

use rustc_hash::FxHashMap;

use super::cidr::parse_cidr;
use super::config::{EnrichConfig, MatchKind};
use super::table::Index;
use crate::row::convert::{convert_text, not_a};
use crate::row::{value_from_json, OptionError, Type, Value};

/// Where a row of the table came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// A line number (NDJSON).
    Line(u64),
    /// An element of a JSON array.
    Element(usize),
    /// A byte offset into the CSV text: its line is counted only for an
    /// error (the `csv` crate's own line numbers skip blank lines).
    Byte(u64),
}

/// The line of the record starting at byte `offset` in `text` (the `csv`
/// crate's offset is before the blank lines it skipped).
fn line_at(text: &str, offset: u64) -> usize {
    let mut offset = (offset as usize).min(text.len());
    while matches!(text.as_bytes().get(offset), Some(b'\r' | b'\n')) {
        offset += 1;
    }
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Builds the index and rows while reading the table.
struct Loader<'a> {
    path: &'a Path,
    /// The CSV text, for [`Place::Byte`].
    text: &'a str,
    match_kind: MatchKind,
    key_ty: Type,
    columns: &'a [(String, Type)],
    index: Index,
    rows: Vec<Vec<Value>>,
    /// Where each row came from, for duplicate errors.
    places: Vec<Place>,
}

impl Loader<'_> {
    fn place(&self, place: Place) -> String {
        match place {
            Place::Line(line) => line.to_string(),
            Place::Element(element) => format!("element {element}"),
            Place::Byte(offset) => line_at(self.text, offset).to_string(),
        }
    }

    fn error(&self, place: &Place, message: impl std::fmt::Display) -> OptionError {
        OptionError::new(
            "table",
            format!("{}:{}: {message}", self.path.display(), self.place(*place)),
        )
    }

    /// Adds a row with key text `key` (already a value for JSON non-strings).
    fn add(
        &mut self,
        place: Place,
        key: KeyText<'_>,
        values: Vec<Value>,
    ) -> Result<(), OptionError> {
        let row = u32::try_from(self.rows.len())
            .map_err(|_| self.error(&place, "the table has too many rows"))?;
        let previous = match self.match_kind {
            MatchKind::Cidr => {
                let KeyText::Text(text) = key else {
                    return Err(self.error(&place, "the key is not a network in text form"));
                };
                let (network, length) =
                    parse_cidr(text).map_err(|message| self.error(&place, message))?;
                let Index::Cidr(lengths) = &mut self.index else {
                    unreachable!("cidr tables have a cidr index")
                };
                let at = match lengths.iter().position(|(l, _)| *l <= length) {
                    Some(at) if lengths[at].0 == length => at,
                    Some(at) => {
                        lengths.insert(at, (length, FxHashMap::default()));
                        at
                    }
                    None => {
                        lengths.push((length, FxHashMap::default()));
                        lengths.len() - 1
                    }
                };
                lengths[at].1.insert(network, row)
            }
            MatchKind::Exact => {
                let mut value = Value::Null;
                let converted = match key {
                    KeyText::Text(text) => convert_text(text, self.key_ty, &mut value)
                        .then_some(())
                        .ok_or_else(|| not_a("key", text, self.key_ty)),
                    KeyText::Json(json) => value_from_json(json, self.key_ty)
                        .map(|converted| value = converted)
                        .map_err(|reason| format!("key: {reason}")),
                };
                converted.map_err(|message| self.error(&place, message))?;
                if value == Value::Null {
                    return Err(self.error(&place, "the key is null"));
                }
                match (&mut self.index, value) {
                    (Index::Str(map), Value::String(text)) => map.insert(text.into(), row),
                    (Index::Int(map), Value::Int(value) | Value::Timestamp(value)) => {
                        map.insert(value, row)
                    }
                    (Index::Bool(rows), Value::Bool(value)) => {
                        rows[usize::from(value)].replace(row)
                    }
                    (Index::Ip(map), Value::Ip(ip)) => map.insert(ip.0, row),
                    _ => unreachable!("keys convert to the index's type"),
                }
            }
        };
        if let Some(previous) = previous {
            let first = self.place(self.places[previous as usize]);
            return Err(self.error(&place, format!("key given twice (first at {first})")));
        }
        self.places.push(place);
        self.rows.push(values);
        Ok(())
    }
}

/// A key as read from the table.
enum KeyText<'a> {
    Text(&'a str),
    Json(&'a serde_json::Value),
}

fn table_error(path: &Path, message: impl std::fmt::Display) -> OptionError {
    OptionError::new("table", format!("{}: {message}", path.display()))
}

/// `columns`' missing-column error.
fn no_column(path: &Path, option: &str, name: &str, have: &[String]) -> OptionError {
    let mut listed = String::new();
    for (index, column) in have.iter().enumerate() {
        let _ = write!(listed, "{}`{column}`", if index > 0 { ", " } else { "" });
    }
    OptionError::new(
        option,
        format!(
            "{} has no column `{name}`; its columns: {listed}",
            path.display()
        ),
    )
}

pub(super) fn load_csv(
    config: &EnrichConfig,
    columns: &mut Vec<(String, Type)>,
    key_ty: Type,
    index: Index,
) -> Result<(Index, Vec<Vec<Value>>), OptionError> {
    let path = config.table.as_path();
    let text = std::fs::read_to_string(path).map_err(|error| table_error(path, error))?;
    let csv_error = |error: csv::Error| {
        let line = error.position().map_or(String::new(), |at| {
            format!(":{}", line_at(&text, at.byte()))
        });
        let message = match error.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("a row of {len} fields where the header has {expected_len}"),
            _ => error.to_string(),
        };
        OptionError::new("table", format!("{}{line}: {message}", path.display()))
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(str::to_owned)
        .collect();
    let key = headers
        .iter()
        .position(|name| *name == config.key)
        .ok_or_else(|| no_column(path, "key", &config.key, &headers))?;
    if columns.is_empty() {
        *columns = headers
            .iter()
            .filter(|name| **name != config.key)
            .map(|name| (name.clone(), Type::String))
            .collect();
    }
    let positions = columns
        .iter()
        .map(|(name, _)| {
            headers
                .iter()
                .position(|header| header == name)
                .ok_or_else(|| no_column(path, "columns", name, &headers))
        })
        .collect::<Result<Vec<usize>, OptionError>>()?;
    let mut loader = Loader {
        path,
        text: &text,
        match_kind: config.match_kind,
        key_ty,
        columns,
        index,
        rows: Vec::new(),
        places: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => return Err(csv_error(error)),
        }
        let place = Place::Byte(record.position().map_or(0, |position| position.byte()));
        let mut values = Vec::with_capacity(positions.len());
        for (&at, (name, ty)) in positions.iter().zip(loader.columns) {
            let text = &record[at];
            let mut value = Value::Null;
            if !text.is_empty() && !convert_text(text, *ty, &mut value) {
                return Err(loader.error(&place, not_a(name, text, *ty)));
            }
            values.push(value);
        }
        let key = &record[key];
        if key.is_empty() {
            return Err(loader.error(&place, "the key is empty"));
        }
        loader.add(place, KeyText::Text(key), values)?;
    }
    Ok((loader.index, loader.rows))
}

pub(super) fn load_json(
    config: &EnrichConfig,
    columns: &mut Vec<(String, Type)>,
    key_ty: Type,
    index: Index,
) -> Result<(Index, Vec<Vec<Value>>), OptionError> {
    use serde_json::{Map, Value as Json};
    let path = config.table.as_path();
    let text = std::fs::read_to_string(path).map_err(|error| table_error(path, error))?;
    let objects: Vec<(Place, Map<String, Json>)> = if text.trim_start().starts_with('[') {
        let objects: Vec<Map<String, Json>> = serde_json::from_str(&text)
            .map_err(|error| table_error(path, format!("not an array of objects: {error}")))?;
        objects
            .into_iter()
            .enumerate()
            .map(|(element, object)| (Place::Element(element), object))
            .collect()
    } else {
        let mut objects = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let number = number as u64 + 1;
            let object: Map<String, Json> = serde_json::from_str(line).map_err(|error| {
                OptionError::new(
                    "table",
                    format!("{}:{number}: not a JSON object: {error}", path.display()),
                )
            })?;
            objects.push((Place::Line(number), object));
        }
        objects
    };
    if columns.is_empty() {
        let mut names: Vec<String> = Vec::new();
        for (_, object) in &objects {
            for name in object.keys() {
                if *name != config.key && !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names.sort_unstable();
        *columns = names.into_iter().map(|name| (name, Type::String)).collect();
    }
    let mut loader = Loader {
        path,
        text: "",
        match_kind: config.match_kind,
        key_ty,
        columns,
        index,
        rows: Vec::new(),
        places: Vec::new(),
    };
    for (place, object) in &objects {
        let mut values = Vec::with_capacity(loader.columns.len());
        for (name, ty) in loader.columns {
            let json = object.get(name).unwrap_or(&Json::Null);
            let value = match json {
                Json::String(text) if !matches!(ty, Type::List | Type::Map) => {
                    let mut value = Value::Null;
                    if !convert_text(text, *ty, &mut value) {
                        return Err(loader.error(place, not_a(name, text, *ty)));
                    }
                    value
                }
                _ => value_from_json(json, *ty)
                    .map_err(|reason| loader.error(place, format!("{name}: {reason}")))?,
            };
            values.push(value);
        }
        let key = match object.get(&config.key) {
            None | Some(Json::Null) => {
                return Err(loader.error(place, format!("no key `{}`", config.key)))
            }
            Some(Json::String(text)) => KeyText::Text(text),
            Some(json) => KeyText::Json(json),
        };
        loader.add(*place, key, values)?;
    }
    Ok((loader.index, loader.rows))
}
