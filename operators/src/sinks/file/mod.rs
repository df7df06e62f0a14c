//! [`FileSink`]: NDJSON files, one per shard and epoch, published
//! atomically when the epoch commits.
//!
//! # Layout
//! ```text
//! PATH/shard-{S:03}-epoch-{E:010}.ndjson            committed, visible
//! PATH/.staging/shard-{S:03}-epoch-{E:010}.ndjson   being written, or pre-committed
//! ```
//! A reader lists `PATH` and sees only whole epochs that committed; the
//! zero-padded numbers sort by name in shard and epoch order.
//!
//! # Life of an epoch (the protocol is in `docs/exactly-once.md`)
//! 1. [`write`](weir_runtime::Sink::write) appends one JSON object per
//!    record and line to the staged file of the current epoch, through a
//!    buffered writer. The file is created on the first record, so an epoch
//!    without records makes no file at all.
//! 2. [`FileSink::precommit`] flushes and fsyncs the staged file (renamed
//!    first if the epoch it is given is not the one it was writing), fsyncs
//!    `.staging/` (the file's entry must be durable too) and returns a
//!    [`Staged`] to log. As a [`Sink`], the sink splits this: `precommit`
//!    only flushes and renames ([`FileSink::stage`]), and `Sink::sync`
//!    ([`Staged::sync`]) does the two fsyncs on a blocking thread, before
//!    the epoch counts as durable. The next epoch's file is again created lazily. An
//!    empty epoch returns a `Staged` with `lines == 0`, whose commit does
//!    nothing.
//! 3. [`Staged::commit`] (also [`FileSink::commit`]) renames the staged
//!    file to its target and fsyncs `PATH`. It is idempotent.
//! 4. At start-up, [`FileSink::discard_uncommitted`] deletes this shard's
//!    staged files of epochs after the last committed one: they are
//!    produced again. [`FileSink::for_shard`] does this and starts at the
//!    next epoch.
//!
//! As a [`Sink`], `precommit` returns the [`Staged`] as bytes (nothing for
//! an empty epoch, so nothing is logged) and `commit` decodes and publishes
//! them.
//!
//! # Errors
//! `Sink::write` cannot return an error. The first I/O error it meets is
//! kept, later records of the epoch are dropped, and the next `precommit`
//! returns the error, so the epoch never commits. Every error names its
//! file.

mod json_line;
mod staged;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use weir_runtime::Partition;
use weir_runtime::{ArchivedRecord, Batch, OperatorError, Record, ShardContext, Sink};

use crate::component::{Input, Node, Stream};
use crate::latency::ObservedSink;
use crate::limits::FILE_WRITE_BUFFER_BYTES;
use crate::records::GeneratedEvent;

pub use crate::records::{ArchivedWindowRow, WindowRow};
pub use json_line::ToJsonLine;
pub use staged::{
    commit_encoded, file_name_with, parse_any_file_name, sync_encoded, Staged, StagedDecodeError,
    Staging,
};

pub(crate) use staged::at;

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

/// The open staged file of the current epoch.
#[derive(Debug)]
struct Open {
    writer: BufWriter<File>,
    path: PathBuf,
    lines: u64,
}

/// Writes records of type `T` as NDJSON; see the module docs.
#[derive(Debug)]
pub struct FileSink<T> {
    staging: Staging,
    open: Option<Open>,
    /// The first write error of the current epoch.
    error: Option<io::Error>,
    /// One batch's lines, reused.
    lines: Vec<u8>,
    _record: PhantomData<fn(T)>,
}

impl<T> FileSink<T> {
    /// The sink of `shard`, writing under `directory`, starting with
    /// `epoch` (the last committed epoch plus one). Creates `directory`
    /// and its staging directory, durably (both parents are fsynced).
    pub fn new(directory: &Path, shard: usize, epoch: u64) -> io::Result<FileSink<T>> {
        Ok(FileSink {
            staging: Staging::new(directory, shard, epoch, "ndjson")?,
            open: None,
            error: None,
            lines: Vec::new(),
            _record: PhantomData,
        })
    }

    /// The epoch records are written for now.
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

    /// Appends records, one JSON object per line, to the current epoch's
    /// staged file. `Sink::write` calls this for each batch.
    pub fn write_records<'a, R>(&mut self, records: impl IntoIterator<Item = &'a R>)
    where
        R: ToJsonLine + ?Sized + 'a,
    {
        if self.error.is_some() {
            return;
        }
        self.lines.clear();
        let mut count = 0;
        for record in records {
            record.write_json(&mut self.lines);
            self.lines.push(b'\n');
            count += 1;
        }
        if count == 0 {
            return;
        }
        if let Err(error) = self.append(count) {
            self.error = Some(error);
        }
    }

    fn append(&mut self, count: u64) -> io::Result<()> {
        let open = match &mut self.open {
            Some(open) => open,
            None => {
                let path = self.staging.staged_path(self.staging.epoch());
                let file = File::create(&path).map_err(at(&path))?;
                let writer = BufWriter::with_capacity(FILE_WRITE_BUFFER_BYTES, file);
                self.open.insert(Open {
                    writer,
                    path,
                    lines: 0,
                })
            }
        };
        open.writer.write_all(&self.lines).map_err(at(&open.path))?;
        open.lines += count;
        Ok(())
    }

    /// Makes `epoch`'s output durable but invisible; see the module docs.
    /// Everything written since the previous pre-commit belongs to `epoch`,
    /// and the sink then writes for `epoch + 1`.
    ///
    /// The sink follows the epochs it is given: `epoch` is normally the one
    /// being written (epochs advance by one per barrier), but if it is not
    /// (a jump), the staged file is renamed to `epoch`'s name before it is
    /// made durable, so names always match the epoch the records belong to.
    pub fn precommit(&mut self, epoch: u64) -> io::Result<Staged> {
        let staged = self.stage(epoch)?;
        staged.sync()?;
        Ok(staged)
    }

    /// [`precommit`](FileSink::precommit) without the syncs: the staged
    /// file is written to the OS and named for `epoch`, and
    /// [`Staged::sync`] makes it durable (the runtime runs that off the
    /// shard, see `Sink::sync`).
    pub fn stage(&mut self, epoch: u64) -> io::Result<Staged> {
        let mut staged = self.staging.next_epoch(epoch);
        let open = self.open.take();
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if let Some(open) = open {
            let Open {
                writer,
                path,
                lines,
            } = open;
            // Flushing hands the lines to the OS; the file closes here.
            drop(
                writer
                    .into_inner()
                    .map_err(|error| at(&path)(error.into_error()))?,
            );
            Staging::place(&mut staged, &path, lines)?;
        }
        Ok(staged)
    }

    /// The sink of `context.shard` for a run under the epoch protocol:
    /// deletes this shard's staged files of epochs after
    /// `context.committed_epoch` (they never committed and are produced
    /// again), then starts at `committed_epoch + 1`.
    pub fn for_shard(directory: &Path, context: &ShardContext) -> io::Result<FileSink<T>> {
        FileSink::<T>::discard_uncommitted(directory, context.shard, context.committed_epoch)?;
        FileSink::new(directory, context.shard, context.committed_epoch + 1)
    }

    /// Publishes a pre-committed epoch; the same as [`Staged::commit`].
    pub fn commit(staged: &Staged) -> io::Result<()> {
        staged.commit()
    }

    /// Deletes the staged files of `shard` under `directory` whose epoch is
    /// after `committed_epoch`, and returns how many. Staged files of
    /// committed epochs are left for their (repeated) commit, and other
    /// shards' files alone. A missing staging directory holds nothing.
    pub fn discard_uncommitted(
        directory: &Path,
        shard: usize,
        committed_epoch: u64,
    ) -> io::Result<usize> {
        Staging::discard_uncommitted(directory, shard, committed_epoch)
    }

    /// Flushes the current epoch's staged file to the OS, without syncing
    /// or publishing it; keeps the first error for the next `precommit`.
    pub fn flush(&mut self) {
        if let Some(open) = &mut self.open {
            if let Err(error) = open.writer.flush().map_err(at(&open.path)) {
                self.error.get_or_insert(error);
            }
        }
    }
}

impl<T> Sink for FileSink<T>
where
    T: Record,
    ArchivedRecord<T>: ToJsonLine,
{
    type Input = T;

    fn write(&mut self, _port: usize, batch: &Batch<T>) {
        self.write_records(batch.iter());
    }

    /// Flushes what is staged; publishing it is the epoch protocol's job.
    fn finish(&mut self) {
        self.flush();
    }

    /// [`FileSink::stage`], encoded with [`Staged::to_bytes`]; an epoch
    /// that staged no lines returns nothing, so nothing is logged for it.
    /// The syncs run in [`sync`](Sink::sync), off the shard.
    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let staged = FileSink::stage(self, epoch)?;
        if staged.lines == 0 {
            return Ok(Vec::new());
        }
        Ok(staged.to_bytes())
    }

    /// Decodes a [`Staged`] and makes it durable ([`Staged::sync`]).
    fn sync(staged: &[u8]) -> Result<(), OperatorError> {
        sync_encoded(staged)
    }

    /// Decodes a [`Staged`] and publishes it ([`Staged::commit`],
    /// idempotent). Empty bytes (an empty epoch) publish nothing.
    fn commit(staged: &[u8], _control: &weir_runtime::CommitControl) -> Result<(), OperatorError> {
        commit_encoded(staged)
    }
}

/// The node of a `file` sink of generator or ingest events (with their
/// latency recorded, `crate::latency`), or of `size_ms` window rows.
pub(crate) fn typed_node(stream: &Stream, directory: &Path) -> Box<dyn Node> {
    let directory = directory.to_owned();
    match stream {
        Stream::Events => Box::new(EventFileNode(directory)),
        _ => Box::new(WindowRowFileNode(directory)),
    }
}

/// A `file` sink of events under its directory.
struct EventFileNode(PathBuf);

/// A `file` sink of `size_ms` window rows under its directory.
struct WindowRowFileNode(PathBuf);

/// Opens the typed file sink of `context`'s shard, or panics naming it.
fn open_sink<T: Record>(directory: &Path, node: &str, context: &ShardContext) -> FileSink<T>
where
    ArchivedRecord<T>: ToJsonLine,
{
    FileSink::<T>::for_shard(directory, context).unwrap_or_else(|io_error| {
        panic!(
            "sinks.{node}: cannot open the file sink at {} on shard {}: {io_error}",
            directory.display(),
            context.shard
        )
    })
}

impl Node for EventFileNode {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let (directory, node) = (self.0.clone(), name.to_owned());
        graph.sink(name, move |context| {
            let sink = open_sink::<GeneratedEvent>(&directory, &node, context);
            ObservedSink::new(sink, context)
        });
        for input in inputs {
            graph.connect_port::<GeneratedEvent>(&input.node, input.port, name, Partition::Forward);
        }
    }
}

impl Node for WindowRowFileNode {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let (directory, node) = (self.0.clone(), name.to_owned());
        graph.sink(name, move |context| {
            open_sink::<WindowRow>(&directory, &node, context)
        });
        for input in inputs {
            graph.connect_port::<WindowRow>(&input.node, input.port, name, Partition::Forward);
        }
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
