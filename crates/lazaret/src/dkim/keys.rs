//! DKIM keys on disk: `data_dir/dkim/keys.json` lists them (domain, selector,
//! algorithm, when made, whether active) and `data_dir/dkim/DOMAIN/SELECTOR.der` holds
//! each private key (Ed25519 as PKCS #8, RSA as PKCS #1; mode 0600). A domain signs with
//! its active key; `rotate` makes a new one active and keeps the old one listed until
//! it is removed, so the old DNS record can stay while signed mail is in flight.

use anyhow::{bail, Context, Result};
use mail_auth::dkim::generate::DkimKeyPair;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Ed25519-SHA256 (RFC 8463): short keys and fast, but not every receiver checks it.
    Ed25519,
    /// RSA-SHA256 with a 2048-bit key: what every receiver checks.
    Rsa2048,
}

impl Algorithm {
    pub fn parse(text: &str) -> Option<Algorithm> {
        match text {
            "ed25519" => Some(Algorithm::Ed25519),
            "rsa2048" | "rsa" => Some(Algorithm::Rsa2048),
            _ => None,
        }
    }

    fn key_type(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa2048 => "rsa",
        }
    }
}

/// One key as `dkim list` shows it, with the DNS record to publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    /// Unix seconds.
    pub created: i64,
    /// The key the domain signs with (one per domain).
    pub active: bool,
    /// The public key, base64, as the record's `p=`.
    pub public_key: String,
}

impl KeyInfo {
    /// Where the record goes: `SELECTOR._domainkey.DOMAIN`.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record's text.
    pub fn dns_txt(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.key_type(),
            self.public_key
        )
    }
}

pub struct KeyStore {
    dir: PathBuf,
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !s.starts_with('.')
        && !s.contains("..")
}

impl KeyStore {
    pub fn new(data_dir: &Path) -> KeyStore {
        KeyStore {
            dir: data_dir.join("dkim"),
        }
    }

    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        let path = self.dir.join("keys.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a DKIM key list", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn save(&self, keys: &[KeyInfo]) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join("keys.json");
        let tmp = self.dir.join(".keys.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(keys)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    fn key_path(&self, domain: &str, selector: &str) -> PathBuf {
        self.dir.join(domain).join(format!("{selector}.der"))
    }

    /// The private key's bytes (DER).
    pub fn private_key(&self, key: &KeyInfo) -> Result<Vec<u8>> {
        let path = self.key_path(&key.domain, &key.selector);
        std::fs::read(&path).with_context(|| format!("reading DKIM key {}", path.display()))
    }

    /// Makes a key for `domain`. A domain's first key signs at once; a later one waits
    /// (standby) until `activate_standby` — publish its record first, so that no receiver sees
    /// a signature whose key it cannot find yet. The selector defaults to `lzYYYYMMDD`
    /// (a new name per rotation: the old record can stay).
    pub fn generate(
        &self,
        domain: &str,
        selector: Option<&str>,
        algorithm: Algorithm,
        now: i64,
    ) -> Result<KeyInfo> {
        self.make(domain, selector, algorithm, now, false)
    }

    /// As `generate`, the new key signing at once whatever the domain had (a rotation
    /// with no standby key: a leaked key must stop signing now).
    pub fn generate_active(
        &self,
        domain: &str,
        selector: Option<&str>,
        algorithm: Algorithm,
        now: i64,
    ) -> Result<KeyInfo> {
        self.make(domain, selector, algorithm, now, true)
    }

    /// Makes `domain`'s newest standby key the one it signs with; None if it has none.
    pub fn activate_standby(&self, domain: &str) -> Result<Option<KeyInfo>> {
        let mut keys = self.list()?;
        let active_created = keys
            .iter()
            .filter(|k| k.domain == domain && k.active)
            .map(|k| k.created)
            .max();
        let Some(standby) = keys
            .iter()
            .filter(|k| k.domain == domain && !k.active)
            .filter(|k| active_created.is_none_or(|t| k.created >= t))
            .max_by_key(|k| k.created)
            .map(|k| k.selector.clone())
        else {
            return Ok(None);
        };
        for k in keys.iter_mut().filter(|k| k.domain == domain) {
            k.active = k.selector == standby;
        }
        self.save(&keys)?;
        Ok(keys.into_iter().find(|k| k.domain == domain && k.active))
    }

    fn make(
        &self,
        domain: &str,
        selector: Option<&str>,
        algorithm: Algorithm,
        now: i64,
        activate: bool,
    ) -> Result<KeyInfo> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if !valid_domain(&domain) {
            bail!("{domain:?} is not a domain name");
        }
        let selector = match selector {
            Some(s) => s.trim().to_ascii_lowercase(),
            None => default_selector(now),
        };
        if !valid_selector(&selector) {
            bail!("{selector:?} is not a selector: letters, digits, '-' and '.' only");
        }
        let mut keys = self.list()?;
        if keys
            .iter()
            .any(|k| k.domain == domain && k.selector == selector)
        {
            bail!("{domain} already has a key with selector {selector}: remove it first or pick another selector");
        }
        let (private, public) = match algorithm {
            Algorithm::Ed25519 => {
                let pair = DkimKeyPair::generate_ed25519()
                    .map_err(|e| anyhow::anyhow!("cannot make an Ed25519 key: {e}"))?;
                pair.into_inner()
            }
            Algorithm::Rsa2048 => {
                let pair = DkimKeyPair::generate_rsa(2048)
                    .map_err(|e| anyhow::anyhow!("cannot make an RSA key: {e}"))?;
                let (private, pkcs1_public) = pair.into_inner();
                (private, spki_of_rsa(&pkcs1_public)?)
            }
        };
        let path = self.key_path(&domain, &selector);
        std::fs::create_dir_all(path.parent().expect("key path has a parent"))?;
        write_secret(&path, &private)?;
        let active = activate || !keys.iter().any(|k| k.domain == domain);
        if active {
            for k in keys.iter_mut().filter(|k| k.domain == domain) {
                k.active = false;
            }
        }
        let info = KeyInfo {
            domain,
            selector,
            algorithm,
            created: now,
            active,
            public_key: base64(&public),
        };
        keys.push(info.clone());
        self.save(&keys)?;
        Ok(info)
    }

    /// Removes `domain`'s key with `selector`, or all its keys; returns those removed.
    /// Removing the active key leaves the newest remaining one active.
    pub fn remove(&self, domain: &str, selector: Option<&str>) -> Result<Vec<KeyInfo>> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let keys = self.list()?;
        let (gone, mut kept): (Vec<KeyInfo>, Vec<KeyInfo>) = keys.into_iter().partition(|k| {
            k.domain == domain && selector.is_none_or(|s| k.selector.eq_ignore_ascii_case(s))
        });
        if gone.is_empty() {
            bail!(
                "no DKIM key for {domain}{}",
                selector
                    .map(|s| format!(" with selector {s}"))
                    .unwrap_or_default()
            );
        }
        if !kept.iter().any(|k| k.domain == domain && k.active) {
            if let Some(newest) = kept
                .iter_mut()
                .filter(|k| k.domain == domain)
                .max_by_key(|k| k.created)
            {
                newest.active = true;
            }
        }
        self.save(&kept)?;
        for k in &gone {
            let _ = std::fs::remove_file(self.key_path(&k.domain, &k.selector));
        }
        Ok(gone)
    }
}

fn default_selector(now: i64) -> String {
    let day =
        time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "lz{:04}{:02}{:02}",
        day.year(),
        day.month() as u8,
        day.day()
    )
}

/// Written 0600 from the start (never readable by others, not even for a moment).
fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The RSA public key as receivers expect it in `p=`: SubjectPublicKeyInfo (what
/// `openssl rsa -pubout` prints), not the bare PKCS #1 key the generator returns.
fn spki_of_rsa(pkcs1: &[u8]) -> Result<Vec<u8>> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::EncodePublicKey;
    let key = rsa::RsaPublicKey::from_pkcs1_der(pkcs1).context("reading the new RSA key")?;
    Ok(key
        .to_public_key_der()
        .context("encoding the RSA public key")?
        .as_bytes()
        .to_vec())
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
