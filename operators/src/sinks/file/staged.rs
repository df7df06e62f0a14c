//! [`Staged`]: what a file sink's pre-commit made durable, and how to
//! publish it.
//!
//! A `Staged` is logged in the WAL as `SINK_PRECOMMIT` and handed to
//! [`Staged::commit`] once its epoch is committed, possibly again after a
//! crash, so committing is idempotent.
//!
//! # Byte format (version 1, little-endian)
//! ```text
//! u8  version = 1
//! u64 epoch
//! u64 shard
//! u64 lines          0: the epoch staged nothing, commit does nothing
//! u32 length, bytes  staged path (the OS's bytes)
//! u32 length, bytes  target path
//! ```

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use weir_runtime::OperatorError;

use crate::limits::STAGED_PATH_MAX_BYTES;

/// The version byte of the encoding.
const STAGED_FORMAT_VERSION: u8 = 1;

/// One epoch's output of one sink instance, durable and not yet visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// The epoch.
    pub epoch: u64,
    /// The shard that wrote it.
    pub shard: u64,
    /// Lines in the file; 0 means no file was made.
    pub lines: u64,
    /// Where it was written, under `.staging/`.
    pub staged: PathBuf,
    /// Where commit publishes it.
    pub target: PathBuf,
}

/// Bytes that are not an encoded [`Staged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedDecodeError(pub &'static str);

impl std::fmt::Display for StagedDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a staged file record: {}", self.0)
    }
}

impl std::error::Error for StagedDecodeError {}

impl From<StagedDecodeError> for OperatorError {
    fn from(error: StagedDecodeError) -> OperatorError {
        OperatorError::invalid(error.to_string())
    }
}

impl Staged {
    /// Encodes it for the WAL; see the module docs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let staged = self.staged.as_os_str().as_bytes();
        let target = self.target.as_os_str().as_bytes();
        assert!(staged.len() <= STAGED_PATH_MAX_BYTES && target.len() <= STAGED_PATH_MAX_BYTES);
        let mut bytes = Vec::with_capacity(1 + 3 * 8 + 2 * 4 + staged.len() + target.len());
        bytes.push(STAGED_FORMAT_VERSION);
        for number in [self.epoch, self.shard, self.lines] {
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        for path in [staged, target] {
            bytes.extend_from_slice(&(path.len() as u32).to_le_bytes());
            bytes.extend_from_slice(path);
        }
        bytes
    }

    /// Decodes what [`to_bytes`](Staged::to_bytes) made.
    pub fn from_bytes(bytes: &[u8]) -> Result<Staged, StagedDecodeError> {
        let mut reader = Reader(bytes);
        if reader.take(1)? != [STAGED_FORMAT_VERSION] {
            return Err(StagedDecodeError("unknown version"));
        }
        let epoch = reader.u64()?;
        let shard = reader.u64()?;
        let lines = reader.u64()?;
        let staged = reader.path()?;
        let target = reader.path()?;
        if !reader.0.is_empty() {
            return Err(StagedDecodeError("trailing bytes"));
        }
        Ok(Staged {
            epoch,
            shard,
            lines,
            staged,
            target,
        })
    }

    /// Makes the staged file and its name durable: fsyncs the file and
    /// the staging directory. Idempotent. An epoch without lines has no
    /// file and needs nothing.
    pub fn sync(&self) -> io::Result<()> {
        if self.lines == 0 {
            return Ok(());
        }
        File::open(&self.staged)
            .and_then(|file| file.sync_all())
            .map_err(at(&self.staged))?;
        match self.staged.parent() {
            Some(staging) => sync_directory(staging),
            None => Ok(()),
        }
    }

    /// Publishes the staged file: renames it to its target, then fsyncs the
    /// target's directory so the rename survives a crash.
    ///
    /// Idempotent: a missing staged file whose target exists was committed
    /// already (the directory is fsynced again, in case the crash came
    /// between rename and fsync). Both missing is an error: the output is
    /// lost. An epoch that staged no lines has nothing to publish.
    pub fn commit(&self) -> io::Result<()> {
        if self.lines == 0 {
            return Ok(());
        }
        match fs::rename(&self.staged, &self.target) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if !self.target.try_exists().map_err(at(&self.target))? {
                    let message = format!(
                        "cannot commit epoch {}: neither the staged file {} nor its target {} exists",
                        self.epoch,
                        self.staged.display(),
                        self.target.display()
                    );
                    return Err(io::Error::new(io::ErrorKind::NotFound, message));
                }
            }
            Err(error) => return Err(at(&self.staged)(error)),
        }
        sync_directory(parent_of(&self.target))
    }
}

/// [`Sink::sync`](weir_runtime::Sink::sync) of a sink whose pre-commit
/// bytes are an encoded [`Staged`] (nothing for an empty epoch): decodes
/// and [`Staged::sync`]s it.
pub fn sync_encoded(staged: &[u8]) -> Result<(), OperatorError> {
    if staged.is_empty() {
        return Ok(());
    }
    Ok(Staged::from_bytes(staged)?.sync()?)
}

/// [`Sink::commit`](weir_runtime::Sink::commit) of a sink whose pre-commit
/// bytes are an encoded [`Staged`]: decodes and [`Staged::commit`]s it
/// (idempotent). Empty bytes (an empty epoch) publish nothing.
pub fn commit_encoded(staged: &[u8]) -> Result<(), OperatorError> {
    if staged.is_empty() {
        return Ok(());
    }
    Ok(Staged::from_bytes(staged)?.commit()?)
}

/// The directories and epoch bookkeeping of one shard's exactly-once file
/// sink ([`RowFileSink`](super::RowFileSink)), whatever format it writes.
///
/// A sink writes the current [`epoch`](Staging::epoch)'s output to
/// [`staged_path`](Staging::staged_path) (creating the file lazily), and at
/// pre-commit calls [`next_epoch`](Staging::next_epoch) and, if it wrote a
/// file, [`place`](Staging::place); the [`Staged`] it gets is what the
/// epoch protocol logs, syncs and commits.
#[derive(Debug)]
pub struct Staging {
    directory: PathBuf,
    staging: PathBuf,
    shard: usize,
    /// The epoch output is written for now.
    epoch: u64,
    /// The file name extension, without the dot (`ndjson`, `parquet`).
    extension: &'static str,
}

impl Staging {
    /// The staging of `shard` under `directory`, naming files
    /// `*.{extension}`, starting with `epoch`. Creates `directory` and its
    /// staging directory, durably (both parents are fsynced).
    pub fn new(
        directory: &Path,
        shard: usize,
        epoch: u64,
        extension: &'static str,
    ) -> io::Result<Staging> {
        let staging = directory.join(super::STAGING_DIRECTORY);
        fs::create_dir_all(&staging).map_err(at(&staging))?;
        sync_directory(parent_of(directory))?;
        sync_directory(directory)?;
        Ok(Staging {
            directory: directory.to_owned(),
            staging,
            shard,
            epoch,
            extension,
        })
    }

    /// The staging of `context.shard` for a run under the epoch protocol:
    /// [`discard_uncommitted`](Staging::discard_uncommitted) for
    /// `context.committed_epoch`, then [`new`](Staging::new) at the next
    /// epoch.
    pub fn for_shard(
        directory: &Path,
        context: &weir_runtime::ShardContext,
        extension: &'static str,
    ) -> io::Result<Staging> {
        Staging::discard_uncommitted(directory, context.shard, context.committed_epoch)?;
        Staging::new(
            directory,
            context.shard,
            context.committed_epoch + 1,
            extension,
        )
    }

    /// The epoch output is written for now.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The shard.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The file name of this shard's output of `epoch`.
    pub fn file_name(&self, epoch: u64) -> String {
        file_name_with(self.shard, epoch, self.extension)
    }

    /// Where `epoch`'s file of this shard is staged.
    pub fn staged_path(&self, epoch: u64) -> PathBuf {
        self.staging.join(self.file_name(epoch))
    }

    /// Where `epoch`'s file of this shard is published.
    pub fn target_path(&self, epoch: u64) -> PathBuf {
        self.directory.join(self.file_name(epoch))
    }

    /// Ends the current epoch as `epoch` (output is written for
    /// `epoch + 1` from now on) and returns its [`Staged`], with no lines
    /// yet: [`place`](Staging::place) the file written, if any.
    pub fn next_epoch(&mut self, epoch: u64) -> Staged {
        self.epoch = epoch.saturating_add(1);
        Staged {
            epoch,
            shard: self.shard as u64,
            lines: 0,
            staged: self.staged_path(epoch),
            target: self.target_path(epoch),
        }
    }

    /// Records that `staged`'s epoch wrote `path`, closed, holding `lines`
    /// records: renames it to `staged.staged` if it was written under
    /// another epoch's name (the sink follows the epochs it is given).
    pub fn place(staged: &mut Staged, path: &Path, lines: u64) -> io::Result<()> {
        if path != staged.staged {
            fs::rename(path, &staged.staged).map_err(at(path))?;
        }
        staged.lines = lines;
        Ok(())
    }

    /// Deletes the staged files (and roll manifests) of `shard` under
    /// `directory` whose epoch is after `committed_epoch`, whatever their
    /// extension, and returns how
    /// many. Staged files of committed epochs are left for their
    /// (repeated) commit, and other shards' files alone. A missing staging
    /// directory holds nothing.
    pub fn discard_uncommitted(
        directory: &Path,
        shard: usize,
        committed_epoch: u64,
    ) -> io::Result<usize> {
        let staging = directory.join(super::STAGING_DIRECTORY);
        let entries = match fs::read_dir(&staging) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(at(&staging)(error)),
        };
        let mut deleted = 0;
        for entry in entries {
            let entry = entry.map_err(at(&staging))?;
            let name = entry.file_name();
            // Staged files, and the manifests of rolls (`rolling.rs`).
            let parsed = name
                .to_str()
                .and_then(|name| parse_any_file_name(name).or_else(|| parse_manifest_name(name)));
            let Some((owner, epoch)) = parsed else {
                continue;
            };
            if owner == shard && epoch > committed_epoch {
                let path = entry.path();
                fs::remove_file(&path).map_err(at(&path))?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            sync_directory(&staging)?;
        }
        Ok(deleted)
    }
}

/// The file name of `shard`'s output of `epoch` with `extension`:
/// `shard-{S:03}-epoch-{E:010}.{extension}`.
pub fn file_name_with(shard: usize, epoch: u64, extension: &str) -> String {
    format!("shard-{shard:03}-epoch-{epoch:010}.{extension}")
}

/// The manifest name of `shard`'s roll at `epoch`.
pub(crate) fn manifest_name(shard: usize, epoch: u64) -> String {
    format!("shard-{shard:03}-roll-{epoch:010}.manifest")
}

/// Parses a [`manifest_name`] back into `(shard, epoch)`.
pub(crate) fn parse_manifest_name(name: &str) -> Option<(usize, u64)> {
    let rest = name.strip_prefix("shard-")?.strip_suffix(".manifest")?;
    let (shard, epoch) = rest.split_once("-roll-")?;
    Some((shard.parse().ok()?, epoch.parse().ok()?))
}

/// Parses a [`file_name_with`] of any extension back into `(shard, epoch)`.
pub fn parse_any_file_name(name: &str) -> Option<(usize, u64)> {
    let (stem, _extension) = name.strip_prefix("shard-")?.split_once('.')?;
    let (shard, epoch) = stem.split_once("-epoch-")?;
    Some((shard.parse().ok()?, epoch.parse().ok()?))
}

/// Fsyncs a directory, so the entries created, renamed or removed in it
/// are durable.
pub(crate) fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(at(directory))
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Prefixes an I/O error with the path it concerns.
pub(crate) fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |error| io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Reads an encoded `Staged` (or a rolling `Precommit`) front to back.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, count: usize) -> Result<&'a [u8], StagedDecodeError> {
        if self.0.len() < count {
            return Err(StagedDecodeError("too short"));
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(taken)
    }

    pub(super) fn u64(&mut self) -> Result<u64, StagedDecodeError> {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(bytes))
    }

    pub(super) fn u32(&mut self) -> Result<u32, StagedDecodeError> {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(bytes))
    }

    /// A byte that is 0 or 1.
    pub(super) fn flag(&mut self) -> Result<bool, StagedDecodeError> {
        match self.take(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(StagedDecodeError("bad flag")),
        }
    }

    pub(super) fn path(&mut self) -> Result<PathBuf, StagedDecodeError> {
        let length = self.u32()? as usize;
        if length > STAGED_PATH_MAX_BYTES {
            return Err(StagedDecodeError("path too long"));
        }
        Ok(PathBuf::from(OsStr::from_bytes(self.take(length)?)))
    }
}
