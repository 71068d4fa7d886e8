//! Delivery status notifications (RFC 3464): a multipart/report to the envelope
//! sender, from the null sender, saying which recipients failed and why, with the
//! original headers attached. Built with mail-builder.

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;

/// One recipient the DSN reports on.
pub struct FailedRecipient {
    pub address: String,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// The remote server's reply, or our own reason when there was none.
    pub diagnostic: String,
    /// The server that gave the reply, if one did.
    pub remote_mta: Option<String>,
}

pub struct Report<'a> {
    pub hostname: &'a str,
    /// Our id for the failed message (shown to the sender, and to the admin).
    pub queue_id: &'a str,
    pub arrival: i64,
    pub original: &'a [u8],
    pub failed: &'a [FailedRecipient],
}

/// The RFC 3463 status of an SMTP reply: its enhanced code if it gave one of the
/// reply's class, else the generic code of the class.
pub fn status_of(code: u16, enhanced: Option<&str>) -> String {
    match enhanced {
        Some(s) if s.starts_with(&(code / 100).to_string()) => s.to_string(),
        _ => format!("{}.0.0", code / 100),
    }
}

/// The headers of the original message: everything up to the first empty line.
fn original_headers(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(message.len());
    &message[..end]
}

pub fn build(report: &Report<'_>, sender: &str, dsn_id: &str) -> Vec<u8> {
    let now = crate::deliver::now();
    let mut human = format!(
        "This is the mail system at {host}.\r\n\r\n\
         Your message could not be delivered to one or more recipients.\r\n\
         It was accepted here on {arrival} with id {id}.\r\n\r\n",
        host = report.hostname,
        arrival = Date::new(report.arrival).to_rfc822(),
        id = report.queue_id,
    );
    for f in report.failed {
        human.push_str(&format!("<{}>: {}\r\n", f.address, f.diagnostic));
    }

    let mut status = format!(
        "Reporting-MTA: dns; {}\r\nX-Lazaret-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        report.hostname,
        report.queue_id,
        Date::new(report.arrival).to_rfc822()
    );
    for f in report.failed {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            f.address, f.status
        ));
        if let Some(mta) = &f.remote_mta {
            status.push_str(&format!(
                "Remote-MTA: dns; {mta}\r\nDiagnostic-Code: smtp; {}\r\n",
                f.diagnostic
            ));
        } else {
            status.push_str(&format!("Diagnostic-Code: x-lazaret; {}\r\n", f.diagnostic));
        }
        status.push_str(&format!(
            "Last-Attempt-Date: {}\r\n",
            Date::new(now).to_rfc822()
        ));
    }

    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human).transfer_encoding("7bit"),
            MimePart::new(
                ContentType::new("message/delivery-status"),
                status.into_bytes(),
            )
            .transfer_encoding("7bit"),
            MimePart::new(
                ContentType::new("text/rfc822-headers"),
                original_headers(report.original).to_vec(),
            )
            .transfer_encoding("8bit"),
        ],
    );
    let postmaster = format!("MAILER-DAEMON@{}", report.hostname);
    MessageBuilder::new()
        .from(Address::new_address(
            Some("Mail Delivery System"),
            postmaster,
        ))
        .to(Address::new_address(None::<&str>, sender.to_string()))
        .subject("Undelivered Mail Returned to Sender")
        .message_id(format!("{dsn_id}@{}", report.hostname))
        .date(Date::new(now))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_reply() {
        assert_eq!(status_of(550, Some("5.1.1")), "5.1.1");
        assert_eq!(status_of(550, None), "5.0.0");
        assert_eq!(status_of(552, Some("4.2.2")), "5.0.0");
    }

    #[test]
    fn report_is_a_parseable_multipart_report() {
        let original = b"From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let failed = [FailedRecipient {
            address: "bob@remote.test".into(),
            status: "5.1.1".into(),
            diagnostic: "550 5.1.1 no such user".into(),
            remote_mta: Some("127.0.0.1".into()),
        }];
        let dsn = build(
            &Report {
                hostname: "mail.test",
                queue_id: "abc",
                arrival: 1_700_000_000,
                original,
                failed: &failed,
            },
            "a@x.test",
            "dsn1",
        );
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert!(text.contains("report-type"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; bob@remote.test"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Subject: hi"));
        assert!(!text.contains("body\r\n"), "only headers are returned");
        let parsed = mail_parser::MessageParser::default().parse(&dsn).unwrap();
        assert_eq!(parsed.parts.len(), 4);
    }
}
