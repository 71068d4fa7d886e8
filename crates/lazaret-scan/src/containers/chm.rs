//! Compiled HTML Help (`.chm`, ITSF): the directory of files, those stored plainly
//! and those in the LZX-compressed section, decompressed with `lzxd`. The container
//! is read here because the CHM crates bind C (chmlib); it is a header, a directory
//! of fixed chunks and a reset table.

use super::{le32, Stopped, Walk};
use lzxd::{Lzxd, WindowSize};

const CONTENT: &str = "::DataSpace/Storage/MSCompressed/Content";
const CONTROL: &str = "::DataSpace/Storage/MSCompressed/ControlData";
const RESET_TABLE: &str = "::DataSpace/Storage/MSCompressed/Transform/\
{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable";
/// Directory entries read; a directory claiming more is a bomb.
const MAX_ENTRIES: usize = 100_000;

pub(super) fn is(data: &[u8]) -> bool {
    data.len() >= 0x58 && data.starts_with(b"ITSF") && matches!(le32(data, 4), Some(2 | 3))
}

fn le64(data: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?)).ok()
}

struct Entry {
    name: String,
    section: usize,
    offset: usize,
    length: usize,
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let broken = |what: &str| Stopped::Broken(format!("{path}: {what}"));
    let entries = directory(data).ok_or_else(|| broken("bad directory"))?;
    let content_start = if le32(data, 4) == Some(3) {
        le64(data, 0x58)
    } else {
        le64(data, 0x48)
            .zip(le64(data, 0x50))
            .and_then(|(a, b)| a.checked_add(b))
    }
    .ok_or_else(|| broken("bad header"))?;
    let plain = |e: &Entry| -> Option<&[u8]> {
        let start = content_start.checked_add(e.offset)?;
        data.get(start..start.checked_add(e.length)?)
    };
    let find = |name: &str| entries.iter().find(|e| e.name == name && e.section == 0);
    let compressed = match (find(CONTENT), find(CONTROL), find(RESET_TABLE)) {
        (Some(content), Some(control), Some(table)) => {
            match (plain(content), plain(control), plain(table)) {
                (Some(content), Some(control), Some(table)) => {
                    Some(decompress(walk, path, content, control, table)?)
                }
                _ => return Err(broken("compressed section out of bounds")),
            }
        }
        _ => None,
    };
    for e in &entries {
        if e.name.ends_with('/') || e.name.starts_with("::") || e.length == 0 {
            continue;
        }
        let bytes = match (e.section, &compressed) {
            (0, _) => plain(e),
            (1, Some(section)) => section.get(e.offset..e.offset.saturating_add(e.length)),
            _ => None,
        };
        if let Some(bytes) = bytes {
            let bytes = walk.take(path, bytes.to_vec(), bytes.len() as u64)?;
            walk.file(path, e.name.trim_start_matches('/'), bytes, depth)?;
        }
    }
    Ok(())
}

/// Every entry of the listing chunks (PMGL) of the directory.
fn directory(data: &[u8]) -> Option<Vec<Entry>> {
    let dir = le64(data, 0x48)?;
    let itsp = data.get(dir..)?;
    if !itsp.starts_with(b"ITSP") {
        return None;
    }
    let header_len = le32(itsp, 8)? as usize;
    let chunk_size = le32(itsp, 0x10)? as usize;
    let chunks = le32(itsp, 0x2c)? as usize;
    if chunk_size < 0x20 {
        return None;
    }
    let mut entries = Vec::new();
    for n in 0..chunks {
        let start = header_len.checked_add(n.checked_mul(chunk_size)?)?;
        let Some(chunk) = itsp.get(start..start.checked_add(chunk_size)?) else {
            break;
        };
        if !chunk.starts_with(b"PMGL") {
            continue;
        }
        let end = chunk_size.saturating_sub(le32(chunk, 4)? as usize);
        let mut at = 0x14;
        while at < end && entries.len() < MAX_ENTRIES {
            let len = encint(chunk, &mut at)?;
            let name = chunk.get(at..at.checked_add(len)?)?;
            at += len;
            entries.push(Entry {
                name: String::from_utf8_lossy(name).into_owned(),
                section: encint(chunk, &mut at)?,
                offset: encint(chunk, &mut at)?,
                length: encint(chunk, &mut at)?,
            });
        }
    }
    Some(entries)
}

/// CHM's variable-length integer: seven bits a byte, most significant first, the high
/// bit set on every byte but the last.
fn encint(data: &[u8], at: &mut usize) -> Option<usize> {
    let mut v: usize = 0;
    for _ in 0..9 {
        let b = *data.get(*at)?;
        *at += 1;
        v = v.checked_shl(7)? | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The compressed section: LZX frames of 32 KB, whose compressed starts the reset
/// table lists; the decoder starts afresh every reset interval.
fn decompress(
    walk: &mut Walk,
    path: &str,
    content: &[u8],
    control: &[u8],
    table: &[u8],
) -> Result<Vec<u8>, Stopped> {
    let broken = |what: &str| Stopped::Broken(format!("{path}: {what}"));
    if control.get(4..8) != Some(b"LZXC") {
        return Err(broken("no LZX control data"));
    }
    // Version 2 counts the interval and window in 32 KB units.
    let unit = if le32(control, 8) == Some(2) {
        0x8000
    } else {
        1
    };
    let interval = (le32(control, 12).unwrap_or(0) as usize).saturating_mul(unit);
    let window = (le32(control, 16).unwrap_or(0) as usize).saturating_mul(unit);
    let window = match window {
        0x8000 => WindowSize::KB32,
        0x10000 => WindowSize::KB64,
        0x20000 => WindowSize::KB128,
        0x40000 => WindowSize::KB256,
        0x80000 => WindowSize::KB512,
        0x100000 => WindowSize::MB1,
        0x200000 => WindowSize::MB2,
        _ => return Err(broken("unknown LZX window size")),
    };
    let frames = le32(table, 4).unwrap_or(0) as usize;
    let table_at = le32(table, 12).unwrap_or(0) as usize;
    let total = le64(table, 16).ok_or_else(|| broken("bad reset table"))?;
    let frame_len = le64(table, 32)
        .filter(|&l| l == 0x8000)
        .ok_or_else(|| broken("bad reset table"))?;
    let cap = walk.cap(content.len() as u64) as usize;
    if total > cap {
        return Err(walk.exceeded(path, content.len() as u64));
    }
    let reset_every = (interval / frame_len).max(1);
    let start_of = |n: usize| le64(table, table_at + n * 8);
    let mut lzx = Lzxd::new(window);
    let mut out = Vec::with_capacity(total);
    for n in 0..frames {
        if out.len() >= total {
            break;
        }
        let (Some(from), to) = (start_of(n), start_of(n + 1)) else {
            return Err(broken("bad reset table"));
        };
        let to = if n + 1 < frames {
            to
        } else {
            Some(content.len())
        };
        let chunk = to
            .and_then(|to| content.get(from..to))
            .ok_or_else(|| broken("reset table points outside the data"))?;
        if n > 0 && n % reset_every == 0 {
            lzx.reset();
        }
        let len = frame_len.min(total - out.len());
        let frame = lzx
            .decompress_next(chunk, len)
            .map_err(|e| broken(&format!("LZX: {e}")))?;
        out.extend_from_slice(frame);
    }
    Ok(out)
}
