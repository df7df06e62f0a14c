//! A connection's socket as the ingest sources read it: never trusting
//! what a client claims or how fast it sends.
//!
//! - Every read has a time limit: [`Socket::read_within`] sets the
//!   socket's read timeout before reading (glommio arms a timer only when a
//!   read would block, so a read that finds bytes waiting costs no timer).
//!   A deadline over several reads (a request head, a frame header) passes
//!   what is left of it each time ([`Deadline`]).
//! - Buffers grow as bytes arrive, never to what a header claims:
//!   [`read_growing`] at most doubles a buffer's capacity per step and
//!   never beyond the declared length, so a client that declares 16 MiB
//!   and sends 10 bytes costs about [`READ_CHUNK_BYTES`].
//! - Writes have a time limit too (the read timeout, set once when the
//!   connection starts), so a client that stops taking responses cannot
//!   hold a connection open.
//!
//! A [`Socket`] is shared by the tasks of one connection (the TCP source's
//! reader and writer) on one shard; each read or write borrows the stream
//! only while it is polled.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::Payload;
use crate::limits::READ_CHUNK_BYTES;

/// Why a read ended without the bytes asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The client closed the connection.
    Closed,
    /// No byte arrived within the time allowed.
    TimedOut,
    /// The socket failed (reset, say).
    Failed,
}

/// A point in time a sequence of reads must finish by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// `ms` milliseconds from now.
    pub(crate) fn after_ms(ms: u64) -> Deadline {
        Deadline(Instant::now() + Duration::from_millis(ms))
    }

    /// The time left (zero once passed).
    pub(crate) fn left(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A connection's stream, shared by its tasks on one shard.
#[derive(Clone)]
pub(crate) struct Socket(Rc<RefCell<TcpStream>>);

impl Socket {
    /// Takes over `stream`; writes that make no progress for
    /// `write_timeout_ms` fail.
    pub(crate) fn new(stream: TcpStream, write_timeout_ms: u64) -> Socket {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(write_timeout_ms.max(1))));
        Socket(Rc::new(RefCell::new(stream)))
    }

    /// Reads what has arrived into `buf` (at least a byte), waiting at
    /// most `limit` for the first.
    pub(crate) async fn read_within(
        &self,
        buf: &mut [u8],
        limit: Duration,
    ) -> Result<usize, ReadError> {
        assert!(!buf.is_empty(), "a read needs room");
        if limit.is_zero() {
            return Err(ReadError::TimedOut);
        }
        let _ = self.0.borrow().set_read_timeout(Some(limit));
        let read =
            std::future::poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)).await;
        match read {
            Ok(0) => Err(ReadError::Closed),
            Ok(read) => Ok(read),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => Err(ReadError::TimedOut),
            Err(_) => Err(ReadError::Failed),
        }
    }

    /// Writes all of `bytes`.
    pub(crate) async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let written = std::future::poll_fn(|cx| {
                Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, bytes)
            })
            .await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[written..];
        }
        Ok(())
    }

    /// Ends the sending side (the client reads end of stream); the socket
    /// closes when the last handle to it is dropped.
    pub(crate) async fn close_write(&self) {
        let _ = std::future::poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)).await;
    }
}

/// Reads until `into` holds `len` bytes, each read waiting at most
/// `read_timeout` for a byte. The buffer grows as bytes arrive: its
/// capacity at most doubles per step (from [`READ_CHUNK_BYTES`]) and never
/// goes beyond `len`.
pub(crate) async fn read_growing(
    socket: &Socket,
    into: &mut Payload,
    len: usize,
    read_timeout: Duration,
) -> Result<(), ReadError> {
    while into.len() < len {
        let want = (len - into.len()).min(READ_CHUNK_BYTES);
        let start = into.len();
        if into.capacity() - start < want {
            let target = (into.capacity() * 2).max(start + want).min(len);
            into.reserve_exact(target - start);
        }
        into.resize(start + want, 0);
        let read = socket.read_within(&mut into[start..], read_timeout).await;
        match read {
            Ok(read) => into.resize(start + read, 0),
            Err(error) => {
                into.resize(start, 0);
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Reads and drops `len` bytes (a refused frame's payload), through a
/// small buffer, each read waiting at most `read_timeout`.
pub(crate) async fn discard(
    socket: &Socket,
    mut len: usize,
    read_timeout: Duration,
) -> Result<(), ReadError> {
    let mut scratch = vec![0u8; len.min(READ_CHUNK_BYTES)];
    while len > 0 {
        let want = len.min(scratch.len());
        len -= socket
            .read_within(&mut scratch[..want], read_timeout)
            .await?;
    }
    Ok(())
}
