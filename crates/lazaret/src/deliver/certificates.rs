//! The certificate authorities outbound delivery trusts when a policy asks for a
//! verified peer (MTA-STS `enforce`, a connector with `tls = "verify"`) and when it
//! fetches an MTA-STS policy over HTTPS: the system's store (/etc/ssl/certs, or the
//! files `SSL_CERT_FILE` / `SSL_CERT_DIR` name), read once at start.
//!
//! The SMTP handshake itself accepts any certificate (opportunistic TLS must not fail
//! on a self-signed one); when a policy wants more, the chain the server sent is checked
//! against these roots right after the handshake, before a single command goes over it.

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;
use std::sync::Arc;
use tokio_rustls::TlsConnector;

pub struct Certificates {
    verifier: Option<Arc<WebPkiServerVerifier>>,
    https: Option<TlsConnector>,
    /// How many roots were loaded, for the log and `status`.
    pub roots: usize,
}

impl Certificates {
    pub fn from_system() -> Certificates {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("trusted certificates: {e}");
        }
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        Certificates::with_roots(roots, added)
    }

    fn with_roots(roots: RootCertStore, count: usize) -> Certificates {
        if count == 0 {
            tracing::warn!(
                "no trusted certificate authorities found (install ca-certificates, or set SSL_CERT_FILE): \
                 MTA-STS enforce and tls = \"verify\" will defer all mail they apply to"
            );
            return Certificates {
                verifier: None,
                https: None,
                roots: 0,
            };
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = verifier_for(roots.clone()).ok();
        let https = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map(|mut config| {
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                TlsConnector::from(Arc::new(config))
            });
        Certificates {
            verifier,
            https,
            roots: count,
        }
    }

    /// Checks the chain a server presented: issued under a trusted root, valid now, and
    /// for `name`.
    pub fn verify(&self, chain: &[CertificateDer<'_>], name: &str) -> Result<(), String> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or("no trusted certificate authorities on this server")?;
        verify_chain(verifier, chain, name)
    }

    /// TLS for HTTPS requests (MTA-STS policies): verified against the same roots.
    pub fn https(&self) -> Result<&TlsConnector, String> {
        self.https
            .as_ref()
            .ok_or_else(|| "no trusted certificate authorities on this server".to_string())
    }
}

/// A verifier trusting `roots` only (the system's, or the anchor a DANE-TA record
/// names).
pub fn verifier_for(roots: Arc<RootCertStore>) -> Result<Arc<WebPkiServerVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| e.to_string())
}

/// Checks the chain a server presented: issued under the verifier's roots, valid now,
/// and for `name`.
pub fn verify_chain(
    verifier: &WebPkiServerVerifier,
    chain: &[CertificateDer<'_>],
    name: &str,
) -> Result<(), String> {
    let (end_entity, intermediates) = chain
        .split_first()
        .ok_or("the server sent no certificate")?;
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?} is not a name a certificate can be for: {e}"))?;
    verifier
        .verify_server_cert(
            end_entity,
            intermediates,
            &server_name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| format!("certificate not valid for {name}: {e}"))
}
