//! Files appended to an InstallShield setup program: after the program's last
//! section comes a run of records — file name, path, version and size, each a
//! NUL-terminated string — and that many bytes of the file. Written here because no
//! crate reads it; the program part is found from the PE section table.

use super::{le16, le32, Stopped, Walk};

/// A longer name or number is not one of these records.
const MAX_FIELD: usize = 260;

pub(super) fn is(data: &[u8]) -> bool {
    overlay(data).is_some_and(|at| record(data, at).is_some())
}

/// Where the bytes after the program's sections start, for a PE program with some.
fn overlay(data: &[u8]) -> Option<usize> {
    if !data.starts_with(b"MZ") {
        return None;
    }
    let pe = le32(data, 0x3c)? as usize;
    if data.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let sections = usize::from(le16(data, pe + 6)?);
    let table = pe + 24 + usize::from(le16(data, pe + 20)?);
    let mut end = 0usize;
    for n in 0..sections.min(96) {
        let at = table + n * 40;
        let size = le32(data, at + 16)? as usize;
        let start = le32(data, at + 20)? as usize;
        end = end.max(start.saturating_add(size));
    }
    (end > 0 && end < data.len()).then_some(end)
}

struct Record {
    name: String,
    start: usize,
    len: usize,
}

fn record(data: &[u8], at: usize) -> Option<Record> {
    let mut pos = at;
    let mut field = || -> Option<&[u8]> {
        let rest = data.get(pos..)?;
        let end = memchr::memchr(0, &rest[..rest.len().min(MAX_FIELD + 1)])?;
        pos += end + 1;
        let text = &rest[..end];
        text.iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
            .then_some(text)
    };
    let name = field()?;
    let _path = field()?;
    let _version = field()?;
    let size = field()?;
    if name.is_empty() || size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: usize = std::str::from_utf8(size).ok()?.parse().ok()?;
    (pos.checked_add(len)? <= data.len()).then(|| Record {
        name: String::from_utf8_lossy(name).into_owned(),
        start: pos,
        len,
    })
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let Some(mut at) = overlay(data) else {
        return Ok(());
    };
    while let Some(r) = record(data, at) {
        let bytes = walk.take(path, data[r.start..r.start + r.len].to_vec(), r.len as u64)?;
        walk.file(path, &r.name, bytes, depth)?;
        at = r.start + r.len;
    }
    Ok(())
}
