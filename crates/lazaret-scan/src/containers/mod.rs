//! Opens what an attachment carries inside it — archives (zip, tar, 7z, CAB, ARJ, cpio),
//! compressed files (gzip, bzip2, xz, SZDD), documents and packages that embed files
//! (OLE2, RTF, PDF, CHM, TNEF, Symbian SIS, NSIS and InstallShield setup programs) and files encoded into text (uuencode, BinHex, HTML `data:` URIs) —
//! nested too, and hands out every member, within limits: a bomb or a broken container
//! ends the walk with a reason, never a crash, a hang or unbounded memory.

mod arj;
mod binhex;
mod cab;
mod chm;
mod compressed;
mod cpio;
mod html;
mod installshield;
mod nsis;
mod ole2;
mod pdf;
mod rtf;
mod sevenz;
mod sis;
mod szdd;
mod tar;
mod tnef;
mod uuencode;
mod yenc;
mod zip;

use std::io::Read;

/// How far expansion may go for one attachment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Containers inside containers: 1 opens the attachment itself only.
    pub max_depth: usize,
    /// Members handed out, all levels together.
    pub max_files: usize,
    /// Bytes expanded, all levels together.
    pub max_bytes: u64,
    /// Expanded size over compressed size of one member.
    pub max_ratio: u64,
    /// Hand out files only, skipping document structure that holds none (a PDF's
    /// page streams, an OLE2 file's plain streams): what an index of attachments
    /// needs, at less cost than a scan.
    pub files_only: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 5,
            max_files: 1_000,
            max_bytes: 100 << 20,
            max_ratio: 250,
            files_only: false,
        }
    }
}

/// One file inside a container.
#[derive(Debug)]
pub struct Member {
    /// Its path through the containers, e.g. `outer.zip/inner.tar/readme.exe`.
    pub path: String,
    /// Its own name inside its container.
    pub name: String,
    pub data: Vec<u8>,
    /// 1 for a member of the attachment itself, 2 for one of a nested container, …
    pub depth: usize,
    /// A file someone put in (an archive member, an attachment in TNEF, an embedded
    /// package, a decoded `data:` URI), not a structural part such as a document's
    /// stream: the part index lists files, the scanner reads both.
    pub is_file: bool,
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
    Bzip2,
    Xz,
    Lzma,
    Tar,
    SevenZ,
    Cab,
    Arj,
    Cpio,
    Ole2,
    Chm,
    Tnef,
    Szdd,
    Sis,
    InstallShield,
    Nsis,
    Rtf,
    Pdf,
    /// Text that carries files: uuencode, yEnc, BinHex, `data:` URIs.
    EncodedText,
}

/// What `data` is, by its magic. The checks are ordered cheapest and strongest first;
/// the text encodings come last because they search the data rather than look at its
/// first bytes.
fn kind_of(data: &[u8]) -> Option<Kind> {
    let kind = if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Kind::Zip
    } else if compressed::is_gzip(data) {
        Kind::Gzip
    } else if compressed::is_bzip2(data) {
        Kind::Bzip2
    } else if compressed::is_xz(data) {
        Kind::Xz
    } else if compressed::is_lzma(data) {
        Kind::Lzma
    } else if data.len() >= 512 && &data[257..262] == b"ustar" {
        Kind::Tar
    } else if sevenz::is(data) {
        Kind::SevenZ
    } else if cab::is(data) {
        Kind::Cab
    } else if ole2::is(data) {
        Kind::Ole2
    } else if chm::is(data) {
        Kind::Chm
    } else if tnef::is(data) {
        Kind::Tnef
    } else if szdd::is(data) {
        Kind::Szdd
    } else if sis::is(data) {
        Kind::Sis
    } else if nsis::is(data) {
        Kind::Nsis
    } else if installshield::is(data) {
        Kind::InstallShield
    } else if rtf::is(data) {
        Kind::Rtf
    } else if pdf::is(data) {
        Kind::Pdf
    } else if cpio::is(data) {
        Kind::Cpio
    } else if arj::is(data) {
        Kind::Arj
    } else if uuencode::holds(data) || yenc::holds(data) || binhex::holds(data) || html::holds(data)
    {
        Kind::EncodedText
    } else {
        return None;
    };
    Some(kind)
}

/// Is this a container the walk opens by its magic (an archive, a compressed file, a
/// document with embedded files)?
pub fn is_archive(data: &[u8]) -> bool {
    kind_of(data).is_some_and(|k| k != Kind::EncodedText)
}

/// Does this hold files the walk takes out, whether by magic or encoded into its text?
/// A mail's text parts are read for uuencode, BinHex and `data:` URIs this way.
pub fn holds_files(data: &[u8]) -> bool {
    kind_of(data).is_some()
}

pub(crate) struct Walk<'a> {
    limits: Limits,
    files: usize,
    bytes: u64,
    visit: &'a mut dyn FnMut(Member),
}

/// Hands every member of `data` (if it holds any) to `visit`, depth first, nested
/// containers opened in turn. `name` is the attachment's file name, used in paths.
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
            Kind::Zip => zip::open(self, path, data, depth),
            Kind::Gzip => compressed::gzip(self, path, data, depth),
            Kind::Bzip2 => compressed::bzip2(self, path, data, depth),
            Kind::Xz => compressed::xz(self, path, data, depth),
            Kind::Lzma => compressed::lzma(self, path, data, depth),
            Kind::Tar => tar::open(self, path, data, depth),
            Kind::SevenZ => sevenz::open(self, path, data, depth),
            Kind::Cab => cab::open(self, path, data, depth),
            Kind::Arj => arj::open(self, path, data, depth),
            Kind::Cpio => cpio::open(self, path, data, depth),
            Kind::Ole2 => ole2::open(self, path, data, depth),
            Kind::Chm => chm::open(self, path, data, depth),
            Kind::Tnef => tnef::open(self, path, data, depth),
            Kind::Szdd => szdd::open(self, path, data, depth),
            Kind::Sis => sis::open(self, path, data, depth),
            Kind::Nsis => nsis::open(self, path, data, depth),
            Kind::InstallShield => installshield::open(self, path, data, depth),
            Kind::Rtf => rtf::open(self, path, data, depth),
            Kind::Pdf => pdf::open(self, path, data, depth),
            Kind::EncodedText => {
                uuencode::open(self, path, data, depth)?;
                yenc::open(self, path, data, depth)?;
                binhex::open(self, path, data, depth)?;
                html::open(self, path, data, depth)
            }
        }
    }

    /// Hands out a file found in the container at `parent`, after opening what it
    /// holds in turn.
    pub(crate) fn file(
        &mut self,
        parent: &str,
        name: &str,
        data: Vec<u8>,
        depth: usize,
    ) -> Result<(), Stopped> {
        self.member(parent, name, data, depth, true)
    }

    /// Hands out a part of a document's structure (a stream), to be scanned.
    pub(crate) fn stream(
        &mut self,
        parent: &str,
        name: &str,
        data: Vec<u8>,
        depth: usize,
    ) -> Result<(), Stopped> {
        self.member(parent, name, data, depth, false)
    }

    fn member(
        &mut self,
        parent: &str,
        name: &str,
        data: Vec<u8>,
        depth: usize,
        is_file: bool,
    ) -> Result<(), Stopped> {
        if self.limits.files_only && !is_file && kind_of(&data).is_none() {
            return Ok(());
        }
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(Stopped::LimitExceeded(format!(
                "{parent}: more than {} files",
                self.limits.max_files
            )));
        }
        let name = if name.is_empty() { "data" } else { name };
        let path = format!("{parent}/{name}");
        self.open(&path, &data, depth + 1)?;
        (self.visit)(Member {
            path,
            name: name.to_string(),
            data,
            depth,
            is_file,
        });
        Ok(())
    }

    /// The most a member whose stored form takes `compressed` bytes may expand to:
    /// within the ratio limit and what is left of the byte budget.
    pub(crate) fn cap(&self, compressed: u64) -> u64 {
        let by_ratio = compressed.max(1).saturating_mul(self.limits.max_ratio);
        by_ratio.min(self.limits.max_bytes.saturating_sub(self.bytes))
    }

    /// Reads a decompressing stream within the byte budget and the ratio limit.
    pub(crate) fn read_capped(
        &mut self,
        path: &str,
        reader: impl Read,
        compressed: u64,
    ) -> Result<Vec<u8>, Stopped> {
        let mut out = Vec::new();
        reader
            .take(self.cap(compressed) + 1)
            .read_to_end(&mut out)
            .map_err(|e| match e.kind() {
                // A decoder refusing the dictionary a header asks for: a bomb.
                std::io::ErrorKind::OutOfMemory => Stopped::LimitExceeded(format!(
                    "{path}: needs more memory to decode than allowed"
                )),
                _ => Stopped::Broken(format!("{path}: {e}")),
            })?;
        self.take(path, out, compressed)
    }

    /// Counts bytes a decoder produced (at most [`Walk::cap`] + 1 of them) against the
    /// limits.
    pub(crate) fn take(
        &mut self,
        path: &str,
        out: Vec<u8>,
        compressed: u64,
    ) -> Result<Vec<u8>, Stopped> {
        if out.len() as u64 > self.cap(compressed) {
            return Err(self.exceeded(path, compressed));
        }
        self.bytes += out.len() as u64;
        Ok(out)
    }

    /// The limit a member of `compressed` bytes that expands past [`Walk::cap`] breaks.
    pub(crate) fn exceeded(&self, path: &str, compressed: u64) -> Stopped {
        let by_ratio = compressed.max(1).saturating_mul(self.limits.max_ratio);
        Stopped::LimitExceeded(if self.cap(compressed) == by_ratio {
            format!(
                "{path}: expands more than {}x its compressed size",
                self.limits.max_ratio
            )
        } else {
            format!("{path}: more than {} bytes expanded", self.limits.max_bytes)
        })
    }
}

/// A member's name without the suffix of the compressor that held it: `report.txt.gz`
/// holds `report.txt`; one with another name holds `name.data`.
fn unsuffixed(path: &str, suffixes: &[&str]) -> String {
    let last = path.rsplit('/').next().unwrap_or(path);
    let lower = last.to_ascii_lowercase();
    for suffix in suffixes {
        if lower.ends_with(suffix) && last.len() > suffix.len() {
            return last[..last.len() - suffix.len()].to_string();
        }
    }
    format!("{last}.data")
}

/// Little-endian integers at an offset, `None` past the end: every parser here reads
/// untrusted headers.
pub(crate) fn le16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
pub(crate) fn le32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests;
