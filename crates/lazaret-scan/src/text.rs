//! The readable text of a message, for substring search: text/plain parts as they are,
//! text/html parts with the markup stripped, capped so one huge message cannot bloat
//! the index.

use mail_parser::{Message, MimeHeaders, PartType};

/// Text kept per message; more is not searchable (documented in find's help).
pub const MAX_TEXT: usize = 64 * 1024;

/// The text parts of `message` (not attachments, not nested messages), joined by
/// newlines and cut at [`MAX_TEXT`] bytes on a character boundary.
pub fn searchable_text(message: &Message<'_>) -> String {
    let mut out = String::new();
    for part in &message.parts {
        if out.len() >= MAX_TEXT {
            break;
        }
        let is_attachment = part
            .content_disposition()
            .is_some_and(|d| d.is_attachment());
        let text = match &part.body {
            PartType::Text(t) if !is_attachment => t.to_string(),
            PartType::Html(h) if !is_attachment => mail_parser::decoders::html::html_to_text(h),
            _ => continue,
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&text);
    }
    if out.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    #[test]
    fn plain_and_html_without_tags_not_attachments() {
        let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello plain\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Click <b>here</b> now</p>\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nattached words\r\n--b--\r\n";
        let m = MessageParser::default().parse(&raw[..]).unwrap();
        let text = searchable_text(&m);
        assert!(text.contains("Hello plain"));
        assert!(text.contains("Click here now"), "{text}");
        assert!(!text.contains("<b>"));
        assert!(!text.contains("attached words"));
    }
}
