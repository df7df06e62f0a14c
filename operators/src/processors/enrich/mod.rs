//! The `enrich` processor: adds columns from a lookup table to each record,
//! joined on one field.
//!
//! ```toml
//! [processors.geo]
//! type = "enrich"
//! inputs = ["access"]
//! field = "client_ip"            # the join key in the input
//! table = "data/networks.csv"    # CSV, or JSON / NDJSON
//! format = "csv"                 # default: from the extension
//! key = "network"                # the table's key column
//! match = "cidr"                 # "exact" (default) or "cidr"
//! columns = ["country", { name = "asn", type = "int" }]
//! prefix = "geo_"                # output names: geo_country, geo_asn
//! ```
//!
//! # The table
//! Loaded once, when the pipeline is built, and shared read-only by every
//! shard; a problem in it is a build error naming the file and the line
//! (`networks.csv:7: ...`) or, for a JSON array, the element.
//! - `csv`: a header row names the columns; every row has as many fields.
//!   An empty cell is null.
//! - `json`: a JSON array of objects, or NDJSON (one object per line; blank
//!   lines skipped); members are the columns, a missing member is null.
//!
//! `format` defaults from the extension: `.csv` is CSV; `.json`, `.ndjson`
//! and `.jsonl` are JSON. In a pipeline file, a relative `table` path is
//! resolved against the file's directory ([`crate::config::load_all`]);
//! given to [`build`] directly, it is opened relative to the working
//! directory.
//!
//! `columns` lists the table columns to add, as a name (a `string`
//! column) or `{ name, type }`; left out, every column but the key is added
//! as a string (CSV header order; JSON in member-name order). Values convert
//! from text as `parse` converts them (`list` and `map` columns need JSON).
//!
//! # Matching
//! - `exact`: the table's key converts to the input field's type (`string`,
//!   `int`, `timestamp`, `bool` or `ip`) and a record matches the row with
//!   an equal key. Two rows with one key are an error.
//! - `cidr`: the input field is an `ip`; the key column holds networks
//!   (`10.0.0.0/8`, `2001:db8::/32`, or a bare address for a single host) and
//!   a record matches the most specific network containing its address
//!   (longest prefix). IPv4 and IPv6 networks share one table: IPv4 is
//!   IPv4-mapped, so `::/0` matches IPv4 addresses too. A network with host
//!   bits set (`10.0.0.1/8`) or given twice is an error. The lookup probes
//!   one hash map per prefix length present in the table, longest first.
//!
//! # Output
//! The input schema plus one field per column, named `prefix + column`, in
//! `columns` order; null when no row matches (or the key is null). A name
//! that collides with an input field is a config error (set `prefix`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use weir_runtime::{Batch, Emitter, Processor, ShardContext};

use crate::component::{
    connect_forward, Component, Input, Node, Output, PlanContext, Planned, Reads,
};
use crate::row::convert::{assign_value, convert_text, copy_row, not_a};
use crate::row::{
    value_from_json, ArchivedRow, ArchivedValue, OptionError, Row, Schema, Type, Value,
};

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

/// The index from key to row.
#[derive(Debug)]
enum Index {
    Str(FxHashMap<Box<str>, u32>),
    /// `int` and `timestamp` keys.
    Int(FxHashMap<i64, u32>),
    Bool([Option<u32>; 2]),
    Ip(FxHashMap<[u8; 16], u32>),
    /// (prefix length over 128 bits, network → row), longest first.
    Cidr(Vec<(u32, FxHashMap<u128, u32>)>),
}

/// A loaded table: the key index and each row's column values.
#[derive(Debug)]
struct Table {
    index: Index,
    rows: Vec<Vec<Value>>,
}

/// The mask of a prefix of `length` bits over 128.
fn mask(length: u32) -> u128 {
    if length == 0 {
        0
    } else {
        u128::MAX << (128 - length)
    }
}

impl Table {
    /// The row matching `key`, if any.
    #[inline]
    fn lookup(&self, key: &ArchivedValue) -> Option<&[Value]> {
        let row = match (&self.index, key) {
            (Index::Str(map), ArchivedValue::String(text)) => map.get(text.as_str()).copied(),
            (Index::Int(map), ArchivedValue::Int(value) | ArchivedValue::Timestamp(value)) => {
                map.get(&value.to_native()).copied()
            }
            (Index::Bool(rows), ArchivedValue::Bool(value)) => rows[usize::from(*value)],
            (Index::Ip(map), ArchivedValue::Ip(ip)) => map.get(&ip.0).copied(),
            (Index::Cidr(lengths), ArchivedValue::Ip(ip)) => {
                let address = u128::from_be_bytes(ip.0);
                lengths
                    .iter()
                    .find_map(|(length, map)| map.get(&(address & mask(*length))).copied())
            }
            _ => None,
        }?;
        Some(&self.rows[row as usize])
    }
}

/// A checked `enrich` configuration with its loaded table (see [`build`]);
/// clones share the table.
#[derive(Debug, Clone)]
pub struct EnrichSpec {
    field: usize,
    table: Arc<Table>,
    input_width: usize,
    /// Output index of each added column.
    outs: Vec<usize>,
    output_width: usize,
}

impl EnrichSpec {
    /// Rows in the loaded table.
    pub fn table_rows(&self) -> usize {
        self.table.rows.len()
    }
}

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

/// `(network, prefix length)` over 128 bits of a CIDR range or address,
/// IPv4 mapped.
fn parse_cidr(text: &str) -> Result<(u128, u32), String> {
    let (address, length) = match text.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (text, None),
    };
    let address: std::net::IpAddr = address
        .trim()
        .parse()
        .map_err(|_| format!("key: {text:?} is not a network (try 10.0.0.0/8)"))?;
    let (bits, offset) = match address {
        std::net::IpAddr::V4(_) => (32, 96),
        std::net::IpAddr::V6(_) => (128, 0),
    };
    let length = match length {
        None => bits,
        Some(length) => length
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|length| *length <= bits)
            .ok_or_else(|| format!("key: {text:?} has a bad prefix length (0 to {bits})"))?,
    } + offset;
    let network = u128::from_be_bytes(crate::row::Ip::from(address).0);
    if network & !mask(length) != 0 {
        return Err(format!(
            "key: {text:?} has host bits set (the network is {}/{})",
            std::net::IpAddr::from((network & mask(length)).to_be_bytes()).to_canonical(),
            length - offset
        ));
    }
    Ok((network, length))
}

fn table_error(path: &Path, message: impl std::fmt::Display) -> OptionError {
    OptionError::new("table", format!("{}: {message}", path.display()))
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

fn load_csv(
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

fn load_json(
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

/// The `enrich` operator; see the module docs.
#[derive(Debug)]
pub struct Enrich {
    spec: EnrichSpec,
    /// The output row, reused.
    out: Row,
}

impl Enrich {
    /// An enricher for `spec` (sharing its table).
    pub fn new(spec: EnrichSpec, context: &ShardContext) -> Enrich {
        let _ = context;
        Enrich::bare(spec)
    }

    fn bare(spec: EnrichSpec) -> Enrich {
        Enrich {
            out: Row::nulls(spec.output_width),
            spec,
        }
    }

    /// Fills `self.out` from `row` and its match.
    #[inline]
    fn apply(&mut self, row: &ArchivedRow) {
        let spec = &self.spec;
        let values = &mut self.out.values;
        copy_row(values, row, spec.input_width);
        values.resize(spec.output_width, Value::Null);
        match spec.table.lookup(row.get(spec.field)) {
            Some(found) => {
                for (&out, value) in spec.outs.iter().zip(found) {
                    assign_value(&mut values[out], value);
                }
            }
            None => {
                for &out in &spec.outs {
                    values[out] = Value::Null;
                }
            }
        }
    }
}

impl Processor for Enrich {
    type Input = Row;
    type Output = Row;

    fn process(&mut self, _port: usize, batch: &Batch<Row>, out: &mut Emitter<Row>) {
        for row in batch.iter() {
            self.apply(row);
            out.push(&self.out);
        }
    }
}

impl Component for EnrichConfig {
    fn reads(&self) -> Reads {
        Reads::Rows
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let (spec, output) = build(self, &context.schema())?;
        Ok(Planned::new(vec![Output::rows(output)], spec))
    }
}

impl Node for EnrichSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.processor(name, move |context| Enrich::new(spec.clone(), context));
        connect_forward(graph, name, inputs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Ip;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn config(table: PathBuf, field: &str, key: &str, match_kind: MatchKind) -> EnrichConfig {
        EnrichConfig {
            inputs: vec![],
            field: field.into(),
            table,
            format: None,
            key: key.into(),
            match_kind,
            columns: vec![],
            prefix: None,
        }
    }

    fn ip(text: &str) -> Value {
        Value::Ip(Ip::from(text.parse::<std::net::IpAddr>().unwrap()))
    }

    fn text(text: &str) -> Value {
        Value::String(text.into())
    }

    fn apply(enrich: &mut Enrich, values: Vec<Value>) -> Vec<Value> {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&Row { values }).unwrap();
        let row = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes).unwrap();
        enrich.apply(row);
        enrich.out.values.clone()
    }

    const NETWORKS: &str = "network,country,asn\n\
        0.0.0.0/0,ZZ,\n\
        10.0.0.0/8,AA,1\n\
        10.1.0.0/16,BB,2\n\
        10.1.2.0/24,CC,3\n\
        10.1.2.3,DD,4\n\
        2001:db8::/32,EE,5\n\
        2001:db8:1::/48,FF,6\n";

    #[test]
    fn cidr_matches_the_longest_prefix_for_v4_and_v6() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(
            write(&dir, "nets.csv", NETWORKS),
            "ip",
            "network",
            MatchKind::Cidr,
        );
        config.columns = vec![
            ColumnConfig::Name("country".into()),
            ColumnConfig::Typed(TypedColumn {
                name: "asn".into(),
                ty: "int".into(),
            }),
        ];
        config.prefix = Some("geo_".into());
        let input = Schema::new([("ip", Type::Ip)]);
        let (spec, output) = build(&config, &input).unwrap();
        assert_eq!(
            output.describe(),
            "`ip: ip`, `geo_country: string`, `geo_asn: int`"
        );
        assert_eq!(spec.table_rows(), 7);
        let mut enrich = Enrich::bare(spec);
        for (address, country, asn) in [
            ("10.1.2.3", "DD", Some(4)),
            ("10.1.2.4", "CC", Some(3)),
            ("10.1.3.1", "BB", Some(2)),
            ("10.200.0.1", "AA", Some(1)),
            ("192.168.0.1", "ZZ", None),
            ("2001:db8:1:2::9", "FF", Some(6)),
            ("2001:db8:2::1", "EE", Some(5)),
        ] {
            let row = apply(&mut enrich, vec![ip(address)]);
            let asn = asn.map_or(Value::Null, Value::Int);
            assert_eq!(row, [ip(address), text(country), asn], "{address}");
        }
        // `0.0.0.0/0` is IPv4 only: an IPv6 address outside 2001:db8::/32
        // matches nothing; a null key matches nothing.
        assert_eq!(
            apply(&mut enrich, vec![ip("2002::1")]),
            [ip("2002::1"), Value::Null, Value::Null]
        );
        assert_eq!(
            apply(&mut enrich, vec![Value::Null]),
            [Value::Null, Value::Null, Value::Null]
        );
    }

    #[test]
    fn cidr_agrees_with_a_linear_scan() {
        // Nested random networks; compare with the longest containing one.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut networks: Vec<(u32, u8)> = Vec::new();
        let mut csv = String::from("net,id\n");
        while networks.len() < 300 {
            let length = (next() % 33) as u8;
            let address = (next() as u32) & 0x0a0f_ffff | 0x0a00_0000;
            let network = if length == 0 {
                0
            } else {
                address & (u32::MAX << (32 - length))
            };
            if networks.contains(&(network, length)) {
                continue;
            }
            let _ = writeln!(
                csv,
                "{}/{length},{}",
                std::net::Ipv4Addr::from(network),
                networks.len()
            );
            networks.push((network, length));
        }
        let dir = tempfile::tempdir().unwrap();
        let config = config(write(&dir, "nets.csv", &csv), "ip", "net", MatchKind::Cidr);
        let (spec, _) = build(&config, &Schema::new([("ip", Type::Ip)])).unwrap();
        let mut enrich = Enrich::bare(spec);
        for _ in 0..5_000 {
            let address = (next() as u32) & 0x0a0f_ffff | 0x0a00_0000;
            let expected = networks
                .iter()
                .enumerate()
                .filter(|(_, (network, length))| {
                    *length == 0 || address & (u32::MAX << (32 - length)) == *network
                })
                .max_by_key(|(_, (_, length))| *length)
                .map_or(Value::Null, |(id, _)| text(&id.to_string()));
            let address = ip(&std::net::Ipv4Addr::from(address).to_string());
            assert_eq!(
                apply(&mut enrich, vec![address.clone()])[1],
                expected,
                "{address:?}"
            );
        }
    }

    #[test]
    fn exact_matches_by_the_input_type_from_csv_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let users = write(
            &dir,
            "users.csv",
            "id,name,admin\n7,ann,true\n8,\"bo, jr\",false\n9,,\n",
        );
        let mut config = config(users, "user", "id", MatchKind::Exact);
        let input = Schema::new([("user", Type::Int), ("name", Type::String)]);
        // `name` collides with the input.
        let error = build(&config, &input).unwrap_err();
        assert_eq!(error.option, "columns");
        assert!(
            error.message.contains("`name` is a field of the input"),
            "{error}"
        );
        config.prefix = Some("u_".into());
        let (spec, output) = build(&config, &input).unwrap();
        assert_eq!(
            output.describe(),
            "`user: int`, `name: string`, `u_name: string`, `u_admin: string`"
        );
        let mut enrich = Enrich::bare(spec);
        let row = apply(&mut enrich, vec![Value::Int(8), text("x")]);
        assert_eq!(row[2..], [text("bo, jr"), text("false")]);
        let row = apply(&mut enrich, vec![Value::Int(9), Value::Null]);
        assert_eq!(row[2..], [Value::Null, Value::Null]);
        let row = apply(&mut enrich, vec![Value::Int(10), Value::Null]);
        assert_eq!(row[2..], [Value::Null, Value::Null]);
        let row = apply(&mut enrich, vec![Value::Int(7), Value::Null]);
        assert_eq!(row[2..], [text("ann"), text("true")]);

        // The same from NDJSON and a JSON array, with typed columns.
        let ndjson =
            "{\"id\":7,\"tags\":[\"a\"],\"admin\":true}\n\n{\"id\":\"8\",\"admin\":\"false\"}\n";
        let array =
            "[{\"id\":7,\"tags\":[\"a\"],\"admin\":true},{\"id\":\"8\",\"admin\":\"false\"}]";
        for path in [
            write(&dir, "u.ndjson", ndjson),
            write(&dir, "u.json", array),
        ] {
            let mut config = config.clone();
            config.table = path;
            config.columns = vec![
                ColumnConfig::Typed(TypedColumn {
                    name: "admin".into(),
                    ty: "bool".into(),
                }),
                ColumnConfig::Typed(TypedColumn {
                    name: "tags".into(),
                    ty: "list".into(),
                }),
            ];
            let (spec, _) = build(&config, &input).unwrap();
            let mut enrich = Enrich::bare(spec);
            let row = apply(&mut enrich, vec![Value::Int(7), Value::Null]);
            assert_eq!(row[2..], [Value::Bool(true), Value::List(vec![text("a")])]);
            let row = apply(&mut enrich, vec![Value::Int(8), Value::Null]);
            assert_eq!(row[2..], [Value::Bool(false), Value::Null]);
        }

        // String and ip keys.
        let hosts = write(&dir, "hosts.csv", "addr,role\n::1,local\n10.0.0.1,db\n");
        let config = EnrichConfig {
            columns: vec![ColumnConfig::Name("role".into())],
            ..config_for(hosts, "addr")
        };
        let (spec, _) = build(&config, &Schema::new([("ip", Type::Ip)])).unwrap();
        let mut enrich = Enrich::bare(spec);
        assert_eq!(apply(&mut enrich, vec![ip("10.0.0.1")])[1], text("db"));
        assert_eq!(apply(&mut enrich, vec![ip("10.0.0.2")])[1], Value::Null);
        let (spec, _) = build(&config, &Schema::new([("ip", Type::String)])).unwrap();
        let mut enrich = Enrich::bare(spec);
        assert_eq!(apply(&mut enrich, vec![text("::1")])[1], text("local"));
    }

    fn config_for(table: PathBuf, key: &str) -> EnrichConfig {
        config(table, "ip", key, MatchKind::Exact)
    }

    /// The build error for a table with `text` (a CSV file unless `name`
    /// says otherwise), enriching `ip: ip` by `match_kind`.
    fn table_error(name: &str, text: &str, match_kind: MatchKind, typed: bool) -> OptionError {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(write(&dir, name, text), "ip", "net", match_kind);
        if typed {
            config.columns = vec![ColumnConfig::Typed(TypedColumn {
                name: "asn".into(),
                ty: "int".into(),
            })];
        }
        let error = build(&config, &Schema::new([("ip", Type::Ip)])).unwrap_err();
        let path = dir.path().join(name).display().to_string();
        assert!(error.message.contains(&path), "{error} names {path}");
        error
    }

    #[test]
    fn table_errors_name_the_file_and_line() {
        let cidr = MatchKind::Cidr;
        let error = table_error(
            "t.csv",
            "net,asn\n10.0.0.0/8,1\n10.0.0.0/33,2\n",
            cidr,
            true,
        );
        assert_eq!(error.option, "table");
        assert!(
            error
                .message
                .contains("t.csv:3: key: \"10.0.0.0/33\" has a bad prefix"),
            "{error}"
        );
        let error = table_error(
            "t.csv",
            "net,asn\n10.0.0.0/8,1\n\n10.0.0.1/8,2\n",
            cidr,
            true,
        );
        assert!(
            error.message.contains(
                "t.csv:4: key: \"10.0.0.1/8\" has host bits set (the network is 10.0.0.0/8)"
            ),
            "{error}"
        );
        let error = table_error("t.csv", "net,asn\n10.0.0.0/8,1\n10.0.0.0/8,2\n", cidr, true);
        assert!(
            error
                .message
                .contains("t.csv:3: key given twice (first at 2)"),
            "{error}"
        );
        let error = table_error("t.csv", "net,asn\n10.0.0.0/8,x1\n", cidr, true);
        assert!(
            error.message.contains("t.csv:2: asn: \"x1\" is not a int"),
            "{error}"
        );
        let error = table_error("t.csv", "net,asn\n10.0.0.0/8,1\n10.1.0.0/16\n", cidr, true);
        assert!(
            error
                .message
                .contains("t.csv:3: a row of 1 fields where the header has 2"),
            "{error}"
        );
        let error = table_error("t.csv", "net,asn\nmars,1\n", cidr, true);
        assert!(
            error
                .message
                .contains("t.csv:2: key: \"mars\" is not a network"),
            "{error}"
        );
        let error = table_error("t.csv", "net,asn\n10.0.0.300,1\n", MatchKind::Exact, true);
        assert!(
            error
                .message
                .contains("t.csv:2: key: \"10.0.0.300\" is not a ip"),
            "{error}"
        );
        let error = table_error("t.csv", "net,asn\n,1\n", MatchKind::Exact, true);
        assert!(
            error.message.contains("t.csv:2: the key is empty"),
            "{error}"
        );
        let error = table_error(
            "t.ndjson",
            "{\"net\":\"::1\",\"asn\":1}\n{\"net\":\"::2\",\"asn\":\n",
            cidr,
            true,
        );
        assert!(
            error.message.contains("t.ndjson:2: not a JSON object"),
            "{error}"
        );
        let error = table_error(
            "t.ndjson",
            "{\"net\":\"::1\",\"asn\":1}\n{\"asn\":2}\n",
            cidr,
            true,
        );
        assert!(
            error.message.contains("t.ndjson:2: no key `net`"),
            "{error}"
        );
        let error = table_error(
            "t.json",
            "[{\"net\":\"::1\",\"asn\":1},{\"net\":\"::2\",\"asn\":\"two\"}]",
            cidr,
            true,
        );
        assert!(
            error
                .message
                .contains("t.json:element 1: asn: \"two\" is not a int"),
            "{error}"
        );

        let error = table_error("t.csv", "network,asn\n", cidr, true);
        assert_eq!(error.option, "key");
        assert!(
            error
                .message
                .contains("has no column `net`; its columns: `network`, `asn`"),
            "{error}"
        );
        let error = table_error("t.csv", "net,as\n", cidr, true);
        assert_eq!(error.option, "columns");
        let error = table_error("t.txt", "net,asn\n", cidr, true);
        assert_eq!(error.option, "format");
        let dir = tempfile::tempdir().unwrap();
        let missing = config_for(dir.path().join("gone.csv"), "net");
        let error = build(&missing, &Schema::new([("ip", Type::Ip)])).unwrap_err();
        assert_eq!(error.option, "table");
        assert!(error.message.contains("gone.csv"), "{error}");
    }

    #[test]
    fn config_errors_name_the_option() {
        let dir = tempfile::tempdir().unwrap();
        let table = write(&dir, "t.csv", "k,v\n1,2\n");
        let input = Schema::new([("s", Type::String), ("f", Type::Float)]);
        let mut config = config(table, "s", "k", MatchKind::Cidr);
        assert_eq!(build(&config, &input).unwrap_err().option, "match");
        config.match_kind = MatchKind::Exact;
        config.field = "f".into();
        assert_eq!(build(&config, &input).unwrap_err().option, "field");
        config.field = "nope".into();
        assert_eq!(build(&config, &input).unwrap_err().option, "field");
        config.field = "s".into();
        config.columns = vec![ColumnConfig::Typed(TypedColumn {
            name: "v".into(),
            ty: "map".into(),
        })];
        assert_eq!(build(&config, &input).unwrap_err().option, "columns");
        config.columns = vec![ColumnConfig::Typed(TypedColumn {
            name: "v".into(),
            ty: "number".into(),
        })];
        assert_eq!(build(&config, &input).unwrap_err().option, "columns");
        config.columns = vec![];
        let (spec, output) = build(&config, &input).unwrap();
        assert_eq!(output.describe(), "`s: string`, `f: float`, `v: string`");
        assert_eq!(spec.table_rows(), 1);

        let parsed: EnrichConfig = toml::from_str(
            "field = \"ip\"\ntable = \"n.csv\"\nkey = \"net\"\nmatch = \"cidr\"\n\
             columns = [\"country\", { name = \"asn\", type = \"int\" }]\n",
        )
        .unwrap();
        assert_eq!(parsed.match_kind, MatchKind::Cidr);
        assert_eq!(parsed.columns[0], ColumnConfig::Name("country".into()));
        assert_eq!(parsed.columns[1].name(), "asn");
        assert!(toml::from_str::<EnrichConfig>(
            "field = \"ip\"\ntable = \"n.csv\"\nkey = \"net\"\ncolumns = [{ name = \"a\", typ = \"int\" }]\n"
        )
        .is_err());
    }
}
