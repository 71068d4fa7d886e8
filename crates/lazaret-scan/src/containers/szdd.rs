//! SZDD, the LZSS format of MS-DOS and Windows `COMPRESS.EXE` (`SETUP.EX_`). Written
//! here because no maintained crate reads it; the format is a 14-byte header and one
//! small LZSS loop.

use super::{le32, Stopped, Walk};

const MAGIC: &[u8] = b"SZDD\x88\xf0\x27\x33";
const HEADER: usize = 14;
const WINDOW: usize = 4096;

pub(super) fn is(data: &[u8]) -> bool {
    data.len() >= HEADER && data.starts_with(MAGIC) && data[8] == b'A'
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let declared = le32(data, 10).unwrap_or(0) as u64;
    let cap = walk.cap(data.len() as u64);
    // The declared size bounds the output; a larger declaration is caught by the cap.
    let out = expand(&data[HEADER..], declared.min(cap + 1) as usize);
    let out = walk.take(path, out, data.len() as u64)?;
    if (out.len() as u64) < declared {
        return Err(Stopped::Broken(format!(
            "{path}: compressed data ends early"
        )));
    }
    walk.file(path, &name(path, data[9]), out, depth)
}

/// LZSS over a 4 KB window that starts filled with spaces: a flag byte, lowest bit
/// first, says for each of the next eight items whether it is a literal byte (1) or a
/// two-byte back reference of 3 to 18 bytes (0).
fn expand(input: &[u8], limit: usize) -> Vec<u8> {
    let mut window = [b' '; WINDOW];
    let mut pos = WINDOW - 16;
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    let mut bytes = input.iter().copied();
    'outer: while out.len() < limit {
        let Some(flags) = bytes.next() else { break };
        for bit in 0..8 {
            if flags & (1 << bit) != 0 {
                let Some(b) = bytes.next() else { break 'outer };
                out.push(b);
                window[pos] = b;
                pos = (pos + 1) % WINDOW;
            } else {
                let (Some(lo), Some(hi)) = (bytes.next(), bytes.next()) else {
                    break 'outer;
                };
                let mut from = usize::from(lo) | (usize::from(hi & 0xf0) << 4);
                for _ in 0..usize::from(hi & 0x0f) + 3 {
                    let b = window[from];
                    out.push(b);
                    window[pos] = b;
                    pos = (pos + 1) % WINDOW;
                    from = (from + 1) % WINDOW;
                }
            }
            if out.len() >= limit {
                break 'outer;
            }
        }
    }
    out.truncate(limit);
    out
}

/// `SETUP.EX_` held `SETUP.EXE`: the header keeps the character the underscore
/// replaced.
fn name(path: &str, missing: u8) -> String {
    let last = path.rsplit('/').next().unwrap_or(path);
    match last.strip_suffix('_') {
        Some(stem) if missing.is_ascii_graphic() => format!("{stem}{}", missing as char),
        _ => super::unsuffixed(path, &[".szdd", "._"]),
    }
}
