//! Microsoft Cabinet files (stored, MSZIP and LZX folders), decompressed by the `cab`
//! crate after a check of the directory written here: the crate indexes past its
//! block list (a panic) when a file claims bytes its folder does not have.

use super::{le16, le32, Stopped, Walk};
use std::io::Cursor;

const RESERVE_PRESENT: u16 = 0x0004;
const PREVIOUS_CABINET: u16 = 0x0001;
const NEXT_CABINET: u16 = 0x0002;
/// Data blocks walked per folder; the format allows 65,535.
const MAX_BLOCKS: usize = 65_535;

pub(super) fn is(data: &[u8]) -> bool {
    data.len() >= 36 && data.starts_with(b"MSCF\0\0\0\0")
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let broken = |e: String| Stopped::Broken(format!("{path}: {e}"));
    check(data).ok_or_else(|| broken("a file lies outside its folder's data".into()))?;
    let mut cabinet = ::cab::Cabinet::new(Cursor::new(data)).map_err(|e| broken(e.to_string()))?;
    let names: Vec<String> = cabinet
        .folder_entries()
        .flat_map(|folder| folder.file_entries().map(|f| f.name().to_string()))
        .collect();
    for name in names {
        let reader = cabinet
            .read_file(&name)
            .map_err(|e| broken(e.to_string()))?;
        // Members of a folder share one compressed stream: the ratio is taken over
        // the whole cabinet.
        let content = walk.read_capped(path, reader, data.len() as u64)?;
        walk.file(path, &name.replace('\\', "/"), content, depth)?;
    }
    Ok(())
}

/// Every file's bytes lie within what its folder's data blocks hold.
fn check(data: &[u8]) -> Option<()> {
    let files_at = le32(data, 16)? as usize;
    let folders = usize::from(le16(data, 26)?);
    let files = usize::from(le16(data, 28)?);
    let flags = le16(data, 30)?;
    let mut at = 36;
    let (mut folder_reserve, mut data_reserve) = (0, 0);
    if flags & RESERVE_PRESENT != 0 {
        let header_reserve = usize::from(le16(data, 36)?);
        folder_reserve = usize::from(*data.get(38)?);
        data_reserve = usize::from(*data.get(39)?);
        at = 40 + header_reserve;
    }
    for flag in [PREVIOUS_CABINET, NEXT_CABINET] {
        if flags & flag != 0 {
            // A cabinet name and a disk name.
            for _ in 0..2 {
                at += memchr::memchr(0, data.get(at..)?)? + 1;
            }
        }
    }
    let mut sizes = Vec::with_capacity(folders.min(1024));
    for n in 0..folders {
        let entry = at + n * (8 + folder_reserve);
        let mut block = le32(data, entry)? as usize;
        let blocks = usize::from(le16(data, entry + 4)?);
        let mut total = 0u64;
        for _ in 0..blocks.min(MAX_BLOCKS) {
            let stored = usize::from(le16(data, block + 4)?);
            total += u64::from(le16(data, block + 6)?);
            block = block.checked_add(8 + data_reserve + stored)?;
        }
        sizes.push(total);
    }
    let mut at = files_at;
    for _ in 0..files {
        let size = u64::from(le32(data, at)?);
        let offset = u64::from(le32(data, at + 4)?);
        let folder = usize::from(le16(data, at + 8)?);
        // Folder numbers from 0xFFFD up continue from or into other cabinets.
        if folder < 0xfffd && offset + size > *sizes.get(folder)? {
            return None;
        }
        at += 16 + memchr::memchr(0, data.get(at + 16..)?)? + 1;
    }
    Some(())
}
