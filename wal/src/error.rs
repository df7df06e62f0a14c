//! Error types: one per operation, each converting into [`Error`].
//!
//! I/O errors carry the file they concern; corruption carries segment file
//! and byte offset. Failures of the log itself ([`WalFailure`]) are sticky:
//! once a write or fdatasync failed, every later operation reports it.

use crate::format::Lsn;
use crate::scan::{Corruption, Gap};
use std::fmt;
use std::io;

/// Why the log stopped accepting appends (a write or fdatasync failed).
/// Cloneable so every waiter can receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFailure {
    /// The error kind of the failed operation.
    pub kind: io::ErrorKind,
    /// What failed, with the file and the OS message.
    pub message: String,
}

impl WalFailure {
    pub(crate) fn from_io(what: &str, e: &io::Error) -> Self {
        Self {
            kind: e.kind(),
            message: format!("{what}: {e}"),
        }
    }
}

impl fmt::Display for WalFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log failed and refuses appends: {}", self.message)
    }
}

impl std::error::Error for WalFailure {}

/// An I/O error with what was being done.
#[derive(Debug)]
pub struct IoContext {
    /// What was being done (names the file).
    pub what: String,
    /// The OS error.
    pub source: io::Error,
}

impl fmt::Display for IoContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

pub(crate) fn io_ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> IoContext {
    let what = what.into();
    move |source| IoContext { what, source }
}

/// Errors of recovery (scanning and repairing the log at open).
#[derive(Debug)]
pub enum RecoveryError {
    /// Corruption in the middle of the log: refuse to open.
    Corrupt(Corruption),
    /// Segments are missing (a hole, or the newest ones): refuse to open.
    Gap(Gap),
    /// The log ends below the LSN the caller knows was durable
    /// ([`crate::Config::durable_at_least`]): refuse to open.
    EndsEarly {
        /// Where the log ends: the LSN after its last valid record.
        ends: Lsn,
        /// Every LSN below this was durable.
        durable: Lsn,
    },
    /// Reading or repairing failed.
    Io(IoContext),
}

/// Errors of opening a log.
#[derive(Debug)]
pub enum OpenError {
    /// The configuration violates a limit.
    InvalidConfig(String),
    /// Recovery failed.
    Recovery(RecoveryError),
    /// The directory or a file could not be used.
    Io(IoContext),
}

/// Errors of appending a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// The payload exceeds the maximum record size for this log.
    TooLarge {
        /// Payload bytes offered.
        len: usize,
        /// Maximum payload bytes.
        max: usize,
    },
    /// Too many bytes are staged and not yet written; wait for durability
    /// of earlier appends ([`crate::Wal::drain`]) and retry.
    Backpressure,
    /// The log failed earlier; nothing more is accepted.
    Failed(WalFailure),
    /// The log was closed.
    Closed,
}

/// Errors of reading records for replay.
#[derive(Debug)]
pub enum ReadError {
    /// A segment could not be read.
    Io(IoContext),
    /// Invalid bytes where durable records must be.
    Corrupt(Corruption),
}

/// Errors of deleting old segments.
#[derive(Debug)]
pub enum RetentionError {
    /// Removing a file or syncing the directory failed.
    Io(IoContext),
}

/// Errors of `inspect`.
#[derive(Debug)]
pub enum InspectError {
    /// The directory or a file could not be read.
    Io(IoContext),
    /// The records could not be read back.
    Read(ReadError),
}

/// Any error of this crate.
#[derive(Debug)]
pub enum Error {
    /// See [`OpenError`].
    Open(OpenError),
    /// See [`AppendError`].
    Append(AppendError),
    /// See [`WalFailure`].
    Failed(WalFailure),
    /// See [`ReadError`].
    Read(ReadError),
    /// See [`RetentionError`].
    Retention(RetentionError),
    /// See [`InspectError`].
    Inspect(InspectError),
}

macro_rules! display {
    ($t:ty, $self:ident, $f:ident, $body:expr) => {
        impl fmt::Display for $t {
            fn fmt(&$self, $f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $body
            }
        }
    };
}

display!(
    RecoveryError,
    self,
    f,
    match self {
        Self::Corrupt(c) => write!(f, "corruption in the middle of the log: {c}"),
        Self::Gap(g) => write!(f, "segments of the log are missing: {g}"),
        Self::EndsEarly { ends, durable } => write!(
            f,
            "the log ends at {ends}, but every record below {durable} was durable: records \
             from {ends} up to {durable} are missing (its newest segments, or all of them, \
             deleted or lost)"
        ),
        Self::Io(e) => write!(f, "recovery I/O error: {e}"),
    }
);
display!(
    OpenError,
    self,
    f,
    match self {
        Self::InvalidConfig(m) => write!(f, "invalid log configuration: {m}"),
        Self::Recovery(e) => write!(f, "cannot open log: {e}"),
        Self::Io(e) => write!(f, "cannot open log: {e}"),
    }
);
display!(
    AppendError,
    self,
    f,
    match self {
        Self::TooLarge { len, max } => write!(f, "record payload of {len} bytes exceeds {max}"),
        Self::Backpressure => write!(f, "too many bytes staged; wait for durability and retry"),
        Self::Failed(w) => write!(f, "{w}"),
        Self::Closed => write!(f, "log is closed"),
    }
);
display!(
    ReadError,
    self,
    f,
    match self {
        Self::Io(e) => write!(f, "read error: {e}"),
        Self::Corrupt(c) => write!(f, "corrupt record: {c}"),
    }
);
display!(
    RetentionError,
    self,
    f,
    match self {
        Self::Io(e) => write!(f, "retention error: {e}"),
    }
);
display!(
    InspectError,
    self,
    f,
    match self {
        Self::Io(e) => write!(f, "inspect error: {e}"),
        Self::Read(e) => write!(f, "inspect error: {e}"),
    }
);
display!(
    Error,
    self,
    f,
    match self {
        Self::Open(e) => e.fmt(f),
        Self::Append(e) => e.fmt(f),
        Self::Failed(e) => e.fmt(f),
        Self::Read(e) => e.fmt(f),
        Self::Retention(e) => e.fmt(f),
        Self::Inspect(e) => e.fmt(f),
    }
);

impl std::error::Error for IoContext {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
impl std::error::Error for RecoveryError {}
impl std::error::Error for OpenError {}
impl std::error::Error for AppendError {}
impl std::error::Error for ReadError {}
impl std::error::Error for RetentionError {}
impl std::error::Error for InspectError {}
impl std::error::Error for Error {}

macro_rules! into_error {
    ($t:ty, $v:ident) => {
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Self::$v(e)
            }
        }
    };
}
into_error!(OpenError, Open);
into_error!(AppendError, Append);
into_error!(WalFailure, Failed);
into_error!(ReadError, Read);
into_error!(RetentionError, Retention);
into_error!(InspectError, Inspect);

impl From<RecoveryError> for OpenError {
    fn from(e: RecoveryError) -> Self {
        Self::Recovery(e)
    }
}
impl From<RecoveryError> for Error {
    fn from(e: RecoveryError) -> Self {
        Self::Open(OpenError::Recovery(e))
    }
}
