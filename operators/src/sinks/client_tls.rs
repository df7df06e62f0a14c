//! [`ClientTls`]: the `tls` table of the sinks that connect out over TLS
//! (`webhook` with an `https://` URL, `postgres`): PEM files.
//!
//! - `ca`: the certificate authorities the server's certificate must chain
//!   to, instead of Mozilla's roots (the default, from `webpki-roots`).
//! - `cert` and `key` (both or neither): the client certificate chain and
//!   its private key, for servers that ask for one (mutual TLS).
//!
//! The server's name is checked against the host the sink connects to.
//! Both sinks use rustls with ring: the webhook through ureq's settings
//! ([`ClientTls::ureq`]), postgres through `tokio-postgres-rustls`
//! ([`ClientTls::rustls`]).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// A sink's `tls` table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// The authorities to trust instead of Mozilla's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The client certificate chain (mutual TLS), with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The client certificate's private key, with `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `tls.OPTION = "PATH"`, as errors name a file.
fn shown(option: &str, path: &str) -> String {
    format!("`tls.{option} = \"{path}\"`")
}

/// Every certificate of the PEM file of option `tls.OPTION`.
fn certs(option: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::pem::read_certs(path).map_err(|error| format!("{}: {error}", shown(option, path)))
}

impl ClientTls {
    /// The client identity, when `cert` and `key` are both set.
    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certs("cert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
                    format!(
                        "{} is not a PEM private key: {}",
                        shown("key", key),
                        crate::pem::error(error)
                    )
                })?;
                Ok(Some((chain, key)))
            }
            (None, None) => Ok(None),
            _ => Err("`tls.cert` and `tls.key` go together: set both or neither".into()),
        }
    }

    /// ureq's TLS settings (the webhook sink).
    pub fn ureq(&self) -> Result<ureq::tls::TlsConfig, String> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let ureq_cert = |cert: &CertificateDer<'static>| Certificate::from_der(cert).to_owned();
        let mut builder = TlsConfig::builder();
        if let Some(ca) = &self.ca {
            let roots: Vec<Certificate<'static>> = certs("ca", ca)?.iter().map(ureq_cert).collect();
            builder = builder.root_certs(RootCerts::new_with_certs(&roots));
        }
        if let (Some((chain, _)), Some(path)) = (self.identity()?, &self.key) {
            let chain: Vec<Certificate<'static>> = chain.iter().map(ureq_cert).collect();
            let pem =
                std::fs::read(path).map_err(|error| format!("{}: {error}", shown("key", path)))?;
            let key = PrivateKey::from_pem(&pem).map_err(|error| {
                format!("{} is not a PEM private key: {error}", shown("key", path))
            })?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        Ok(builder.build())
    }

    /// A rustls client configuration (the postgres sink).
    pub fn rustls(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in certs("ca", ca)? {
                    roots
                        .add(cert)
                        .map_err(|error| format!("{}: {error}", shown("ca", ca)))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        // ring, as for the listeners (no C library to build).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("tls: {error}"))?
            .with_root_certificates(roots);
        match self.identity()? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|error| {
                format!("`tls.cert` and `tls.key` do not make a client identity: {error}")
            }),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}
