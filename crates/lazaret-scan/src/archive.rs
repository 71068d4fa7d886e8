//! Opens zip, gzip and tar attachments (nested too) and hands out their members, within
//! limits: an archive bomb or a broken archive ends the walk with a reason, never a
//! crash, a hang or unbounded memory.

use std::io::{Cursor, Read};

/// How far expansion may go for one attachment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Archives inside archives: 1 opens the attachment itself only.
    pub max_depth: usize,
    /// Members handed out, all levels together.
    pub max_files: usize,
    /// Bytes expanded, all levels together.
    pub max_bytes: u64,
    /// Expanded size over compressed size of one member.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 5,
            max_files: 1_000,
            max_bytes: 100 << 20,
            max_ratio: 250,
        }
    }
}

/// One file inside an archive.
#[derive(Debug)]
pub struct Member {
    /// Its path through the archives, e.g. `outer.zip/inner.tar/readme.exe`.
    pub path: String,
    /// Its own name inside its archive.
    pub name: String,
    pub data: Vec<u8>,
    /// 1 for a member of the attachment itself, 2 for one of a nested archive, …
    pub depth: usize,
}

/// Why the walk stopped early; members found before it were handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("archive limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("broken archive: {0}")]
    Broken(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zip,
    Gzip,
    Tar,
}

fn kind_of(data: &[u8]) -> Option<Kind> {
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Some(Kind::Zip)
    } else if is_gzip_header(data) {
        Some(Kind::Gzip)
    } else if data.len() >= 512 && &data[257..262] == b"ustar" {
        Some(Kind::Tar)
    } else {
        None
    }
}

/// The gzip magic is two bytes: about one random attachment in 65,536 starts with it,
/// and would then be a "broken archive". RFC 1952 also fixes the method (8, deflate)
/// and the reserved flag bits (zero), and the header and trailer take 18 bytes.
fn is_gzip_header(data: &[u8]) -> bool {
    data.len() >= 18 && data[..3] == [0x1f, 0x8b, 8] && data[3] & 0xe0 == 0
}

/// Is this an archive the walk opens?
pub fn is_archive(data: &[u8]) -> bool {
    kind_of(data).is_some()
}

struct Walk<'a> {
    limits: Limits,
    files: usize,
    bytes: u64,
    visit: &'a mut dyn FnMut(Member),
}

/// Hands every member of `data` (if it is an archive) to `visit`, depth first, nested
/// archives opened in turn. `name` is the attachment's file name, used in paths.
pub fn expand(
    name: &str,
    data: &[u8],
    limits: &Limits,
    visit: &mut dyn FnMut(Member),
) -> Result<(), Stopped> {
    let mut walk = Walk {
        limits: *limits,
        files: 0,
        bytes: 0,
        visit,
    };
    walk.open(name, data, 1)
}

impl Walk<'_> {
    fn open(&mut self, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
        let Some(kind) = kind_of(data) else {
            return Ok(());
        };
        if depth > self.limits.max_depth {
            return Err(Stopped::LimitExceeded(format!(
                "{path}: archives nested more than {} deep",
                self.limits.max_depth
            )));
        }
        match kind {
            Kind::Zip => self.zip(path, data, depth),
            Kind::Tar => self.tar(path, data, depth),
            Kind::Gzip => {
                let inner =
                    self.read_capped(path, flate2::read::GzDecoder::new(data), data.len() as u64)?;
                // A .tar.gz is one tar, not a tar inside a file.
                if kind_of(&inner) == Some(Kind::Tar) {
                    return self.tar(path, &inner, depth);
                }
                let name = gunzipped_name(path);
                self.member(path, &name, inner, depth)
            }
        }
    }

    fn member(
        &mut self,
        parent: &str,
        name: &str,
        data: Vec<u8>,
        depth: usize,
    ) -> Result<(), Stopped> {
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(Stopped::LimitExceeded(format!(
                "{parent}: more than {} files",
                self.limits.max_files
            )));
        }
        let path = format!("{parent}/{name}");
        let nested = is_archive(&data);
        if nested {
            self.open(&path, &data, depth + 1)?;
        }
        (self.visit)(Member {
            path,
            name: name.to_string(),
            data,
            depth,
        });
        Ok(())
    }

    /// Reads a decompressing stream within the byte budget and the ratio limit.
    fn read_capped(
        &mut self,
        path: &str,
        reader: impl Read,
        compressed: u64,
    ) -> Result<Vec<u8>, Stopped> {
        let by_ratio = compressed.max(1).saturating_mul(self.limits.max_ratio);
        let left = self.limits.max_bytes.saturating_sub(self.bytes);
        let cap = by_ratio.min(left);
        let mut out = Vec::new();
        reader
            .take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| Stopped::Broken(format!("{path}: {e}")))?;
        if out.len() as u64 > cap {
            return Err(Stopped::LimitExceeded(if cap == by_ratio {
                format!(
                    "{path}: expands more than {}x its compressed size",
                    self.limits.max_ratio
                )
            } else {
                format!("{path}: more than {} bytes expanded", self.limits.max_bytes)
            }));
        }
        self.bytes += out.len() as u64;
        Ok(out)
    }

    fn zip(&mut self, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
        let broken = |e: zip::result::ZipError| Stopped::Broken(format!("{path}: {e}"));
        let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(broken)?;
        for i in 0..archive.len() {
            let (name, content) = {
                let file = archive.by_index(i).map_err(broken)?;
                if file.is_dir() {
                    continue;
                }
                let name = file.name().map_err(broken)?.into_owned();
                let compressed = file.compressed_size();
                (name, self.read_capped(path, file, compressed)?)
            };
            self.member(path, &name, content, depth)?;
        }
        Ok(())
    }

    fn tar(&mut self, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
        let broken = |e: std::io::Error| Stopped::Broken(format!("{path}: {e}"));
        let mut archive = tar::Archive::new(Cursor::new(data));
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
            let content = self.read_capped(path, entry, size)?;
            if (content.len() as u64) < size {
                return Err(Stopped::Broken(format!("{path}: {name} is truncated")));
            }
            self.member(path, &name, content, depth)?;
        }
        Ok(())
    }
}

/// `report.txt.gz` holds `report.txt`; a gzip with another name holds `name` minus gz.
fn gunzipped_name(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or(path);
    let lower = last.to_ascii_lowercase();
    for suffix in [".gz", ".gzip"] {
        if lower.ends_with(suffix) && last.len() > suffix.len() {
            return last[..last.len() - suffix.len()].to_string();
        }
    }
    if lower.ends_with(".tgz") {
        return format!("{}.tar", &last[..last.len() - 4]);
    }
    format!("{last}.data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::zip_of;
    use std::io::Write;

    fn tar_gz_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn walk(data: &[u8], limits: Limits) -> (Vec<String>, Result<(), Stopped>) {
        let mut paths = Vec::new();
        let r = expand("a", data, &limits, &mut |m| paths.push(m.path));
        (paths, r)
    }

    #[test]
    fn nested_zip_and_tar_gz() {
        let inner = tar_gz_of(&[("dir/worm.exe", b"MZ payload"), ("readme.txt", b"hi")]);
        let outer = zip_of(&[("notes.txt", b"x"), ("inner.tgz", &inner)]);
        let (paths, r) = walk(&outer, Limits::default());
        r.unwrap();
        assert_eq!(
            paths,
            [
                "a/notes.txt",
                "a/inner.tgz/dir/worm.exe",
                "a/inner.tgz/readme.txt",
                "a/inner.tgz"
            ]
        );
    }

    #[test]
    fn bomb_and_depth_and_garbage_give_reasons() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = zip_of(&[("zeros.bin", &zeros)]);
        let (_, r) = walk(&bomb, Limits::default());
        assert!(matches!(r, Err(Stopped::LimitExceeded(ref m)) if m.contains("expands")));

        let mut nested = zip_of(&[("x.txt", b"x")]);
        for _ in 0..6 {
            nested = zip_of(&[("n.zip", &nested)]);
        }
        let (_, r) = walk(&nested, Limits::default());
        assert!(matches!(r, Err(Stopped::LimitExceeded(ref m)) if m.contains("nested")));

        let mut truncated = zip_of(&[("x.txt", b"some text to store")]);
        truncated.truncate(truncated.len() / 2);
        let (_, r) = walk(&truncated, Limits::default());
        assert!(matches!(r, Err(Stopped::Broken(_))));

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &[7u8; 4000]).unwrap();
        let mut gz = gz.finish().unwrap();
        gz.truncate(gz.len() / 2);
        let (paths, r) = walk(&gz, Limits::default());
        assert!(paths.is_empty() && matches!(r, Err(Stopped::Broken(_))));

        // Data that only shares gzip's two magic bytes is not an archive, not broken.
        assert!(!is_archive(b"\x1f\x8bnot gzip at all, random bytes"));
        assert!(!is_archive(b"\x1f\x8b\x08\xffnot gzip: reserved flags set"));
    }
}
