//! What search and scanning need from a message, taken once at ingest with a real
//! MIME parser: header fields, the readable text, and for every MIME part (and every
//! file inside a zip/tar/gzip attachment) its type, file name, decoded size and
//! decoded SHA-256.

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
    /// text/plain and tag-stripped text/html, for substring search.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct PartInfo {
    pub content_type: String,
    pub filename: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// For a file inside an archive: the index (in `parts`) of the attachment it came
    /// from; its `filename` is its path inside that attachment.
    pub inside: Option<usize>,
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
            text: lazaret_scan::text::searchable_text(&message),
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
        let contents = decoded_bytes(message, part);
        let filename = part.attachment_name().map(str::to_string);
        let index = out.len();
        out.push(PartInfo {
            content_type,
            filename: filename.clone(),
            size: contents.len() as u64,
            sha256: hex::encode(Sha256::digest(&contents)),
            inside: None,
        });
        if lazaret_scan::is_archive(&contents) {
            // What could be listed is indexed; a bomb or broken archive is the
            // scanner's business, not the index's.
            let name = filename.as_deref().unwrap_or("attachment");
            let _ = lazaret_scan::expand(name, &contents, &ARCHIVE_LIMITS, &mut |m| {
                out.push(PartInfo {
                    content_type: "application/octet-stream".into(),
                    size: m.data.len() as u64,
                    sha256: hex::encode(Sha256::digest(&m.data)),
                    filename: Some(m.path[name.len() + 1..].to_string()),
                    inside: Some(index),
                });
            });
        }
        if let PartType::Message(nested) = &part.body {
            if depth < MAX_NESTING {
                collect_parts(nested, depth + 1, out);
            }
        }
    }
}

/// Archive expansion for the index: enough to list what worms ship, bounded so that
/// ingest stays fast whatever arrives.
const ARCHIVE_LIMITS: lazaret_scan::Limits = lazaret_scan::Limits {
    max_depth: 3,
    max_files: 200,
    max_bytes: 32 << 20,
    max_ratio: 250,
};

/// A part's bytes after transfer decoding (base64, quoted-printable) and nothing else:
/// what a file saved from the mail contains, so hashes match those of the file. Text
/// parts are re-read from the raw message because the parser has converted them to
/// UTF-8.
fn decoded_bytes(
    message: &mail_parser::Message<'_>,
    part: &mail_parser::MessagePart<'_>,
) -> Vec<u8> {
    if !matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
        return part.contents().to_vec();
    }
    let raw = message
        .raw_message()
        .get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)
        .unwrap_or_default();
    let encoding = part
        .content_transfer_encoding()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "base64" => mail_parser::decoders::base64::base64_decode(raw),
        "quoted-printable" => mail_parser::decoders::quoted_printable::quoted_printable_decode(raw),
        _ => None,
    };
    decoded.unwrap_or_else(|| raw.to_vec())
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
