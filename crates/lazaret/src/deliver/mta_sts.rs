//! MTA-STS (RFC 8461): a domain that publishes `_mta-sts.DOMAIN` TXT and a policy at
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` says which MX hosts are its own and
//! that they must be reached over TLS with a certificate valid for their name. Under
//! `mode: enforce` a host outside the list, or one without valid TLS, gets no mail (the
//! message waits and is retried); under `mode: testing` mail goes as usual and the
//! failure is logged.
//!
//! Policies are kept for their `max_age` in memory and in `mta-sts.json` in the data
//! directory, so a restart does not open the window for a downgrade the cache exists to
//! close; the TXT record is asked again at most every `RECHECK` and a changed `id`
//! fetches the policy anew.
//!
//! The policy file is parsed here: it is a few `key: value` lines (RFC 8461 §3.2) and
//! `mail-auth`, which parses the TXT record, has no parser for it.

use crate::deliver::certificates::Certificates;
use hickory_resolver::TokioResolver;
use mail_auth::common::parse::TxtRecordParser;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How long a TXT answer (or its absence) is trusted before asking again.
const RECHECK: i64 = 300;
/// RFC 8461 §3.2: at most a year.
const MAX_AGE_LIMIT: u64 = 31_557_600;
/// RFC 8461 §3.3 suggests a 64 KiB bound on the policy body.
const MAX_POLICY_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns: `mx.example.org` or `*.example.org` (one label).
    pub mx: Vec<String>,
    pub max_age: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy has no `version: STSv1`")]
    Version,
    #[error("policy has no valid `mode` (enforce, testing or none)")]
    Mode,
    #[error("policy has no valid `max_age`")]
    MaxAge,
    #[error("policy in mode {0:?} lists no `mx`")]
    NoMx(Mode),
}

impl Policy {
    /// RFC 8461 §3.2: CRLF or LF lines of `key: value`; unknown keys are ignored; `mx`
    /// repeats.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let (mut version, mut mode, mut max_age, mut mx) = (false, None, None, Vec::new());
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = value == "STSv1",
                "mode" => {
                    mode = match value {
                        "enforce" => Some(Mode::Enforce),
                        "testing" => Some(Mode::Testing),
                        "none" => Some(Mode::None),
                        _ => return Err(PolicyError::Mode),
                    }
                }
                "max_age" => {
                    let age = value.parse::<u64>().map_err(|_| PolicyError::MaxAge)?;
                    max_age = Some(age.min(MAX_AGE_LIMIT));
                }
                "mx" if !value.is_empty() => mx.push(value.to_ascii_lowercase()),
                _ => {}
            }
        }
        if !version {
            return Err(PolicyError::Version);
        }
        let mode = mode.ok_or(PolicyError::Mode)?;
        let max_age = max_age.ok_or(PolicyError::MaxAge)?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx(mode));
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Does an MX host name match one of the policy's patterns (RFC 8461 §4.1)? A
    /// wildcard stands for exactly one leftmost label.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => host == *pattern,
            })
    }
}

/// A policy as kept: with the TXT `id` it was fetched under and its times.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    id: String,
    policy: Policy,
    fetched_at: i64,
    /// When the TXT record was last seen (or found gone while the policy still held).
    checked_at: i64,
}

impl Cached {
    fn live(&self, now: i64) -> bool {
        now < self.fetched_at + self.policy.max_age as i64
    }
}

/// Per domain: the cached policy, or the time a domain was last found to have none.
#[derive(Default, Serialize, Deserialize)]
struct Book {
    policies: HashMap<String, Cached>,
    #[serde(skip)]
    none_until: HashMap<String, i64>,
}

pub struct MtaSts {
    book: Mutex<Book>,
    file: Option<PathBuf>,
    certificates: std::sync::Arc<Certificates>,
}

impl MtaSts {
    /// `file`: where policies persist (none: memory only).
    pub fn new(file: Option<PathBuf>, certificates: std::sync::Arc<Certificates>) -> MtaSts {
        let book = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        MtaSts {
            book: Mutex::new(book),
            file,
            certificates,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy in force for `domain` now, if any (a `mode: none` policy counts as
    /// none). Never fails: trouble reaching the domain's DNS or web server keeps the
    /// cached policy, or delivers as without one (RFC 8461 §5).
    pub async fn policy_for(&self, domain: &str, resolver: &TokioResolver) -> Option<Policy> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let now = crate::deliver::now();
        let cached = {
            let book = self.lock();
            if book.none_until.get(&domain).is_some_and(|t| now < *t) {
                return None;
            }
            book.policies.get(&domain).filter(|c| c.live(now)).cloned()
        };
        if let Some(c) = &cached {
            if now < c.checked_at + RECHECK {
                return in_force(&c.policy);
            }
        }
        let id = match txt_id(&domain, resolver).await {
            Ok(Some(id)) => id,
            Ok(None) | Err(_) => {
                // No record (or DNS trouble): a live cached policy still holds.
                let mut book = self.lock();
                match cached {
                    Some(mut c) => {
                        c.checked_at = now;
                        let policy = c.policy.clone();
                        book.policies.insert(domain, c);
                        return in_force(&policy);
                    }
                    None => {
                        book.none_until.insert(domain, now + RECHECK);
                        return None;
                    }
                }
            }
        };
        if let Some(mut c) = cached.clone().filter(|c| c.id == id) {
            c.checked_at = now;
            let policy = c.policy.clone();
            self.lock().policies.insert(domain, c);
            return in_force(&policy);
        }
        match self.fetch(&domain, resolver).await {
            Ok(policy) => {
                tracing::info!(domain, ?policy.mode, mx = ?policy.mx, "MTA-STS policy fetched (id {id})");
                let entry = Cached {
                    id,
                    policy: policy.clone(),
                    fetched_at: now,
                    checked_at: now,
                };
                self.lock().policies.insert(domain, entry);
                self.save();
                in_force(&policy)
            }
            Err(e) => {
                tracing::warn!(domain, "MTA-STS policy not fetched: {e}");
                match cached {
                    Some(c) => in_force(&c.policy),
                    None => {
                        self.lock().none_until.insert(domain, now + RECHECK);
                        None
                    }
                }
            }
        }
    }

    async fn fetch(&self, domain: &str, resolver: &TokioResolver) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            crate::deliver::https_get::get(
                &host,
                "/.well-known/mta-sts.txt",
                resolver,
                &self.certificates,
                MAX_POLICY_BYTES,
            ),
        )
        .await
        .map_err(|_| format!("https://{host}/: no answer in {FETCH_TIMEOUT:?}"))??;
        let text = String::from_utf8(body).map_err(|_| "policy is not UTF-8".to_string())?;
        Policy::parse(&text).map_err(|e| e.to_string())
    }

    /// The policies held now, for `status`: domain, policy, when fetched (Unix time).
    pub fn policies(&self) -> Vec<(String, Policy, i64)> {
        let now = crate::deliver::now();
        let mut held: Vec<_> = self
            .lock()
            .policies
            .iter()
            .filter(|(_, c)| c.live(now))
            .map(|(domain, c)| (domain.clone(), c.policy.clone(), c.fetched_at))
            .collect();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        held
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let bytes = match serde_json::to_vec_pretty(&*self.lock()) {
            Ok(b) => b,
            Err(_) => return,
        };
        let tmp = file.with_extension("json.tmp");
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, file)) {
            tracing::warn!("cannot keep MTA-STS policies in {}: {e}", file.display());
        }
    }
}

fn in_force(policy: &Policy) -> Option<Policy> {
    (policy.mode != Mode::None).then(|| policy.clone())
}

/// The `id` of `_mta-sts.DOMAIN`'s TXT record; `Ok(None)` when there is no valid one
/// (RFC 8461 §3.1: several records, or none starting `v=STSv1`, mean none).
async fn txt_id(domain: &str, resolver: &TokioResolver) -> Result<Option<String>, String> {
    let answer = match resolver.txt_lookup(format!("_mta-sts.{domain}.")).await {
        Ok(a) => a,
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let records: Vec<Vec<u8>> = answer
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            hickory_resolver::proto::rr::RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .flat_map(|c| c.iter().copied())
                    .collect(),
            ),
            _ => None,
        })
        .filter(|r: &Vec<u8>| r.starts_with(b"v=STSv1"))
        .collect();
    match records.as_slice() {
        [one] => Ok(mail_auth::mta_sts::MtaSts::parse(one).ok().map(|r| r.id)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_is_read_as_rfc_8461_writes_it() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert!(p.allows("mail.example.com."));
        assert!(p.allows("MX1.Example.Net"));
        assert!(!p.allows("a.b.example.net"), "a wildcard is one label");
        assert!(!p.allows("example.net"));
        assert!(!p.allows("evil.example.com"));
        let long = Policy::parse(
            "version: STSv1\nmode: testing\nmx: a.test\nmax_age: 99999999999\nextension: x\n",
        )
        .unwrap();
        assert_eq!((long.mode, long.max_age), (Mode::Testing, MAX_AGE_LIMIT));
        assert_eq!(
            Policy::parse("mode: enforce\nmx: a\nmax_age: 1"),
            Err(PolicyError::Version)
        );
        assert_eq!(
            Policy::parse("version: STSv1\nmode: strict\nmx: a\nmax_age: 1"),
            Err(PolicyError::Mode)
        );
        assert_eq!(
            Policy::parse("version: STSv1\nmode: enforce\nmax_age: 1"),
            Err(PolicyError::NoMx(Mode::Enforce))
        );
        assert_eq!(
            Policy::parse("version: STSv1\nmode: none\nmax_age: 1")
                .unwrap()
                .mx,
            Vec::<String>::new()
        );
        assert_eq!(
            Policy::parse("version: STSv1\nmode: enforce\nmx: a\n"),
            Err(PolicyError::MaxAge)
        );
    }
}
