//! The signer set: each domain's active key, ready to sign. Submission signs a message
//! with the key of its `From:` domain (the domain DMARC aligns with); a message whose
//! From domain has no key goes out unsigned.

use super::keys::{Algorithm, KeyInfo, KeyStore};
use anyhow::Result;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use std::collections::HashMap;

/// Header fields signed when present: those a forger would change, and those whose
/// change alters how the message is shown (RFC 6376 5.4.1).
const SIGNED_HEADERS: [&str; 13] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
];

enum Key {
    Ed25519(DkimSigner<Ed25519Key, Done>),
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
}

struct DomainSigner {
    selector: String,
    key: Key,
}

/// Every domain's active signer.
#[derive(Default)]
pub struct Signers {
    by_domain: HashMap<String, DomainSigner>,
}

impl Signers {
    /// Loads every domain's active key; a key that does not load is skipped with a
    /// warning (its domain then goes unsigned), never a reason to stop the server.
    pub fn load(store: &KeyStore) -> Result<Signers> {
        let mut by_domain = HashMap::new();
        for info in store.list()?.into_iter().filter(|k| k.active) {
            match signer_of(store, &info) {
                Ok(key) => {
                    by_domain.insert(
                        info.domain.clone(),
                        DomainSigner {
                            selector: info.selector.clone(),
                            key,
                        },
                    );
                }
                Err(e) => tracing::warn!(
                    "DKIM key {} of {} not loaded, its mail goes out unsigned: {e:#}",
                    info.selector,
                    info.domain
                ),
            }
        }
        Ok(Signers { by_domain })
    }

    /// (domain, selector) of every signing domain.
    pub fn domains(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = self
            .by_domain
            .iter()
            .map(|(d, s)| (d.clone(), s.selector.clone()))
            .collect();
        out.sort();
        out
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The `DKIM-Signature:` header field (with its line end) for `message`, if its
    /// From domain signs.
    pub fn sign(&self, message: &[u8]) -> Option<Result<String, String>> {
        let domain = from_domain(message)?;
        let signer = self.by_domain.get(&domain)?;
        let signed = match &signer.key {
            Key::Ed25519(s) => s.sign(message),
            Key::Rsa(s) => s.sign(message),
        };
        Some(
            signed
                .map(|sig| sig.to_header())
                .map_err(|e| format!("DKIM signing for {domain} failed: {e}")),
        )
    }
}

fn signer_of(store: &KeyStore, info: &KeyInfo) -> Result<Key> {
    let der = store.private_key(info)?;
    let err = |e: mail_auth::Error| anyhow::anyhow!("unreadable key: {e}");
    Ok(match info.algorithm {
        Algorithm::Ed25519 => Key::Ed25519(configure(
            Ed25519Key::from_pkcs8_maybe_unchecked_der(&der).map_err(err)?,
            info,
        )),
        Algorithm::Rsa2048 => {
            let key =
                RsaKey::<Sha256>::from_key_der(rustls::pki_types::PrivateKeyDer::Pkcs1(der.into()))
                    .map_err(err)?;
            Key::Rsa(configure(key, info))
        }
    })
}

fn configure<K: mail_auth::common::crypto::SigningKey>(
    key: K,
    info: &KeyInfo,
) -> DkimSigner<K, Done> {
    DkimSigner::from_key(key)
        .domain(info.domain.clone())
        .selector(info.selector.clone())
        .headers(SIGNED_HEADERS)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// The domain of the message's `From:` address, lower case.
fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let address = parsed.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    Some(domain.trim_end_matches('.').to_ascii_lowercase())
}
