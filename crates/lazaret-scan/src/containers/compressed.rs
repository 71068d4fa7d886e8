//! Files compressed whole: gzip, bzip2, xz and LZMA (`.lzma`, LZMA-alone). Each holds one member, named after the
//! compressed file without its suffix; a compressed tar is opened as the tar.

use super::{tar, unsuffixed, Stopped, Walk};

/// The gzip magic is two bytes: about one random attachment in 65,536 starts with it,
/// and would then be a "broken archive". RFC 1952 also fixes the method (8, deflate)
/// and the reserved flag bits (zero), and the header and trailer take 18 bytes.
pub(super) fn is_gzip(data: &[u8]) -> bool {
    data.len() >= 18 && data[..3] == [0x1f, 0x8b, 8] && data[3] & 0xe0 == 0
}

/// `BZh`, the block size digit, then the first block's magic (the digits of pi).
pub(super) fn is_bzip2(data: &[u8]) -> bool {
    data.len() >= 14
        && data.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&data[3])
        && (data[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || data[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
}

pub(super) fn is_xz(data: &[u8]) -> bool {
    data.len() >= 32 && data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
}

/// Dictionary memory an xz or LZMA header may ask for; more is a bomb, not mail.
const XZ_MEMORY_KB: u32 = 64 << 10;

/// LZMA-alone has no magic: the usual properties byte (lc=3, lp=0, pb=2), a dictionary
/// size of 2^n or 2^n + 2^(n-1) as encoders write it, and a size that is unknown or
/// below a terabyte.
pub(super) fn is_lzma(data: &[u8]) -> bool {
    let (Some(&0x5d), Some(dictionary)) = (data.first(), super::le32(data, 1)) else {
        return false;
    };
    let size = data
        .get(5..13)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let shaped =
        dictionary.is_power_of_two() || (dictionary % 3 == 0 && (dictionary / 3).is_power_of_two());
    data.len() >= 18
        && (4096..=1 << 30).contains(&dictionary)
        && shaped
        && size.is_some_and(|s| s == u64::MAX || s < 1 << 40)
}

pub(super) fn gzip(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let inner = walk.read_capped(path, flate2::read::GzDecoder::new(data), data.len() as u64)?;
    one(walk, path, inner, depth, &[".gz", ".gzip", ".tgz"])
}

pub(super) fn bzip2(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let reader = ::bzip2::read::MultiBzDecoder::new(data);
    let inner = walk.read_capped(path, reader, data.len() as u64)?;
    one(
        walk,
        path,
        inner,
        depth,
        &[".bz2", ".bzip2", ".tbz", ".tbz2"],
    )
}

pub(super) fn xz(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let reader = lzma_rust2::XzReader::new_mem_limit(data, true, XZ_MEMORY_KB);
    let inner = walk.read_capped(path, reader, data.len() as u64)?;
    one(walk, path, inner, depth, &[".xz", ".txz"])
}

pub(super) fn lzma(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let reader = lzma_rust2::LzmaReader::new_mem_limit(data, XZ_MEMORY_KB, None).map_err(|e| {
        if e.kind() == std::io::ErrorKind::OutOfMemory {
            Stopped::LimitExceeded(format!("{path}: needs more memory to decode than allowed"))
        } else {
            Stopped::Broken(format!("{path}: {e}"))
        }
    })?;
    let inner = walk.read_capped(path, reader, data.len() as u64)?;
    one(walk, path, inner, depth, &[".lzma", ".tlz"])
}

fn one(
    walk: &mut Walk,
    path: &str,
    inner: Vec<u8>,
    depth: usize,
    suffixes: &[&str],
) -> Result<(), Stopped> {
    // A .tar.gz is one tar, not a tar inside a file.
    if inner.len() >= 512 && &inner[257..262] == b"ustar" {
        return tar::open(walk, path, &inner, depth);
    }
    let mut name = unsuffixed(path, suffixes);
    let lower = path.to_ascii_lowercase();
    if [".tgz", ".tbz", ".tbz2", ".txz"]
        .iter()
        .any(|s| lower.ends_with(s))
    {
        name.push_str(".tar");
    }
    walk.file(path, &name, inner, depth)
}
