//! Message bodies, appended to pack files: `blobs/packs/<8 digits>.pack`, up to 64 MB
//! each, written once, in the order messages arrive.
//!
//! Why packs and not a file per message: creating a file costs an inode, a directory
//! entry and two fsyncs (file, directory) for every `250`, and on filesystems without a
//! journal ext4 allocates inodes by stepping over every recently deleted one — on a
//! server that deletes mail all day (relaying, POP3) that was a third of all CPU under
//! load. An append costs a `pwrite`, and one `fdatasync` makes every message appended
//! meanwhile durable (group sync), as Dovecot's mdbox does.
//!
//! Each message is preceded by a 32-byte record header (magic, length, store id), so a
//! pack can be read without the database. The database row names the pack and the
//! offset of the message's first byte; the message is durable before that row is
//! committed, so a crash between the two leaves only unreferenced bytes, which
//! compaction reclaims (`compaction.rs`) together with those of deleted messages.
//!
//! Stores made before packs have one file per message (`blobs/xx/<id>.eml`); those are
//! still read and removed, never written.
//!
//! With `[store] blobs = "s3"` new messages go to a bucket instead, an object each
//! (`crate::objects`), and their rows name no pack: a row without a pack is then an
//! object. Packs written before the switch are still read from disk.

use crate::objects::Objects;
use crate::{io_err, Result, StoreError};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes before each message in a pack.
pub const HEADER: u64 = 32;
const MAGIC: &[u8; 8] = b"LZBLOB1\n";
/// A pack is closed once it holds this much (a bigger message gets a pack to itself).
pub const PACK_LIMIT: u64 = 64 << 20;
/// Longest header block `read_head` returns.
const HEAD_LIMIT: usize = 256 * 1024;

/// Where a message's bytes start in the packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: u32,
    pub offset: u64,
}

/// A message's bytes as the database row names them: in a pack, or (stores from before
/// packs) in a file of their own.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub uid: String,
    pub at: Option<Location>,
    pub len: u64,
}

struct Appender {
    id: u32,
    file: Arc<File>,
    len: u64,
}

/// How far the current pack is known to be on disk.
struct Synced {
    pack: u32,
    len: u64,
    /// A thread is in `fdatasync` for everyone; the others wait for it.
    busy: bool,
}

pub struct Blobs {
    root: PathBuf,
    limit: u64,
    packs: PathBuf,
    current: Mutex<Appender>,
    synced: Mutex<Synced>,
    synced_changed: Condvar,
    /// Read-only descriptors of packs, opened once.
    open: Mutex<HashMap<u32, Arc<File>>>,
    /// Backups under way, and the files whose removal waits for them.
    pins: Mutex<Pins>,
    /// `blobs = "s3"`: where new messages go.
    objects: Option<Objects>,
}

#[derive(Default)]
struct Pins {
    count: usize,
    deferred: Vec<PathBuf>,
    deferred_objects: Vec<String>,
}

/// While one is held, no pack or blob file is removed: a backup copies the bytes its
/// database snapshot names, which compaction or a deletion might otherwise take away
/// under it. Removals asked for meanwhile happen when the last pin goes.
pub struct BlobPin {
    blobs: Arc<Blobs>,
}

impl Drop for BlobPin {
    fn drop(&mut self) {
        let (deferred, objects) = {
            let mut pins = lock(&self.blobs.pins);
            pins.count -= 1;
            if pins.count > 0 {
                return;
            }
            (
                std::mem::take(&mut pins.deferred),
                std::mem::take(&mut pins.deferred_objects),
            )
        };
        for path in deferred {
            let _ = fs::remove_file(&path);
        }
        let _ = sync_dir(&self.blobs.packs);
        if let Some(store) = &self.blobs.objects {
            store.delete(objects);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Blobs {
    /// Opens the blob directory, appending to its newest pack (a record torn by a
    /// crash at its end is unreferenced; appends go after it).
    pub fn open(root: PathBuf, limit: u64) -> Result<Blobs> {
        let packs = root.join("packs");
        fs::create_dir_all(&packs).map_err(io_err(format!("create {}", packs.display())))?;
        sync_dir(&root)?;
        let newest = pack_ids(&packs)?.into_iter().max();
        let (id, file) = match newest {
            Some(id) => (id, open_append(&pack_path(&packs, id), false)?),
            None => (1, open_append(&pack_path(&packs, 1), true)?),
        };
        sync_dir(&packs)?;
        let len = file
            .metadata()
            .map_err(io_err(format!("stat {}", pack_path(&packs, id).display())))?
            .len();
        Ok(Blobs {
            root,
            limit,
            current: Mutex::new(Appender {
                id,
                file: Arc::new(file),
                len,
            }),
            synced: Mutex::new(Synced {
                pack: id,
                len,
                busy: false,
            }),
            synced_changed: Condvar::new(),
            open: Mutex::new(HashMap::new()),
            pins: Mutex::new(Pins::default()),
            packs,
            objects: None,
        })
    }

    /// New messages go to these objects from now on (`blobs = "s3"`).
    pub fn with_objects(mut self, objects: Objects) -> Blobs {
        self.objects = Some(objects);
        self
    }

    /// Whether new messages go to objects rather than packs.
    pub fn in_objects(&self) -> bool {
        self.objects.is_some()
    }

    /// Stores a message durably where new messages go: returns its place in the packs,
    /// or None for an object of its own.
    pub fn put(&self, uid: &str, data: &[u8]) -> Result<Option<Location>> {
        match &self.objects {
            Some(objects) => objects.put(uid, data.to_vec()).map(|()| None),
            None => self.write(uid, data).map(Some),
        }
    }

    /// Appends a message and returns once it is durable.
    pub fn write(&self, uid: &str, data: &[u8]) -> Result<Location> {
        let (at, end) = self.append(uid, data)?;
        self.sync_through(at.pack, end)?;
        Ok(at)
    }

    /// Stores many messages durably where new messages go (as `put`, for an import).
    pub fn put_batch(&self, messages: &[(&str, &[u8])]) -> Result<Vec<Option<Location>>> {
        match &self.objects {
            Some(objects) => {
                let owned = messages
                    .iter()
                    .map(|(uid, data)| (uid.to_string(), data.to_vec()))
                    .collect();
                objects.put_many(owned)?;
                Ok(vec![None; messages.len()])
            }
            None => Ok(self
                .write_batch(messages.iter().copied())?
                .into_iter()
                .map(Some)
                .collect()),
        }
    }

    /// Appends many messages to the packs, then makes them all durable with one sync.
    pub fn write_batch<'a>(
        &self,
        files: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Vec<Location>> {
        let mut out = Vec::new();
        let mut last = None;
        for (uid, data) in files {
            let (at, end) = self.append(uid, data)?;
            out.push(at);
            last = Some((at.pack, end));
        }
        if let Some((pack, end)) = last {
            self.sync_through(pack, end)?;
        }
        Ok(out)
    }

    /// Writes the record at the end of the current pack (not yet durable); returns
    /// where the message starts and where the record ends (for `sync_through`).
    pub fn append(&self, uid: &str, data: &[u8]) -> Result<(Location, u64)> {
        let mut cur = lock(&self.current);
        if cur.len > 0 && cur.len + HEADER + data.len() as u64 > self.limit {
            self.rotate(&mut cur)?;
        }
        let start = cur.len;
        let mut header = [b' '; HEADER as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        let id = uid.as_bytes();
        header[16..16 + id.len().min(16)].copy_from_slice(&id[..id.len().min(16)]);
        let written = cur
            .file
            .write_all_at(&header, start)
            .and_then(|()| cur.file.write_all_at(data, start + HEADER));
        if let Err(e) = written {
            // Leave no torn record behind (a full disk must not poison the next append).
            let _ = cur.file.set_len(start);
            return Err(StoreError::Io {
                context: format!("append to {}", pack_path(&self.packs, cur.id).display()),
                source: e,
            });
        }
        cur.len = start + HEADER + data.len() as u64;
        Ok((
            Location {
                pack: cur.id,
                offset: start + HEADER,
            },
            cur.len,
        ))
    }

    /// Closes the current pack (synced whole) and starts the next one.
    fn rotate(&self, cur: &mut Appender) -> Result<()> {
        let old = pack_path(&self.packs, cur.id);
        cur.file
            .sync_data()
            .map_err(io_err(format!("fsync {}", old.display())))?;
        let id = cur.id + 1;
        let file = open_append(&pack_path(&self.packs, id), true)?;
        sync_dir(&self.packs)?;
        *cur = Appender {
            id,
            file: Arc::new(file),
            len: 0,
        };
        // Everything in older packs is on disk now.
        let mut synced = lock(&self.synced);
        *synced = Synced {
            pack: id,
            len: 0,
            busy: synced.busy,
        };
        self.synced_changed.notify_all();
        Ok(())
    }

    /// Returns once the current pack is on disk through `end` (or `pack` is an older,
    /// closed one). One thread syncs for all who wait meanwhile.
    pub fn sync_through(&self, pack: u32, end: u64) -> Result<()> {
        let mut synced = lock(&self.synced);
        loop {
            if synced.pack > pack || (synced.pack == pack && synced.len >= end) {
                return Ok(());
            }
            if synced.busy {
                synced = self
                    .synced_changed
                    .wait(synced)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            synced.busy = true;
            drop(synced);
            // Every append below `len` has completed: appends hold the lock they are
            // counted under.
            let (file, id, len) = {
                let cur = lock(&self.current);
                (cur.file.clone(), cur.id, cur.len)
            };
            let result = file.sync_data();
            synced = lock(&self.synced);
            synced.busy = false;
            if result.is_ok() && (id > synced.pack || (id == synced.pack && len > synced.len)) {
                synced.pack = id;
                synced.len = len;
            }
            self.synced_changed.notify_all();
            result.map_err(io_err(format!(
                "fsync {}",
                pack_path(&self.packs, id).display()
            )))?;
        }
    }

    /// The pack being appended to (compaction leaves it alone).
    pub fn current_pack(&self) -> u32 {
        lock(&self.current).id
    }

    /// Size of a pack file, or None if it is gone.
    pub fn pack_len(&self, pack: u32) -> Option<u64> {
        fs::metadata(pack_path(&self.packs, pack))
            .ok()
            .map(|m| m.len())
    }

    /// Every pack file there is.
    pub fn packs(&self) -> Result<Vec<u32>> {
        pack_ids(&self.packs)
    }

    /// Deletes a pack no message lives in any more.
    pub fn pin(self: &Arc<Self>) -> BlobPin {
        lock(&self.pins).count += 1;
        BlobPin {
            blobs: self.clone(),
        }
    }

    /// True when the path's removal was deferred to the end of a backup.
    fn defer_removal(&self, path: &Path) -> bool {
        let mut pins = lock(&self.pins);
        if pins.count == 0 {
            return false;
        }
        pins.deferred.push(path.to_path_buf());
        true
    }

    /// Where a pack's bytes are (for a backup's copy).
    pub fn pack_path(&self, pack: u32) -> PathBuf {
        pack_path(&self.packs, pack)
    }

    /// Where a message stored before packs is (for a backup's copy).
    pub fn legacy_file(&self, uid: &str) -> PathBuf {
        self.legacy_path(uid)
    }

    pub fn remove_pack(&self, pack: u32) -> Result<()> {
        lock(&self.open).remove(&pack);
        let path = pack_path(&self.packs, pack);
        if self.defer_removal(&path) {
            return Ok(());
        }
        fs::remove_file(&path).map_err(io_err(format!("remove {}", path.display())))?;
        sync_dir(&self.packs)
    }

    fn pack_file(&self, pack: u32) -> Result<Arc<File>> {
        if let Some(f) = lock(&self.open).get(&pack) {
            return Ok(f.clone());
        }
        let path = pack_path(&self.packs, pack);
        let file = Arc::new(File::open(&path).map_err(io_err(format!("read {}", path.display())))?);
        lock(&self.open).insert(pack, file.clone());
        Ok(file)
    }

    fn legacy_path(&self, uid: &str) -> PathBuf {
        self.root
            .join(&uid[..2.min(uid.len())])
            .join(format!("{uid}.eml"))
    }

    /// A reader over the message's bytes.
    fn reader(&self, blob: &BlobRef) -> Result<Box<dyn Read + Send>> {
        match blob.at {
            Some(at) => Ok(Box::new(PackReader {
                file: self.pack_file(at.pack)?,
                pos: at.offset,
                end: at.offset + blob.len,
            })),
            None => match &self.objects {
                Some(objects) => Ok(Box::new(std::io::Cursor::new(
                    objects.get(&blob.uid, None)?,
                ))),
                None => {
                    let path = self.legacy_path(&blob.uid);
                    Ok(Box::new(
                        File::open(&path).map_err(io_err(format!("read {}", path.display())))?,
                    ))
                }
            },
        }
    }

    pub fn read(&self, blob: &BlobRef) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_into(blob, &mut out)?;
        Ok(out)
    }

    /// Appends the message's bytes to `buf`; returns how many.
    pub fn read_into(&self, blob: &BlobRef, buf: &mut Vec<u8>) -> Result<usize> {
        if let Some(at) = blob.at {
            let file = self.pack_file(at.pack)?;
            let from = buf.len();
            buf.resize(from + blob.len as usize, 0);
            return match file.read_exact_at(&mut buf[from..], at.offset) {
                Ok(()) => Ok(blob.len as usize),
                Err(e) => {
                    buf.truncate(from);
                    Err(StoreError::Io {
                        context: format!("read {}", pack_path(&self.packs, at.pack).display()),
                        source: e,
                    })
                }
            };
        }
        if let Some(objects) = &self.objects {
            return objects.read_into(&blob.uid, buf);
        }
        let mut reader = self.reader(blob)?;
        reader
            .read_to_end(buf)
            .map_err(io_err(format!("read message {}", blob.uid)))
    }

    /// The message's header block (through the empty line), read without the body.
    pub fn read_head(&self, blob: &BlobRef) -> Result<Vec<u8>> {
        let mut reader: Box<dyn Read + Send> = match (&self.objects, blob.at) {
            // One ranged request rather than the whole object.
            (Some(objects), None) => Box::new(std::io::Cursor::new(
                objects.get(&blob.uid, Some(0..blob.len.min(HEAD_LIMIT as u64)))?,
            )),
            _ => self.reader(blob)?,
        };
        let mut out = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            let n = reader
                .read(&mut chunk)
                .map_err(io_err(format!("read message {}", blob.uid)))?;
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
            if out.len() > HEAD_LIMIT {
                return Ok(out);
            }
        }
    }

    /// What is wrong with a message's bytes, if anything: its pack or file missing, its
    /// record header not as written (magic, length, store id), the pack too short, or
    /// with `sha256` given, bytes that hash otherwise (for `lazaret check`).
    pub fn fault(&self, blob: &BlobRef, sha256: Option<&str>) -> Option<String> {
        use sha2::{Digest, Sha256};
        let Some(at) = blob.at else {
            if let Some(objects) = &self.objects {
                return object_fault(objects, blob, sha256);
            }
            let path = self.legacy_path(&blob.uid);
            return match (fs::metadata(&path), sha256) {
                (Err(e), _) => Some(format!("{}: {e}", path.display())),
                (Ok(m), _) if m.len() != blob.len => Some(format!(
                    "{} holds {} bytes, the row says {}",
                    path.display(),
                    m.len(),
                    blob.len
                )),
                (Ok(_), Some(sha)) => match fs::read(&path) {
                    Ok(data) if hex::encode(Sha256::digest(&data)) == sha => None,
                    Ok(_) => Some(format!("{}: SHA-256 differs", path.display())),
                    Err(e) => Some(format!("{}: {e}", path.display())),
                },
                (Ok(_), None) => None,
            };
        };
        let path = pack_path(&self.packs, at.pack);
        let file = match self.pack_file(at.pack) {
            Ok(f) => f,
            Err(e) => return Some(e.to_string()),
        };
        let mut header = [0u8; HEADER as usize];
        if at.offset < HEADER || file.read_exact_at(&mut header, at.offset - HEADER).is_err() {
            return Some(format!("{}: no record at {}", path.display(), at.offset));
        }
        let id = blob.uid.as_bytes();
        let id = &id[..id.len().min(16)];
        if &header[..8] != MAGIC
            || header[8..16] != blob.len.to_le_bytes()
            || &header[16..16 + id.len()] != id
        {
            return Some(format!(
                "{}: the record at {} is not this message's",
                path.display(),
                at.offset
            ));
        }
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < at.offset + blob.len {
            return Some(format!(
                "{}: ends at {len}, the message would end at {}",
                path.display(),
                at.offset + blob.len
            ));
        }
        if let Some(sha) = sha256 {
            let mut data = vec![0u8; blob.len as usize];
            if let Err(e) = file.read_exact_at(&mut data, at.offset) {
                return Some(format!("{}: {e}", path.display()));
            }
            if hex::encode(Sha256::digest(&data)) != sha {
                return Some(format!(
                    "{}: the message at {} has another SHA-256",
                    path.display(),
                    at.offset
                ));
            }
        }
        None
    }

    /// Deletes messages kept outside packs: objects (`blobs = "s3"`, in one batch), or
    /// files of their own (stores from before packs). Bytes in packs are reclaimed by
    /// compaction.
    pub fn discard(&self, uids: Vec<String>) {
        if let Some(objects) = &self.objects {
            {
                let mut pins = lock(&self.pins);
                if pins.count > 0 {
                    pins.deferred_objects.extend(uids);
                    return;
                }
            }
            objects.delete(uids);
            return;
        }
        for uid in uids {
            let path = self.legacy_path(&uid);
            if !self.defer_removal(&path) {
                let _ = fs::remove_file(path);
            }
        }
    }

    /// The bucket new messages go to, if they do.
    pub fn objects(&self) -> Option<&Objects> {
        self.objects.as_ref()
    }

    /// The directories of stores from before packs (for the orphan sweep).
    pub fn legacy_shards(&self) -> impl Iterator<Item = PathBuf> + '_ {
        (0..=255u8).map(|n| self.root.join(format!("{n:02x}")))
    }
}

/// `fault` for a message kept as an object: checked only with `sha256` (a deep
/// check), since a request per message would make a plain `lazaret check` as slow as
/// a deep one.
fn object_fault(objects: &Objects, blob: &BlobRef, sha256: Option<&str>) -> Option<String> {
    use sha2::{Digest, Sha256};
    let sha = sha256?;
    let what = objects.describe(&blob.uid);
    match objects.fetch(&blob.uid, None) {
        Ok(data) if data.len() as u64 != blob.len => Some(format!(
            "{what} holds {} bytes, the row says {}",
            data.len(),
            blob.len
        )),
        Ok(data) if hex::encode(Sha256::digest(&data)) == sha => None,
        Ok(_) => Some(format!("{what}: SHA-256 differs")),
        Err(e) => Some(e.to_string()),
    }
}

/// `Read` over one message's bytes inside a pack.
struct PackReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for PackReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn pack_path(packs: &Path, id: u32) -> PathBuf {
    packs.join(format!("{id:08}.pack"))
}

fn pack_ids(packs: &Path) -> Result<Vec<u32>> {
    let entries = fs::read_dir(packs).map_err(io_err(format!("list {}", packs.display())))?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".pack")?.parse().ok())
        .collect())
}

fn open_append(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create)
        .open(path)
        .map_err(io_err(format!("open {}", path.display())))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_rotate_and_read_back() {
        let dir = std::env::temp_dir().join(format!("lazaret-blobs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let blobs = Blobs::open(dir.clone(), PACK_LIMIT).unwrap();
        let big = vec![b'x'; (PACK_LIMIT / 2) as usize];
        let a = blobs.write("aa", b"Subject: a\r\n\r\nbody a").unwrap();
        let b = blobs.write("bb", &big).unwrap();
        let c = blobs.write("cc", &big).unwrap();
        assert_eq!((a.pack, b.pack), (1, 1));
        assert_eq!(c.pack, 2, "the third does not fit into the first pack");
        let r = |uid: &str, at, len| BlobRef {
            uid: uid.into(),
            at: Some(at),
            len,
        };
        assert_eq!(
            blobs.read(&r("aa", a, 20)).unwrap(),
            b"Subject: a\r\n\r\nbody a"
        );
        assert_eq!(
            blobs.read_head(&r("aa", a, 20)).unwrap(),
            b"Subject: a\r\n\r\n"
        );
        assert_eq!(blobs.read(&r("cc", c, big.len() as u64)).unwrap(), big);
        // Reopened: appends continue in the newest pack, after what is there.
        drop(blobs);
        let blobs = Blobs::open(dir.clone(), PACK_LIMIT).unwrap();
        let d = blobs.write("dd", b"four").unwrap();
        assert_eq!(d.pack, 2);
        assert_eq!(d.offset, c.offset + big.len() as u64 + HEADER);
        assert_eq!(blobs.read(&r("dd", d, 4)).unwrap(), b"four");
        let _ = fs::remove_dir_all(&dir);
    }
}
