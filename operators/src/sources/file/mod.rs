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
//! on the shard, in chunks of [`FILE_CHUNK_BYTES`](crate::limits::FILE_CHUNK_BYTES) (1 MiB) only when the buffer
//! has no complete line left, and each poll emits at most one batch worth
//! of lines; that is acceptable for local files (a read from the page cache
//! takes microseconds) but not for network file systems. A line longer than
//! [`FILE_LINE_MAX_BYTES`](crate::limits::FILE_LINE_MAX_BYTES) fails the run.

mod config;
mod decode;
mod reader;
mod spec;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::PathBuf;

use weir_runtime::metrics::ShardCounter;
use weir_runtime::{Emitter, OperatorError, ShardContext, Source, SourcePoll};

use crate::component::{Component, Input, Node, Output, PlanContext, Planned, DEAD_LETTER};
#[cfg(doc)]
use crate::row::value_from_json;
use crate::row::{OptionError, Row};
use decode::Decoder;

pub use config::{FieldTypes, FileFormat, FileSourceConfig};
pub use spec::{build, dead_letter_schema, FileSpec};

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

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let word = |range: std::ops::Range<usize>| -> Option<[u8; 8]> {
            position.get(range)?.try_into().ok()
        };
        let (Some(offset), Some(max_ts), 16) = (word(0..8), word(8..16), position.len()) else {
            return Err(OperatorError::invalid(format!(
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
