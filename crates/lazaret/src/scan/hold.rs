//! `[outbreak] hold_growth`: the store leaves new copies of a fast-growing cluster
//! frozen in `inbound` as routing reaches them; this says so — in the log, the audit
//! log and, with `[outbreak] notify`, a message to the admin — once per cluster held.

use crate::server::Server;
use lazaret_store::{AuditEntry, ClusterHold, Incoming};
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;
use std::sync::Arc;

/// Reports clusters a routing step started holding.
pub async fn announce(server: &Arc<Server>, holds: Vec<ClusterHold>) {
    let Some(rule) = server.config.outbreak.hold_growth else {
        return;
    };
    for hold in holds {
        tracing::warn!(
            cluster = hold.cluster,
            growth = hold.growth,
            senders = hold.senders,
            "outbreak cluster held: its new copies stay frozen in inbound"
        );
        let detail = format!(
            "{} new copies within {} from {} senders (rule {rule}); latest subject {:?}; \
             new copies stay frozen in inbound",
            hold.growth,
            rule.to_string().split_once('/').map_or("", |(_, w)| w),
            hold.senders,
            hold.subject
        );
        if let Err(e) = server
            .audit(AuditEntry {
                actor: "outbreak".into(),
                action: "cluster hold".into(),
                query: Some(format!("cluster {}", hold.cluster)),
                count: Some(hold.growth),
                detail: Some(detail),
            })
            .await
        {
            tracing::error!("cannot audit the hold of cluster {}: {e}", hold.cluster);
        }
        if let Some(to) = server.config.outbreak.notify.clone() {
            let notice = notice(&server.config.hostname, &to, &hold, &rule.to_string());
            match server.store_call(move |s| s.ingest(notice)).await {
                Ok(_) => server.queue_wake.notify_one(),
                Err(e) => tracing::error!("cannot queue the hold notice to {to}: {e}"),
            }
        }
    }
}

/// The message that tells `to` a cluster is held: from the null sender (it never
/// bounces), marked auto-generated, with the commands that end the hold.
fn notice(hostname: &str, to: &str, hold: &ClusterHold, rule: &str) -> Incoming {
    let id = lazaret_store::new_message_id();
    let c = hold.cluster;
    let text = format!(
        "Outbreak cluster {c} on {hostname} grew past [outbreak] hold_growth = \"{rule}\":\r\n\
         {growth} new copies from {senders} distinct senders. Its new copies are frozen in\r\n\
         the inbound queue: none is delivered or bounced until you decide.\r\n\r\n\
         Latest subject: {subject}\r\n\r\n\
         Look at it:        lazaret clusters show {c}\r\n\
         Its messages:      lazaret find --cluster {c} --in all\r\n\
         A worm:            lazaret quarantine --cluster {c}\r\n\
         Known mail:        lazaret clusters allow {c}   (ends the hold, lets the copies go)\r\n\
         Let these go only: lazaret thaw --cluster {c}\r\n",
        growth = hold.growth,
        senders = hold.senders,
        subject = hold.subject,
    );
    let data = MessageBuilder::new()
        .from(Address::new_address(
            Some("Lazaret outbreak watch"),
            format!("MAILER-DAEMON@{hostname}"),
        ))
        .to(Address::new_address(None::<&str>, to.to_string()))
        .subject(format!(
            "[Lazaret] outbreak cluster {c} held: {} copies from {} senders",
            hold.growth, hold.senders
        ))
        .message_id(format!("{id}@{hostname}"))
        .date(Date::new(crate::deliver::now()))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(text)
        .write_to_vec()
        .unwrap_or_default();
    Incoming {
        id,
        mail_from: String::new(),
        rcpt_to: vec![to.to_string()],
        helo: hostname.to_string(),
        peer: "127.0.0.1".into(),
        data,
        scan: None,
        via: lazaret_store::Via::Server("hold notice"),
        auth: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn notice_names_the_cluster_and_the_commands_and_parses() {
        let hold = lazaret_store::ClusterHold {
            cluster: 42,
            growth: 230,
            senders: 17,
            subject: "Invoice 7731".into(),
        };
        let n = super::notice("mx.example.org", "admin@example.org", &hold, "200/10m");
        assert_eq!(n.mail_from, "", "the null sender: a notice never bounces");
        assert_eq!(n.rcpt_to, vec!["admin@example.org".to_string()]);
        let m = mail_parser::MessageParser::default()
            .parse(&n.data)
            .expect("parses");
        assert_eq!(
            m.subject(),
            Some("[Lazaret] outbreak cluster 42 held: 230 copies from 17 senders")
        );
        let body = m.body_text(0).expect("text");
        assert!(body.contains("lazaret quarantine --cluster 42"));
        assert!(body.contains("lazaret clusters allow 42"));
        assert!(body.contains("Invoice 7731"));
    }
}
