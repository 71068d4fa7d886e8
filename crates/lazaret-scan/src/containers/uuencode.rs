//! uuencoded files in text (`begin 644 name` … `end`), as old mailers and worms send
//! them inside a message body or a part marked `x-uuencode`. Written here because the
//! format is a line loop and no maintained crate does it.

use super::{Stopped, Walk};
use memchr::memmem;

/// Where each `begin MODE NAME` line that starts a block begins.
fn blocks(data: &[u8]) -> impl Iterator<Item = (usize, &str)> + '_ {
    memmem::find_iter(data, b"begin ").filter_map(move |at| {
        if at > 0 && data[at - 1] != b'\n' {
            return None;
        }
        let line = line_at(data, at);
        let rest = line.strip_prefix(b"begin ")?;
        let space = rest.iter().position(|&b| b == b' ')?;
        let mode = &rest[..space];
        if !(3..=4).contains(&mode.len()) || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
            return None;
        }
        let name = std::str::from_utf8(&rest[space + 1..]).ok()?.trim();
        Some((at, name))
    })
}

pub(super) fn holds(data: &[u8]) -> bool {
    blocks(data).next().is_some()
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let found: Vec<(usize, String)> = blocks(data)
        .map(|(at, name)| (at, name.to_string()))
        .collect();
    for (at, name) in found {
        let body = &data[at + line_at(data, at).len()..];
        let mut out = Vec::new();
        let mut used = 0;
        for line in body.split(|&b| b == b'\n').skip(1) {
            used += line.len() + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line == b"end" || !decode_line(line, &mut out) {
                break;
            }
        }
        if out.is_empty() {
            continue;
        }
        let out = walk.take(path, out, used as u64)?;
        let name = name.rsplit(['/', '\\']).next().unwrap_or_default();
        walk.file(path, name, out, depth)?;
    }
    Ok(())
}

/// Appends one line's bytes; false at the zero-length line that ends the data, or at
/// a line that is not uuencode.
fn decode_line(line: &[u8], out: &mut Vec<u8>) -> bool {
    let value = |c: u8| c.wrapping_sub(b' ') & 0x3f;
    let len = usize::from(value(line[0]));
    if len == 0 {
        return false;
    }
    let chars = &line[1..];
    if chars.len() < (len * 4).div_ceil(3) || chars.iter().any(|&c| !(b' '..=b'`').contains(&c)) {
        return false;
    }
    let mut bytes = Vec::with_capacity(len + 2);
    for group in chars.chunks(4) {
        let v = |i: usize| u32::from(value(*group.get(i).unwrap_or(&b'`')));
        let n = (v(0) << 18) | (v(1) << 12) | (v(2) << 6) | v(3);
        bytes.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    bytes.truncate(len);
    out.extend_from_slice(&bytes);
    true
}

fn line_at(data: &[u8], at: usize) -> &[u8] {
    let rest = &data[at..];
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end])
}
