//! Streams in PDF files: embedded files (attachments inside a PDF) and, for the
//! scanner, every other stream, decoded through the standard filters that carry data
//! (FlateDecode, LZWDecode, ASCIIHexDecode, ASCII85Decode, RunLengthDecode). Written here
//! because the PDF crates parse whole documents and give up on the malformed ones
//! malware sends; finding `stream … endstream` and the filters in the dictionary
//! before it is enough to reach the bytes.

use super::{Stopped, Walk};
use memchr::memmem;
use std::io::Read;

/// How far before `stream` the dictionary is looked for.
const DICTIONARY_REACH: usize = 4096;

pub(super) fn is(data: &[u8]) -> bool {
    memmem::find(&data[..data.len().min(1024)], b"%PDF-").is_some()
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let mut from = 0;
    let mut n = 0;
    while let Some(found) = memmem::find(&data[from..], b"stream") {
        let at = from + found;
        from = at + 6;
        if at >= 3 && &data[at - 3..at] == b"end" {
            continue;
        }
        let start = match data.get(at + 6..at + 8) {
            Some(b"\r\n") => at + 8,
            Some([b'\n' | b'\r', _]) => at + 7,
            _ => continue,
        };
        let Some(len) = memmem::find(&data[start..], b"endstream") else {
            break;
        };
        from = start + len + 9;
        let raw = trim_eol(&data[start..start + len]);
        let dictionary = &data[at.saturating_sub(DICTIONARY_REACH)..at];
        let dictionary = match memmem::rfind(dictionary, b"obj") {
            Some(obj) => &dictionary[obj..],
            None => dictionary,
        };
        let embedded = memmem::find(dictionary, b"/EmbeddedFile").is_some();
        // Streams are numbered in file order, whichever are handed out.
        n += 1;
        if walk.limits.files_only && !embedded {
            continue;
        }
        let Some(bytes) = decoded(walk, path, raw, &filters(dictionary))? else {
            continue;
        };
        if embedded {
            walk.file(path, &format!("embedded{n}"), bytes, depth)?;
        } else {
            walk.stream(path, &format!("stream{n}"), bytes, depth)?;
        }
    }
    Ok(())
}

fn trim_eol(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// The filter names after `/Filter`, one or an array, in the order they apply.
fn filters(dictionary: &[u8]) -> Vec<String> {
    let Some(at) = memmem::find(dictionary, b"/Filter") else {
        return Vec::new();
    };
    let rest = &dictionary[at + 7..];
    let rest = rest.trim_ascii_start();
    let list = if rest.first() == Some(&b'[') {
        &rest[1..rest.iter().position(|&b| b == b']').unwrap_or(rest.len())]
    } else {
        let end = rest[1.min(rest.len())..]
            .iter()
            .position(|&b| b == b'/' || b == b'>' || b.is_ascii_whitespace())
            .map_or(rest.len(), |p| p + 1);
        &rest[..end]
    };
    list.split(|&b| b == b'/' || b.is_ascii_whitespace())
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect()
}

/// The stream's bytes through its filters; `None` for images (DCT, JPX, JBIG2, CCITT)
/// and encrypted or unknown filters, whose bytes are no file.
fn decoded(
    walk: &mut Walk,
    path: &str,
    raw: &[u8],
    filters: &[String],
) -> Result<Option<Vec<u8>>, Stopped> {
    let mut bytes = raw.to_vec();
    for filter in filters {
        let compressed = bytes.len() as u64;
        bytes = match filter.as_str() {
            "FlateDecode" | "Fl" => {
                // A stream cut short still gives what it decoded so far.
                let mut out = Vec::new();
                let cap = walk.cap(compressed) + 1;
                let _ = flate2::read::ZlibDecoder::new(&bytes[..])
                    .take(cap)
                    .read_to_end(&mut out);
                if out.is_empty() {
                    return Ok(None);
                }
                walk.take(path, out, compressed)?
            }
            "LZWDecode" | "LZW" => {
                let out = lzw(&bytes, walk.cap(compressed) as usize + 1);
                if out.is_empty() {
                    return Ok(None);
                }
                walk.take(path, out, compressed)?
            }
            "ASCIIHexDecode" | "AHx" => ascii_hex(&bytes),
            "ASCII85Decode" | "A85" => ascii85(&bytes),
            "RunLengthDecode" | "RL" => {
                let out = run_length(&bytes, walk.cap(compressed) as usize + 1);
                walk.take(path, out, compressed)?
            }
            _ => return Ok(None),
        };
    }
    Ok(Some(bytes))
}

/// LZW with 8-bit literals, codes most significant bit first, and the code width growing
/// one code early (PDF's default `/EarlyChange 1`, as TIFF). What is decoded before an
/// error or the limit is kept.
fn lzw(data: &[u8], limit: usize) -> Vec<u8> {
    let mut decoder = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let mut out = Vec::new();
    let mut input = data;
    let mut buffer = [0u8; 8192];
    while out.len() < limit {
        let step = decoder.decode_bytes(input, &mut buffer);
        out.extend_from_slice(&buffer[..step.consumed_out]);
        input = &input[step.consumed_in..];
        if step.status.is_err()
            || matches!(
                step.status,
                Ok(weezl::LzwStatus::Done | weezl::LzwStatus::NoProgress)
            )
        {
            break;
        }
    }
    out.truncate(limit);
    out
}

fn ascii_hex(text: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = text
        .iter()
        .take_while(|&&c| c != b'>')
        .filter_map(|&c| (c as char).to_digit(16).map(|d| d as u8))
        .collect();
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair.get(1).copied().unwrap_or(0))
        .collect()
}

/// Groups of five characters `!`..`u` make four bytes; `z` is four zero bytes; `~>`
/// ends the data.
fn ascii85(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 4 / 5);
    let mut group = [0u32; 5];
    let mut n = 0;
    for &c in text {
        match c {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0; 4]),
            b'!'..=b'u' => {
                group[n] = u32::from(c - b'!');
                n += 1;
                if n == 5 {
                    let v = group
                        .iter()
                        .fold(0u32, |v, &d| v.wrapping_mul(85).wrapping_add(d));
                    out.extend_from_slice(&v.to_be_bytes());
                    n = 0;
                }
            }
            _ => {}
        }
    }
    if n > 1 {
        for slot in group.iter_mut().skip(n) {
            *slot = 84;
        }
        let v = group
            .iter()
            .fold(0u32, |v, &d| v.wrapping_mul(85).wrapping_add(d));
        out.extend_from_slice(&v.to_be_bytes()[..n - 1]);
    }
    out
}

/// A length byte: 0–127 copies that many plus one bytes, 129–255 repeats the next
/// byte 257 minus it times, 128 ends the data.
fn run_length(data: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() && out.len() < limit {
        let len = usize::from(data[i]);
        i += 1;
        match len {
            0..=127 => {
                let end = (i + len + 1).min(data.len());
                out.extend_from_slice(&data[i..end]);
                i = end;
            }
            128 => break,
            _ => {
                if let Some(&b) = data.get(i) {
                    out.extend(std::iter::repeat_n(b, 257 - len));
                }
                i += 1;
            }
        }
    }
    out
}
