//! What search and scanning need from a message, taken once at ingest with a real
//! MIME parser: header fields and, for every MIME part, its type, file name, decoded
//! size and decoded SHA-256.

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

/// Nested message/rfc822 levels walked; deeper parts are not indexed.
const MAX_NESTING: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct MessageMetadata {
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub date: Option<i64>,
    pub message_id: String,
    pub parts: Vec<PartInfo>,
}

#[derive(Debug, Clone)]
pub struct PartInfo {
    pub content_type: String,
    pub filename: Option<String>,
    pub size: u64,
    pub sha256: String,
}

fn addresses(a: Option<&Address<'_>>) -> String {
    a.map(|a| {
        a.iter()
            .filter_map(|addr| addr.address())
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

impl MessageMetadata {
    /// Never fails: mail that does not parse as MIME is still mail, indexed by what
    /// could be read.
    pub fn extract(raw: &[u8]) -> MessageMetadata {
        let Some(message) = MessageParser::default().parse(raw) else {
            return MessageMetadata::default();
        };
        let mut meta = MessageMetadata {
            from: addresses(message.from()),
            to: addresses(message.to()),
            cc: addresses(message.cc()),
            subject: message.subject().unwrap_or_default().to_string(),
            date: message.date().map(|d| d.to_timestamp()),
            message_id: message.message_id().unwrap_or_default().to_string(),
            parts: Vec::new(),
        };
        collect_parts(&message, 0, &mut meta.parts);
        meta
    }
}

fn collect_parts(message: &mail_parser::Message<'_>, depth: usize, out: &mut Vec<PartInfo>) {
    for part in &message.parts {
        if matches!(part.body, PartType::Multipart(_)) {
            continue;
        }
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "text/plain".into())
            .to_ascii_lowercase();
        let contents = part.contents();
        out.push(PartInfo {
            content_type,
            filename: part.attachment_name().map(str::to_string),
            size: contents.len() as u64,
            sha256: hex::encode(Sha256::digest(contents)),
        });
        if let PartType::Message(nested) = &part.body {
            if depth < MAX_NESTING {
                collect_parts(nested, depth + 1, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_with_attachment() {
        let raw = b"From: A <a@x.test>\r\nTo: b@y.test, c@y.test\r\nSubject: hello\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@x>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody text\r\n--b\r\nContent-Type: application/octet-stream; name=\"worm.exe\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"worm.exe\"\r\n\r\naGVsbG8=\r\n--b--\r\n";
        let m = MessageMetadata::extract(raw);
        assert_eq!(m.from, "a@x.test");
        assert_eq!(m.to, "b@y.test, c@y.test");
        assert_eq!(m.subject, "hello");
        assert_eq!(m.date, Some(1_795_428_000));
        let att = m
            .parts
            .iter()
            .find(|p| p.filename.as_deref() == Some("worm.exe"))
            .unwrap();
        assert_eq!(att.size, 5);
        // sha256("hello"): the decoded bytes, not the base64 text.
        assert_eq!(
            att.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn garbage_is_still_indexed() {
        let m = MessageMetadata::extract(b"\xff\xfe not mail at all");
        assert!(m.subject.is_empty());
    }
}
