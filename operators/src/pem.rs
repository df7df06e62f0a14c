//! Reading PEM certificate files, for the TLS of the listeners
//! (`sources::ingest::tls`) and of the sinks that connect out
//! (`sinks::client_tls`).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Every certificate of the PEM file at `path`; an error (without the
/// path, which the caller names with its option) when it cannot be read or
/// holds none.
pub(crate) fn read_certs(
    path: impl AsRef<std::path::Path>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(error)?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// A PEM reading error as a message.
pub(crate) fn error(error: rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(error) => error.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of that kind found".into(),
        other => format!("{other:?}"),
    }
}
