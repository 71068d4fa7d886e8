//! ARJ archives. The headers are read here (no maintained crate reads ARJ); methods
//! 1–3 are the same Huffman-coded LZ77 as LHA's `-lh6-`, decoded by `delharc`, and
//! method 4 ("fastest") is a short loop of unary-prefixed codes, written here.

use super::{le16, le32, Stopped, Walk};
use delharc::decode::{Decoder, Lh7Decoder};

const MAGIC: [u8; 2] = [0x60, 0xea];
/// ARJ's own bound on a basic header.
const MAX_HEADER: usize = 2600;
const FLAG_GARBLED: u8 = 0x01;
const TYPE_BINARY: u8 = 0;
const TYPE_TEXT: u8 = 1;

pub(super) fn is(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
        && le16(data, 2).is_some_and(|size| (30..=MAX_HEADER).contains(&usize::from(size)))
        && data.get(10) == Some(&2)
}

struct Entry<'a> {
    name: String,
    method: u8,
    file_type: u8,
    flags: u8,
    original: usize,
    packed: &'a [u8],
}

/// The header at `at` and where the next one starts; `None` at the end marker. The
/// archive's own header (`main`) has no data, and dates where a file's sizes are.
fn entry(data: &[u8], at: usize, main: bool) -> Result<Option<(Entry<'_>, usize)>, String> {
    if data.get(at..at + 2) != Some(&MAGIC[..]) {
        return Err(format!("no header at byte {at}"));
    }
    let size = usize::from(le16(data, at + 2).ok_or("header cut short")?);
    if size == 0 {
        return Ok(None);
    }
    let header = data
        .get(at + 4..at + 4 + size)
        .filter(|_| size <= MAX_HEADER)
        .ok_or(format!("header at byte {at} cut short"))?;
    let first = usize::from(header[0]);
    let name = header.get(first..).unwrap_or_default();
    let name = &name[..memchr::memchr(0, name).unwrap_or(name.len())];
    // The header's CRC, then extended headers (size, data, CRC) until a zero size.
    let mut next = at + 4 + size + 4;
    loop {
        let extended = usize::from(le16(data, next).ok_or("extended header cut short")?);
        next += 2;
        if extended == 0 {
            break;
        }
        next += extended + 4;
    }
    let packed_len = if main {
        0
    } else {
        le32(header, 12).ok_or("header cut short")? as usize
    };
    let packed = data
        .get(next..next.saturating_add(packed_len))
        .ok_or(format!("data at byte {next} cut short"))?;
    let entry = Entry {
        name: String::from_utf8_lossy(name).replace('\\', "/"),
        method: header[5],
        file_type: header[6],
        flags: header[4],
        original: if main {
            0
        } else {
            le32(header, 16).ok_or("header cut short")? as usize
        },
        packed,
    };
    Ok(Some((entry, next + packed_len)))
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let broken = |reason: String| Stopped::Broken(format!("{path}: {reason}"));
    // The first header describes the archive itself; it has no data.
    let Some((_, mut at)) = entry(data, 0, true).map_err(broken)? else {
        return Ok(());
    };
    while let Some((e, next)) = entry(data, at, false).map_err(broken)? {
        at = next;
        if !matches!(e.file_type, TYPE_BINARY | TYPE_TEXT) || e.flags & FLAG_GARBLED != 0 {
            continue;
        }
        let compressed = e.packed.len() as u64;
        let wanted = (e.original as u64).min(walk.cap(compressed) + 1) as usize;
        let out = match e.method {
            0 => e.packed[..wanted.min(e.packed.len())].to_vec(),
            1..=3 => {
                let mut out = vec![0u8; wanted];
                Lh7Decoder::new(e.packed)
                    .fill_buffer(&mut out)
                    .map_err(|_| broken(format!("{}: bad compressed data", e.name)))?;
                out
            }
            4 => fastest(e.packed, wanted),
            m => return Err(broken(format!("{}: unknown method {m}", e.name))),
        };
        let out = walk.take(path, out, compressed)?;
        if out.len() < e.original {
            return Err(broken(format!("{}: data ends early", e.name)));
        }
        walk.file(path, &e.name, out, depth)?;
    }
    Ok(())
}

/// Method 4: a match length as a unary prefix (up to 7 ones) and that many bits, 0
/// meaning a literal byte follows; then a distance as a unary prefix from 9 bits up
/// to 12 and that many bits.
fn fastest(packed: &[u8], limit: usize) -> Vec<u8> {
    let mut bits = Bits {
        data: packed,
        at: 0,
    };
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    while out.len() < limit {
        let Some(len) = bits.prefixed(0, 7) else {
            break;
        };
        if len == 0 {
            let Some(b) = bits.take(8) else { break };
            out.push(b as u8);
            continue;
        }
        let Some(distance) = bits.prefixed(9, 13) else {
            break;
        };
        let (len, distance) = (len as usize + 2, distance as usize + 1);
        if distance > out.len() {
            break;
        }
        for _ in 0..len.min(limit - out.len()) {
            out.push(out[out.len() - distance]);
        }
    }
    out
}

struct Bits<'a> {
    data: &'a [u8],
    /// In bits, most significant first.
    at: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            v = (v << 1) | u32::from(byte >> (7 - self.at % 8) & 1);
            self.at += 1;
        }
        Some(v)
    }

    /// ARJ's variable-width code: one bits widen it from `start` up to `stop` − 1, and
    /// each width's range follows the one before.
    fn prefixed(&mut self, start: u32, stop: u32) -> Option<u32> {
        let (mut width, mut base, mut step) = (start, 0u32, 1u32 << start);
        while width < stop {
            if self.take(1)? == 0 {
                break;
            }
            base += step;
            step <<= 1;
            width += 1;
        }
        Some(base + if width > 0 { self.take(width)? } else { 0 })
    }
}
