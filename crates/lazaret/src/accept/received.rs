//! The Received: trace header (RFC 5321 section 4.4) put on top of every accepted message.

use lazaret_proto::smtp::Envelope;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

pub fn header(envelope: &Envelope, peer: std::net::IpAddr, hostname: &str, id: &str) -> String {
    // RFC 3848 protocol names: S for TLS, A for an authenticated session.
    let protocol = match (
        envelope.esmtp,
        envelope.tls,
        envelope.authenticated.is_some(),
    ) {
        (true, true, true) => "ESMTPSA",
        (true, false, true) => "ESMTPA",
        (true, true, false) => "ESMTPS",
        (true, false, false) => "ESMTP",
        (false, ..) => "SMTP",
    };
    let date = OffsetDateTime::now_utc()
        .format(&Rfc2822)
        .unwrap_or_default();
    let helo: String = envelope
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let for_clause = match envelope.rcpt_to.as_slice() {
        [one] => format!("\r\n\tfor <{one}>"),
        _ => String::new(),
    };
    format!(
        "Received: from {helo} ([{peer}])\r\n\tby {hostname} (Lazaret) with {protocol} id {id}{for_clause};\r\n\t{date}\r\n"
    )
}
