//! BinHex 4.0 (`.hqx`), the Macintosh text encoding of a file's data and resource
//! forks. Written here because no maintained crate decodes it: a 64-character
//! alphabet, a run-length step and a small header.

use super::{Stopped, Walk};
use memchr::memmem;

const MARK: &[u8] = b"(This file must be converted with BinHex";
const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
const RUN: u8 = 0x90;

pub(super) fn holds(data: &[u8]) -> bool {
    memmem::find(data, MARK).is_some()
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let Some(mark) = memmem::find(data, MARK) else {
        return Ok(());
    };
    let rest = &data[mark + MARK.len()..];
    let Some(start) = memchr::memchr(b':', rest) else {
        return Ok(());
    };
    let text = &rest[start + 1..];
    let end = memchr::memchr(b':', text).unwrap_or(text.len());
    let text = &text[..end];
    let packed = six_bit(text);
    let cap = walk.cap(text.len() as u64);
    let bytes = unrun(&packed, cap as usize + 1);
    let bytes = walk.take(path, bytes, text.len() as u64)?;
    let Some((name, forks)) = header(&bytes) else {
        return Err(Stopped::Broken(format!(
            "{path}: BinHex header is cut short"
        )));
    };
    for (fork, suffix) in forks.into_iter().zip(["", ".rsrc"]) {
        if let Some(fork) = fork.filter(|f| !f.is_empty()) {
            walk.file(path, &format!("{name}{suffix}"), fork.to_vec(), depth)?;
        }
    }
    Ok(())
}

/// Four characters of the alphabet make three bytes; line breaks are skipped.
fn six_bit(text: &[u8]) -> Vec<u8> {
    let mut value = [0xffu8; 256];
    for (i, &c) in ALPHABET.iter().enumerate() {
        value[usize::from(c)] = i as u8;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        let v = value[usize::from(c)];
        if v == 0xff {
            continue;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `0x90 n` repeats the byte before it n−1 more times; `0x90 0` is a literal 0x90.
fn unrun(packed: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(packed.len().min(limit));
    let mut i = 0;
    while i < packed.len() && out.len() < limit {
        if packed[i] == RUN && i + 1 < packed.len() {
            let n = packed[i + 1];
            i += 2;
            match (n, out.last().copied()) {
                (0, _) => out.push(RUN),
                (n, Some(last)) => {
                    let more = (usize::from(n) - 1).min(limit - out.len());
                    out.extend(std::iter::repeat_n(last, more));
                }
                (_, None) => {}
            }
        } else {
            out.push(packed[i]);
            i += 1;
        }
    }
    out
}

/// The file name and the data and resource forks (each `None` if cut short). Header:
/// name length, name, version, type (4), creator (4), flags (2), data length (4),
/// resource length (4), CRC (2); each fork is followed by its CRC (2).
fn header(bytes: &[u8]) -> Option<(String, [Option<&[u8]>; 2])> {
    let name_len = usize::from(*bytes.first()?);
    let name = String::from_utf8_lossy(bytes.get(1..1 + name_len)?).into_owned();
    let fixed = 1 + name_len + 1 + 4 + 4 + 2;
    let be32 =
        |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize);
    let data_len = be32(fixed)?;
    let rsrc_len = be32(fixed + 4)?;
    let data_start = fixed + 8 + 2;
    let data = bytes.get(data_start..data_start.checked_add(data_len)?);
    let rsrc_start = data_start.saturating_add(data_len).saturating_add(2);
    let rsrc = bytes.get(rsrc_start..rsrc_start.checked_add(rsrc_len)?);
    Some((name, [data, rsrc]))
}
