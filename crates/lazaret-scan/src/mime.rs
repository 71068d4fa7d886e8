//! The MIME walk shared by the index and the scanner: every leaf part of a message
//! (nested message/rfc822 parts included) with its bytes after transfer decoding.

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};
use std::borrow::Cow;

/// Nested message/rfc822 levels walked; deeper parts are not visited.
pub const MAX_NESTING: usize = 16;

/// One leaf part of a message.
pub struct Part<'a> {
    /// `type/subtype`, lower case (`text/plain` when absent).
    pub content_type: String,
    pub filename: Option<&'a str>,
    /// The bytes after base64 / quoted-printable decoding.
    pub data: Cow<'a, [u8]>,
    /// 0 for parts of the message itself, 1 inside an attached message, …
    pub nesting: usize,
    /// A message/rfc822 part: the walk goes on into its parts.
    pub is_message: bool,
}

/// Hands every leaf part to `visit`, depth first. Returns false if parts were left
/// out because messages were nested deeper than [`MAX_NESTING`].
pub fn walk<'a>(message: &'a Message<'a>, visit: &mut dyn FnMut(Part<'a>)) -> bool {
    walk_at(message, 0, visit)
}

fn walk_at<'a>(message: &'a Message<'a>, nesting: usize, visit: &mut dyn FnMut(Part<'a>)) -> bool {
    let mut complete = true;
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
        visit(Part {
            content_type,
            filename: part.attachment_name(),
            data: decoded_bytes(message, part),
            nesting,
            is_message: matches!(part.body, PartType::Message(_)),
        });
        if let PartType::Message(nested) = &part.body {
            if nesting < MAX_NESTING {
                complete &= walk_at(nested, nesting + 1, visit);
            } else {
                complete = false;
            }
        }
    }
    complete
}

/// A part's bytes after transfer decoding (base64, quoted-printable) and nothing else:
/// what a file saved from the mail contains, so hashes match those of the file. Text
/// parts are re-read from the raw message because the parser has converted them to
/// UTF-8.
fn decoded_bytes<'a>(message: &'a Message<'a>, part: &'a MessagePart<'a>) -> Cow<'a, [u8]> {
    if !matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
        return Cow::Borrowed(part.contents());
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
    decoded.map_or(Cow::Borrowed(raw), Cow::Owned)
}

/// Does this look like a mail message (a file saved from a mailbox, an .eml)? The
/// first line must be a header field and one of the usual fields must follow soon.
pub fn looks_like_mail(data: &[u8]) -> bool {
    let head = &data[..data.len().min(4096)];
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let is_field = |line: &[u8]| {
        let colon = line.iter().position(|&b| b == b':');
        colon.is_some_and(|c| c > 0 && line[..c].iter().all(|&b| b.is_ascii_graphic() && b != b':'))
    };
    let mbox_from = first.starts_with(b"From ");
    if !(is_field(first) || mbox_from) {
        return false;
    }
    const FIELDS: [&[u8]; 8] = [
        b"from:",
        b"to:",
        b"subject:",
        b"received:",
        b"return-path:",
        b"message-id:",
        b"mime-version:",
        b"delivered-to:",
    ];
    let mut known = 0;
    for line in head.split(|&b| b == b'\n').take(64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if FIELDS.iter().any(|f| lower.starts_with(f)) {
            known += 1;
        }
    }
    known >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_parts_and_walks_nested_messages() {
        let raw = b"From: a@x.test\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9=\r\n ok\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@y.test\r\nSubject: inner\r\nContent-Type: application/octet-stream; name=w.bin\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n";
        let message = mail_parser::MessageParser::default().parse(raw).unwrap();
        let mut seen = Vec::new();
        assert!(walk(&message, &mut |p| seen.push((
            p.content_type,
            p.filename.map(str::to_string),
            p.data.to_vec(),
            p.nesting
        ))));
        assert!(seen.contains(&("text/plain".into(), None, "café ok".as_bytes().to_vec(), 0)));
        assert!(seen.contains(&(
            "application/octet-stream".into(),
            Some("w.bin".into()),
            b"hello".to_vec(),
            1
        )));
        assert!(looks_like_mail(raw));
        assert!(!looks_like_mail(b"MZ\x90\x00 binary"));
        assert!(!looks_like_mail(b"Note: one line of text\nand more\n"));
    }
}
