//! Objects embedded in RTF documents (`\objdata`): hex-encoded OLE1 objects, among
//! them "Package" objects carrying a whole file, the way RTF exploits and droppers
//! ship their payload. Written here because no maintained crate extracts them.

use super::{le32, ole2, Stopped, Walk};
use memchr::memmem;

pub(super) fn is(data: &[u8]) -> bool {
    // Word opens anything starting "{\rt", not only "{\rtf1".
    data.starts_with(b"{\\rt")
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let starts: Vec<usize> = memmem::find_iter(data, b"\\objdata").collect();
    for (n, at) in starts.into_iter().enumerate() {
        let hex = &data[at + 8..];
        let object = unhex(hex);
        if object.is_empty() {
            continue;
        }
        let object = walk.take(path, object, hex.len() as u64)?;
        match ole1(&object) {
            Some((class, native)) if class.starts_with("Package") => match ole2::package(native) {
                Some((name, bytes)) => walk.file(path, &name, bytes.to_vec(), depth)?,
                None => walk.file(path, &format!("object{}", n + 1), native.to_vec(), depth)?,
            },
            Some((class, native)) => {
                let name = format!("object{}.{}", n + 1, class.trim_end_matches('\0'));
                walk.file(path, &name, native.to_vec(), depth)?
            }
            None => walk.stream(path, &format!("objdata{}", n + 1), object, depth)?,
        }
    }
    Ok(())
}

/// Hex digit pairs up to the end of the group; whitespace between them is allowed.
fn unhex(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    for &c in text {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => break,
        };
        match high.take() {
            Some(h) => out.push(h << 4 | digit),
            None => high = Some(digit),
        }
    }
    out
}

/// An OLE1 object: version (4), format (4), then class, topic and item names (each a
/// length (4) and bytes), the native data's size (4) and the data. Returns the class
/// and the native data.
fn ole1(object: &[u8]) -> Option<(String, &[u8])> {
    let mut at = 8;
    let mut names = Vec::new();
    for _ in 0..3 {
        let len = le32(object, at)? as usize;
        let name = object.get(at + 4..(at + 4).checked_add(len)?)?;
        names.push(String::from_utf8_lossy(name).into_owned());
        at += 4 + len;
    }
    let size = le32(object, at)? as usize;
    let native = object.get(at + 4..(at + 4).checked_add(size)?.min(object.len()))?;
    Some((names.swap_remove(0), native))
}
