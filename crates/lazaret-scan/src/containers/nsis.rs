//! Nullsoft (NSIS) installers: after the program comes a "first header" (`0xDEADBEEF`,
//! `NullsoftInst`) and the installer's blocks — its script and each file — each LZMA
//! or deflate compressed on its own, or all in one compressed stream ("solid"). Written
//! here because no crate reads them; the blocks are length-prefixed. The files' names
//! live in the compiled script, which is not interpreted: members are numbered.

use super::{le32, Stopped, Walk};
use std::io::Read;

const MAGIC: &[u8] = b"\xef\xbe\xad\xdeNullsoftInst";
const COMPRESSED: u32 = 0x8000_0000;
/// LZMA dictionaries over this are bombs, not installers.
const MAX_DICTIONARY: u32 = 64 << 20;
/// Where the first header may sit: NSIS aligns it to 512 bytes after the stub.
const ALIGN: usize = 512;
/// How far into the file the first header is looked for.
const REACH: usize = 1 << 20;

pub(super) fn is(data: &[u8]) -> bool {
    data.starts_with(b"MZ") && first_header(data).is_some()
}

fn first_header(data: &[u8]) -> Option<usize> {
    (ALIGN..data.len().min(REACH))
        .step_by(ALIGN)
        .find(|&at| data.get(at + 4..at + 4 + MAGIC.len()) == Some(MAGIC))
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let Some(at) = first_header(data) else {
        return Ok(());
    };
    let length = le32(data, at + 24).unwrap_or(0) as usize;
    let end = data.len().min(at.saturating_add(length));
    let Some(body) = data.get(at + 28..end) else {
        return Ok(());
    };
    let mut blocks = Vec::new();
    // Solid: one compressed stream holding length-prefixed blocks.
    if body.first() == Some(&0x5d)
        || le32(body, 0).is_some_and(|l| l & !COMPRESSED > body.len() as u32)
    {
        let Some(stream) = decompress(walk, path, body)? else {
            return Ok(());
        };
        let mut pos = 0;
        while let Some(len) = le32(&stream, pos) {
            let Some(block) = stream.get(pos + 4..(pos + 4).saturating_add(len as usize)) else {
                break;
            };
            blocks.push(block.to_vec());
            pos += 4 + block.len();
        }
    } else {
        let mut pos = 0;
        while let Some(header) = le32(body, pos) {
            let len = (header & !COMPRESSED) as usize;
            let Some(block) = body.get(pos + 4..(pos + 4).saturating_add(len)) else {
                break;
            };
            pos += 4 + len;
            if header & COMPRESSED == 0 {
                blocks.push(block.to_vec());
            } else if let Some(out) = decompress(walk, path, block)? {
                blocks.push(out);
            }
        }
    }
    // The first block is the compiled script; the files follow.
    for (n, block) in blocks.into_iter().enumerate() {
        let name = if n == 0 {
            "script".to_string()
        } else {
            format!("file{n}")
        };
        if n == 0 {
            walk.stream(path, &name, block, depth)?;
        } else {
            walk.file(path, &name, block, depth)?;
        }
    }
    Ok(())
}

/// An LZMA block (properties byte, dictionary size, raw stream) or a raw deflate one;
/// `None` if neither decodes.
fn decompress(walk: &mut Walk, path: &str, block: &[u8]) -> Result<Option<Vec<u8>>, Stopped> {
    let mut out = Vec::new();
    let cap = walk.cap(block.len() as u64) + 1;
    if let (Some(&props), Some(dictionary)) = (block.first(), le32(block, 1)) {
        if props == 0x5d {
            if dictionary > MAX_DICTIONARY {
                return Err(Stopped::LimitExceeded(format!(
                    "{path}: LZMA dictionary of {} MB",
                    dictionary >> 20
                )));
            }
            if let Ok(reader) = lzma_rust2::LzmaReader::new_with_props(
                &block[5..],
                u64::MAX,
                props,
                dictionary,
                None,
            ) {
                // A stream without an end marker ends in an error after its data.
                let _ = reader.take(cap).read_to_end(&mut out);
            }
        }
    }
    if out.is_empty() {
        let _ = flate2::read::DeflateDecoder::new(block)
            .take(cap)
            .read_to_end(&mut out);
    }
    if out.is_empty() {
        return Ok(None);
    }
    walk.take(path, out, block.len() as u64).map(Some)
}
