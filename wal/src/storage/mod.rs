//! The storage seam: everything the log does to files goes through these
//! traits, so that the crash tests can run the real log code against
//! [`MemStorage`], which simulates power loss.
//!
//! Contract (what the log relies on; the real file system must provide it,
//! see `docs/wal-format.md`):
//! - `write_at` may be torn by a crash at any [`crate::limits::SECTOR_BYTES`]
//!   boundary; each sector is then old or new content, never garbage.
//! - After `sync_data` returns `Ok`, the file's contents and size survive a
//!   crash. An error from `sync_data` means nothing about what survived.
//! - Directory changes (create, rename, remove) survive a crash once
//!   `sync_dir` returns `Ok`; before that, a prefix of them may survive.
//! - One process owns a log directory at a time.

pub mod file;
pub mod memory;

pub use file::FsStorage;
pub use memory::MemStorage;

use std::fmt::Debug;
use std::io;
use std::ops::Deref;

/// A read-only view of one whole file: a memory map for real files, an
/// owned copy for the in-memory store.
#[derive(Debug)]
pub enum FileBytes {
    /// A read-only memory map.
    Mapped(memmap2::Mmap),
    /// An owned copy.
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

/// A directory of segment files.
pub trait Storage: Send + Sync + Debug {
    /// Names of all files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates a new file (failing if it exists) and reserves `len` bytes
    /// (fallocate); the reserved space reads as zeros.
    fn create(&self, name: &str, len: u64) -> io::Result<Box<dyn SegmentFile>>;
    /// Opens an existing file for writing.
    fn open_write(&self, name: &str) -> io::Result<Box<dyn SegmentFile>>;
    /// Maps / reads the whole file.
    fn read(&self, name: &str) -> io::Result<FileBytes>;
    /// Renames a file (atomically replacing nothing: `to` must not exist).
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes directory changes durable (fsync on the directory).
    fn sync_dir(&self) -> io::Result<()>;
    /// A seed for segment salts: random for real storage, fixed for tests.
    fn entropy(&self) -> u64;
}

/// One open segment file.
pub trait SegmentFile: Send + Debug {
    /// Required alignment in bytes of write offsets, lengths and buffer
    /// addresses (the O_DIRECT alignment). A power of two.
    fn align(&self) -> usize;
    /// Writes all of `data` at `offset`, then makes it durable
    /// (fdatasync). Any error is final: the caller must not retry.
    fn write_sync(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset` (same alignment rules), not yet
    /// durable: [`SegmentFile::sync`] makes it so. Errors are final, as
    /// for `write_sync`.
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every earlier write durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Sets the file size to `len` (dropping bytes above it), reserves
    /// `reserve` bytes again, and makes the result durable.
    fn truncate_sync(&mut self, len: u64, reserve: u64) -> io::Result<()>;
}
