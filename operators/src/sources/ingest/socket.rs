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
//! - With `tls` configured the socket speaks TLS (rustls): reads decrypt,
//!   writes encrypt, the handshake happens within the first read's time
//!   limit. A client whose first byte is not a TLS handshake record is
//!   sent the source's plaintext refusal (an `http` 400 naming TLS; the
//!   other sources send nothing) and the connection closes.
//!
//! A [`Socket`] is shared by the tasks of one connection (the TCP source's
//! reader and writer) on one shard; each read or write borrows the stream
//! only while it is polled. With TLS, one task at a time sends ciphertext:
//! the other's records wait in the TLS connection and go with the sender's
//! next round.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::tls::Tls;
use super::Payload;
use crate::limits::READ_CHUNK_BYTES;

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;

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
pub(crate) struct Socket(Rc<RefCell<Inner>>);

struct Inner {
    stream: TcpStream,
    tls: Option<TlsState>,
}

/// A TLS connection's state beside its stream.
struct TlsState {
    connection: rustls::ServerConnection,
    /// Ciphertext read from the stream (taken out while a read waits).
    cipher: Vec<u8>,
    /// A task is writing ciphertext.
    sending: bool,
    /// The first bytes arrived.
    started: bool,
    /// They were not a TLS handshake: nothing more is sent, not even an
    /// alert.
    refused: bool,
    /// Sent in plaintext to a client that does not speak TLS.
    refusal: &'static [u8],
}

impl Socket {
    /// Takes over `stream`; writes that make no progress for
    /// `write_timeout_ms` fail. With `tls`, the connection speaks TLS and
    /// a client that does not is sent `refusal` in plaintext.
    pub(crate) fn new(
        stream: TcpStream,
        write_timeout_ms: u64,
        tls: Option<&Tls>,
        refusal: &'static [u8],
    ) -> Socket {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(write_timeout_ms.max(1))));
        let tls = tls.and_then(|tls| {
            let mut connection = rustls::ServerConnection::new(tls.0.clone()).ok()?;
            // Responses and acknowledgements are bounded by the sources.
            connection.set_buffer_limit(None);
            Some(TlsState {
                connection,
                cipher: Vec::new(),
                sending: false,
                started: false,
                refused: false,
                refusal,
            })
        });
        Socket(Rc::new(RefCell::new(Inner { stream, tls })))
    }

    /// Reads what has arrived into `buf` (at least a byte), waiting at
    /// most `limit` for the first.
    pub(crate) async fn read_within(
        &self,
        buf: &mut [u8],
        limit: Duration,
    ) -> Result<usize, ReadError> {
        assert!(!buf.is_empty(), "a read needs room");
        if self.0.borrow().tls.is_none() {
            return self.read_raw(buf, limit).await;
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(read) = self.read_plaintext(buf) {
                return read;
            }
            // Handshake messages and alerts go out before waiting.
            self.send_tls().await.map_err(|_| ReadError::Failed)?;
            let mut cipher = match self.0.borrow_mut().tls.as_mut() {
                Some(tls) => std::mem::take(&mut tls.cipher),
                None => return Err(ReadError::Failed),
            };
            cipher.resize(READ_CHUNK_BYTES, 0);
            let left = deadline.saturating_duration_since(Instant::now());
            let read = self.read_raw(&mut cipher, left).await;
            let fed = read.map(|read| self.feed(&cipher[..read]));
            if let Some(tls) = self.0.borrow_mut().tls.as_mut() {
                tls.cipher = cipher;
            }
            if let Err(refused) = fed? {
                if refused == Fed::NotTls {
                    let refusal = self
                        .0
                        .borrow()
                        .tls
                        .as_ref()
                        .map_or(&[][..], |tls| tls.refusal);
                    let _ = self.write_raw(refusal).await;
                } else {
                    // The alert saying why, if the client still listens.
                    let _ = self.send_tls().await;
                }
                return Err(ReadError::Failed);
            }
        }
    }

    /// Plaintext the TLS connection holds: `None` when it needs more
    /// ciphertext.
    fn read_plaintext(&self, buf: &mut [u8]) -> Option<Result<usize, ReadError>> {
        let mut inner = self.0.borrow_mut();
        let tls = inner.tls.as_mut()?;
        match tls.connection.reader().read(buf) {
            // The client said close_notify.
            Ok(0) => Some(Err(ReadError::Closed)),
            Ok(read) => Some(Ok(read)),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(_) => Some(Err(ReadError::Failed)),
        }
    }

    /// Hands ciphertext to the TLS connection.
    fn feed(&self, mut cipher: &[u8]) -> Result<(), Fed> {
        let mut inner = self.0.borrow_mut();
        let Some(tls) = inner.tls.as_mut() else {
            return Err(Fed::Failed);
        };
        if !tls.started {
            tls.started = true;
            if cipher.first() != Some(&TLS_HANDSHAKE) {
                tls.refused = true;
                return Err(Fed::NotTls);
            }
        }
        while !cipher.is_empty() {
            tls.connection
                .read_tls(&mut cipher)
                .map_err(|_| Fed::Failed)?;
            tls.connection
                .process_new_packets()
                .map_err(|_| Fed::Failed)?;
        }
        Ok(())
    }

    /// Reads what has arrived on the stream itself.
    async fn read_raw(&self, buf: &mut [u8], limit: Duration) -> Result<usize, ReadError> {
        if limit.is_zero() {
            return Err(ReadError::TimedOut);
        }
        let _ = self.0.borrow().stream.set_read_timeout(Some(limit));
        let read =
            std::future::poll_fn(|cx| Pin::new(&mut self.0.borrow_mut().stream).poll_read(cx, buf))
                .await;
        match read {
            Ok(0) => Err(ReadError::Closed),
            Ok(read) => Ok(read),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => Err(ReadError::TimedOut),
            Err(_) => Err(ReadError::Failed),
        }
    }

    /// Writes all of `bytes` (encrypted, with TLS).
    pub(crate) async fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        let buffered = match self.0.borrow_mut().tls.as_mut() {
            Some(tls) if tls.refused => return Err(std::io::ErrorKind::BrokenPipe.into()),
            Some(tls) => {
                tls.connection.writer().write_all(bytes)?;
                true
            }
            None => false,
        };
        if buffered {
            return self.send_tls().await;
        }
        self.write_raw(bytes).await
    }

    /// Sends the ciphertext the TLS connection holds, unless another task
    /// is sending (it sends these records too).
    async fn send_tls(&self) -> std::io::Result<()> {
        let mut out = Vec::new();
        {
            let mut inner = self.0.borrow_mut();
            let Some(tls) = inner.tls.as_mut() else {
                return Ok(());
            };
            if tls.sending || tls.refused {
                return Ok(());
            }
            tls.sending = true;
        }
        let sent = loop {
            out.clear();
            {
                let mut inner = self.0.borrow_mut();
                let Some(tls) = inner.tls.as_mut() else {
                    break Ok(());
                };
                while tls.connection.wants_write() {
                    if let Err(error) = tls.connection.write_tls(&mut out) {
                        tls.sending = false;
                        return Err(error);
                    }
                }
            }
            if out.is_empty() {
                break Ok(());
            }
            if let Err(error) = self.write_raw(&out).await {
                break Err(error);
            }
        };
        if let Some(tls) = self.0.borrow_mut().tls.as_mut() {
            tls.sending = false;
        }
        sent
    }

    /// Writes all of `bytes` to the stream itself.
    async fn write_raw(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let written = std::future::poll_fn(|cx| {
                Pin::new(&mut self.0.borrow_mut().stream).poll_write(cx, bytes)
            })
            .await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[written..];
        }
        Ok(())
    }

    /// Ends the sending side (the client reads end of stream, after TLS's
    /// close_notify); the socket closes when the last handle to it is
    /// dropped.
    pub(crate) async fn close_write(&self) {
        if let Some(tls) = self.0.borrow_mut().tls.as_mut() {
            tls.connection.send_close_notify();
        }
        let _ = self.send_tls().await;
        let _ = std::future::poll_fn(|cx| Pin::new(&mut self.0.borrow_mut().stream).poll_close(cx))
            .await;
    }
}

/// Why ciphertext was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fed {
    /// The client's first byte is not a TLS handshake record.
    NotTls,
    /// The TLS connection failed (a bad record, a refused certificate).
    Failed,
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
