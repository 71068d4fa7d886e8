//! `[auth_checks]`: SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489) of mail arriving
//! on the inbound port, with the `mail-auth` crate over the delivery resolver
//! (`[delivery] dns_servers`). The result goes on top of the message as an
//! `Authentication-Results:` header (RFC 8601); with `dmarc_reject`, a message that
//! fails DMARC for a domain publishing `p=reject` is refused with `550 5.7.1`.
//! DNS gets a time budget per message: a slow resolver gives `temperror`, never a
//! stalled session.

use lazaret_proto::smtp::Reply;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DmarcResult, MessageAuthenticator};
use std::net::IpAddr;
use std::time::Duration;

/// DNS time one message may take for all its checks.
const BUDGET: Duration = Duration::from_secs(5);

pub struct AuthChecks {
    authenticator: MessageAuthenticator,
    hostname: String,
    dmarc_reject: bool,
}

impl AuthChecks {
    /// None when `[auth_checks] enabled` is off; an error when no resolver can be set up.
    pub fn new(config: &lazaret_core::Config) -> Result<Option<AuthChecks>, String> {
        if !config.auth_checks.enabled {
            return Ok(None);
        }
        let resolver = crate::deliver::next_hop::resolver(&config.delivery.dns_servers)?;
        Ok(Some(AuthChecks {
            authenticator: MessageAuthenticator(resolver),
            hostname: config.hostname.clone(),
            dmarc_reject: config.auth_checks.dmarc_reject,
        }))
    }

    /// The `Authentication-Results:` header field (with its line end) for a message
    /// from `ip`, or the reply refusing it.
    pub async fn check(
        &self,
        data: &[u8],
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> Result<String, Reply> {
        let Some(message) = AuthenticatedMessage::parse(data) else {
            // Not a message mail-auth can read (no header block): nothing to say.
            return Ok(String::new());
        };
        let helo = if helo.is_empty() { "unknown" } else { helo };
        let checked = tokio::time::timeout(BUDGET, async {
            let dkim = self.authenticator.verify_dkim(&message).await;
            let spf = self
                .authenticator
                .verify_spf(SpfParameters::verify_mail_from(
                    ip,
                    helo,
                    &self.hostname,
                    mail_from,
                ))
                .await;
            let mail_from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
            let dmarc = self
                .authenticator
                .verify_dmarc(DmarcParameters::new(
                    &message,
                    &dkim,
                    mail_from_domain,
                    &spf,
                ))
                .await;
            let header = AuthenticationResults::new(&self.hostname)
                .with_dkim_results(&dkim, message.from())
                .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
                .with_dmarc_result(&dmarc);
            (header.to_header(), dmarc)
        })
        .await;
        let Ok((results, dmarc)) = checked else {
            tracing::info!(%ip, "authentication checks out of time; marked temperror");
            return Ok(format!(
                "Authentication-Results: {}; dkim=temperror; spf=temperror; dmarc=temperror\r\n",
                self.hostname
            ));
        };
        let failed = matches!(dmarc.result(), DmarcResult::Fail(_));
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
        Ok(results)
    }
}
