//! Signature files: parsed whole or refused whole, with the file, line and reason.
//!
//! | extension | format |
//! |---|---|
//! | `.hdb` | ClamAV MD5 hash signatures |
//! | `.hsb` | ClamAV SHA-256 (or SHA-1) hash signatures |
//! | `.ndb` | ClamAV body signatures (hex with wildcards) |
//! | `.rules` | Lazaret rules: attachment-name glob, header or body regex |
//!
//! Empty lines and lines starting with `#` are skipped. Other files in a signature
//! directory are ignored, as ClamAV ignores what it does not know.

pub mod body;
pub mod hash;
pub mod rules;

use sha2::{Digest, Sha256};
use std::path::Path;

pub use body::BodySignature;
pub use hash::{HashKind, HashSignature};
pub use rules::{Rule, RuleKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Hdb,
    Hsb,
    Ndb,
    Rules,
}

impl FileKind {
    /// The kind a file name's extension says, if it is a signature file.
    pub fn of(name: &str) -> Option<FileKind> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "hdb" => FileKind::Hdb,
            "hsb" => FileKind::Hsb,
            "ndb" => FileKind::Ndb,
            "rules" => FileKind::Rules,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            FileKind::Hdb => "md5 hashes",
            FileKind::Hsb => "sha256 hashes",
            FileKind::Ndb => "body patterns",
            FileKind::Rules => "rules",
        }
    }

    /// Hash signatures are answered from the index of part hashes; the others need the
    /// message contents.
    pub fn is_hash(self) -> bool {
        matches!(self, FileKind::Hdb | FileKind::Hsb)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("{file}:{line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

/// One signature file, parsed.
#[derive(Debug, Clone)]
pub struct SignatureFile {
    pub name: String,
    pub kind: FileKind,
    pub hashes: Vec<HashSignature>,
    pub bodies: Vec<BodySignature>,
    pub rules: Vec<Rule>,
    /// SHA-256 of the file's bytes: the set's version is made of these.
    pub digest: [u8; 32],
}

impl SignatureFile {
    pub fn count(&self) -> usize {
        self.hashes.len() + self.bodies.len() + self.rules.len()
    }

    /// Every signature name in the file, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.hashes
            .iter()
            .map(|h| h.name.as_str())
            .chain(self.bodies.iter().map(|b| b.name.as_str()))
            .chain(self.rules.iter().map(|r| r.name.as_str()))
    }
}

/// Is `name` a file name a signature set may hold (no directories, a known extension)?
pub fn check_file_name(name: &str) -> Result<FileKind, SignatureError> {
    let bad = |reason: String| SignatureError::File {
        file: name.to_string(),
        reason,
    };
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(bad("not a plain file name".into()));
    }
    FileKind::of(name).ok_or_else(|| {
        bad("unknown kind of signature file: name it .hdb, .hsb, .ndb or .rules".into())
    })
}

/// Parses a whole file; the first bad line refuses it.
pub fn parse_file(name: &str, contents: &[u8]) -> Result<SignatureFile, SignatureError> {
    let kind = check_file_name(name)?;
    let text = std::str::from_utf8(contents).map_err(|e| SignatureError::Line {
        file: name.to_string(),
        line: contents[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
        reason: "not text (signature files are ASCII)".into(),
    })?;
    let mut file = SignatureFile {
        name: name.to_string(),
        kind,
        hashes: Vec::new(),
        bodies: Vec::new(),
        rules: Vec::new(),
        digest: Sha256::digest(contents).into(),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = match kind {
            FileKind::Hdb | FileKind::Hsb => {
                hash::parse_line(line, kind == FileKind::Hsb).map(|h| file.hashes.push(h))
            }
            FileKind::Ndb => body::parse_line(line).map(|b| file.bodies.push(b)),
            FileKind::Rules => rules::parse_line(line).map(|r| file.rules.push(r)),
        };
        parsed.map_err(|reason| SignatureError::Line {
            file: name.to_string(),
            line: n + 1,
            reason,
        })?;
    }
    if file.count() == 0 {
        return Err(SignatureError::File {
            file: name.to_string(),
            reason: "holds no signatures".into(),
        });
    }
    Ok(file)
}

/// Loads every signature file of a directory (sorted by name). Files that do not parse
/// are left out and returned as errors; a missing directory is an empty set.
pub fn load_dir(dir: &Path) -> (Vec<SignatureFile>, Vec<SignatureError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && FileKind::of(n).is_some())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            errors.push(SignatureError::File {
                file: dir.display().to_string(),
                reason: e.to_string(),
            });
            Vec::new()
        }
    };
    names.sort();
    for name in names {
        match std::fs::read(dir.join(&name)) {
            Ok(bytes) => match parse_file(&name, &bytes) {
                Ok(f) => files.push(f),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(SignatureError::File {
                file: name,
                reason: e.to_string(),
            }),
        }
    }
    (files, errors)
}

/// Signature names: what clamscan prints and `find --signature` takes.
pub(crate) fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b',' | b'"'))
    {
        return Err(format!(
            "{name:?} is not a signature name (printable, no spaces, ':' or ',')"
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_refuses_the_file_with_its_line() {
        let ok = parse_file(
            "w.ndb",
            b"# worms\n\nW.A:0:*:41424344\r\nW.B:0:*:4545??46\n",
        )
        .unwrap();
        assert_eq!(ok.count(), 2);
        assert_eq!(ok.names().collect::<Vec<_>>(), ["W.A", "W.B"]);
        let e = parse_file("w.ndb", b"W.A:0:*:41424344\nW.B:0:*:45zz\n").unwrap_err();
        assert!(matches!(e, SignatureError::Line { line: 2, .. }), "{e}");
        assert!(e.to_string().starts_with("w.ndb:2: "));
        assert!(parse_file("w.txt", b"x")
            .unwrap_err()
            .to_string()
            .contains(".hdb"));
        assert!(parse_file("../w.hdb", b"x").is_err());
        assert!(parse_file("e.hdb", b"\n# nothing\n")
            .unwrap_err()
            .to_string()
            .contains("no signatures"));
    }
}
