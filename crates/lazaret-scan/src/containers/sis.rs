//! Symbian installation files (`.sis`, EPOC releases 3 to 6), the way phone worms
//! (Cabir, CommWarrior) spread by MMS and mail. Written here because no crate reads
//! them: a header of pointers and a run of file records, each file zlib-compressed
//! unless the header says otherwise.

use super::{le16, le32, Stopped, Walk};

const UID2_R6: u32 = 0x1000_3a12;
const UID2_R3: u32 = 0x1000_006d;
const UID3: u32 = 0x1000_0419;
const OPTION_NOT_COMPRESSED: u16 = 0x0008;
/// The installer version written by EPOC release 6 tools, which added each file's
/// original length and MIME type to its record.
const INSTALLER_R6: u32 = 200;
/// Records read; a file claiming more is a bomb.
const MAX_RECORDS: usize = 10_000;

pub(super) fn is(data: &[u8]) -> bool {
    data.len() >= 0x44
        && matches!(le32(data, 4), Some(UID2_R6 | UID2_R3))
        && le32(data, 8) == Some(UID3)
}

struct Stored {
    name: String,
    at: usize,
    len: usize,
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let broken = || Stopped::Broken(format!("{path}: bad file records"));
    let files = records(data).ok_or_else(broken)?;
    let compressed = le16(data, 0x24).unwrap_or(0) & OPTION_NOT_COMPRESSED == 0;
    for file in files {
        let stored = data
            .get(file.at..file.at.saturating_add(file.len))
            .ok_or_else(broken)?;
        let content = if compressed {
            let reader = flate2::read::ZlibDecoder::new(stored);
            walk.read_capped(path, reader, stored.len() as u64)?
        } else {
            walk.take(path, stored.to_vec(), stored.len() as u64)?
        };
        walk.file(path, &file.name, content, depth)?;
    }
    Ok(())
}

/// The files the records name (every language's copy), in order.
fn records(data: &[u8]) -> Option<Vec<Stored>> {
    let languages = usize::from(le16(data, 0x12)?).max(1);
    let count = usize::from(le16(data, 0x14)?);
    let r6 = le32(data, 0x20)? >= INSTALLER_R6;
    let mut at = le32(data, 0x34)? as usize;
    let mut files = Vec::new();
    for _ in 0..count.min(MAX_RECORDS) {
        match le32(data, at)? {
            // A simple file (one copy) or one copy per language: type, file type,
            // details, source and destination names (length, pointer), then the
            // copies' lengths and pointers, and in release 6 their original lengths,
            // and a MIME type (length, pointer).
            kind @ (0 | 1) => {
                let copies = if kind == 0 { 1 } else { languages };
                let name_len = le32(data, at + 20)? as usize;
                let name_at = le32(data, at + 24)? as usize;
                let name = utf16(data.get(name_at..name_at.checked_add(name_len)?)?);
                let name = name
                    .rsplit(['\\', '/', ':'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let lengths = at + 28;
                let pointers = lengths + 4 * copies;
                for copy in 0..copies {
                    files.push(Stored {
                        name: name.clone(),
                        len: le32(data, lengths + 4 * copy)? as usize,
                        at: le32(data, pointers + 4 * copy)? as usize,
                    });
                }
                at = pointers + 4 * copies + if r6 { 4 * copies + 8 } else { 0 };
            }
            // Options: a count, each option's name per language, a selection mask.
            2 => at += 8 + le32(data, at + 4)? as usize * languages * 8 + 16,
            // If and else-if carry an expression of the given size.
            3 | 4 => at += 8 + le32(data, at + 4)? as usize,
            5 | 6 => at += 4,
            _ => return None,
        }
    }
    Some(files)
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}
