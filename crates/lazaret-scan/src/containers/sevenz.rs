//! 7-Zip archives (LZMA, LZMA2, PPMd, bzip2, deflate; solid blocks too).

use super::{Stopped, Walk};
use sevenz_rust2::{ArchiveReader, EntryDecision, Password};
use std::io::Cursor;

/// Dictionary and header memory an archive may ask for; more is a bomb, not mail.
const MEMORY_KB: usize = 64 << 10;

pub(super) fn is(data: &[u8]) -> bool {
    data.len() >= 32 && data.starts_with(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c])
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let broken = |e: sevenz_rust2::Error| match e {
        // A dictionary that large only comes with that much data: a bomb, not damage.
        sevenz_rust2::Error::MaxMemLimited { max_kb, actaul_kb } => {
            Stopped::LimitExceeded(format!(
                "{path}: needs {} MB to decode, more than {} MB",
                actaul_kb >> 10,
                max_kb >> 10
            ))
        }
        e => Stopped::Broken(format!("{path}: {e}")),
    };
    let mut reader =
        ArchiveReader::new_with_memory_limit(Cursor::new(data), Password::empty(), MEMORY_KB)
            .map_err(broken)?;
    // The scanner already runs one walk per core.
    reader.set_thread_count(1);
    let mut stopped = None;
    let result = reader.for_each_entries_with_decision(|entry, content| {
        if entry.is_directory() || !entry.has_stream() {
            return Ok(EntryDecision::Continue);
        }
        // In a solid block members share their compressed bytes: the ratio is taken
        // over the whole archive.
        let taken = walk
            .read_capped(path, content, data.len() as u64)
            .and_then(|content| walk.file(path, entry.name(), content, depth));
        match taken {
            Ok(()) => Ok(EntryDecision::Continue),
            Err(e) => {
                stopped = Some(e);
                Ok(EntryDecision::Stop)
            }
        }
    });
    match stopped {
        Some(e) => Err(e),
        None => result.map_err(broken),
    }
}
