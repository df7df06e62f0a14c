//! [`FileSource`]: the `file` source, reading one local file of NDJSON (or
//! plain text lines) into [`Row`]s, exactly once by byte offset.
//!
//! # Options ([`FileSourceConfig`])
//! - `path`: the file.
//! - `format`: `"ndjson"` (default): each line is one JSON object; its
//!   members named in `schema` become the row's fields, converted to the
//!   field's type as [`value_from_json`] does (timestamps from RFC 3339,
//!   the access-log form or integer milliseconds; addresses from text). A
//!   member the schema does not name is ignored; a field missing from the
//!   object, or `null`, is `Null`. Blank lines are skipped.
//!   `"lines"`: each line becomes a row with the single field
//!   `message: string` (blank lines included); `schema` must then be left
//!   out or be exactly `{ message = "string" }`, and there is no
//!   `time_field`.
//! - `schema`: field name → type name (`bool`, `int`, `float`, `string`,
//!   `timestamp`, `ip`, `list`, `map`), e.g.
//!   `{ timestamp = "timestamp", ip = "ip", msg = "string" }`. The output
//!   schema has these fields in the order written. (A TOML table keeps its
//!   order only with toml's `preserve_order` feature, which this crate
//!   enables.)
//! - `time_field`: a `timestamp` field of the schema that drives
//!   watermarks. Without it the source emits no watermark; the end of the
//!   stream carries the final one.
//! - `watermark_delay` (default `"0s"`): after each poll the source emits
//!   the watermark `max(time_field seen) - watermark_delay` when it rose.
//!   A record older than the watermark already emitted is still emitted
//!   (it is late for windows downstream).
//! - `follow` (default `false`): `false` reads to the end of the file and
//!   ends the stream; a last line without a line break is read too. `true`
//!   tails a growing file: at the end it waits (the poll is `Idle`) for
//!   more lines, and a partial last line waits for its line break. A
//!   following source that finds no file waits for it to appear; a file
//!   that shrinks below what was read (truncation, rotation by copy) fails
//!   the run, since exactly-once cannot hold across it.
//!
//! # Dead letters
//! A line that is not valid UTF-8, not JSON, not a JSON object, or has a
//! member that does not fit its field's type, never becomes a row of the
//! main output: it goes to output port 1 as a row of
//! [`dead_letter_schema`] (`line: string, error: string, offset: int`,
//! `offset` being the byte offset of the line's start), and is counted in
//! the metric `weir_file_source_dead_letters_total{component=...}`. Wire
//! port 1 (`GraphBuilder::connect_port(name, 1, ...)`) to keep them; the
//! runtime drops records of a port nobody reads, but the counter still
//! counts them.
//!
//! # Exactly once
//! Only complete lines (ending in `\n`; a `\r` before it is dropped) are
//! consumed. The position is the byte offset of the next unread line plus
//! the largest event time seen (16 bytes: two little-endian 64-bit
//! integers, the time `i64::MIN` when none), logged at every epoch; a
//! restored source seeks to that offset, so every line is emitted exactly
//! once in the committed output, and its watermark continues from where it
//! was instead of falling back.
//!
//! # Parallelism and I/O
//! A file is read by one instance: run the node with
//! `Parallelism::One`. With more instances, instance 0 reads the file and
//! the others end at once. The file is read with blocking `std::fs` reads
//! on the shard, in chunks of [`CHUNK_BYTES`] (1 MiB) only when the buffer
//! has no complete line left, and each poll emits at most one batch worth
//! of lines; that is acceptable for local files (a read from the page cache
//! takes microseconds) but not for network file systems. A line longer than
//! [`LINE_BYTES_MAX`] fails the run.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use weir_runtime::metrics::ShardCounter;
use weir_runtime::{Emitter, ShardContext, Source, SourcePoll, StateError};

use crate::component::{Component, Input, Node, Output, PlanContext, Planned, Reads, DEAD_LETTER};
use crate::row::{value_from_json, OptionError, Row, Schema, Type, Value};

/// Bytes read from the file at a time.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The longest line the source accepts; a longer one fails the run.
pub const LINE_BYTES_MAX: usize = 64 << 20;

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
            let mut fields = Vec::with_capacity(schema.0.len());
            for (name, type_name) in &schema.0 {
                let ty = Type::parse(type_name).ok_or_else(|| {
                    OptionError::new(
                        "schema",
                        format!(
                            "field `{name}`: unknown type `{type_name}`; types are bool, int, \
                             float, string, timestamp, ip, list, map"
                        ),
                    )
                })?;
                if fields.iter().any(|(seen, _)| seen == name) {
                    return Err(OptionError::new(
                        "schema",
                        format!("field `{name}` is given twice"),
                    ));
                }
                fields.push((name.clone(), ty));
            }
            fields
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

/// What [`FileSource::read`] hands out, in order.
#[derive(Debug, Clone, Copy)]
pub enum FileItem<'a> {
    /// A row of the main output (port 0).
    Row(&'a Row),
    /// A dead letter (port 1), of [`dead_letter_schema`].
    DeadLetter(&'a Row),
    /// A watermark, after the rows it follows.
    Watermark(u64),
}

/// What a [`FileSource::read`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Lines were read, or more may be there right away.
    Ready,
    /// At the end of a followed file (or it does not exist yet).
    Idle,
    /// The whole file was read (not following), or this instance reads
    /// nothing.
    Exhausted,
}

/// Turns lines into rows: everything [`FileSource::read`] changes besides
/// the buffer, so both can be borrowed at once.
#[derive(Debug)]
struct Decoder {
    format: FileFormat,
    fields: Vec<(String, Type)>,
    time_index: Option<usize>,
    row: Row,
    dead: Row,
    max_ts: Option<i64>,
    dead_letters: u64,
}

impl Decoder {
    /// Decodes `line` (without its line break) that starts at `offset`.
    fn line(&mut self, line: &[u8], offset: u64, emit: &mut impl FnMut(FileItem<'_>)) {
        let mut line = line.strip_suffix(b"\r").unwrap_or(line);
        if offset == 0 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        let result = match self.format {
            FileFormat::Lines => match std::str::from_utf8(line) {
                Ok(text) => {
                    set_str(&mut self.row.values[0], text);
                    Ok(())
                }
                Err(_) => Err("not valid UTF-8".to_owned()),
            },
            FileFormat::Ndjson => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return;
                }
                self.json(line)
            }
        };
        match result {
            Ok(()) => {
                if let Some(Value::Timestamp(ts)) = self.time_index.map(|i| &self.row.values[i]) {
                    self.max_ts = Some(self.max_ts.map_or(*ts, |max| max.max(*ts)));
                }
                emit(FileItem::Row(&self.row));
            }
            Err(error) => {
                self.dead_letters += 1;
                let text = String::from_utf8_lossy(line);
                set_str(&mut self.dead.values[0], &text);
                set_str(&mut self.dead.values[1], &error);
                self.dead.values[2] = Value::Int(i64::try_from(offset).unwrap_or(i64::MAX));
                emit(FileItem::DeadLetter(&self.dead));
            }
        }
    }

    /// Fills the row from a JSON object line.
    fn json(&mut self, line: &[u8]) -> Result<(), String> {
        self.row.values.fill(Value::Null);
        let mut mismatch = None;
        let mut deserializer = serde_json::Deserializer::from_slice(line);
        let seed = RowSeed {
            fields: &self.fields,
            values: &mut self.row.values,
            mismatch: &mut mismatch,
        };
        seed.deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
            .map_err(|error| match error.classify() {
                serde_json::error::Category::Data => error.to_string(),
                _ => format!("invalid JSON: {error}"),
            })?;
        match mismatch {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Reads one JSON object into `values`, by field name.
struct RowSeed<'a> {
    fields: &'a [(String, Type)],
    values: &'a mut [Value],
    /// The first member that did not fit its type.
    mismatch: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.fields.iter().position(|(name, _)| *name == key) {
                Some(index) => {
                    let json: serde_json::Value = map.next_value()?;
                    let (name, ty) = &self.fields[index];
                    match value_from_json(&json, *ty) {
                        Ok(value) => self.values[index] = value,
                        Err(error) => {
                            self.values[index] = Value::Null;
                            if self.mismatch.is_none() {
                                *self.mismatch = Some(format!("field `{name}`: {error}"));
                            }
                        }
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A map key, borrowed from the line when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

fn set_str(value: &mut Value, text: &str) {
    match value {
        Value::String(target) => {
            target.clear();
            target.push_str(text);
        }
        other => *other = Value::String(text.to_owned()),
    }
}

/// The `file` source; see the module docs.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    follow: bool,
    watermark_delay_ms: u64,
    /// Whether this instance reads the file (instance 0).
    active: bool,
    file: Option<File>,
    /// Bytes read from the file and not yet consumed start at
    /// `buffer[consumed]`, which is file offset `offset`.
    buffer: Vec<u8>,
    consumed: usize,
    offset: u64,
    finished: bool,
    emitted_watermark: Option<u64>,
    decoder: Decoder,
    dead_metric: Option<ShardCounter>,
}

impl FileSource {
    /// The source on `context`'s shard (see the module docs on
    /// parallelism), counting dead letters in `context`'s metrics.
    pub fn new(spec: FileSpec, context: &ShardContext) -> FileSource {
        let mut source = FileSource::detached(spec, context.instance);
        let counter = context.metrics.counter(
            "weir_file_source_dead_letters",
            "Lines of the file that became dead letters (invalid JSON or a type mismatch).",
            &[("component", &*context.node)],
        );
        source.dead_metric = Some(counter.for_shard(context.shard));
        source
    }

    /// A source without metrics, as instance `instance` (only instance 0
    /// reads), for tests and tools.
    pub fn detached(spec: FileSpec, instance: usize) -> FileSource {
        let width = spec.fields.len();
        FileSource {
            path: spec.path,
            follow: spec.follow,
            watermark_delay_ms: spec.watermark_delay_ms,
            active: instance == 0,
            file: None,
            buffer: Vec::new(),
            consumed: 0,
            offset: 0,
            finished: false,
            emitted_watermark: None,
            decoder: Decoder {
                format: spec.format,
                fields: spec.fields,
                time_index: spec.time_index,
                row: Row::nulls(width),
                dead: Row::nulls(3),
                max_ts: None,
                dead_letters: 0,
            },
            dead_metric: None,
        }
    }

    /// The byte offset of the next unread line.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Lines that became dead letters so far.
    pub fn dead_letters(&self) -> u64 {
        self.decoder.dead_letters
    }

    /// Continues at byte offset `offset` (a line start) with `max_ts` the
    /// largest event time seen before it.
    pub fn seek(&mut self, offset: u64, max_ts: Option<i64>) {
        self.offset = offset;
        self.decoder.max_ts = max_ts;
        self.file = None;
        self.buffer.clear();
        self.consumed = 0;
        self.finished = false;
        self.emitted_watermark = None;
    }

    /// Reads up to `max` lines, handing rows, dead letters and watermarks
    /// to `emit`. An error is fatal (the file cannot be read, or shrank).
    pub fn read(
        &mut self,
        max: usize,
        mut emit: impl FnMut(FileItem<'_>),
    ) -> Result<ReadStatus, String> {
        if !self.active || self.finished {
            return Ok(ReadStatus::Exhausted);
        }
        if self.file.is_none() && !self.open()? {
            return Ok(ReadStatus::Idle);
        }
        let mut lines = 0;
        let status = loop {
            while lines < max {
                let rest = &self.buffer[self.consumed..];
                let Some(end) = memchr::memchr(b'\n', rest) else {
                    break;
                };
                self.decoder.line(&rest[..end], self.offset, &mut emit);
                self.consumed += end + 1;
                self.offset += end as u64 + 1;
                lines += 1;
            }
            if lines >= max {
                break ReadStatus::Ready;
            }
            if self.fill()? > 0 {
                continue;
            }
            // At the end of the file.
            if self.follow {
                self.check_not_shrunk()?;
                break if lines > 0 {
                    ReadStatus::Ready
                } else {
                    ReadStatus::Idle
                };
            }
            let rest = &self.buffer[self.consumed..];
            if !rest.is_empty() {
                self.decoder.line(rest, self.offset, &mut emit);
                self.offset += rest.len() as u64;
            }
            self.buffer.clear();
            self.consumed = 0;
            self.finished = true;
            break ReadStatus::Exhausted;
        };
        if let Some(max_ts) = self.decoder.max_ts {
            let watermark = u64::try_from(max_ts)
                .unwrap_or(0)
                .saturating_sub(self.watermark_delay_ms);
            if self
                .emitted_watermark
                .is_none_or(|emitted| watermark > emitted)
            {
                self.emitted_watermark = Some(watermark);
                emit(FileItem::Watermark(watermark));
            }
        }
        Ok(status)
    }

    /// Opens the file at `offset`; `false` when following a file that does
    /// not exist yet.
    fn open(&mut self) -> Result<bool, String> {
        let path = self.path.display();
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound && self.follow => return Ok(false),
            Err(error) => return Err(format!("cannot open {path}: {error}")),
        };
        let len = file
            .metadata()
            .map_err(|error| format!("cannot read the size of {path}: {error}"))?
            .len();
        if len < self.offset {
            return Err(format!(
                "{path} has {len} bytes, fewer than the position {} to resume from: \
                 the file was truncated or replaced",
                self.offset
            ));
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|error| format!("cannot seek in {path}: {error}"))?;
        self.file = Some(file);
        Ok(true)
    }

    /// Reads one chunk after the buffered bytes; returns the bytes read.
    fn fill(&mut self) -> Result<usize, String> {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        if self.buffer.len() > LINE_BYTES_MAX {
            return Err(format!(
                "{}: the line at byte {} is longer than {LINE_BYTES_MAX} bytes",
                self.path.display(),
                self.offset
            ));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(0);
        };
        let start = self.buffer.len();
        self.buffer.resize(start + CHUNK_BYTES, 0);
        let read = loop {
            match file.read(&mut self.buffer[start..]) {
                Ok(read) => break read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.buffer.truncate(start);
                    return Err(format!("cannot read {}: {error}", self.path.display()));
                }
            }
        };
        self.buffer.truncate(start + read);
        Ok(read)
    }

    /// Fails when the followed file is now shorter than what was read.
    fn check_not_shrunk(&self) -> Result<(), String> {
        let read_to = self.offset + (self.buffer.len() - self.consumed) as u64;
        let len = std::fs::metadata(&self.path)
            .map_err(|error| format!("cannot read the size of {}: {error}", self.path.display()))?
            .len();
        if len < read_to {
            return Err(format!(
                "{} shrank to {len} bytes after {read_to} were read: \
                 truncation and rotation are not supported",
                self.path.display()
            ));
        }
        Ok(())
    }
}

impl Source for FileSource {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        let before = self.decoder.dead_letters;
        let result = self.read(out.batch_records_max(), |item| match item {
            FileItem::Row(row) => out.push(row),
            FileItem::DeadLetter(row) => out.push_to(1, row),
            FileItem::Watermark(watermark) => out.watermark(watermark),
        });
        if let Some(metric) = &self.dead_metric {
            let added = self.decoder.dead_letters - before;
            if added > 0 {
                metric.add(added);
            }
        }
        match result {
            Ok(ReadStatus::Ready) => SourcePoll::Ready,
            Ok(ReadStatus::Idle) => SourcePoll::Idle,
            Ok(ReadStatus::Exhausted) => SourcePoll::Exhausted,
            Err(error) => {
                out.fail(error);
                SourcePoll::Exhausted
            }
        }
    }

    /// The offset of the next unread line and the largest event time seen
    /// (`i64::MIN`: none), each 8 bytes little-endian.
    fn position(&self) -> Vec<u8> {
        let max_ts = self.decoder.max_ts.unwrap_or(i64::MIN);
        [self.offset.to_le_bytes(), max_ts.to_le_bytes()].concat()
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), StateError> {
        let word = |range: std::ops::Range<usize>| -> Option<[u8; 8]> {
            position.get(range)?.try_into().ok()
        };
        let (Some(offset), Some(max_ts), 16) = (word(0..8), word(8..16), position.len()) else {
            return Err(StateError(format!(
                "file source position of {} bytes, expected 16",
                position.len()
            )));
        };
        let max_ts = i64::from_le_bytes(max_ts);
        self.seek(
            u64::from_le_bytes(offset),
            (max_ts != i64::MIN).then_some(max_ts),
        );
        Ok(())
    }
}

impl Component for FileSourceConfig {
    fn reads(&self) -> Reads {
        Reads::Nothing
    }

    fn plan(&self, _context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let (spec, schema) = build(self)?;
        let outputs = vec![
            Output::rows(schema),
            Output::side(DEAD_LETTER, 1, dead_letter_schema()),
        ];
        Ok(Planned::new(outputs, spec))
    }
}

impl Node for FileSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, _inputs: &[Input]) {
        // One reader: a file is read in order from one offset.
        let spec = self.clone();
        graph
            .source(name, move |context| FileSource::new(spec.clone(), context))
            .parallelism(weir_runtime::Parallelism::One);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::row::{parse_timestamp, Ip};

    #[derive(Debug, Clone, PartialEq)]
    enum Item {
        Row(Row),
        Dead(String, String, i64),
        Watermark(u64),
    }

    fn config(path: &std::path::Path) -> FileSourceConfig {
        FileSourceConfig {
            path: path.display().to_string(),
            format: FileFormat::Ndjson,
            schema: Some(FieldTypes(vec![
                ("timestamp".into(), "timestamp".into()),
                ("ip".into(), "ip".into()),
                ("n".into(), "int".into()),
            ])),
            time_field: Some("timestamp".into()),
            watermark_delay: None,
            follow: false,
        }
    }

    fn source(config: &FileSourceConfig) -> FileSource {
        FileSource::detached(build(config).expect("valid").0, 0)
    }

    /// Calls `read(max)` until it is not `Ready`, at most `calls` times.
    fn drain(source: &mut FileSource, max: usize, calls: usize) -> (Vec<Item>, ReadStatus) {
        let mut items = Vec::new();
        let mut status = ReadStatus::Ready;
        for _ in 0..calls {
            status = source
                .read(max, |item| {
                    items.push(match item {
                        FileItem::Row(row) => Item::Row(row.clone()),
                        FileItem::DeadLetter(row) => match &row.values[..] {
                            [Value::String(line), Value::String(error), Value::Int(offset)] => {
                                Item::Dead(line.clone(), error.clone(), *offset)
                            }
                            other => panic!("dead letter {other:?}"),
                        },
                        FileItem::Watermark(watermark) => Item::Watermark(watermark),
                    })
                })
                .expect("reads");
            if status != ReadStatus::Ready {
                break;
            }
        }
        (items, status)
    }

    fn line(n: i64) -> String {
        format!(
            "{{\"timestamp\": {}, \"ip\": \"10.0.{}.{}\", \"n\": {n}, \"extra\": [1, {{\"a\": 2}}]}}\n",
            1_000 + n * 10,
            n / 256 % 256,
            n % 256
        )
    }

    fn row(n: i64) -> Row {
        let addr: std::net::IpAddr = format!("10.0.{}.{}", n / 256 % 256, n % 256)
            .parse()
            .unwrap();
        Row {
            values: vec![
                Value::Timestamp(1_000 + n * 10),
                Value::Ip(Ip::from(addr)),
                Value::Int(n),
            ],
        }
    }

    fn only_rows(items: &[Item]) -> Vec<Row> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Row(row) => Some(row.clone()),
                _ => None,
            })
            .collect()
    }

    fn write(path: &std::path::Path, text: &str) {
        std::fs::write(path, text).expect("write");
    }

    fn append(path: &std::path::Path, text: &str) {
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn reads_every_line_once_including_a_last_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        let mut text: String = (0..5_000).map(line).collect();
        text.push_str(line(5_000).trim_end());
        write(&path, &text);
        let config = config(&path);
        for max in [1, 7, 1024, 100_000] {
            let mut source = source(&config);
            let (items, status) = drain(&mut source, max, usize::MAX);
            assert_eq!(status, ReadStatus::Exhausted);
            assert_eq!(only_rows(&items), (0..=5_000).map(row).collect::<Vec<_>>());
            assert_eq!(source.offset(), text.len() as u64);
            assert_eq!(source.dead_letters(), 0);
            assert_eq!(items.last(), Some(&Item::Watermark(1_000 + 5_000 * 10)));
            let (again, status) = drain(&mut source, max, 3);
            assert!(again.is_empty() && status == ReadStatus::Exhausted);
        }
    }

    #[test]
    fn restore_from_a_mid_file_position_continues_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        let text: String = (0..3_000).map(line).collect();
        write(&path, &text);
        let config = config(&path);
        let (whole, _) = drain(&mut source(&config), 100, usize::MAX);
        let whole = only_rows(&whole);
        for calls in [1, 2, 13, 29] {
            let mut first = source(&config);
            let (prefix, _) = drain(&mut first, 100, calls);
            let position = Source::position(&first);
            assert_eq!(position.len(), 16);
            let mut restored = source(&config);
            Source::restore(&mut restored, &position).expect("restores");
            assert_eq!(restored.offset(), first.offset());
            let (suffix, status) = drain(&mut restored, 64, usize::MAX);
            assert_eq!(status, ReadStatus::Exhausted);
            let mut rows = only_rows(&prefix);
            rows.extend(only_rows(&suffix));
            assert_eq!(rows, whole, "cut after {calls} calls");
            // The watermark continues from the prefix's largest time.
            let first_watermark = suffix.iter().find_map(|item| match item {
                Item::Watermark(w) => Some(*w),
                _ => None,
            });
            let Value::Timestamp(last) = only_rows(&prefix).last().unwrap().values[0] else {
                panic!()
            };
            assert!(first_watermark.unwrap() > last as u64);
        }
        assert!(Source::restore(&mut source(&config), &[0; 8]).is_err());
    }

    #[test]
    fn follow_waits_for_complete_lines_and_picks_up_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        let config = FileSourceConfig {
            follow: true,
            ..config(&path)
        };
        let mut source = source(&config);
        // No file yet: idle, not an error.
        assert_eq!(drain(&mut source, 100, 5).1, ReadStatus::Idle);
        let partial = line(3);
        write(&path, &format!("{}{}{}", line(1), line(2), &partial[..10]));
        let (items, status) = drain(&mut source, 100, usize::MAX);
        assert_eq!(status, ReadStatus::Idle);
        assert_eq!(only_rows(&items), vec![row(1), row(2)]);
        assert_eq!(source.offset(), (line(1).len() + line(2).len()) as u64);
        let position = Source::position(&source);
        append(&path, &partial[10..]);
        append(&path, &(4..500).map(line).collect::<String>());
        let (items, status) = drain(&mut source, 100, usize::MAX);
        assert_eq!(status, ReadStatus::Idle);
        assert_eq!(only_rows(&items), (3..500).map(row).collect::<Vec<_>>());
        // A restored follower re-reads from the position, not from the end.
        let mut restored = self::source(&config);
        Source::restore(&mut restored, &position).unwrap();
        let (items, _) = drain(&mut restored, 1000, usize::MAX);
        assert_eq!(only_rows(&items), (3..500).map(row).collect::<Vec<_>>());
        // Truncation is refused.
        write(&path, "{}\n");
        let error = restored.read(100, |_| {}).expect_err("shrunk");
        assert!(error.contains("shrank"), "{error}");
    }

    #[test]
    fn bad_lines_become_dead_letters_with_reason_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        let lines = [
            line(0),
            "not json\n".to_owned(),
            "{\"timestamp\": \"yesterday\", \"n\": 1}\n".to_owned(),
            "\n".to_owned(),
            "[1, 2]\n".to_owned(),
            "{\"n\": 1.5}\r\n".to_owned(),
            "{\"n\": 2} trailing\n".to_owned(),
            b"{\"n\": \"\xff\"}\n"
                .iter()
                .map(|&b| b as char)
                .collect::<String>(),
            "{\"timestamp\": \"2026-01-01T00:00:00Z\", \"n\": null}\n".to_owned(),
            line(1),
        ];
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for (i, text) in lines.iter().enumerate() {
            offsets.push(bytes.len() as i64);
            if i == 7 {
                bytes.extend_from_slice(b"{\"n\": \"\xff\"}\n");
            } else {
                bytes.extend_from_slice(text.as_bytes());
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut source = source(&config(&path));
        let (items, _) = drain(&mut source, 1024, usize::MAX);
        let dead: Vec<(String, String, i64)> = items
            .iter()
            .filter_map(|item| match item {
                Item::Dead(line, error, offset) => Some((line.clone(), error.clone(), *offset)),
                _ => None,
            })
            .collect();
        let reasons: Vec<(&str, i64)> = dead.iter().map(|d| (&d.1[..], d.2)).collect();
        assert_eq!(dead.len(), 6, "{reasons:?}");
        assert_eq!(source.dead_letters(), 6);
        assert_eq!(dead[0].0, "not json");
        assert!(dead[0].1.starts_with("invalid JSON"), "{}", dead[0].1);
        assert_eq!(dead[0].2, offsets[1]);
        assert!(dead[1].1.contains("field `timestamp`") && dead[1].1.contains("not a timestamp"));
        assert_eq!(dead[1].2, offsets[2]);
        assert!(dead[2].1.contains("a JSON object"), "{}", dead[2].1);
        assert!(dead[3].1.contains("field `n`"), "{}", dead[3].1);
        assert_eq!(dead[3].0, "{\"n\": 1.5}", "the \\r is dropped");
        assert!(dead[4].1.contains("trailing"), "{}", dead[4].1);
        assert!(dead[5].1.contains("invalid JSON"), "{}", dead[5].1);
        assert_eq!(dead[5].2, offsets[7]);
        let ts = parse_timestamp("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            only_rows(&items),
            vec![
                row(0),
                Row {
                    values: vec![Value::Timestamp(ts), Value::Null, Value::Null]
                },
                row(1)
            ]
        );
    }

    #[test]
    fn lines_format_and_watermark_delay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.log");
        write(&path, "\u{feff}first line\n\nthird \"line\"\r\nlast");
        let config = FileSourceConfig {
            format: FileFormat::Lines,
            schema: None,
            time_field: None,
            ..config(&path)
        };
        let (items, status) = drain(&mut source(&config), 2, usize::MAX);
        assert_eq!(status, ReadStatus::Exhausted);
        let messages: Vec<Item> = ["first line", "", "third \"line\"", "last"]
            .iter()
            .map(|m| {
                Item::Row(Row {
                    values: vec![Value::String((*m).into())],
                })
            })
            .collect();
        assert_eq!(items, messages, "no watermarks without a time field");

        let path = dir.path().join("in.ndjson");
        write(&path, &[line(10), line(5), line(20)].concat());
        let config = FileSourceConfig {
            watermark_delay: Some("50ms".into()),
            ..self::config(&path)
        };
        let (items, _) = drain(&mut source(&config), 1, usize::MAX);
        let watermarks: Vec<u64> = items
            .iter()
            .filter_map(|item| match item {
                Item::Watermark(w) => Some(*w),
                _ => None,
            })
            .collect();
        assert_eq!(watermarks, vec![1_100 - 50, 1_200 - 50]);
    }

    #[test]
    fn other_instances_read_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        write(&path, &line(1));
        let mut other = FileSource::detached(build(&config(&path)).unwrap().0, 1);
        assert_eq!(
            drain(&mut other, 10, 3),
            (Vec::new(), ReadStatus::Exhausted)
        );
    }

    #[test]
    fn bad_configs_name_the_option() {
        let path = std::path::Path::new("/tmp/x.ndjson");
        let check = |config: FileSourceConfig, option: &str| {
            let error = build(&config).expect_err("refused");
            assert_eq!(error.option, option, "{error}");
        };
        check(
            FileSourceConfig {
                schema: None,
                ..config(path)
            },
            "schema",
        );
        check(
            FileSourceConfig {
                schema: Some(FieldTypes(vec![("a".into(), "integer".into())])),
                time_field: None,
                ..config(path)
            },
            "schema",
        );
        check(
            FileSourceConfig {
                time_field: Some("n".into()),
                ..config(path)
            },
            "time_field",
        );
        check(
            FileSourceConfig {
                time_field: Some("when".into()),
                ..config(path)
            },
            "time_field",
        );
        check(
            FileSourceConfig {
                watermark_delay: Some("5".into()),
                ..config(path)
            },
            "watermark_delay",
        );
        check(
            FileSourceConfig {
                format: FileFormat::Lines,
                time_field: None,
                ..config(path)
            },
            "schema",
        );
        check(
            FileSourceConfig {
                path: " ".into(),
                ..config(path)
            },
            "path",
        );
        let lines = FileSourceConfig {
            format: FileFormat::Lines,
            schema: Some(FieldTypes(vec![("message".into(), "string".into())])),
            time_field: None,
            ..config(path)
        };
        assert_eq!(
            build(&lines).unwrap().1,
            Schema::new([("message", Type::String)])
        );
    }

    #[test]
    fn toml_schema_keeps_the_written_order() {
        let text = r#"
            path = "/var/log/app.ndjson"
            schema = { zeta = "string", timestamp = "timestamp", alpha = "ip", mid = "int" }
            time_field = "timestamp"
            follow = true
        "#;
        let config: FileSourceConfig = toml::from_str(text).expect("parses");
        let (spec, schema) = build(&config).expect("valid");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["zeta", "timestamp", "alpha", "mid"]);
        assert_eq!(spec.time_index, Some(1));
        assert!(spec.follow);
        let round_trip: FileSourceConfig =
            toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(round_trip, config);
        let json: FileSourceConfig = serde_json::from_str(
            r#"{"path": "x", "schema": {"b": "int", "a": "string"}, "format": "ndjson"}"#,
        )
        .unwrap();
        assert_eq!(
            json.schema.unwrap().0,
            vec![("b".into(), "int".into()), ("a".into(), "string".into())]
        );
        assert!(toml::from_str::<FileSourceConfig>("path = \"x\"\nfollw = true").is_err());
        assert_eq!(
            dead_letter_schema(),
            Schema::new([
                ("line", Type::String),
                ("error", Type::String),
                ("offset", Type::Int)
            ])
        );
    }
}
