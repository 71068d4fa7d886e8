//! `backup verify` (every byte of every file the backup needs, against its checksum)
//! and `backup restore` (into a new data directory a server can be started on).

use super::create::{Progress, CONFIG, EXTERNAL};
use super::manifest::{layer_path, stored_path, FileEntry, Manifest};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
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
    progress.total(stored_total(&manifest));
    for entry in &manifest.files {
        match entry.layers.is_empty() {
            true => read_back(dir, entry, None, progress)?,
            false => rebuild(dir, entry, None, progress)?,
        }
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
    progress.total(stored_total(&manifest));
    let mut external = Vec::new();
    let mut targets = Vec::new();
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
        targets.push((entry, target));
    }
    // Files are restored side by side, one per core: each is decompressed, hashed and
    // written on one thread, and that thread is the limit (the disk is not).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(None::<anyhow::Error>);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(targets.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((entry, target)) = targets.get(i) else {
                    break;
                };
                if failed.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                    break;
                }
                if let Err(e) = restore_one(dir, entry, target, progress) {
                    failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                    break;
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
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

fn restore_one(
    dir: &Path,
    entry: &FileEntry,
    target: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(entry.mode)
        .open(target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    match entry.layers.is_empty() {
        true => read_back(dir, entry, Some(out), progress),
        false => rebuild(dir, entry, Some(out), progress),
    }
}

/// The bytes verify and restore read (a rebuilt database counts each of its layers).
fn stored_total(manifest: &Manifest) -> u64 {
    manifest
        .files
        .iter()
        .map(|f| match f.layers.is_empty() {
            true => f.size,
            false => f.layers.iter().map(|l| l.size).sum(),
        })
        .sum()
}

/// Decompresses one file, checking size and SHA-256; writes it to `out` if given.
fn read_back(
    dir: &Path,
    entry: &FileEntry,
    out: Option<File>,
    progress: &dyn Progress,
) -> Result<()> {
    let stored = stored_path(dir, entry);
    let mut reader = Checked::open(&stored, progress)?;
    let written = match out {
        Some(mut out) => copy(&mut reader, &mut out).and_then(|_| out.sync_all()),
        None => copy(&mut reader, &mut std::io::sink()),
    };
    reader.finish(written, entry.size, &entry.sha256, &entry.name)
}

/// A file from its layers: the whole file, then each page copy applied on top (the
/// database) or each run of appended bytes after it (an append-only file).
fn rebuild(
    dir: &Path,
    entry: &FileEntry,
    out: Option<File>,
    progress: &dyn Progress,
) -> Result<()> {
    let (whole, copies) = entry
        .layers
        .split_first()
        .expect("a rebuilt file has layers");
    let stored = layer_path(dir, entry, whole);
    let mut reader = Checked::open(&stored, progress)?;
    let written = match &out {
        Some(out) => {
            let mut out: &File = out;
            copy(&mut reader, &mut out)
        }
        None => copy(&mut reader, &mut std::io::sink()),
    };
    reader.finish(written, whole.size, &whole.sha256, &entry.name)?;
    let page_copies = entry.name == super::create::DATABASE;
    for layer in copies {
        let stored = layer_path(dir, entry, layer);
        let mut reader = Checked::open(&stored, progress)?;
        let applied = match &out {
            // The file's cursor is at its end: after the layers before.
            Some(out) if !page_copies => {
                let mut out: &File = out;
                copy(&mut reader, &mut out)
            }
            Some(out) => {
                let buffered = std::io::BufReader::with_capacity(CHUNK, &mut reader);
                lazaret_store::pages::apply(buffered, out).map(|_| ())
            }
            None => copy(&mut reader, &mut std::io::sink()),
        };
        reader.finish(applied, layer.size, &layer.sha256, &entry.name)?;
    }
    if let Some(out) = out {
        let size = out.metadata()?.len();
        if size != entry.size {
            return Err(Damaged {
                file: stored_path(dir, entry),
                problem: format!(
                    "rebuilt {} has {size} bytes, the manifest says {}",
                    entry.name, entry.size
                ),
            }
            .into());
        }
        out.sync_all()?;
    }
    Ok(())
}

/// Read and write size: `std::io::copy`'s 8 KB made restore a quarter slower.
const CHUNK: usize = 1 << 20;

fn copy(from: &mut impl Read, to: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}

/// Reads a stored file decompressed, hashing and counting what passes.
struct Checked<'a> {
    stored: PathBuf,
    decoder: zstd::stream::read::Decoder<'static, std::io::BufReader<File>>,
    hash: Sha256,
    size: u64,
    progress: &'a dyn Progress,
    /// Why decompressing failed (as opposed to writing what was read).
    unreadable: Option<String>,
}

impl<'a> Checked<'a> {
    fn open(stored: &Path, progress: &'a dyn Progress) -> Result<Checked<'a>> {
        let damaged = |problem: String| Damaged {
            file: stored.to_path_buf(),
            problem,
        };
        let file = File::open(stored).map_err(|e| damaged(format!("cannot open: {e}")))?;
        let decoder = zstd::stream::read::Decoder::new(file).map_err(|e| damaged(e.to_string()))?;
        Ok(Checked {
            stored: stored.to_path_buf(),
            decoder,
            hash: Sha256::new(),
            size: 0,
            progress,
            unreadable: None,
        })
    }

    /// Err names the stored file when reading failed or size or checksum differ.
    fn finish(self, read: std::io::Result<()>, size: u64, sha256: &str, name: &str) -> Result<()> {
        let damaged = |problem: String| -> anyhow::Error {
            Damaged {
                file: self.stored.clone(),
                problem,
            }
            .into()
        };
        if let Some(problem) = &self.unreadable {
            return Err(damaged(format!("cannot decompress: {problem}")));
        }
        if let Err(e) = read {
            // A page copy that does not parse is the backup's fault; a write error
            // (full disk) is the target's.
            if e.kind() == std::io::ErrorKind::InvalidData
                || e.kind() == std::io::ErrorKind::UnexpectedEof
            {
                return Err(damaged(format!("damaged page copy: {e}")));
            }
            return Err(e.into());
        }
        if self.size != size {
            return Err(damaged(format!(
                "{} bytes, the manifest says {size}",
                self.size
            )));
        }
        if hex::encode(self.hash.finalize()) != sha256 {
            return Err(damaged(format!("checksum does not match ({name})")));
        }
        Ok(())
    }
}

impl Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.decoder.read(buf).inspect_err(|e| {
            self.unreadable = Some(e.to_string());
        })?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
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
