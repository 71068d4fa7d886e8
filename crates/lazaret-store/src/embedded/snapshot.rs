//! The store's side of an online backup: a consistent copy of the database taken while
//! sessions keep writing, the blob bytes that copy names, and a pin that keeps those
//! bytes from being removed until the backup has read them.

use super::EmbeddedStore;
use crate::model::{BackupSnapshot, BackupSource};
use crate::Result;
use rusqlite::Connection;
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

pub(super) fn take(store: &EmbeddedStore, db_copy: &Path) -> Result<BackupSnapshot> {
    // Pinned before the copy: nothing the copy names can be removed after it was read.
    let pin = store.blobs.pin();
    let source = super::open_read_only(&store.db_path)?;
    let mut copy = Connection::open(db_copy)?;
    {
        // One step, in one read transaction: a copy made in small steps starts over
        // whenever the writer commits, and under steady mail never finishes.
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
        backup.step(-1)?;
    }
    // A self-contained file: no log beside it.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    let mut files = Vec::new();
    let mut stmt = copy.prepare(
        "SELECT blob_pack, MAX(blob_offset + size) FROM messages
         WHERE blob_pack IS NOT NULL GROUP BY blob_pack ORDER BY blob_pack",
    )?;
    let packs = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))?;
    for pack in packs {
        let (pack, end) = pack?;
        files.push(BackupSource {
            name: format!("blobs/packs/{pack:08}.pack"),
            path: store.blobs.pack_path(pack),
            len: end.max(0) as u64,
            append_only: true,
        });
    }
    let mut stmt = copy.prepare("SELECT uid, size FROM messages WHERE blob_pack IS NULL")?;
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
    Ok(BackupSnapshot {
        files,
        pin: Box::new(pin),
    })
}
