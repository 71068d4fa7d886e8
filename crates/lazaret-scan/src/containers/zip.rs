//! Zip members, with every method mail-borne zips use (deflate, deflate64, bzip2,
//! LZMA, XZ and the legacy implode, shrink and reduce).

use super::{Stopped, Walk};
use std::io::Cursor;

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let broken = |e: ::zip::result::ZipError| Stopped::Broken(format!("{path}: {e}"));
    let mut archive = ::zip::ZipArchive::new(Cursor::new(data)).map_err(broken)?;
    for i in 0..archive.len() {
        let (name, content) = {
            let file = archive.by_index(i).map_err(broken)?;
            if file.is_dir() {
                continue;
            }
            let name = file.name().map_err(broken)?.into_owned();
            let compressed = file.compressed_size();
            (name, walk.read_capped(path, file, compressed)?)
        };
        walk.file(path, &name, content, depth)?;
    }
    Ok(())
}
