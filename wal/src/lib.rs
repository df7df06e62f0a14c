//! weir's write-ahead log: segmented, checksummed, group-committed through
//! io_uring with O_DIRECT, with crash recovery that tells a torn tail from
//! corruption in the middle of the log.
//!
//! The on-disk format and the durability argument are in
//! `docs/wal-format.md`. Entry points:
//! - [`Wal`] — the threaded log a shard uses: [`Wal::append`] returns an
//!   [`Lsn`]; [`Wal::durable`] gives a future that completes once the record
//!   is durable; [`Wal::flush`] triggers a group commit.
//! - [`SyncLog`] — the same log driven by the caller's thread.
//! - [`inspect()`] — a read-only report for `weir wal inspect DIR`;
//!   [`inspect_records`] reads the records back, read-only too.
//! - [`storage`] — the file seam, with [`MemStorage`] for crash tests.
//!
//! Limits: one process per log directory; one appending thread per log is
//! the intended use (appends are serialised by a mutex); records up to
//! [`limits::MAX_PAYLOAD_BYTES`].

#![warn(missing_docs)]

mod align;
mod analysis;
mod config;
mod crc;
mod error;
pub mod format;
mod inspect;
pub mod limits;
mod reader;
mod recovery;
pub mod scan;
mod spares;
pub mod storage;
mod sync_log;
mod wal;
mod writer;

pub use analysis::Fault;
pub use config::{Config, SyncObserver};
pub use error::{
    AppendError, Error, InspectError, IoContext, OpenError, ReadError, RecoveryError,
    RetentionError, WalFailure,
};
pub use format::{Entry, Lsn, RecordType};
pub use inspect::{inspect, inspect_records, inspect_storage, InspectReport};
pub use reader::{LogReader, Record};
pub use recovery::RecoveryReport;
pub use scan::{Corruption, Gap, RecordPos, TornTail, Verdict};
pub use storage::{FsStorage, MemStorage, Storage};
pub use sync_log::SyncLog;
pub use wal::{Durable, Wal};
