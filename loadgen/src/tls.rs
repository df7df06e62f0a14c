//! TLS for the `tcp` client (`--tls-ca`): rustls, with the connection's
//! writer and reader threads sharing one TLS session.
//!
//! The handshake runs when the connection opens, before the reader starts.
//! Then the writer encrypts a frame and writes the ciphertext under the
//! session's send lock; the reader reads ciphertext from its own handle of
//! the socket with no lock held, and takes the session's lock only to
//! decrypt it (and sends, under the send lock, what the session wants to
//! send in answer, such as a key update). Locks are taken in one order
//! (send, then session), and the session's only for memory work.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A client configuration trusting the PEM certificates in `ca`.
pub(crate) fn client_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("--tls-ca {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("--tls-ca {}", ca.display()))?)
            .with_context(|| format!("--tls-ca {}", ca.display()))?;
    }
    // ring, as weir's listeners (no C library to build).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One connection's TLS session, shared by its writer and reader.
#[derive(Debug)]
pub(crate) struct TlsSession {
    session: Mutex<rustls::ClientConnection>,
    sending: Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl TlsSession {
    /// Runs the handshake on `stream` for server `host`.
    pub(crate) fn connect(
        stream: &mut TcpStream,
        config: &Arc<rustls::ClientConfig>,
        host: &str,
    ) -> io::Result<Arc<TlsSession>> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let mut session =
            rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        session.set_buffer_limit(None);
        while session.is_handshaking() {
            session.complete_io(stream)?;
        }
        Ok(Arc::new(TlsSession {
            session: Mutex::new(session),
            sending: Mutex::new(()),
        }))
    }

    /// Encrypts `plain` and writes it to `stream`.
    pub(crate) fn write_all(&self, mut stream: &TcpStream, plain: &[u8]) -> io::Result<()> {
        let _sending = lock(&self.sending);
        let mut out = Vec::with_capacity(plain.len() + 256);
        {
            let mut session = lock(&self.session);
            session.writer().write_all(plain)?;
            while session.wants_write() {
                session.write_tls(&mut out)?;
            }
        }
        stream.write_all(&out)
    }

    /// Writes what the session wants to send.
    fn send_pending(&self, mut stream: &TcpStream) -> io::Result<()> {
        let _sending = lock(&self.sending);
        let mut out = Vec::new();
        {
            let mut session = lock(&self.session);
            while session.wants_write() {
                session.write_tls(&mut out)?;
            }
        }
        stream.write_all(&out)
    }
}

/// The reading side of a TLS connection.
pub(crate) struct TlsReader {
    session: Arc<TlsSession>,
    stream: TcpStream,
    cipher: Vec<u8>,
}

impl TlsReader {
    pub(crate) fn new(session: Arc<TlsSession>, stream: TcpStream) -> TlsReader {
        TlsReader {
            session,
            stream,
            cipher: vec![0; 64 * 1024],
        }
    }
}

impl Read for TlsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match lock(&self.session.session).reader().read(buf) {
                Ok(read) => return Ok(read),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            let read = self.stream.read(&mut self.cipher)?;
            if read == 0 {
                return Ok(0);
            }
            let wants_write = {
                let mut session = lock(&self.session.session);
                let mut cipher = &self.cipher[..read];
                while !cipher.is_empty() {
                    session.read_tls(&mut cipher)?;
                    session
                        .process_new_packets()
                        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                }
                session.wants_write()
            };
            if wants_write {
                self.session.send_pending(&self.stream)?;
            }
        }
    }
}
