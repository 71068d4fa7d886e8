//! Which database pages changed since the last backup, so that the next backup copies
//! those pages instead of the whole database (the idea behind PostgreSQL 17's WAL
//! summaries). A new message changes few table pages but a leaf of every index on a
//! random key (hashes, cluster keys, senders): 1% more mail changed 28% of the pages,
//! so the database, not the message packs, was most of an incremental backup.
//!
//! Every change reaches the database file through the write-ahead log, and only a
//! checkpoint copies log frames into the file. So the pages changed since a backup
//! are those of the frames checkpointed since it (recorded here, before each
//! checkpoint, in `lazaret.db.changes`) and those still in the log when the next
//! backup starts. Every checkpoint this process runs goes through [`ChangedPages::
//! record_then`]; connections are opened with checkpoint-on-close off.
//!
//! A checkpoint copies a frame only after it is recorded: the record is taken while a
//! read transaction holds the log at its current end (a checkpoint never copies frames
//! past a live reader's snapshot, and the log cannot restart under one), made durable,
//! and only then does the checkpoint run.
//!
//! A write this process did not make (another program checkpointing the database
//! while the server was down) changes the file's size, inode or modification time
//! from those recorded after the last checkpoint: the record is then void and the next
//! backup copies the whole database. So is a record that does not read back whole.

use crate::Result;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const MAGIC: &[u8; 8] = b"LZCHG\0\0\x02";
const WAL_HEADER: u64 = 32;
const FRAME_HEADER: u64 = 24;

/// Page numbers, as a bit set (a 4 GB database has a million pages: 128 KB).
#[derive(Clone, Default, PartialEq, Debug)]
pub(super) struct PageSet(Vec<u64>);

impl PageSet {
    pub(super) fn insert(&mut self, page: u32) {
        let (word, bit) = (page as usize / 64, page % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    pub(super) fn len(&self) -> u64 {
        self.0.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// Ascending.
    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u32)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u32 * 64 + b)
        })
    }
}

/// Size, inode and modification time of the database file.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
struct Stamp {
    len: u64,
    inode: u64,
    mtime_ns: i64,
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        inode: m.ino(),
        mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
    })
}

/// Pages changed since the snapshot of backup `base`.
#[derive(Clone, Default, Debug, PartialEq)]
struct Changes {
    base: Option<String>,
    /// Anything may have changed (no record, or a write this process did not see).
    unknown: bool,
    pages: PageSet,
    /// The log as it was before the base's snapshot: its frames then were part of
    /// that snapshot, not changes since (a log holds thousands of frames).
    log_before: Option<LogMark>,
}

impl Changes {
    fn add(&mut self, log: &LogFrames) {
        let old = match self.log_before {
            Some(mark) if mark.salts == log.salts => mark.frames,
            _ => 0,
        };
        let skip = old.saturating_sub(log.first) as usize;
        for &page in log.pages.iter().skip(skip) {
            self.pages.insert(page);
        }
    }
}

/// A point in one generation of the log (it restarts with new salts).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
struct LogMark {
    salts: [u8; 8],
    frames: u32,
}

/// The page of each frame of the log's current generation from frame `first` on, in
/// order.
#[derive(Default)]
struct LogFrames {
    salts: [u8; 8],
    first: u32,
    pages: Vec<u32>,
    /// One past the last frame that ends a transaction. Frames after it may belong to
    /// one that is rolled back, and their places be written again with other pages.
    committed: u32,
}

impl LogFrames {
    /// Up to the last committed frame: what is past it must be read again next time.
    fn mark(&self) -> LogMark {
        LogMark {
            salts: self.salts,
            frames: self.committed,
        }
    }
}

struct State {
    /// Its read transaction holds the log while frames are recorded (opened when first
    /// needed: a new store has no database file yet when this is made).
    pin: Option<Connection>,
    since_backup: Changes,
    /// Started with a backup under way; replaces `since_backup` once that one is kept.
    pending: Option<Changes>,
    /// The database file as the last checkpoint left it.
    stamp: Option<Stamp>,
    /// How far the log has been read and recorded: a checkpoint reads only the frames
    /// written since (reading them all each time, up to 16,000, cost the sessions'
    /// p99 at 400 msgs/s 5-11 ms instead of 2).
    recorded: Option<LogMark>,
}

pub(super) struct ChangedPages {
    db_path: PathBuf,
    wal_path: PathBuf,
    record_path: PathBuf,
    state: Mutex<State>,
}

impl ChangedPages {
    /// Reads the record beside the database; call before anything opens the database.
    pub(super) fn open(db_path: &Path) -> Arc<ChangedPages> {
        let record_path = PathBuf::from(format!("{}.changes", db_path.display()));
        let wal_path = PathBuf::from(format!("{}-wal", db_path.display()));
        let stamp = stamp_of(db_path);
        let since_backup = match std::fs::read(&record_path).ok().and_then(|b| decode(&b)) {
            Some((recorded, changes)) if Some(recorded) == stamp => changes,
            _ => Changes {
                unknown: true,
                ..Changes::default()
            },
        };
        Arc::new(ChangedPages {
            db_path: db_path.to_path_buf(),
            wal_path,
            record_path,
            state: Mutex::new(State {
                pin: None,
                since_backup,
                pending: None,
                stamp,
                recorded: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the pages of the log's frames, then runs `checkpoint`.
    pub(super) fn record_then<R>(&self, checkpoint: impl FnOnce() -> R) -> R {
        let mut state = self.lock();
        self.record_locked(&mut state, checkpoint)
    }

    /// As `record_then`, or `None` at once when a checkpoint is already being recorded
    /// (for the writer's own checkpoint: it must not wait for the thread's).
    pub(super) fn try_record_then<R>(&self, checkpoint: impl FnOnce() -> R) -> Option<R> {
        let mut state = match self.state.try_lock() {
            Ok(s) => s,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(self.record_locked(&mut state, checkpoint))
    }

    fn record_locked<R>(&self, state: &mut State, checkpoint: impl FnOnce() -> R) -> R {
        self.notice_foreign_writes(state);
        let pin = match state.pin.take() {
            Some(c) => Ok(c),
            None => super::open_read_only(&self.db_path),
        };
        let recorded = pin.as_ref().map_err(|e| e.to_string()).and_then(|pin| {
            let mut record = || -> Result<()> {
                pin.execute_batch("BEGIN")?;
                pin.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
                let log = log_frames(&self.wal_path, state.recorded)?;
                state.since_backup.add(&log);
                if let Some(p) = state.pending.as_mut() {
                    p.add(&log);
                }
                self.persist(state, true)?;
                state.recorded = Some(log.mark());
                Ok(())
            };
            record().map_err(|e| e.to_string())
        });
        if let Err(e) = recorded {
            // The checkpoint still runs (a log that never shrinks is worse): the record
            // says it is void, and if that cannot be written either, the database
            // file's new mtime voids the old record at the next start.
            tracing::warn!(
                "cannot record changed pages, the next backup copies the whole database: {e}"
            );
            state.since_backup.unknown = true;
            if let Some(p) = state.pending.as_mut() {
                p.unknown = true;
            }
        }
        let out = checkpoint();
        if let Ok(pin) = pin {
            let _ = pin.execute_batch("COMMIT");
            state.pin = Some(pin);
        }
        state.stamp = stamp_of(&self.db_path);
        // Not synced: a stamp lost in a crash voids the record (safe, only slower).
        if let Err(e) = self.persist(state, false) {
            tracing::warn!("cannot update {}: {e}", self.record_path.display());
        }
        out
    }

    fn notice_foreign_writes(&self, state: &mut State) {
        let now = stamp_of(&self.db_path);
        if now != state.stamp {
            if state.stamp.is_some() && !state.since_backup.unknown {
                tracing::warn!(
                    "{} was written by another program: the next backup copies all of it",
                    self.db_path.display()
                );
            }
            state.since_backup.unknown = true;
            if let Some(p) = state.pending.as_mut() {
                p.unknown = true;
            }
            state.stamp = now;
        }
    }

    /// Starts following a backup: changes from now on are kept apart, to become the
    /// record once that backup is kept ([`BackupChanges::keep`]). `base` names the
    /// backup it builds on.
    pub(super) fn begin_backup(self: &Arc<Self>, base: Option<&str>) -> BackupChanges {
        let mut state = self.lock();
        self.notice_foreign_writes(&mut state);
        // Two backups at once: the second neither uses nor replaces the record.
        let follows = state.pending.is_none();
        if follows {
            // Read before the backup's snapshot starts, so every frame counted here is
            // in it (from where the last checkpoint's record ended: the log can be 64
            // MB). Unreadable: no mark, the next backup counts every frame.
            let log_before = match log_frames(&self.wal_path, state.recorded) {
                Ok(log) => Some(log.mark()),
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            };
            state.pending = Some(Changes {
                log_before,
                ..Changes::default()
            });
        }
        let usable = follows
            && base.is_some()
            && !state.since_backup.unknown
            && state.since_backup.base.as_deref() == base;
        BackupChanges {
            owner: self.clone(),
            follows,
            usable,
        }
    }

    fn persist(&self, state: &State, sync: bool) -> Result<()> {
        let bytes = encode(state.stamp.unwrap_or_default(), &state.since_backup);
        // Rewritten in place: a torn record fails its checksum and reads as void.
        let write = || -> std::io::Result<()> {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.record_path)?;
            file.write_all_at(&bytes, 0)?;
            file.set_len(bytes.len() as u64)?;
            if sync {
                file.sync_data()?;
            }
            Ok(())
        };
        write().map_err(crate::io_err(format!(
            "write {}",
            self.record_path.display()
        )))
    }
}

/// A backup's view of the record, taken when it starts.
pub(super) struct BackupChanges {
    owner: Arc<ChangedPages>,
    follows: bool,
    usable: bool,
}

impl BackupChanges {
    /// The pages that may differ from the base backup's copy, or `None` when the whole
    /// database must be copied. Call inside the backup's read transaction.
    pub(super) fn pages(&self) -> Option<PageSet> {
        if !self.usable {
            return None;
        }
        let mut state = self.owner.lock();
        self.owner.notice_foreign_writes(&mut state);
        if state.since_backup.unknown {
            return None;
        }
        let mut changes = state.since_backup.clone();
        // Frames before the last recorded one are in `pages` already.
        let from = state.recorded.or(changes.log_before);
        drop(state);
        // Frames of the snapshot not yet checkpointed: the log cannot restart while
        // the backup's transaction reads from it, so they are all still there.
        match log_frames(&self.owner.wal_path, from) {
            Ok(log) => changes.add(&log),
            Err(e) => {
                tracing::warn!("backup copies the whole database: {e}");
                return None;
            }
        }
        Some(changes.pages)
    }

    /// The backup is kept, as `id`: from now on the record counts from its snapshot.
    pub(super) fn keep(mut self, id: &str) {
        if !self.follows {
            return;
        }
        self.follows = false;
        let mut state = self.owner.lock();
        if let Some(mut pending) = state.pending.take() {
            pending.base = Some(id.to_string());
            state.since_backup = pending;
            if let Err(e) = self.owner.persist(&state, true) {
                // The old record stays on disk: it names another base, so the next
                // backup copies the whole database.
                tracing::warn!("cannot record the backup's base: {e}");
            }
        }
    }
}

impl Drop for BackupChanges {
    fn drop(&mut self) {
        if self.follows {
            self.owner.lock().pending = None;
        }
    }
}

/// The log's frames of its current generation (those a checkpoint may copy, and
/// frames not yet committed: counting those costs a page more in a backup, nothing
/// else).
fn log_frames(wal: &Path, from: Option<LogMark>) -> Result<LogFrames> {
    let mut log = LogFrames::default();
    let file = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(log),
        Err(e) => return Err(crate::io_err(format!("open {}", wal.display()))(e)),
    };
    let len = file
        .metadata()
        .map_err(crate::io_err(format!("stat {}", wal.display())))?
        .len();
    let mut header = [0u8; WAL_HEADER as usize];
    if len < WAL_HEADER || file.read_exact_at(&mut header, 0).is_err() {
        return Ok(log);
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if be(&header[0..4]) & !1 != 0x377f_0682 {
        return Ok(log);
    }
    let page_size = match be(&header[8..12]) {
        1 => 65_536,
        n => n as u64,
    };
    log.salts.copy_from_slice(&header[16..24]);
    // Frames already read, if the log has not restarted since.
    if let Some(mark) = from.filter(|m| m.salts == log.salts) {
        log.first = mark.frames;
    }
    log.committed = log.first;
    let mut frame = [0u8; FRAME_HEADER as usize];
    let mut at = WAL_HEADER + log.first as u64 * (FRAME_HEADER + page_size);
    while at + FRAME_HEADER + page_size <= len {
        file.read_exact_at(&mut frame, at)
            .map_err(crate::io_err(format!("read {}", wal.display())))?;
        // Past the current generation's frames: what follows was copied back before
        // the log restarted.
        if frame[8..16] != log.salts {
            break;
        }
        log.pages.push(be(&frame[0..4]));
        if be(&frame[4..8]) != 0 {
            log.committed = log.first + log.pages.len() as u32;
        }
        at += FRAME_HEADER + page_size;
    }
    Ok(log)
}

fn encode(stamp: Stamp, changes: &Changes) -> Vec<u8> {
    let base = changes.base.as_deref().unwrap_or("").as_bytes();
    let mut out = Vec::with_capacity(64 + base.len() + changes.pages.0.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&stamp.len.to_le_bytes());
    out.extend_from_slice(&stamp.inode.to_le_bytes());
    out.extend_from_slice(&stamp.mtime_ns.to_le_bytes());
    out.push(changes.unknown as u8);
    let mark = changes.log_before;
    out.push(mark.is_some() as u8);
    let mark = mark.unwrap_or_default();
    out.extend_from_slice(&mark.salts);
    out.extend_from_slice(&mark.frames.to_le_bytes());
    out.extend_from_slice(&(base.len() as u32).to_le_bytes());
    out.extend_from_slice(base);
    out.extend_from_slice(&(changes.pages.0.len() as u32).to_le_bytes());
    for w in &changes.pages.0 {
        out.extend_from_slice(&w.to_le_bytes());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// `None` for anything but a whole record (torn by a crash, another version).
fn decode(bytes: &[u8]) -> Option<(Stamp, Changes)> {
    let (body, sum) = bytes.split_at(bytes.len().checked_sub(32)?);
    if Sha256::digest(body).as_slice() != sum || !body.starts_with(MAGIC) {
        return None;
    }
    let mut rest = &body[MAGIC.len()..];
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    let stamp = Stamp {
        len: u64_of(take(8)?),
        inode: u64_of(take(8)?),
        mtime_ns: u64_of(take(8)?) as i64,
    };
    let unknown = take(1)?[0] != 0;
    let marked = take(1)?[0] != 0;
    let salts: [u8; 8] = take(8)?.try_into().ok()?;
    let frames = u32_of(take(4)?);
    let log_before = marked.then_some(LogMark { salts, frames });
    let base_len = u32_of(take(4)?) as usize;
    let base = String::from_utf8(take(base_len)?.to_vec()).ok()?;
    let words = u32_of(take(4)?) as usize;
    let mut pages = Vec::with_capacity(words);
    for _ in 0..words {
        pages.push(u64_of(take(8)?));
    }
    Some((
        stamp,
        Changes {
            base: (!base.is_empty()).then_some(base),
            unknown,
            pages: PageSet(pages),
            log_before,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of 512-byte pages: (page, commit) per frame.
    fn write_log(path: &Path, salts: [u8; 8], frames: &[(u32, bool)]) {
        let mut out = Vec::new();
        out.extend_from_slice(&0x377f_0682u32.to_be_bytes());
        out.extend_from_slice(&3_007_000u32.to_be_bytes());
        out.extend_from_slice(&512u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&salts);
        out.extend_from_slice(&[0; 8]);
        for &(page, commit) in frames {
            out.extend_from_slice(&page.to_be_bytes());
            out.extend_from_slice(&(commit as u32 * 9).to_be_bytes());
            out.extend_from_slice(&salts);
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&[0; 512]);
        }
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn the_log_is_read_from_where_its_committed_frames_ended() {
        let path = std::env::temp_dir().join(format!("lazaret-wal-{}", std::process::id()));
        let salts = *b"12345678";
        write_log(&path, salts, &[(3, false), (4, true), (7, false)]);
        let log = log_frames(&path, None).unwrap();
        assert_eq!(
            (log.first, log.pages.clone(), log.mark().frames),
            (0, vec![3, 4, 7], 2)
        );
        // The uncommitted frame's place is written again, with another page: read again.
        write_log(
            &path,
            salts,
            &[(3, false), (4, true), (9, false), (5, true)],
        );
        let again = log_frames(&path, Some(log.mark())).unwrap();
        assert_eq!(
            (again.first, again.pages.clone(), again.mark().frames),
            (2, vec![9, 5], 4)
        );
        // Only the frames after a backup's mark are changes since it.
        let mut changes = Changes {
            log_before: Some(log.mark()),
            ..Changes::default()
        };
        changes.add(&log_frames(&path, None).unwrap());
        assert_eq!(changes.pages.iter().collect::<Vec<_>>(), [5, 9]);
        // The log restarted (new salts): every frame is new.
        write_log(&path, *b"87654321", &[(11, true)]);
        let restarted = log_frames(&path, Some(again.mark())).unwrap();
        assert_eq!((restarted.first, restarted.pages.clone()), (0, vec![11]));
        changes.add(&restarted);
        assert_eq!(changes.pages.iter().collect::<Vec<_>>(), [5, 9, 11]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_record_reads_back_and_a_torn_one_does_not() {
        let mut pages = PageSet::default();
        for p in [1, 2, 63, 64, 1000, 70_000] {
            pages.insert(p);
        }
        assert_eq!(
            pages.iter().collect::<Vec<_>>(),
            [1, 2, 63, 64, 1000, 70_000]
        );
        assert_eq!(pages.len(), 6);
        let changes = Changes {
            base: Some("/backups#20261130T120000Z".into()),
            unknown: false,
            pages,
            log_before: Some(LogMark {
                salts: *b"saltsalt",
                frames: 4_000,
            }),
        };
        let stamp = Stamp {
            len: 4096 * 70_001,
            inode: 42,
            mtime_ns: 1_780_000_000_123_456_789,
        };
        let bytes = encode(stamp, &changes);
        assert_eq!(decode(&bytes), Some((stamp, changes)));
        let mut torn = bytes.clone();
        torn[20] ^= 1;
        assert_eq!(decode(&torn), None);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(b""), None);
    }
}
