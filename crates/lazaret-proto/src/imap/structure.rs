//! What FETCH computes from a message's bytes: ENVELOPE, BODY/BODYSTRUCTURE and the
//! bytes of a section (`BODY[1.2.HEADER]` and friends). mail-parser parses; the part
//! numbering and the response syntax of RFC 3501 §6.4.5 and §7.4.2 are here.

use super::write::{nstring, string};
use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

/// Which part of a message a section names: a path of part numbers, then what of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// The whole part (or the whole message for an empty path).
    All,
    Header,
    HeaderFields {
        names: Vec<String>,
        not: bool,
    },
    Text,
    Mime,
}

/// The raw header block of a part: from its first header to the empty line, inclusive.
fn header_of<'a>(raw: &'a [u8], part: &MessagePart<'_>) -> &'a [u8] {
    slice(raw, part.offset_header as usize, part.offset_body as usize)
}

fn body_of<'a>(raw: &'a [u8], part: &MessagePart<'_>) -> &'a [u8] {
    slice(raw, part.offset_body as usize, part.offset_end as usize)
}

fn slice(raw: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(raw.len());
    &raw[start.min(end)..end]
}

/// Finds the part a path names: returns the message that holds it and its index.
/// Part 1 of a non-multipart message is its body; a message/rfc822 part's numbers
/// continue into the enclosed message.
fn locate<'a, 'x>(msg: &'a Message<'x>, path: &[u32]) -> Option<(&'a Message<'x>, usize)> {
    let mut m = msg;
    let mut current = 0usize;
    for (depth, &n) in path.iter().enumerate() {
        if depth > 0 {
            if let PartType::Message(nested) = &m.parts.get(current)?.body {
                m = nested;
                current = 0;
            }
        }
        match &m.parts.get(current)?.body {
            PartType::Multipart(children) => current = *children.get(n as usize - 1)? as usize,
            _ if n == 1 => {}
            _ => return None,
        }
    }
    Some((m, current))
}

/// The bytes of a section, or None if the message has no such part.
pub fn section(msg: &Message<'_>, path: &[u32], what: &SectionText) -> Option<Vec<u8>> {
    let raw: &[u8] = &msg.raw_message;
    if path.is_empty() {
        let root = msg.parts.first()?;
        return Some(match what {
            // An enclosed message's raw bytes may run on past its end: use its offsets.
            SectionText::All | SectionText::Mime => {
                slice(raw, root.offset_header as usize, root.offset_end as usize).to_vec()
            }
            SectionText::Header => header_of(raw, root).to_vec(),
            // Up to the end of the message, past a multipart's closing boundary.
            SectionText::Text => slice(raw, root.offset_body as usize, raw.len()).to_vec(),
            SectionText::HeaderFields { names, not } => {
                filter_fields(header_of(raw, root), names, *not)
            }
        });
    }
    let (m, index) = locate(msg, path)?;
    let part = m.parts.get(index)?;
    let raw: &[u8] = &m.raw_message;
    match what {
        SectionText::All => Some(body_of(raw, part).to_vec()),
        SectionText::Mime => Some(header_of(raw, part).to_vec()),
        // HEADER and TEXT of a part apply to an enclosed message only.
        SectionText::Header | SectionText::Text | SectionText::HeaderFields { .. } => {
            let PartType::Message(nested) = &part.body else {
                return None;
            };
            if matches!(what, SectionText::Text) {
                // Everything of the enclosed message after its header, epilogue
                // included: the part's bytes less the header's length (the enclosed
                // root's own end stops at a multipart's closing boundary).
                let root = nested.parts.first()?;
                let header = (root.offset_body - root.offset_header) as usize;
                let bytes = body_of(raw, part);
                return Some(bytes[header.min(bytes.len())..].to_vec());
            }
            section(nested, &[], what)
        }
    }
}

/// The header lines (with their folded continuations) whose names are (or, with
/// `not`, are not) in `names`, and the empty line that ends a header block.
fn filter_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.split(|b| *b == b':').next().unwrap_or(b"");
            let name = String::from_utf8_lossy(name);
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name.trim()));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A header's value as it appears in the message: unfolded, trimmed, undecoded.
fn raw_header(msg: &Message<'_>, part: &MessagePart<'_>, name: HeaderName<'_>) -> Option<String> {
    let h = part.headers.iter().find(|h| h.name == name)?;
    let bytes = slice(
        &msg.raw_message,
        h.offset_start as usize,
        h.offset_end as usize,
    );
    let text = String::from_utf8_lossy(bytes);
    let unfolded: String = text.replace("\r\n", "").replace('\n', "");
    Some(unfolded.trim().to_string())
}

fn address_list(out: &mut Vec<u8>, value: Option<&HeaderValue<'_>>) {
    let Some(HeaderValue::Address(addr)) = value else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut items: Vec<Vec<u8>> = Vec::new();
    let one = |name: Option<&str>, email: Option<&str>| {
        let mut a = Vec::new();
        a.push(b'(');
        nstring(&mut a, name.map(str::as_bytes));
        let (local, host) = match email.and_then(|e| e.rsplit_once('@')) {
            Some((l, h)) => (Some(l), Some(h)),
            None => (email, None),
        };
        // An obsolete source route (`<@route:user@domain>`) is the envelope's adl.
        let (route, local) = match local.and_then(|l| l.strip_prefix('@').and(l.split_once(':'))) {
            Some((route, local)) => (Some(route), Some(local)),
            None => (None, local),
        };
        a.push(b' ');
        nstring(&mut a, route.map(str::as_bytes));
        a.push(b' ');
        nstring(&mut a, local.map(str::as_bytes));
        a.push(b' ');
        nstring(&mut a, host.map(str::as_bytes));
        a.push(b')');
        a
    };
    match addr {
        Address::List(list) => {
            for a in list {
                items.push(one(a.name.as_deref(), a.address.as_deref()));
            }
        }
        Address::Group(groups) => {
            for g in groups {
                // RFC 3501: a group is (NIL NIL "name" NIL) ... (NIL NIL NIL NIL).
                if let Some(name) = &g.name {
                    let mut a = b"(NIL NIL ".to_vec();
                    string(&mut a, name.as_bytes());
                    a.extend_from_slice(b" NIL)");
                    items.push(a);
                }
                // A member without an address is a comment (`group: (foo) ;`).
                for m in g.addresses.iter().filter(|m| m.address.is_some()) {
                    items.push(one(m.name.as_deref(), m.address.as_deref()));
                }
                if g.name.is_some() {
                    items.push(b"(NIL NIL NIL NIL)".to_vec());
                }
            }
        }
    }
    if items.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in items {
        out.extend_from_slice(&a);
    }
    out.push(b')');
}

/// ENVELOPE of a message (its root part's headers).
pub fn envelope(out: &mut Vec<u8>, msg: &Message<'_>) {
    let Some(root) = msg.parts.first() else {
        out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        return;
    };
    let value = |name: HeaderName<'_>| {
        root.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    };
    out.push(b'(');
    nstring(
        out,
        raw_header(msg, root, HeaderName::Date)
            .as_deref()
            .map(str::as_bytes),
    );
    out.push(b' ');
    nstring(
        out,
        raw_header(msg, root, HeaderName::Subject)
            .as_deref()
            .map(str::as_bytes),
    );
    let from = value(HeaderName::From);
    for (i, name) in [
        HeaderName::From,
        HeaderName::Sender,
        HeaderName::ReplyTo,
        HeaderName::To,
        HeaderName::Cc,
        HeaderName::Bcc,
    ]
    .into_iter()
    .enumerate()
    {
        out.push(b' ');
        let v = value(name);
        // Sender and Reply-To default to From (RFC 3501 §7.4.2), also when present
        // without an address.
        let v = if (i == 1 || i == 2) && !matches!(v, Some(HeaderValue::Address(_))) {
            from
        } else {
            v
        };
        address_list(out, v);
    }
    out.push(b' ');
    nstring(
        out,
        raw_header(msg, root, HeaderName::InReplyTo)
            .as_deref()
            .map(str::as_bytes),
    );
    out.push(b' ');
    nstring(
        out,
        raw_header(msg, root, HeaderName::MessageId)
            .as_deref()
            .map(str::as_bytes),
    );
    out.push(b')');
}

fn params(
    out: &mut Vec<u8>,
    attrs: Option<&[mail_parser::Attribute<'_>]>,
    default: Option<(&str, &str)>,
) {
    let list: Vec<(&str, &str)> = match attrs {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|a| (a.name.as_ref(), a.value.as_ref()))
            .collect(),
        _ => default.into_iter().collect(),
    };
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in list.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k.to_ascii_uppercase().as_bytes());
        out.push(b' ');
        string(out, v.as_bytes());
    }
    out.push(b')');
}

fn disposition_language_location(out: &mut Vec<u8>, part: &MessagePart<'_>) {
    out.push(b' ');
    match part.content_disposition() {
        Some(d) => {
            out.push(b'(');
            string(out, d.ctype().to_ascii_uppercase().as_bytes());
            out.push(b' ');
            params(out, d.attributes(), None);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match part.content_language() {
        HeaderValue::Text(t) => string(out, t.as_bytes()),
        HeaderValue::TextList(l) if !l.is_empty() => {
            out.push(b'(');
            for (i, t) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string(out, t.as_bytes());
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(out, part.content_location().map(str::as_bytes));
}

/// Parts one BODYSTRUCTURE describes at most. A real message's parts form a tree, each
/// described once; in a malformed one mail-parser's part list can name the same parts
/// as children again and again, and the walk then grows as 2^depth (found by fuzzing:
/// a 1 KB message kept FETCH BODYSTRUCTURE busy for longer than 10 s).
const MAX_DESCRIBED: usize = 10_000;

/// BODYSTRUCTURE (`extended`) or BODY of a message.
pub fn body_structure(out: &mut Vec<u8>, msg: &Message<'_>, extended: bool) {
    let mut budget = MAX_DESCRIBED;
    part_structure(out, msg, 0, extended, 0, &mut budget);
}

fn part_structure(
    out: &mut Vec<u8>,
    msg: &Message<'_>,
    index: usize,
    extended: bool,
    depth: usize,
    budget: &mut usize,
) {
    let Some(part) = msg.parts.get(index) else {
        out.extend_from_slice(b"NIL");
        return;
    };
    if depth > 50 || *budget == 0 {
        // Deeper or bigger than any real message; the parser's own limit stops well
        // before.
        out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
        return;
    }
    *budget -= 1;
    let raw: &[u8] = &msg.raw_message;
    let ct = part.content_type();
    if let PartType::Multipart(children) = &part.body {
        out.push(b'(');
        for child in children {
            part_structure(out, msg, *child as usize, extended, depth + 1, budget);
        }
        out.push(b' ');
        let subtype = ct.and_then(|c| c.subtype()).unwrap_or("mixed");
        string(out, subtype.to_ascii_uppercase().as_bytes());
        if extended {
            out.push(b' ');
            let attrs = ct.and_then(|c| c.attributes());
            params(out, attrs, None);
            disposition_language_location(out, part);
        }
        out.push(b')');
        return;
    }
    let (ctype, subtype) = match (&part.body, ct) {
        (PartType::Message(_), _) => ("MESSAGE".to_string(), "RFC822".to_string()),
        (_, Some(c)) => (
            c.ctype().to_ascii_uppercase(),
            c.subtype()
                .unwrap_or(if c.ctype().eq_ignore_ascii_case("text") {
                    "plain"
                } else {
                    "octet-stream"
                })
                .to_ascii_uppercase(),
        ),
        (_, None) => ("TEXT".into(), "PLAIN".into()),
    };
    let body = body_of(raw, part);
    out.push(b'(');
    string(out, ctype.as_bytes());
    out.push(b' ');
    string(out, subtype.as_bytes());
    out.push(b' ');
    let default_charset = (ctype == "TEXT").then_some(("CHARSET", "us-ascii"));
    params(out, ct.and_then(|c| c.attributes()), default_charset);
    out.push(b' ');
    nstring(out, part.content_id().map(str::as_bytes));
    out.push(b' ');
    nstring(out, part.content_description().map(str::as_bytes));
    out.push(b' ');
    let encoding = part
        .content_transfer_encoding()
        .unwrap_or("7bit")
        .to_ascii_uppercase();
    string(out, encoding.as_bytes());
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    let lines = body.iter().filter(|b| **b == b'\n').count();
    if let PartType::Message(nested) = &part.body {
        out.push(b' ');
        envelope(out, nested);
        out.push(b' ');
        part_structure(out, nested, 0, extended, depth + 1, budget);
        out.extend_from_slice(format!(" {lines}").as_bytes());
    } else if ctype == "TEXT" {
        out.extend_from_slice(format!(" {lines}").as_bytes());
    }
    if extended {
        out.extend_from_slice(b" NIL");
        disposition_language_location(out, part);
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: Alice <alice@example.test>\r\n\
To: bob@example.test, \"Carol C\" <carol@example.test>\r\n\
Subject: =?utf-8?q?hi?= there\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <m1@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello Bob,\r\nline two\r\n\
--b1\r\n\
Content-Type: application/zip; name=\"worm.zip\"\r\n\
Content-Disposition: attachment; filename=\"worm.zip\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
UEsDBAo=\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.test\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
--b1--\r\n";

    fn text(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn sections_follow_rfc3501_numbering() {
        let m = parse(MIXED).unwrap();
        let header = text(section(&m, &[], &SectionText::Header).unwrap());
        assert!(
            header.starts_with("From: Alice") && header.ends_with("\r\n\r\n"),
            "{header:?}"
        );
        // The CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1).
        assert_eq!(
            text(section(&m, &[1], &SectionText::All).unwrap()),
            "Hello Bob,\r\nline two"
        );
        assert_eq!(
            text(section(&m, &[2], &SectionText::All).unwrap()),
            "UEsDBAo="
        );
        let mime = text(section(&m, &[2], &SectionText::Mime).unwrap());
        assert!(
            mime.contains("worm.zip") && mime.ends_with("\r\n\r\n"),
            "{mime:?}"
        );
        let inner_header = text(section(&m, &[3], &SectionText::Header).unwrap());
        assert!(
            inner_header.starts_with("From: inner@") && inner_header.contains("Subject: inner"),
            "{inner_header:?}"
        );
        assert_eq!(
            text(section(&m, &[3], &SectionText::Text).unwrap()),
            "inner body"
        );
        assert_eq!(
            text(section(&m, &[3, 1], &SectionText::All).unwrap()),
            "inner body"
        );
        assert!(section(&m, &[4], &SectionText::All).is_none());
        assert!(section(&m, &[1], &SectionText::Header).is_none());
        let fields = SectionText::HeaderFields {
            names: vec!["subject".into(), "TO".into()],
            not: false,
        };
        assert_eq!(
            text(section(&m, &[], &fields).unwrap()),
            "To: bob@example.test, \"Carol C\" <carol@example.test>\r\nSubject: =?utf-8?q?hi?= there\r\n\r\n"
        );
        let whole = section(&m, &[], &SectionText::All).unwrap();
        assert_eq!(whole, MIXED);
    }

    #[test]
    fn single_part_message_body_is_part_one() {
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(section(&m, &[1], &SectionText::All).unwrap(), b"body\r\n");
        assert_eq!(section(&m, &[], &SectionText::Text).unwrap(), b"body\r\n");
        let mut out = Vec::new();
        body_structure(&mut out, &m, false);
        assert_eq!(
            text(out),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 6 1)"
        );
    }

    #[test]
    fn envelope_and_bodystructure_of_a_multipart_message() {
        let m = parse(MIXED).unwrap();
        let mut env = Vec::new();
        envelope(&mut env, &m);
        let env = text(env);
        assert!(env.starts_with("(\"Mon, 23 Nov 2026 10:00:00 +0000\" \"=?utf-8?q?hi?= there\" ((\"Alice\" NIL \"alice\" \"example.test\"))"), "{env}");
        assert!(
            env.contains(
                "((NIL NIL \"bob\" \"example.test\")(\"Carol C\" NIL \"carol\" \"example.test\"))"
            ),
            "{env}"
        );
        assert!(env.ends_with(" NIL \"<m1@example.test>\")"), "{env}");

        let mut bs = Vec::new();
        body_structure(&mut bs, &m, true);
        let bs = text(bs);
        assert!(bs.starts_with("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 20 1 NIL NIL NIL NIL)"), "{bs}");
        assert!(bs.contains("(\"APPLICATION\" \"ZIP\" (\"NAME\" \"worm.zip\") NIL NIL \"BASE64\" 8 NIL (\"ATTACHMENT\" (\"FILENAME\" \"worm.zip\")) NIL NIL)"), "{bs}");
        assert!(bs.contains("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 54 (NIL \"inner\" ((NIL NIL \"inner\" \"example.test\"))"), "{bs}");
        assert!(
            bs.contains("\"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)"),
            "{bs}"
        );
    }
}
