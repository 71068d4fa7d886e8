//! `backup verify` (every byte of every file the backup needs, against its checksum)
//! and `backup restore` (into a new data directory a server can be started on).

use super::create::{Progress, CONFIG, EXTERNAL};
use super::manifest::{stored_path, FileEntry, Manifest};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file of the backup that is missing or does not match its checksum.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct Damaged {
    /// Path of the stored file (what to look at, or what to copy back).
    pub file: PathBuf,
    pub problem: String,
}

/// Re-reads every file backup `id` needs (also those held by earlier backups of its
/// chain); Err names the first bad one.
pub fn verify(dir: &Path, id: &str, progress: &dyn Progress) -> Result<Manifest> {
    let manifest = Manifest::load(dir, id)?;
    progress.total(manifest.total_bytes);
    for entry in &manifest.files {
        read_back(dir, entry, None, progress)?;
    }
    Ok(manifest)
}

pub struct Restored {
    pub manifest: Manifest,
    /// The config to start the restored server with.
    pub config: Option<PathBuf>,
    /// Files that lived outside the data directory, restored under `external/`.
    pub external: Vec<String>,
}

/// Writes backup `id` into `to` (absent or empty): the data directory, and beside it a
/// `lazaret.toml` whose `data_dir` is `to`.
pub fn restore(dir: &Path, id: &str, to: &Path, progress: &dyn Progress) -> Result<Restored> {
    let manifest = Manifest::load(dir, id)?;
    if to.exists() {
        let mut entries =
            fs::read_dir(to).with_context(|| format!("cannot read {}", to.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: restore goes into a new or empty directory (it never overwrites a data directory, least of all a live one)",
                to.display()
            );
        }
    }
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let to = std::path::absolute(to)?;
    progress.total(manifest.total_bytes);
    let mut external = Vec::new();
    for entry in &manifest.files {
        if entry.name.starts_with(EXTERNAL) {
            external.push(entry.name.clone());
        }
        let target = to.join(&entry.name);
        if !target.starts_with(&to) || entry.name.split('/').any(|p| p == "..") {
            bail!(
                "backup {id} names a file outside the directory: {}",
                entry.name
            );
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(entry.mode)
            .open(&target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        read_back(dir, entry, Some(out), progress)?;
    }
    // The copy is a store of its own from now on (see `renew_store_id`).
    let database = to.join(super::create::DATABASE);
    if database.exists() {
        lazaret_store::renew_store_id(&database)
            .with_context(|| format!("cannot give {} its own identity", database.display()))?;
    }
    let config = match manifest.files.iter().any(|f| f.name == CONFIG) {
        true => Some(write_config(&to)?),
        false => None,
    };
    Ok(Restored {
        manifest,
        config,
        external,
    })
}

/// Decompresses one file, checking size and SHA-256; writes it to `out` if given.
fn read_back(
    dir: &Path,
    entry: &FileEntry,
    mut out: Option<File>,
    progress: &dyn Progress,
) -> Result<()> {
    let stored = stored_path(dir, entry);
    let damaged = |problem: String| Damaged {
        file: stored.clone(),
        problem,
    };
    let file = File::open(&stored).map_err(|e| damaged(format!("cannot open: {e}")))?;
    let mut decoder = zstd::stream::read::Decoder::new(file).map_err(|e| damaged(e.to_string()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = decoder
            .read(&mut buf)
            .map_err(|e| damaged(format!("cannot decompress: {e}")))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        if let Some(out) = out.as_mut() {
            out.write_all(&buf[..n])?;
        }
        size += n as u64;
        progress.advance(n as u64);
    }
    if size != entry.size {
        return Err(damaged(format!("{size} bytes, the manifest says {}", entry.size)).into());
    }
    if hex::encode(hash.finalize()) != entry.sha256 {
        return Err(damaged(format!("checksum does not match ({})", entry.name)).into());
    }
    if let Some(out) = out {
        out.sync_all()?;
    }
    Ok(())
}

/// `to/lazaret.toml`: the backed-up config with `data_dir` pointing at `to`. The rest
/// (listen addresses included) is as it was: another server on the same ports needs
/// them changed first.
fn write_config(to: &Path) -> Result<PathBuf> {
    let original = fs::read_to_string(to.join(CONFIG))?;
    let mut text = format!(
        "# Restored by `lazaret backup restore`; data_dir points at the restored store.\ndata_dir = {}\n",
        toml_string(&to.to_string_lossy())
    );
    let mut in_table = false;
    for line in original.lines() {
        let trimmed = line.trim_start();
        in_table |= trimmed.starts_with('[');
        if !in_table
            && trimmed.starts_with("data_dir")
            && trimmed[8..].trim_start().starts_with('=')
        {
            text.push_str("# (was) ");
        }
        text.push_str(line);
        text.push('\n');
    }
    lazaret_core::Config::parse(&text, Path::new("restored lazaret.toml"))
        .map_err(|e| anyhow!("the backed-up config does not parse any more: {e}"))?;
    let path = to.join("lazaret.toml");
    fs::write(&path, text)?;
    Ok(path)
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
