//! Message bodies as files: `blobs/<first two hex digits>/<id>.eml`, written once; the
//! file and its directory entry are fsynced before the database row that makes them
//! visible is committed. A crash between the two leaves an unreferenced file, never a
//! row without its file.

use crate::{io_err, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Blobs {
    root: PathBuf,
}

impl Blobs {
    /// Creates the 256 shard directories up front, so that ingest never pays for a
    /// directory creation and the fsync of its parent.
    pub fn open(root: PathBuf) -> Result<Blobs> {
        for shard in 0..=255u8 {
            let dir = root.join(format!("{shard:02x}"));
            if !dir.is_dir() {
                fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
            }
        }
        sync_dir(&root)?;
        Ok(Blobs { root })
    }

    pub fn shard(&self, n: u8) -> PathBuf {
        self.root.join(format!("{n:02x}"))
    }

    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.root.join(&id[..2.min(id.len())])
    }

    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir_of(id).join(format!("{id}.eml"))
    }

    /// Writes the file and makes it and its name durable. Runs on the caller's thread,
    /// so concurrent sessions' fsyncs overlap instead of queueing in the writer.
    pub fn write(&self, id: &str, data: &[u8]) -> Result<()> {
        let dir = self.dir_of(id);
        let path = dir.join(format!("{id}.eml"));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(format!("create {}", path.display())))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(io_err(format!("write {}", path.display())))?;
        sync_dir(&dir)
    }

    /// Writes many files, then makes them all durable with one filesystem sync (on
    /// Linux): an import of thousands of messages pays for one flush, not thousands.
    pub fn write_batch<'a>(&self, files: impl Iterator<Item = (&'a str, &'a [u8])>) -> Result<()> {
        let mut written = Vec::new();
        for (id, data) in files {
            let path = self.path_of(id);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err(format!("create {}", path.display())))?;
            f.write_all(data)
                .map_err(io_err(format!("write {}", path.display())))?;
            written.push(f);
        }
        let Some(first) = written.first() else {
            return Ok(());
        };
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: syncfs only reads the descriptor, which `first` keeps open.
            if unsafe { libc::syncfs(first.as_raw_fd()) } != 0 {
                return Err(crate::StoreError::Io {
                    context: format!("sync {}", self.root.display()),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = first;
            for f in &written {
                f.sync_all().map_err(io_err("fsync blob"))?;
            }
            for shard in 0..=255u8 {
                sync_dir(&self.root.join(format!("{shard:02x}")))?;
            }
        }
        Ok(())
    }

    pub fn read(&self, id: &str) -> Result<Vec<u8>> {
        let path = self.path_of(id);
        fs::read(&path).map_err(io_err(format!("read {}", path.display())))
    }

    /// Appends the message's bytes to `buf`; returns how many.
    pub fn read_into(&self, id: &str, buf: &mut Vec<u8>) -> Result<usize> {
        use std::io::Read;
        let path = self.path_of(id);
        File::open(&path)
            .and_then(|mut f| f.read_to_end(buf))
            .map_err(io_err(format!("read {}", path.display())))
    }

    /// The message's header block (through the empty line), read without the body.
    pub fn read_head(&self, id: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        const LIMIT: usize = 256 * 1024;
        let path = self.path_of(id);
        let mut f = File::open(&path).map_err(io_err(format!("read {}", path.display())))?;
        let mut out = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            let n = f
                .read(&mut chunk)
                .map_err(io_err(format!("read {}", path.display())))?;
            if n == 0 {
                return Ok(out);
            }
            let from = out.len().saturating_sub(3);
            out.extend_from_slice(&chunk[..n]);
            let end = out[from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| from + p + 4)
                .or_else(|| {
                    out[from.saturating_sub(1)..]
                        .windows(2)
                        .position(|w| w == b"\n\n")
                        .map(|p| from.saturating_sub(1) + p + 2)
                });
            if let Some(end) = end {
                out.truncate(end);
                return Ok(out);
            }
            if out.len() > LIMIT {
                return Ok(out);
            }
        }
    }

    pub fn remove(&self, id: &str) {
        let _ = fs::remove_file(self.path_of(id));
    }
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync {}", dir.display())))
}
