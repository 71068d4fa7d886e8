//! Microsoft Cabinet files: stored, MSZIP and LZX folders. Read here rather than with
//! the `cab` crate, which panics on cabinets whose blocks decompress to less than
//! their headers say (found by fuzzing, twice); the directory is a few fixed records,
//! MSZIP is raw deflate (miniz_oxide) that may refer back into the previous block, and
//! LZX frames go to `lzxd`.

use super::{le16, le32, Stopped, Walk};
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

const RESERVE_PRESENT: u16 = 0x0004;
const PREVIOUS_CABINET: u16 = 0x0001;
const NEXT_CABINET: u16 = 0x0002;
/// Data blocks read per folder; the format allows 65,535.
const MAX_BLOCKS: usize = 65_535;
/// A block never holds more than 32 KB uncompressed.
const MAX_BLOCK: usize = 0x8000;
/// What MSZIP blocks may refer back to.
const HISTORY: usize = 0x8000;

pub(super) fn is(data: &[u8]) -> bool {
    data.len() >= 36 && data.starts_with(b"MSCF\0\0\0\0")
}

struct Folder {
    first_block: usize,
    blocks: usize,
    compression: u16,
}

struct File {
    name: String,
    folder: usize,
    offset: usize,
    size: usize,
}

/// The folders and files of the directory.
fn directory(data: &[u8]) -> Option<(Vec<Folder>, Vec<File>, usize)> {
    let files_at = le32(data, 16)? as usize;
    let folder_count = usize::from(le16(data, 26)?);
    let file_count = usize::from(le16(data, 28)?);
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
    let mut folders = Vec::with_capacity(folder_count.min(1024));
    for n in 0..folder_count {
        let entry = at + n * (8 + folder_reserve);
        folders.push(Folder {
            first_block: le32(data, entry)? as usize,
            blocks: usize::from(le16(data, entry + 4)?),
            compression: le16(data, entry + 6)?,
        });
    }
    let mut files = Vec::with_capacity(file_count.min(1024));
    let mut at = files_at;
    for _ in 0..file_count {
        let name_at = at + 16;
        let name_len = memchr::memchr(0, data.get(name_at..)?)?;
        files.push(File {
            size: le32(data, at)? as usize,
            offset: le32(data, at + 4)? as usize,
            folder: usize::from(le16(data, at + 8)?),
            name: String::from_utf8_lossy(&data[name_at..name_at + name_len]).replace('\\', "/"),
        });
        at = name_at + name_len + 1;
    }
    Some((folders, files, data_reserve))
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let broken = |e: &str| Stopped::Broken(format!("{path}: {e}"));
    let (folders, files, data_reserve) = directory(data).ok_or_else(|| broken("bad directory"))?;
    for (n, folder) in folders.iter().enumerate() {
        // Files that continue from or into another cabinet (folder numbers 0xFFFD
        // and up) cannot be read from this one alone.
        let wanted: Vec<&File> = files.iter().filter(|f| f.folder == n).collect();
        if wanted.is_empty() {
            continue;
        }
        let cap = walk.cap(data.len() as u64) as usize;
        let content = unpack(folder, data, data_reserve, cap + 1).map_err(|e| broken(&e))?;
        // Members of a folder share one compressed stream: the ratio is taken over
        // the whole cabinet.
        let content = walk.take(path, content, data.len() as u64)?;
        for f in wanted {
            let Some(bytes) = content.get(f.offset..f.offset.saturating_add(f.size)) else {
                return Err(broken(&format!(
                    "{} lies outside its folder's data",
                    f.name
                )));
            };
            walk.file(path, &f.name, bytes.to_vec(), depth)?;
        }
    }
    Ok(())
}

/// A folder's data, up to `limit` bytes.
fn unpack(
    folder: &Folder,
    data: &[u8],
    data_reserve: usize,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut lzx = match folder.compression & 0x0f {
        0 | 1 => None,
        3 => {
            let window = match (folder.compression >> 8) & 0x1f {
                15 => lzxd::WindowSize::KB32,
                16 => lzxd::WindowSize::KB64,
                17 => lzxd::WindowSize::KB128,
                18 => lzxd::WindowSize::KB256,
                19 => lzxd::WindowSize::KB512,
                20 => lzxd::WindowSize::MB1,
                21 => lzxd::WindowSize::MB2,
                w => return Err(format!("LZX window 2^{w}")),
            };
            Some(lzxd::Lzxd::new(window))
        }
        2 => return Err("Quantum compression is not read".into()),
        c => return Err(format!("unknown compression {c}")),
    };
    let mut out = Vec::new();
    let mut at = folder.first_block;
    for _ in 0..folder.blocks.min(MAX_BLOCKS) {
        if out.len() >= limit {
            break;
        }
        // Checksum (4), stored size (2), uncompressed size (2), reserve, data.
        let stored = le16(data, at + 4).ok_or("block header cut short")? as usize;
        let size = usize::from(le16(data, at + 6).ok_or("block header cut short")?);
        let start = at + 8 + data_reserve;
        let block = data.get(start..start + stored).ok_or("block cut short")?;
        at = start + stored;
        if size > MAX_BLOCK {
            return Err("block over 32 KB".into());
        }
        match (folder.compression & 0x0f, &mut lzx) {
            (0, _) => out.extend_from_slice(&block[..size.min(block.len())]),
            (1, _) => mszip(block, size, &mut out)?,
            (_, Some(lzx)) => {
                let frame = lzx
                    .decompress_next(block, size)
                    .map_err(|e| format!("LZX: {e}"))?;
                out.extend_from_slice(frame);
            }
            _ => unreachable!("compression checked above"),
        }
    }
    Ok(out)
}

/// One MSZIP block: `CK`, then a raw deflate stream that may copy from the last 32 KB
/// of the blocks before it. The output buffer starts with that history so that
/// miniz_oxide resolves such references itself.
fn mszip(block: &[u8], size: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let stream = block.strip_prefix(b"CK").ok_or("MSZIP block without CK")?;
    let history = &out[out.len().saturating_sub(HISTORY)..];
    let mut buffer = Vec::with_capacity(history.len() + size);
    buffer.extend_from_slice(history);
    let start = buffer.len();
    buffer.resize(start + size, 0);
    let mut state = DecompressorOxide::new();
    let (status, _, written) = decompress(
        &mut state,
        stream,
        &mut buffer,
        start,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    if !matches!(status, TINFLStatus::Done) || written != size {
        return Err(format!("MSZIP block: {status:?}"));
    }
    out.extend_from_slice(&buffer[start..start + written]);
    Ok(())
}
