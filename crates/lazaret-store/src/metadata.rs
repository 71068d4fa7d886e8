//! What search and scanning need from a message, taken once at ingest with a real
//! MIME parser: header fields, the readable text, and for every MIME part (and every
//! file inside a zip/tar/gzip attachment) its type, file name, decoded size and
//! decoded SHA-256 and MD5 (what hash signatures name).

use mail_parser::{Address, MessageParser};
use md5::Md5;
use sha2::{Digest, Sha256};

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

/// A whole message's digests, as hash signatures and `find --sha256` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub sha256: String,
    pub md5: String,
}

impl Digests {
    pub fn of(data: &[u8]) -> Digests {
        Digests {
            sha256: hex::encode(Sha256::digest(data)),
            md5: hex::encode(Md5::digest(data)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PartInfo {
    pub content_type: String,
    pub filename: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// MD5 of the same bytes: ClamAV `.hdb` signatures name files by it.
    pub md5: String,
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
        collect_parts(&message, &mut meta.parts);
        meta
    }
}

fn collect_parts(message: &mail_parser::Message<'_>, out: &mut Vec<PartInfo>) {
    lazaret_scan::mime::walk(message, &mut |part| {
        let index = out.len();
        let filename = part.filename.map(str::to_string);
        out.push(PartInfo {
            content_type: part.content_type,
            filename: filename.clone(),
            size: part.data.len() as u64,
            sha256: hex::encode(Sha256::digest(&part.data)),
            md5: hex::encode(Md5::digest(&part.data)),
            inside: None,
        });
        // An attached message's text is searched through its own parts.
        if lazaret_scan::is_archive(&part.data)
            || (!part.is_message && lazaret_scan::holds_files(&part.data))
        {
            // What could be listed is indexed; a bomb or broken archive is the
            // scanner's business, not the index's.
            let name = filename.as_deref().unwrap_or("attachment");
            let _ = lazaret_scan::expand(name, &part.data, &ARCHIVE_LIMITS, &mut |m| {
                if !m.is_file {
                    return;
                }
                out.push(PartInfo {
                    content_type: "application/octet-stream".into(),
                    size: m.data.len() as u64,
                    sha256: hex::encode(Sha256::digest(&m.data)),
                    md5: hex::encode(Md5::digest(&m.data)),
                    filename: Some(m.path[name.len() + 1..].to_string()),
                    inside: Some(index),
                });
            });
        }
    });
}

/// Container expansion for the index: enough to list the files worms ship (in
/// archives, documents, encoded text), bounded so that ingest stays fast whatever
/// arrives.
const ARCHIVE_LIMITS: lazaret_scan::Limits = lazaret_scan::Limits {
    max_depth: 3,
    max_files: 200,
    max_bytes: 32 << 20,
    max_ratio: 250,
    files_only: true,
};

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
