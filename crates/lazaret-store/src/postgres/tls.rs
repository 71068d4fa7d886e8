//! TLS to PostgreSQL. Whether a connection is encrypted is the URL's `sslmode`
//! (`disable`, `prefer` — the default — or `require`); when it is, the database's
//! certificate is always verified, chain and host name, as libpq's `verify-full`:
//! an unverified connection would hand the database password and every message's
//! metadata to whoever sits in between. Trusted are the system's roots, or only the
//! CA in `[store] ca_file` when one is given (libpq's `sslrootcert`).

use crate::{Result, StoreError};
use std::path::Path;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What every connection to the database is made with (pool and listener alike).
pub(super) fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let invalid = |what: String| {
                StoreError::Invalid(format!("[store] ca_file {}: {what}", path.display()))
            };
            let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("not a CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(invalid(
                    "holds no certificate (PEM, -----BEGIN CERTIFICATE-----)".into(),
                ));
            }
        }
        None => {
            // A missing system store is not an error here: only a TLS connection needs
            // roots, and it then fails naming the certificate it could not trust.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Invalid(format!("TLS to PostgreSQL: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// An error and its causes, as one line: the pool says only that a connection could
/// not be made, the causes say that a certificate was not trusted and which.
pub(super) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = e.source();
    }
    text
}

/// What to do about a connection that failed on the database's certificate.
pub(super) fn hint(error: &str) -> &'static str {
    if error.contains("does not support TLS") {
        " (the url says sslmode=require, and the database does not offer TLS: turn on \
         ssl in postgresql.conf, or drop sslmode=require)"
    } else if error.contains("certificate") || error.contains("TLS handshake") {
        " (the database's TLS certificate is not trusted: set [store] ca_file to the CA \
         that signed it, or put sslmode=disable in the url for a plaintext connection on a \
         private network)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_not_there_or_holds_no_certificate_is_named() {
        let dir = std::env::temp_dir().join(format!("lazaret-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = connector(Some(&missing)).err().unwrap().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = connector(Some(&empty)).err().unwrap().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
        assert!(connector(None).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
