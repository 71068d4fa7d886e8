//! The server certificate: the configured pair, or a self-signed one made once in
//! `data_dir/tls/` so STARTTLS works out of the box.

use anyhow::{anyhow, Context, Result};
use lazaret_core::Config;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

fn self_signed(data_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf)> {
    let dir = data_dir.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    fs::create_dir_all(&dir)?;
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let pair = rcgen::generate_simple_self_signed(names)
        .map_err(|e| anyhow!("cannot make a self-signed certificate: {e}"))?;
    fs::write(&cert, pair.cert.pem())?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)?;
        f.write_all(pair.signing_key.serialize_pem().as_bytes())?;
    }
    Ok((cert, key))
}

pub fn acceptor(config: &Config) -> Result<TlsAcceptor> {
    let (cert_path, key_path) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => self_signed(&config.data_dir, &config.hostname)?,
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut BufReader::new(
        fs::File::open(&cert_path)
            .with_context(|| format!("tls.cert: cannot read {}", cert_path.display()))?,
    ))
    .collect::<Result<_, _>>()
    .with_context(|| format!("tls.cert: {} is not a PEM certificate", cert_path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "tls.cert: no certificate in {}",
            cert_path.display()
        ));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut BufReader::new(
        fs::File::open(&key_path)
            .with_context(|| format!("tls.key: cannot read {}", key_path.display()))?,
    ))
    .with_context(|| format!("tls.key: cannot parse {}", key_path.display()))?
    .ok_or_else(|| anyhow!("tls.key: no private key in {}", key_path.display()))?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("tls: the certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}
