//! TLS on the ingest listeners: `tls = { cert, key, client_ca }` on the
//! `tcp`, `http`, `otlp` and `syslog` (TCP) sources, with rustls (ring).
//!
//! - `cert`: the server's certificate chain, PEM, leaf first.
//! - `key`: its private key, PEM (PKCS #8, PKCS #1 or SEC1).
//! - `client_ca`: when set, clients must present a certificate signed by
//!   one of these PEM certificates (mutual TLS); without it any client may
//!   connect.
//!
//! TLS 1.2 and 1.3 are offered. The files are read when the pipeline is
//! checked, so a missing or bad file is an error naming the option and the
//! path, before anything listens. The connection's encryption happens in
//! [`Socket`](super::socket::Socket), on the shard that serves the
//! connection.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use crate::pem::{error as pem_error, read_certs};
use serde::{Deserialize, Serialize};

/// A listener's `tls` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
    /// The certificate authorities client certificates must chain to
    /// (PEM); none: no client certificate is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// A checked server configuration, shared by a source's connections.
#[derive(Clone)]
pub struct Tls(pub Arc<rustls::ServerConfig>);

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Tls {}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl TlsConfig {
    /// Reads the files into a server configuration; the error names the
    /// option (`tls.cert`, `tls.key`, `tls.client_ca`) and the file.
    pub fn server(&self) -> Result<Tls, String> {
        let shown = |option: &str, path: &std::path::Path| {
            format!("`tls.{option} = \"{}\"`", path.display())
        };
        let certs = read_certs(&self.cert)
            .map_err(|error| format!("{}: {error}", shown("cert", &self.cert)))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|error| {
            format!(
                "{}: not a PEM private key: {}",
                shown("key", &self.key),
                pem_error(error)
            )
        })?;
        // ring, not aws-lc-rs: no C library to build (rustls marks ring's
        // provider deprecated for lacking post-quantum key exchange).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("tls: {error}"))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(path)
                    .map_err(|error| format!("{}: {error}", shown("client_ca", path)))?
                {
                    roots
                        .add(cert)
                        .map_err(|error| format!("{}: {error}", shown("client_ca", path)))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|error| format!("{}: {error}", shown("client_ca", path)))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(certs, key).map_err(|error| {
            format!(
                "{} and {} do not make a server identity: {error}",
                shown("cert", &self.cert),
                shown("key", &self.key)
            )
        })?;
        Ok(Tls(Arc::new(config)))
    }
}
