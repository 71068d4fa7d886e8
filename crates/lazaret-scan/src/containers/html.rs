//! Files carried inside HTML: `data:` URIs (base64 or percent-encoded) in any
//! attribute or style, and long base64 strings in inline scripts, which "HTML
//! smuggling" decodes in the browser to hand the reader a file no gateway saw.

use super::{Stopped, Walk};
use memchr::memmem;
use regex::bytes::Regex;
use std::sync::LazyLock;

/// The media type and parameters before the comma of a `data:` URI.
const MAX_MEDIA_TYPE: usize = 200;
/// Shorter base64 strings in a script are ids and hashes, not files.
static SCRIPT_BASE64: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"["'`]([A-Za-z0-9+/]{128,}={0,2})["'`]"#).expect("valid regex"));

pub(super) fn holds(data: &[u8]) -> bool {
    uris(data).next().is_some() || (has_script(data) && SCRIPT_BASE64.is_match(data))
}

fn has_script(data: &[u8]) -> bool {
    memmem::find(data, b"<script").is_some() || memmem::find(data, b"<SCRIPT").is_some()
}

struct DataUri<'a> {
    base64: bool,
    payload: &'a [u8],
}

/// The `data:` URIs in order. The search goes on after each URI's end, so text made of
/// URIs inside URIs is read once, not once per nested start.
fn uris(data: &[u8]) -> impl Iterator<Item = DataUri<'_>> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || {
        while let Some(found) = memmem::find(&data[from..], b"data:") {
            let at = from + found;
            from = at + 5;
            if let Some((uri, end)) = uri_at(data, at) {
                from = end;
                return Some(uri);
            }
        }
        from = data.len();
        None
    })
}

/// The URI starting at `at` (where `data:` is) and where it ends.
fn uri_at(data: &[u8], at: usize) -> Option<(DataUri<'_>, usize)> {
    // Only where a URI starts: in an attribute, a url(...) or a script string, not
    // "metadata: text/plain, ..." in prose.
    if at == 0 || !matches!(data[at - 1], b'"' | b'\'' | b'=' | b'(' | b'`') {
        return None;
    }
    let rest = &data[at + 5..];
    let comma = rest
        .iter()
        .take(MAX_MEDIA_TYPE)
        .position(|&b| b == b',' || b.is_ascii_whitespace() || b == b'"' || b == b'\'')?;
    if rest[comma] != b',' {
        return None;
    }
    let media = &rest[..comma];
    if media.is_empty() || !media.contains(&b'/') {
        return None;
    }
    let base64 = media.to_ascii_lowercase().ends_with(b";base64");
    let payload = &rest[comma + 1..];
    let end = payload
        .iter()
        .position(|&b| {
            matches!(b, b'"' | b'\'' | b')' | b'<' | b'>' | b'`') || b.is_ascii_whitespace()
        })
        .unwrap_or(payload.len());
    let uri = DataUri {
        base64,
        payload: &payload[..end],
    };
    (end > 0).then_some((uri, at + 5 + comma + 1 + end))
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let mut found = Vec::new();
    for uri in uris(data) {
        let decoded = if uri.base64 {
            mail_parser::decoders::base64::base64_decode(uri.payload)
        } else {
            Some(percent_decoded(uri.payload))
        };
        if let Some(bytes) = decoded.filter(|b| !b.is_empty()) {
            found.push((uri.payload.len(), bytes));
        }
    }
    let uri_count = found.len();
    if has_script(data) {
        for m in SCRIPT_BASE64.captures_iter(data) {
            let text = m.get(1).map_or(&[][..], |m| m.as_bytes());
            if let Some(bytes) = mail_parser::decoders::base64::base64_decode(text) {
                found.push((text.len(), bytes));
            }
        }
    }
    for (n, (encoded, bytes)) in found.into_iter().enumerate() {
        let name = if n < uri_count {
            format!("data-uri-{}", n + 1)
        } else {
            format!("script-base64-{}", n + 1 - uri_count)
        };
        let bytes = walk.take(path, bytes, encoded as u64)?;
        walk.file(path, &name, bytes, depth)?;
    }
    Ok(())
}

fn percent_decoded(text: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match (
            text[i],
            text.get(i + 1).copied().and_then(hex),
            text.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
