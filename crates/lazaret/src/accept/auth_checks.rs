//! `[auth_checks]`: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617)
//! of mail arriving on the inbound port, with the `mail-auth` crate over the delivery
//! resolver (`[delivery] dns_servers`). The result goes on top of the message as an
//! `Authentication-Results:` header (RFC 8601) and, as one short line
//! (`spf=pass dkim=pass dmarc=pass arc=none`), into the store for `find --auth`.
//! What a failure leads to:
//! - DMARC fails for a domain publishing `p=reject` (`dmarc_reject`): `550 5.7.1`;
//! - for one publishing `p=quarantine` (`dmarc_quarantine`): Lazaret's quarantine;
//! - `From:` is one of our own domains and neither SPF nor DKIM authenticates it
//!   (`own_domain_quarantine`): Lazaret's quarantine, with or without a DMARC record —
//!   a worm forging the boss's address is the classic case.
//!
//! DNS gets a time budget per message: a slow resolver gives `temperror`, never a
//! stalled session, and a temporary error never quarantines. Parsed records are kept
//! for their TTL (`record_cache.rs`).

use super::record_cache::RecordCache;
use lazaret_proto::smtp::Reply;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcResult,
    MessageAuthenticator, Parameters, RecordSet, SpfResult, Txt, MX,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// DNS time one message may take for all its checks.
const BUDGET: Duration = Duration::from_secs(5);

/// Parsed records by kind, shared by every session.
#[derive(Default)]
struct Caches {
    txt: RecordCache<Box<str>, Txt>,
    mx: RecordCache<Box<str>, RecordSet<MX>>,
    ipv4: RecordCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: RecordCache<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: RecordCache<IpAddr, RecordSet<Box<str>>>,
}

type Cached<'x, P> = Parameters<
    'x,
    P,
    RecordCache<Box<str>, Txt>,
    RecordCache<Box<str>, RecordSet<MX>>,
    RecordCache<Box<str>, RecordSet<Ipv4Addr>>,
    RecordCache<Box<str>, RecordSet<Ipv6Addr>>,
    RecordCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Caches {
    /// A check's parameters with every cache.
    fn with<P>(&self, params: P) -> Cached<'_, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

pub struct AuthChecks {
    authenticator: MessageAuthenticator,
    caches: Caches,
    hostname: String,
    dmarc_reject: bool,
    dmarc_quarantine: bool,
    own_domain_quarantine: bool,
}

/// What the checks found for one message.
#[derive(Debug, Default)]
pub struct AuthOutcome {
    /// The `Authentication-Results:` header field, with its line end ("" when the
    /// message has no header block to check).
    pub header: String,
    /// Each method's result, as the store keeps it: `spf=… dkim=… dmarc=… arc=…`.
    pub summary: String,
    /// The `From:` domain, lower-case ("" when there is none or several).
    pub from_domain: String,
    /// SPF or a DKIM signature passed for a domain aligned with the `From:` domain.
    pub aligned_pass: bool,
    /// A DNS failure or the time budget left some result undecided.
    pub temporary: bool,
    /// Why the message goes to quarantine under the domain's own DMARC policy.
    pub policy_quarantine: Option<String>,
}

impl AuthChecks {
    /// None when `[auth_checks] enabled` is off; an error when no resolver can be set up.
    pub fn new(config: &lazaret_core::Config) -> Result<Option<AuthChecks>, String> {
        if !config.auth_checks.enabled {
            return Ok(None);
        }
        let resolver = crate::deliver::next_hop::resolver(&config.delivery.dns_servers)?;
        let c = &config.auth_checks;
        Ok(Some(AuthChecks {
            authenticator: MessageAuthenticator(resolver),
            caches: Caches::default(),
            hostname: config.hostname.clone(),
            dmarc_reject: c.dmarc_reject,
            dmarc_quarantine: c.dmarc_quarantine,
            own_domain_quarantine: c.own_domain_quarantine,
        }))
    }

    /// Checks a message from `ip`: what was found, or the reply refusing it.
    pub async fn check(
        &self,
        data: &[u8],
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> Result<AuthOutcome, Reply> {
        let Some(message) = AuthenticatedMessage::parse(data) else {
            // Not a message mail-auth can read (no header block): nothing to say.
            return Ok(AuthOutcome::default());
        };
        let helo = if helo.is_empty() { "unknown" } else { helo };
        let mail_from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
        let checked = tokio::time::timeout(BUDGET, async {
            let auth = &self.authenticator;
            let dkim = auth.verify_dkim(self.caches.with(&message)).await;
            let arc = auth.verify_arc(self.caches.with(&message)).await;
            let spf = auth
                .verify_spf(self.caches.with(SpfParameters::verify_mail_from(
                    ip,
                    helo,
                    &self.hostname,
                    mail_from,
                )))
                .await;
            let dmarc = auth
                .verify_dmarc(self.caches.with(DmarcParameters::new(
                    &message,
                    &dkim,
                    mail_from_domain,
                    &spf,
                )))
                .await;
            let header = AuthenticationResults::new(&self.hostname)
                .with_dkim_results(&dkim, message.from())
                .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
                .with_arc_result(&arc, ip)
                .with_dmarc_result(&dmarc);
            (
                header.to_header(),
                dkim,
                spf.result(),
                arc.result().clone(),
                dmarc,
            )
        })
        .await;
        let Ok((header, dkim, spf, arc, dmarc)) = checked else {
            tracing::info!(%ip, "authentication checks out of time; marked temperror");
            return Ok(AuthOutcome {
                header: format!(
                    "Authentication-Results: {}; dkim=temperror; spf=temperror; arc=temperror; dmarc=temperror\r\n",
                    self.hostname
                ),
                summary: "spf=temperror dkim=temperror dmarc=temperror arc=temperror".into(),
                temporary: true,
                ..AuthOutcome::default()
            });
        };
        let from_domain = single_from_domain(message.froms());
        let dmarc_result = dmarc.result();
        let failed = matches!(dmarc_result, DmarcResult::Fail(_));
        if failed && self.dmarc_reject && dmarc.policy() == Policy::Reject {
            return Err(Reply::new(
                550,
                [5, 7, 1],
                format!(
                    "Message rejected: it fails DMARC and {} asks receivers to reject such mail",
                    dmarc.domain()
                ),
            ));
        }
        let policy_quarantine = (failed
            && self.dmarc_quarantine
            && matches!(dmarc.policy(), Policy::Quarantine | Policy::Reject))
        .then(|| {
            format!(
                "fails DMARC for {}, which asks receivers to quarantine such mail",
                dmarc.domain()
            )
        });
        let dkim_summary = dkim_summary(&dkim);
        let aligned_pass = (spf == SpfResult::Pass && aligned(mail_from_domain, &from_domain))
            || dkim.iter().any(|d| {
                d.result() == &DkimResult::Pass
                    && d.signature().is_some_and(|s| aligned(&s.d, &from_domain))
            });
        let summary = format!(
            "spf={} dkim={dkim_summary} dmarc={} arc={}",
            spf_word(spf),
            dmarc_word(&dmarc_result),
            dkim_word(&arc)
        );
        let temporary = spf == SpfResult::TempError
            || dkim_summary == "temperror"
            || matches!(dmarc_result, DmarcResult::TempError(_));
        Ok(AuthOutcome {
            header,
            summary,
            from_domain,
            aligned_pass,
            temporary,
            policy_quarantine,
        })
    }

    /// Whether a message whose `From:` domain is ours (`own` says) but that nothing
    /// authenticates for it goes to quarantine, and why.
    pub fn own_domain_forgery(&self, outcome: &AuthOutcome, own: bool) -> Option<String> {
        (self.own_domain_quarantine
            && own
            && !outcome.aligned_pass
            && !outcome.temporary
            && !outcome.from_domain.is_empty())
        .then(|| {
            format!(
                "claims to be from our own domain {} but neither SPF nor DKIM authenticates it ({})",
                outcome.from_domain, outcome.summary
            )
        })
    }

    /// Whether to ask the store if the `From:` domain is ours: only when a forgery of
    /// it would be quarantined.
    pub fn needs_own_domain(&self, outcome: &AuthOutcome) -> bool {
        self.own_domain_quarantine
            && !outcome.aligned_pass
            && !outcome.temporary
            && !outcome.from_domain.is_empty()
            && outcome.policy_quarantine.is_none()
    }
}

/// The one domain of the `From:` addresses, lower-case; "" for none or several (DMARC
/// leaves such messages alone, and so do we).
fn single_from_domain(froms: &[String]) -> String {
    let mut domains: Vec<String> = froms
        .iter()
        .filter_map(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    domains.sort();
    domains.dedup();
    match domains.as_slice() {
        [one] => one.clone(),
        _ => String::new(),
    }
}

/// Relaxed alignment (RFC 7489 3.1) without the public suffix list: the same domain,
/// or one a subdomain of the other. For our own domains, which the admin listed,
/// that is the organisational relation that matters.
fn aligned(authenticated: &str, from_domain: &str) -> bool {
    let a = authenticated.trim_end_matches('.').to_ascii_lowercase();
    let f = from_domain;
    !f.is_empty() && (a == f || a.ends_with(&format!(".{f}")) || f.ends_with(&format!(".{a}")))
}

/// One word for all DKIM signatures: pass if any passed, else the first failure's kind.
fn dkim_summary(dkim: &[DkimOutput]) -> &'static str {
    if dkim.iter().any(|d| d.result() == &DkimResult::Pass) {
        return "pass";
    }
    for word in ["fail", "permerror", "temperror", "neutral"] {
        if dkim.iter().any(|d| dkim_word(d.result()) == word) {
            return word;
        }
    }
    "none"
}

fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_relaxed_to_subdomains_either_way() {
        assert!(aligned("example.org", "example.org"));
        assert!(aligned("Mail.Example.org.", "example.org"));
        assert!(aligned("example.org", "news.example.org"));
        assert!(!aligned("badexample.org", "example.org"));
        assert!(!aligned("example.org", ""));
    }

    #[test]
    fn several_from_domains_name_none() {
        assert_eq!(single_from_domain(&["a@Example.ORG".into()]), "example.org");
        assert_eq!(
            single_from_domain(&["a@x.org".into(), "b@y.org".into()]),
            ""
        );
        assert_eq!(
            single_from_domain(&["a@x.org".into(), "b@X.org".into()]),
            "x.org"
        );
        assert_eq!(single_from_domain(&[]), "");
    }
}
