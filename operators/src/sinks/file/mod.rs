//! [`RowFileSink`]: rows as NDJSON or Parquet files, each shard's output
//! of many epochs published as one file by age and size (rolling), and
//! exactly once.
//!
//! # Configuration
//! ```toml
//! [sinks.archive]
//! type = "file"              # the integrator's tag; not part of this struct
//! inputs = ["parse"]
//! path = "out/archive"       # the directory files are published in
//! format = "parquet"         # "ndjson" (default) or "parquet"
//! compression = "zstd"       # parquet only: "none" (default), "snappy", "zstd"
//! row_group_rows = 65536     # parquet only: rows per row group at most
//! roll_interval = "60s"      # publish once the oldest row is this old (default); "0s": every epoch
//! roll_size = "128MiB"       # or once this many bytes wait (default: none)
//! ```
//!
//! # Layout and protocol
//! Through [`Staging`] (`staged.rs`) and the rolling protocol
//! (`rolling.rs`, which has the crash argument):
//! ```text
//! PATH/shard-{S:03}-epoch-{FIRST:010}.{ndjson|parquet}       published: a part, named by its first epoch
//! PATH/.staging/shard-{S:03}-epoch-{E:010}.{ndjson|parquet}  epoch E's rows (a chunk), being written or waiting
//! PATH/.staging/shard-{S:03}-roll-{E:010}.manifest           the chunks the roll at epoch E publishes
//! ```
//! Records of an epoch go to that epoch's staged chunk, created on the
//! epoch's first row: an epoch without rows makes no chunk (no empty
//! Parquet file either). `precommit` closes the chunk (for Parquet: writes
//! the last row group and the footer), adds it to the shard's open part
//! and, when the part is due ([`RollPolicy`]; or the run ends), logs a roll
//! of it; `sync` fsyncs the chunk, writes the roll's manifest and fsyncs
//! `.staging/` off the shard; `commit` publishes a roll (a rename, or a
//! join then a rename) and is idempotent. At start-up
//! ([`RowFileSink::new`]) this shard's chunks and manifests of epochs after
//! the last committed one are deleted (their rows are produced again by the
//! replay), and its committed chunks that no committed roll claims become
//! its open part again. A reader that lists `PATH` (ignoring dot files)
//! thus sees every row exactly once, once its part is published.
//!
//! Output is published by the epoch protocol only, so only when the
//! runtime has a data directory; without one, files stay staged (and
//! Parquet files lack their footer).
//!
//! # Formats
//! - `ndjson`: one JSON object per row and line, fields named by the input
//!   schema, null fields left out, timestamps as RFC 3339 text
//!   ([`write_row_json`]).
//! - `parquet`: one row per row, every schema field an `OPTIONAL` column;
//!   see [`parquet_schema`] for the type mapping
//!   (timestamps `INT64 TIMESTAMP(MILLIS, UTC)`, IPs as text, lists and
//!   maps as JSON text). Rows are written in row groups of at most
//!   `row_group_rows` rows; an epoch's last row group may be smaller.
//!
//! # Errors
//! `Sink::write` cannot return an error: the first I/O or Parquet error of
//! an epoch is kept, later rows of the epoch are dropped, and `precommit`
//! returns it, so the epoch never commits and the run fails. Errors name
//! their file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::TypePtr;
use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, OperatorError, ShardContext, Sink};

mod columns;
mod rolling;
mod staged;

use rolling::Part;
pub use rolling::{Chunk, Precommit, Roll, RollPolicy, Size};

pub use columns::parquet_schema;
pub use staged::{
    commit_encoded, file_name_with, parse_any_file_name, sync_encoded, Staged, StagedDecodeError,
    Staging,
};

pub(crate) use staged::at;

use crate::component::{connect_forward, Component, Input, Node, PlanContext, Planned};
use crate::limits::{FILE_WRITE_BUFFER_BYTES, ROLL_INTERVAL_DEFAULT_MS, ROW_GROUP_DEFAULT_ROWS};
use crate::row::{write_row_json, OptionError, Row, Schema, SchemaRef};
use columns::Columns;

/// The staging directory's name under the sink's `PATH`.
pub const STAGING_DIRECTORY: &str = ".staging";

/// The file name of `shard`'s output of `epoch`, staged or committed.
pub fn file_name(shard: usize, epoch: u64) -> String {
    file_name_with(shard, epoch, "ndjson")
}

/// Parses a [`file_name`] back into `(shard, epoch)`.
pub fn parse_file_name(name: &str) -> Option<(usize, u64)> {
    let rest = name.strip_prefix("shard-")?.strip_suffix(".ndjson")?;
    let (shard, epoch) = rest.split_once("-epoch-")?;
    Some((shard.parse().ok()?, epoch.parse().ok()?))
}

/// The configuration of a [`RowFileSink`] (a `[sinks.NAME]` table without
/// its `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFileSinkConfig {
    /// Components whose output this one reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The directory files are published in (created if missing).
    pub path: PathBuf,
    /// The file format.
    #[serde(default)]
    pub format: RowFileFormat,
    /// Parquet only: how column chunks are compressed; `none` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<ParquetCompression>,
    /// Parquet only: rows per row group at most
    /// ([`ROW_GROUP_DEFAULT_ROWS`] if absent); must be positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_group_rows: Option<usize>,
    /// Publish a shard's output as one file once its first epoch's rows
    /// are this old (`"60s"` if absent; `"0s"`: a file per shard and
    /// epoch, published when the epoch commits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll_interval: Option<String>,
    /// Publish a shard's output as one file once it holds this many bytes
    /// (`134217728`, `"128MiB"`); by age only if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll_size: Option<Size>,
}

/// The format of a [`RowFileSink`]'s files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowFileFormat {
    /// One JSON object per line.
    #[default]
    Ndjson,
    /// Apache Parquet.
    Parquet,
}

impl RowFileFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            RowFileFormat::Ndjson => "ndjson",
            RowFileFormat::Parquet => "parquet",
        }
    }
}

/// How Parquet column chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    /// Uncompressed.
    #[default]
    None,
    /// Snappy: fast, modest ratio.
    Snappy,
    /// Zstandard at its default level: better ratio, a little slower.
    Zstd,
}

impl ParquetCompression {
    fn codec(self) -> Compression {
        match self {
            ParquetCompression::None => Compression::UNCOMPRESSED,
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        }
    }
}

/// A checked [`RowFileSinkConfig`]: what every shard's [`RowFileSink`] is
/// made from.
#[derive(Debug, Clone)]
pub struct RowFileSpec {
    /// The directory files are published in.
    pub directory: PathBuf,
    /// The format.
    pub format: RowFileFormat,
    /// The input's schema.
    pub schema: SchemaRef,
    /// Parquet's file schema and writer properties.
    parquet: Option<ParquetSpec>,
    /// When a shard's output is published as a file.
    pub roll: RollPolicy,
}

#[derive(Debug, Clone)]
struct ParquetSpec {
    schema: TypePtr,
    properties: WriterPropertiesPtr,
    row_group_rows: usize,
}

/// Checks `config` against the input's `schema` and makes the spec of its
/// sinks. Errors name the option: `path` (empty), `compression` and
/// `row_group_rows` (given for `ndjson`, or zero), `format` (a Parquet
/// schema needs a field).
pub fn build(config: &RowFileSinkConfig, input: &Schema) -> Result<RowFileSpec, OptionError> {
    if config.path.as_os_str().is_empty() {
        return Err(OptionError::new("path", "the output directory is empty"));
    }
    let interval_ms = match &config.roll_interval {
        Some(text) => crate::duration::parse_ms(text)
            .map_err(|message| OptionError::new("roll_interval", message))?,
        None => ROLL_INTERVAL_DEFAULT_MS,
    };
    let size = match &config.roll_size {
        Some(size) => match size.bytes() {
            Ok(0) => {
                return Err(OptionError::new(
                    "roll_size",
                    "`roll_size` must be more than zero bytes",
                ))
            }
            Ok(bytes) => Some(bytes),
            Err(message) => return Err(OptionError::new("roll_size", message)),
        },
        None => None,
    };
    let roll = RollPolicy {
        interval: std::time::Duration::from_millis(interval_ms),
        size,
    };
    let parquet = match config.format {
        RowFileFormat::Ndjson => {
            for (option, given) in [
                ("compression", config.compression.is_some()),
                ("row_group_rows", config.row_group_rows.is_some()),
            ] {
                if given {
                    return Err(OptionError::new(
                        option,
                        format!("`{option}` applies to `format = \"parquet\"` only"),
                    ));
                }
            }
            None
        }
        RowFileFormat::Parquet => {
            let row_group_rows = config.row_group_rows.unwrap_or(ROW_GROUP_DEFAULT_ROWS);
            if row_group_rows == 0 {
                return Err(OptionError::new(
                    "row_group_rows",
                    "`row_group_rows` must be positive",
                ));
            }
            if input.is_empty() {
                return Err(OptionError::new(
                    "format",
                    "a Parquet file needs at least one column, and the input has no fields",
                ));
            }
            let schema = parquet_schema(input).map_err(|error| {
                OptionError::new(
                    "format",
                    format!("no Parquet schema for the input: {error}"),
                )
            })?;
            let properties = WriterProperties::builder()
                .set_created_by(concat!("weir ", env!("CARGO_PKG_VERSION")).into())
                .set_compression(config.compression.unwrap_or_default().codec())
                .set_max_row_group_row_count(Some(row_group_rows))
                .build();
            Some(ParquetSpec {
                schema,
                properties: Arc::new(properties),
                row_group_rows,
            })
        }
    };
    Ok(RowFileSpec {
        directory: config.path.clone(),
        format: config.format,
        schema: Arc::new(input.clone()),
        parquet,
        roll,
    })
}

/// The open staged file of the current epoch.
enum Open {
    Ndjson(BufWriter<File>),
    Parquet(Box<SerializedFileWriter<BufWriter<File>>>),
}

/// The staged file being written: its writer, path and rows.
struct OpenFile {
    open: Open,
    path: PathBuf,
    rows: u64,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Writes rows to exactly-once files; see the module docs.
#[derive(Debug)]
pub struct RowFileSink {
    staging: Staging,
    spec: RowFileSpec,
    open: Option<OpenFile>,
    /// The first error of the current epoch.
    error: Option<io::Error>,
    /// NDJSON: one batch's lines, reused.
    lines: String,
    /// Parquet: rows of the row group being filled.
    columns: Option<Columns>,
    /// The epochs' files not yet published (see `rolling.rs`).
    part: Part,
    /// The run ends: the next pre-commit publishes the part.
    closing: bool,
    /// The size of the file the last [`stage`](RowFileSink::stage) closed.
    staged_bytes: u64,
}

/// A Parquet error as an I/O error naming `path`.
fn parquet_error(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> io::Error + '_ {
    move |error| io::Error::other(format!("{}: {error}", path.display()))
}

impl RowFileSink {
    /// The sink of `context.shard`: deletes this shard's staged files of
    /// epochs after `context.committed_epoch` (they are produced again),
    /// creates the directories, and starts at the next epoch.
    pub fn new(spec: RowFileSpec, context: &ShardContext) -> io::Result<RowFileSink> {
        let staging = Staging::for_shard(&spec.directory, context, spec.format.extension())?;
        let open = rolling::open_part(
            &spec.directory.join(STAGING_DIRECTORY),
            context.shard,
            context.committed_epoch,
        )?;
        let mut sink = RowFileSink::with_staging(spec, staging);
        sink.part = Part::adopt(open);
        Ok(sink)
    }

    /// The sink of `shard` starting at `epoch`, without discarding
    /// anything (for tests and tools; [`new`](RowFileSink::new) is what a
    /// run uses).
    pub fn at_epoch(spec: RowFileSpec, shard: usize, epoch: u64) -> io::Result<RowFileSink> {
        let staging = Staging::new(&spec.directory, shard, epoch, spec.format.extension())?;
        Ok(RowFileSink::with_staging(spec, staging))
    }

    fn with_staging(spec: RowFileSpec, staging: Staging) -> RowFileSink {
        let columns = spec
            .parquet
            .as_ref()
            .map(|parquet| Columns::new(&spec.schema, parquet.row_group_rows));
        RowFileSink {
            staging,
            spec,
            open: None,
            error: None,
            lines: String::new(),
            columns,
            part: Part::default(),
            closing: false,
            staged_bytes: 0,
        }
    }

    /// The epoch rows are written for now.
    pub fn epoch(&self) -> u64 {
        self.staging.epoch()
    }

    /// Where `epoch`'s file of this shard is staged.
    pub fn staged_path(&self, epoch: u64) -> PathBuf {
        self.staging.staged_path(epoch)
    }

    /// Where `epoch`'s file of this shard is published.
    pub fn target_path(&self, epoch: u64) -> PathBuf {
        self.staging.target_path(epoch)
    }

    /// Appends rows to the current epoch's staged file.
    pub fn write_rows<'a>(&mut self, rows: impl IntoIterator<Item = &'a crate::row::ArchivedRow>) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = self.append(rows) {
            self.error = Some(error);
            if let Some(columns) = &mut self.columns {
                columns.clear();
            }
        }
    }

    fn append<'a>(
        &mut self,
        rows: impl IntoIterator<Item = &'a crate::row::ArchivedRow>,
    ) -> io::Result<()> {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some(self.create()?);
        }
        let Some(file) = &mut self.open else {
            unreachable!("opened above");
        };
        match &mut file.open {
            Open::Ndjson(writer) => {
                self.lines.clear();
                let mut count = 0;
                for row in rows {
                    write_row_json(row, &self.spec.schema, &mut self.lines);
                    self.lines.push('\n');
                    count += 1;
                }
                writer
                    .write_all(self.lines.as_bytes())
                    .map_err(at(&file.path))?;
                file.rows += count;
            }
            Open::Parquet(writer) => {
                let columns = self.columns.as_mut().expect("parquet sinks buffer columns");
                for row in rows {
                    columns.push(row);
                    file.rows += 1;
                    if columns.is_full() {
                        columns
                            .write_row_group(writer)
                            .map_err(parquet_error(&file.path))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates the current epoch's staged file.
    fn create(&self) -> io::Result<OpenFile> {
        let path = self.staging.staged_path(self.staging.epoch());
        let file = File::create(&path).map_err(at(&path))?;
        let buffered = BufWriter::with_capacity(FILE_WRITE_BUFFER_BYTES, file);
        let open = match &self.spec.parquet {
            None => Open::Ndjson(buffered),
            Some(parquet) => Open::Parquet(Box::new(
                SerializedFileWriter::new(
                    buffered,
                    parquet.schema.clone(),
                    parquet.properties.clone(),
                )
                .map_err(parquet_error(&path))?,
            )),
        };
        Ok(OpenFile {
            open,
            path,
            rows: 0,
        })
    }

    /// Ends `epoch`: closes its staged file (Parquet: the last row group
    /// and the footer), names it for `epoch`, and returns what to sync and
    /// commit (`lines` is the row count, 0 when the epoch had no rows and
    /// made no file). The sink then writes for `epoch + 1`. Nothing is
    /// fsynced here ([`Staged::sync`] does that).
    pub fn stage(&mut self, epoch: u64) -> io::Result<Staged> {
        let mut staged = self.staging.next_epoch(epoch);
        let open = self.open.take();
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let Some(OpenFile { open, path, rows }) = open else {
            return Ok(staged);
        };
        let buffered = match open {
            Open::Ndjson(writer) => writer,
            Open::Parquet(mut writer) => {
                let columns = self.columns.as_mut().expect("parquet sinks buffer columns");
                let written = columns
                    .write_row_group(&mut writer)
                    .and_then(|()| writer.into_inner());
                match written {
                    Ok(buffered) => buffered,
                    Err(error) => {
                        columns.clear();
                        return Err(parquet_error(&path)(error));
                    }
                }
            }
        };
        // Flushing hands the bytes to the OS; the file closes here.
        let file = buffered
            .into_inner()
            .map_err(|error| at(&path)(error.into_error()))?;
        self.staged_bytes = file.metadata().map_err(at(&path))?.len();
        drop(file);
        Staging::place(&mut staged, &path, rows)?;
        Ok(staged)
    }

    /// [`stage`](RowFileSink::stage) and [`Staged::sync`]: the epoch's
    /// file is durable (not yet visible) when it returns.
    pub fn precommit_durably(&mut self, epoch: u64) -> io::Result<Staged> {
        let staged = self.stage(epoch)?;
        staged.sync()?;
        Ok(staged)
    }

    /// Flushes NDJSON lines to the OS (Parquet rows stay buffered until
    /// the row group is full or the epoch ends); keeps the first error for
    /// the next `precommit`.
    pub fn flush(&mut self) {
        if let Some(OpenFile {
            open: Open::Ndjson(writer),
            path,
            ..
        }) = &mut self.open
        {
            if let Err(error) = writer.flush().map_err(at(path)) {
                self.error.get_or_insert(error);
            }
        }
    }
}

impl Sink for RowFileSink {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        self.write_rows(batch.iter());
    }

    /// Flushes NDJSON lines; closing and publishing the file is the epoch
    /// protocol's job: the final epoch's `precommit` publishes the part.
    fn finish(&mut self) {
        self.flush();
        self.closing = true;
    }

    /// [`RowFileSink::stage`]s the epoch's file into the part and, if the
    /// part is due, rolls it: a [`Precommit`] (`rolling.rs`). An epoch
    /// without rows and without a roll returns nothing, so nothing is
    /// logged for it.
    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let staged = self.stage(epoch)?;
        let chunk = (staged.lines > 0).then(|| Chunk {
            epoch,
            bytes: self.staged_bytes,
            path: staged.staged.clone(),
        });
        if let Some(chunk) = &chunk {
            self.part.push(chunk.clone());
        }
        let roll = if self.part.due(&self.spec.roll, self.closing) {
            let chunks = self.part.take();
            let first = chunks.first().map_or(epoch, |chunk| chunk.epoch);
            Some(Roll {
                target: self.staging.target_path(first),
                manifest: self
                    .spec
                    .directory
                    .join(STAGING_DIRECTORY)
                    .join(staged::manifest_name(self.staging.shard(), epoch)),
                chunks,
            })
        } else {
            None
        };
        if chunk.is_none() && roll.is_none() {
            return Ok(Vec::new());
        }
        Ok(Precommit {
            epoch,
            shard: staged.shard,
            chunk,
            roll,
        }
        .to_bytes())
    }

    /// Makes the epoch's file and the roll's manifest durable
    /// ([`Precommit::sync`]; a version-1 [`Staged`] as before).
    fn sync(staged: &[u8]) -> Result<(), OperatorError> {
        rolling::sync_any(staged)
    }

    /// Publishes the roll, if any ([`Precommit::commit`], idempotent; a
    /// version-1 [`Staged`] as before).
    fn commit(staged: &[u8], _control: &weir_runtime::CommitControl) -> Result<(), OperatorError> {
        rolling::commit_any(staged)
    }
}

impl Component for RowFileSinkConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        Ok(Planned::new(Vec::new(), build(self, &context.schema())?))
    }
}

impl Node for RowFileSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let (spec, node) = (self.clone(), name.to_owned());
        graph.sink(name, move |context| {
            RowFileSink::new(spec.clone(), context).unwrap_or_else(|io_error| {
                panic!(
                    "sinks.{node}: cannot open the file sink on shard {}: {io_error}",
                    context.shard
                )
            })
        });
        connect_forward(graph, name, inputs);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn file_names_sort_by_shard_and_epoch_and_parse_back() {
        assert_eq!(file_name(7, 42), "shard-007-epoch-0000000042.ndjson");
        assert_eq!(parse_file_name(&file_name(7, 42)), Some((7, 42)));
        assert!(file_name(1, 9) < file_name(1, 10));
        assert_eq!(parse_file_name("shard-007-epoch-x.ndjson"), None);
        assert_eq!(parse_file_name("notes.txt"), None);
    }

    #[test]
    fn any_extension_parses_for_discarding() {
        assert_eq!(
            file_name_with(7, 42, "parquet"),
            "shard-007-epoch-0000000042.parquet"
        );
        assert_eq!(
            parse_any_file_name("shard-007-epoch-0000000042.parquet"),
            Some((7, 42))
        );
        assert_eq!(parse_any_file_name(&file_name(3, 9)), Some((3, 9)));
        assert_eq!(parse_any_file_name("shard-007-epoch-0000000042"), None);
        assert_eq!(parse_any_file_name("shard-x-epoch-1.parquet"), None);
    }

    #[test]
    fn discard_removes_uncommitted_files_of_any_extension_for_this_shard_only() {
        let temporary = tempfile::tempdir().expect("temporary directory");
        let directory = temporary.path().join("out");
        let staging = Staging::new(&directory, 1, 1, "parquet").expect("staging");
        let names = [
            file_name_with(1, 2, "parquet"),
            file_name_with(1, 3, "ndjson"),
            file_name_with(1, 1, "parquet"),
            file_name_with(0, 5, "parquet"),
            "notes.txt".to_owned(),
        ];
        for name in &names {
            fs::write(directory.join(STAGING_DIRECTORY).join(name), b"x").expect("write");
        }
        assert_eq!(
            staging.staged_path(4).file_name().unwrap(),
            "shard-001-epoch-0000000004.parquet"
        );
        assert_eq!(
            Staging::discard_uncommitted(&directory, 1, 1).expect("discard"),
            2
        );
        let mut left: Vec<String> = fs::read_dir(directory.join(STAGING_DIRECTORY))
            .expect("list")
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "shard-000-epoch-0000000005.parquet",
                "shard-001-epoch-0000000001.parquet"
            ]
        );
    }
}
