//! Writing a big file (a backup's database copy, its compressed files) without letting
//! gigabytes of dirty pages pile up in the page cache.
//!
//! Left to the kernel, the data is written back late and all at once, and every
//! `fsync` of the mail store can end up waiting behind it. Here writeback of each
//! `STEP` starts as soon as it is written, and the writer waits for the step before
//! it: at most two steps are ever dirty or in flight. (PostgreSQL's
//! `checkpoint_flush_after` does the same for the same reason.)
//!
//! The step is small because a session's fsync that reaches the disk just after a
//! step waits until that step is written: with 8 MB steps the SMTP p99 end-of-DATA
//! during back-to-back backups was 20-22 ms (idle 5-6 ms, 3.5-4.5x); with 1 MB steps
//! 12 ms (idle 7 ms), and the backup ran as fast (bench/RESULTS.md, Backup).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;

const STEP: u64 = 1 << 20;

pub struct PacedFile {
    file: File,
    written: u64,
    /// Writeback started up to here.
    started: u64,
    /// Waited for up to here.
    settled: u64,
}

impl PacedFile {
    pub fn new(file: File) -> PacedFile {
        PacedFile {
            file,
            written: 0,
            started: 0,
            settled: 0,
        }
    }

    pub fn get_ref(&self) -> &File {
        &self.file
    }

    pub fn into_inner(self) -> File {
        self.file
    }

    fn pace(&mut self) {
        let fd = self.file.as_raw_fd();
        // Advisory: an error (a file system without it) leaves writeback to the kernel,
        // and the caller's final fsync still makes the file durable.
        // SAFETY: plain syscalls on an open descriptor; no memory is passed.
        unsafe {
            libc::sync_file_range(
                fd,
                self.started as libc::off64_t,
                (self.written - self.started) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
            if self.started > self.settled {
                libc::sync_file_range(
                    fd,
                    self.settled as libc::off64_t,
                    (self.started - self.settled) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
        }
        self.settled = self.started;
        self.started = self.written;
    }
}

impl Write for PacedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= STEP {
            self.pace();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::PacedFile;
    use std::io::Write;

    #[test]
    fn writes_every_byte_in_order() {
        let dir = std::env::temp_dir().join(format!("lazaret-paced-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let mut out = PacedFile::new(std::fs::File::create(&path).unwrap());
        let block: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        for _ in 0..7 {
            out.write_all(&block).unwrap();
        }
        out.into_inner().sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len(), 21 << 20);
        assert!(back.chunks(3 << 20).all(|c| c == block.as_slice()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
