//! Changes to the signature directory: files are checked whole before any is written,
//! written atomically (temporary file, fsync, rename), and the set is reloaded by the
//! caller. SMTP never waits: scans in progress finish on the set they started with.

use lazaret_scan::signatures::{self, FileKind, SignatureError};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Default, Serialize)]
pub struct Change {
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Installs signature files (name, contents): all are parsed first, and one bad file
/// refuses the lot.
pub fn install(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Change, Vec<SignatureError>> {
    let errors: Vec<SignatureError> = files
        .iter()
        .filter_map(|(name, data)| signatures::parse_file(name, data).err())
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let io = |name: &str, e: std::io::Error| {
        vec![SignatureError::File {
            file: name.to_string(),
            reason: format!("cannot write into {}: {e}", dir.display()),
        }]
    };
    std::fs::create_dir_all(dir).map_err(|e| io("", e))?;
    let mut change = Change::default();
    for (name, data) in files {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(old) if &old == data => {
                change.unchanged.push(name.clone());
                continue;
            }
            Ok(_) => change.replaced.push(name.clone()),
            Err(_) => change.added.push(name.clone()),
        }
        write_atomically(dir, name, data).map_err(|e| io(name, e))?;
    }
    Ok(change)
}

fn write_atomically(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[derive(Debug, Default, Serialize)]
pub struct Removed {
    /// Whole files removed.
    pub files: Vec<String>,
    /// Signatures taken out of files that stay.
    pub signatures: usize,
}

/// Removes a signature file by its name, or every signature of that name from the
/// files that hold it (a file left empty is removed).
pub fn remove(dir: &Path, name: &str) -> Result<Removed, String> {
    let mut removed = Removed::default();
    if FileKind::of(name).is_some() && !name.contains('/') && dir.join(name).is_file() {
        std::fs::remove_file(dir.join(name)).map_err(|e| format!("cannot remove {name}: {e}"))?;
        removed.files.push(name.to_string());
        return Ok(removed);
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| FileKind::of(&n).map(|k| (n, k)))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (file, kind) in files {
        let Ok(text) = std::fs::read_to_string(dir.join(&file)) else {
            continue;
        };
        let mut kept = String::new();
        let mut taken = 0;
        let mut left = 0;
        for line in text.lines() {
            if signature_name(line, kind) == Some(name) {
                taken += 1;
                continue;
            }
            if !line.trim().is_empty() && !line.starts_with('#') {
                left += 1;
            }
            kept.push_str(line);
            kept.push('\n');
        }
        if taken == 0 {
            continue;
        }
        if left == 0 {
            std::fs::remove_file(dir.join(&file))
                .map_err(|e| format!("cannot remove {file}: {e}"))?;
            removed.files.push(file);
        } else {
            write_atomically(dir, &file, kept.as_bytes())
                .map_err(|e| format!("cannot rewrite {file}: {e}"))?;
        }
        removed.signatures += taken;
    }
    if removed.files.is_empty() && removed.signatures == 0 {
        return Err(format!(
            "no signature file or signature named {name:?} (see `lazaret signatures list`)"
        ));
    }
    Ok(removed)
}

/// The signature name a line of a file of this kind defines.
fn signature_name(line: &str, kind: FileKind) -> Option<&str> {
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    match kind {
        FileKind::Hdb | FileKind::Hsb => line.split(':').nth(2),
        FileKind::Ndb => line.split(':').next(),
        FileKind::Rules => line.split_whitespace().next(),
    }
}
