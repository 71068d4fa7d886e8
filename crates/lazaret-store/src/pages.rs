//! A page copy: the database pages an incremental backup holds, applied on top of the
//! database its base backup rebuilds.
//!
//! Layout (little-endian): `LZPAGES1`, page size (u32), the database's size in pages
//! after applying (u32), the number of pages that follow (u32), then for each page its
//! number (u32, from 1) and its bytes. Written here because SQLite has no such format:
//! its own (the log) carries salts and checksums tied to one live database.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

const MAGIC: &[u8; 8] = b"LZPAGES1";

pub struct PageCopyWriter<W: Write> {
    out: W,
    page_size: u32,
    left: u32,
}

impl<W: Write> PageCopyWriter<W> {
    /// `count` pages must follow.
    pub fn new(mut out: W, page_size: u32, page_count: u32, count: u32) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        for n in [page_size, page_count, count] {
            out.write_all(&n.to_le_bytes())?;
        }
        Ok(PageCopyWriter {
            out,
            page_size,
            left: count,
        })
    }

    pub fn page(&mut self, number: u32, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() != self.page_size as usize || self.left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("page {number}: {} bytes, or one page too many", bytes.len()),
            ));
        }
        self.left -= 1;
        self.out.write_all(&number.to_le_bytes())?;
        self.out.write_all(bytes)
    }

    pub fn finish(self) -> io::Result<W> {
        if self.left != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} pages announced were not written", self.left),
            ));
        }
        Ok(self.out)
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Writes the pages read from `copy` into `database` (a file the earlier copies
/// rebuilt) and sets its length; returns the bytes read.
pub fn apply(mut copy: impl Read, database: &File) -> io::Result<u64> {
    let mut header = [0u8; 20];
    copy.read_exact(&mut header)?;
    if &header[..8] != MAGIC {
        return Err(bad("not a page copy".into()));
    }
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let (page_size, page_count, count) =
        (u32_at(&header, 8), u32_at(&header, 12), u32_at(&header, 16));
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(bad(format!("page size {page_size}")));
    }
    let mut page = vec![0u8; page_size as usize + 4];
    for _ in 0..count {
        copy.read_exact(&mut page)?;
        let number = u32_at(&page, 0);
        if number == 0 || number > page_count {
            return Err(bad(format!("page {number} of {page_count}")));
        }
        database.write_all_at(&page[4..], (number as u64 - 1) * page_size as u64)?;
    }
    if copy.read(&mut [0u8; 1])? != 0 {
        return Err(bad("bytes after the last page".into()));
    }
    database.set_len(page_count as u64 * page_size as u64)?;
    Ok(20 + count as u64 * (page_size as u64 + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_land_where_they_belong_and_the_size_follows() {
        let path = std::env::temp_dir().join(format!("lazaret-pages-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 4 * 512]).unwrap();
        let mut copy = PageCopyWriter::new(Vec::new(), 512, 5, 2).unwrap();
        copy.page(2, &[1u8; 512]).unwrap();
        copy.page(5, &[2u8; 512]).unwrap();
        let bytes = copy.finish().unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert_eq!(apply(&bytes[..], &file).unwrap(), bytes.len() as u64);
        let db = std::fs::read(&path).unwrap();
        assert_eq!(db.len(), 5 * 512);
        assert!(db[..512].iter().all(|&b| b == 7));
        assert!(db[512..1024].iter().all(|&b| b == 1));
        assert!(db[1024..2048].iter().all(|&b| b == 7));
        assert!(db[2048..].iter().all(|&b| b == 2));
        // A shrunk database: the copy says so.
        let copy = PageCopyWriter::new(Vec::new(), 512, 1, 0)
            .unwrap()
            .finish()
            .unwrap();
        apply(&copy[..], &file).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 512);
        // Damaged copies are refused, not half applied past the damage.
        assert!(apply(&bytes[..bytes.len() - 1], &file).is_err());
        let mut wrong = bytes.clone();
        wrong[20] = 9; // page 9 of 5
        assert!(apply(&wrong[..], &file).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
