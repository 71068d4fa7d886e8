//! Tar members (ustar, GNU and pax headers).

use super::{Stopped, Walk};
use std::io::Cursor;

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let broken = |e: std::io::Error| Stopped::Broken(format!("{path}: {e}"));
    let mut archive = ::tar::Archive::new(Cursor::new(data));
    for entry in archive.entries().map_err(broken)? {
        let entry = entry.map_err(broken)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "?".into());
        let size = entry.size();
        // Tar members are stored, not compressed: the ratio is 1.
        let content = walk.read_capped(path, entry, size)?;
        if (content.len() as u64) < size {
            return Err(Stopped::Broken(format!("{path}: {name} is truncated")));
        }
        walk.file(path, &name, content, depth)?;
    }
    Ok(())
}
