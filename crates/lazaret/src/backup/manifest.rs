//! What a backup holds, as `manifest.json` says.

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.json";
/// A backup being written; renamed to its id once complete, so a crash leaves no
/// backup that looks whole.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// 2: a database may be rebuilt from page copies (`layers`); format 1 had none, and a
/// version reading only 1 must not take a page copy for the whole file. 3: a pack may
/// be rebuilt from its earlier copy and the bytes appended since (`layers` again).
const FORMAT: u32 = 3;
const OLDEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Also the directory's name: `YYYYMMDDTHHMMSSZ`, so ids sort by time.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// Holds every file itself (no earlier backup needed).
    pub full: bool,
    /// The backup this one was made on top of.
    pub parent: Option<String>,
    /// Lazaret version that made it.
    pub version: String,
    /// The store it is a backup of (its `store.id`): a backup builds only on earlier
    /// backups of the same store.
    #[serde(default)]
    pub store: String,
    pub files: Vec<FileEntry>,
    /// Files the parent listed that the store no longer has (packs compacted away).
    #[serde(default)]
    pub removed: Vec<String>,
    /// Bytes of the files listed (uncompressed), and what this backup itself stores
    /// (compressed, only the files it holds).
    pub total_bytes: u64,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the data directory (`external/…` for a file the config names
    /// outside it).
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Id of the backup whose directory holds the bytes (`NAME.zst`).
    pub stored_in: String,
    /// Unix permission bits to restore (secrets are 0600).
    pub mode: u32,
    /// Only ever appended to: a copy of the same name and size stands in for it.
    pub append_only: bool,
    /// A file rebuilt from the copies of several backups, oldest first: the whole
    /// file one of them holds, then — for the database — page copies
    /// (`lazaret_store::pages`) applied on top, or — for an append-only file — the
    /// bytes appended since, each after the one before; the last is this entry's own.
    /// Empty: the stored bytes are the file itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// Append-only files: the SHA-256 of their last `END_CHECK` bytes as backed up. The
    /// next backup copies only what was appended after them, once it has read the
    /// same bytes there (a file that changed before its end is copied whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_sha256: Option<String>,
}

/// Bytes at the end of an append-only file that `end_sha256` covers.
pub const END_CHECK: u64 = 64 << 10;

/// One stored part of a rebuilt database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Layer {
    /// The backup whose directory holds it, as `NAME.zst`.
    pub stored_in: String,
    /// Its bytes, uncompressed, and their SHA-256.
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn new(id: String, created: i64, store: String, parent: Option<String>) -> Manifest {
        Manifest {
            format: FORMAT,
            id,
            created,
            full: parent.is_none(),
            parent,
            version: env!("CARGO_PKG_VERSION").to_string(),
            store,
            files: Vec::new(),
            removed: Vec::new(),
            total_bytes: 0,
            stored_bytes: 0,
        }
    }

    pub fn load(dir: &Path, id: &str) -> Result<Manifest> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(anyhow!(
                "{id:?} is not a backup id (see `lazaret backup list`)"
            ));
        }
        let path = dir.join(id).join(MANIFEST);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "no backup {id} in {} (see `lazaret backup list`)",
                dir.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        if !(OLDEST_FORMAT..=FORMAT).contains(&manifest.format) {
            return Err(anyhow!(
                "backup {id} has format {} (this version reads {OLDEST_FORMAT} to {FORMAT}): restore it with a newer Lazaret",
                manifest.format
            ));
        }
        Ok(manifest)
    }

    /// The other backups this one needs, in no particular order.
    pub fn needs(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .flat_map(|f| {
                std::iter::once(f.stored_in.as_str())
                    .chain(f.layers.iter().map(|l| l.stored_in.as_str()))
            })
            .filter(move |b| *b != self.id)
    }
}

/// Where the bytes of `entry` are kept.
pub fn stored_path(dir: &Path, entry: &FileEntry) -> PathBuf {
    dir.join(&entry.stored_in)
        .join(format!("{}.zst", entry.name))
}

/// Where a layer of the rebuilt file `entry` is kept.
pub fn layer_path(dir: &Path, entry: &FileEntry, layer: &Layer) -> PathBuf {
    dir.join(&layer.stored_in)
        .join(format!("{}.zst", entry.name))
}

/// Every complete backup in `dir`, oldest first (a missing directory has none).
pub fn list(dir: &Path) -> Result<Vec<Manifest>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !dir.join(&name).join(MANIFEST).exists() {
            continue;
        }
        match Manifest::load(dir, &name) {
            Ok(m) => out.push(m),
            Err(e) => tracing::warn!("skipping {name}: {e:#}"),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Inside a partial backup: locked by the process writing it.
pub const WRITER_LOCK: &str = ".writing";

/// Takes the partial backup's writer lock (released when the file is dropped, or when
/// the process dies).
pub fn lock_partial(partial: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::create(partial.join(WRITER_LOCK))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(file)
}

/// True when a partial backup's writer is still running.
pub fn partial_in_progress(partial: &Path) -> bool {
    let Ok(file) = std::fs::File::open(partial.join(WRITER_LOCK)) else {
        return false;
    };
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&file);
    // SAFETY: as above.
    unsafe { libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) != 0 }
}
