//! `backup create`: a consistent copy of a running server's store, compressed, holding
//! only what no earlier backup in its chain holds.

use super::manifest::{self, FileEntry, Layer, Manifest};
use anyhow::{anyhow, Context, Result};
use lazaret_core::Config;
use lazaret_store::paced_file::PacedFile;
use lazaret_store::{BackupBase, BackupSnapshot, BackupSource, DatabaseCopy, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The database copy's name in the backup (and in a data directory).
pub const DATABASE: &str = "lazaret.db";
/// Where the config file is kept in a backup.
pub const CONFIG: &str = "config/lazaret.toml";
/// Names of files from outside the data directory start with this.
pub const EXTERNAL: &str = "external/";
const CHUNK: usize = 1 << 20;
/// Fast, as `zstd -1`: a backup is read far less often than it is written.
const LEVEL: i32 = 1;

/// Progress: the bytes the backup will read, then each chunk read.
pub trait Progress: Sync {
    fn total(&self, bytes: u64);
    fn advance(&self, bytes: u64);
}

/// Whether mail is moving right now (SMTP sessions open): the backup then gives way.
///
/// On two cores any busy neighbour shows in SMTP's tail latency, whatever its nice
/// level: compression on both cores at nice 10 took the p99 end-of-DATA to 2.3-3.6x
/// its idle value, on one core 1.9-4.3x (bench/RESULTS.md, Backup). While mail moves
/// the backup therefore compresses on one thread and rests as long as it worked, so
/// a core is always free for the sessions; with no session open it runs flat out.
/// Measured (A/B, same load): p99 during back-to-back backups 10.6-10.9 ms before,
/// 6.7-6.9 ms with this (idle 1.7-3.1 ms); resting three times as long did not lower
/// it further (7.5-8.5 ms): what is left is not CPU.
pub type MailMoving<'a> = &'a (dyn Fn() -> bool + Sync);

pub fn create(
    store: &dyn Store,
    config: &Config,
    dest: &Path,
    full: bool,
    progress: &dyn Progress,
    mail_moving: MailMoving<'_>,
) -> Result<Manifest> {
    let called = std::time::Instant::now();
    fs::create_dir_all(dest)
        .with_context(|| format!("cannot create the backup directory {}", dest.display()))?;
    let store_id = store.setting(lazaret_store::STORE_ID)?.unwrap_or_default();
    // The newest backup of this store there: another server's backups in the same
    // directory have packs of the same names and different bytes.
    let parent = match full || store_id.is_empty() {
        true => None,
        false => manifest::list(dest)?
            .into_iter()
            .rev()
            .find(|m| m.store == store_id),
    };
    tracing::debug!(
        "backup: store id and earlier backups read in {:.3} s",
        called.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let (id, created) = new_id(dest)?;
    let partial = dest.join(format!(".{id}{}", manifest::PARTIAL_SUFFIX));
    fs::create_dir(&partial).with_context(|| format!("cannot write in {}", dest.display()))?;
    let mut cleanup = RemoveOnDrop(Some(partial.clone()));
    // Held while writing: `prune` leaves a partial backup alone while its writer lives.
    let _writing = manifest::lock_partial(&partial)?;

    let parent_db = parent
        .iter()
        .flat_map(|p| p.files.iter())
        .find(|f| f.name == DATABASE);
    let base = parent.as_ref().zip(parent_db).and_then(|(p, db)| {
        // Page copies on top of a whole file stop paying once together they are as
        // big: then the whole file is copied again, and restore has less to apply.
        let (whole, copies) = match db.layers.split_first() {
            None => (db.size, 0),
            Some((whole, copies)) => (whole.size, copies.iter().map(|l| l.size).sum()),
        };
        Some(BackupBase {
            id: chain_id(dest, &p.id),
            max_bytes: whole.checked_sub(copies).filter(|&b| b > 0)?,
        })
    });
    // A whole copy of the database reads as much as the packs do: idle from the start.
    // A page copy is short and holds its read transaction open: normal until it ends.
    if base.is_none() {
        super::priority::idle_io();
    }
    // The database's copy streams into its compressed file as the store reads it.
    let db_size = fs::metadata(config.data_dir.join(DATABASE)).map_or(0, |m| m.len());
    progress.total(db_size);
    let mut db_out = Compressor::create(
        &partial.join(format!("{DATABASE}.zst")),
        db_size,
        progress,
        mail_moving,
    )?;
    let copy_started = std::time::Instant::now();
    let BackupSnapshot {
        database,
        files,
        pin,
        keep,
    } = store
        .backup_snapshot(&mut db_out, base.as_ref())
        .context("cannot copy the database")?;
    tracing::debug!(
        "backup {id}: snapshot read in {:.2} s ({:.2} s since the start)",
        copy_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    super::priority::idle_io();
    let (db_sha256, db_compressed, db_len) =
        db_out.finish().context("cannot back up the database")?;
    tracing::debug!(
        "backup {id}: database copied ({db_len} bytes) in {:.2} s",
        copy_started.elapsed().as_secs_f64()
    );
    let mut sources = files;
    sources.extend(server_files(config)?);

    let earlier: HashMap<&str, &FileEntry> = parent
        .iter()
        .flat_map(|p| p.files.iter())
        .map(|f| (f.name.as_str(), f))
        .collect();
    // What each file needs: nothing (an append-only file the chain holds at this
    // length), its appended bytes only, or a whole copy.
    let plans: Vec<Plan> = sources
        .iter()
        .map(|s| plan(s, earlier.get(s.name.as_str()).copied()))
        .collect();
    progress.total(
        db_len
            + sources
                .iter()
                .zip(&plans)
                .map(|(s, p)| match p {
                    Plan::Unchanged => 0,
                    Plan::Appended(from) => s.len - from,
                    Plan::Whole => s.len,
                })
                .sum::<u64>(),
    );

    let mut manifest = Manifest::new(
        id.clone(),
        created,
        store_id,
        parent.as_ref().map(|p| p.id.clone()),
    );
    manifest.stored_bytes += db_compressed;
    // A page copy holds the pages changed since the backup below, on top of its
    // database; a whole copy stands alone.
    let (db_size, db_layers) = match database {
        DatabaseCopy::Pages { database_bytes, .. } => (
            database_bytes,
            on_top_of(
                parent_db.expect("a page copy has a base"),
                &id,
                db_len,
                &db_sha256,
            ),
        ),
        DatabaseCopy::Whole => (db_len, Vec::new()),
    };
    manifest.files.push(FileEntry {
        name: DATABASE.into(),
        size: db_size,
        sha256: db_sha256,
        stored_in: id.clone(),
        mode: 0o600,
        append_only: false,
        layers: db_layers,
        end_sha256: None,
    });
    for (source, plan) in sources.iter().zip(&plans) {
        let stored = partial.join(format!("{}.zst", source.name));
        let from = match *plan {
            Plan::Unchanged => {
                manifest.files.push(earlier[source.name.as_str()].clone());
                continue;
            }
            Plan::Appended(from) => from,
            Plan::Whole => 0,
        };
        let (sha256, compressed) = compress(source, &stored, from, progress, mail_moving)
            .with_context(|| format!("cannot back up {}", source.path.display()))?;
        let end_sha256 = match source.append_only {
            true => Some(end_sha256(&source.path, source.len)?),
            false => None,
        };
        if from > 0 {
            // The earlier copy, then what was appended since, stored here.
            let before = earlier[source.name.as_str()];
            let layers = on_top_of(before, &id, source.len - from, &sha256);
            manifest.stored_bytes += compressed;
            manifest.files.push(FileEntry {
                name: source.name.clone(),
                size: source.len,
                sha256,
                stored_in: id.clone(),
                mode: before.mode,
                append_only: true,
                layers,
                end_sha256,
            });
            continue;
        }
        let mode = fs::metadata(&source.path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o600);
        // A small file that did not change (config, signatures): the earlier copy
        // stands in, and this backup does not hold it twice.
        if let Some(e) = earlier
            .get(source.name.as_str())
            .filter(|e| e.size == source.len && e.sha256 == sha256)
        {
            fs::remove_file(&stored)?;
            manifest.files.push((*e).clone());
            continue;
        }
        manifest.stored_bytes += compressed;
        manifest.files.push(FileEntry {
            name: source.name.clone(),
            size: source.len,
            sha256,
            stored_in: id.clone(),
            mode,
            append_only: source.append_only,
            layers: Vec::new(),
            end_sha256,
        });
    }
    drop(pin); // deletions held back for the copy may go ahead
    tracing::debug!(
        "backup {id}: files copied, {:.2} s since the database's copy began",
        copy_started.elapsed().as_secs_f64()
    );

    manifest.files.sort_by(|a, b| a.name.cmp(&b.name));
    manifest.total_bytes = manifest.files.iter().map(|f| f.size).sum();
    if let Some(p) = &parent {
        manifest.removed = p
            .files
            .iter()
            .filter(|f| !manifest.files.iter().any(|n| n.name == f.name))
            .map(|f| f.name.clone())
            .collect();
    }
    let text = serde_json::to_vec_pretty(&manifest)?;
    let mut file = File::create(partial.join(manifest::MANIFEST))?;
    file.write_all(&text)?;
    file.sync_all()?;
    sync_tree(&partial)?;
    fs::rename(&partial, dest.join(&id))
        .with_context(|| format!("cannot name the backup {id} in {}", dest.display()))?;
    cleanup.0 = None;
    let _ = fs::remove_file(dest.join(&id).join(manifest::WRITER_LOCK));
    sync_dir(dest)?;
    tracing::debug!(
        "backup {id}: published, {:.2} s since the start",
        started.elapsed().as_secs_f64()
    );
    // The next backup here copies the pages changed from this one's snapshot on.
    keep(&chain_id(dest, &id));
    Ok(manifest)
}

/// Names a backup for the store's page record: its directory and id (another
/// directory's backups are another chain).
fn chain_id(dest: &Path, id: &str) -> String {
    format!("{}#{id}", absolute(dest).display())
}

/// The server's own files a restore needs besides the store: config, admin token, TLS
/// pair, signatures.
fn server_files(config: &Config) -> Result<Vec<BackupSource>> {
    let data_dir = absolute(&config.data_dir);
    let mut out = Vec::new();
    let mut add = |path: PathBuf, name: Option<String>| -> Result<()> {
        let Ok(meta) = fs::metadata(&path) else {
            return Ok(()); // not there (no TLS pair yet, no signatures): nothing to keep
        };
        if !meta.is_file() {
            return Ok(());
        }
        let path = absolute(&path);
        let name = name.unwrap_or_else(|| match path.strip_prefix(&data_dir) {
            Ok(relative) => relative.to_string_lossy().into_owned(),
            Err(_) => format!(
                "{EXTERNAL}{}",
                path.to_string_lossy().trim_start_matches('/')
            ),
        });
        out.push(BackupSource {
            name,
            len: meta.len(),
            path,
            append_only: false,
        });
        Ok(())
    };
    if let Some(source) = &config.source {
        add(source.clone(), Some(CONFIG.into()))?;
    }
    add(data_dir.join("admin.token"), None)?;
    match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            add(cert.clone(), None)?;
            add(key.clone(), None)?;
        }
        _ => {
            add(data_dir.join("tls/cert.pem"), None)?;
            add(data_dir.join("tls/key.pem"), None)?;
        }
    }
    let signatures = crate::scan::signature_dir(config);
    if let Ok(entries) = fs::read_dir(&signatures) {
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            add(f, None)?;
        }
    }
    Ok(out)
}

/// The layers of a file rebuilt from `before` (its earlier entry: a whole copy or
/// layers already) and what backup `id` stores of it now (`size` bytes, `sha256`).
fn on_top_of(before: &FileEntry, id: &str, size: u64, sha256: &str) -> Vec<Layer> {
    let mut layers = match before.layers.is_empty() {
        true => vec![Layer {
            stored_in: before.stored_in.clone(),
            size: before.size,
            sha256: before.sha256.clone(),
        }],
        false => before.layers.clone(),
    };
    layers.push(Layer {
        stored_in: id.to_string(),
        size,
        sha256: sha256.to_string(),
    });
    layers
}

/// What a backup copies of one file.
enum Plan {
    /// Nothing: the chain holds it at this length.
    Unchanged,
    /// The bytes from this offset on: the chain holds the ones before.
    Appended(u64),
    Whole,
}

fn plan(source: &BackupSource, earlier: Option<&FileEntry>) -> Plan {
    let Some(e) = earlier.filter(|e| source.append_only && e.append_only) else {
        return Plan::Whole;
    };
    if e.size == source.len {
        return Plan::Unchanged;
    }
    // Grown, and still the same bytes where the earlier copy ended (an earlier entry
    // without the check is from before it: copied whole once more).
    let same_end = e.size < source.len
        && e.end_sha256
            .as_ref()
            .is_some_and(|h| end_sha256(&source.path, e.size).is_ok_and(|now| &now == h));
    match same_end {
        true => Plan::Appended(e.size),
        false => Plan::Whole,
    }
}

/// SHA-256 of the `END_CHECK` bytes before offset `len` of a file (fewer if shorter).
fn end_sha256(path: &Path, len: u64) -> Result<String> {
    use std::io::{Seek, SeekFrom};
    let start = len.saturating_sub(manifest::END_CHECK);
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(len - start).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len - start {
        return Err(anyhow!("{} is shorter than {len} bytes", path.display()));
    }
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Writes bytes `from..len` of the source to `stored`, zstd-compressed; returns their
/// SHA-256 and the compressed size.
fn compress(
    source: &BackupSource,
    stored: &Path,
    from: u64,
    progress: &dyn Progress,
    mail_moving: MailMoving<'_>,
) -> Result<(String, u64)> {
    use std::io::{Seek, SeekFrom};
    let mut input = File::open(&source.path)?;
    input.seek(SeekFrom::Start(from))?;
    let wanted = source.len - from;
    let mut readahead = Readahead { on: true };
    let mut input = input.take(wanted);
    let mut out = Compressor::create(stored, wanted, progress, mail_moving)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        readahead.set(input.get_ref(), !mail_moving());
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    let (sha256, compressed, read) = out.finish()?;
    if read != wanted {
        return Err(anyhow!(
            "{} is shorter than the store says ({} of {} bytes)",
            source.path.display(),
            from + read,
            source.len
        ));
    }
    Ok((sha256, compressed))
}

/// The kernel's readahead on a file the backup reads, on only while no mail moves.
///
/// Reading a pack from start to end, the kernel reads ahead in windows of up to
/// `read_ahead_kb` (8 MB here), sent to the disk as requests of up to
/// `max_sectors_kb` (4 MB). The idle I/O class keeps a session's write from waiting
/// for the backup's *queued* requests, not for those the disk already has: an fsync
/// arriving behind an 8 MB window can wait its length (about 6 ms at 1.3 GB/s). 38 of
/// the 40 slowest SMTP replies during a 1M-message backup fell while packs were read
/// (bench/RESULTS.md, Backup). While sessions are open the backup reads one chunk at a time, each one
/// request the disk finishes in well under a millisecond; with none open it reads
/// ahead as fast as the disk goes.
struct Readahead {
    on: bool,
}

impl Readahead {
    fn set(&mut self, file: &File, on: bool) {
        use std::os::unix::io::AsRawFd;
        if on == self.on {
            return;
        }
        let advice = match on {
            true => libc::POSIX_FADV_NORMAL,
            false => libc::POSIX_FADV_RANDOM,
        };
        // Advisory: if it fails, the file is read as before.
        // SAFETY: a plain syscall on an open descriptor; no memory is passed.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, advice) };
        self.on = on;
    }
}

/// A file's bytes on their way into the backup: hashed, counted on the progress bar,
/// zstd-compressed into `stored` (written back paced, fsynced at the end), giving way
/// while mail moves.
struct Compressor<'a> {
    encoder: zstd::stream::write::Encoder<'static, PacedFile>,
    hash: Sha256,
    read: u64,
    progress: &'a dyn Progress,
    mail_moving: MailMoving<'a>,
}

impl<'a> Compressor<'a> {
    /// `expected`: about how many bytes will come (compression on every core pays only
    /// for a big file).
    fn create(
        stored: &Path,
        expected: u64,
        progress: &'a dyn Progress,
        mail_moving: MailMoving<'a>,
    ) -> Result<Compressor<'a>> {
        if let Some(dir) = stored.parent() {
            fs::create_dir_all(dir)?;
        }
        let out = PacedFile::new(File::create(stored)?);
        let mut encoder = zstd::stream::write::Encoder::new(out, LEVEL)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        if expected > 4 * CHUNK as u64 && !mail_moving() {
            encoder.multithread(threads)?;
        }
        Ok(Compressor {
            encoder,
            hash: Sha256::new(),
            read: 0,
            progress,
            mail_moving,
        })
    }

    /// Ends the file durably; returns the SHA-256 of the bytes that came, the
    /// compressed size, and how many bytes came.
    fn finish(self) -> Result<(String, u64, u64)> {
        let out = self.encoder.finish()?.into_inner();
        out.sync_all()?;
        let compressed = out.metadata()?.len();
        Ok((hex::encode(self.hash.finalize()), compressed, self.read))
    }
}

impl Write for Compressor<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let started = std::time::Instant::now();
        self.hash.update(buf);
        self.encoder.write_all(buf)?;
        self.read += buf.len() as u64;
        self.progress.advance(buf.len() as u64);
        if (self.mail_moving)() {
            std::thread::sleep(started.elapsed());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A new id from the time (UTC), one second later if that one is taken.
fn new_id(dest: &Path) -> Result<(String, i64)> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let mut t = time::OffsetDateTime::now_utc();
    loop {
        let id = t.format(&format)?;
        let taken = dest.join(&id).exists()
            || dest
                .join(format!(".{id}{}", manifest::PARTIAL_SUFFIX))
                .exists();
        if !taken {
            return Ok((id, t.unix_timestamp()));
        }
        t += time::Duration::seconds(1);
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The directories of a finished backup, so the rename that publishes it comes after
/// their entries are on disk.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir)
}

/// Removes a backup that did not finish (error, full disk), so none looks whole.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_dir_all(path);
        }
    }
}
