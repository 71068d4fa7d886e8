//! OLE2 compound files (`.doc`, `.xls`, `.ppt`, `.msi`, `.msg`): every stream, and
//! what the streams carry — files embedded as "Package" objects (`Ole10Native`),
//! objects PowerPoint keeps compressed inside its document stream, and VBA macro
//! source, decompressed so a body signature can name a macro.

use super::{le16, le32, Stopped, Walk};
use std::io::Cursor;

const MAGIC: [u8; 8] = [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
/// PowerPoint's record holding an embedded object's own compound file.
const EX_OLE_OBJ_STG: u16 = 0x1011;

pub(super) fn is(data: &[u8]) -> bool {
    data.len() >= 512 && data.starts_with(&MAGIC)
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    // Office writes many slightly malformed files: one that does not open is scanned
    // as bytes, not flagged.
    let Ok(mut file) = cfb::CompoundFile::open(Cursor::new(data)) else {
        return Ok(());
    };
    let streams: Vec<(String, std::path::PathBuf)> = file
        .walk()
        .filter(|e| e.is_stream())
        .map(|e| {
            (
                readable(&e.path().to_string_lossy()),
                e.path().to_path_buf(),
            )
        })
        .collect();
    for (name, stream_path) in streams {
        let Ok(stream) = file.open_stream(&stream_path) else {
            continue;
        };
        let content = walk.read_capped(path, stream, data.len() as u64)?;
        let own = name.rsplit('/').next().unwrap_or(&name).to_string();
        if own == "Ole10Native" {
            if let Some((file_name, bytes)) = content.get(4..).and_then(package) {
                let shown = if file_name.is_empty() {
                    name.clone()
                } else {
                    file_name
                };
                walk.file(path, &shown, bytes.to_vec(), depth)?;
                continue;
            }
        }
        if own == "PowerPoint Document" {
            for (n, object) in powerpoint_objects(walk, path, &content)?
                .into_iter()
                .enumerate()
            {
                walk.stream(path, &format!("{name}/object{}", n + 1), object, depth)?;
            }
        }
        if !walk.limits.files_only {
            let limit = walk.cap(content.len() as u64) as usize + 1;
            if let Some(source) = vba_source(&content, limit) {
                let source = walk.take(path, source, content.len() as u64)?;
                walk.stream(path, &format!("{name}.vba"), source, depth)?;
            }
        }
        walk.stream(path, &name, content, depth)?;
    }
    Ok(())
}

/// A stream path without the leading slash and the control characters some stream
/// names start with (`\x01Ole10Native`, `\x05SummaryInformation`).
fn readable(path: &str) -> String {
    path.trim_start_matches('/')
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// The file inside an OLE "Package" object: a type (2), the label and the original
/// path (NUL-terminated), two words, a temporary path (NUL-terminated), the size (4)
/// and the bytes. Returns the file's name (from its path) and bytes.
pub(super) fn package(native: &[u8]) -> Option<(String, &[u8])> {
    let mut at = 2;
    let string = |at: &mut usize| -> Option<String> {
        let rest = native.get(*at..)?;
        let end = memchr::memchr(0, rest)?;
        *at += end + 1;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let label = string(&mut at)?;
    let original = string(&mut at)?;
    at += 8;
    let _temporary = string(&mut at)?;
    let size = le32(native, at)? as usize;
    let bytes = native.get(at + 4..at + 4 + size)?;
    let name = original.rsplit(['\\', '/']).next().unwrap_or_default();
    Some((
        if name.is_empty() {
            label
        } else {
            name.to_string()
        },
        bytes,
    ))
}

/// Embedded objects in a PowerPoint document stream: records are an 8-byte header
/// (version and instance, type, length); containers (version 0xF) hold records.
fn powerpoint_objects(walk: &mut Walk, path: &str, stream: &[u8]) -> Result<Vec<Vec<u8>>, Stopped> {
    let mut objects = Vec::new();
    let mut at = 0;
    while let (Some(ver_inst), Some(kind), Some(len)) =
        (le16(stream, at), le16(stream, at + 2), le32(stream, at + 4))
    {
        let body = at + 8;
        if ver_inst & 0xf == 0xf {
            at = body;
            continue;
        }
        let end = body.saturating_add(len as usize).min(stream.len());
        if kind == EX_OLE_OBJ_STG {
            let record = &stream[body..end];
            let compressed = ver_inst >> 4 == 1;
            let object = if compressed {
                let zlib = record.get(4..).unwrap_or_default();
                walk.read_capped(
                    path,
                    flate2::read::ZlibDecoder::new(zlib),
                    zlib.len() as u64,
                )
                .ok()
            } else {
                Some(record.to_vec())
            };
            objects.extend(object.filter(|o| !o.is_empty()));
        }
        at = end;
    }
    Ok(objects)
}

/// The macro source in a VBA module stream. Its compressed form starts with the
/// signature byte and a chunk header, then `Attribute VB_Name`, whose first eight
/// bytes are stored literally after a zero flag byte: the same search olevba falls
/// back on, without reading the `dir` stream for each module's offset.
fn vba_source(stream: &[u8], limit: usize) -> Option<Vec<u8>> {
    let at = memchr::memmem::find(stream, b"\x00Attribut")?;
    let start = at.checked_sub(3)?;
    (stream[start] == 1).then(|| ovba_decompress(&stream[start + 1..], limit))
}

/// MS-OVBA decompression: chunks of up to 4,096 bytes, each a 2-byte header then
/// either raw bytes or flag bytes over literals and copy tokens whose split of offset
/// and length bits grows with the position in the chunk. Written here because no
/// maintained crate does only this. A chunk holds at most 4,096 bytes; the output
/// stops at `limit`.
fn ovba_decompress(mut input: &[u8], limit: usize) -> Vec<u8> {
    const CHUNK: usize = 4096;
    let mut out = Vec::new();
    while let Some(header) = le16(input, 0) {
        if out.len() >= limit {
            break;
        }
        let size = usize::from(header & 0x0fff) + 3;
        let chunk = &input[2..size.min(input.len())];
        input = &input[size.min(input.len())..];
        let start = out.len();
        if header & 0x8000 == 0 {
            out.extend_from_slice(&chunk[..chunk.len().min(4096)]);
            continue;
        }
        let mut bytes = chunk.iter().copied();
        'chunk: while let Some(flags) = bytes.next() {
            for bit in 0..8 {
                if flags & (1 << bit) == 0 {
                    let Some(b) = bytes.next() else { break 'chunk };
                    if out.len() - start >= CHUNK {
                        break 'chunk;
                    }
                    out.push(b);
                    continue;
                }
                let (Some(lo), Some(hi)) = (bytes.next(), bytes.next()) else {
                    break 'chunk;
                };
                let token = u16::from_le_bytes([lo, hi]);
                let done = out.len() - start;
                let offset_bits = (usize::BITS - done.saturating_sub(1).leading_zeros()).max(4);
                let length_mask = 0xffffu16 >> offset_bits;
                let length = usize::from(token & length_mask) + 3;
                let offset = usize::from(token >> (16 - offset_bits)) + 1;
                if offset > done || done + length > CHUNK {
                    break 'chunk;
                }
                for _ in 0..length {
                    out.push(out[out.len() - offset]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ovba_example_from_the_specification() {
        // MS-OVBA 3.2.3: "#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
        let compressed = [
            0x2f, 0xb0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65, 0x82, 0x66, 0x00,
            0x70, 0x61, 0x67, 0x68, 0x69, 0x6a, 0x01, 0x38, 0x08, 0x61, 0x6b, 0x6c, 0x00, 0x30,
            0x6d, 0x6e, 0x6f, 0x70, 0x06, 0x71, 0x02, 0x70, 0x04, 0x10, 0x72, 0x73, 0x74, 0x75,
            0x76, 0x10, 0x77, 0x78, 0x79, 0x7a, 0x00, 0x3c,
        ];
        assert_eq!(
            ovba_decompress(&compressed, usize::MAX),
            b"#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
        );
    }
}
