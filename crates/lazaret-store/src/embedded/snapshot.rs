//! The store's side of an online backup: a consistent copy of the database taken while
//! sessions keep writing — whole, or only the pages changed since the backup it builds
//! on (`changed_pages`) — the blob bytes that copy names, and a pin that keeps those
//! bytes from being removed until the backup has read them.

use super::changed_pages::PageSet;
use super::EmbeddedStore;
use crate::model::{BackupBase, BackupSnapshot, BackupSource, DatabaseCopy};
use crate::pages::PageCopyWriter;
use crate::Result;
use rusqlite::Connection;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The setting naming the store (random, made when it is first opened).
pub const STORE_ID: &str = "store.id";

/// Gives a restored copy of a store (its database file, not open) an identity of its
/// own: its packs grow differently from the original's from now on, so a backup of it
/// must never take a pack of the original's backups for its own because name and
/// length match.
pub fn renew_store_id(db: &Path) -> Result<()> {
    let c = Connection::open(db)?;
    c.execute(
        "INSERT OR REPLACE INTO settings(key, value) VALUES(?1, ?2)",
        [STORE_ID, &super::new_message_id()],
    )?;
    Ok(())
}

pub(super) fn take(
    store: &EmbeddedStore,
    db_copy: &mut dyn Write,
    base: Option<&BackupBase>,
) -> Result<BackupSnapshot> {
    let started = std::time::Instant::now();
    // Pinned before the copy: nothing the copy names can be removed after it was read.
    let pin = store.blobs.pin();
    let warming = warm_pack_lookups(store);
    let changes = store.changes.begin_backup(base.map(|b| b.id.as_str()));
    let source = super::open_read_only(&store.db_path)?;
    // One read transaction for all below: the copy and the files it names agree.
    source.execute_batch("BEGIN")?;
    source.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    let page_count: u32 = source.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let page_size: u32 = source.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let changed = changes.pages();
    tracing::debug!(
        "backup snapshot: {} changed pages known after {:.3} s",
        changed.as_ref().map_or(-1, |p| p.len() as i64),
        started.elapsed().as_secs_f64()
    );
    let pages = match (base, changed) {
        (Some(base), Some(pages)) if pages.len() * (page_size as u64 + 4) <= base.max_bytes => {
            copy_pages(
                &store.db_path,
                &source,
                &pages,
                page_size,
                page_count,
                db_copy,
            )?
        }
        _ => None,
    };
    let database = match pages {
        Some(count) => DatabaseCopy::Pages {
            count,
            database_bytes: page_count as u64 * page_size as u64,
        },
        None => {
            copy_whole(&source, db_copy, &store.data_dir)?;
            DatabaseCopy::Whole
        }
    };
    tracing::debug!(
        "backup snapshot: database copied after {:.3} s",
        started.elapsed().as_secs_f64()
    );
    for thread in warming {
        let _ = thread.join();
    }
    let files = files_named(store, &source)?;
    source.execute_batch("COMMIT")?;
    tracing::debug!(
        "backup snapshot: {} files named after {:.3} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(BackupSnapshot {
        database,
        files,
        pin: Box::new(pin),
        keep: Box::new(move |id| changes.keep(id)),
    })
}

fn copy_whole(source: &Connection, db_copy: &mut dyn Write, data_dir: &Path) -> Result<()> {
    // The snapshot's pages in order are the database file as of the snapshot: they go
    // straight to the backup's compressor, never to a file of their own (a copy
    // written, synced, read back and deleted cost the disk the database's size again
    // at every backup, beside the mail store's fsyncs).
    let mut read = match source.prepare("SELECT data FROM sqlite_dbpage") {
        Ok(stmt) => stmt,
        Err(e) => {
            tracing::info!("backup copies the database through SQLite's backup API ({e})");
            return copy_whole_by_backup_api(source, db_copy, data_dir);
        }
    };
    let io = |e| crate::io_err("write the database copy")(e);
    let mut copy = BufWriter::with_capacity(1 << 20, db_copy);
    let mut rows = read.query([])?;
    let mut first = true;
    while let Some(row) = rows.next()? {
        let bytes = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        if first {
            // A self-contained file: header bytes 18 and 19 (write and read format
            // versions) say "rollback journal", not "log beside me" (WAL).
            let mut page = bytes.to_vec();
            if page.len() > 19 {
                page[18] = 1;
                page[19] = 1;
            }
            copy.write_all(&page).map_err(io)?;
            first = false;
        } else {
            copy.write_all(bytes).map_err(io)?;
        }
    }
    copy.flush().map_err(io)?;
    Ok(())
}

/// Without page access SQLite's backup API needs a database file to write: a scratch
/// file in data_dir, streamed out and removed.
fn copy_whole_by_backup_api(
    source: &Connection,
    db_copy: &mut dyn Write,
    data_dir: &Path,
) -> Result<()> {
    let scratch = data_dir.join(".backup-snapshot.db");
    let _ = std::fs::remove_file(&scratch);
    let written = backup_api_into(source, &scratch).and_then(|()| {
        let io = crate::io_err(format!("read {}", scratch.display()));
        let mut file = File::open(&scratch).map_err(io)?;
        std::io::copy(&mut file, db_copy)
            .map(|_| ())
            .map_err(crate::io_err("write the database copy"))
    });
    let _ = std::fs::remove_file(&scratch);
    written
}

fn backup_api_into(source: &Connection, db_copy: &Path) -> Result<()> {
    let mut copy = Connection::open(db_copy)?;
    {
        // One step, in the open read transaction: a copy made in small steps starts
        // over whenever the writer commits, and under steady mail never finishes.
        let backup = rusqlite::backup::Backup::new(source, &mut copy)?;
        backup.step(-1)?;
    }
    // A self-contained file: no log beside it.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Writes the snapshot's version of `pages` (and of page 1, whose header counts the
/// pages) as a page copy; `None` when this SQLite cannot read pages by number (built
/// without `sqlite_dbpage`: see `.cargo/config.toml`).
fn copy_pages(
    db_path: &Path,
    source: &Connection,
    pages: &PageSet,
    page_size: u32,
    page_count: u32,
    db_copy: &mut dyn Write,
) -> Result<Option<u64>> {
    let mut read = match source.prepare("SELECT data FROM sqlite_dbpage WHERE pgno=?1") {
        Ok(stmt) => stmt,
        Err(e) => {
            tracing::info!("backup copies the whole database: no page access ({e})");
            return Ok(None);
        }
    };
    let mut wanted: Vec<u32> = pages.iter().filter(|&p| p > 1 && p <= page_count).collect();
    wanted.insert(0, 1);
    let prefetching = std::time::Instant::now();
    prefetch(db_path, &wanted, page_size);
    tracing::debug!(
        "backup snapshot: {} pages asked ahead in {:.3} s",
        wanted.len(),
        prefetching.elapsed().as_secs_f64()
    );
    let io = |e| crate::io_err("write the database's page copy")(e);
    let mut copy = PageCopyWriter::new(
        BufWriter::with_capacity(1 << 20, db_copy),
        page_size,
        page_count,
        wanted.len() as u32,
    )
    .map_err(io)?;
    for &page in &wanted {
        read.query_row([page], |r| {
            let bytes = r.get_ref(0)?.as_blob()?;
            Ok(copy.page(page, bytes))
        })?
        .map_err(io)?;
    }
    copy.finish().map_err(io)?.flush().map_err(io)?;
    Ok(Some(wanted.len() as u64))
}

/// Asks the kernel to read the pages ahead, all at once: one by one from a cold cache
/// they would each wait for the disk.
fn prefetch(db_path: &Path, pages: &[u32], page_size: u32) {
    let Ok(file) = File::open(db_path) else {
        return;
    };
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&file);
    let size = page_size as i64;
    let mut runs = pages.iter().peekable();
    while let Some(&first) = runs.next() {
        let mut last = first;
        while runs.peek().is_some_and(|&&p| p == last + 1) {
            last = *runs.next().expect("peeked");
        }
        // SAFETY: an advisory call on a descriptor we own; no memory is passed.
        unsafe {
            libc::posix_fadvise(
                fd,
                (first as i64 - 1) * size,
                (last - first + 1) as i64 * size,
                libc::POSIX_FADV_WILLNEED,
            );
        }
    }
}

/// Threads reading how far each pack's messages go, so that the pages `files_named`
/// reads are in the page cache when it asks for them. From a cold cache its two
/// lookups per pack each waited for the disk in turn: 0.4-0.8 s for 92 packs at 1M
/// messages, half of an incremental backup that copies 0.3 s of pages (bench/
/// RESULTS.md, Backup). Side by side, and while the backup copies the database, the
/// waits overlap. What they find is thrown away: only the snapshot's answers count.
fn warm_pack_lookups(store: &EmbeddedStore) -> Vec<std::thread::JoinHandle<()>> {
    const THREADS: usize = 8;
    let Ok(packs) = store.blobs.packs() else {
        return Vec::new();
    };
    if packs.len() < 2 * THREADS {
        return Vec::new(); // a small store: its lookups are quick anyway
    }
    (0..THREADS)
        .filter_map(|t| {
            let mine: Vec<u32> = packs.iter().copied().skip(t).step_by(THREADS).collect();
            let db_path = store.db_path.clone();
            std::thread::Builder::new()
                .name("backup-warm".into())
                .spawn(move || {
                    let Ok(c) = super::open_read_only(&db_path) else {
                        return;
                    };
                    let Ok(mut end) = c.prepare(
                        "SELECT blob_offset + size FROM messages WHERE blob_pack = ?1
                         ORDER BY blob_offset DESC LIMIT 1",
                    ) else {
                        return;
                    };
                    for pack in mine {
                        let _ = end.query_row([pack], |r| r.get::<_, i64>(0));
                    }
                })
                .ok()
        })
        .collect()
}

/// The message files the snapshot names: each pack up to its last message's end, and
/// files from before packs. Found by index seeks, not a walk over every message.
fn files_named(store: &EmbeddedStore, source: &Connection) -> Result<Vec<BackupSource>> {
    let mut files = Vec::new();
    let mut next_pack =
        source.prepare("SELECT MIN(blob_pack) FROM messages WHERE blob_pack > ?1")?;
    let mut pack_end = source.prepare(
        "SELECT blob_offset + size FROM messages WHERE blob_pack = ?1
         ORDER BY blob_offset DESC LIMIT 1",
    )?;
    let mut after = -1i64;
    while let Some(pack) = next_pack.query_row([after], |r| r.get::<_, Option<i64>>(0))? {
        let end: i64 = pack_end.query_row([pack], |r| r.get(0))?;
        files.push(BackupSource {
            name: format!("blobs/packs/{:08}.pack", pack as u32),
            path: store.blobs.pack_path(pack as u32),
            len: end.max(0) as u64,
            append_only: true,
        });
        after = pack;
    }
    if store.blobs.in_objects() {
        // Rows without a pack name objects in the bucket, which a backup leaves to the
        // bucket's own versioning (docs/SCALE-OUT.md).
        return Ok(files);
    }
    let mut stmt = source.prepare("SELECT uid, size FROM messages WHERE blob_pack IS NULL")?;
    let legacy = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for blob in legacy {
        let (uid, size) = blob?;
        let path = store.blobs.legacy_file(&uid);
        let shard = &uid[..2.min(uid.len())];
        files.push(BackupSource {
            name: format!("blobs/{shard}/{uid}.eml"),
            path,
            len: size.max(0) as u64,
            append_only: true,
        });
    }
    Ok(files)
}
