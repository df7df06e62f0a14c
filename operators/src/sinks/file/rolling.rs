//! Rolling: a file sink publishes the output of many epochs as one file,
//! by size and age, and stays exactly-once (as Flink's file sink does with
//! in-progress and pending parts).
//!
//! # Protocol
//! Each epoch's rows still go to that epoch's staged file under
//! `.staging/` (a *chunk*), closed and made durable by the epoch's
//! pre-commit and sync. A chunk is not published when its epoch commits:
//! it joins the shard's open *part*. The pre-commit that finds the part
//! due (`roll_interval` since its first chunk, `roll_size` bytes, or the
//! run ending) logs a *roll*: the part's chunks and the target
//! `PATH/shard-{S:03}-epoch-{FIRST:010}.{ext}`, named by the part's first
//! epoch. Its sync step writes a *manifest*
//! (`.staging/shard-{S:03}-roll-{R:010}.manifest`, the chunk names, one per
//! line) and fsyncs it before the epoch can commit. Its commit step, once
//! epoch `R` committed, publishes the part: one chunk is renamed to the
//! target; several are joined into `.staging/…tmp` (NDJSON bytes
//! concatenated, Parquet row groups spliced without re-encoding), fsynced
//! and renamed to the target; the target's directory is fsynced; then the
//! chunks and the manifest are deleted. It is idempotent: a target that
//! exists was published already, and only the deletions are repeated.
//!
//! # Crash argument
//! Let `C` be the last committed epoch at a restart. Chunks of epochs
//! after `C` and manifests of rolls after `C` never committed: the sink
//! deletes them and the replay produces those rows again. A manifest of a
//! roll `R ≤ C` was durable before `R` committed, and its roll runs again
//! (the runtime re-runs committed pre-commits whose completion it did not
//! log), so the chunks it lists are that roll's. Every other chunk of an
//! epoch `≤ C` is committed output of the part that was open: the sink
//! adopts it as its open part and publishes it with its next roll. The sink
//! reads the manifests before listing the chunks, and a roll deletes its
//! chunks before its manifest, so a roll finishing meanwhile cannot make a
//! listed chunk look unclaimed. Each committed row is thus in exactly one
//! published file, once its part rolls.
//!
//! Pre-commit payloads of version 1 ([`Staged`](super::Staged), one file
//! per epoch, published at once) still commit as before.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_runtime::OperatorError;

use super::staged::{
    at, parent_of, parse_manifest_name, sync_directory, Reader, StagedDecodeError,
};
use crate::limits::{FILE_WRITE_BUFFER_BYTES, STAGED_PATH_MAX_BYTES};

/// The version byte of a [`Precommit`].
pub(crate) const PRECOMMIT_FORMAT_VERSION: u8 = 2;

/// When a part rolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollPolicy {
    /// Roll once the part's first chunk is this old; zero rolls every
    /// epoch (a file per shard and epoch).
    pub interval: Duration,
    /// Roll once the part holds this many bytes, if set.
    pub size: Option<u64>,
}

/// One epoch's closed, durable file in `.staging/`, waiting for its part
/// to roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its epoch.
    pub epoch: u64,
    /// Its bytes.
    pub bytes: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// The part being filled: the chunks of committed or pre-committed epochs
/// since the last roll.
#[derive(Debug, Default)]
pub(crate) struct Part {
    chunks: Vec<Chunk>,
    /// When its first chunk joined.
    started: Option<Instant>,
    bytes: u64,
}

impl Part {
    /// A part holding `chunks` (adopted after a restart), started now.
    pub(crate) fn adopt(chunks: Vec<Chunk>) -> Part {
        let mut part = Part::default();
        for chunk in chunks {
            part.push(chunk);
        }
        part
    }

    pub(crate) fn push(&mut self, chunk: Chunk) {
        self.started.get_or_insert_with(Instant::now);
        self.bytes += chunk.bytes;
        self.chunks.push(chunk);
    }

    /// Whether it is due under `policy` (`closing`: the run ends).
    pub(crate) fn due(&self, policy: &RollPolicy, closing: bool) -> bool {
        let Some(started) = self.started else {
            return false;
        };
        closing
            || started.elapsed() >= policy.interval
            || policy.size.is_some_and(|size| self.bytes >= size)
    }

    /// Takes its chunks, leaving it empty.
    pub(crate) fn take(&mut self) -> Vec<Chunk> {
        self.started = None;
        self.bytes = 0;
        std::mem::take(&mut self.chunks)
    }
}

/// A roll: publish `chunks` as `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roll {
    /// The published file.
    pub target: PathBuf,
    /// The manifest its sync step writes.
    pub manifest: PathBuf,
    /// The part's chunks, in epoch order.
    pub chunks: Vec<Chunk>,
}

/// What a rolling file sink logs at an epoch's pre-commit (version 2):
/// the epoch's chunk, if it had rows, and the roll it decided, if any.
///
/// ```text
/// u8  version = 2
/// u64 epoch
/// u64 shard
/// u8  1 if a chunk follows:  u64 epoch, u64 bytes, path
/// u8  1 if a roll follows:   path target, path manifest, u32 count,
///                            count × (u64 epoch, u64 bytes, path)
/// path = u32 length, the OS's bytes
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precommit {
    /// The epoch.
    pub epoch: u64,
    /// The shard that wrote it.
    pub shard: u64,
    /// The epoch's chunk, if it had rows.
    pub chunk: Option<Chunk>,
    /// The roll, if the part was due.
    pub roll: Option<Roll>,
}

impl Precommit {
    /// Encodes it; see the type's docs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![PRECOMMIT_FORMAT_VERSION];
        bytes.extend_from_slice(&self.epoch.to_le_bytes());
        bytes.extend_from_slice(&self.shard.to_le_bytes());
        match &self.chunk {
            Some(chunk) => {
                bytes.push(1);
                put_chunk(&mut bytes, chunk);
            }
            None => bytes.push(0),
        }
        match &self.roll {
            Some(roll) => {
                bytes.push(1);
                put_path(&mut bytes, &roll.target);
                put_path(&mut bytes, &roll.manifest);
                bytes.extend_from_slice(&(roll.chunks.len() as u32).to_le_bytes());
                for chunk in &roll.chunks {
                    put_chunk(&mut bytes, chunk);
                }
            }
            None => bytes.push(0),
        }
        bytes
    }

    /// Decodes what [`to_bytes`](Precommit::to_bytes) made.
    pub fn from_bytes(bytes: &[u8]) -> Result<Precommit, StagedDecodeError> {
        let mut reader = Reader(bytes);
        if reader.take(1)? != [PRECOMMIT_FORMAT_VERSION] {
            return Err(StagedDecodeError("unknown version"));
        }
        let epoch = reader.u64()?;
        let shard = reader.u64()?;
        let chunk = match reader.flag()? {
            true => Some(read_chunk(&mut reader)?),
            false => None,
        };
        let roll = match reader.flag()? {
            true => {
                let target = reader.path()?;
                let manifest = reader.path()?;
                let count = reader.u32()? as usize;
                let mut chunks = Vec::with_capacity(count.min(1 << 16));
                for _ in 0..count {
                    chunks.push(read_chunk(&mut reader)?);
                }
                Some(Roll {
                    target,
                    manifest,
                    chunks,
                })
            }
            false => None,
        };
        if !reader.0.is_empty() {
            return Err(StagedDecodeError("trailing bytes"));
        }
        Ok(Precommit {
            epoch,
            shard,
            chunk,
            roll,
        })
    }

    /// Makes the epoch's chunk and the roll's manifest durable (the file,
    /// then the staging directory). Idempotent.
    pub fn sync(&self) -> io::Result<()> {
        let mut directory = None;
        if let Some(chunk) = &self.chunk {
            File::open(&chunk.path)
                .and_then(|file| file.sync_all())
                .map_err(at(&chunk.path))?;
            directory = Some(parent_of(&chunk.path));
        }
        if let Some(roll) = &self.roll {
            let mut text = Vec::new();
            for chunk in &roll.chunks {
                text.extend_from_slice(chunk.path.file_name().unwrap_or_default().as_bytes());
                text.push(b'\n');
            }
            let mut file = File::create(&roll.manifest).map_err(at(&roll.manifest))?;
            file.write_all(&text)
                .and_then(|()| file.sync_all())
                .map_err(at(&roll.manifest))?;
            directory = Some(parent_of(&roll.manifest));
        }
        match directory {
            Some(directory) => sync_directory(directory),
            None => Ok(()),
        }
    }

    /// Publishes the roll, if any (see the module docs); idempotent.
    pub fn commit(&self) -> io::Result<()> {
        let Some(roll) = &self.roll else {
            return Ok(());
        };
        let published = roll.target.try_exists().map_err(at(&roll.target))?;
        if !published {
            if let [only] = roll.chunks.as_slice() {
                fs::rename(&only.path, &roll.target)
                    .map_err(|error| lost_or(error, self.epoch, &only.path, &roll.target))?;
            } else {
                let temporary = roll.manifest.with_extension("tmp");
                join(&roll.chunks, &temporary, &roll.target)
                    .map_err(|error| lost_or(error, self.epoch, &temporary, &roll.target))?;
                fs::rename(&temporary, &roll.target).map_err(at(&temporary))?;
            }
            sync_directory(parent_of(&roll.target))?;
        }
        for chunk in &roll.chunks {
            remove_if_present(&chunk.path)?;
        }
        remove_if_present(&roll.manifest)?;
        sync_directory(parent_of(&roll.manifest))
    }
}

/// A missing chunk as the loss it is; other errors as they are.
fn lost_or(error: io::Error, epoch: u64, path: &Path, target: &Path) -> io::Error {
    if error.kind() == io::ErrorKind::NotFound {
        return io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "cannot commit the roll of epoch {epoch}: {} is missing and {} was never published: {error}",
                path.display(),
                target.display()
            ),
        );
    }
    at(path)(error)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(at(path)(error)),
        _ => Ok(()),
    }
}

/// Joins `chunks` into `temporary` (fsynced): Parquet files (by `target`'s
/// extension) by splicing their row groups, others by concatenation.
fn join(chunks: &[Chunk], temporary: &Path, target: &Path) -> io::Result<()> {
    let file = File::create(temporary).map_err(at(temporary))?;
    let file = if target.extension().is_some_and(|e| e == "parquet") {
        join_parquet(chunks, file).map_err(|error| {
            io::Error::other(format!(
                "{}: joining Parquet chunks: {error}",
                temporary.display()
            ))
        })?
    } else {
        let mut out = BufWriter::with_capacity(FILE_WRITE_BUFFER_BYTES, file);
        for chunk in chunks {
            let mut input = File::open(&chunk.path)?;
            io::copy(&mut input, &mut out).map_err(at(&chunk.path))?;
        }
        out.into_inner().map_err(|error| error.into_error())?
    };
    file.sync_all().map_err(at(temporary))
}

/// Splices every row group of every chunk into one Parquet file, in order,
/// without decoding (the chunks share the sink's schema and properties).
fn join_parquet(chunks: &[Chunk], out: File) -> parquet::errors::Result<File> {
    use parquet::column::writer::ColumnCloseResult;
    use parquet::file::metadata::ParquetMetaDataReader;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;

    let mut writer: Option<SerializedFileWriter<BufWriter<File>>> = None;
    let mut out = Some(BufWriter::with_capacity(FILE_WRITE_BUFFER_BYTES, out));
    for chunk in chunks {
        let input = File::open(&chunk.path)?;
        let metadata = ParquetMetaDataReader::new().parse_and_finish(&input)?;
        if writer.is_none() {
            let schema = metadata.file_metadata().schema_descr().root_schema_ptr();
            let properties = WriterProperties::builder()
                .set_created_by(concat!("weir ", env!("CARGO_PKG_VERSION")).into())
                .build();
            let sink = out.take().expect("one writer");
            writer = Some(SerializedFileWriter::new(
                sink,
                schema,
                std::sync::Arc::new(properties),
            )?);
        }
        let writer = writer.as_mut().expect("made above");
        for group in metadata.row_groups() {
            let mut group_writer = writer.next_row_group()?;
            for column in group.columns() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as _,
                    rows_written: group.num_rows() as _,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                group_writer.append_column(&input, close)?;
            }
            group_writer.close()?;
        }
    }
    let writer =
        writer.ok_or_else(|| parquet::errors::ParquetError::General("no chunks".into()))?;
    let buffered = writer.into_inner()?;
    buffered
        .into_inner()
        .map_err(|error| parquet::errors::ParquetError::External(Box::new(error.into_error())))
}

/// A size in a pipeline file: a number of bytes, or text with a unit
/// (`"64MiB"`, `"512 KB"`, `"1GiB"`; `KB`/`MB`/`GB` are powers of 1000,
/// `KiB`/`MiB`/`GiB` of 1024).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// Text with a unit.
    Text(String),
}

impl Size {
    /// The bytes it says; the error quotes the text and the accepted forms.
    pub fn bytes(&self) -> Result<u64, String> {
        let text = match self {
            Size::Bytes(bytes) => return Ok(*bytes),
            Size::Text(text) => text.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => 0,
        };
        number
            .parse::<u64>()
            .ok()
            .filter(|_| unit > 0)
            .and_then(|number| number.checked_mul(unit))
            .ok_or_else(|| {
                format!("`{text}` is not a size like 134217728, \"128MiB\", \"500 MB\" or \"1GiB\"")
            })
    }
}

/// After a restart at committed epoch `committed` (uncommitted chunks and
/// manifests already deleted): `shard`'s chunks in `staging` that no
/// committed roll claims, in epoch order: the part that was open.
pub(crate) fn open_part(staging: &Path, shard: usize, committed: u64) -> io::Result<Vec<Chunk>> {
    let names = |staging: &Path| -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        match fs::read_dir(staging) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(at(staging))?;
                    if let Some(name) = entry.file_name().to_str() {
                        names.push(name.to_owned());
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(at(staging)(error)),
        }
        Ok(names)
    };
    // Manifests first: a roll deletes its chunks before its manifest.
    let mut claimed = std::collections::HashSet::new();
    for name in names(staging)? {
        match parse_manifest_name(&name) {
            Some((owner, epoch)) if owner == shard && epoch <= committed => {
                let path = staging.join(&name);
                match fs::read_to_string(&path) {
                    Ok(text) => claimed.extend(text.lines().map(str::to_owned)),
                    // Its roll finished meanwhile, chunks and all.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(at(&path)(error)),
                }
            }
            _ => {}
        }
    }
    let mut chunks = Vec::new();
    for name in names(staging)? {
        let Some((owner, epoch)) = super::parse_any_file_name(&name) else {
            continue;
        };
        if owner != shard || epoch > committed || claimed.contains(&name) {
            continue;
        }
        let path = staging.join(&name);
        let bytes = match fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(at(&path)(error)),
        };
        chunks.push(Chunk { epoch, bytes, path });
    }
    chunks.sort_by_key(|chunk| chunk.epoch);
    Ok(chunks)
}

/// [`Sink::sync`](weir_runtime::Sink::sync) of a file sink: a version-2
/// [`Precommit`] or a version-1 [`Staged`](super::Staged).
pub fn sync_any(bytes: &[u8]) -> Result<(), OperatorError> {
    match bytes.first() {
        None => Ok(()),
        Some(&PRECOMMIT_FORMAT_VERSION) => Ok(Precommit::from_bytes(bytes)?.sync()?),
        Some(_) => super::sync_encoded(bytes),
    }
}

/// [`Sink::commit`](weir_runtime::Sink::commit) of a file sink: a
/// version-2 [`Precommit`] or a version-1 [`Staged`](super::Staged).
pub fn commit_any(bytes: &[u8]) -> Result<(), OperatorError> {
    match bytes.first() {
        None => Ok(()),
        Some(&PRECOMMIT_FORMAT_VERSION) => Ok(Precommit::from_bytes(bytes)?.commit()?),
        Some(_) => super::commit_encoded(bytes),
    }
}

fn put_path(bytes: &mut Vec<u8>, path: &Path) {
    let raw = path.as_os_str().as_bytes();
    assert!(raw.len() <= STAGED_PATH_MAX_BYTES);
    bytes.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    bytes.extend_from_slice(raw);
}

fn put_chunk(bytes: &mut Vec<u8>, chunk: &Chunk) {
    bytes.extend_from_slice(&chunk.epoch.to_le_bytes());
    bytes.extend_from_slice(&chunk.bytes.to_le_bytes());
    put_path(bytes, &chunk.path);
}

/// Reads one [`Chunk`] of an encoded [`Precommit`].
fn read_chunk(reader: &mut Reader<'_>) -> Result<Chunk, StagedDecodeError> {
    let epoch = reader.u64()?;
    let bytes = reader.u64()?;
    let path = reader.path()?;
    Ok(Chunk { epoch, bytes, path })
}

#[cfg(test)]
mod tests {
    use super::super::staged::manifest_name;
    use super::*;

    #[test]
    fn precommits_round_trip_and_bad_bytes_are_refused() {
        let chunk = |epoch| Chunk {
            epoch,
            bytes: epoch * 10,
            path: PathBuf::from(format!("/d/.staging/shard-001-epoch-{epoch:010}.ndjson")),
        };
        let precommit = Precommit {
            epoch: 9,
            shard: 1,
            chunk: Some(chunk(9)),
            roll: Some(Roll {
                target: "/d/shard-001-epoch-0000000007.ndjson".into(),
                manifest: "/d/.staging/shard-001-roll-0000000009.manifest".into(),
                chunks: vec![chunk(7), chunk(9)],
            }),
        };
        let bytes = precommit.to_bytes();
        assert_eq!(Precommit::from_bytes(&bytes), Ok(precommit));
        assert!(Precommit::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let idle = Precommit {
            epoch: 3,
            shard: 0,
            chunk: None,
            roll: None,
        };
        assert_eq!(Precommit::from_bytes(&idle.to_bytes()), Ok(idle));
        assert_eq!(parse_manifest_name(&manifest_name(4, 12)), Some((4, 12)));
        assert_eq!(parse_manifest_name("shard-004-epoch-12.ndjson"), None);
    }

    #[test]
    fn sizes_parse_with_units() {
        for (size, bytes) in [
            (Size::Bytes(7), 7),
            (Size::Text("128MiB".into()), 128 << 20),
            (Size::Text("500 MB".into()), 500_000_000),
            (Size::Text("1GiB".into()), 1 << 30),
            (Size::Text("42".into()), 42),
        ] {
            assert_eq!(size.bytes(), Ok(bytes), "{size:?}");
        }
        for bad in ["", "MB", "12 parsecs", "1.5GB"] {
            let error = Size::Text(bad.into()).bytes().unwrap_err();
            assert!(error.contains("is not a size"), "{error}");
        }
    }

    #[test]
    fn a_part_is_due_by_age_size_or_closing() {
        let policy = RollPolicy {
            interval: Duration::from_secs(3600),
            size: Some(100),
        };
        let mut part = Part::default();
        assert!(!part.due(&policy, true), "an empty part never rolls");
        part.push(Chunk {
            epoch: 1,
            bytes: 60,
            path: "a".into(),
        });
        assert!(!part.due(&policy, false));
        assert!(part.due(&policy, true));
        part.push(Chunk {
            epoch: 2,
            bytes: 40,
            path: "b".into(),
        });
        assert!(part.due(&policy, false), "100 bytes");
        assert_eq!(part.take().len(), 2);
        assert!(part.chunks.is_empty() && !part.due(&policy, true));
        let every_epoch = RollPolicy {
            interval: Duration::ZERO,
            size: None,
        };
        part.push(Chunk {
            epoch: 3,
            bytes: 1,
            path: "c".into(),
        });
        assert!(part.due(&every_epoch, false));
    }

    #[test]
    fn a_roll_publishes_once_and_again_after_a_crash() {
        let root = tempfile::tempdir().unwrap();
        let staging = root.path().join(".staging");
        fs::create_dir_all(&staging).unwrap();
        let mut chunks = Vec::new();
        for epoch in [3u64, 4, 6] {
            let path = staging.join(super::super::file_name(1, epoch));
            fs::write(&path, format!("{{\"e\":{epoch}}}\n")).unwrap();
            chunks.push(Chunk {
                epoch,
                bytes: 8,
                path,
            });
        }
        let roll = Precommit {
            epoch: 6,
            shard: 1,
            chunk: Some(chunks[2].clone()),
            roll: Some(Roll {
                target: root.path().join(super::super::file_name(1, 3)),
                manifest: staging.join(manifest_name(1, 6)),
                chunks: chunks.clone(),
            }),
        };
        // Before the sync, no manifest claims them: the open part.
        assert_eq!(open_part(&staging, 1, 6).unwrap(), chunks);
        roll.sync().unwrap();
        // Committed at 6: the manifest claims every chunk.
        assert!(open_part(&staging, 1, 6).unwrap().is_empty());
        roll.commit().unwrap();
        let published =
            fs::read_to_string(root.path().join(super::super::file_name(1, 3))).unwrap();
        assert_eq!(published, "{\"e\":3}\n{\"e\":4}\n{\"e\":6}\n");
        assert!(
            fs::read_dir(&staging).unwrap().next().is_none(),
            "cleaned up"
        );
        // Again, as after a crash: nothing changes, nothing fails.
        roll.commit().unwrap();
        let again = fs::read_to_string(root.path().join(super::super::file_name(1, 3))).unwrap();
        assert_eq!(again, published);
    }
}
